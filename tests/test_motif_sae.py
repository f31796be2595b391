"""MotifSAE: the shift-equivariant convolutional Matryoshka autoencoder."""

import joblib
import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.pipeline import make_pipeline

from conftest import run_without_torch
from sklearn_nldisco import MotifSAE
from sklearn_nldisco.models import explained_variance
from sklearn_nldisco.models._motif import _stretch_bounds, decode_conv, encode_conv

FAST = dict(n_latents=8, n_bins_kernel=5, max_iter=4, device="cpu")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _planted(seed=0, n_bins=1200, n_units=10, n_lags=5):
    """Poisson background plus one planted sequence (unit j fires at lag j)."""
    rng = np.random.RandomState(seed)
    X = rng.poisson(0.3, size=(n_bins, n_units)).astype(np.float64)
    onsets = np.sort(rng.choice(n_bins - n_lags, n_bins // 40, replace=False))
    for lag in range(n_lags):
        X[onsets + lag, lag] += 3.0
    return X, onsets


@pytest.fixture(scope="module")
def fitted():
    X, _ = _planted()
    return MotifSAE(random_state=0, **FAST).fit(X)


# ------------------------------------------------------------------ shapes
def test_fitted_attributes_and_shapes(fitted):
    X, _ = _planted(seed=1, n_bins=300)
    assert fitted.components_.shape == (8, 5, 10)
    assert fitted.encoder_weight_.shape == (8, 5, 10)
    assert fitted.encoder_bias_.shape == (8,)
    assert fitted.decoder_bias_.shape == (10,)
    assert fitted.n_features_in_ == 10
    assert fitted.level_sizes_.tolist() == [2, 4, 8]
    np.testing.assert_allclose(np.linalg.norm(fitted.components_.reshape(8, -1), axis=1),
                               1.0, rtol=1e-5)
    codes = fitted.transform(X)
    assert codes.shape == (300, 8) and codes.dtype == np.float64
    assert np.all(codes >= 0) and np.count_nonzero(codes) > 0
    assert fitted.inverse_transform(codes).shape == (300, 10)
    assert fitted.transform(X.astype(np.float32)).dtype == np.float32
    assert fitted.get_feature_names_out().tolist() == [f"motifsae{j}" for j in range(8)]
    assert fitted.n_iter_ >= 1 and len(fitted.history_["train_loss"]) == fitted.n_iter_


def test_codes_are_sparse_at_the_calibrated_rate():
    X, _ = _planted()
    model = MotifSAE(random_state=0, k=0.2, local_max_bins=0, **FAST).fit(X)
    l0 = np.count_nonzero(model.transform(X), axis=1).mean()
    assert l0 == pytest.approx(0.2, abs=0.01)


def test_numpy_coding_is_the_convolution():
    """encode/decode against a direct loop over bins and lags."""
    rng = np.random.RandomState(0)
    X = rng.normal(size=(30, 4))
    weight = rng.normal(size=(3, 5, 4))
    bias = rng.normal(size=3)
    ids = np.repeat([0, 1], [18, 12])
    positions, lengths = _stretch_bounds(ids, 30)
    pre = encode_conv(X, weight, bias, positions, lengths)
    decoded = decode_conv(pre, weight, positions, lengths)
    expected_pre = np.tile(bias, (30, 1))
    expected_decoded = np.zeros((30, 4))
    for t in range(30):
        for tau in range(5):
            if t + tau < 30 and ids[t + tau] == ids[t]:
                expected_pre[t] += weight[:, tau] @ X[t + tau]
            if t - tau >= 0 and ids[t - tau] == ids[t]:
                expected_decoded[t] += pre[t - tau] @ weight[:, tau]
    np.testing.assert_allclose(pre, expected_pre, rtol=1e-12)
    np.testing.assert_allclose(decoded, expected_decoded, rtol=1e-12)


# -------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_bins_kernel": 0}, "n_bins_kernel"),
        ({"n_bins_kernel": 2.5}, "n_bins_kernel"),
        ({"k": 0}, "'k' parameter"),
        ({"k": 9}, "k=9 is larger than n_latents=8"),
        ({"level_sizes": (2, 4)}, "the last level must use all latents"),
        ({"level_sizes": (4, 2, 8)}, "strictly increasing"),
        ({"level_weights": (1.0, 1.0)}, "one weight per level"),
        ({"local_max_bins": -1}, "local_max_bins"),
        ({"encoder": "rnn"}, "encoder"),
    ],
)
def test_bad_parameters_are_named(params, match):
    X, _ = _planted(n_bins=200)
    model = MotifSAE(**{**FAST, **params})
    with pytest.raises(ValueError, match=match):
        model.fit(X)
    assert not hasattr(model, "components_")


