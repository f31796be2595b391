"""Fits do not move: fixed data and seeds give the recorded models, bitwise.

The reference (``tests/data/fit_reference.npz``) was recorded from the code
before the training driver was redesigned, with
``python tests/test_fit_digests.py --record``. Every way of fitting is
covered: in memory, ``partial_fit`` over chunks, and out of core from a
memmap, for the autoencoder and the transcoder. Each case stores the decoder
(``components_``), the threshold and the codes of a test block.

Bitwise equality is a promise of one machine and one set of numerical
libraries: BLAS kernels round by the processor they run on. Where the
recorded library fingerprint (processor architecture, OpenBLAS kernel, torch
CPU capability, NumPy and torch versions) matches this machine's, the SHA-256
digests of the arrays must match exactly. Elsewhere the same fits are compared
to the recorded arrays up to rounding, which still catches any change of the
algorithm.
"""

import hashlib
import json
import platform
import sys
from pathlib import Path

import numpy as np
import pytest

REFERENCE = Path(__file__).parent / "data" / "fit_reference.npz"
DIGESTS = Path(__file__).parent / "data" / "fit_digests.json"

COMMON = dict(n_latents=24, k=3, batch_size=64, device="cpu", n_threads=1, random_state=0)


def _data(n_rows=900, n_features=20, n_targets=7, seed=0):
    rng = np.random.RandomState(seed)
    sources = rng.exponential(1.0, size=(n_rows, 6)) * (rng.uniform(size=(n_rows, 6)) < 0.25)
    X = rng.poisson(0.2 + sources @ rng.uniform(0.0, 1.5, size=(6, n_features)))
    Y = rng.poisson(0.2 + sources @ rng.uniform(0.0, 1.5, size=(6, n_targets)))
    return X.astype(np.float32), Y.astype(np.float32)


def _memmap(path, array):
    out = np.lib.format.open_memmap(path, mode="w+", dtype=array.dtype, shape=array.shape)
    out[:] = array
    out.flush()
    del out
    return np.load(path, mmap_mode="r")


def _outputs(model, X_test):
    return {
        "components": np.asarray(model.components_),
        "threshold": np.asarray([model.threshold_], dtype=np.float64),
        "codes": np.asarray(model.transform(X_test)),
    }


def fit_cases(tmp_dir):
    """Every fit path on fixed data: ``{case: {array name: array}}``."""
    from sklearn_nldisco import MatryoshkaSAE, MatryoshkaTranscoder

    X, Y = _data()
    X_train, X_test = X[:700], X[700:]
    Y_train = Y[:700]
    cases = {}

    # in memory: early stopping on (validation rows), the default losses
    for name, params in {
        "sae_mse": dict(max_iter=6),
        "sae_poisson_topk": dict(max_iter=5, loss="poisson", sparsity="topk"),
        "sae_msle_no_stop": dict(max_iter=4, loss="msle", early_stopping=False),
        "sae_standard_no_aux": dict(max_iter=5, scaling="standard", aux_coef=0.0),
    }.items():
        model = MatryoshkaSAE(**COMMON, **params).fit(X_train)
        cases[name] = _outputs(model, X_test)
    for name, params in {
        "transcoder_mse": dict(max_iter=6),
        "transcoder_poisson": dict(max_iter=5, loss="poisson"),
    }.items():
        model = MatryoshkaTranscoder(**COMMON, **params).fit(X_train, Y_train)
        cases[name] = _outputs(model, X_test)

    # partial_fit: two passes over three contiguous chunks
    chunks = np.array_split(np.arange(700), 3)
    sae = MatryoshkaSAE(**COMMON, max_iter=6)
    transcoder = MatryoshkaTranscoder(**COMMON, max_iter=6, loss="poisson")
    for _ in range(2):
        for rows in chunks:
            sae.partial_fit(X_train[rows])
            transcoder.partial_fit(X_train[rows], Y_train[rows])
    cases["sae_partial_fit"] = _outputs(sae, X_test)
    cases["transcoder_partial_fit"] = _outputs(transcoder, X_test)
    # partial_fit after fit continues from the fitted weights
    continued = MatryoshkaSAE(**COMMON, max_iter=3).fit(X_train).partial_fit(X_train[:300])
    cases["sae_fit_then_partial_fit"] = _outputs(continued, X_test)

    # out of core, in chunks of 256 rows
    X_map = _memmap(Path(tmp_dir) / "x.npy", X_train)
    Y_map = _memmap(Path(tmp_dir) / "y.npy", Y_train)
    for cls in (MatryoshkaSAE, MatryoshkaTranscoder):
        cls._out_of_core_chunk_rows = 256
    try:
        sae = MatryoshkaSAE(**COMMON, max_iter=5).fit(X_map)
        transcoder = MatryoshkaTranscoder(**COMMON, max_iter=5).fit(X_map, Y_map)
        transcoder_y_in_memory = MatryoshkaTranscoder(**COMMON, max_iter=4, loss="poisson").fit(
            X_map, Y_train)
    finally:
        for cls in (MatryoshkaSAE, MatryoshkaTranscoder):
            del cls._out_of_core_chunk_rows
    cases["sae_out_of_core"] = _outputs(sae, X_test)
    cases["transcoder_out_of_core"] = _outputs(transcoder, X_test)
    cases["transcoder_out_of_core_y_in_memory"] = _outputs(transcoder_y_in_memory, X_test)
    return cases


