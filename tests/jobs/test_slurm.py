"""A real one-node SLURM (started by the test, `pipelines/slurm/local-cluster.sh`): featx submits a 4-task
array job, one task gets the time-limit warning part way and is re-queued, the merged store equals one process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import assert_same_store, store_rows

REPO = Path(__file__).resolve().parents[2]

BACKBONE = "efficientnet_lite0"


@pytest.fixture(scope="module")
def slurm():
    """The local cluster, or a skip that says why it cannot run here (never silently)."""
    if shutil.which("sbatch") is None or shutil.which("slurmctld") is None:
        pytest.skip("SLURM is not installed (apt-get install -y slurm-wlm munge, as .ci/run does)")
    proc = subprocess.run(["bash", str(REPO / "pipelines/slurm/local-cluster.sh"), "start"], capture_output=True,
                          text=True, timeout=120)
    if proc.returncode != 0:
        pytest.skip(f"the local SLURM did not start: {' '.join(proc.stderr.split())[-300:]}")


def _squeue(job: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-r", "-j", job, "-o", "%i %T"], capture_output=True, text=True).stdout
    return out.split("\n") if out.strip() else []


@pytest.mark.slow
def test_featx_submits_an_array_a_task_is_requeued_and_the_merge_equals_one_process(slurm, paintings, single_store,
                                                                                    tmp_path):
    out = tmp_path / "cluster.h5"
    # a long job: each task sleeps 1 s after each of its ~7 batches, so the warning lands part way
    env = {**os.environ, "FEATX_DELAY": "extract:batch:1"}
    sub = subprocess.run([sys.executable, "-m", "featx", "extract", "-b", BACKBONE, "-d", str(paintings), "--out",
                          str(out), "--batch-size", "1", "--workers", "0", "--streams", "1", "-q", "--slurm",
                          "--shards", "4", "--cpus-per-task", "1", "--time", "00:10:00"],
                         capture_output=True, text=True, cwd=tmp_path, env=env)
    assert sub.returncode == 0, sub.stderr
    job = sub.stdout.split("submitted SLURM array job ")[1].split(":")[0]
    script = tmp_path / "slurm" / "cluster" / "extract.sbatch"
    assert script.is_file() and "--shard \"${SLURM_ARRAY_TASK_ID}/4\"" in script.read_text()

    shard1 = tmp_path / "cluster.shard-001-of-004.h5"
    deadline = time.time() + 480
    while store_rows(shard1) == 0 and time.time() < deadline:
        time.sleep(0.1)
    assert store_rows(shard1) > 0, "task 1 never wrote a row"
    # what SLURM sends --signal=B:USR1@T seconds before a time limit; featx finishes its batch and requeues
    subprocess.run(["scancel", "--batch", "--signal=USR1", f"{job}_1"], check=True)
    while _squeue(job) and time.time() < deadline:
        time.sleep(0.5)
    assert not _squeue(job), "the array did not finish in 8 minutes"

    log = (tmp_path / "slurm" / "cluster" / "logs").glob(f"*-{job}_1.out")
    text = "".join(p.read_text() for p in log)
    assert "stopped by SIGUSR1 after a finished batch" in text and f"requeued SLURM task {job}_1" in text, text
    assert text.index("requeued SLURM task") < text.index("synced with the data") and "merged 4 shards" in "".join(
        p.read_text() for p in (tmp_path / "slurm" / "cluster" / "logs").glob("*.out")), text  # ran twice, one log
    assert_same_store(out, single_store)
    status = subprocess.run([sys.executable, "-m", "featx", "status", str(out)], capture_output=True, text=True)
    assert status.returncode == 0 and status.stdout.count(" done ") == 4, status.stdout


@pytest.mark.slow
def test_featx_run_slurm_extracts_as_an_array_job_waits_and_then_fits(slurm, paintings, single_store, tmp_path):
    toml = tmp_path / "study.toml"
    toml.write_text(f'name = "s"\ndata = "{paintings}"\n\n[[extract]]\nbackbone = "{BACKBONE}"\nout = "cache/s.h5"\n'
                    '\n[fit]\nclf = "softmax"\n\n[slurm]\nshards = 2\ntime = "00:10:00"\n')
    r = subprocess.run([sys.executable, "-m", "featx", "run", str(toml), "--slurm", "-q"], capture_output=True,
                       text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "SLURM array job" in r.stdout and "2 steps: 2 run, 0 already done" in r.stdout, r.stdout
    assert sorted(p.name for p in (tmp_path / "cache").glob("s.shard-*.h5")) == ["s.shard-000-of-002.h5",
                                                                                "s.shard-001-of-002.h5"]
    assert_same_store(tmp_path / "cache/s.h5", single_store)
    assert (tmp_path / "runs/s/fit/metrics.json").is_file()
    again = subprocess.run([sys.executable, "-m", "featx", "run", str(toml), "--slurm", "-q"], capture_output=True,
                           text=True, cwd=tmp_path)
    assert "2 steps: 0 run, 2 already done" in again.stdout, again.stdout  # nothing submitted the second time


def test_the_local_cluster_script_parses_and_names_its_commands():
    """The quick tier's check of this file (the cluster itself takes minutes): the script the tests start
    SLURM with is valid bash and offers start and stop."""
    script = REPO / "pipelines" / "slurm" / "local-cluster.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    assert "local-cluster.sh start" in text and '"$cmd" = stop' in text