def test_interval_ids_must_match_the_rows(fitted):
    X, _ = _planted(n_bins=200)
    with pytest.raises(ValueError, match="interval_ids must be 1-D with one id per row"):
        MotifSAE(**FAST).fit(X, interval_ids=np.zeros(199))
    with pytest.raises(ValueError, match="interval_ids must be 1-D with one id per row"):
        fitted.transform(X, interval_ids=np.zeros(201))
    with pytest.raises(ValueError, match="consecutive"):
        fitted.transform(X, interval_ids=np.r_[np.zeros(50), np.ones(50), np.zeros(100)])


def test_inverse_transform_checks_codes(fitted):
    with pytest.raises(ValueError, match="n_latents=8"):
        fitted.inverse_transform(np.zeros((5, 7)))
    with pytest.raises(ValueError, match="level=3 is not a valid level"):
        fitted.inverse_transform(np.zeros((5, 8)), level=3)


# ---------------------------------------------------- shift-equivariance
@pytest.mark.parametrize("shift", [1, 3, 7])
def test_shifting_the_input_shifts_the_codes_exactly(fitted, shift):
    X, _ = _planted(seed=2, n_bins=400)
    codes = fitted.transform(X)
    shifted = fitted.transform(X[shift:])
    # a code depends on bins t - w .. t + w + n_bins_kernel - 1 (w: local maxima)
    reach = fitted.n_bins_kernel - 1 + fitted.n_bins_kernel // 2
    margin = fitted.n_bins_kernel // 2
    inner = slice(margin, len(shifted) - reach)
    assert np.count_nonzero(shifted[inner]) > 0
    assert np.array_equal(shifted[inner], codes[shift:][inner])
    # and prepending bins moves them later by as many bins
    padded = fitted.transform(np.vstack([X[-shift:], X]))
    assert np.array_equal(padded[shift + margin:len(X) - reach + shift],
                          codes[margin:len(X) - reach])


def test_decoding_is_shift_equivariant(fitted):
    X, _ = _planted(seed=3, n_bins=300)
    codes = fitted.transform(X)
    shift = 4
    delayed = np.vstack([np.zeros((shift, codes.shape[1])), codes])
    assert np.array_equal(fitted.inverse_transform(delayed)[shift:],
                          fitted.inverse_transform(codes))
    # a code far away (of a latent active nowhere else) changes nothing here
    delayed[0, np.flatnonzero(~codes.any(axis=0))[:1]] = 1.0
    delayed[0, 0] = 1.0
    assert np.array_equal(fitted.inverse_transform(delayed)[shift + 10:],
                          fitted.inverse_transform(codes)[10:])


