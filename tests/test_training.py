"""Both forms of the training step against an independent autograd reference.

On the CPU a step runs in the fused compiled kernels; the autograd step (used
on other devices and for losses without a closed-form gradient) is forced on
the CPU with the trainer's ``_compiled`` flag, so that both are checked here.
"""

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sklearn_nldisco import MatryoshkaSAE
from sklearn_nldisco.models import _training_kernels as kernels
from sklearn_nldisco.models._initialisation import random_unit_rows
from sklearn_nldisco.models._spec import TrainingSpec
from sklearn_nldisco.models._training import (
    MatryoshkaTrainer,
    calibrate_threshold,
)

N_IN, N_OUT, N_LATENTS, BATCH = 7, 6, 24, 40
PATHS = pytest.mark.parametrize("compiled", [True, False], ids=["kernels", "autograd"])


def _trainer(loss, tied, sparsity, rng, compiled=True, level_sizes=(6, 12, 24), k=3):
    n_latents = level_sizes[-1]
    n_out = N_IN if tied else N_OUT
    decoder = random_unit_rows(n_latents, n_out, rng)
    encoder = (
        decoder.T.copy() if tied else random_unit_rows(n_latents, N_IN, rng).T.copy()
    )
    init = {
        "encoder_weight": encoder + 0.1 * rng.standard_normal(encoder.shape),
        "encoder_bias": 0.1 * rng.standard_normal(n_latents),
        "decoder_weight": decoder,
        "decoder_bias": 0.3 * rng.standard_normal(n_out),
        "input_bias": 0.2 * rng.standard_normal(N_IN),
    }
    estimator = MatryoshkaSAE(
        n_latents, k=k, level_sizes=level_sizes,
        level_weights=(1.0, 1.25, 1.5)[: len(level_sizes)], sparsity=sparsity, loss=loss,
        learning_rate=1e-3, grad_clip=None, aux_k=4, aux_coef=0.5,
    )
    # tied centring is tested with every loss, so it is set apart from the loss
    spec = dataclasses.replace(
        TrainingSpec.from_estimator(estimator, autoencoder=tied),
        tied=tied, dead_window_rows=100.0,
    )
    trainer = MatryoshkaTrainer(init, spec, torch.device("cpu"))
    trainer._compiled = compiled
    return trainer


def _autograd_reference(trainer, x, y, selection, n_dead, keep=None, level_masks=None):
    """Same loss written densely with autograd, given the same selection.

    With ``keep`` (masked training): the encoder sees the centred input with
    the hidden entries zeroed and the kept ones divided by ``1 - mask_fraction``;
    an autoencoder's level losses are means over the hidden entries. With
    ``level_masks`` (a per-level ``k``) each level decodes its own selection.
    """
    params = {name: t.clone().double().requires_grad_(True) for name, t in trainer.params.items()}
    x, y = x.double(), y.double()
    bias = params["decoder_bias"] if trainer.tied else trainer.input_bias.double()
    centred = x - bias
    weights = None
    if keep is not None:
        centred = centred * keep.double() / (1.0 - trainer.spec.mask_fraction)
        if trainer.spec.autoencoder:
            weights = (~keep).double()
    pre = centred @ params["encoder_weight"] + params["encoder_bias"]
    mask = torch.zeros_like(pre)
    mask[selection["rows"], selection["latents"]] = 1.0
    codes = pre * mask
    level_weights = trainer.level_weights.double()
    total = 0.0
    loss_name = trainer.spec.loss
    outputs = []
    def mean(entries):
        if weights is None:
            return entries.mean()
        return (entries * weights).sum() / weights.sum()

    for level, (level_weight, size) in enumerate(zip(level_weights, trainer.level_sizes)):
        level_codes = codes[:, :size] if level_masks is None else (
            pre[:, :size] * level_masks[level].double())
        linear = level_codes @ params["decoder_weight"][:size] + params["decoder_bias"]
        if loss_name == "mse":
            out = linear
            value = mean((linear - y).square())
        else:
            out = torch.nn.functional.softplus(linear)
            if loss_name == "poisson":
                value = mean(out - torch.xlogy(y, out + 1e-8))
            else:
                value = mean((torch.log1p(out) - torch.log1p(y)).square())
        outputs.append(out)
        total = total + level_weight * value
    if "aux_rows" in selection:
        aux_mask = torch.zeros_like(pre)
        aux_mask[selection["aux_rows"], selection["aux_latents"]] = 1.0
        aux_recon = (pre * aux_mask) @ params["decoder_weight"]
        residual = (y - outputs[-1]).detach()
        scale = trainer.spec.aux_coef * min(n_dead / trainer.spec.aux_k, 1.0)
        total = total + scale * (aux_recon - residual).square().sum() / residual.square().sum()
    total.backward()
    grads = {name: p.grad for name, p in params.items()}
    decoder = params["decoder_weight"].detach()
    grads["decoder_weight"] = grads["decoder_weight"] - (
        (grads["decoder_weight"] * decoder).sum(1, keepdim=True) * decoder
    )
    return grads


