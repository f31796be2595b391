"""What the models do when things go wrong.

Failed fits and refits leave the estimator as it was; an interrupt anywhere
in ``fit`` after the first completed epoch keeps the last good epoch (fault
injection: a ``KeyboardInterrupt`` raised on the n-th call of the functions
that a fit goes through, at seeded random points); diverging or overflowing
training stops with a warning or an error that says what to change instead
of returning garbage; ``MatryoshkaTranscoder.score`` checks ``y``; and a few
inputs that were silently coerced are rejected. See "What happens when
things go wrong" in ``docs/models.md``.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import ConvergenceWarning, NotFittedError

from sklearn_nldisco import MatryoshkaSAE, MatryoshkaTranscoder
from sklearn_nldisco.models import _driver, _training, check_device
from sklearn_nldisco.models._base import _BaseMatryoshka

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# 200 rows and batches of 20: ten optimiser steps an epoch without early
# stopping; with it, 180 training rows and batches of 18, ten steps too
SMALL = dict(n_latents=16, k=2, max_iter=4, random_state=0)
STEPS = dict(early_stopping=False, batch_size=20)
STEPS_ES = dict(batch_size=18)


def _counts(seed=0, n_rows=200, n_features=10):
    rng = np.random.RandomState(seed)
    return rng.poisson(2.0, size=(n_rows, n_features)).astype(np.float64)


def _args(Estimator, X):
    return (X,) if Estimator is MatryoshkaSAE else (X, X[:, :4])


FITTED_ATTRIBUTES = (
    "components_", "encoder_weight_", "encoder_bias_", "decoder_bias_", "input_bias_",
    "threshold_", "level_sizes_", "input_mean_", "input_scale_", "latent_frequency_",
    "n_iter_", "best_iter_", "n_steps_", "stop_reason_", "n_features_in_",
)


def _snapshot(model):
    return {name: getattr(model, name) for name in FITTED_ATTRIBUTES}


def _assert_unchanged(model, before):
    for name, value in before.items():
        assert getattr(model, name) is value, f"{name} was replaced by a failed fit"


def _fail_on_call(monkeypatch, owner, name, call_number, error=KeyboardInterrupt):
    """Make ``owner.name`` raise ``error`` on its ``call_number``-th call."""
    original = getattr(owner, name)
    calls = {"n": 0, "armed": True}

    def failing(*args, **kwargs):
        if calls["armed"]:
            calls["n"] += 1
            if calls["n"] == call_number:
                raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, failing)
    return calls


# ------------------------------------------------------------- failed refits
@pytest.mark.parametrize("Estimator", [MatryoshkaSAE, MatryoshkaTranscoder])
def test_failed_refit_keeps_the_fitted_model(Estimator):
    X12 = _counts(n_features=12)
    X8 = X12[:, :8]
    model = Estimator(n_latents=16, k=2, max_iter=2, random_state=0).fit(*_args(Estimator, X12))
    codes = model.transform(X12)
    before = _snapshot(model)
    with pytest.raises(ValueError, match="k=20"):
        model.set_params(k=20).fit(*_args(Estimator, X8))
    _assert_unchanged(model, before)
    # X8 passed validate_data before k=20 was refused: the model must still expect 12
    np.testing.assert_array_equal(model.set_params(k=2).transform(X12), codes)


def _nan_memmap(tmp_path, X):
    X = X.copy()
    X[-1, 0] = np.nan  # found only when the last chunk is read
    path = tmp_path / "X.npy"
    out = np.lib.format.open_memmap(path, mode="w+", dtype=X.dtype, shape=X.shape)
    out[:] = X
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


@pytest.mark.parametrize("failure", ["level_sizes", "device", "late_nan", "divergence",
                                     "first_epoch_interrupt"])
def test_every_failed_fit_leaves_a_fitted_model_as_it_was(failure, tmp_path, monkeypatch):
    X = _counts()
    model = MatryoshkaSAE(**SMALL, **STEPS).fit(X)
    codes = model.transform(X)
    before = _snapshot(model)
    data = X[:, :6]
    expected = ValueError
    if failure == "level_sizes":
        model.set_params(level_sizes=[8, 4, 16])
    elif failure == "device":
        model.set_params(device="tpu")
    elif failure == "late_nan":
        model._out_of_core_chunk_rows = 64
        data = _nan_memmap(tmp_path, data)
    elif failure == "divergence":
        model.set_params(learning_rate=1e6)
    else:
        _fail_on_call(monkeypatch, _training.MatryoshkaTrainer, "step", 3)
        expected = KeyboardInterrupt
    with pytest.raises(expected):
        model.fit(data)
    monkeypatch.undo()
    _assert_unchanged(model, before)
    np.testing.assert_array_equal(model.transform(X), codes)


@pytest.mark.parametrize("Estimator", [MatryoshkaSAE, MatryoshkaTranscoder])
def test_failed_first_fit_leaves_the_estimator_unfitted(Estimator):
    X = _counts()
    model = Estimator(**SMALL, learning_rate=1e6)
    with pytest.raises(ValueError, match="learning_rate"):
        model.fit(*_args(Estimator, X))
    assert not hasattr(model, "n_features_in_")
    with pytest.raises(NotFittedError):
        model.transform(X)


def test_failed_partial_fit_pass_leaves_the_state_as_it_was(monkeypatch):
    X = _counts()
    model = MatryoshkaSAE(**SMALL, batch_size=20).partial_fit(X)
    before = _snapshot(model)
    carried = model._partial_state
    _fail_on_call(monkeypatch, _training.MatryoshkaTrainer, "step", 4)
    with pytest.raises(KeyboardInterrupt):
        model.partial_fit(X)
    monkeypatch.undo()
    _assert_unchanged(model, before)
    assert model._partial_state is carried
    # training continues exactly as if the failed pass never happened
    reference = MatryoshkaSAE(**SMALL, batch_size=20).partial_fit(X).partial_fit(X)
    np.testing.assert_array_equal(model.partial_fit(X).components_, reference.components_)


# ----------------------------------------------------------------- interrupts
def _record_epochs(monkeypatch):
    """Record the trainer's parameters at the end of every recorded epoch."""
    original = _driver.EpochLog.end_epoch
    states = []

    def end_epoch(self, *args, **kwargs):
        original(self, *args, **kwargs)
        states.append(self.trainer.state())

    monkeypatch.setattr(_driver.EpochLog, "end_epoch", end_epoch)
    return states