# ------------------------------------------------------ interval boundaries
def test_codes_of_a_stretch_ignore_the_other_stretches(fitted):
    X, _ = _planted(seed=4, n_bins=300)
    ids = np.repeat([0, 1, 2], 100)
    codes = fitted.transform(X, interval_ids=ids)
    other = X.copy()
    other[100:] = np.random.RandomState(9).poisson(3.0, size=(200, 10))
    changed = fitted.transform(other, interval_ids=ids)
    assert np.array_equal(changed[:100], codes[:100])
    assert np.array_equal(fitted.transform(X[:100]), codes[:100])
    assert np.array_equal(fitted.transform(X[100:200]), codes[100:200])
    # without the boundary, the first stretch's last pre-activations read the next one
    positions, lengths = _stretch_bounds(None, 300)
    scaled = (X - fitted.input_mean_) / fitted.input_scale_
    joined = encode_conv(scaled, fitted.encoder_weight_, fitted.encoder_bias_, positions, lengths)
    positions, lengths = _stretch_bounds(ids, 300)
    split = encode_conv(scaled, fitted.encoder_weight_, fitted.encoder_bias_, positions, lengths)
    assert np.array_equal(joined[:96], split[:96])
    assert not np.allclose(joined[96:100], split[96:100])


def test_a_code_emits_its_motif_within_its_stretch_only(fitted):
    ids = np.repeat([0, 1], 20)
    codes = np.zeros((40, 8))
    codes[18, 0] = 1.0  # two bins before the end of the first stretch
    within = fitted.inverse_transform(codes, interval_ids=ids)
    bias_only = fitted.inverse_transform(np.zeros((40, 8)), interval_ids=ids)
    assert np.array_equal(within[20:], bias_only[20:])
    assert not np.allclose(within[18:20], bias_only[18:20])
    whole = fitted.inverse_transform(codes)
    assert not np.allclose(whole[20:23], bias_only[20:23])


def test_training_chunks_never_cross_a_stretch():
    from sklearn_nldisco.models._motif_training import Layout

    X = np.arange(60, dtype=np.float32)[:, None] + 1.0
    layout = Layout(X, [(0, 17), (17, 40), (40, 60)], pad=3)
    pieces = layout.pieces(8, np.random.RandomState(0))
    inputs, token_valid, code_valid, score = layout.batch(pieces, 8, 4)
    assert np.all(token_valid >= code_valid)
    for (start, stop), row, valid, scored in zip(pieces, inputs[:, :, 0], code_valid, score):
        segment = next(core for core in layout.cores if core[0] <= start < core[1])
        assert stop <= segment[1]
        segment_values = layout.x[segment[0]:segment[1], 0]
        assert np.array_equal(row[scored], layout.x[start:stop, 0])
        for position in np.flatnonzero(valid):
            # every bin a kept code reads is in the piece's segment, or padding (0)
            reads = row[position:position + 4]
            assert np.all(np.isin(reads[reads != 0], segment_values))
    assert sum(b - a for a, b in pieces) == 60


# -------------------------------------------------------- levels, score
def test_levels_reconstruct_from_their_prefix(fitted):
    X, _ = _planted(seed=5, n_bins=200)
    codes = fitted.transform(X)
    first = fitted.level_sizes_[0]
    truncated = codes.copy()
    truncated[:, first:] = 0
    np.testing.assert_allclose(fitted.inverse_transform(codes, level=0),
                               fitted.inverse_transform(truncated), rtol=1e-12)
    np.testing.assert_allclose(fitted.reconstruct(X, level=0),
                               fitted.inverse_transform(codes, level=0), rtol=1e-12)


def test_score_is_the_explained_variance_of_the_reconstruction(fitted):
    X, _ = _planted(seed=6, n_bins=300)
    ids = np.repeat([0, 1], 150)
    score = fitted.score(X, interval_ids=ids)
    assert score == explained_variance(X, fitted.reconstruct(X, interval_ids=ids))
    assert score > 0.1  # the planted sequence is reconstructed


# --------------------------------------------------------- reproducibility
def test_fixed_seed_gives_identical_models():
    X, _ = _planted()
    ids = np.repeat([0, 1, 2], 400)
    first = MotifSAE(random_state=3, **FAST).fit(X, interval_ids=ids)
    second = MotifSAE(random_state=3, **FAST).fit(X, interval_ids=ids)
    for name in ("components_", "encoder_weight_", "encoder_bias_", "decoder_bias_"):
        assert np.array_equal(getattr(first, name), getattr(second, name)), name
    assert first.threshold_ == second.threshold_
    other = MotifSAE(random_state=4, **FAST).fit(X, interval_ids=ids)
    assert not np.array_equal(first.components_, other.components_)