@PATHS
@pytest.mark.parametrize("loss", ["mse", "poisson", "msle"])
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("sparsity", ["batchtopk", "topk"])
@pytest.mark.parametrize("with_dead", [False, True])
def test_gradients_match_autograd(loss, tied, sparsity, with_dead, compiled):
    rng = np.random.RandomState(0)
    trainer = _trainer(loss, tied, sparsity, rng, compiled)
    x = torch.tensor(rng.poisson(1.5, size=(BATCH, N_IN)), dtype=torch.float32)
    y = x if tied else torch.tensor(rng.poisson(1.0, size=(BATCH, N_OUT)), dtype=torch.float32)
    n_dead = 0
    if with_dead:
        # Mark a third of the latents as silent for longer than the window.
        dead = np.arange(0, N_LATENTS, 3)
        trainer.samples_since_fired[dead] = 1e6
        n_dead = len(dead)
    out = trainer.gradients(x, y)
    selection = out["selection"]
    assert ("aux_rows" in selection) == with_dead
    if with_dead:
        # a latent selected in this batch is never treated as dead in it
        assert not set(selection["aux_latents"].tolist()) & set(selection["latents"].tolist())
    if with_dead:
        # the fired latents of this batch are no longer dead
        n_dead = int((trainer.samples_since_fired > trainer.spec.dead_window_rows).sum())
    reference = _autograd_reference(trainer, x, y, selection, n_dead)
    for name, grad in out["grads"].items():
        np.testing.assert_allclose(
            grad.numpy(), reference[name].numpy(), rtol=2e-4, atol=2e-6, err_msg=name
        )


@PATHS
@pytest.mark.parametrize("loss", ["mse", "poisson", "msle"])
@pytest.mark.parametrize("model", ["tied", "autoencoder", "transcoder"])
@pytest.mark.parametrize("sparsity", ["batchtopk", "topk"])
@pytest.mark.parametrize("with_dead", [False, True])
def test_masked_gradients_match_autograd(loss, model, sparsity, with_dead, compiled):
    """Masked training (``keep``) in both forms of the step, against the reference.

    ``tied``: the autoencoder centred on its decoder bias (the default of
    ``loss="mse"``), whose centring gradient passes through the mask;
    ``autoencoder``: untied, loss over the hidden entries; ``transcoder``:
    masked input, loss over every output.
    """
    rng = np.random.RandomState(5)
    autoencoder = model != "transcoder"
    trainer = _trainer(loss, autoencoder, sparsity, rng, compiled)  # outputs = inputs
    trainer.tied = model == "tied"
    trainer.spec = dataclasses.replace(trainer.spec, mask_fraction=0.3,
                                       autoencoder=autoencoder, tied=trainer.tied)
    x = torch.tensor(rng.poisson(1.5, size=(BATCH, N_IN)), dtype=torch.float32)
    y = x if autoencoder else torch.tensor(rng.poisson(1.0, size=(BATCH, N_OUT)),
                                           dtype=torch.float32)
    keep = torch.from_numpy(rng.random_sample((BATCH, N_IN)) >= 0.3)
    if with_dead:
        trainer.samples_since_fired[np.arange(0, N_LATENTS, 3)] = 1e6
    out = trainer.gradients(x, y, keep)
    selection = out["selection"]
    assert ("aux_rows" in selection) == with_dead
    n_dead = int((trainer.samples_since_fired > trainer.spec.dead_window_rows).sum())
    reference = _autograd_reference(trainer, x, y, selection, n_dead, keep)
    for name, grad in out["grads"].items():
        np.testing.assert_allclose(
            grad.numpy(), reference[name].numpy(), rtol=2e-4, atol=2e-6, err_msg=name
        )


