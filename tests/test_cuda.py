"""The CUDA path: same results as the CPU, and GPU-trained models that load anywhere.

The tests that need a GPU skip without one; on a machine with CUDA they run.
"""

import os
import subprocess
import sys

import joblib
import numpy as np
import pytest

from sklearn_nldisco import MatryoshkaSAE, MatryoshkaTranscoder

torch = pytest.importorskip("torch")

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device; this machine has none")


def _data(n_samples=2048, n_features=24, seed=0):
    rng = np.random.RandomState(seed)
    loadings = rng.gamma(1.0, 1.0, size=(6, n_features)) * (rng.rand(6, n_features) < 0.3)
    activity = rng.exponential(1.0, size=(n_samples, 6)) * (rng.rand(n_samples, 6) < 0.2)
    return rng.poisson(1.0 + activity @ loadings * 3).astype(np.float64)


def test_cuda_without_a_device_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the error is for machines without it")
    with pytest.raises(ValueError, match="CUDA is not available"):
        MatryoshkaSAE(n_latents=8, k=2, max_iter=1, device="cuda").fit(_data(256))


@needs_cuda
@pytest.mark.parametrize("loss", ["mse", "poisson"])
def test_cuda_fit_matches_cpu(loss):
    X = _data()
    settings = dict(n_latents=32, k=4, loss=loss, max_iter=3, early_stopping=False,
                    batch_size=256, random_state=0)
    cpu = MatryoshkaSAE(device="cpu", **settings).fit(X)
    gpu = MatryoshkaSAE(device="cuda", **settings).fit(X)
    assert gpu.device_.startswith("cuda") and cpu.device_ == "cpu"
    # the same steps in float32 on both devices: equal up to rounding
    np.testing.assert_allclose(gpu.components_, cpu.components_, atol=1e-3)
    np.testing.assert_allclose(gpu.encoder_weight_, cpu.encoder_weight_, atol=1e-3)
    assert gpu.score(X) == pytest.approx(cpu.score(X), abs=1e-3)


@needs_cuda
def test_gpu_trained_models_load_and_code_without_cuda(tmp_path):
    X = _data()
    sae = MatryoshkaSAE(n_latents=32, k=4, max_iter=3, device="cuda", random_state=0).fit(X)
    transcoder = MatryoshkaTranscoder(n_latents=32, k=4, max_iter=3, device="cuda",
                                      random_state=0).fit(X[:, :12], X[:, 12:])
    path = tmp_path / "models.joblib"
    joblib.dump((sae, transcoder), path)
    expected = (sae.transform(X), transcoder.predict(X[:, :12]))
    np.save(tmp_path / "X.npy", X)
    script = (
        "import sys, joblib, numpy as np\n"
        f"sae, transcoder = joblib.load({str(path)!r})\n"
        f"X = np.load({str(tmp_path / 'X.npy')!r})\n"
        f"np.save({str(tmp_path / 'codes.npy')!r}, sae.transform(X))\n"
        f"np.save({str(tmp_path / 'pred.npy')!r}, transcoder.predict(X[:, :12]))\n"
    )
    # a process that sees no GPU stands for a machine without one
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "codes.npy"), expected[0])
    np.testing.assert_array_equal(np.load(tmp_path / "pred.npy"), expected[1])