# --------------------------------------------------------------- persistence
def test_joblib_round_trip_and_coding_without_torch(fitted, tmp_path):
    """A loaded model transforms, decodes and scores where torch cannot load.

    Torch is blocked by a finder first on ``sys.meta_path``
    (``conftest.run_without_torch``).
    """
    X, _ = _planted(seed=7, n_bins=300)
    ids = np.repeat([0, 1], 150)
    joblib.dump(fitted, tmp_path / "model.joblib")
    np.save(tmp_path / "X.npy", X)
    loaded = joblib.load(tmp_path / "model.joblib")
    codes = fitted.transform(X, interval_ids=ids)
    assert np.array_equal(loaded.transform(X, interval_ids=ids), codes)
    import pickle

    assert b"torch" not in pickle.dumps(fitted)
    run_without_torch(
        f"""
        import joblib
        import numpy as np
        folder = {str(tmp_path)!r}
        X = np.load(folder + "/X.npy")
        ids = np.repeat([0, 1], 150)
        model = joblib.load(folder + "/model.joblib")
        codes = model.transform(X, interval_ids=ids)
        np.save(folder + "/codes.npy", codes)
        np.save(folder + "/reconstruction.npy", model.inverse_transform(codes, interval_ids=ids))
        np.save(folder + "/score.npy", np.array(model.score(X, interval_ids=ids)))
        """
    )
    assert np.array_equal(np.load(tmp_path / "codes.npy"), codes)
    assert np.array_equal(np.load(tmp_path / "reconstruction.npy"),
                          fitted.inverse_transform(codes, interval_ids=ids))
    assert float(np.load(tmp_path / "score.npy")) == fitted.score(X, interval_ids=ids)


# ----------------------------------------------------------- DataFrames
def test_dataframe_input_keeps_the_unit_names():
    X, _ = _planted(n_bins=400)
    frame = pd.DataFrame(X, columns=[f"unit_{j}" for j in range(10)])
    model = MotifSAE(random_state=0, **FAST).fit(frame)
    assert model.feature_names_in_.tolist() == list(frame.columns)
    with pytest.warns(UserWarning, match="fitted with feature names"):
        from_array = model.transform(X)
    assert np.array_equal(model.transform(frame), from_array)
    model.set_output(transform="pandas")
    out = model.transform(frame)
    assert isinstance(out, pd.DataFrame)
    assert out.columns.tolist() == [f"motifsae{j}" for j in range(8)]
    with pytest.raises(ValueError, match="feature names"):
        model.transform(frame.rename(columns={"unit_0": "other"}))


# -------------------------------------------------------- metadata routing
def test_interval_ids_route_through_a_pipeline():
    X, _ = _planted(n_bins=400)
    ids = np.repeat([0, 1], 200)
    with sklearn.config_context(enable_metadata_routing=True):
        model = MotifSAE(random_state=0, **FAST)
        model.set_fit_request(interval_ids=True).set_transform_request(interval_ids=True)
        pipe = make_pipeline(model).fit(X, interval_ids=ids)
        routed = pipe.transform(X, interval_ids=ids)
    direct = MotifSAE(random_state=0, **FAST).fit(X, interval_ids=ids)
    assert np.array_equal(routed, direct.transform(X, interval_ids=ids))
    assert np.array_equal(pipe[-1].components_, direct.components_)
    # the ids reached fit: without them the training chunks differ
    unsplit = MotifSAE(random_state=0, **FAST).fit(X)
    assert not np.array_equal(pipe[-1].components_, unsplit.components_)


