"""Progress display and early stop through scikit-learn's fit callbacks."""

import numpy as np
import pytest

from sklearn_nldisco import MatryoshkaSAE

callback = pytest.importorskip(
    "sklearn.callback", reason="fit callbacks need scikit-learn >= 1.9"
)


def _data():
    return np.random.RandomState(0).poisson(2.0, size=(600, 12)).astype(float)


class StopAfter:
    """Counts epoch ends and asks the estimator to stop after ``n`` of them."""

    def __init__(self, n):
        self.n = n
        self.epochs_seen = 0
        self.setup_called = self.teardown_called = False

    def setup(self, estimator, context):
        self.setup_called = True

    def teardown(self, estimator, context):
        self.teardown_called = True

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context):
        if context.task_name != "epoch":
            return False
        self.epochs_seen += 1
        return self.epochs_seen >= self.n


def test_callback_sees_every_epoch_and_can_stop_fit():
    stopper = StopAfter(3)
    model = MatryoshkaSAE(n_latents=16, k=2, max_iter=20, early_stopping=False,
                          batch_size=128, random_state=0)
    model.set_callbacks(stopper).fit(_data())
    assert stopper.setup_called and stopper.teardown_called
    assert stopper.epochs_seen == 3
    assert model.n_iter_ == 3
    assert model.stop_reason_ == "callback"
    assert model.history_["train_loss"].shape[0] == 3


def test_progress_bar_runs_through_fit(capsys):
    pytest.importorskip("rich", reason="sklearn's ProgressBar needs rich")
    model = MatryoshkaSAE(n_latents=16, k=2, max_iter=4, random_state=0)
    model.set_callbacks(callback.ProgressBar()).fit(_data())
    assert model.n_iter_ >= 1
    assert np.isfinite(model.score(_data()))


def test_verbose_prints_one_line_per_epoch(capsys):
    model = MatryoshkaSAE(n_latents=16, k=2, max_iter=4, early_stopping=False,
                          random_state=0, verbose=1).fit(_data())
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    assert len(lines) == model.n_iter_ == 4
    assert "val EV" in lines[0] and "dead" in lines[0]
