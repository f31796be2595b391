"""The transformer encoder of ``MotifSAE`` (torch; fitting and its coding).

Each bin becomes a token: a convolution over the bins its kernel covers
(``t`` to ``t + n_bins_kernel - 1``, as the ``"conv"`` encoder) embeds it,
one pre-norm transformer layer lets it attend to the tokens of its stretch
within ``n_bins_kernel // 2`` bins on either side, and a linear readout
gives its pre-activations. Every operation is the same at every bin (no
absolute position), so the encoder is shift-equivariant up to float
rounding. The weights start from the estimator's NumPy ``RandomState``;
the global torch seed is never touched.
"""

import numpy as np
import torch
from torch import nn

WIDTH = 64
HEADS = 4
FEEDFORWARD = 128


def attention_reach(n_bins_kernel):
    """Tokens on either side that a token attends to."""
    return n_bins_kernel // 2


class TransformerEncoder(nn.Module):
    """Convolutional embedding, one local-attention layer, linear readout."""

    def __init__(self, n_units, n_bins_kernel, n_latents):
        super().__init__()
        self.embed = nn.Conv1d(n_units, WIDTH, n_bins_kernel)
        self.layer = nn.TransformerEncoderLayer(
            WIDTH, HEADS, dim_feedforward=FEEDFORWARD, dropout=0.0, batch_first=True,
            norm_first=True)
        self.readout = nn.Linear(WIDTH, n_latents)
        self.reach = attention_reach(n_bins_kernel)
        # the slow path always: the same arithmetic in training and coding
        self.train()

    def forward(self, x, token_valid):
        """Pre-activations (batch, latents, tokens) of inputs (batch, units, time).

        ``token_valid`` (batch, tokens): the tokens of the stretch; a token
        attends only to valid tokens within ``reach`` (and to itself).
        """
        tokens = self.embed(x).permute(0, 2, 1)
        n_tokens = tokens.shape[1]
        index = torch.arange(n_tokens, device=x.device)
        band = (index[:, None] - index[None, :]).abs() <= self.reach
        allowed = band[None] & token_valid[:, None, :]
        allowed = allowed | torch.eye(n_tokens, dtype=torch.bool, device=x.device)[None]
        mask = torch.zeros(allowed.shape, dtype=tokens.dtype, device=x.device)
        mask = mask.masked_fill(~allowed, -torch.inf)
        mask = mask.repeat_interleave(HEADS, dim=0)
        hidden = self.layer(tokens, src_mask=mask)
        return self.readout(hidden).permute(0, 2, 1)


def initialise(module, rng):
    """Weights from ``rng``: scaled normal matrices, unit norms, zero biases."""
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if parameter.ndim == 1:
                value = np.ones(parameter.shape) if "norm" in name and "weight" in name \
                    else np.zeros(parameter.shape)
            else:
                fan_in = int(np.prod(parameter.shape[1:]))
                value = rng.standard_normal(parameter.shape) / np.sqrt(fan_in)
            parameter.copy_(torch.as_tensor(value, dtype=parameter.dtype))
    return module


def state_arrays(module):
    """The module's weights as NumPy arrays (what the estimator stores)."""
    return {name: tensor.detach().cpu().numpy().copy()
            for name, tensor in module.state_dict().items()}


def from_state(state, n_units, n_bins_kernel, n_latents):
    """The module with stored weights, on the CPU."""
    module = TransformerEncoder(n_units, n_bins_kernel, n_latents)
    module.load_state_dict({name: torch.as_tensor(value) for name, value in state.items()})
    return module


@torch.no_grad()
def pre_activations(state, X_scaled, positions, lengths, n_bins_kernel, n_latents):
    """Pre-activations (n_bins, n_latents) of scaled bins, stretch by stretch."""
    module = from_state(state, X_scaled.shape[1], n_bins_kernel, n_latents)
    pre = np.empty((X_scaled.shape[0], n_latents), dtype=np.float64)
    for start in np.flatnonzero(positions == 0):
        stop = start + int(lengths[start])
        padded = np.zeros((stop - start + n_bins_kernel - 1, X_scaled.shape[1]),
                          dtype=np.float32)
        padded[: stop - start] = X_scaled[start:stop]
        x = torch.as_tensor(padded.T[None].copy())
        valid = torch.ones((1, stop - start), dtype=torch.bool)
        pre[start:stop] = module(x, valid)[0].T.double().numpy()
    return pre


__all__ = ["TransformerEncoder", "attention_reach", "from_state", "initialise",
           "pre_activations", "state_arrays"]
