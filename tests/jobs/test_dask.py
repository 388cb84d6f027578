"""`featx fit --search --dask-scheduler`: a real dask LocalCluster (worker processes, TCP) picks the
same hyper-parameters as the local joblib run; a dead address is one clear line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

distributed = pytest.importorskip("dask.distributed", reason="dask[distributed] is in the dev extra")


def _fit(store, out, *extra) -> dict:
    r = subprocess.run([sys.executable, "-m", "featx", "fit", str(store), "--clf", "linearsvc", "--search",
                        "--out", str(out), *extra], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return json.loads((out / "metrics.json").read_text())


@pytest.mark.slow
def test_a_dask_cluster_grid_search_picks_the_local_parameters(monet_lite0_store, tmp_path):
    local = _fit(monet_lite0_store, tmp_path / "local", "--n-jobs", "1")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  scheduler_port=0) as cluster, distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as stream:
            remote = _fit(monet_lite0_store, tmp_path / "dask", "--dask-scheduler", cluster.scheduler_address)
        ran_on = {t["worker"] for t in stream.data}
        assert ran_on and ran_on <= set(client.scheduler_info()["workers"])  # the fits ran on the cluster
    assert remote["best_params"] == local["best_params"] and remote["best_params"]
    assert remote["accuracy"] == local["accuracy"]


def test_a_search_through_an_in_process_cluster_equals_the_local_one(tmp_path):
    """The quick tier's dask check: a threads-only LocalCluster (no worker processes, a few seconds) on a
    small synthetic store picks what joblib picks locally, and its tasks ran on the cluster."""
    import _synth

    import featx

    store = featx.Store(_synth.store(tmp_path / "s.h5", n_per_class=(30, 30, 30), dim=8, sep=1.5))
    local = featx.fit(store, clf="linearsvc", search=True, n_jobs=1, out=tmp_path / "local")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None,
                                  scheduler_port=0) as cluster, distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as stream:
            remote = featx.fit(store, clf="linearsvc", search=True, dask_scheduler=cluster.scheduler_address,
                               out=tmp_path / "dask")
        assert stream.data  # the search's fits ran as dask tasks
    assert remote.metrics["best_params"] == local.metrics["best_params"] and remote.metrics["best_params"]
    assert remote.accuracy == local.accuracy


@pytest.mark.slow  # featx waits out distributed's 20 s connect timeout
def test_an_unreachable_scheduler_is_one_line(tmp_path):
    import _synth

    store = _synth.store(tmp_path / "s.h5")  # any store: the address is refused before a fit starts
    r = subprocess.run([sys.executable, "-m", "featx", "fit", str(store), "--search", "--out",
                        str(tmp_path / "x"), "--dask-scheduler", "tcp://127.0.0.1:9"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "--dask-scheduler tcp://127.0.0.1:9: cannot connect" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_a_malformed_scheduler_address_is_one_line(tmp_path):
    import _synth

    store = _synth.store(tmp_path / "s.h5")
    r = subprocess.run([sys.executable, "-m", "featx", "fit", str(store), "--search", "--out",
                        str(tmp_path / "x"), "--dask-scheduler", "nonsense://x"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: --dask-scheduler 'nonsense://x': not a scheduler address"), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "x" / "metrics.json").exists() and (tmp_path / "s.h5").exists()  # nothing written, nothing lost