@PATHS
@pytest.mark.parametrize("loss", ["mse", "poisson", "msle"])
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("with_dead", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_per_level_k_gradients_match_autograd(loss, tied, with_dead, masked, compiled):
    """A per-level ``k``: each level decodes its own BatchTopK selection."""
    rng = np.random.RandomState(7)
    trainer = _trainer(loss, tied, "batchtopk", rng, compiled)
    trainer.spec = dataclasses.replace(trainer.spec, k=(2, 3, 5),
                                       mask_fraction=0.3 if masked else 0.0)
    trainer.k = trainer.spec.k
    x = torch.tensor(rng.poisson(1.5, size=(BATCH, N_IN)), dtype=torch.float32)
    y = x if tied else torch.tensor(rng.poisson(1.0, size=(BATCH, N_OUT)), dtype=torch.float32)
    keep = torch.from_numpy(rng.random_sample((BATCH, N_IN)) >= 0.3) if masked else None
    if with_dead:
        trainer.samples_since_fired[np.arange(0, N_LATENTS, 3)] = 1e6
    # the levels' own selections, from the pre-activations the step will see
    bias = trainer.params["decoder_bias"] if tied else trainer.input_bias
    centred = x - bias
    if masked:
        centred = centred * keep.to(torch.float32) / 0.7
    pre = torch.addmm(trainer.params["encoder_bias"], centred, trainer.params["encoder_weight"])
    level_masks = trainer._level_masks(pre)
    out = trainer.gradients(x, y, keep)
    union = trainer._union(level_masks)
    rows, latents = torch.nonzero(union, as_tuple=True)
    assert torch.equal(out["selection"]["rows"], rows)
    assert torch.equal(out["selection"]["latents"], latents)
    for mask, k in zip(level_masks, (2, 3, 5)):
        assert int(mask.sum()) == k * BATCH
    n_dead = int((trainer.samples_since_fired > trainer.spec.dead_window_rows).sum())
    reference = _autograd_reference(trainer, x, y, out["selection"], n_dead, keep,
                                    level_masks)
    for name, grad in out["grads"].items():
        np.testing.assert_allclose(
            grad.numpy(), reference[name].numpy(), rtol=2e-4, atol=2e-6, err_msg=name
        )


@PATHS
def test_batchtopk_selects_exactly_k_times_batch(compiled):
    rng = np.random.RandomState(1)
    trainer = _trainer("mse", True, "batchtopk", rng, compiled)
    x = torch.tensor(rng.standard_normal((BATCH, N_IN)), dtype=torch.float32)
    _, pre = trainer._pre_activation(x)
    for guess in (0.0, 10.0, 1e-3, 1e6):  # a stale threshold must not change the result
        trainer._last_cut = guess
        rows, latents, values = trainer.select(pre)
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
        grads = trainer.gradients(x, y)["grads"]
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


@pytest.mark.parametrize("loss", ["mse", "poisson", "msle"])
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("sparsity", ["batchtopk", "topk"])
def test_kernels_match_torch_step(loss, tied, sparsity):
    """Same selection and gradients from both paths on a larger problem
    (latents spanning several 64-bit selection words, the last one partial)."""
    sizes = (40, 90, 150)
    batch = 64
    rng = np.random.RandomState(4)
    x = torch.tensor(rng.poisson(1.5, size=(batch, N_IN)), dtype=torch.float32)
    y = x if tied else torch.tensor(rng.poisson(1.0, size=(batch, N_OUT)), dtype=torch.float32)
    outputs = []
    for compiled in (True, False):
        trainer = _trainer(loss, tied, sparsity, np.random.RandomState(5), compiled, sizes, k=5)
        trainer.samples_since_fired[::7] = 1e6  # dead latents, so AuxK runs
        trainer._last_cut = 0.3
        outputs.append(trainer.gradients(x, y))
    fast, reference = outputs
    assert set(fast["selection"]) == set(reference["selection"]) >= {"aux_rows"}
    for name, indices in fast["selection"].items():
        np.testing.assert_array_equal(indices.numpy(), reference["selection"][name].numpy())
    assert fast["n_active"] == reference["n_active"]
    np.testing.assert_allclose(
        fast["level_losses"].numpy(), reference["level_losses"].numpy(), rtol=1e-5
    )
    np.testing.assert_allclose(fast["aux_loss"], reference["aux_loss"], rtol=1e-5)
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(
        list(reference["grads"].values())
    )))
    np.testing.assert_allclose(fast["grad_norm"], float(norm), rtol=1e-4)
    for name, grad in fast["grads"].items():
        expected = reference["grads"][name].numpy()
        np.testing.assert_allclose(
            grad.numpy(), expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max(),
            err_msg=name,
        )


