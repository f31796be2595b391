"""Training of ``MotifSAE`` and ``MotifTranscoder`` (torch; imported inside ``fit`` only).

The training bins are laid out as segments (stretches of the input, less
the held-out chunks) separated by ``pad`` zero bins (``n_bins_kernel - 1``,
plus the attention's reach for the transformer encoder), so that no
convolution or attention reaches from one segment into another. A step
takes random chunks of a segment, each with ``pad`` bins of context on
either side: the codes of the context bins are computed too, so the loss
of a chunk's bins is their loss in the whole sequence (up to the local
maxima at the chunk's edges, which see only the context). Randomness comes
from a NumPy ``RandomState``; the global torch seed is never touched.

The autoencoder reconstructs its input; the transcoder gives a target array
(one row per input bin, other columns) that the kernels decode instead. The
autoencoder is the case target = input: no second array is made.
"""

import time

import numpy as np
import torch
import torch.nn.functional as F

from ._driver import full_schedule
from ._initialisation import random_unit_rows
from ._training import resolve_device

#: an epoch takes at least this many steps on small data
_MIN_STEPS_PER_EPOCH = 10
#: a kernel's leading bin is empty below this share of its mean energy per bin
#: (a random kernel's bins hold about the mean, a learned pattern's empty
#: bins almost nothing)
_EMPTY_BIN_SHARE = 0.1


# ----------------------------------------------------------------- layout
def split_segments(stretches, spec, rng):
    """Training and validation segments ``(start, stop)`` of the bins.

    Each stretch is cut into chunks of ``chunk_bins``; with early stopping a
    random ``validation_fraction`` of the chunks is held out. Consecutive
    chunks of the same side within a stretch merge into one segment.
    """
    chunks = [(start, min(start + spec.chunk_bins, stop), index)
              for index, (start, stop) in enumerate(stretches)
              for start in range(start, stop, spec.chunk_bins)]
    held_out = np.zeros(len(chunks), dtype=bool)
    n_val = int(round(spec.validation_fraction * len(chunks))) if spec.early_stopping else 0
    if 0 < n_val < len(chunks):
        held_out[rng.choice(len(chunks), n_val, replace=False)] = True
    segments = {False: [], True: []}
    for (start, stop, index), side in zip(chunks, held_out):
        side_segments = segments[bool(side)]
        if side_segments and side_segments[-1][1] == start and side_segments[-1][2] == index:
            side_segments[-1][1] = stop
        else:
            side_segments.append([start, stop, index])
    return ([(start, stop) for start, stop, _ in segments[False]],
            [(start, stop) for start, stop, _ in segments[True]])


