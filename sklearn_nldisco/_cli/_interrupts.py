"""Ctrl-C during ``nldisco run``: the command stops, whatever catches the interrupt.

An estimator that is interrupted while it trains keeps its last good epoch
and returns (``stop_reason_ == "interrupted"``): right for a library user,
who holds the model, but a command must stop. While :class:`Interrupts` is
active, SIGINT raises ``KeyboardInterrupt`` as usual and is also recorded,
so that :meth:`Interrupts.check` raises it again after any stage that
swallowed it. :meth:`Interrupts.deferred` holds an interrupt back during
work that must not be cut in half (moving a finished run into place,
removing a staging folder) and raises it after.
"""

import contextlib
import signal
import threading
import warnings


class Interrupts:
    """Record SIGINT while active (a context manager); raise it again on :meth:`check`.

    Outside the main thread, where no signal handler can be set, only
    :meth:`interrupted` (models that say they were interrupted) is seen.
    While active, the models' warning that a fit was interrupted and keeps
    an earlier epoch is silenced: the command keeps no model of an
    interrupted run, and says so on one line.
    """

    def __init__(self):
        self.received = False
        self._deferring = False
        self._previous = None
        self._warnings = None

    def __enter__(self):
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.filterwarnings("ignore", message="fit was interrupted", category=UserWarning)
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, kind, value, traceback):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        self._warnings.__exit__(kind, value, traceback)
        return False

    def _handle(self, signum, frame):
        self.received = True
        if not self._deferring:
            raise KeyboardInterrupt

    def interrupted(self, models=()):
        """Record models whose fit was interrupted (they caught the interrupt themselves)."""
        if any(getattr(model, "stop_reason_", None) == "interrupted" for model in models):
            self.received = True

    def check(self, models=()):
        """Raise ``KeyboardInterrupt`` if one came since entering (or a model records one)."""
        self.interrupted(models)
        if self.received:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self):
        """Hold SIGINT back for the duration, then raise it if one came."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        self.check()