def test_batchtopk_kernel_follows_torch_tie_rule():
    """With many equal pre-activations both paths keep the same entries.

    The budgets cover both tie rules (fewer or more extra candidates than
    kept entries) and fewer positive entries than the budget.
    """
    rng = np.random.RandomState(6)
    pre = torch.tensor(rng.randint(-3, 6, size=(50, 130)), dtype=torch.float32)
    for k in (1, 5, 12, 30, 60, 80):
        for last_cut in (0.0, 1.0, 3.0, 40.0):
            selections = []
            for compiled in (True, False):
                trainer = _trainer("mse", True, "batchtopk", rng, compiled, (130,), k)
                trainer._last_cut = last_cut
                selections.append(trainer.select(pre))
                selections.append(trainer._last_cut)
            for fast, reference in zip(selections[:2], selections[2:]):
                if isinstance(fast, float):
                    assert fast == reference
                    continue
                for a, b in zip(fast, reference):
                    np.testing.assert_array_equal(a.numpy(), b.numpy())


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(
        st.floats(min_value=0.0, exclude_min=True, width=32, allow_nan=False),
        min_size=1, max_size=300,
    ),
    data=st.data(),
)
def test_radix_selection_gives_the_ranked_value(values, data):
    """Positive floats, subnormal to infinite, are ranked by their bit patterns."""
    values = np.asarray(values, dtype=np.float32)
    rank = data.draw(st.integers(0, len(values) - 1))
    assert kernels._smallest(values.copy(), rank) == np.sort(values)[rank]


def test_kernel_steps_are_bitwise_reproducible():
    rng = np.random.RandomState(7)
    batches = [
        torch.tensor(rng.poisson(1.5, size=(BATCH, N_IN)), dtype=torch.float32)
        for _ in range(5)
    ]
    states = []
    for _ in range(2):
        trainer = _trainer("mse", True, "batchtopk", np.random.RandomState(8))
        for x in batches:
            trainer.step(x, x, 1e-2)
        states.append(trainer.state())
    for name, value in states[0].items():
        np.testing.assert_array_equal(value, states[1][name], err_msg=name)


