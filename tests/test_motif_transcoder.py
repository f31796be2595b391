"""MotifTranscoder: motif codes of one population that decode another at a lag."""

import re
from pathlib import Path

import joblib
import numpy as np
import pytest
import sklearn
from sklearn.pipeline import make_pipeline

from conftest import run_without_torch
from sklearn_nldisco import MatryoshkaTranscoder, MotifSAE, MotifTranscoder
from sklearn_nldisco.models import explained_variance
from sklearn_nldisco.models._motif import (
    _stretch_bounds,
    encode_conv,
    local_maxima,
    select_codes,
)

FAST = dict(n_latents=8, n_bins_kernel=5, max_iter=4, device="cpu")
#: bins from a source onset to the target pattern's first bin
LAG = 3
#: the target pattern (bins after LAG x target units) that follows each onset
TARGET_KERNEL = np.array([
    [2.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [1.0, 2.5, 0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 3.0, 0.0, 1.5, 0.0],
    [0.0, 0.0, 0.0, 2.0, 0.0, 0.0],
])

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _pair(seed=0, n_bins=1200, n_sources=12, shuffled=False):
    """Two populations: a source sequence (units 0-3 at lags 0-3) at random
    onsets, and the target pattern ``TARGET_KERNEL`` from ``LAG`` bins after
    each onset, both on Poisson backgrounds. ``shuffled``: the target's
    events follow onsets of their own, unrelated to the source's."""
    rng = np.random.RandomState(seed)
    X = rng.poisson(0.3, size=(n_bins, n_sources)).astype(np.float64)
    grid = np.arange(0, n_bins - 10, 10)
    onsets = np.sort(rng.choice(grid, n_bins // 40, replace=False))
    for lag in range(4):
        X[onsets + lag, lag] += 3.0
    if shuffled:
        onsets = np.sort(rng.choice(grid, n_bins // 40, replace=False))
    rate = np.full((n_bins, TARGET_KERNEL.shape[1]), 0.3)
    for tau, row in enumerate(TARGET_KERNEL):
        rate[onsets + LAG + tau] += row
    return X, rng.poisson(rate).astype(np.float64)


@pytest.fixture(scope="module")
def fitted():
    X, y = _pair()
    return MotifTranscoder(random_state=0, **FAST).fit(X, y)


# ------------------------------------------------------------------ shapes
def test_fitted_attributes_and_shapes(fitted):
    X, y = _pair(seed=1, n_bins=300)
    assert fitted.components_.shape == (8, 5, 6)
    assert fitted.encoder_weight_.shape == (8, 5, 12)
    assert fitted.decoder_bias_.shape == (6,)
    assert fitted.target_mean_.shape == fitted.target_scale_.shape == (6,)
    assert fitted.input_mean_.shape == (12,)
    assert fitted.n_features_in_ == 12
    np.testing.assert_allclose(np.linalg.norm(fitted.components_.reshape(8, -1), axis=1),
                               1.0, rtol=1e-5)
    codes = fitted.transform(X)
    assert codes.shape == (300, 8) and np.all(codes >= 0) and np.count_nonzero(codes) > 0
    y_hat = fitted.predict(X)
    assert y_hat.shape == (300, 6) and y_hat.dtype == np.float64
    assert np.array_equal(fitted.inverse_transform(codes), y_hat)
    assert fitted.get_feature_names_out().tolist() == [
        f"motiftranscoder{j}" for j in range(8)]


def test_target_is_centred_as_the_single_bin_transcoder_does():
    X, y = _pair(n_bins=400)
    for scaling in ("center", "standard", "none"):
        model = MotifTranscoder(random_state=0, scaling=scaling, **{**FAST, "max_iter": 1})
        model.fit(X, y)
        single = MatryoshkaTranscoder(scaling=scaling, max_iter=1, device="cpu",
                                      random_state=0).fit(X, y)
        np.testing.assert_allclose(model.target_mean_, single.target_mean_)
        np.testing.assert_allclose(model.target_scale_, single.target_scale_)
        np.testing.assert_allclose(model.input_mean_, single.input_mean_)
        np.testing.assert_allclose(model.input_scale_, single.input_scale_)
    assert np.all(model.target_mean_ == 0)


def test_codes_are_the_motif_encoder_of_x(fitted):
    """transform is MotifSAE's coding of X: the convolution, local maxima, threshold."""
    X, _ = _pair(seed=2, n_bins=300)
    ids = np.repeat([0, 1], 150)
    positions, lengths = _stretch_bounds(ids, 300)
    scaled = (X - fitted.input_mean_) / fitted.input_scale_
    pre = encode_conv(scaled, fitted.encoder_weight_, fitted.encoder_bias_, positions, lengths)
    keep = local_maxima(pre, positions, lengths, fitted.n_bins_kernel // 2)
    expected = select_codes(pre, fitted.threshold_, keep)
    assert np.array_equal(fitted.transform(X, interval_ids=ids), expected)


# -------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "make_y, match",
    [
        (lambda y: y[:-1], "inconsistent numbers of samples"),
        (lambda y: np.where(np.arange(y.size).reshape(y.shape) == 7, np.nan, y), "NaN"),
        (lambda y: np.where(np.arange(y.size).reshape(y.shape) == 7, np.inf, y), "infinity"),
        (lambda y: y[:, :0], "y has 0 columns"),
        (lambda y: y[:, :, None], "dim 3"),
        (lambda y: None, "requires y to be passed"),
    ],
)
def test_bad_targets_are_clear_errors(make_y, match):
    X, y = _pair(n_bins=200)
    model = MotifTranscoder(**FAST)
    with pytest.raises(ValueError, match=match):
        model.fit(X, make_y(y))
    assert not hasattr(model, "components_")


def test_bad_parameters_are_named():
    X, y = _pair(n_bins=200)
    with pytest.raises(ValueError, match="k=9 is larger than n_latents=8"):
        MotifTranscoder(**{**FAST, "k": 9}).fit(X, y)
    with pytest.raises(ValueError, match="encoder"):
        MotifTranscoder(**{**FAST, "encoder": "rnn"}).fit(X, y)


def test_score_checks_its_target(fitted):
    X, y = _pair(seed=3, n_bins=200)
    with pytest.raises(ValueError, match="y has 5 target\\(s\\) but MotifTranscoder was "
                                         "fitted with 6"):
        fitted.score(X, y[:, :5])
    with pytest.raises(ValueError, match="X has 200 rows but y has 199"):
        fitted.score(X, y[:-1])
    with pytest.raises(ValueError, match="NaN"):
        fitted.score(X, np.full_like(y, np.nan))
    with pytest.raises(ValueError, match="y has 0 columns"):
        fitted.score(X, y[:, :0])
    with pytest.raises(ValueError, match="level=3 is not a valid level"):
        fitted.predict(X, level=3)


def test_interval_ids_must_match_the_rows(fitted):
    X, y = _pair(n_bins=200)
    with pytest.raises(ValueError, match="interval_ids must be 1-D with one id per row"):
        MotifTranscoder(**FAST).fit(X, y, interval_ids=np.zeros(199))
    with pytest.raises(ValueError, match="interval_ids must be 1-D with one id per row"):
        fitted.predict(X, interval_ids=np.zeros(201))


# ------------------------------------------------------------ one target
def test_one_dimensional_target_gives_one_dimensional_predictions():
    X, y = _pair(n_bins=600)
    column = MotifTranscoder(random_state=0, **FAST).fit(X, y[:, 2:3])
    flat = MotifTranscoder(random_state=0, **FAST).fit(X, y[:, 2])
    assert flat.components_.shape == (8, 5, 1)
    assert flat.predict(X).shape == (600,)
    assert column.predict(X).shape == (600, 1)
    # the same fit either way
    assert np.array_equal(flat.predict(X), column.predict(X)[:, 0])
    assert flat.score(X, y[:, 2]) == column.score(X, y[:, 2:3])
    assert flat.score(X, y[:, 2]) == flat.score(X, y[:, 2:3])


# ---------------------------------------------------- shift-equivariance
@pytest.mark.parametrize("shift", [1, 4])
def test_shifting_the_source_shifts_the_prediction_exactly(fitted, shift):
    X, _ = _pair(seed=4, n_bins=400)
    y_hat = fitted.predict(X)
    shifted = fitted.predict(X[shift:])
    # a prediction reads the codes of the kernel's bins before it, and a code
    # the bins of its own kernel and of its local maxima after it
    reach = fitted.n_bins_kernel - 1 + fitted.n_bins_kernel // 2
    inner = slice(reach, len(shifted) - reach)
    assert np.array_equal(shifted[inner], y_hat[shift:][inner])
    assert not np.allclose(shifted[inner], y_hat[:-shift][inner])
    padded = fitted.predict(np.vstack([X[-shift:], X]))
    assert np.array_equal(padded[shift + reach:len(X) - reach + shift],
                          y_hat[reach:len(X) - reach])


# ------------------------------------------------------ interval boundaries
def test_a_stretch_prediction_ignores_the_other_stretches(fitted):
    X, _ = _pair(seed=5, n_bins=300)
    ids = np.repeat([0, 1, 2], 100)
    y_hat = fitted.predict(X, interval_ids=ids)
    other = X.copy()
    other[100:] = np.random.RandomState(9).poisson(3.0, size=(200, 12))
    assert np.array_equal(fitted.predict(other, interval_ids=ids)[:100], y_hat[:100])
    # the middle stretch, alone, with the others changed, or in the whole
    assert np.array_equal(fitted.predict(X[100:200]), y_hat[100:200])
    changed = X.copy()
    changed[:100] += 2.0
    changed[200:] += 2.0
    assert np.array_equal(fitted.predict(changed, interval_ids=ids)[100:200], y_hat[100:200])
    # without the boundaries, the stretches' ends read (and emit into) each other
    joined = fitted.predict(other)
    assert not np.allclose(joined[90:100], y_hat[90:100])


# -------------------------------------------------------- levels, score
def test_levels_predict_from_their_prefix(fitted):
    X, y = _pair(seed=6, n_bins=300)
    codes = fitted.transform(X)
    for level, size in enumerate(fitted.level_sizes_):
        truncated = codes.copy()
        truncated[:, size:] = 0
        np.testing.assert_allclose(fitted.predict(X, level=level),
                                   fitted.inverse_transform(truncated), rtol=1e-12)
        np.testing.assert_allclose(fitted.inverse_transform(codes, level=level),
                                   fitted.inverse_transform(truncated), rtol=1e-12)
    assert not np.allclose(fitted.predict(X, level=0), fitted.predict(X))
    assert np.array_equal(fitted.predict(X, level=-1), fitted.predict(X))


def test_score_is_the_pooled_explained_variance_of_the_prediction(fitted):
    from sklearn.metrics import r2_score

    X, y = _pair(seed=7, n_bins=300)
    ids = np.repeat([0, 1], 150)
    y_hat = fitted.predict(X, interval_ids=ids)
    score = fitted.score(X, y, interval_ids=ids)
    assert score == explained_variance(y, y_hat)
    assert score == pytest.approx(r2_score(y, y_hat, multioutput="variance_weighted"))
    assert score != pytest.approx(r2_score(y, y_hat))  # not the uniform average


# ------------------------------------------------------------ ground truth
def _best_kernel(model, kernel):
    """Best correlation of a decoder kernel with ``kernel`` at any start bin."""
    best = -1.0
    for component in model.components_:
        for start in range(model.n_bins_kernel - len(kernel) + 1):
            placed = np.zeros_like(component)
            placed[start:start + len(kernel)] = kernel
            best = max(best, np.corrcoef(component.ravel(), placed.ravel())[0, 1])
    return best


RECOVERY = dict(n_latents=8, n_bins_kernel=8, k=0.03, max_iter=30, device="cpu",
                random_state=0)


def test_recovers_the_lagged_target_pattern_and_beats_the_single_bin_transcoder():
    """Data seed 0, model seed 0: 2400 bins to fit, 600 held out (about 4 s)."""
    X, y = _pair(seed=0, n_bins=3000)
    train, test = slice(0, 2400), slice(2400, None)
    model = MotifTranscoder(**RECOVERY).fit(X[train], y[train])
    assert _best_kernel(model, TARGET_KERNEL) >= 0.9
    held_out = model.score(X[test], y[test])
    # one bin of the source sees the target's pattern at most at its first bin
    single = MatryoshkaTranscoder(n_latents=8, k=2, max_iter=30, device="cpu",
                                  random_state=0).fit(X[train], y[train])
    baseline = single.score(X[test], y[test])
    assert held_out > 0.15
    assert held_out > baseline + 0.1


def test_a_target_unrelated_to_the_source_scores_near_zero():
    """The target's events at onsets of their own: nothing in X predicts them."""
    X, y = _pair(seed=0, n_bins=3000, shuffled=True)
    model = MotifTranscoder(**RECOVERY).fit(X[:2400], y[:2400])
    assert abs(model.score(X[2400:], y[2400:])) < 0.05


def test_dead_latents_without_a_positive_pre_activation_still_get_the_auxiliary_loss():
    """The transcoder's auxiliary selection takes dead latents' largest local
    maxima whatever their sign (the autoencoder's, the positive ones only)."""
    torch = pytest.importorskip("torch")
    from sklearn_nldisco.models._motif_training import MotifTrainer, initial_parameters

    rng = np.random.RandomState(0)
    X, y = _pair(n_bins=200)
    for model in (MotifSAE(local_max_bins=0, **FAST),
                  MotifTranscoder(local_max_bins=0, **FAST)):
        spec = model._training_spec()
        target = None if spec.autoencoder else y
        trainer = MotifTrainer(initial_parameters(spec, X, rng, target), spec, "cpu")
        pre = -torch.as_tensor(rng.uniform(0.1, 1.0, size=(2, 8, 40)))
        valid = torch.ones((2, 1, 40), dtype=torch.bool)
        dead = torch.as_tensor(np.arange(8) < 3)
        entries = trainer.select_entries(pre, valid, 1.0, allowed=dead,
                                         positive=spec.autoencoder)
        if spec.autoencoder:
            assert len(entries) == 0
        else:
            assert len(entries) == 80  # the budget: one per valid bin
            assert bool((entries[:, 1] < 3).all())
            chosen = pre[entries[:, 0], entries[:, 1], entries[:, 2]]
            others = pre[:, :3].reshape(-1)
            assert float(chosen.min()) >= float(torch.sort(others).values[-80])


# --------------------------------------------------------- reproducibility
def test_fixed_seed_gives_identical_models():
    X, y = _pair()
    ids = np.repeat([0, 1, 2], 400)
    first = MotifTranscoder(random_state=3, **FAST).fit(X, y, interval_ids=ids)
    second = MotifTranscoder(random_state=3, **FAST).fit(X, y, interval_ids=ids)
    for name in ("components_", "encoder_weight_", "encoder_bias_", "decoder_bias_"):
        assert np.array_equal(getattr(first, name), getattr(second, name)), name
    assert first.threshold_ == second.threshold_
    other = MotifTranscoder(random_state=4, **FAST).fit(X, y, interval_ids=ids)
    assert not np.array_equal(first.components_, other.components_)


def test_the_trainer_with_the_input_as_target_is_the_autoencoder():
    """One trainer: the autoencoder is the case target = input. Given the
    input as its target, a step's selection and losses are the same, bit for
    bit, as without a target."""
    torch = pytest.importorskip("torch")
    from sklearn_nldisco.models._motif_training import Layout, MotifTrainer, initial_parameters

    rng = np.random.RandomState(0)
    X = rng.poisson(0.5, size=(120, 6)).astype(np.float32)
    segments = [(0, 50), (50, 120)]
    layout, twin = Layout(X, segments, pad=4), Layout(X, segments, pad=4, Y=X)
    pieces = layout.pieces(16, np.random.RandomState(1))
    batch = layout.batch(pieces, 16, 5)
    assert layout.targets(pieces, 16) is None and layout.whole_targets() is None
    targets = twin.targets(pieces, 16)
    assert np.array_equal(targets, batch[0])
    assert np.array_equal(twin.whole_targets(), layout.whole(5)[0])
    spec = MotifSAE(n_latents=6, n_bins_kernel=5, k=1.0, device="cpu")._training_spec()
    trainer = MotifTrainer(initial_parameters(spec, X, rng), spec, "cpu")
    trainer.dead_window_bins = -1.0  # every latent dead: the auxiliary loss too
    tensors = [torch.as_tensor(part) for part in batch]
    with torch.no_grad():
        losses, entries, aux = trainer.forward(*tensors, aux=True)
        losses_y, entries_y, aux_y = trainer.forward(
            *tensors, targets=torch.as_tensor(targets), aux=True)
    assert len(entries) > 0 and torch.equal(entries, entries_y)
    assert [loss.item() for loss in losses] == [loss.item() for loss in losses_y]
    assert aux.item() == aux_y.item()


# --------------------------------------------------------------- persistence
def test_joblib_round_trip_and_prediction_without_torch(fitted, tmp_path):
    """A loaded conv-encoder model codes, predicts and scores where torch cannot load."""
    X, y = _pair(seed=8, n_bins=300)
    ids = np.repeat([0, 1], 150)
    joblib.dump(fitted, tmp_path / "model.joblib")
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    loaded = joblib.load(tmp_path / "model.joblib")
    y_hat = fitted.predict(X, interval_ids=ids)
    assert np.array_equal(loaded.predict(X, interval_ids=ids), y_hat)
    import pickle

    assert b"torch" not in pickle.dumps(fitted)
    run_without_torch(
        f"""
        import joblib
        import numpy as np
        folder = {str(tmp_path)!r}
        X, y = np.load(folder + "/X.npy"), np.load(folder + "/y.npy")
        ids = np.repeat([0, 1], 150)
        model = joblib.load(folder + "/model.joblib")
        np.save(folder + "/codes.npy", model.transform(X, interval_ids=ids))
        np.save(folder + "/y_hat.npy", model.predict(X, interval_ids=ids))
        np.save(folder + "/level.npy", model.predict(X, interval_ids=ids, level=0))
        np.save(folder + "/score.npy", np.array(model.score(X, y, interval_ids=ids)))
        """
    )
    assert np.array_equal(np.load(tmp_path / "codes.npy"), fitted.transform(X, interval_ids=ids))
    assert np.array_equal(np.load(tmp_path / "y_hat.npy"), y_hat)
    assert np.array_equal(np.load(tmp_path / "level.npy"),
                          fitted.predict(X, interval_ids=ids, level=0))
    assert float(np.load(tmp_path / "score.npy")) == fitted.score(X, y, interval_ids=ids)


# -------------------------------------------------------------- transformer
@pytest.fixture(scope="module")
def transformer():
    X, y = _pair()
    return MotifTranscoder(random_state=0, encoder="transformer", **FAST).fit(X, y)


def test_transformer_encoder_predicts_the_target(transformer):
    X, y = _pair(seed=1, n_bins=300)
    assert transformer.components_.shape == (8, 5, 6)
    assert transformer.encoder_weight_.shape[1:] == (5, 12)
    codes = transformer.transform(X)
    assert codes.shape == (300, 8) and np.all(codes >= 0) and np.count_nonzero(codes) > 0
    y_hat = transformer.predict(X)
    assert y_hat.shape == (300, 6) and np.all(np.isfinite(y_hat))
    assert np.array_equal(transformer.inverse_transform(codes), y_hat)
    assert np.isfinite(transformer.score(X, y))
    ids = np.repeat([0, 1], 150)
    other = X.copy()
    other[150:] += 2.0
    assert np.array_equal(transformer.predict(X, interval_ids=ids)[:150],
                          transformer.predict(other, interval_ids=ids)[:150])


def test_transformer_fit_is_reproducible_and_pickles_without_torch_objects(transformer):
    X, y = _pair()
    again = MotifTranscoder(random_state=0, encoder="transformer", **FAST).fit(X, y)
    assert np.array_equal(again.components_, transformer.components_)
    for name, value in transformer.encoder_state_.items():
        assert isinstance(value, np.ndarray), name
        assert np.array_equal(again.encoder_state_[name], value), name
    import pickle

    assert b"torch" not in pickle.dumps(transformer)
    loaded = pickle.loads(pickle.dumps(transformer))
    assert np.array_equal(loaded.predict(X), transformer.predict(X))


# -------------------------------------------------------- metadata routing
def test_interval_ids_route_through_a_pipeline():
    X, y = _pair()
    ids = np.repeat([0, 1, 2], 400)
    with sklearn.config_context(enable_metadata_routing=True):
        model = MotifTranscoder(random_state=0, **FAST)
        model.set_fit_request(interval_ids=True).set_predict_request(interval_ids=True)
        model.set_transform_request(interval_ids=True)
        pipe = make_pipeline(model).fit(X, y, interval_ids=ids)
        routed = pipe.predict(X, interval_ids=ids)
        routed_codes = pipe.transform(X, interval_ids=ids)
    direct = MotifTranscoder(random_state=0, **FAST).fit(X, y, interval_ids=ids)
    assert np.array_equal(routed, direct.predict(X, interval_ids=ids))
    assert np.array_equal(routed_codes, direct.transform(X, interval_ids=ids))
    assert np.count_nonzero(routed_codes) > 0
    assert np.array_equal(pipe[-1].components_, direct.components_)
    # the ids reached fit and predict: without them the results differ
    unsplit = MotifTranscoder(random_state=0, **FAST).fit(X, y)
    assert not np.array_equal(pipe[-1].components_, unsplit.components_)
    assert not np.array_equal(routed, direct.predict(X))


# ---------------------------------------------------------------- the docs
DOCS = Path(__file__).resolve().parents[1] / "docs" / "models.md"


def test_the_documented_example_runs():
    """The example of "Motif transcoder" in docs/models.md runs as written."""
    if not DOCS.exists():
        pytest.skip(f"the docs are not beside the tests ({DOCS})")
    text = DOCS.read_text()
    section = text[text.index("### Motif transcoder"):]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    namespace = {}
    exec(compile(code, str(DOCS), "exec"), namespace)
    assert namespace["model"].components_.shape[2] == namespace["m1"].shape[1]


# ------------------------------------------------------------------ devices
@pytest.mark.parametrize("encoder", ["conv", "transformer"])
def test_cuda_fit_gives_a_numpy_model(encoder):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device; this machine has none")
    X, y = _pair()
    model = MotifTranscoder(random_state=0, encoder=encoder,
                            **{**FAST, "device": "cuda"}).fit(X, y)
    assert model.device_.startswith("cuda")
    assert isinstance(model.components_, np.ndarray)
    cpu = MotifTranscoder(random_state=0, encoder=encoder, **FAST).fit(X, y)
    assert model.components_.shape == cpu.components_.shape
    assert model.predict(X).shape == y.shape
    assert np.count_nonzero(model.transform(X)) > 0
