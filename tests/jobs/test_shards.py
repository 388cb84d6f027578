"""Sharded extraction on one machine: blocks, detection, merge, status, refusals and signals (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_same_store, store_rows

from featx.errors import OptionError
from featx.extraction.shard import Shard, detect_shard, parse_shard

FEATX = [sys.executable, "-m", "featx"]

BACKBONE = "efficientnet_lite0"


def featx(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*FEATX, *map(str, args)], capture_output=True, text=True, **kw)


def test_shard_blocks_are_contiguous_balanced_and_cover_every_item():
    for n_items in (0, 1, 7, 26, 1001):
        for count in (1, 2, 3, 4, 16):
            masks = [Shard(i, count).block(n_items) for i in range(count)]
            sizes = [int(m.sum()) for m in masks]
            assert sum(sizes) == n_items and max(sizes) - min(sizes) <= 1
            assert (np.sum(masks, axis=0) == 1).all() if n_items else True
            order = np.concatenate([np.flatnonzero(m) for m in masks])
            assert (order == np.arange(n_items)).all()  # shards in order = the dataset in order


def test_shard_comes_from_the_option_a_slurm_array_or_a_torchrun_rank():
    assert parse_shard("2/4") == Shard(2, 4)
    for bad in ("4/4", "-1/4", "1", "a/b", "1/0"):
        with pytest.raises(OptionError, match="--shard"):
            parse_shard(bad)
    slurm = detect_shard({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "4", "SLURM_ARRAY_TASK_MAX": "7",
                          "SLURM_ARRAY_TASK_COUNT": "4"})
    assert (slurm.index, slurm.count, slurm.origin) == (3, 4, "SLURM_ARRAY_TASK_ID")
    with pytest.raises(OptionError, match="contiguous"):
        detect_shard({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "6",
                      "SLURM_ARRAY_TASK_COUNT": "4"})  # --array=0-6:2
    rank = detect_shard({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert (rank.index, rank.count, rank.local_rank, rank.device("auto")) == (1, 2, 1, "auto:1")
    assert detect_shard({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert detect_shard({}) is None


@pytest.mark.slow
def test_three_shards_merge_into_the_single_process_store(paintings, single_store, tmp_path):
    out = tmp_path / "x.h5"
    for i in (2, 0, 1):  # any order: the last to finish merges
        r = featx("extract", "-b", BACKBONE, "-d", paintings, "--out", out, "--shard", f"{i}/3", "-q")
        assert r.returncode == 0, r.stderr
        assert f"shard {i}/3 (--shard)" in r.stderr
        assert ("merged 3 shards into" in r.stdout) == (i == 1), r.stdout
    assert_same_store(out, single_store)
    again = featx("extract", "-b", BACKBONE, "-d", paintings, "--out", out, "--shard", "none", "-q")
    assert "cache hit" in again.stdout, again.stdout  # the merged store is a complete store of the data
    rerun = featx("extract", "-b", BACKBONE, "-d", paintings, "--out", out, "--shard", "1/3", "-q")
    assert "cache hit" in rerun.stdout and "merged" not in rerun.stdout  # a re-submitted task does nothing
    st = featx("status", out)
    assert st.returncode == 0 and "store: merged and current, 26 rows" in st.stdout
    assert [line.split()[1] for line in st.stdout.splitlines()[1:4]] == ["done"] * 3


def _shard(paintings: Path, out: Path, i: int, n: int, *extra) -> None:
    r = featx("extract", "-b", BACKBONE, "-d", paintings, "--out", out, "--shard", f"{i}/{n}", "--no-merge", "-q",
              *extra)
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_merge_refuses_a_foreign_a_missing_and_an_unfinished_shard(paintings, tmp_path):
    out = tmp_path / "y.h5"
    for i in range(3):
        _shard(paintings, out, i, 3)
    files = sorted(tmp_path.glob("y.shard-*.h5"))
    assert len(files) == 3 and not out.exists()  # --no-merge

    other = tmp_path / "other" / "y.h5"
    _shard(paintings, other, 1, 3, "--tta", "hflip")
    foreign = featx("merge", files[0], other.parent / files[1].name, files[2], "--out", tmp_path / "m.h5")
    assert foreign.returncode == 4 and "another fingerprint" in foreign.stderr
    assert str(other.parent / files[1].name) in foreign.stderr and len(foreign.stderr.splitlines()) == 1

    missing = featx("merge", files[0], files[2])
    assert missing.returncode == 4 and len(missing.stderr.splitlines()) == 1
    assert f"shard 1 of 3 is missing: {files[1]}" in missing.stderr

    with __import__("h5py").File(files[2], "r+", locking=False) as f:  # as a task killed before its last batch
        f.attrs["complete"] = False
    unfinished = featx("merge", *files)
    assert unfinished.returncode == 4 and f"shard 2 of 3 ({files[2]}) was interrupted" in unfinished.stderr
    st = featx("status", out, "--json")
    assert st.returncode == 1 and '"state": "interrupted"' in st.stdout and '"merged": "absent"' in st.stdout

    _shard(paintings, out, 2, 3, "--merge")  # re-running the task finishes it and merges
    assert featx("status", out).returncode == 0
    assert not (tmp_path / "m.h5").exists()  # a refused merge writes nothing


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGTERM])
def test_a_time_limit_signal_stops_after_a_batch_and_the_same_command_resumes(sig, paintings, single_store,
                                                                               tmp_path):
    out = tmp_path / "z.h5"
    cmd = [*FEATX, "extract", "-b", BACKBONE, "-d", str(paintings), "--out", str(out), "--batch-size", "2",
           "--workers", "0", "--streams", "1", "-q"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    env["FEATX_DELAY"] = "extract:batch:0.3"  # a long job, so the signal lands part way
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    while store_rows(out) == 0 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, (stdout, stderr)
    assert f"stopped by {signal.Signals(sig).name} after a finished batch" in stderr
    kept = store_rows(out)
    assert 0 < kept < 26 and kept % 2 == 0  # whole batches only
    assert "requeued" not in stderr  # not a SLURM task: nothing to requeue
    again = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert again.returncode == 0 and f"wrote {26 - kept} new rows" in again.stdout, again.stdout
    assert_same_store(out, single_store)


@pytest.mark.slow
def test_cluster_option_errors_are_one_line(paintings, tmp_path):
    for args, needle in [(["--shard", "3/3"], "--shard 3/3"), (["--shards", "4"], "go with --slurm"),
                         (["--shard", "x"], "--shard 'x'")]:
        r = featx("extract", "-b", BACKBONE, "-d", paintings, "--out", tmp_path / "e.h5", *args)
        assert r.returncode == 2 and needle in r.stderr and len(r.stderr.splitlines()) == 1, r.stderr
    r = featx("status", tmp_path / "nothing.h5")
    assert r.returncode == 4 and "no such store and no shards" in r.stderr


@pytest.mark.slow
def test_slurm_dry_run_prints_an_array_script_of_this_command(paintings, tmp_path):
    r = featx("extract", "-b", BACKBONE, "-d", paintings, "--out", tmp_path / "s.h5", "--tta", "hflip",
              "--no-channels-last", "--slurm", "--shards", "16", "--max-running", "4", "--partition", "gpu",
              "--time", "02:00:00", "--gpus-per-task", "1", "--mem", "16G", "--dry-run")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "#!/bin/bash"
    for want in ("#SBATCH --array=0-15%4", "#SBATCH --partition=gpu", "#SBATCH --time=02:00:00",
                 "#SBATCH --gpus-per-task=1", "#SBATCH --mem=16G", "#SBATCH --requeue", "#SBATCH --signal=B:USR1@120",
                 "#SBATCH --open-mode=append"):
        assert want in lines, want
    assert any(line.startswith("#SBATCH --output=") and line.endswith("/logs/%x-%A_%a.out") for line in lines)
    exec_line = lines[-1]
    assert exec_line.startswith(f"exec {sys.executable} -m featx extract --backbone {BACKBONE} --data ")
    assert "--tta hflip --no-channels-last" in exec_line and exec_line.endswith('--shard "${SLURM_ARRAY_TASK_ID}/16"')
    assert "--slurm" not in exec_line and "--dry-run" not in exec_line and "--partition" not in exec_line
    assert not (tmp_path / "slurm").exists()  # a dry run writes nothing


@pytest.mark.slow
def test_status_and_merge_import_no_torch(paintings, tmp_path):
    from featx.extraction.options import ExtractOptions
    from featx.extraction.run import extract

    out = tmp_path / "p.h5"
    for i in range(2):
        extract(ExtractOptions("pixels", paintings, out=out, shard=f"{i}/2", merge=False, workers=0, progress=False))
    code = ("import sys; from featx.cli import app; from typer.testing import CliRunner; "
            f"m = CliRunner().invoke(app, ['merge', *sorted(map(str, __import__('pathlib').Path(r'{tmp_path}')"
            ".glob('p.shard-*.h5')))]); "
            f"s = CliRunner().invoke(app, ['status', r'{out}']); "
            "assert m.exit_code == 0 and 'merged 2 shards' in m.output, m.output; "
            "assert s.exit_code == 0 and 'merged and current' in s.output, s.output; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