def _assert_keeps_epoch(model, state):
    np.testing.assert_array_equal(model.components_, state["decoder_weight"])
    np.testing.assert_array_equal(model.encoder_weight_, state["encoder_weight"])
    np.testing.assert_array_equal(model.encoder_bias_, state["encoder_bias"])


def _assert_consistent_interrupted_fit(model, args, n_epochs):
    X = args[0]
    assert model.stop_reason_ == "interrupted"
    assert model.n_iter_ == n_epochs
    for name, values in model.history_.items():
        assert len(values) == n_epochs, name
    assert 1 <= model.best_iter_ <= n_epochs
    codes = model.transform(X)
    assert codes.shape == (X.shape[0], model.n_latents)
    assert np.all(np.isfinite(codes))
    assert np.isfinite(model.score(*args))


def _fit_catching_escapes(model, *args):
    """``model.fit(*args)``, where an interrupt that escapes fails the test
    (instead of stopping the test session)."""
    try:
        return model.fit(*args)
    except KeyboardInterrupt:
        pytest.fail("the KeyboardInterrupt propagated out of fit: the epochs were lost")


def test_interrupt_in_the_held_out_evaluation_keeps_the_completed_epochs(monkeypatch):
    X = _counts()
    model = MatryoshkaSAE(**SMALL, **STEPS_ES)
    _fail_on_call(monkeypatch, _training.MatryoshkaTrainer, "evaluate", 3)
    with pytest.warns(UserWarning, match=r"interrupted during epoch 3"):
        _fit_catching_escapes(model, X)
    _assert_consistent_interrupted_fit(model, (X,), 2)


@pytest.mark.parametrize("target", ["threshold", "latent counts", "restoring"])
def test_interrupt_while_finishing_completes_the_fit(target, monkeypatch):
    X = _counts()
    reference = MatryoshkaSAE(**SMALL, **STEPS_ES).fit(X)
    if target == "threshold":
        _fail_on_call(monkeypatch, _training, "calibrate_threshold_streaming", 1)
    elif target == "latent counts":
        _fail_on_call(monkeypatch, _BaseMatryoshka, "_encode", 1)
    else:
        # load_state restores the kept epoch; it is not called before
        _fail_on_call(monkeypatch, _training.MatryoshkaTrainer, "load_state", 1)
    with pytest.warns(UserWarning, match="interrupted while"):
        model = _fit_catching_escapes(MatryoshkaSAE(**SMALL, **STEPS_ES), X)
    monkeypatch.undo()
    # the model is the one an uninterrupted fit gives, and says it was interrupted
    assert model.stop_reason_ == "interrupted"
    for name in ("components_", "encoder_weight_", "threshold_", "latent_frequency_"):
        np.testing.assert_array_equal(getattr(model, name), getattr(reference, name))
    assert (model.n_iter_, model.best_iter_) == (reference.n_iter_, reference.best_iter_)


