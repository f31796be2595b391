"""The training driver: every fit of the Matryoshka models goes through ``train``.

``train(source, spec, ...)`` takes a row source (``_rows.ArrayRows`` for an
in-memory array, one chunk; ``_rows.ChunkedRows`` for a memmap or HDF5
dataset, many chunks) and a ``TrainingSpec``, and returns a ``Fitted``
result; it never sees the estimator. ``fit`` (in memory or out of core) is
``train`` from a fresh state for ``max_iter`` epochs with a held-out split,
early stopping and an exact threshold; ``partial_fit`` is ``train`` with
``streaming=True``: one pass over a chunk from the state it carried over
(``Carried``), a warm-up-then-constant learning rate and a running
threshold. Either way there is one scaling, one initialisation and one epoch
loop (``_run_epochs``): an epoch visits the chunks in a shuffled order and
the rows of each chunk in a shuffled order, in mini-batches of
``batch_size``.

All randomness comes from one NumPy ``RandomState``: the validation split,
the initial dictionary, then the permutations of each epoch, in that order.
"""

import time
import warnings
from dataclasses import replace

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from . import _training
from ._initialisation import bias_from_data, random_unit_rows, validation_rows
from ._losses import inverse_link_numpy
from ._rows import scale_rows
from ._spec import Carried, Fitted

#: partial_fit's running BatchTopK threshold: the earlier estimate weighs at
#: most this many times the current chunk (an exponential average with a
#: memory of about five chunks)
THRESHOLD_MEMORY = 4.0

PARAMETER_NAMES = _training.PARAMETER_NAMES

#: an epoch whose loss is more than this many times the loss of the
#: parameters training started from has diverged: a working fit never comes
#: near it (its loss falls from there), a diverging one passes it within a
#: few steps on its way to overflow
DIVERGENCE_FACTOR = 1e3

#: masked training draws 16-bit integers: an entry is hidden when its draw is
#: below ``_mask_cut(mask_fraction)`` of these levels
_MASK_LEVELS = 2**16


def _mask_cut(mask_fraction):
    """Draws below this are hidden: ``mask_fraction`` to 1 / 65,536, never 0
    (a positive fraction hides something) nor every entry."""
    if not mask_fraction:
        return 0
    return int(min(max(round(mask_fraction * _MASK_LEVELS), 1), _MASK_LEVELS - 1))


# ---------------------------------------------------------------- starting
def initial_parameters(spec, X_train, Y_train, rng):
    """Random unit dictionary, tied encoder, biases from the training rows."""
    n_latents = spec.n_latents
    decoder_weight = random_unit_rows(n_latents, Y_train.shape[1], rng)
    if spec.autoencoder and not spec.mask_fraction:
        encoder_weight = decoder_weight.T.copy()
    else:
        encoder_weight = random_unit_rows(n_latents, X_train.shape[1], rng).T.copy()
    if spec.counts_loss:
        decoder_bias = inverse_link_numpy(Y_train.mean(axis=0, dtype=np.float64), spec.loss)
    else:
        decoder_bias = bias_from_data(Y_train, spec.bias_init, rng)
    input_bias = decoder_bias if spec.tied else bias_from_data(X_train, spec.bias_init, rng)
    return {
        "encoder_weight": encoder_weight,
        "encoder_bias": np.zeros(n_latents),
        "decoder_weight": decoder_weight,
        "decoder_bias": decoder_bias,
        "input_bias": input_bias,
    }


def full_schedule(spec, total_steps):
    """``fit``'s learning rate: linear warm-up, constant, linear decay to 1 %."""
    base = spec.learning_rate
    warmup = max(1, int(spec.warmup_fraction * total_steps))
    decay_start = int((1.0 - spec.decay_fraction) * total_steps)

    def rate(step):
        if step < warmup:
            return base * (step + 1) / warmup
        if step >= decay_start and total_steps > decay_start:
            progress = (step - decay_start) / (total_steps - decay_start)
            return base * max(0.0, 1.0 - progress) + base * 0.01 * progress
        return base

    return rate


def streaming_schedule(spec, warmup_steps):
    """``partial_fit``'s learning rate: linear warm-up over ``warmup_steps``
    (fixed at the first call), then constant: the total number of steps is
    unknown when data arrive in chunks, so there is no final decay."""
    base = spec.learning_rate
    warmup = max(1, int(warmup_steps))

    def rate(step):
        return base * (step + 1) / warmup if step < warmup else base

    return rate