# --------------------------------------------------------------- recovery
def _best_kernel_correlation(model, kernel):
    """Best correlation of a decoder kernel with ``kernel`` at any start bin."""
    best = -1.0
    n_lags = min(len(kernel), model.n_bins_kernel)
    for component in model.components_:
        for start in range(model.n_bins_kernel - n_lags + 1):
            placed = np.zeros_like(component)
            placed[start:start + n_lags] = kernel[:n_lags]
            best = max(best, np.corrcoef(component.ravel(), placed.ravel())[0, 1])
    return best


def test_recovers_the_planted_sequence_of_a_toy_recording():
    X, _ = _planted(n_bins=2000)
    # one onset every 40 bins: k = 0.05 codes per bin leaves room for it and little else
    model = MotifSAE(n_latents=8, n_bins_kernel=8, k=0.05, max_iter=30, device="cpu",
                     random_state=0).fit(X)
    kernel = np.zeros((5, 10))
    kernel[np.arange(5), np.arange(5)] = 3.0
    assert _best_kernel_correlation(model, kernel) >= 0.9


@pytest.mark.slow
def test_recovers_the_planted_sequences_of_a_motif_session():
    """Defaults, a kernel of 500 ms, 120 s of a simulated session (about 30 s)."""
    from sklearn_nldisco.datasets import make_motif_session
    from sklearn_nldisco.preprocessing import SpikeBinner

    recording, truth = make_motif_session(n_units=30, duration_s=120.0, random_state=0)
    counts = SpikeBinner(0.02, t_start=0.0, t_stop=truth.duration_s).fit_transform(recording)
    model = MotifSAE(n_bins_kernel=25, device="cpu", random_state=0).fit(counts)
    for name in ("sequence_0", "sequence_1"):
        best = max(_best_kernel_correlation(model, truth.kernel(name, 0.02, offset))
                   for offset in (0.0, 0.005, 0.01, 0.015))
        assert best >= 0.9, name


# -------------------------------------------------------------- transformer
@pytest.fixture(scope="module")
def transformer():
    X, _ = _planted()
    return MotifSAE(random_state=0, encoder="transformer", **FAST).fit(X)


def test_transformer_encoder_codes_per_bin(transformer):
    X, _ = _planted(seed=1, n_bins=300)
    codes = transformer.transform(X)
    assert codes.shape == (300, 8) and np.all(codes >= 0) and np.count_nonzero(codes) > 0
    assert transformer.components_.shape == (8, 5, 10)
    assert transformer.encoder_weight_.shape[1:] == (5, 10)
    assert transformer.inverse_transform(codes).shape == (300, 10)
    assert np.isfinite(transformer.score(X))


def test_transformer_is_shift_equivariant_and_keeps_stretches_apart(transformer):
    X, _ = _planted(seed=2, n_bins=400)
    positions, lengths = _stretch_bounds(None, 400)
    scaled = (X - transformer.input_mean_) / transformer.input_scale_
    pre = transformer._pre_activations(scaled, positions, lengths)
    shift = 3
    positions, lengths = _stretch_bounds(None, 400 - shift)
    shifted = transformer._pre_activations(scaled[shift:], positions, lengths)
    reach = transformer.n_bins_kernel - 1 + transformer.n_bins_kernel // 2
    inner = slice(transformer.n_bins_kernel // 2, 400 - shift - reach)
    # float32 torch arithmetic: equal up to rounding, not bit for bit
    np.testing.assert_allclose(shifted[inner], pre[shift:][inner], rtol=1e-4, atol=1e-5)
    ids = np.repeat([0, 1], 200)
    other = X.copy()
    other[200:] += 2.0
    assert np.array_equal(transformer.transform(X, interval_ids=ids)[:200],
                          transformer.transform(other, interval_ids=ids)[:200])


def test_transformer_fit_is_reproducible_and_pickles_without_torch_objects(transformer):
    X, _ = _planted()
    again = MotifSAE(random_state=0, encoder="transformer", **FAST).fit(X)
    assert np.array_equal(again.components_, transformer.components_)
    for name, value in transformer.encoder_state_.items():
        assert isinstance(value, np.ndarray), name
        assert np.array_equal(again.encoder_state_[name], value), name
    import pickle

    loaded = pickle.loads(pickle.dumps(transformer))
    assert b"torch" not in pickle.dumps(transformer)
    assert np.array_equal(loaded.transform(X), transformer.transform(X))


# ------------------------------------------------------------------ devices
def test_a_missing_device_is_a_clear_error():
    import torch

    X, _ = _planted(n_bins=200)
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="CUDA is not available"):
        MotifSAE(**{**FAST, "device": "cuda"}).fit(X)
    with pytest.raises(ValueError, match="not a device"):
        MotifSAE(**{**FAST, "device": "tpu"}).fit(X)


