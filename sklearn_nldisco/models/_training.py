"""The trainer of the Matryoshka sparse encoder-decoder (the torch module).

``MatryoshkaTrainer`` holds the parameters and the optimiser and takes one
step on a batch; the driver (``_driver``) decides which batches. A step
exists in two forms behind one interface (``gradients``):

* the fused CPU step of the single-bin linear model, for the losses with a
  closed-form gradient: torch computes the only dense product, the encoder's
  ``(x - b_pre) W_enc + b_enc``, and compiled kernels
  (``_training_kernels``) do everything after it on NumPy views of the
  tensors, in a few passes that touch only the selected latents (the
  decoding of every level from the ``k`` active decoder rows, and the sparse
  encoder gradient);
* every other case (a GPU, a loss without a closed form, and the encoders
  to come) goes through torch autograd on the same loss, written densely.

``tests/test_training.py`` checks both against an independent autograd
reference. All state is fp32. Randomness comes from a NumPy ``RandomState``
handed in by the driver; the global torch seed is never touched.
"""

import numpy as np
import torch

from . import _training_kernels as kernels
from ._losses import CLOSED_FORM_LOSSES, loss_and_grad_torch, loss_values_torch

PARAMETER_NAMES = ("encoder_weight", "encoder_bias", "decoder_weight", "decoder_bias")


def _row_topk_sorted_by_column(matrix, k):
    """Per-row top-k, flattened row-major with columns ascending in each row."""
    values, columns = torch.topk(matrix, k, dim=1, sorted=False)
    columns, order = torch.sort(columns, dim=1)
    values = torch.gather(values, 1, order)
    return values.reshape(-1), columns.reshape(-1)


#: the devices the models train on (``"cuda"`` with or without an index)
DEVICES = ("auto", "cpu", "cuda", "cuda:<index>")