def test_kernel_and_torch_steps_stay_together_with_clipping():
    """Whole optimiser steps (clipped gradients, Adam, unit decoder rows)
    from both paths give the same parameters up to float rounding."""
    rng = np.random.RandomState(9)
    batches = [
        torch.tensor(rng.poisson(1.5, size=(BATCH, N_IN)), dtype=torch.float32)
        for _ in range(4)
    ]
    states = []
    for compiled in (True, False):
        trainer = _trainer("mse", True, "batchtopk", np.random.RandomState(10), compiled)
        trainer.spec = dataclasses.replace(trainer.spec, grad_clip=0.05)  # clips every step
        for x in batches:
            trainer.step(x, x, 1e-2)
        states.append(trainer.state())
    for name, value in states[0].items():
        np.testing.assert_allclose(value, states[1][name], rtol=1e-4, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(np.linalg.norm(states[0]["decoder_weight"], axis=1), 1.0, rtol=1e-6)


@PATHS
def test_batchtopk_ignores_a_cut_that_is_not_finite(compiled):
    rng = np.random.RandomState(11)
    trainer = _trainer("mse", True, "batchtopk", rng, compiled)
    pre = torch.tensor(rng.standard_normal((BATCH, N_LATENTS)), dtype=torch.float32)
    expected = np.sort(torch.topk(pre.reshape(-1), 3 * BATCH).values.numpy())
    for stale in (np.inf, np.nan):
        trainer._last_cut = stale
        _, _, values = trainer.select(pre)
        np.testing.assert_array_equal(np.sort(values.numpy()), expected)


@pytest.mark.parametrize("loss", ["mse", "poisson"])
def test_masked_step_scores_hidden_entries_only(loss):
    """With ``keep``, the autoencoder's level losses are means over the hidden entries.

    Checked against the loss recomputed by hand from the same parameters,
    masked input and selection.
    """
    rng = np.random.default_rng(3)
    trainer = _trainer(loss, True, "topk", rng, compiled=False)
    trainer.spec = dataclasses.replace(trainer.spec, mask_fraction=0.25, autoencoder=True,
                                       aux_coef=0.0)
    x = torch.from_numpy(np.abs(rng.standard_normal((BATCH, N_IN))).astype(np.float32))
    keep = torch.from_numpy(rng.random((BATCH, N_IN)) >= 0.25)
    out = trainer.gradients(x, x, keep)
    params = {name: t.double() for name, t in trainer.params.items()}
    bias = params["decoder_bias"]
    centred = (x.double() - bias) * keep.double() / 0.75
    pre = centred @ params["encoder_weight"] + params["encoder_bias"]
    codes = torch.zeros_like(pre)
    rows, latents = out["selection"]["rows"], out["selection"]["latents"]
    codes[rows, latents] = pre[rows, latents]
    hidden = ~keep
    for level, size in enumerate(trainer.level_sizes):
        linear = codes[:, :size] @ params["decoder_weight"][:size] + bias
        if loss == "mse":
            entries = (linear - x.double()).square()
        else:
            rate = torch.nn.functional.softplus(linear)
            target = x.double()
            entries = torch.xlogy(target, target) - torch.xlogy(target, rate + 1e-8) - target + rate
        expected = entries[hidden].mean()
        np.testing.assert_allclose(float(out["level_losses"][level]), float(expected), rtol=1e-4)


def test_masked_training_is_reproducible():
    X = np.random.default_rng(1).poisson(2.0, size=(400, 10)).astype(float)
    fit = [MatryoshkaSAE(n_latents=16, k=2, max_iter=3, mask_fraction=0.5,
                         random_state=0).fit(X) for _ in range(2)]
    np.testing.assert_array_equal(fit[0].components_, fit[1].components_)
    other = MatryoshkaSAE(n_latents=16, k=2, max_iter=3, mask_fraction=0.5,
                          random_state=1).fit(X)
    assert not np.array_equal(fit[0].components_, other.components_)