@pytest.mark.parametrize("encoder", ["conv", "transformer"])
def test_cuda_fit_gives_a_numpy_model(encoder):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device; this machine has none")
    X, _ = _planted()
    model = MotifSAE(random_state=0, encoder=encoder, **{**FAST, "device": "cuda"}).fit(X)
    assert model.device_.startswith("cuda")
    assert isinstance(model.components_, np.ndarray)
    cpu = MotifSAE(random_state=0, encoder=encoder, **FAST).fit(X)
    assert model.components_.shape == cpu.components_.shape
    assert np.count_nonzero(model.transform(X)) > 0


# ------------------------------------------------------- sparse training step
def _dense_select(pre, valid, budget_per_bin, width, allowed=None):
    """The selection rule written densely: BatchTopK over the whole batch
    among positive local maxima (the reference for the sparse selection)."""
    import torch
    import torch.nn.functional as F

    masked = pre.masked_fill(~valid, -torch.inf)
    if width:
        pooled = F.max_pool1d(masked, 2 * width + 1, stride=1, padding=width)
        masked = masked.masked_fill(masked < pooled, -torch.inf)
    if allowed is not None:
        masked = masked.masked_fill(~allowed[None, :, None], -torch.inf)
    budget = min(max(1, int(round(budget_per_bin * int(valid.sum())))), masked.numel())
    cut = torch.topk(masked.reshape(-1), budget, sorted=False).values.min()
    return (masked >= cut) & (pre > 0) & torch.isfinite(masked)


def _dense_pre(x, params):
    import torch.nn.functional as F

    return F.conv1d(x, params["encoder_weight"]) + params["encoder_bias"][None, :, None]


def _dense_losses(params, x, keep, aux_keep, mask, bounds):
    """Level losses and auxiliary loss with a dense convolution encoder and
    transposed-convolution decoder, given the selection."""
    import torch.nn.functional as F

    pre = _dense_pre(x, params)
    codes = pre * keep
    n_scored = mask.sum() * x.shape[1]
    reconstruction = params["decoder_bias"][None, :, None].expand_as(x)
    losses = []
    for low, high in zip(bounds[:-1], bounds[1:]):
        reconstruction = reconstruction + F.conv_transpose1d(
            codes[:, low:high], params["decoder_weight"][low:high])
        losses.append(((reconstruction - x).square() * mask).sum() / n_scored)
    residual = (x - reconstruction).detach()
    aux_out = F.conv_transpose1d(pre * aux_keep, params["decoder_weight"])
    power = (residual.square() * mask).sum().clamp_min(1e-12)
    return losses, ((aux_out - residual).square() * mask).sum() / power


