"""Progress lines of ``nldisco run`` on stderr, and the time each stage takes."""

import sys
import time
from contextlib import contextmanager


class Progress:
    """Progress lines on stderr, with the time since the run began; silent when quiet."""

    def __init__(self, quiet):
        self.quiet = quiet
        self.start = time.perf_counter()

    def elapsed(self):
        """Seconds since the run began."""
        return time.perf_counter() - self.start

    def __call__(self, message):
        if not self.quiet:
            print(f"nldisco [{self.elapsed():6.1f} s] {message}", file=sys.stderr, flush=True)


class Timings(dict):
    """Seconds per stage, by name, in the order the stages ran."""

    @contextmanager
    def __call__(self, name):
        tic = time.perf_counter()
        try:
            yield
        finally:
            self[name] = time.perf_counter() - tic


class EpochProgress:
    """A fit callback: a progress line every ``every`` epochs of each seed's fit.

    It follows scikit-learn's fit-callback protocol, travels with the
    estimator through ``clone`` and into joblib workers, and prints through
    ``progress`` (the workers share the run's clock and stderr).
    """

    def __init__(self, progress, every):
        self.progress = progress
        self.every = every
        self.epochs = 0

    def setup(self, estimator, context):
        self.epochs = 0

    def teardown(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context):
        if context.task_name == "epoch":
            self.epochs += 1
            if self.epochs % self.every == 0:
                self.progress(f"MSAE seed {estimator.random_state}: epoch {self.epochs}")
        return False