class Layout:
    """Segments of ``X`` (and of the target ``Y``) in one array, ``pad`` zero
    bins around each.

    ``Y`` None: the target is ``X`` itself (the autoencoder), ``self.y`` is None.
    """

    def __init__(self, X, segments, pad, Y=None):
        self.pad = pad
        n_bins = sum(stop - start for start, stop in segments)
        total = n_bins + pad * (len(segments) + 1)
        self.x = np.zeros((total, X.shape[1]), dtype=np.float32)
        self.y = None if Y is None else np.zeros((total, Y.shape[1]), dtype=np.float32)
        self.is_data = np.zeros(total, dtype=bool)
        self.cores = []
        position = pad
        for start, stop in segments:
            length = stop - start
            self.x[position:position + length] = X[start:stop]
            if Y is not None:
                self.y[position:position + length] = Y[start:stop]
            self.is_data[position:position + length] = True
            self.cores.append((position, position + length))
            position += length + pad
        self.n_bins = n_bins

    def pieces(self, chunk_bins, rng):
        """The segments cut into chunks at a random offset, in random order."""
        pieces = []
        for start, stop in self.cores:
            cuts = [start]
            if stop - start > chunk_bins:
                # a random phase, so that chunk edges move from epoch to epoch
                offset = int(rng.randint(chunk_bins))
                cuts += list(range(start + offset, stop, chunk_bins))
            cuts = sorted(set(cuts)) + [stop]
            pieces += [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
        order = rng.permutation(len(pieces))
        return [pieces[i] for i in order]

    def batch(self, pieces, chunk_bins, n_kernel):
        """Inputs, token mask, code mask and score mask of chunks with context.

        Each chunk ``[start, stop)`` comes with ``pad`` bins on either side;
        position ``i`` of the tokens (and codes) is the bin ``start - pad + i``.
        Tokens are the bins of the chunk's segment; codes, those before ``stop``.
        """
        index, absolute, starts, stops = self._windows(pieces, chunk_bins)
        inputs = self.x[index]
        n_tokens = index.shape[1] - (n_kernel - 1)
        token_valid = self.is_data[index][:, :n_tokens]
        code_valid = token_valid & (absolute < stops[:, None])[:, :n_tokens]
        score = (absolute >= starts[:, None]) & (absolute < stops[:, None])
        return inputs, token_valid, code_valid, score

    def _windows(self, pieces, chunk_bins):
        """Rows of each chunk with its context (clipped to the layout), the
        unclipped positions, and the chunks' starts and stops."""
        pad = self.pad
        offsets = np.arange(chunk_bins + 2 * pad)
        starts = np.array([start for start, _ in pieces])
        stops = np.array([stop for _, stop in pieces])
        absolute = starts[:, None] - pad + offsets
        index = np.clip(absolute, 0, len(self.x) - 1)
        return index, absolute, starts, stops

    def targets(self, pieces, chunk_bins):
        """The target's rows of the chunks of ``batch`` (None: the inputs)."""
        if self.y is None:
            return None
        return self.y[self._windows(pieces, chunk_bins)[0]]

    def whole(self, n_kernel):
        """The layout as one sequence: inputs, token, code and score masks."""
        valid = self.is_data[None, : len(self.x) - (n_kernel - 1)]
        return self.x[None], valid, valid, self.is_data[None]

    def whole_targets(self):
        """The target of ``whole`` (None: the inputs)."""
        return None if self.y is None else self.y[None]


# ------------------------------------------------------------------ model
def _empty_bins(kernels):
    """Bins of each kernel (latents, units, kernel) below ``_EMPTY_BIN_SHARE``
    of its mean energy per bin, (latents, kernel) booleans."""
    energy = kernels.square().sum(dim=1)
    return energy < _EMPTY_BIN_SHARE * energy.mean(dim=1, keepdim=True)


class MotifTrainer:
    """Parameters, optimiser and one step of the convolutional sparse coder."""

    def __init__(self, init, spec, device):
        self.spec = spec
        self.device = device
        # torch layout: (n_latents, n_units, n_bins_kernel)
        self.params = {
            "decoder_weight": torch.tensor(init["decoder_weight"].transpose(0, 2, 1),
                                           dtype=torch.float32, device=device),
            "decoder_bias": torch.tensor(init["decoder_bias"], dtype=torch.float32,
                                         device=device),
        }
        self.module = None
        if spec.encoder == "conv":
            self.params["encoder_weight"] = torch.tensor(
                init["encoder_weight"].transpose(0, 2, 1), dtype=torch.float32, device=device)
            self.params["encoder_bias"] = torch.tensor(
                init["encoder_bias"], dtype=torch.float32, device=device)
        for tensor in self.params.values():
            tensor.requires_grad_(True)
        trained = list(self.params.values())
        if spec.encoder == "transformer":
            self.module = init["module"].to(device)
            trained += list(self.module.parameters())
        self.trained = trained
        self.optimizer = torch.optim.Adam(trained, lr=spec.learning_rate)
        self.steps_since_fired = torch.zeros(spec.n_latents, dtype=torch.float64, device=device)
        self.bounds = [0] + list(spec.level_sizes)

    @torch.no_grad()
    def select_entries(self, pre, valid, budget_per_bin, allowed=None, positive=True):
        """BatchTopK among local maxima, as ``(n, 3)`` indices ``(b, j, t)``.

        The selected entries are the ``budget_per_bin * n_valid`` largest
        positive values that are the largest of their latent within
        ``local_max_bins`` on either side (ties at the cut all kept), in
        row-major order. Only the candidates (positive local maxima of valid
        bins, of ``allowed`` latents) enter the top-k: when they number fewer
        than the budget, all of them are kept, as the cut then falls on a
        non-positive value. ``positive=False`` drops the sign condition: the
        largest local maxima are selected even where they are not positive.
        """
        candidate = valid & (pre > 0) if positive else valid.expand_as(pre).clone()
        width = self.spec.local_max_bins
        if width:
            masked = pre.masked_fill(~valid, -torch.inf)
            pooled = F.max_pool1d(masked, 2 * width + 1, stride=1, padding=width)
            candidate &= masked >= pooled
        if allowed is not None:
            candidate &= allowed[None, :, None]
        entries = candidate.nonzero()
        n_valid = int(valid.sum())
        budget = min(max(1, int(round(budget_per_bin * n_valid))), pre.numel())
        if len(entries) > budget:
            values = pre[candidate]  # row-major, like ``nonzero``
            cut = torch.topk(values, budget, sorted=False).values.min()
            entries = entries[values >= cut]
        return entries

    def _sparse_pre(self, x, entries):
        """Pre-activations of the selected entries only, with gradient:
        each entry's input window against its latent's encoder weights."""
        params = self.params
        batch, latent, time = entries.unbind(1)
        windows = x.unfold(2, self.spec.n_bins_kernel, 1)[batch, :, time]  # (n, units, K)
        weight = params["encoder_weight"][latent]
        return (windows * weight).sum(dim=(1, 2)) + params["encoder_bias"][latent]

    def _decode_into(self, out, shape, entries, values):
        """``out`` (flat ``(batch, units, time)``) plus each entry's value
        times its kernel at ``(b, :, t .. t + K - 1)``."""
        _, n_units, n_time = shape
        decoder = self.params["decoder_weight"]
        n_kernel = decoder.shape[2]
        batch, latent, time = entries.unbind(1)
        offsets = (torch.arange(n_units, device=out.device)[:, None] * n_time
                   + torch.arange(n_kernel, device=out.device)[None, :])
        index = (batch * (n_units * n_time) + time)[:, None, None] + offsets
        source = values[:, None, None] * decoder[latent]
        return out.index_add(0, index.reshape(-1), source.reshape(-1).to(out.dtype))

    def forward(self, inputs, token_valid, code_valid, score, *, targets=None, aux=False):
        """Per-level losses, the selected entries ``(b, j, t)`` and (with
        ``aux``) the auxiliary loss.

        The pre-activations are computed without gradient; the selected
        entries are recomputed with it (``"conv"``) or gathered from the
        transformer's output, and decoded by adding their kernels, so that
        the cost of a step follows the number of codes, not of latents.
        ``targets`` (batch, time, outputs), the rows the kernels decode;
        None: the inputs (the autoencoder).
        """
        spec = self.spec
        params = self.params
        x = inputs.permute(0, 2, 1)  # (batch, units, time)
        y = x if targets is None else targets.permute(0, 2, 1)  # (batch, outputs, time)
        valid = code_valid[:, None, :]
        if self.module is None:
            with torch.no_grad():
                pre = (F.conv1d(x, params["encoder_weight"])
                       + params["encoder_bias"][None, :, None])
        else:
            pre_grad = self.module(x, token_valid)
            pre = pre_grad.detach()
        entries = self.select_entries(pre, valid, spec.k)
        aux_entries = None
        if aux:
            dead = self.steps_since_fired > self.dead_window_bins
            if bool(dead.any()):
                # the transcoder's dead latents may have no positive
                # pre-activation left: their largest still get the gradient
                aux_entries = self.select_entries(pre, valid, spec.aux_k, allowed=dead,
                                                  positive=spec.autoencoder)
        n_main = len(entries)
        every = entries if aux_entries is None else torch.cat([entries, aux_entries])
        if self.module is None:
            values = self._sparse_pre(x, every)
        else:
            values = pre_grad[every[:, 0], every[:, 1], every[:, 2]]
        mask = score[:, None, :].to(y.dtype)
        n_scored = mask.sum() * y.shape[1]
        shape = y.shape
        reconstruction = params["decoder_bias"][None, :, None].expand(shape).reshape(-1)
        latent = entries[:, 1]
        losses = []
        for low, high in zip(self.bounds[:-1], self.bounds[1:]):
            level = (latent >= low) & (latent < high)
            reconstruction = self._decode_into(reconstruction, shape, entries[level],
                                               values[:n_main][level])
            error = reconstruction.view(shape) - y
            losses.append((error.square() * mask).sum() / n_scored)
        aux_loss = None
        if aux_entries is not None:
            residual = (y - reconstruction.view(shape)).detach()
            aux_out = self._decode_into(torch.zeros(residual.numel(), dtype=y.dtype,
                                                    device=y.device),
                                        shape, aux_entries, values[n_main:])
            power = (residual.square() * mask).sum().clamp_min(1e-12)
            aux_loss = ((aux_out.view(shape) - residual).square() * mask).sum() / power
        return losses, entries, aux_loss

    def _tensor(self, array):
        return None if array is None else torch.as_tensor(array, device=self.device)

    def step(self, batch, lr, targets=None):
        """One optimiser step on ``batch`` (``Layout.batch``) and its
        ``targets`` (``Layout.targets``; None: the inputs)."""
        spec = self.spec
        inputs, token_valid, code_valid, score = (self._tensor(part) for part in batch)
        losses, entries, aux_loss = self.forward(inputs, token_valid, code_valid, score,
                                                 targets=self._tensor(targets),
                                                 aux=spec.aux_coef > 0)
        total = sum(weight * loss for weight, loss in zip(spec.level_weights, losses))
        if aux_loss is not None:
            total = total + spec.aux_coef * aux_loss
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        decoder = self.params["decoder_weight"]
        with torch.no_grad():
            # unit-norm kernels: no gradient along the kernel itself
            radial = (decoder.grad * decoder).sum(dim=(1, 2), keepdim=True)
            decoder.grad -= radial * decoder
        if spec.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.trained, spec.grad_clip)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        with torch.no_grad():
            decoder /= decoder.square().sum(dim=(1, 2), keepdim=True).sqrt().clamp_min(1e-12)
            self.steps_since_fired += float(score.sum())
            self.steps_since_fired[entries[:, 1]] = 0
        n_codes = float(code_valid.sum())
        weighted = sum(w * float(loss.detach()) for w, loss in zip(spec.level_weights, losses))
        return {
            "loss": float(weighted),
            "l0": len(entries) / max(n_codes, 1.0),
            "aux_loss": float(aux_loss.detach()) if aux_loss is not None else 0.0,
            "dead_fraction": float((self.steps_since_fired > self.dead_window_bins)
                                   .double().mean()),
        }

    @torch.no_grad()
    def align_onsets(self):
        """Move each kernel's pattern to its first bins (a code marks an onset).

        A kernel whose first bins are empty (each below ``_EMPTY_BIN_SHARE``
        of the kernel's mean energy per bin) describes a pattern that starts
        later; it is shifted earlier by that many bins, with the encoder
        weights and Adam's moments, so that its code moves to the pattern's
        onset and the freed last bins can hold more of its end. The
        transcoder's encoder reads another population, whose pattern may
        lead the decoded one: there a bin is empty when it is empty in both
        the decoder kernel and the encoder weights, so that shifting never
        drops what the encoder reads. Returns the number of kernels shifted.
        """
        decoder = self.params["decoder_weight"]  # (latents, units, kernel)
        n_kernel = decoder.shape[2]
        empty = _empty_bins(decoder)
        if not self.spec.autoencoder:
            empty &= _empty_bins(self.params["encoder_weight"])
        leading = torch.cumprod(empty.to(torch.int64), dim=1).sum(dim=1)
        leading = leading.clamp(max=n_kernel - 1).cpu().numpy()
        shifted = np.flatnonzero(leading > 0)
        tensors = [self.params["decoder_weight"], self.params["encoder_weight"]]
        for tensor in list(tensors):
            state = self.optimizer.state.get(tensor, {})
            tensors += [state[name] for name in ("exp_avg", "exp_avg_sq") if name in state]
        for latent in shifted:
            shift = int(leading[latent])
            for tensor in tensors:
                row = tensor[latent]
                row[:, : n_kernel - shift] = row[:, shift:].clone()
                row[:, n_kernel - shift:] = 0
        if shifted.size:
            decoder /= decoder.square().sum(dim=(1, 2), keepdim=True).sqrt().clamp_min(1e-12)
        return int(shifted.size)

    @torch.no_grad()
    def evaluate(self, batch, targets=None):
        inputs, token_valid, code_valid, score = (self._tensor(part) for part in batch)
        losses, _, _ = self.forward(inputs, token_valid, code_valid, score,
                                    targets=self._tensor(targets))
        return float(sum(w * float(loss) for w, loss in zip(self.spec.level_weights, losses)))

    def state(self):
        state = {name: tensor.detach().clone() for name, tensor in self.params.items()}
        if self.module is not None:
            state["module"] = {name: tensor.detach().clone()
                               for name, tensor in self.module.state_dict().items()}
        return state

    def export(self, state):
        exported = {
            "decoder_weight": state["decoder_weight"].cpu().numpy().transpose(0, 2, 1).copy(),
            "decoder_bias": state["decoder_bias"].cpu().numpy().copy(),
        }
        if self.module is None:
            exported["encoder_weight"] = (
                state["encoder_weight"].cpu().numpy().transpose(0, 2, 1).copy())
            exported["encoder_bias"] = state["encoder_bias"].cpu().numpy().copy()
        else:
            exported["encoder_state"] = {name: tensor.cpu().numpy().copy()
                                         for name, tensor in state["module"].items()}
        return exported