@pytest.mark.parametrize("local_max_bins", [0, 2])
def test_sparse_step_has_the_dense_gradients(local_max_bins):
    torch = pytest.importorskip("torch")
    from sklearn_nldisco.models._motif_training import MotifTrainer, initial_parameters

    rng = np.random.RandomState(0)
    n_batch, n_units, n_kernel, n_time = 3, 6, 5, 60
    model = MotifSAE(n_latents=12, n_bins_kernel=n_kernel, k=1.5, aux_k=2.0,
                     local_max_bins=local_max_bins, device="cpu")
    spec = model._training_spec()
    X = rng.poisson(0.5, size=(200, n_units)).astype(np.float64)
    trainer = MotifTrainer(initial_parameters(spec, X, rng), spec, "cpu")
    params = {name: (tensor.detach().double() + 0.1 * torch.as_tensor(
        rng.standard_normal(tuple(tensor.shape)))).requires_grad_(True)
        for name, tensor in trainer.params.items()}
    trainer.params = params
    # half the latents dead, so that the auxiliary loss is on
    trainer.dead_window_bins = 10.0
    trainer.steps_since_fired = torch.as_tensor(np.where(np.arange(12) % 2, 100.0, 0.0))
    inputs = torch.as_tensor(rng.poisson(0.5, size=(n_batch, n_time, n_units)),
                             dtype=torch.float64)
    n_codes = n_time - n_kernel + 1
    code_valid = torch.as_tensor(rng.uniform(size=(n_batch, n_codes)) < 0.9)
    score = torch.as_tensor(rng.uniform(size=(n_batch, n_time)) < 0.8)

    losses, entries, aux_loss = trainer.forward(inputs, code_valid, code_valid, score, aux=True)
    weights = torch.as_tensor(rng.uniform(0.5, 1.5, size=len(losses) + 1))
    total = sum(w * loss for w, loss in zip(weights, losses)) + weights[-1] * aux_loss
    sparse_grads = torch.autograd.grad(total, list(params.values()))

    x = inputs.permute(0, 2, 1)
    valid = code_valid[:, None, :]
    with torch.no_grad():
        pre = _dense_pre(x, params)
    keep = _dense_select(pre, valid, spec.k, spec.local_max_bins)
    dead = trainer.steps_since_fired > trainer.dead_window_bins
    aux_keep = _dense_select(pre, valid, spec.aux_k, spec.local_max_bins, allowed=dead)
    # the same selection as the dense rule, entry for entry
    selected = torch.zeros_like(keep)
    selected[entries[:, 0], entries[:, 1], entries[:, 2]] = True
    assert torch.equal(selected, keep)
    assert 0 < int(keep.sum()) < keep.numel() and int(aux_keep.sum()) > 0
    assert not bool((aux_keep & ~dead[None, :, None]).any())

    mask = score[:, None, :].to(x.dtype)
    dense_losses, dense_aux = _dense_losses(params, x, keep, aux_keep, mask, trainer.bounds)
    for loss, dense in zip(losses, dense_losses):
        np.testing.assert_allclose(float(loss.detach()), float(dense.detach()), rtol=1e-10)
    np.testing.assert_allclose(float(aux_loss.detach()), float(dense_aux.detach()),
                               rtol=1e-10)
    dense_total = (sum(w * loss for w, loss in zip(weights, dense_losses))
                   + weights[-1] * dense_aux)
    dense_grads = torch.autograd.grad(dense_total, list(params.values()))
    for name, grad, dense in zip(params, sparse_grads, dense_grads):
        assert float(dense.abs().max()) > 0, name
        np.testing.assert_allclose(grad.numpy(), dense.numpy(), rtol=1e-5,
                                   atol=1e-5 * float(dense.abs().max()), err_msg=name)


def test_whole_fit_is_reproducible_with_sparse_steps():
    X, _ = _planted(seed=2)
    first = MotifSAE(random_state=5, aux_coef=0.1, **FAST).fit(X)
    second = MotifSAE(random_state=5, aux_coef=0.1, **FAST).fit(X)
    for name in ("components_", "encoder_weight_", "encoder_bias_", "decoder_bias_"):
        assert np.array_equal(getattr(first, name), getattr(second, name)), name
    assert np.array_equal(first.history_["train_loss"], second.history_["train_loss"])
    assert np.all(np.isfinite(first.history_["train_loss"]))