def resolve_device(device):
    """Map ``"auto"`` to CUDA when available, else CPU; validate the rest.

    Anything but one of ``DEVICES`` is a ``ValueError``, as is CUDA (or a
    CUDA index) that this machine does not have.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    expected = "expected one of " + ", ".join(repr(name) for name in DEVICES)
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device!r} is not a device the models train on; {expected}.")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but CUDA is not available; "
            "use device='cpu' or device='auto'."
        )
    if resolved.type == "cuda" and resolved.index is not None and (
            resolved.index >= torch.cuda.device_count()):
        raise ValueError(
            f"device={device!r} was requested but this machine has "
            f"{torch.cuda.device_count()} CUDA device(s); {expected}, with an index "
            "below that count."
        )
    return resolved


def _adam_implementation(device):
    """The fused Adam kernel where this torch has it (CPU and CUDA), else foreach."""
    try:
        torch.optim.Adam([torch.zeros(1, device=device)], fused=True)
    except (RuntimeError, TypeError, ValueError):
        return {"foreach": device.type == "cuda"}
    return {"fused": True}


class MatryoshkaTrainer:
    """Parameters, optimiser and one training step of the sparse coder.

    Parameters
    ----------
    init : dict of ndarray
        Initial ``encoder_weight`` (n_inputs, n_latents), ``encoder_bias``
        (n_latents,), ``decoder_weight`` (n_latents, n_outputs, unit rows),
        ``decoder_bias`` (n_outputs,) and ``input_bias`` (n_inputs,).
    spec : TrainingSpec
        Resolved settings (``dead_window_rows`` set by ``for_rows``).
    device : torch.device
    """

    def __init__(self, init, spec, device):
        self.spec = spec
        self.device = device
        self.params = {
            name: torch.tensor(init[name], dtype=torch.float32, device=device)
            for name in PARAMETER_NAMES
        }
        self.tied = spec.tied
        self.input_bias = torch.tensor(
            init["input_bias"], dtype=torch.float32, device=device
        )
        self.level_sizes = list(spec.level_sizes)
        self.n_levels = len(self.level_sizes)
        self.n_latents = self.level_sizes[-1]
        weights = torch.tensor(spec.level_weights, dtype=torch.float32)
        self.level_weights = (weights / weights.sum()).to(device)
        self._level_weight_values = [float(w) for w in weights / weights.sum()]
        band = np.zeros(self.n_latents, dtype=np.int64)
        for start in self.level_sizes[:-1]:
            band[start:] += 1
        self.band_of_latent = torch.from_numpy(band).to(device)
        self.k = spec.k
        # Inference threshold of the held-out codes (BatchTopK): set by evaluate.
        self.threshold = 0.0
        # Smallest value kept by the previous BatchTopK step (a search hint;
        # one per level for a per-level k, on the CPU kernels' path).
        self._last_cut = 0.0
        self._last_cuts = np.zeros(len(spec.level_sizes))
        self.samples_since_fired = torch.zeros(
            self.n_latents, dtype=torch.float64, device=device
        )
        for tensor in self.params.values():
            tensor.requires_grad_(False)
        self.optimizer = torch.optim.Adam(
            list(self.params.values()),
            lr=spec.learning_rate,
            betas=(0.9, 0.999),
            eps=1e-8,
            **_adam_implementation(device),
        )
        self.step_count = 0
        # On the CPU the sparse part of a step runs in compiled kernels on
        # NumPy views of the tensors; elsewhere in torch (the flag forces the
        # torch path on the CPU too, for tests).
        self._compiled = device.type == "cpu" and spec.loss in CLOSED_FORM_LOSSES
        self._level_sizes_array = np.asarray(self.level_sizes, dtype=np.int64)
        self._latent_indices = np.arange(self.n_latents, dtype=np.int64)

    # ------------------------------------------------------------------ helpers
    def _pre_activation(self, x):
        bias = self.params["decoder_bias"] if self.tied else self.input_bias
        centred = x - bias
        return centred, torch.addmm(
            self.params["encoder_bias"], centred, self.params["encoder_weight"]
        )

    def _select_batch_topk(self, pre):
        """Rows, latents and values of the k * batch largest positive entries.

        Exact BatchTopK; the previous step's threshold is used only to cut the
        candidate set before the selection, with a fallback when it cuts too
        much.
        """
        batch, n_latents = pre.shape
        budget = self.k * batch
        flat = pre.reshape(-1)
        # The cut of consecutive batches moves little: start just below the
        # last one and widen only when too few candidates pass.
        guess = 0.95 * self._last_cut
        if not np.isfinite(guess):
            guess = 0.0  # a cut that is not finite (diverged training) tells nothing
        while True:
            candidates = torch.nonzero(flat > guess).squeeze(1)
            if candidates.numel() >= budget or guess <= 0.0:
                break
            guess = 0.0 if guess < 1e-6 else guess * 0.5
        values = flat[candidates]
        n_extra = values.numel() - budget
        if n_extra > 0:
            # drop the n_extra smallest (cheaper than keeping the budget largest)
            if n_extra < budget:
                cut = torch.topk(values, n_extra, largest=False, sorted=False).values.max()
                keep = values > cut
            else:
                cut = torch.topk(values, budget, sorted=False).values.min()
                keep = values >= cut
            candidates = candidates[keep]
            values = values[keep]
        if values.numel():
            self._last_cut = float(values.min())
        return candidates // n_latents, candidates % n_latents, values

    def _level_masks(self, pre):
        """Per-level BatchTopK: level ``i`` keeps the ``k_i * batch`` largest
        positive entries of ``pre[:, :level_sizes[i]]`` (one boolean mask
        per level, each of its level's width)."""
        batch = pre.shape[0]
        masks = []
        for size, budget in zip(self.level_sizes, self.k):
            flat = pre[:, :size].reshape(-1)
            values, positions = torch.topk(flat, min(budget * batch, flat.numel()),
                                           sorted=False)
            mask = torch.zeros(flat.numel(), dtype=torch.bool, device=pre.device)
            mask[positions[values > 0]] = True
            masks.append(mask.reshape(batch, size))
        return masks

    def _union(self, masks):
        """A latent is active in a row when a level that contains it selects it."""
        union = torch.zeros((masks[0].shape[0], self.n_latents), dtype=torch.bool,
                            device=masks[0].device)
        for mask in masks:
            union[:, : mask.shape[1]] |= mask
        return union

    def _select_topk(self, pre):
        batch = pre.shape[0]
        k = min(self.k, pre.shape[1])
        values, latents = _row_topk_sorted_by_column(pre, k)
        rows = torch.arange(batch, device=pre.device).repeat_interleave(k)
        keep = values > 0
        return rows[keep], latents[keep], values[keep]

    def select(self, pre):
        """Rows, latents and values of the entries kept by the sparsity rule.

        Rows are in order and latents ascending within each row.
        """
        if self.spec.per_level_k:
            rows, latents = torch.nonzero(self._union(self._level_masks(pre)), as_tuple=True)
            return rows, latents, pre[rows, latents]
        if self._use_kernels(pre):
            _, rows, latents, values = self._select_csr(pre.numpy())
            return torch.from_numpy(rows), torch.from_numpy(latents), torch.from_numpy(values)
        if self.spec.sparsity == "batchtopk":
            return self._select_batch_topk(pre)
        return self._select_topk(pre)

    def _use_kernels(self, tensor):
        return self._compiled and tensor.device.type == "cpu"

    def _select_csr(self, pre):
        """The selection of a NumPy ``pre``: ``(row_pointers, rows, latents, values)``."""
        if self.spec.per_level_k:
            return self._select_levels_csr(pre)[:4]
        if self.spec.sparsity == "batchtopk":
            row_pointers, rows, latents, values, smallest = kernels.batch_topk(
                pre, self.k * pre.shape[0], 0.95 * self._last_cut
            )
            if latents.shape[0]:
                self._last_cut = smallest
            return row_pointers, rows, latents, values
        return kernels.row_topk(pre, self._latent_indices, self.k)

    def _select_levels_csr(self, pre):
        """Per-level BatchTopK of a NumPy ``pre`` (as :meth:`_level_masks`):
        ``(row_pointers, rows, latents, values, level_bits)``, the union of
        the levels' selections with the levels that chose each entry."""
        batch, n_latents = pre.shape
        pointers, latents, values, offsets = [], [], [], [0]
        for level, (size, k) in enumerate(zip(self.level_sizes, self.k)):
            prefix = pre if size == n_latents else np.ascontiguousarray(pre[:, :size])
            row_pointers, _, chosen, chosen_values, smallest = kernels.batch_topk(
                prefix, k * batch, 0.95 * self._last_cuts[level])
            if chosen.shape[0]:
                self._last_cuts[level] = smallest
            pointers.append(row_pointers)
            latents.append(chosen)
            values.append(chosen_values)
            offsets.append(offsets[-1] + chosen.shape[0])
        return kernels.merge_level_selections(
            np.stack(pointers), np.concatenate(latents), np.concatenate(values),
            np.asarray(offsets, dtype=np.int64), n_latents)

    # --------------------------------------------------------------- one step
    def step(self, x, y, lr, keep=None):
        """One optimiser step on a batch; returns the per-level mean losses.

        ``keep`` (masked-unit training): a boolean tensor shaped like ``x``,
        False where an input entry is hidden from the encoder.
        """
        out = self.gradients(x, y, keep)
        self._apply(out["grads"], lr, out.get("grad_norm"))
        return out["level_losses"], out["aux_loss"], out["n_active"]

    def gradients(self, x, y, keep=None):
        """Losses and hand-written gradients of one batch (no parameter update).

        Returns a dict with ``grads`` (per parameter), ``level_losses``,
        ``aux_loss``, ``n_active`` and ``selection`` (rows and latents kept by
        the sparsity rule, and those used by the auxiliary loss); the CPU
        kernels also give ``grad_norm``, the norm of all the gradients.
        """
        if self._use_kernels(x):
            return self._gradients_kernels(x.contiguous(), y.contiguous(), keep)
        return self._gradients_autograd(x, y, keep)

    def _gradients_kernels(self, x, y, keep=None):
        """The step on the CPU: torch's encoder product, then compiled kernels.

        ``keep`` (masked-unit training) as in :meth:`_gradients_autograd`:
        the encoder sees the masked, rescaled input, the autoencoder's loss
        weighs the hidden entries only, and a tied centring gets its
        gradient through the mask.
        """
        spec = self.spec
        params = {name: tensor.numpy() for name, tensor in self.params.items()}
        batch = x.shape[0]
        keep_array = np.empty((0, 0), dtype=np.bool_)
        keep_scale = np.float32(1.0)
        weights = None
        hidden = None
        if keep is None:
            centred, pre = self._pre_activation(x)
        else:
            # the masked, rescaled input in one pass
            keep_array = keep.contiguous().numpy()
            keep_scale = np.float32(1.0 / (1.0 - spec.mask_fraction))
            bias = self.params["decoder_bias"] if self.tied else self.input_bias
            centred = torch.empty_like(x)
            hidden = kernels.masked_centred(x.numpy(), bias.numpy(), keep_array, keep_scale,
                                            centred.numpy())
            pre = torch.addmm(self.params["encoder_bias"], centred,
                              self.params["encoder_weight"])
            if spec.autoencoder and spec.loss != "mse":
                weights = (~keep).to(torch.float32)
        pre = pre.numpy()
        if spec.per_level_k:
            row_pointers, rows, latents, values, level_bits = self._select_levels_csr(pre)
        else:
            row_pointers, rows, latents, values = self._select_csr(pre)
            level_bits = np.empty(0, dtype=np.int64)
        dead = kernels.update_firing(
            self.samples_since_fired.numpy(), float(batch), latents, spec.dead_window_rows
        )
        selection = {"rows": torch.from_numpy(rows), "latents": torch.from_numpy(latents)}
        use_aux = spec.aux_coef > 0 and dead.shape[0] > 0
        if use_aux:
            aux_row_pointers, aux_rows, aux_latents, aux_values = kernels.row_topk(
                pre, dead, spec.aux_k
            )
            selection.update(
                aux_rows=torch.from_numpy(aux_rows), aux_latents=torch.from_numpy(aux_latents)
            )
            aux_scale = spec.aux_coef * min(dead.shape[0] / spec.aux_k, 1.0)
        else:
            aux_row_pointers = aux_latents = np.empty(0, dtype=np.int64)
            aux_values = np.empty(0, dtype=np.float32)
            aux_scale = 0.0

        target = y.numpy()
        mse = spec.loss == "mse"
        deviation = np.empty(target.shape if use_aux else (0, 0), dtype=np.float32)
        level_sums = np.empty(self.n_levels)
        if mse:
            # the backward kernel decodes the levels itself
            grad_linear = np.empty((0, 0, 0), dtype=np.float32)
            hidden_loss = keep is not None and spec.autoencoder
            weight_sum = max(hidden, 1) if hidden_loss else target.size
            grad_factor = 2.0 / weight_sum
        else:
            linear = np.empty((self.n_levels,) + target.shape, dtype=np.float32)
            if spec.per_level_k:
                kernels.decode_level_bits(
                    row_pointers, latents, values, level_bits,
                    params["decoder_weight"], params["decoder_bias"], linear,
                )
            else:
                kernels.decode_levels(
                    row_pointers, latents, values, self._level_sizes_array,
                    params["decoder_weight"], params["decoder_bias"], linear,
                )
            level_losses, grad_linear, grad_factor, output = loss_and_grad_torch(
                torch.from_numpy(linear), y, spec.loss, weights
            )
            hidden_loss = False  # the weights are in grad_linear
            grad_linear = grad_linear.numpy()
            if use_aux:
                torch.sub(output[-1], y, out=torch.from_numpy(deviation))
        level_factors = np.asarray(self._level_weight_values) * grad_factor

        grads = {name: torch.empty_like(tensor) for name, tensor in self.params.items()}
        aux_loss, squared_norm = kernels.backward(
            mse, grad_linear, target, level_factors, self._level_sizes_array,
            row_pointers, latents, values,
            aux_row_pointers, aux_latents, aux_values, aux_scale, deviation,
            params["decoder_weight"], params["decoder_bias"], params["encoder_weight"],
            centred.numpy(), self.tied,
            grads["encoder_weight"].numpy(), grads["encoder_bias"].numpy(),
            grads["decoder_weight"].numpy(), grads["decoder_bias"].numpy(), level_sums,
            keep_array, keep_scale, hidden_loss, level_bits,
        )
        if mse:
            level_losses = torch.from_numpy((level_sums / weight_sum).astype(np.float32))
        return {
            "grads": grads,
            "level_losses": level_losses,
            "aux_loss": aux_loss,
            "n_active": latents.shape[0],
            "selection": selection,
            "grad_norm": float(np.sqrt(squared_norm)),
        }

    def _gradients_autograd(self, x, y, keep=None):
        """The same step through torch autograd (any device, any loss).

        The selection (BatchTopK or top-k, and the dead latents of the
        auxiliary loss) is made without gradients; the loss of every level
        and the auxiliary loss are written densely and differentiated.

        With ``keep`` (masked-unit training) the hidden input entries are
        set to the encoder's centre and the kept ones scaled by
        ``1 / (1 - mask_fraction)`` (so the encoder's input has the same
        expectation as without masking); the autoencoder's loss is the mean
        over the hidden entries only, so that each unit must be predicted
        from the others. The transcoder's loss stays over every output.
        """
        spec = self.spec
        params = {name: tensor.detach().requires_grad_(True)
                  for name, tensor in self.params.items()}
        batch = x.shape[0]
        weights = None
        with torch.enable_grad():
            bias = params["decoder_bias"] if self.tied else self.input_bias
            centred = x - bias
            if keep is not None:
                centred = centred * (keep.to(centred.dtype) / (1.0 - spec.mask_fraction))
                if spec.autoencoder:
                    weights = (~keep).to(x.dtype)
            pre = torch.addmm(params["encoder_bias"], centred, params["encoder_weight"])
        with torch.no_grad():
            level_masks = self._level_masks(pre.detach()) if spec.per_level_k else None
            if level_masks is None:
                rows, latents, _ = self.select(pre.detach())
            else:
                rows, latents = torch.nonzero(self._union(level_masks), as_tuple=True)
            self.samples_since_fired += batch
            self.samples_since_fired.index_fill_(0, latents, 0.0)
            dead = torch.nonzero(self.samples_since_fired > spec.dead_window_rows).squeeze(1)
        selection = {"rows": rows, "latents": latents}
        n_dead = dead.numel()
        use_aux = spec.aux_coef > 0 and n_dead > 0
        if use_aux:
            with torch.no_grad():
                aux_k = min(spec.aux_k, n_dead)
                aux_values, aux_pos = _row_topk_sorted_by_column(pre.detach()[:, dead], aux_k)
                keep = aux_values > 0
                selection["aux_rows"] = torch.arange(
                    batch, device=x.device).repeat_interleave(aux_k)[keep]
                selection["aux_latents"] = dead[aux_pos[keep]]
        with torch.enable_grad():
            decoder_weight = params["decoder_weight"]
            if level_masks is None:
                mask = torch.zeros_like(pre)
                mask[rows, latents] = 1.0
                codes = pre * mask
                linear = torch.stack([
                    codes[:, :size] @ decoder_weight[:size] for size in self.level_sizes
                ]) + params["decoder_bias"]
            else:
                # each level decodes its own selection
                linear = torch.stack([
                    (pre[:, :size] * mask) @ decoder_weight[:size]
                    for size, mask in zip(self.level_sizes, level_masks)
                ]) + params["decoder_bias"]
            level_losses, output = loss_values_torch(linear, y, spec.loss, weights)
            total = (self.level_weights * level_losses).sum()
            aux_loss = 0.0
            if use_aux:
                # AuxK: dead latents reconstruct the detached residual of the
                # full model, without the decoder bias; scale-free
                aux_mask = torch.zeros_like(pre)
                aux_mask[selection["aux_rows"], selection["aux_latents"]] = 1.0
                residual = (y - output[-1]).detach()
                energy = torch.linalg.vector_norm(residual).square().clamp_min(1e-12)
                scale = spec.aux_coef * min(n_dead / spec.aux_k, 1.0)
                aux_error = (pre * aux_mask) @ decoder_weight - residual
                aux = scale * torch.linalg.vector_norm(aux_error).square() / energy
                total = total + aux
                aux_loss = float(aux.detach())
            gradients = torch.autograd.grad(total, [params[name] for name in PARAMETER_NAMES])
        grads = dict(zip(PARAMETER_NAMES, gradients))
        # unit-norm decoder rows: drop the gradient component along each row
        weight = self.params["decoder_weight"]
        grads["decoder_weight"] -= (grads["decoder_weight"] * weight).sum(
            dim=1, keepdim=True) * weight
        return {
            "grads": grads,
            "level_losses": level_losses.detach(),
            "aux_loss": aux_loss,
            "n_active": rows.numel(),
            "selection": selection,
        }

    def _apply(self, grads, lr, grad_norm=None):
        clip = self.spec.grad_clip
        if clip:
            if grad_norm is None:
                grad_norm = float(torch.linalg.vector_norm(
                    torch.stack(torch._foreach_norm(list(grads.values())))
                ))
            factor = clip / (grad_norm + 1e-6)
            if factor < 1.0:
                torch._foreach_mul_(list(grads.values()), factor)
        for name, tensor in self.params.items():
            tensor.grad = grads[name]
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        decoder_weight = self.params["decoder_weight"]
        if self._use_kernels(decoder_weight):
            kernels.normalise_rows(decoder_weight.numpy())
        else:
            decoder_weight.div_(
                torch.linalg.vector_norm(decoder_weight, dim=1, keepdim=True).clamp_min_(1e-12)
            )
        self.step_count += 1

    # -------------------------------------------------------------- inference
    def _decode_levels(self, pre, shape):
        """Linear predictor of every level from the codes of ``pre`` (the
        inference rule): on the CPU from the active entries only, in the
        kernel of the training step; elsewhere by dense products."""
        decoder_weight = self.params["decoder_weight"]
        if self.spec.per_level_k:
            # level i: its own threshold over its own latents (dense products)
            return torch.stack([
                (pre[:, :size] * (pre[:, :size] > max(cut, 0.0))) @ decoder_weight[:size]
                for size, cut in zip(self.level_sizes, self.threshold)
            ]) + self.params["decoder_bias"]
        if pre.device.type != "cpu":
            codes = self._codes(pre)
            return torch.stack(
                [codes[:, :size] @ decoder_weight[:size] for size in self.level_sizes]
            ) + self.params["decoder_bias"]
        n_rows, n_latents = pre.shape
        if self.spec.sparsity == "batchtopk":
            # the active entries in one pass, row-major (latents ascending)
            dense = pre.numpy()
            flat = np.flatnonzero(dense > np.float32(self._inference_cut()))
            rows, latents = np.divmod(flat, n_latents)
            values = dense.reshape(-1)[flat]
        else:
            dense = self._codes(pre).numpy()
            rows, latents = np.nonzero(dense)
            values = dense[rows, latents]
        row_pointers = np.zeros(n_rows + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=n_rows), out=row_pointers[1:])
        linear = np.empty((self.n_levels,) + shape, dtype=np.float32)
        kernels.decode_levels(
            row_pointers, latents.astype(np.int64), values, self._level_sizes_array,
            decoder_weight.numpy(), self.params["decoder_bias"].numpy(), linear,
        )
        return torch.from_numpy(linear)

    def _inference_cut(self):
        """BatchTopK codes are the pre-activations above this value."""
        return max(self.threshold, 0.0)

    def _codes(self, pre):
        """Codes under the inference rule from pre-activations (in place)."""
        if self.spec.sparsity == "batchtopk":
            return pre.mul_(pre > self._inference_cut())
        k = min(self.k, pre.shape[1])
        values, latents = torch.topk(pre, k, dim=1)
        return torch.zeros_like(pre).scatter_(1, latents, values.clamp_min(0.0))

    #: pre-activations of the held-out rows kept between the threshold's
    #: calibration and the codes (beyond, they are computed twice)
    _EVALUATION_CACHE_VALUES = 2**25

    @torch.no_grad()
    def evaluate(self, x, y, target_scale, chunk_rows=8192):
        """Per-level mean loss and explained variance (original units).

        With BatchTopK the threshold is calibrated on ``x`` itself, so that
        the held-out figures are at a mean L0 of exactly ``k``. The
        pre-activations are computed once, in blocks of ``chunk_rows`` rows,
        when they fit in ``_EVALUATION_CACHE_VALUES`` values.
        """
        blocks = range(0, x.shape[0], chunk_rows)
        cached = x.shape[0] * self.n_latents <= self._EVALUATION_CACHE_VALUES
        pre_blocks = [None] * len(blocks)
        if self.spec.sparsity == "batchtopk":
            searches = _threshold_searches(self, self.k, x.shape[0])
            for index, start in enumerate(blocks):
                _, pre = self._pre_activation(x[start : start + chunk_rows])
                _add_to_searches(self, searches, pre)
                if cached:
                    pre_blocks[index] = pre
            self.threshold = _search_thresholds(self, searches)
        sums = None
        for index, start in enumerate(blocks):
            pre = pre_blocks[index]
            if pre is None:
                _, pre = self._pre_activation(x[start : start + chunk_rows])
            pre_blocks[index] = None
            yb = y[start : start + chunk_rows]
            linear = self._decode_levels(pre, tuple(yb.shape))
            losses, output = loss_values_torch(linear, yb, self.spec.loss)
            error = output - yb
            residual = (error * target_scale).square().sum(dim=(1, 2))
            part = torch.cat([losses * yb.numel(), residual])
            sums = part if sums is None else sums + part
        total = ((y - y.mean(dim=0)) * target_scale).square().sum().clamp_min(1e-12)
        losses = sums[: self.n_levels] / y.numel()
        explained = 1.0 - sums[self.n_levels :] / total
        return losses.cpu().numpy(), explained.cpu().numpy()

    def state(self):
        return {name: t.detach().cpu().numpy().copy() for name, t in self.params.items()}

    def parameters_finite(self):
        """Whether every parameter is finite (one check per epoch, not per step)."""
        return all(bool(torch.isfinite(tensor).all()) for tensor in self.params.values())

    def load_state(self, state):
        for name, value in state.items():
            self.params[name].copy_(torch.from_numpy(value))

    def export_state(self, parameters_only=False):
        """Everything needed to resume training, as NumPy arrays.

        The parameters, the input bias, the step count, the dead-latent
        counters, the BatchTopK search hint and Adam's moments and step of
        every parameter (absent before the first step). With
        ``parameters_only``, the parameters and the input bias alone.
        """
        out = self.state()
        out["input_bias"] = self.input_bias.detach().cpu().numpy().copy()
        if parameters_only:
            return out
        out["step_count"] = np.int64(self.step_count)
        out["last_cut"] = np.float64(self._last_cut)
        out["last_cuts"] = self._last_cuts.copy()
        out["samples_since_fired"] = self.samples_since_fired.cpu().numpy().copy()
        for name in PARAMETER_NAMES:
            moments = self.optimizer.state.get(self.params[name])
            if moments:
                out["adam_step/" + name] = np.float64(float(moments["step"]))
                out["adam_exp_avg/" + name] = moments["exp_avg"].cpu().numpy().copy()
                out["adam_exp_avg_sq/" + name] = moments["exp_avg_sq"].cpu().numpy().copy()
        return out

    @classmethod
    def from_exported(cls, exported, spec, device):
        """A trainer that continues exactly where ``export_state`` left off.

        From parameters alone (a fitted model), the optimiser starts afresh.
        """
        trainer = cls(exported, spec, device)
        if "step_count" not in exported:
            return trainer
        trainer.step_count = int(exported["step_count"])
        trainer._last_cut = float(exported["last_cut"])
        if "last_cuts" in exported:
            trainer._last_cuts[:] = exported["last_cuts"]
        trainer.samples_since_fired.copy_(
            torch.from_numpy(np.asarray(exported["samples_since_fired"], dtype=np.float64))
        )
        if "adam_step/" + PARAMETER_NAMES[0] in exported:
            state_dict = trainer.optimizer.state_dict()
            state_dict["state"] = {
                index: {
                    "step": torch.tensor(
                        float(exported["adam_step/" + name]), dtype=torch.float32
                    ),
                    "exp_avg": torch.from_numpy(exported["adam_exp_avg/" + name].copy()),
                    "exp_avg_sq": torch.from_numpy(
                        exported["adam_exp_avg_sq/" + name].copy()
                    ),
                }
                for index, name in enumerate(PARAMETER_NAMES)
            }
            trainer.optimizer.load_state_dict(state_dict)
        return trainer