# ------------------------------------------------------------------- rows
class _TrainingRows:
    """The scaled training rows of a source, chunk by chunk, as tensors.

    A source of one chunk (an in-memory array) is scaled and moved to the
    device once; a chunked source is read and scaled again at every visit.
    """

    def __init__(self, source, spec, scaling, keep, device):
        self.source, self.spec, self.scaling = source, spec, scaling
        self.keep, self.device = keep, device
        self.counts = [
            stop - start if keep is None else int(keep[start:stop].sum())
            for start, stop in source.bounds
        ]
        self.n_rows = int(sum(self.counts))
        self._cached = len(source.bounds) == 1
        self._arrays, self._tensors = {}, {}

    def arrays(self, index):
        """Scaled float32 ``(X_in, Y_target)`` of chunk ``index``."""
        arrays = self._arrays.get(index)
        if arrays is None:
            arrays = scale_rows(self.spec, self.scaling, *self.source.rows(index, self.keep))
            if self._cached:
                self._arrays[index] = arrays
        return arrays

    def tensors(self, index):
        """``arrays(index)`` as tensors on the device (the same tensor twice
        for the mse autoencoder)."""
        tensors = self._tensors.get(index)
        if tensors is None:
            X_in, Y_target = self.arrays(index)
            x = torch.as_tensor(X_in, dtype=torch.float32).to(self.device)
            y = x if Y_target is X_in else torch.as_tensor(
                Y_target, dtype=torch.float32).to(self.device)
            tensors = (x, y)
            if self._cached:
                self._tensors[index] = tensors
        return tensors

    def inputs(self):
        """Scaled training inputs, chunk by chunk (for the threshold)."""
        for index in range(len(self.source.bounds)):
            yield self.arrays(index)[0]

    def steps_per_pass(self):
        return sum(max(1, n // min(self.spec.batch_size, n)) for n in self.counts if n > 0)


def _validation(source, spec, scaling, held_out, device):
    """Scaled held-out rows as ``(x_val, y_val, target_scale)`` tensors, or None."""
    if held_out is None:
        return None
    parts = [
        scale_rows(spec, scaling, *source.rows(index, held_out))
        for index, (start, stop) in enumerate(source.bounds)
        if held_out[start:stop].any()
    ]
    same = parts[0][1] is parts[0][0]
    X_val = parts[0][0] if len(parts) == 1 else np.concatenate([p[0] for p in parts])
    Y_val = X_val if same else (
        parts[0][1] if len(parts) == 1 else np.concatenate([p[1] for p in parts]))
    del parts
    if X_val.shape[0] == 0:
        return None
    x_val = torch.as_tensor(X_val, dtype=torch.float32).to(device)
    y_val = x_val if same else torch.as_tensor(Y_val, dtype=torch.float32).to(device)
    target_scale = torch.as_tensor(scaling.target_scale, dtype=torch.float32).to(device)
    return x_val, y_val, target_scale


# ----------------------------------------------------------------- epochs
class EpochLog:
    """History, best epoch, early stopping and divergence of the epoch loop.

    Each epoch ends with ``end_epoch``, which evaluates the held-out rows
    (when there are any), checks the epoch for divergence, records it, prints
    the verbose line and keeps the best parameters so far; ``finish``
    restores them. An epoch counts (``epochs_done``) once it is recorded
    whole: ``discard_partial_epoch`` drops what an interrupt left half-written.
    """

    HISTORY = ("train_loss", "aux_loss", "l0", "dead_fraction", "val_loss",
               "val_explained_variance", "learning_rate", "epoch_time")

    def __init__(self, trainer, spec, first_epoch=0):
        self.trainer = trainer
        self.spec = spec
        self.level_weights = trainer.level_weights.cpu().numpy()
        self.history = {name: [] for name in self.HISTORY}
        # (score, parameters, epoch) of the kept epoch, replaced as one
        self._best = (np.inf, trainer.state(), 0)
        self.no_improvement = 0
        self.epochs_done = 0
        self.first_epoch = first_epoch
        #: weighted loss of the parameters training started from (the first
        #: step's batch): the scale against which divergence is judged
        self.initial_loss = None
        #: why training diverged (a sentence), or None
        self.diverged = None

    @property
    def best_score(self):
        return self._best[0]

    @property
    def best_state(self):
        return self._best[1]

    @property
    def best_epoch(self):
        return self._best[2]

    def end_epoch(self, figures, validation, epoch_start):
        """Record one completed epoch.

        ``figures``: its ``train_loss`` (per level), ``aux_loss``, ``l0``,
        ``dead_fraction``, last ``learning_rate`` and ``first_loss`` (the
        per-level loss of its first step); ``validation``: None or
        ``(x_val, y_val, target_scale)`` tensors for ``trainer.evaluate``.

        Everything is computed before anything is recorded, so that an
        interrupt leaves either the whole epoch or none of it (with
        ``discard_partial_epoch``). A diverged epoch (``check_divergence``)
        is recorded in the history but never kept.
        """
        spec, history = self.spec, self.history
        train_score = float(figures["train_loss"] @ self.level_weights)
        if validation is not None:
            val_losses, val_explained = self.trainer.evaluate(*validation)
            score = float(val_losses @ self.level_weights)
        else:
            n_levels = self.trainer.n_levels
            val_losses = np.full(n_levels, np.nan)
            val_explained = np.full(n_levels, np.nan)
            score = train_score
        initial_loss = self.initial_loss
        if initial_loss is None:
            initial_loss = float(figures["first_loss"] @ self.level_weights)
        epoch = self.epochs_done + 1
        diverged = self.check_divergence(epoch, (train_score, score), initial_loss)
        best = None
        if diverged is None and (not spec.early_stopping or not np.isfinite(self.best_score)
                                 or score < self.best_score - spec.tol * max(
                                     abs(self.best_score), 1e-12)):
            best = (score, self.trainer.state(), epoch)
        record = {name: figures[name]
                  for name in ("train_loss", "aux_loss", "l0", "dead_fraction", "learning_rate")}
        record.update(val_loss=val_losses, val_explained_variance=val_explained,
                      epoch_time=time.perf_counter() - epoch_start)
        for name in self.HISTORY:
            history[name].append(record[name])
        self.initial_loss = initial_loss
        self.epochs_done = epoch
        if best is not None:
            self._best = best
            self.no_improvement = 0
        else:
            self.no_improvement += 1
        self.diverged = diverged
        if spec.verbose:
            print(
                f"epoch {self.first_epoch + epoch:4d}/{spec.max_iter}  "
                f"loss {history['train_loss'][-1][-1]:.4f}  "
                f"val EV {val_explained[-1]:.3f}  L0 {history['l0'][-1]:.1f}  "
                f"dead {history['dead_fraction'][-1]:.1%}",
                flush=True,
            )

    def check_divergence(self, epoch, scores, initial_loss):
        """Why epoch ``epoch`` has diverged (a sentence), or None.

        It has when its training or early-stopping loss (``scores``) or a
        parameter is not finite, or when a loss exceeds
        ``DIVERGENCE_FACTOR`` times ``initial_loss``, the loss of the
        parameters training started from.
        """
        if not np.isfinite(initial_loss):
            return (
                "the loss of the initial parameters is not finite: the data are too "
                "large for float32 training. Rescale them (scaling='standard', or "
                "divide them by their typical magnitude)"
            )
        if not all(np.isfinite(scores)) or not self.trainer.parameters_finite():
            return (
                f"training diverged in epoch {self.first_epoch + epoch}: the loss or the "
                f"parameters became NaN or infinite. Lower learning_rate (it is "
                f"{self.spec.learning_rate:g}), or rescale data of a large magnitude "
                "(scaling='standard')"
            )
        worst = max(scores)
        if initial_loss > 0 and worst > DIVERGENCE_FACTOR * initial_loss:
            return (
                f"training diverged in epoch {self.first_epoch + epoch}: its loss "
                f"({worst:.3g}) is {worst / initial_loss:.3g} times that of the initial "
                f"parameters ({initial_loss:.3g}). Lower learning_rate (it is "
                f"{self.spec.learning_rate:g})"
            )
        return None

    def discard_partial_epoch(self):
        """Drop the entries of an epoch that an interrupt left half-recorded."""
        for values in self.history.values():
            del values[self.epochs_done:]

    def stops_early(self):
        """Whether early stopping ends training after this epoch."""
        return bool(self.spec.early_stopping
                    and self.no_improvement >= self.spec.n_iter_no_change)

    def finish(self):
        """Restore the kept (best or last) parameters; the history as arrays."""
        self.trainer.load_state(self.best_state)
        return {
            name: np.asarray(values, dtype=np.float64) for name, values in self.history.items()
        }


def _one_pass(trainer, x, y, spec, rng, schedule):
    """One shuffled pass over the rows of a chunk: ``n // batch_size`` full batches."""
    n_rows = x.shape[0]
    batch_size = min(spec.batch_size, n_rows)
    n_steps = max(1, n_rows // batch_size)
    permutation = rng.permutation(n_rows)
    if x.device.type == "cpu":
        # NumPy's take gathers rows without torch's parallel indexing, whose
        # thread start-up costs more than the copy on a busy machine
        x_rows, y_rows = x.numpy(), y.numpy()

        def rows(index):
            xb = torch.from_numpy(x_rows.take(index, axis=0))
            return xb, xb if y is x else torch.from_numpy(y_rows.take(index, axis=0))
    else:
        permutation = torch.from_numpy(permutation).to(x.device)

        def rows(index):
            return x[index], x[index] if y is x else y[index]
    hidden_below = _mask_cut(spec.mask_fraction)
    level_sum = torch.zeros(trainer.n_levels, dtype=torch.float64)
    aux_sum = 0.0
    active = 0
    lr = schedule(trainer.step_count)
    for step in range(n_steps):
        xb, yb = rows(permutation[step * batch_size : (step + 1) * batch_size])
        lr = schedule(trainer.step_count)
        keep = None
        if spec.mask_fraction:
            # masked-unit training: each entry hidden with probability
            # mask_fraction (to 1 / 65,536), drawn from the run's generator
            # (reproducible); 16-bit draws cost a quarter of float draws
            keep = torch.from_numpy(
                rng.randint(0, _MASK_LEVELS, size=xb.shape, dtype=np.uint16) >= hidden_below)
            keep = keep.to(xb.device)
        losses, aux_loss, n_active = trainer.step(xb, yb, lr, keep)
        level_sum += losses.detach().cpu().double()
        if step == 0:
            # the loss before the first update: the scale that divergence is judged by
            first_loss = level_sum.numpy().copy()
        aux_sum += aux_loss
        active += n_active
    dead_now = trainer.samples_since_fired > spec.dead_window_rows
    return n_steps, {
        "first_loss": first_loss,
        "train_loss": (level_sum / n_steps).numpy(),
        "aux_loss": aux_sum / n_steps,
        "l0": active / (n_steps * batch_size),
        "dead_fraction": float(dead_now.float().mean()),
        "learning_rate": lr,
    }


def _epoch_figures(passes):
    """The figures of an epoch from those of its chunks' passes (step-weighted)."""
    if len(passes) == 1:
        return passes[0][1]
    n_steps = sum(steps for steps, _ in passes)
    level_sum, aux_sum, l0_sum = 0.0, 0.0, 0.0
    for steps, figures in passes:
        level_sum = level_sum + figures["train_loss"] * steps
        aux_sum += figures["aux_loss"] * steps
        l0_sum += figures["l0"] * steps
    last = passes[-1][1]
    return {"first_loss": passes[0][1]["first_loss"],
            "train_loss": level_sum / n_steps, "aux_loss": aux_sum / n_steps,
            "l0": l0_sum / n_steps, "dead_fraction": last["dead_fraction"],
            "learning_rate": last["learning_rate"]}


def _run_epochs(trainer, rows, spec, rng, schedule, n_epochs, validation, log, on_epoch_end):
    """The epoch loop; returns why it stopped.

    A ``KeyboardInterrupt`` anywhere in an epoch (its steps, its evaluation,
    the callback) ends training at the last completed epoch (re-raised when
    none is complete). A diverged epoch (``EpochLog.check_divergence``) ends
    it too (``"diverged"``).
    """
    n_chunks = len(rows.counts)
    for _ in range(n_epochs):
        epoch_start = time.perf_counter()
        completed = log.epochs_done
        try:
            passes = []
            for index in rng.permutation(n_chunks):
                if rows.counts[index] == 0:
                    continue
                x, y = rows.tensors(index)
                passes.append(_one_pass(trainer, x, y, spec, rng, schedule))
            log.end_epoch(_epoch_figures(passes), validation, epoch_start)
            if log.diverged is not None:
                return "diverged"
            if on_epoch_end is not None and on_epoch_end(log.epochs_done):
                return "callback"
        except KeyboardInterrupt:
            log.discard_partial_epoch()
            if log.epochs_done == 0:
                raise
            where = (f"during epoch {completed + 1}" if log.epochs_done == completed
                     else f"after epoch {log.epochs_done}")
            warnings.warn(
                f"fit was interrupted {where}; the model keeps the parameters of epoch "
                f"{log.best_epoch} (the {'best' if spec.early_stopping else 'last'} "
                "completed epoch).",
                UserWarning,
                stacklevel=4,
            )
            return "interrupted"
        if log.stops_early():
            return "early_stopping"
    return "max_iter"


def finish_despite_interrupt(work, what):
    """``work()``, done again once when a ``KeyboardInterrupt`` stops it.

    For the work that completes a fit once its epochs are over (restoring
    the kept epoch, calibrating its threshold, counting the latents'
    frequencies): an interrupt there must not lose the completed epochs.
    Returns ``(result, interrupted)``; a second interrupt propagates.
    """
    try:
        return work(), False
    except KeyboardInterrupt:
        warnings.warn(
            f"fit was interrupted while {what}; finishing it (interrupt again to "
            "abandon the fit, leaving the estimator as it was before fit).",
            UserWarning,
            stacklevel=3,
        )
        return work(), True


def _report_divergence(log, stop_reason, streaming=False):
    """Warn that training diverged and which epoch is kept; raise when none is."""
    if stop_reason != "diverged":
        return
    if log.best_epoch == 0:
        raise ValueError(
            f"{log.diverged}. "
            + ("partial_fit" if streaming else "No epoch before it gave usable parameters: fit")
            + " raised and left the estimator as it was."
        )
    warnings.warn(
        f"{log.diverged}. Training stopped; the model keeps the parameters of epoch "
        f"{log.best_epoch} (stop_reason_='diverged').",
        ConvergenceWarning,
        stacklevel=4,
    )


# ------------------------------------------------------------------ driver
def train(source, spec, *, random_state, carried=None, streaming=False, on_epoch_end=None):
    """Train a Matryoshka coder on the rows of ``source``; returns ``Fitted``.

    Parameters
    ----------
    source : ArrayRows or ChunkedRows
    spec : TrainingSpec
    random_state : int, RandomState or None
        Used when training starts afresh (``carried`` is None or holds no
        random state).
    carried : Carried, default=None
        The state to continue from (``streaming`` only); None starts afresh.
    streaming : bool, default=False
        False: ``fit``, from a fresh state for ``spec.max_iter`` epochs.
        True: ``partial_fit``, one pass over ``source``.
    on_epoch_end : callable, default=None
        Called with the number of completed epochs; True stops training.
    """
    if streaming:
        return _train_streaming(source, spec, random_state, carried)
    return _train_fit(source, spec, random_state, on_epoch_end)


def _train_fit(source, spec, random_state, on_epoch_end):
    rng = check_random_state(random_state)
    device = _training.resolve_device(spec.device)
    scaling = source.statistics(spec)
    held_out = None
    if spec.early_stopping:
        held_out = validation_rows(source.n_rows, spec.validation_fraction, rng)
    validation = _validation(source, spec, scaling, held_out, device)
    n_train = source.n_rows - (0 if held_out is None else int(held_out.sum()))
    spec = spec.with_batch_for(n_train)
    rows = _TrainingRows(source, spec, scaling, None if held_out is None else ~held_out,
                         device)
    first = int(np.flatnonzero(np.asarray(rows.counts) > 0)[0])
    init = initial_parameters(spec, *rows.arrays(first), rng)
    spec = spec.for_rows(rows.n_rows, has_validation=validation is not None)
    trainer = _training.MatryoshkaTrainer(init, spec, device)
    schedule = full_schedule(spec, rows.steps_per_pass() * spec.max_iter)
    log = EpochLog(trainer, spec)
    stop_reason = _run_epochs(trainer, rows, spec, rng, schedule, spec.max_iter,
                              validation, log, on_epoch_end)
    _report_divergence(log, stop_reason)
    del validation

    def finish():
        history = log.finish()
        threshold = 0.0
        if spec.sparsity == "batchtopk":
            threshold = _training.calibrate_threshold_streaming(
                trainer, rows.inputs(), spec.k, rows.n_rows)
        return history, threshold

    (history, threshold), interrupted = finish_despite_interrupt(
        finish, "calibrating the threshold of the kept epoch")
    if interrupted:
        stop_reason = "interrupted"
    return Fitted(
        parameters=trainer.export_state(parameters_only=True), scaling=scaling,
        threshold=threshold, levels=(spec.level_sizes, spec.level_weights),
        n_iter=log.epochs_done, best_iter=log.best_epoch,
        n_steps=trainer.step_count, stop_reason=stop_reason, history=history,
        device=str(device),
    )


def _train_streaming(source, spec, random_state, carried):
    device = _training.resolve_device(spec.device)
    if carried is None or carried.rng_state is None:
        rng = check_random_state(random_state)
    else:
        rng = np.random.RandomState()
        rng.set_state(carried.rng_state)
    if carried is not None and carried.levels is not None:
        spec = replace(spec, level_sizes=carried.levels[0], level_weights=carried.levels[1])
    scaling = source.statistics(spec) if carried is None else carried.scaling
    rows = _TrainingRows(source, spec, scaling, None, device)
    spec = spec.for_rows(rows.n_rows, has_validation=False)
    if carried is None:
        # first call: initialise exactly as fit does, statistics from this chunk
        trainer = _training.MatryoshkaTrainer(
            initial_parameters(spec, *rows.arrays(0), rng), spec, device)
        carried = Carried(trainer={}, scaling=scaling)
    else:
        trainer = _training.MatryoshkaTrainer.from_exported(carried.trainer, spec, device)
    warmup_steps = carried.warmup_steps
    if warmup_steps is None:
        warmup_steps = max(1, int(spec.warmup_fraction * spec.max_iter * rows.steps_per_pass()))
    log = EpochLog(trainer, spec, first_epoch=carried.n_iter)
    stop_reason = _run_epochs(trainer, rows, spec, rng,
                              streaming_schedule(spec, warmup_steps), 1, None, log, None)
    _report_divergence(log, stop_reason, streaming=True)
    entry = log.finish()
    threshold_stat, threshold_weight = carried.threshold
    threshold = 0.0
    if spec.sparsity == "batchtopk":
        # this chunk's exact calibration under the new weights, averaged with
        # the earlier estimate, which weighs at most THRESHOLD_MEMORY times
        # this chunk (older chunks fade out)
        n_rows = rows.n_rows
        chunk_threshold = _training.calibrate_threshold_streaming(
            trainer, rows.inputs(), spec.k, n_rows)
        previous_weight = min(threshold_weight, THRESHOLD_MEMORY * n_rows)
        threshold_stat = (previous_weight * threshold_stat + n_rows * chunk_threshold) / (
            previous_weight + n_rows
        )
        threshold_weight += n_rows
        threshold = float(np.float32(threshold_stat))
    history = {
        name: np.concatenate([carried.history[name], values])
        if name in carried.history else values
        for name, values in entry.items()
    }
    exported = trainer.export_state()
    n_iter = carried.n_iter + 1
    return Fitted(
        # the fitted attributes are copies: the carried state is not theirs to change
        parameters={name: exported[name].copy()
                    for name in PARAMETER_NAMES + ("input_bias",)},
        scaling=scaling, threshold=threshold, levels=(spec.level_sizes, spec.level_weights),
        n_iter=n_iter, best_iter=n_iter,
        n_steps=trainer.step_count, stop_reason="partial_fit", history=history,
        device=str(device),
        carried=Carried(
            trainer=exported, scaling=scaling, threshold=(threshold_stat, threshold_weight),
            rng_state=rng.get_state(), warmup_steps=warmup_steps,
            levels=(spec.level_sizes, spec.level_weights), n_iter=n_iter,
            history=history,
        ),
    )
