"""The CUDA path: same results as the CPU, and GPU-trained models that load anywhere.

The tests that need a GPU skip without one; on a machine with CUDA they run.
On every machine, the device-independent autograd step (the one CUDA runs) is
forced on the CPU for whole fits and compared with the CPU's compiled
kernels, so the CUDA path's arithmetic is tested even where no GPU is.
"""

import os
import subprocess
import sys

import joblib
import numpy as np
import pytest

from sklearn_nldisco import MatryoshkaSAE, MatryoshkaTranscoder
from sklearn_nldisco.models import _training

torch = pytest.importorskip("torch")

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device; this machine has none")


def _data(n_samples=2048, n_features=24, seed=0):
    rng = np.random.RandomState(seed)
    loadings = rng.gamma(1.0, 1.0, size=(6, n_features)) * (rng.rand(6, n_features) < 0.3)
    activity = rng.exponential(1.0, size=(n_samples, 6)) * (rng.rand(n_samples, 6) < 0.2)
    return rng.poisson(1.0 + activity @ loadings * 3).astype(np.float64)


@pytest.fixture
def torch_step_on_cpu(monkeypatch):
    """Every trainer built while active runs the autograd step, as on CUDA."""
    original = _training.MatryoshkaTrainer.__init__

    def torch_step(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self._compiled = False

    def enable():
        monkeypatch.setattr(_training.MatryoshkaTrainer, "__init__", torch_step)

    return enable


@pytest.mark.parametrize("Estimator", [MatryoshkaSAE, MatryoshkaTranscoder])
@pytest.mark.parametrize("loss", ["mse", "poisson"])
@pytest.mark.parametrize("sparsity", ["batchtopk", "topk"])
def test_torch_step_trains_the_model_of_the_cpu_kernels(
    torch_step_on_cpu, Estimator, loss, sparsity
):
    """Whole fits through the CUDA path's autograd step, on the CPU, against the kernels.

    The two implementations round differently (float32 sums in another
    order), so they agree to rounding, not bitwise: measured after 10
    epochs, SAE parameters within 2.1e-7 and scores within 3e-9; a
    transcoder's score moves by up to 4e-6 where a code at the threshold
    flips.
    """
    X = _data()
    settings = dict(n_latents=32, k=4, loss=loss, sparsity=sparsity, max_iter=6,
                    early_stopping=False, batch_size=256, random_state=0, device="cpu")
    args = (X,) if Estimator is MatryoshkaSAE else (X[:, :12], X[:, 12:])
    kernels = Estimator(**settings).fit(*args)
    torch_step_on_cpu()
    portable = Estimator(**settings).fit(*args)
    assert portable.device_ == kernels.device_ == "cpu"
    for name in ("components_", "encoder_weight_", "encoder_bias_", "decoder_bias_"):
        np.testing.assert_allclose(getattr(portable, name), getattr(kernels, name),
                                   atol=1e-5, err_msg=name)
    assert portable.threshold_ == pytest.approx(kernels.threshold_, rel=1e-5)
    assert portable.score(*args) == pytest.approx(kernels.score(*args), abs=1e-4)
    np.testing.assert_allclose(portable.history_["train_loss"], kernels.history_["train_loss"],
                               rtol=1e-5)
    assert np.array_equal(portable.dead_latents_, kernels.dead_latents_)


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