def calibrate_threshold(trainer, X, k, chunk_rows=8192):
    """Threshold theta so that the mean number of codes > theta is ``k``.

    Exact over the rows of ``X``: the (k * n_rows)-th largest positive
    pre-activation (``calibrate_threshold_streaming`` over one chunk, so the
    work is linear in the number of rows).
    """
    return calibrate_threshold_streaming(trainer, [X], k, X.shape[0], chunk_rows)


def calibrate_threshold_streaming(trainer, chunks, k, n_rows, chunk_rows=8192):
    """``calibrate_threshold`` over the rows of an iterable of chunks."""
    searches = _threshold_searches(trainer, k, n_rows)
    with torch.no_grad():
        for chunk in chunks:
            x = torch.as_tensor(chunk, dtype=torch.float32)
            del chunk  # only one chunk alive at a time
            for start in range(0, x.shape[0], chunk_rows):
                _, pre = trainer._pre_activation(x[start : start + chunk_rows].to(trainer.device))
                _add_to_searches(trainer, searches, pre)
                del pre
            del x
    return _search_thresholds(trainer, searches)


def _threshold_searches(trainer, k, n_rows):
    """One search for an int ``k``; one per level for a per-level ``k``."""
    if isinstance(k, tuple):
        return [ThresholdSearch(int(budget * n_rows)) for budget in k]
    return ThresholdSearch(int(k * n_rows))


