"""The hand-written sparse forward/backward pass against torch autograd."""

import numpy as np
import pytest
import torch

from sklearn_nldisco.models._init import random_unit_rows
from sklearn_nldisco.models._training import (
    MatryoshkaTrainer,
    calibrate_threshold,
    with_quiet_sparse_warnings,
)

N_IN, N_OUT, N_LATENTS, BATCH = 7, 6, 24, 40


def _trainer(loss, tied, sparsity, rng):
    n_out = N_IN if tied else N_OUT
    decoder = random_unit_rows(N_LATENTS, n_out, rng)
    encoder = (
        decoder.T.copy() if tied else random_unit_rows(N_LATENTS, N_IN, rng).T.copy()
    )
    init = {
        "encoder_weight": encoder + 0.1 * rng.standard_normal(encoder.shape),
        "encoder_bias": 0.1 * rng.standard_normal(N_LATENTS),
        "decoder_weight": decoder,
        "decoder_bias": 0.3 * rng.standard_normal(n_out),
        "input_bias": 0.2 * rng.standard_normal(N_IN),
    }
    config = {
        "level_sizes": (6, 12, 24), "level_weights": (1.0, 1.25, 1.5), "k": 3,
        "sparsity": sparsity, "loss": loss, "tie_input_bias": tied,
        "learning_rate": 1e-3, "grad_clip": None, "aux_k": 4, "aux_coef": 0.5,
        "dead_window": 100.0,
    }
    return MatryoshkaTrainer(init, config, torch.device("cpu"))


def _autograd_reference(trainer, x, y, selection, n_dead):
    """Same loss written densely with autograd, given the same selection."""
    params = {name: t.clone().double().requires_grad_(True) for name, t in trainer.params.items()}
    x, y = x.double(), y.double()
    bias = params["decoder_bias"] if trainer.tied else trainer.input_bias.double()
    pre = (x - bias) @ params["encoder_weight"] + params["encoder_bias"]
    mask = torch.zeros_like(pre)
    mask[selection["rows"], selection["latents"]] = 1.0
    codes = pre * mask
    weights = trainer.level_weights.double()
    total = 0.0
    loss_name = trainer.config["loss"]
    outputs = []
    for weight, size in zip(weights, trainer.level_sizes):
        linear = codes[:, :size] @ params["decoder_weight"][:size] + params["decoder_bias"]
        if loss_name == "mse":
            out = linear
            value = (linear - y).square().mean()
        else:
            out = torch.nn.functional.softplus(linear)
            if loss_name == "poisson":
                value = (out - torch.xlogy(y, out + 1e-8)).mean()
            else:
                value = (torch.log1p(out) - torch.log1p(y)).square().mean()
        outputs.append(out)
        total = total + weight * value
    if "aux_rows" in selection:
        aux_mask = torch.zeros_like(pre)
        aux_mask[selection["aux_rows"], selection["aux_latents"]] = 1.0
        aux_recon = (pre * aux_mask) @ params["decoder_weight"]
        residual = (y - outputs[-1]).detach()
        scale = trainer.config["aux_coef"] * min(n_dead / trainer.config["aux_k"], 1.0)
        total = total + scale * (aux_recon - residual).square().sum() / residual.square().sum()
    total.backward()
    grads = {name: p.grad for name, p in params.items()}
    decoder = params["decoder_weight"].detach()
    grads["decoder_weight"] = grads["decoder_weight"] - (
        (grads["decoder_weight"] * decoder).sum(1, keepdim=True) * decoder
    )
    return grads


@pytest.mark.parametrize("loss", ["mse", "poisson", "msle"])
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("sparsity", ["batchtopk", "topk"])
@pytest.mark.parametrize("with_dead", [False, True])
def test_gradients_match_autograd(loss, tied, sparsity, with_dead):
    rng = np.random.RandomState(0)
    trainer = _trainer(loss, tied, sparsity, rng)
    x = torch.tensor(rng.poisson(1.5, size=(BATCH, N_IN)), dtype=torch.float32)
    y = x if tied else torch.tensor(rng.poisson(1.0, size=(BATCH, N_OUT)), dtype=torch.float32)
    n_dead = 0
    if with_dead:
        # Mark a third of the latents as silent for longer than the window.
        dead = np.arange(0, N_LATENTS, 3)
        trainer.samples_since_fired[dead] = 1e6
        n_dead = len(dead)
    out = with_quiet_sparse_warnings(trainer.gradients, x, y)
    selection = out["selection"]
    assert ("aux_rows" in selection) == with_dead
    if with_dead:
        # a latent selected in this batch is never treated as dead in it
        assert not set(selection["aux_latents"].tolist()) & set(selection["latents"].tolist())
    if with_dead:
        # the fired latents of this batch are no longer dead
        n_dead = int((trainer.samples_since_fired > trainer.config["dead_window"]).sum())
    reference = _autograd_reference(trainer, x, y, selection, n_dead)
    for name, grad in out["grads"].items():
        np.testing.assert_allclose(
            grad.numpy(), reference[name].numpy(), rtol=2e-4, atol=2e-6, err_msg=name
        )


def test_batchtopk_selects_exactly_k_times_batch():
    rng = np.random.RandomState(1)
    trainer = _trainer("mse", True, "batchtopk", rng)
    x = torch.tensor(rng.standard_normal((BATCH, N_IN)), dtype=torch.float32)
    _, pre = trainer._pre_activation(x)
    for guess in (0.0, 10.0, 1e-3, 1e6):  # a stale threshold must not change the result
        trainer._last_cut = guess
        rows, latents, values = trainer._select_batch_topk(pre)
        expected = torch.topk(torch.relu(pre).reshape(-1), 3 * BATCH).values
        np.testing.assert_allclose(
            np.sort(values.numpy()), np.sort(expected.numpy()), rtol=0, atol=0
        )
        np.testing.assert_array_equal(pre[rows, latents].numpy(), values.numpy())


def test_calibrated_threshold_gives_mean_l0_k():
    rng = np.random.RandomState(2)
    trainer = _trainer("mse", True, "batchtopk", rng)
    x = rng.standard_normal((500, N_IN)).astype(np.float32)
    theta = calibrate_threshold(trainer, x, 3, chunk_rows=64)
    _, pre = trainer._pre_activation(torch.from_numpy(x))
    assert int((pre > theta).sum()) == 3 * 500


def test_optimizer_step_matches_reference_adam():
    """The fast Adam path equals plain single-tensor Adam on the same gradients."""
    rng = np.random.RandomState(3)
    trainer = _trainer("mse", False, "batchtopk", rng)
    reference = {name: t.clone() for name, t in trainer.params.items()}
    optimizer = torch.optim.Adam(list(reference.values()), lr=1e-2, foreach=False)
    x = torch.tensor(rng.poisson(1.5, size=(BATCH, N_IN)), dtype=torch.float32)
    y = torch.tensor(rng.poisson(1.0, size=(BATCH, N_OUT)), dtype=torch.float32)
    for _ in range(3):
        grads = with_quiet_sparse_warnings(trainer.gradients, x, y)["grads"]
        for name, tensor in reference.items():
            tensor.grad = grads[name].clone()
        optimizer.step()
        decoder = reference["decoder_weight"]
        decoder /= decoder.norm(dim=1, keepdim=True)
        trainer._apply(grads, 1e-2)
        for name, tensor in reference.items():
            np.testing.assert_allclose(
                trainer.params[name].numpy(), tensor.numpy(), rtol=1e-5, atol=1e-6,
                err_msg=name,
            )
