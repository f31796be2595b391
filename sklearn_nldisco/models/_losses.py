"""Reconstruction losses and their output links.

A loss is defined by ``loss_values_torch`` (its value, differentiated by
torch autograd in every training step but the fused CPU one) and its output
link in NumPy (``link_numpy``, used at inference, so that a fitted model
never needs torch). The fused CPU step of the single-bin linear model also
has the closed-form gradient of the losses in ``CLOSED_FORM_LOSSES``
(``loss_and_grad_torch``; checked against autograd in the tests); a loss
without one trains through autograd on every device.

``"mse"``
    Squared error on the (scaled) target, identity link. The default; right
    for smoothed rates or z-scored activity.
``"poisson"``
    Poisson deviance of raw counts, softplus link (the output is a rate, always
    positive). The natural likelihood for spike counts; use it on unscaled,
    unsmoothed counts.
``"msle"``
    Squared error of ``log1p`` of raw non-negative targets, softplus link. It
    compresses bursts, so high-rate units do not dominate the fit.
"""

import numpy as np

LOSSES = ("mse", "poisson", "msle")
# Losses whose gradient the fused CPU step has in closed form.
CLOSED_FORM_LOSSES = ("mse", "poisson", "msle")
# Losses whose target must stay in count units (non-negative, unscaled).
NONNEGATIVE_LOSSES = ("poisson", "msle")

_EPS = 1e-8


def check_nonnegative(array, name, loss):
    """``"poisson"`` and ``"msle"`` model counts: negative targets are an error."""
    if loss in NONNEGATIVE_LOSSES:
        minimum = array.min() if array.size else 0.0
        if minimum < 0:
            raise ValueError(
                f"{name} has negative values (minimum {minimum:g}) but loss={loss!r} "
                "models non-negative counts; expected values >= 0, or use loss='mse'."
            )


def link_numpy(linear, loss):
    """Apply the output link of ``loss`` to a linear predictor, in place."""
    if loss == "mse":
        return linear
    # softplus, written to avoid overflow for large arguments
    return np.logaddexp(0.0, linear, out=linear)


def inverse_link_numpy(values, loss):
    """Inverse of the output link (used to initialise the output bias)."""
    if loss == "mse":
        return values
    values = np.maximum(values, 1e-3)
    # inverse softplus: log(expm1(y))
    return values + np.log(-np.expm1(-values))


def loss_values_torch(linear, target, loss, weights=None):
    """Mean loss per level (differentiable) and the output after the link.

    Parameters
    ----------
    linear : torch.Tensor of shape (n_levels, batch, n_outputs)
        Linear predictor of each level's reconstruction.
    target : torch.Tensor of shape (batch, n_outputs)
    loss : {"mse", "poisson", "msle"}
    weights : torch.Tensor of shape (batch, n_outputs), default=None
        Weight of each entry (masked-unit training scores the hidden entries
        only): the loss is the weighted mean. None weighs every entry
        equally.

    Returns
    -------
    values : torch.Tensor of shape (n_levels,)
        Mean loss of each level (Poisson: mean deviance / 2).
    output : torch.Tensor, same shape as ``linear``
        The reconstruction after the output link.
    """
    import torch

    if weights is None:
        size = target.numel()
        if loss == "mse":
            values = torch.linalg.vector_norm(linear - target, dim=(1, 2)).square() / size
            return values, linear
    else:
        size = weights.sum().clamp_min(1.0)

    def total(entries):
        weighted = entries if weights is None else entries * weights
        return weighted.sum(dim=(1, 2)) / size

    if loss == "mse":
        return total((linear - target).square()), linear
    rate = torch.nn.functional.softplus(linear)
    if loss == "poisson":
        # unit deviance / 2: y log(y / mu) - (y - mu), zero at a perfect fit
        log_ratio = torch.xlogy(target, target) - torch.xlogy(target, rate + _EPS)
        return total(log_ratio - target + rate), rate
    residual = torch.log1p(rate) - torch.log1p(target)
    return total(residual.square()), rate


def loss_and_grad_torch(linear, target, loss, weights=None):
    """Mean loss per level and its closed-form gradient with respect to ``linear``.

    For the fused CPU step's count losses (``"poisson"``, ``"msle"``; its
    kernels handle ``"mse"`` entirely); the values are those of
    ``loss_values_torch``, with the same ``weights``.

    Parameters
    ----------
    linear : torch.Tensor of shape (n_levels, batch, n_outputs)
        Linear predictor of each level's reconstruction.
    target : torch.Tensor of shape (batch, n_outputs)
        Target of the reconstruction.
    loss : {"poisson", "msle"}
    weights : torch.Tensor of shape (batch, n_outputs), default=None
        Weight of each entry (masked training); the loss is the weighted
        mean, and ``grad`` includes the weights.

    Returns
    -------
    values : torch.Tensor of shape (n_levels,)
        Mean loss of each level (Poisson: mean deviance / 2).
    grad, grad_factor : torch.Tensor (same shape as ``linear``) and float
        The gradient of each level's mean loss with respect to its predictor
        is ``grad * grad_factor`` (the scalar is kept apart so that callers
        can fold it into their own weighting without another pass).
    output : torch.Tensor, same shape as ``linear``
        The reconstruction after the output link.
    """
    import torch

    if loss == "mse":
        raise ValueError("the fused step decodes and differentiates 'mse' itself")
    size = target.numel() if weights is None else float(weights.sum().clamp_min(1.0))

    def weighted(entries):
        return entries if weights is None else entries * weights

    rate = torch.nn.functional.softplus(linear)
    slope = torch.sigmoid(linear)
    if loss == "poisson":
        # unit deviance / 2: y log(y / mu) - (y - mu), zero at a perfect fit
        log_ratio = torch.xlogy(target, target) - torch.xlogy(target, rate + _EPS)
        values = weighted(log_ratio - target + rate).sum(dim=(1, 2)) / size
        grad = weighted((1.0 - target / (rate + _EPS)) * slope)
        return values, grad, 1.0 / size, rate
    # msle
    residual = torch.log1p(rate) - torch.log1p(target)
    values = weighted(residual.square()).sum(dim=(1, 2)) / size
    grad = weighted(residual / (1.0 + rate) * slope)
    return values, grad, 2.0 / size, rate