def test_second_interrupt_while_finishing_abandons_the_fit(monkeypatch):
    X = _counts()
    model = MatryoshkaSAE(**SMALL, **STEPS).fit(X[:, :6])
    before = _snapshot(model)
    original = _training.calibrate_threshold_streaming
    calls = {"n": 0}

    def interrupted_twice(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(_training, "calibrate_threshold_streaming", interrupted_twice)
    with pytest.warns(UserWarning, match="interrupted while"):
        with pytest.raises(KeyboardInterrupt):
            model.fit(X)
    assert calls["n"] == 2
    _assert_unchanged(model, before)


#: the functions a fit goes through, each interrupted on a random call
INTERRUPTIBLE = [
    (_training.MatryoshkaTrainer, "step"),
    (_training.MatryoshkaTrainer, "evaluate"),
    (_training.MatryoshkaTrainer, "state"),
    (_training.MatryoshkaTrainer, "load_state"),
    (_training, "calibrate_threshold_streaming"),
    (_driver, "_one_pass"),
    (_driver, "_epoch_figures"),
    (_driver.EpochLog, "end_epoch"),
    (_BaseMatryoshka, "_encode"),
]


def _call_counts(monkeypatch, Estimator, params, X):
    """How often a clean fit calls each of ``INTERRUPTIBLE``."""
    counters = [_fail_on_call(monkeypatch, owner, name, 0) for owner, name in INTERRUPTIBLE]
    Estimator(**params).fit(*_args(Estimator, X))
    monkeypatch.undo()
    return [counter["n"] for counter in counters]


@pytest.mark.parametrize("Estimator, params", [
    (MatryoshkaSAE, {**SMALL, **STEPS}),
    (MatryoshkaSAE, {**SMALL, **STEPS_ES, "mask_fraction": 0.0}),
    (MatryoshkaTranscoder, {**SMALL, **STEPS_ES}),
])
def test_interrupts_at_random_points_keep_the_last_good_epoch(Estimator, params, monkeypatch):
    X = _counts()
    args = _args(Estimator, X)
    n_calls = _call_counts(monkeypatch, Estimator, params, X)
    states = _record_epochs(monkeypatch)
    Estimator(**params).fit(*args)
    monkeypatch.undo()
    assert len(states) == params["max_iter"]
    rng = np.random.RandomState(15)
    outcomes = {"raised": 0, "kept": 0}
    reached = [site for site, n in enumerate(n_calls) if n]  # evaluate needs held-out rows
    trials = [(0, 2)]  # the second step: in the first epoch, which nothing keeps
    for _ in range(19):
        site = reached[rng.randint(len(reached))]
        trials.append((site, rng.randint(1, n_calls[site] + 1)))
    for site, call_number in trials:
        owner, name = INTERRUPTIBLE[site]
        completed = []
        original = _driver.EpochLog.end_epoch

        def end_epoch(self, *a, _original=original, _completed=completed, **kw):
            _original(self, *a, **kw)
            _completed.append(self.epochs_done)

        monkeypatch.setattr(_driver.EpochLog, "end_epoch", end_epoch)
        calls = _fail_on_call(monkeypatch, owner, name, call_number)
        model = Estimator(**params)
        where = f"{name} call {call_number}"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                model.fit(*args)
            except KeyboardInterrupt:
                raised = True
            else:
                raised = False
        calls["armed"] = False
        monkeypatch.undo()
        assert calls["n"] >= call_number, where  # a recount calls once more
        if not completed:
            assert raised, where
            assert not hasattr(model, "components_"), where
            outcomes["raised"] += 1
            continue
        assert not raised, f"{where}: an interrupt after a completed epoch propagated"
        assert any("interrupted" in str(w.message) for w in caught), where
        _assert_consistent_interrupted_fit(model, args, len(completed))
        _assert_keeps_epoch(model, states[model.best_iter_ - 1])
        if not model.get_params()["early_stopping"]:
            assert model.best_iter_ == len(completed), where
        outcomes["kept"] += 1
    assert outcomes["raised"] >= 1 and outcomes["kept"] >= 10, outcomes


# ----------------------------------------------------------------- divergence
def _poison_on_step(monkeypatch, step_number, how):
    """After optimiser step ``step_number``, break the decoder bias."""
    original = _training.MatryoshkaTrainer.step
    calls = {"n": 0}

    def step(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == step_number:
            if how == "nan":
                self.params["decoder_bias"].fill_(float("nan"))
            else:
                self.params["decoder_bias"].add_(1e4)
        return out

    monkeypatch.setattr(_training.MatryoshkaTrainer, "step", step)


@pytest.mark.parametrize("Estimator", [MatryoshkaSAE, MatryoshkaTranscoder])
@pytest.mark.parametrize("how", ["nan", "explode"])
def test_divergence_after_good_epochs_keeps_the_last_good_one(Estimator, how, monkeypatch):
    X = _counts()
    args = _args(Estimator, X)
    params = {**SMALL, **STEPS, "max_iter": 6}
    states = _record_epochs(monkeypatch)
    Estimator(**params).fit(*args)
    monkeypatch.undo()
    _poison_on_step(monkeypatch, 35, how)  # in epoch 4
    with pytest.warns(ConvergenceWarning, match=r"diverged in epoch 4.*learning_rate.*epoch 3"):
        model = Estimator(**params).fit(*args)
    monkeypatch.undo()
    assert model.stop_reason_ == "diverged"
    assert (model.n_iter_, model.best_iter_) == (4, 3)
    assert len(model.history_["train_loss"]) == 4
    _assert_keeps_epoch(model, states[2])
    assert np.all(np.isfinite(model.transform(X)))
    assert np.isfinite(model.score(*args))


def test_divergence_with_early_stopping_keeps_the_best_epoch(monkeypatch):
    X = _counts()
    params = {**SMALL, **STEPS_ES, "max_iter": 6, "n_iter_no_change": 6}
    _poison_on_step(monkeypatch, 45, "nan")  # in epoch 5
    with pytest.warns(ConvergenceWarning, match="diverged in epoch 5"):
        model = MatryoshkaSAE(**params).fit(X)
    assert model.stop_reason_ == "diverged"
    assert model.n_iter_ == 5 and 1 <= model.best_iter_ <= 4
    val_loss = model.history_["val_loss"] @ model.level_weights_
    assert not np.isfinite(val_loss[-1])
    # the best of the finite epochs (up to early stopping's relative tol)
    assert val_loss[model.best_iter_ - 1] <= val_loss[:-1].min() * (1 + 1e-3)
    assert np.all(np.isfinite(model.components_))


@pytest.mark.parametrize("Estimator", [MatryoshkaSAE, MatryoshkaTranscoder])
def test_huge_learning_rate_is_an_error_that_names_it(Estimator):
    X = _counts()
    with pytest.raises(ValueError, match=r"diverged in epoch 1.*Lower learning_rate \(it is 1e\+06\)"):
        Estimator(**SMALL, learning_rate=1e6).fit(*_args(Estimator, X))


@pytest.mark.parametrize("Estimator", [MatryoshkaSAE, MatryoshkaTranscoder])
def test_overflowing_input_is_an_error_that_says_to_rescale(Estimator):
    X = _counts() * 1e20
    with pytest.raises(ValueError, match=r"too large for float32.*scaling='standard'"):
        Estimator(**SMALL).fit(*_args(Estimator, X))
    # what the message says to do works
    model = Estimator(**SMALL, scaling="standard").fit(*_args(Estimator, X))
    assert np.all(np.isfinite(model.components_))
    assert np.isfinite(model.score(*_args(Estimator, X)))


def test_diverging_partial_fit_pass_is_an_error_and_changes_nothing():
    X = _counts()
    # the first pass fixes a warm-up of two steps: the second runs at 1e6
    model = MatryoshkaSAE(**SMALL, batch_size=20).partial_fit(X)
    before = _snapshot(model)
    carried = model._partial_state
    with pytest.raises(ValueError, match="diverged in epoch 2.*partial_fit raised"):
        model.set_params(learning_rate=1e6).partial_fit(X)
    _assert_unchanged(model, before)
    assert model._partial_state is carried


def test_a_working_fit_does_not_warn():
    X = _counts()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = MatryoshkaSAE(**SMALL, learning_rate=1.0).fit(X)
    assert model.stop_reason_ in ("max_iter", "early_stopping")


# --------------------------------------------------------- transcoder score y
@pytest.fixture(scope="module")
def transcoder():
    X = _counts()
    return MatryoshkaTranscoder(n_latents=16, k=2, max_iter=2, random_state=0).fit(X, X[:, :4])


@pytest.mark.parametrize("y, match", [
    (lambda X: X[:, :3], r"y has 3 target\(s\) but MatryoshkaTranscoder was fitted with 4"),
    (lambda X: X[:, :5], r"y has 5 target\(s\)"),
    (lambda X: X[:, 0], r"y has 1 target\(s\)"),
    (lambda X: X[:100, :4], "X has 200 rows but y has 100"),
    (lambda X: X[:, :4, None], "dim 3"),
    (lambda X: np.where(np.eye(200, 4, dtype=bool), np.nan, X[:, :4]), "NaN"),
    (lambda X: np.where(np.eye(200, 4, dtype=bool), np.inf, X[:, :4]), "infinity"),
])
def test_transcoder_score_checks_y(transcoder, y, match):
    X = _counts()
    with pytest.raises(ValueError, match=match):
        transcoder.score(X, y(X))


def test_transcoder_score_of_one_target_takes_either_shape():
    X = _counts()
    model = MatryoshkaTranscoder(n_latents=16, k=2, max_iter=2, random_state=0).fit(X, X[:, 0])
    assert model.score(X, X[:, 0]) == model.score(X, X[:, :1])
    with pytest.raises(ValueError, match=r"y has 2 target\(s\)"):
        model.score(X, X[:, :2])


def test_transcoder_score_checks_out_of_core_y(transcoder, tmp_path):
    X = _counts()
    path = tmp_path / "y.npy"
    np.save(path, X[:, :5])
    with pytest.raises(ValueError, match=r"y has 5 target\(s\)"):
        transcoder.score(X, np.load(path, mmap_mode="r"))
    np.save(path, X[:, :4])
    assert transcoder.score(X, np.load(path, mmap_mode="r")) == pytest.approx(
        transcoder.score(X, X[:, :4]))


# ----------------------------------------------------- inputs once coerced
@pytest.mark.parametrize("device", ["tpu", "gpu", "", "meta"])
def test_unknown_device_lists_the_valid_ones(device):
    X = _counts()
    message = r"device='[a-z]*' is not a device.*'auto', 'cpu', 'cuda', 'cuda:<index>'"
    with pytest.raises(ValueError, match=message):
        MatryoshkaSAE(**SMALL, device=device).fit(X)
    with pytest.raises(ValueError, match=message):
        check_device(device)


@pytest.mark.parametrize("level_sizes", [[4.5, 16], [True, 16], [4, 16.0], np.array([4.0, 16.0])])
def test_level_sizes_that_are_not_integers_are_rejected(level_sizes):
    X = _counts()
    with pytest.raises(ValueError, match="level_sizes=.* must be integers"):
        MatryoshkaSAE(**{**SMALL, "k": 1}, level_sizes=level_sizes).fit(X)


@pytest.mark.parametrize("level", [True, False, np.True_])
def test_a_boolean_is_not_a_level(level):
    X = _counts()
    model = MatryoshkaSAE(**SMALL).fit(X)
    with pytest.raises(ValueError, match=r"level=.* is not a valid level"):
        model.reconstruct(X, level=level)
    with pytest.raises(ValueError, match=r"is not a valid level"):
        model.inverse_transform(model.transform(X), level=level)


@pytest.mark.parametrize("Estimator", [MatryoshkaSAE, MatryoshkaTranscoder])
def test_score_of_a_dataframe_does_not_warn_about_feature_names(Estimator):
    X = pd.DataFrame(_counts(), columns=[f"unit{i}" for i in range(10)])
    args = _args(Estimator, X) if Estimator is MatryoshkaSAE else (X, X.iloc[:, :4])
    model = Estimator(**SMALL).fit(*args)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        score = model.score(*args)
        predicted = model.transform(X)
    assert np.isfinite(score)
    assert predicted.shape == (len(X), model.n_latents)
