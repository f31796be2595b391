"""Saving, loading and reproducing fitted Matryoshka models.

A fitted model is plain NumPy: it pickles without torch objects, reloads in a
process where torch cannot be imported and gives the same numbers there. A
fixed integer seed gives bitwise-identical models on CPU.
"""

import pickle

import joblib
import numpy as np
import pytest

from conftest import run_without_torch
from sklearn_nldisco import MatryoshkaSAE, MatryoshkaTranscoder

FAST = dict(n_latents=24, k=3, max_iter=4, batch_size=64, device="cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(seed=0, n_rows=300, n_features=12, n_targets=5):
    rng = np.random.RandomState(seed)
    X = rng.poisson(2.0, size=(n_rows, n_features)).astype(np.float64)
    Y = X[:, :n_targets] @ rng.uniform(0.2, 1.0, size=(n_targets, n_targets))
    return X, Y


@pytest.fixture(scope="module")
def sae():
    X, _ = _data()
    return MatryoshkaSAE(random_state=0, **FAST).fit(X)


@pytest.fixture(scope="module")
def transcoder():
    X, Y = _data()
    return MatryoshkaTranscoder(random_state=0, **FAST).fit(X, Y)


def _torch_objects(value, path="model", seen=None):
    """Paths of every torch object reachable from ``value``."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return []
    seen.add(id(value))
    found = []
    if type(value).__module__.split(".")[0] == "torch":
        found.append(f"{path}: {type(value)!r}")
    if isinstance(value, dict):
        for key, item in value.items():
            found += _torch_objects(key, f"{path}[{key!r}] (key)", seen)
            found += _torch_objects(item, f"{path}[{key!r}]", seen)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for i, item in enumerate(value):
            found += _torch_objects(item, f"{path}[{i}]", seen)
    elif isinstance(value, np.ndarray):
        if value.dtype == object:
            for i, item in enumerate(value.ravel()):
                found += _torch_objects(item, f"{path}.flat[{i}]", seen)
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        for name, item in vars(value).items():
            found += _torch_objects(item, f"{path}.{name}", seen)
    return found


# --------------------------------------------------------- joblib round trip
def test_joblib_round_trip_sae(sae, tmp_path):
    X, _ = _data(seed=1)
    path = tmp_path / "sae.joblib"
    joblib.dump(sae, path)
    loaded = joblib.load(path)
    codes = sae.transform(X)
    assert np.count_nonzero(codes) > 0
    assert np.array_equal(loaded.transform(X), codes)
    assert np.array_equal(loaded.inverse_transform(codes), sae.inverse_transform(codes))
    for level in range(len(sae.level_sizes_)):
        assert np.array_equal(
            loaded.inverse_transform(codes, level=level),
            sae.inverse_transform(codes, level=level),
        )
    assert loaded.score(X) == sae.score(X)
    assert loaded.get_params() == sae.get_params()


def test_joblib_round_trip_transcoder(transcoder, tmp_path):
    X, _ = _data(seed=1)
    path = tmp_path / "transcoder.joblib"
    joblib.dump(transcoder, path)
    loaded = joblib.load(path)
    assert np.array_equal(loaded.transform(X), transcoder.transform(X))
    assert np.array_equal(loaded.predict(X), transcoder.predict(X))


@pytest.mark.parametrize("name", ["sae", "transcoder"])
def test_fitted_model_holds_no_torch_object(name, request):
    model = request.getfixturevalue(name)
    assert _torch_objects(model) == []
    assert b"torch" not in pickle.dumps(model)


def test_torch_object_walker_finds_torch():
    """The walker above really detects a torch object (guards the test itself)."""
    import torch

    class Holder:
        pass

    holder = Holder()
    holder.nested = {"a": [np.zeros(2), (1, torch.zeros(1))]}
    assert len(_torch_objects(holder)) == 1


# -------------------------------------------------- loading without torch
def test_sae_loads_and_codes_without_torch(sae, tmp_path):
    X, _ = _data(seed=2)
    np.save(tmp_path / "X.npy", X)
    joblib.dump(sae, tmp_path / "model.joblib")
    run_without_torch(
        f"""
        import joblib
        import numpy as np
        folder = {str(tmp_path)!r}
        X = np.load(folder + "/X.npy")
        model = joblib.load(folder + "/model.joblib")
        codes = model.transform(X)
        np.save(folder + "/codes.npy", codes)
        np.save(folder + "/reconstruction.npy", model.inverse_transform(codes))
        np.save(folder + "/first_level.npy", model.inverse_transform(codes, level=0))
        np.save(folder + "/score.npy", np.array(model.score(X)))
        """
    )
    codes = sae.transform(X)
    assert np.array_equal(np.load(tmp_path / "codes.npy"), codes)
    assert np.array_equal(
        np.load(tmp_path / "reconstruction.npy"), sae.inverse_transform(codes)
    )
    assert np.array_equal(
        np.load(tmp_path / "first_level.npy"), sae.inverse_transform(codes, level=0)
    )
    assert float(np.load(tmp_path / "score.npy")) == sae.score(X)


def test_transcoder_loads_and_predicts_without_torch(transcoder, tmp_path):
    X, Y = _data(seed=2)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", Y)
    joblib.dump(transcoder, tmp_path / "model.joblib")
    run_without_torch(
        f"""
        import joblib
        import numpy as np
        folder = {str(tmp_path)!r}
        X = np.load(folder + "/X.npy")
        Y = np.load(folder + "/Y.npy")
        model = joblib.load(folder + "/model.joblib")
        np.save(folder + "/codes.npy", model.transform(X))
        np.save(folder + "/prediction.npy", model.predict(X))
        np.save(folder + "/score.npy", np.array(model.score(X, Y)))
        """
    )
    assert np.array_equal(np.load(tmp_path / "codes.npy"), transcoder.transform(X))
    assert np.array_equal(np.load(tmp_path / "prediction.npy"), transcoder.predict(X))
    assert float(np.load(tmp_path / "score.npy")) == transcoder.score(X, Y)


def test_fitting_without_torch_fails_clearly(tmp_path):
    """Without torch, inference works but fitting raises an ImportError."""
    run_without_torch(
        """
        import numpy as np
        from sklearn_nldisco import MatryoshkaSAE
        X = np.random.RandomState(0).poisson(2.0, size=(50, 6)).astype(float)
        try:
            MatryoshkaSAE(n_latents=8, k=2, max_iter=1).fit(X)
        except ImportError:
            pass
        else:
            raise SystemExit("fit worked without torch")
        """
    )


# ------------------------------------------------------------ determinism
@pytest.mark.parametrize("Estimator", [MatryoshkaSAE, MatryoshkaTranscoder])
@pytest.mark.parametrize("sparsity", ["batchtopk", "topk"])
def test_same_seed_gives_identical_models(Estimator, sparsity):
    X, Y = _data()
    args = (X,) if Estimator is MatryoshkaSAE else (X, Y)
    first = Estimator(random_state=7, sparsity=sparsity, **FAST).fit(*args)
    second = Estimator(random_state=7, sparsity=sparsity, **FAST).fit(*args)
    assert np.array_equal(first.components_, second.components_)
    assert np.array_equal(first.encoder_weight_, second.encoder_weight_)
    assert np.array_equal(first.encoder_bias_, second.encoder_bias_)
    assert np.array_equal(first.decoder_bias_, second.decoder_bias_)
    assert first.threshold_ == second.threshold_
    assert np.array_equal(first.transform(X), second.transform(X))
    for name, values in first.history_.items():
        if name != "epoch_time":
            assert np.array_equal(values, second.history_[name], equal_nan=True), name


@pytest.mark.parametrize("Estimator", [MatryoshkaSAE, MatryoshkaTranscoder])
def test_different_seed_gives_different_models(Estimator):
    X, Y = _data()
    args = (X,) if Estimator is MatryoshkaSAE else (X, Y)
    first = Estimator(random_state=0, **FAST).fit(*args)
    second = Estimator(random_state=1, **FAST).fit(*args)
    assert first.components_.shape == second.components_.shape
    assert not np.allclose(first.components_, second.components_)
    assert not np.array_equal(first.transform(X), second.transform(X))


def test_seeded_fit_does_not_depend_on_global_state():
    """A seeded fit ignores NumPy's and torch's global random state."""
    import torch
    X, _ = _data()
    np.random.seed(123)
    torch.manual_seed(123)
    first = MatryoshkaSAE(random_state=3, **FAST).fit(X)
    np.random.seed(456)
    torch.manual_seed(456)
    second = MatryoshkaSAE(random_state=3, **FAST).fit(X)
    assert np.array_equal(first.components_, second.components_)


def test_model_pickled_before_masked_training_loads_unmasked():
    X = np.random.default_rng(0).poisson(2.0, size=(300, 8)).astype(float)
    model = MatryoshkaSAE(n_latents=16, k=2, max_iter=2, mask_fraction=0.0,
                          random_state=0).fit(X)
    state = pickle.loads(pickle.dumps(model)).__getstate__()
    del state["mask_fraction"]  # what a model of an earlier release holds
    old = MatryoshkaSAE.__new__(MatryoshkaSAE)
    old.__setstate__(state)
    assert old.get_params()["mask_fraction"] == 0.0
    assert old._code_refit_mode() == "nnls"
    np.testing.assert_array_equal(old.transform(X), model.transform(X))
