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


def test_an_unreachable_scheduler_is_one_line(monet_lite0_store, tmp_path):
    r = subprocess.run([sys.executable, "-m", "featx", "fit", str(monet_lite0_store), "--search", "--out",
                        str(tmp_path / "x"), "--dask-scheduler", "tcp://127.0.0.1:9"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "--dask-scheduler tcp://127.0.0.1:9: cannot connect" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