def _add_to_searches(trainer, searches, pre):
    if isinstance(searches, list):
        # level i's threshold is over its own latents [0, level_sizes[i])
        for size, search in zip(trainer.level_sizes, searches):
            search.add(pre[:, :size].contiguous())
    else:
        searches.add(pre)


def _search_thresholds(trainer, searches):
    """A float, or a tuple of one threshold per level."""
    if isinstance(searches, list):
        return tuple(search.threshold() for search in searches)
    return searches.threshold()


class ThresholdSearch:
    """The exact ``budget``-th largest positive value of a stream of blocks.

    Candidates above the current floor go into one float32 buffer of a
    quarter more than the budget (or of one block, if larger); when it is
    full it is cut back in place to the largest ``budget`` values (a
    partition, no copy), which raises the floor. Memory is that buffer, and
    the work is linear in the number of values. The result does not depend
    on the order or the cutting of the blocks.
    """

    def __init__(self, budget):
        self.budget = budget
        self.buffer = None
        self.fill = 0
        self.floor = 0.0

    def _compact(self):
        # the largest ``budget`` values to the front, in place
        view = self.buffer[: self.fill]
        np.negative(view, out=view)
        view.partition(self.budget - 1)
        np.negative(view, out=view)
        self.fill = self.budget
        self.floor = float(self.buffer[: self.budget].min())

    def add(self, pre):
        """Take the values of a block of pre-activations (a tensor)."""
        if self.budget == 0:
            return
        if self.buffer is None:
            slack = max(self.budget // 4, pre.numel())
            self.buffer = np.empty(self.budget + slack, dtype=np.float32)
        if pre.device.type == "cpu":
            values = pre.contiguous().numpy().reshape(-1)
        else:
            values = pre.reshape(-1)
            values = values[values > self.floor].cpu().numpy()
        while values.shape[0]:
            self.fill, visited = kernels.append_above(
                values, np.float32(self.floor), self.buffer, self.fill)
            values = values[visited:]
            if values.shape[0]:
                self._compact()

    def threshold(self):
        """Strictly below the ``budget``-th largest value (so that
        ``pre > theta`` keeps it); 0 when fewer values are positive."""
        if self.budget == 0 or self.fill < self.budget:
            return 0.0
        self._compact()
        return float(np.nextafter(np.float32(self.floor), np.float32(-np.inf)))
