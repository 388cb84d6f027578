"""torchrun with 2 CPU processes: each rank extracts its shard, the last one merges; equal to one process."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import assert_same_store

BACKBONE = "efficientnet_lite0"


@pytest.mark.slow
def test_torchrun_two_ranks_give_the_single_process_store(paintings, single_store, tmp_path):
    torchrun = shutil.which("torchrun") or f"{sys.executable} -m torch.distributed.run"
    out = tmp_path / "ranks.h5"
    cmd = [*torchrun.split(), "--nproc-per-node", "2", "--master-port", "0", "-m", "featx", "extract", "-b",
           BACKBONE, "-d", str(paintings), "--out", str(out), "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for rank in (0, 1):
        assert f"shard {rank}/2 (torchrun RANK)" in proc.stderr
        assert (tmp_path / f"ranks.shard-00{rank}-of-002.h5").is_file()
    assert proc.stdout.count("merged 2 shards into") == 1  # exactly one rank merges
    assert_same_store(out, single_store)


def test_a_torchrun_rank_is_read_from_its_environment():
    """The quick tier's check of this file: what torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK) is the shard."""
    from featx.extraction.shard import detect_shard

    rank = detect_shard({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert (rank.index, rank.count, rank.origin) == (1, 2, "torchrun RANK")
    assert rank.path(Path("/x/ranks.h5")) == Path("/x/ranks.shard-001-of-002.h5")  # the file the test above finds
    assert detect_shard({"RANK": "0", "WORLD_SIZE": "1"}) is None  # one process: no shards