def fingerprint():
    """The numerical libraries that decide the last bits of a fit."""
    import threadpoolctl
    import torch

    blas = sorted(
        f"{info['internal_api']}:{info.get('architecture')}"
        for info in threadpoolctl.threadpool_info() if info["user_api"] == "blas"
    )
    return {
        "machine": platform.machine(),
        "blas": blas,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "numpy": ".".join(np.__version__.split(".")[:2]),
        "torch": torch.__version__.split("+")[0],
    }


def digest(array):
    array = np.ascontiguousarray(array)
    return hashlib.sha256(str(array.dtype).encode() + array.tobytes()).hexdigest()


def _flat(cases):
    return {f"{case}/{name}": array for case, arrays in cases.items()
            for name, array in arrays.items()}


def record(tmp_dir):
    arrays = _flat(fit_cases(tmp_dir))
    REFERENCE.parent.mkdir(exist_ok=True)
    np.savez_compressed(REFERENCE, **arrays)
    DIGESTS.write_text(json.dumps({
        "fingerprint": fingerprint(),
        "digests": {key: digest(value) for key, value in sorted(arrays.items())},
    }, indent=1) + "\n")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    return _flat(fit_cases(tmp_path_factory.mktemp("fit_digests")))


@pytest.fixture(scope="module")
def recorded():
    if not REFERENCE.exists():
        pytest.fail(f"{REFERENCE} is missing: record it from a known-good commit")
    with np.load(REFERENCE) as stored:
        arrays = {key: stored[key] for key in stored.files}
    return arrays, json.loads(DIGESTS.read_text())


def test_every_recorded_case_is_fitted(fitted, recorded):
    arrays, meta = recorded
    assert sorted(fitted) == sorted(arrays) == sorted(meta["digests"])


def test_fits_match_the_recorded_models(fitted, recorded):
    arrays, meta = recorded
    if meta["fingerprint"] == fingerprint():
        moved = [key for key in sorted(fitted) if digest(fitted[key]) != meta["digests"][key]]
        assert not moved, f"bitwise changes in {moved}"
        return
    # another machine or library versions: the same fits up to rounding
    for key in sorted(fitted):
        expected, actual = arrays[key], fitted[key]
        assert actual.shape == expected.shape, key
        if key.endswith("/codes"):
            agreement = np.mean((actual > 0) == (expected > 0))
            assert agreement > 0.97, (key, agreement)
        else:
            np.testing.assert_allclose(actual, expected, rtol=2e-2, atol=2e-2, err_msg=key)


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python tests/test_fit_digests.py --record")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        record(tmp)
    print(f"recorded {REFERENCE} and {DIGESTS}")
