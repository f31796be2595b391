"""Out-of-core input: ``fit`` and ``transform`` on a memmap or an HDF5 dataset.

Such inputs are read in chunks and never converted whole; the fit differs
from the in-memory one only in how rows are shuffled (chunks in a shuffled
order, rows shuffled inside each chunk) and in the bias initialisation
(from the first chunk).
"""

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp

from sklearn_nldisco import MatryoshkaSAE, MatryoshkaTranscoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SETTINGS = dict(n_latents=32, k=4, max_iter=6, batch_size=128, device="cpu", random_state=0)


def _simulated(n_rows, n_features=40, seed=0):
    """Poisson counts driven by a few sparse latent sources."""
    rng = np.random.RandomState(seed)
    sources = rng.exponential(1.0, size=(n_rows, 10)) * (rng.uniform(size=(n_rows, 10)) < 0.2)
    mixing = rng.uniform(0.0, 1.5, size=(10, n_features))
    return rng.poisson(0.3 + sources @ mixing).astype(np.float32)


def _memmap(path, X):
    out = np.lib.format.open_memmap(path, mode="w+", dtype=X.dtype, shape=X.shape)
    out[:] = X
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(MatryoshkaSAE, "_out_of_core_chunk_rows", 1024)
    monkeypatch.setattr(MatryoshkaTranscoder, "_out_of_core_chunk_rows", 1024)


@pytest.mark.parametrize("loss", ["mse", "poisson"])
def test_memmap_fit_scores_like_in_memory_fit(tmp_path, small_chunks, loss):
    X = _simulated(6000)
    X_test = _simulated(2000, seed=1)
    mm = _memmap(tmp_path / "x.npy", X)
    out_of_core = MatryoshkaSAE(loss=loss, **SETTINGS).fit(mm)
    in_memory = MatryoshkaSAE(loss=loss, **SETTINGS).fit(X)
    assert out_of_core.n_features_in_ == X.shape[1]
    assert out_of_core.n_iter_ >= 1
    assert abs(out_of_core.score(X_test) - in_memory.score(X_test)) < 0.02
    # the calibrated threshold gives a mean L0 of k on the training rows
    l0 = (out_of_core.transform(X) > 0).sum(axis=1).mean()
    assert abs(l0 - SETTINGS["k"]) < 1.0


def test_hdf5_fit_and_transform(tmp_path, small_chunks):
    h5py = pytest.importorskip("h5py", reason="h5py is needed for HDF5 input")
    X = _simulated(5000)
    X_test = _simulated(2000, seed=1)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("x", data=X, chunks=(500, X.shape[1]))
    in_memory = MatryoshkaSAE(**SETTINGS).fit(X)
    with h5py.File(tmp_path / "x.h5", "r") as f:
        model = MatryoshkaSAE(**SETTINGS).fit(f["x"])
        assert abs(model.score(X_test) - in_memory.score(X_test)) < 0.02
        np.testing.assert_array_equal(model.transform(f["x"]), model.transform(X))
        codes = model.set_params(sparse_output=True).transform(f["x"])
    assert sp.issparse(codes) and codes.format == "csr"
    assert (codes != model.transform(X)).nnz == 0


def test_memmap_transform_equals_in_memory(tmp_path, small_chunks):
    X = _simulated(3000)
    model = MatryoshkaSAE(**SETTINGS).fit(X)
    mm = _memmap(tmp_path / "x.npy", X)
    dense = model.transform(mm)
    assert isinstance(dense, np.ndarray) and not isinstance(dense, np.memmap)
    assert dense.dtype == np.float32
    np.testing.assert_array_equal(dense, model.transform(X))
    model.set_params(sparse_output=True)
    sparse = model.transform(mm)
    assert sp.issparse(sparse) and sparse.format == "csr"
    assert (sparse != model.transform(X)).nnz == 0
    np.testing.assert_allclose(model.reconstruct(mm), model.reconstruct(X))
    assert model.score(mm) == pytest.approx(model.score(X))


def test_fit_never_converts_the_whole_input(tmp_path, monkeypatch):
    """Traced (NumPy) allocations stay far below the size of the input."""
    monkeypatch.setattr(MatryoshkaSAE, "_out_of_core_chunk_rows", 2048)
    n_rows, n_features = 100_000, 100  # 40 MB of float32
    mm = np.lib.format.open_memmap(
        tmp_path / "big.npy", mode="w+", dtype=np.float32, shape=(n_rows, n_features)
    )
    rng = np.random.RandomState(0)
    for start in range(0, n_rows, 10_000):
        mm[start : start + 10_000] = rng.poisson(1.0, size=(10_000, n_features))
    mm.flush()
    del mm
    mm = np.load(tmp_path / "big.npy", mmap_mode="r")
    model = MatryoshkaSAE(
        n_latents=16, k=2, max_iter=1, batch_size=1024, early_stopping=False,
        device="cpu", random_state=0,
    )
    tracemalloc.start()
    try:
        model.fit(mm)
        model.set_params(sparse_output=True).transform(mm)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < mm.nbytes / 4, (peak, mm.nbytes)


