"""The background store writer loses no batch: when a run is stopped (SIGTERM, as SLURM sends it) while
writes are queued behind a slow disk, every batch the model finished reaches the store before the process
exits, and the resumed run embeds only the rest and ends equal to an uninterrupted run."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from featx.extraction.background import BackgroundWriter
from featx.extraction.options import ExtractOptions
from featx.extraction.run import extract
from featx.store.reader import load_features
from helpers import copy_subset

SLOW_DISK = textwrap.dedent("""
    import os, signal, sys, time
    from featx.errors import Stopped
    from featx.extraction.options import ExtractOptions
    from featx.extraction.run import extract
    def slow(k):  # runs on the writer thread after batch k is written: the queue fills up behind it
        time.sleep(0.4)
        if k == 2:
            os.kill(os.getpid(), signal.SIGTERM)
    try:
        extract(ExtractOptions("efficientnet_lite0", sys.argv[1], out=sys.argv[2], batch_size=2, workers=1,
                               runtime="openvino", precision="fp32", progress=False), on_batch=slow)
    except Stopped as exc:
        print(exc)
        sys.exit(exc.exit_code)
""")


@pytest.mark.slow
def test_stop_writes_every_embedded_batch_then_resumes(monet_dir, tmp_path):
    data = copy_subset(monet_dir, tmp_path / "data", per_class=12, split="train")
    out = tmp_path / "s.h5"
    proc = subprocess.run([sys.executable, "-c", SLOW_DISK, str(data), str(out)], capture_output=True, text=True)
    assert proc.returncode == 128 + 15, proc.stderr
    embedded = int(re.search(r"(\d+) images embedded this run", proc.stdout).group(1))
    with h5py.File(out, "r") as f:
        rows = f["ids"].shape[0]
    assert rows == embedded  # nothing the model finished was lost
    assert embedded > 2 * 2  # batches queued behind the slow writes were written too
    assert embedded < 24

    res = extract(ExtractOptions("efficientnet_lite0", data, out=out, runtime="openvino", precision="fp32", workers=0,
                                 progress=False))
    assert res.n_new == 24 - embedded and res.n_rows == 24
    clean = extract(ExtractOptions("efficientnet_lite0", data, out=tmp_path / "clean.h5", runtime="openvino",
                                   precision="fp32", batch_size=7, progress=False))
    a, b = load_features(out), load_features(clean.path)
    assert sorted(a.ids) == sorted(b.ids)
    order = [list(b.ids).index(i) for i in a.ids]
    assert np.array_equal(a.features, b.features[order])


def test_writer_drains_on_error_and_raises_write_errors():
    done = []
    try:
        with BackgroundWriter(depth=2) as w:
            for k in range(5):
                w.submit(lambda k=k: done.append(k))
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert done == [0, 1, 2, 3, 4]  # queued writes finished before the interrupt left the block

    def fail():
        raise OSError("disk full")

    w = BackgroundWriter()
    w.submit(fail)
    w.submit(lambda: done.append("after"))
    try:
        w.drain()
    except OSError as exc:
        assert "disk full" in str(exc)
    else:
        raise AssertionError("the write error was not raised")
    assert done[-1] == 4  # nothing ran after the failed write
