"""Thread limits (``n_threads``) and parallel fits: loky workers and a Dask cluster."""

import os

import joblib
import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV
from threadpoolctl import threadpool_info

from sklearn_nldisco import MatryoshkaSAE, MatryoshkaTranscoder
from sklearn_nldisco.interpretation._consistency import fit_seeds
from sklearn_nldisco.models import _base, _inference

pytest.importorskip("sklearn.callback", reason="fit callbacks need scikit-learn >= 1.9")

SMALL = dict(n_latents=16, k=2, max_iter=3, batch_size=128, random_state=0)
GRID = {"k": [2, 4], "n_latents": [16, 32]}


def _data(n_rows=600, n_units=12, seed=0):
    return np.random.RandomState(seed).poisson(2.0, size=(n_rows, n_units)).astype(float)


class ThreadRecorder:
    """Records torch's and numba's thread counts at the end of every fit task.

    Pickled into worker processes with the estimator, so the records go to a
    file (one line per task: pid, task name, torch threads, numba threads).
    """

    def __init__(self, path):
        self.path = str(path)

    def setup(self, estimator, context):
        pass

    def teardown(self, estimator, context):
        pass

    def on_fit_task_begin(self, estimator, context):
        pass

    def on_fit_task_end(self, estimator, context):
        import numba

        with open(self.path, "a") as handle:
            handle.write(
                f"{os.getpid()} {context.task_name} {torch.get_num_threads()} "
                f"{numba.get_num_threads()}\n"
            )
        return False

    def records(self):
        with open(self.path) as handle:
            rows = [line.split() for line in handle if line.strip()]
        return [(int(pid), task, int(t), int(n)) for pid, task, t, n in rows]


# ------------------------------------------------------------ thread limits
@pytest.mark.parametrize("n_threads", [1, 2])
def test_fit_runs_with_n_threads_and_restores(n_threads, tmp_path):
    before = torch.get_num_threads()
    recorder = ThreadRecorder(tmp_path / "threads.txt")
    model = MatryoshkaSAE(**SMALL, n_threads=n_threads).set_callbacks(recorder)
    model.fit(_data())
    records = recorder.records()
    assert {task for _, task, _, _ in records} == {"fit", "epoch"}
    assert all(torch_threads == n_threads for _, _, torch_threads, _ in records)
    assert all(numba_threads == n_threads for _, _, _, numba_threads in records)
    assert torch.get_num_threads() == before


def test_n_threads_none_touches_nothing(tmp_path):
    before = torch.get_num_threads()
    recorder = ThreadRecorder(tmp_path / "threads.txt")
    MatryoshkaSAE(**SMALL).set_callbacks(recorder).fit(_data())
    assert all(t == before for _, _, t, _ in recorder.records())


def test_limits_are_restored_after_an_error():
    import numba

    torch_before, numba_before = torch.get_num_threads(), numba.get_num_threads()
    blas_before = [pool["num_threads"] for pool in threadpool_info()]
    X = _data()
    X[0, 0] = -1.0  # rejected inside the limited fit
    with pytest.raises(ValueError, match="negative"):
        MatryoshkaSAE(**{**SMALL, "loss": "poisson"}, n_threads=1).fit(X)
    assert torch.get_num_threads() == torch_before
    assert numba.get_num_threads() == numba_before
    after = [pool["num_threads"] for pool in threadpool_info()]
    assert after[: len(blas_before)] == blas_before


def test_transform_predict_score_run_under_the_limit(monkeypatch):
    seen = []
    original = _inference.encode

    def recording_encode(*args, **kwargs):
        blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
        seen.append((torch.get_num_threads(), kwargs.get("n_threads"), max(blas)))
        return original(*args, **kwargs)

    X = _data()
    sae = MatryoshkaSAE(**SMALL, n_threads=1).fit(X)
    transcoder = MatryoshkaTranscoder(**SMALL, n_threads=1).fit(X[:, :6], X[:, 6:])
    monkeypatch.setattr(_inference, "encode", recording_encode)
    before = torch.get_num_threads()
    sae.transform(X)
    sae.score(X)
    transcoder.predict(X[:, :6])
    transcoder.score(X[:, :6], X[:, 6:])
    assert seen == [(1, 1, 1)] * 4
    assert torch.get_num_threads() == before