def initial_parameters(spec, X_train, rng, Y_train=None):
    """Random unit kernels, the encoder tied to them (``"conv"``; the
    transformer starts at random), the mean as decoder bias.

    With a target ``Y_train`` (the transcoder) the kernels decode its
    columns, the decoder bias is its mean, and the ``"conv"`` encoder, which
    reads the other population, starts at random unit weights.
    """
    n_units = X_train.shape[1]
    target = X_train if Y_train is None else Y_train
    n_outputs = target.shape[1]
    decoder = random_unit_rows(spec.n_latents, spec.n_bins_kernel * n_outputs, rng)
    decoder = decoder.reshape(spec.n_latents, spec.n_bins_kernel, n_outputs)
    module = None
    if spec.encoder == "transformer":
        from . import _motif_transformer

        module = _motif_transformer.initialise(_motif_transformer.TransformerEncoder(
            n_units, spec.n_bins_kernel, spec.n_latents), rng)
    if Y_train is None:
        encoder = decoder.copy()
    elif spec.encoder == "conv":
        encoder = random_unit_rows(spec.n_latents, spec.n_bins_kernel * n_units, rng)
        encoder = encoder.reshape(spec.n_latents, spec.n_bins_kernel, n_units)
    else:
        encoder = None  # the transformer's own weights
    return {
        "module": module,
        "encoder_weight": encoder,
        "encoder_bias": np.zeros(spec.n_latents),
        "decoder_weight": decoder,
        "decoder_bias": target.mean(axis=0, dtype=np.float64) if len(target) else
        np.zeros(n_outputs),
    }