def test_wrong_number_of_features(tmp_path, small_chunks):
    X = _simulated(2000)
    model = MatryoshkaSAE(**SETTINGS).fit(X)
    mm = _memmap(tmp_path / "x.npy", _simulated(500, n_features=30))
    with pytest.raises(ValueError, match="30 features"):
        model.transform(mm)


def test_nan_in_a_chunk_names_the_rows(tmp_path, small_chunks):
    X = _simulated(3000)
    X[2500, 3] = np.nan
    mm = _memmap(tmp_path / "x.npy", X)
    with pytest.raises(ValueError, match="rows 2048 to 2999"):
        MatryoshkaSAE(**SETTINGS).fit(mm)
    model = MatryoshkaSAE(**SETTINGS).fit(_simulated(2000))
    with pytest.raises(ValueError, match="NaN or infinity in rows"):
        model.transform(mm)


def test_negative_counts_rejected_for_poisson(tmp_path, small_chunks):
    X = _simulated(2000)
    X[1500, 0] = -1.0
    mm = _memmap(tmp_path / "x.npy", X)
    with pytest.raises(ValueError, match="negative"):
        MatryoshkaSAE(loss="poisson", **SETTINGS).fit(mm)


def test_in_memory_fit_unchanged_by_chunk_setting(small_chunks):
    """The in-memory path ignores the out-of-core chunk size."""
    X = _simulated(2000)
    a = MatryoshkaSAE(**SETTINGS).fit(X)
    MatryoshkaSAE._out_of_core_chunk_rows = 65_536
    b = MatryoshkaSAE(**SETTINGS).fit(X)
    np.testing.assert_array_equal(a.components_, b.components_)


# ------------------------------------------------------------ the transcoder
def _pair(n_rows, seed=0):
    """Source and target populations driven by the same sparse sources."""
    X = _simulated(n_rows, n_features=50, seed=seed)
    return X[:, :30].copy(), X[:, 30:].copy()