def test_inverse_transform_runs_under_the_limit(monkeypatch):
    seen = []
    original = _inference.decode

    def recording_decode(*args, **kwargs):
        blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
        seen.append(max(blas))
        return original(*args, **kwargs)

    X = _data()
    sae = MatryoshkaSAE(**SMALL, n_threads=1).fit(X)
    codes = sae.transform(X)
    monkeypatch.setattr(_inference, "decode", recording_decode)
    before = max(pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas")
    sae.inverse_transform(codes)
    sae.set_params(n_threads=None).inverse_transform(codes)
    assert seen == [1, before]


def test_limit_threads_none_is_a_no_op():
    before = torch.get_num_threads()
    with _base.limit_threads(None, torch_module=torch):
        assert torch.get_num_threads() == before


@pytest.mark.parametrize("Estimator", [MatryoshkaSAE, MatryoshkaTranscoder])
def test_default_and_none_fit_bitwise_identical(Estimator):
    X = _data()
    args = (X,) if Estimator is MatryoshkaSAE else (X[:, :6], X[:, 6:])
    default = Estimator(**SMALL).fit(*args)
    explicit = Estimator(**SMALL, n_threads=None).fit(*args)
    for name in ("components_", "encoder_weight_", "encoder_bias_", "decoder_bias_"):
        assert np.array_equal(getattr(default, name), getattr(explicit, name))
    assert default.threshold_ == explicit.threshold_


@pytest.mark.parametrize("sparsity", ["batchtopk", "topk"])
def test_one_thread_fits_the_same_model(sparsity):
    """On CPU the thread count does not change the model (bitwise here)."""
    X = _data(2000, 40)
    params = dict(SMALL, n_latents=64, k=4, sparsity=sparsity)
    unlimited = MatryoshkaSAE(**params).fit(X)
    single = MatryoshkaSAE(**params, n_threads=1).fit(X)
    np.testing.assert_allclose(single.components_, unlimited.components_, rtol=0, atol=1e-5)
    assert np.array_equal(single.components_, unlimited.components_)
    assert np.array_equal(single.transform(X), unlimited.transform(X))


def test_n_threads_is_validated():
    with pytest.raises(ValueError, match="n_threads"):
        MatryoshkaSAE(**SMALL, n_threads=0).fit(_data())


# ------------------------------------------------------------ loky workers
@pytest.mark.slow
def test_grid_search_loky_workers_use_n_threads(tmp_path):
    recorder = ThreadRecorder(tmp_path / "threads.txt")
    model = MatryoshkaSAE(**SMALL, n_threads=1).set_callbacks(recorder)
    # loky would cap each worker at cores // n_jobs by itself; allow 2 so
    # that the limit seen inside the fits is the estimator's
    with joblib.parallel_config(backend="loky", inner_max_num_threads=2):
        search = GridSearchCV(model, {"k": [2, 4]}, cv=2, n_jobs=2).fit(_data())
    records = recorder.records()
    worker_records = [r for r in records if r[0] != os.getpid()]
    assert worker_records, "no fit ran in a worker process"
    assert all(t == 1 for _, _, t, _ in records)
    assert search.best_params_["k"] in (2, 4)


# ------------------------------------------------------------ Dask cluster
@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip(
        "distributed", reason="the Dask tests need the [distributed] extra"
    )
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        yield client


def _scores(search):
    keys = sorted(k for k in search.cv_results_ if k.endswith("test_score"))
    return {k: np.asarray(search.cv_results_[k]) for k in keys if not k.startswith("std")}


# the Dask tests start a 2-process cluster: slow
@pytest.mark.slow
def test_grid_search_on_dask_equals_local(dask_client):
    X = _data()
    estimator = MatryoshkaSAE(**SMALL, n_threads=1)
    with joblib.parallel_config(backend="dask"):
        remote = GridSearchCV(estimator, GRID, cv=3, n_jobs=-1).fit(X)
    local = GridSearchCV(estimator, GRID, cv=3, n_jobs=1).fit(X)
    remote_scores, local_scores = _scores(remote), _scores(local)
    assert remote_scores.keys() == local_scores.keys()
    assert "split2_test_score" in remote_scores
    for key in remote_scores:
        assert np.array_equal(remote_scores[key], local_scores[key]), key
    assert remote.best_params_ == local.best_params_
    assert np.array_equal(remote.best_estimator_.components_, local.best_estimator_.components_)


@pytest.mark.slow
def test_dask_workers_fit_under_n_threads(dask_client, tmp_path):
    recorder = ThreadRecorder(tmp_path / "threads.txt")
    estimator = MatryoshkaSAE(**SMALL, n_threads=1).set_callbacks(recorder)
    with joblib.parallel_config(backend="dask"):
        fit_seeds(estimator, _data(), seeds=(0, 1), n_jobs=2)
    worker_pids = set(dask_client.run(os.getpid).values())
    records = recorder.records()
    assert records
    assert {pid for pid, _, _, _ in records} <= worker_pids
    assert all(t == 1 for _, _, t, _ in records)


@pytest.mark.slow
def test_fit_seeds_on_dask_equals_local(dask_client):
    X = _data()
    estimator = MatryoshkaSAE(**SMALL, n_threads=1)
    with joblib.parallel_config(backend="dask"):
        remote = fit_seeds(estimator, X, seeds=(0, 1, 2), n_jobs=2)
    local = fit_seeds(estimator, X, seeds=(0, 1, 2), n_jobs=1)
    assert [run.random_state for run in remote] == [0, 1, 2]
    for a, b in zip(remote, local):
        assert np.array_equal(a.components_, b.components_)
        assert np.array_equal(a.encoder_weight_, b.encoder_weight_)