# ----------------------------------------------------------------- driver
def train(X_scaled, stretches, spec, rng, Y_scaled=None):
    """Fit the motifs to ``X_scaled`` (float32, n_bins x n_units).

    ``stretches``: ``(start, stop)`` rows of each stretch. ``Y_scaled``
    (float32, n_bins x n_outputs): the target the kernels decode from the
    codes of ``X_scaled`` (the transcoder); None: ``X_scaled`` itself.
    Returns a dict of NumPy parameters and the run's record.
    """
    device = resolve_device(spec.device)
    # context of a chunk (and gap between segments): what a code reads
    pad = spec.n_bins_kernel - 1
    if spec.encoder == "transformer":
        from ._motif_transformer import attention_reach

        pad += attention_reach(spec.n_bins_kernel)
    train_segments, val_segments = split_segments(stretches, spec, rng)
    training = Layout(X_scaled, train_segments, pad, Y_scaled)
    validation = Layout(X_scaled, val_segments, pad, Y_scaled) if val_segments else None
    train_rows = np.concatenate([X_scaled[a:b] for a, b in train_segments])
    train_targets = None if Y_scaled is None else np.concatenate(
        [Y_scaled[a:b] for a, b in train_segments])
    trainer = MotifTrainer(initial_parameters(spec, train_rows, rng, train_targets), spec,
                           device)

    chunk_bins = min(spec.chunk_bins, max(training.n_bins, 1))
    batch_bins = min(spec.batch_size, -(-training.n_bins // _MIN_STEPS_PER_EPOCH))
    pieces_per_batch = max(1, batch_bins // chunk_bins)
    trainer.dead_window_bins = max(spec.dead_window * training.n_bins,
                                   min(batch_bins, training.n_bins))
    n_pieces = len(training.pieces(chunk_bins, np.random.RandomState(0)))
    steps_per_epoch = -(-n_pieces // pieces_per_batch)
    schedule = full_schedule(spec, spec.max_iter * steps_per_epoch)
    val_batch = validation.whole(spec.n_bins_kernel) if validation is not None else None
    val_targets = validation.whole_targets() if validation is not None else None

    names = ("train_loss", "val_loss", "l0", "dead_fraction", "aux_loss", "learning_rate")
    history = {name: [] for name in names}
    best_loss, best_state, best_iter, no_change = np.inf, trainer.state(), 0, 0
    stop_reason, n_steps, epoch = "max_iter", 0, 0
    for epoch in range(1, spec.max_iter + 1):
        start_time = time.perf_counter()
        pieces = training.pieces(chunk_bins, rng)
        figures = []
        for first in range(0, len(pieces), pieces_per_batch):
            chosen = pieces[first:first + pieces_per_batch]
            batch = training.batch(chosen, chunk_bins, spec.n_bins_kernel)
            lr = schedule(n_steps)
            figures.append(trainer.step(batch, lr, training.targets(chosen, chunk_bins)))
            n_steps += 1
        for name in ("loss", "l0", "dead_fraction", "aux_loss"):
            key = "train_loss" if name == "loss" else name
            history[key].append(float(np.mean([f[name] for f in figures])))
        history["learning_rate"].append(lr)
        if spec.encoder == "conv":
            trainer.align_onsets()
        val_loss = (trainer.evaluate(val_batch, val_targets) if val_batch is not None
                    else np.nan)
        history["val_loss"].append(val_loss)
        if spec.verbose:
            print(f"epoch {epoch}: train {history['train_loss'][-1]:.5f}, val {val_loss:.5f}, "
                  f"l0 {history['l0'][-1]:.3f}, dead {history['dead_fraction'][-1]:.2f} "
                  f"({time.perf_counter() - start_time:.2f} s)")
        if val_batch is None:
            best_state, best_iter = trainer.state(), epoch
            continue
        if val_loss < best_loss * (1.0 - spec.tol) or not np.isfinite(best_loss):
            best_loss, best_state, best_iter, no_change = val_loss, trainer.state(), epoch, 0
        else:
            no_change += 1
            if no_change >= spec.n_iter_no_change:
                stop_reason = "early_stopping"
                break
    return {
        "parameters": trainer.export(best_state),
        "n_iter": epoch,
        "best_iter": best_iter,
        "n_steps": n_steps,
        "stop_reason": stop_reason,
        "history": {name: np.asarray(values, dtype=np.float64)
                    for name, values in history.items()},
        "device": str(device),
    }