@pytest.mark.parametrize("loss", ["mse", "poisson"])
def test_transcoder_memmap_fit_scores_like_in_memory_fit(tmp_path, small_chunks, loss):
    X, Y = _pair(6000)
    X_test, Y_test = _pair(2000, seed=1)
    X_mm, Y_mm = _memmap(tmp_path / "x.npy", X), _memmap(tmp_path / "y.npy", Y)
    out_of_core = MatryoshkaTranscoder(loss=loss, **SETTINGS).fit(X_mm, Y_mm)
    in_memory = MatryoshkaTranscoder(loss=loss, **SETTINGS).fit(X, Y)
    assert out_of_core.n_features_in_ == 30
    assert out_of_core.components_.shape == (SETTINGS["n_latents"], 20)
    assert out_of_core.predict(X_test).shape == Y_test.shape
    held_out = out_of_core.score(X_test, Y_test)
    assert held_out > 0.3
    assert abs(held_out - in_memory.score(X_test, Y_test)) < 0.02
    if loss == "mse":
        # the target's own statistics, from the streaming pass
        np.testing.assert_allclose(out_of_core.target_mean_, Y.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(out_of_core.input_mean_, X.mean(axis=0), rtol=1e-6)
    l0 = (out_of_core.transform(X) > 0).sum(axis=1).mean()
    assert abs(l0 - SETTINGS["k"]) < 1.0


def test_transcoder_hdf5_and_in_memory_mixed(tmp_path, small_chunks):
    """An out-of-core X with an in-memory y, and the reverse with a 1-D HDF5 y."""
    h5py = pytest.importorskip("h5py", reason="h5py is needed for HDF5 input")
    X, Y = _pair(4000)
    X_test, Y_test = _pair(1500, seed=1)
    reference = MatryoshkaTranscoder(**SETTINGS).fit(X, Y)
    mixed = MatryoshkaTranscoder(**SETTINGS).fit(_memmap(tmp_path / "x.npy", X), Y)
    assert abs(mixed.score(X_test, Y_test) - reference.score(X_test, Y_test)) < 0.02
    with h5py.File(tmp_path / "y.h5", "w") as f:
        f.create_dataset("y", data=Y[:, 0], chunks=(500,))
    with h5py.File(tmp_path / "y.h5", "r") as f:
        one = MatryoshkaTranscoder(**SETTINGS).fit(X, f["y"])
        streamed = one.score(X, f["y"])
    prediction = one.predict(X_test)
    assert prediction.shape == (1500,)
    in_memory = MatryoshkaTranscoder(**SETTINGS).fit(X, Y[:, 0])
    # one output, six epochs: the two fits see their rows in different orders,
    # and over seeds 0-3 the held-out score of either spreads over 0.23-0.37
    assert one.score(X_test, Y_test[:, 0]) > 0.2
    assert abs(one.score(X_test, Y_test[:, 0]) - in_memory.score(X_test, Y_test[:, 0])) < 0.1
    # the streaming score equals the in-memory score of the same model
    assert streamed == pytest.approx(one.score(X, Y[:, 0]), rel=1e-9)


def test_transcoder_out_of_core_errors(tmp_path, small_chunks):
    X, Y = _pair(3000)
    X_mm = _memmap(tmp_path / "x.npy", X)
    with pytest.raises(ValueError, match="X has 3000 rows but y has 2999"):
        MatryoshkaTranscoder(**SETTINGS).fit(X_mm, Y[:-1])
    bad = Y.copy()
    bad[2100, 4] = np.inf
    with pytest.raises(ValueError, match=r"y contains NaN or infinity in rows 2048 to 2999"):
        MatryoshkaTranscoder(**SETTINGS).fit(X_mm, _memmap(tmp_path / "bad.npy", bad))
    negative = Y.copy()
    negative[10, 0] = -2.0
    with pytest.raises(ValueError, match=r"y \(rows 0 to 1023\) has negative values"):
        MatryoshkaTranscoder(loss="poisson", **SETTINGS).fit(X_mm, negative)
    # a counts loss checks the target only, as in memory: negative inputs are fine
    shifted = _memmap(tmp_path / "shifted.npy", X - 1.0)
    MatryoshkaTranscoder(loss="poisson", **SETTINGS).fit(shifted, Y)
    with pytest.raises(ValueError, match="code_refit='nnls' needs a linear decoder"):
        MatryoshkaTranscoder(code_refit="nnls", **SETTINGS).fit(X_mm, Y)


def test_score_streams_and_equals_in_memory_score(tmp_path, monkeypatch):
    """score on a memmap holds neither the input nor its reconstruction whole."""
    n_rows, n_features = 100_000, 100  # 40 MB of float32
    rng = np.random.RandomState(0)
    X = rng.poisson(1.0, size=(n_rows, n_features)).astype(np.float32)
    model = MatryoshkaSAE(
        n_latents=16, k=2, max_iter=1, batch_size=1024, early_stopping=False,
        device="cpu", random_state=0,
    ).fit(X[:5000])
    expected = model.score(X)
    mm = _memmap(tmp_path / "x.npy", X)
    monkeypatch.setattr(MatryoshkaSAE, "_out_of_core_chunk_rows", 2048)
    tracemalloc.start()
    try:
        streamed = model.score(mm)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert streamed == pytest.approx(expected, rel=1e-9)
    assert peak < mm.nbytes / 4, (peak, mm.nbytes)


def test_transcoder_fit_never_converts_the_whole_input(tmp_path, monkeypatch):
    monkeypatch.setattr(MatryoshkaTranscoder, "_out_of_core_chunk_rows", 2048)
    n_rows = 80_000
    rng = np.random.RandomState(0)
    X = rng.poisson(1.0, size=(n_rows, 80)).astype(np.float32)
    X_mm = _memmap(tmp_path / "x.npy", X)
    Y_mm = _memmap(tmp_path / "y.npy", X[:, :40] + rng.poisson(1.0, size=(n_rows, 40)))
    del X
    model = MatryoshkaTranscoder(
        n_latents=16, k=2, max_iter=1, batch_size=1024, early_stopping=False,
        device="cpu", random_state=0,
    )
    tracemalloc.start()
    try:
        model.fit(X_mm, Y_mm)
        model.score(X_mm, Y_mm)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < (X_mm.nbytes + Y_mm.nbytes) / 4, (peak, X_mm.nbytes + Y_mm.nbytes)


@pytest.mark.slow  # starts a pool of worker processes (n_jobs=2)
def test_fit_seeds_workers_fit_a_memmap_out_of_core(tmp_path):
    """loky workers get the memmap itself (not a copy) and fit it by chunks."""
    from sklearn_nldisco.interpretation import fit_seeds

    # more rows than one chunk of the default size, so that the out-of-core
    # fit (rows shuffled within chunks) differs from the in-memory one
    X = _simulated(MatryoshkaSAE._out_of_core_chunk_rows + 4096, n_features=12)
    mm = _memmap(tmp_path / "x.npy", X)
    estimator = MatryoshkaSAE(n_latents=8, k=2, max_iter=1, batch_size=2048,
                              early_stopping=False, device="cpu", n_threads=1)
    local = fit_seeds(estimator, mm, seeds=(0, 1), n_jobs=1)
    workers = fit_seeds(estimator, mm, seeds=(0, 1), n_jobs=2)
    for a, b in zip(local, workers):
        np.testing.assert_array_equal(a.components_, b.components_)
    in_memory = MatryoshkaSAE(**{**estimator.get_params(), "random_state": 0}).fit(X)
    assert not np.array_equal(in_memory.components_, local[0].components_)
