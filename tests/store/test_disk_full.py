"""A full disk (ENOSPC), an exceeded quota (EDQUOT) or an I/O error (EIO): real `featx` processes.

Whatever the command, it is one ``error:`` line naming the file and the free space, exit code 4, never a
traceback or a segmentation fault. A store keeps the rows committed before the failure, ``featx info``
shows them, and the same command resumes once there is room, ending equal to a run on a roomy disk.
Where the needed size can be estimated, a run that cannot fit is refused up front, creating nothing.
Every other output is written under a temporary name and renamed: a failed write leaves no temporary
file and the previous file (a good ``metrics.json``, ``best.pt``) as it was.

Real disks are tmpfs mounts (root only; skipped elsewhere); the other write points are reached with
``FEATX_FAULT=<point>:enospc`` (:mod:`featx.faults`), which raises the error a full disk would.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from featx.config import DataCfg, ExtractCfg
from featx.extraction.background import BackgroundWriter
from featx.extraction.options import ExtractOptions
from featx.extraction.run import extract
from featx.faults import fault
from featx.store import writer as store_writer
from featx.store.reader import load_features
from featx.store.writer import open_writer, write_arrays
from helpers import copy_subset, split_subset

TESTS = Path(__file__).resolve().parents[1]
PIXELS = ["-b", "pixels", "--image-size", "96", "--batch-size", "4", "--workers", "0", "-q"]  # ~110 KB a row,
MIB = 1 << 20  # chunks of 9 rows (~1 MiB): 40 images fill about 5.3 MiB

# A file system that reports no free space figure (or an estimate that fell short): the growth checks
# cannot refuse, so the full disk is met inside HDF5's own writes.
BLIND = textwrap.dedent("""
    import sys
    import featx.extraction.run
    import featx.store.writer
    featx.store.writer.free_bytes = lambda path: None
    featx.extraction.run.check_free = lambda *args, **kwargs: None
    from featx.cli import main
    sys.argv = ["featx", *sys.argv[1:]]
    main()
""")


def featx(*args, cwd: Path, env: dict | None = None, blind: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", BLIND] if blind else [sys.executable, "-m", "featx"]
    return subprocess.run([*cmd, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def one_error_line(proc: subprocess.CompletedProcess, *needles: str, only: bool = False) -> str:
    """The run failed with exit code 4 and exactly one ``error:`` line holding ``needles`` (with ``only``, the
    only line on stderr); no traceback, no signal."""
    assert proc.returncode not in (139, -11, -6), f"killed by a signal ({proc.returncode}):\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 4 and len(errors) == 1, (proc.returncode, proc.stderr[-3000:])
    if only:
        assert proc.stderr.strip().splitlines() == errors, proc.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary files of featx's writes (atomic outputs, store copies) left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".compact-" in p.name
                  or p.name.endswith(".overwrite"))


def rows_of(path: Path) -> int:
    with h5py.File(path, "r", locking=False) as f:
        return int(f.attrs["rows"])


def assert_same(a_path: Path, b_path: Path) -> None:
    a, b = load_features(a_path), load_features(b_path)
    assert list(a.ids) == list(b.ids) and a.labels.tolist() == b.labels.tolist() and list(a.split) == list(b.split)
    np.testing.assert_allclose(a.features, b.features, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def paintings(tmp_path_factory, monet_dir) -> Path:
    """40 paintings of one folder (20 per artist)."""
    return copy_subset(monet_dir, tmp_path_factory.mktemp("disk-full") / "data", per_class=20, split="train")


@pytest.fixture(scope="module")
def reference(paintings, tmp_path_factory) -> Path:
    """The store an uninterrupted run writes on a roomy disk."""
    out = tmp_path_factory.mktemp("reference") / "ref.h5"
    extract(ExtractOptions("pixels", paintings, out=out, image_size=96, batch_size=4, workers=0, progress=False))
    return out


@pytest.fixture()
def tmpfs(tmp_path):
    """An 8 MiB tmpfs mounted for the test (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip() or r.returncode}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def ballast(folder: Path, leave: int) -> Path:
    """A file filling ``folder``'s file system up to ``leave`` free bytes."""
    path = folder / "ballast"
    size = shutil.disk_usage(folder).free - leave
    with open(path, "wb") as fh:
        fh.write(b"\0" * size)
        fh.flush()
        os.fsync(fh.fileno())
    return path


# ---------------------------------------------------------------- real full disks


@pytest.mark.slow
def test_disk_full_inside_hdf5_is_one_line_keeps_committed_rows_and_resumes(paintings, reference, tmpfs):
    """The full disk is met inside HDF5's writes (no free-space figure to check first): one line, the
    committed rows intact and listed by `featx info`, and the same command finishes once there is room."""
    store = tmpfs / "s.h5"
    fill = ballast(tmpfs, int(2.5 * MIB))
    args = ["extract", *PIXELS, "--data", paintings, "--out", store]
    line = one_error_line(featx(*args, cwd=tmpfs.parent, blind=True), str(store), "no space left", "free there",
                          "committed", "run the same command again", only=True)
    kept = rows_of(store)
    assert 0 < kept < 40 and f"{kept} rows committed are kept" in line
    assert not leftovers(tmpfs)
    info = featx("info", "--json", store, cwd=tmpfs.parent)
    assert info.returncode == 0, info.stderr
    summary = json.loads(info.stdout)
    assert summary["rows"] == kept and summary["complete"] is False
    np.testing.assert_allclose(load_features(store, require_complete=False).features,
                               load_features(reference).features[:kept], rtol=1e-6, atol=1e-6)

    fill.unlink()
    again = featx(*args, cwd=tmpfs.parent)
    assert again.returncode == 0, again.stderr
    assert f"wrote {40 - kept} new rows" in again.stdout
    assert_same(store, reference)


@pytest.mark.slow
def test_disk_filled_by_another_process_during_extract(paintings, reference, tmpfs):
    """Another process fills the disk while `featx extract` runs: the next batch is refused before HDF5
    writes it (one line, the rows so far kept); the same command resumes once the space is back."""
    store = tmpfs / "s.h5"
    args = ["extract", *PIXELS, "--data", paintings, "--out", store]
    env = {**os.environ, "FEATX_DELAY": "extract:batch:0.4"}
    proc = subprocess.Popen([sys.executable, "-m", "featx", *map(str, args)], cwd=tmpfs.parent, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if rows_of(store) >= 4:
                break
        except (OSError, KeyError):
            pass
        time.sleep(0.05)
    fill = tmpfs / "ballast"
    with open(fill, "wb") as fh:  # another process takes every byte left
        try:
            while True:
                fh.write(b"\0" * (64 << 10))
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    out, err = proc.communicate(timeout=300)
    line = one_error_line(subprocess.CompletedProcess(args, proc.returncode, out, err), str(store), "no space left",
                          "free there", only=True)
    kept = rows_of(store)
    assert 4 <= kept < 40 and f"{kept} rows committed are kept" in line
    fill.unlink()
    again = featx(*args, cwd=tmpfs.parent)
    assert again.returncode == 0, again.stderr
    assert_same(store, reference)


@pytest.mark.slow
def test_too_little_room_is_refused_up_front_creating_nothing(paintings, reference, tmpfs):
    """rows x dim x dtype does not fit: one line before the model loads; not even the lock file is made."""
    store = tmpfs / "s.h5"
    fill = ballast(tmpfs, 3 * MIB)
    args = ["extract", *PIXELS, "--data", paintings, "--out", store]
    one_error_line(featx(*args, cwd=tmpfs.parent), str(store), "extracting 40 images (27648 x float32 features",
                   "needs about 5.", "free there", only=True)
    assert sorted(p.name for p in tmpfs.iterdir()) == ["ballast"]
    fill.unlink()
    assert featx(*args, cwd=tmpfs.parent).returncode == 0
    assert_same(store, reference)


# ---------------------------------------------------------------- the store's write points


@pytest.mark.slow
@pytest.mark.parametrize("point, words", [("append:features:2:enospc", "no space left"),
                                          ("append:flush:3:edquot", "disk quota exceeded"),
                                          ("finalize:attrs:eio", "I/O error")])
def test_store_write_points(point, words, paintings, reference, tmp_path):
    store = tmp_path / "s.h5"
    args = ["extract", *PIXELS, "--data", paintings, "--out", store]
    line = one_error_line(featx(*args, cwd=tmp_path, env={"FEATX_FAULT": point}), str(store), words, "free there",
                          only=True)
    kept = rows_of(store)
    assert kept == {"append:features:2:enospc": 4, "append:flush:3:edquot": 8}.get(point, 40)
    assert f"{kept} rows committed are kept" in line and not leftovers(tmp_path)
    again = featx(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert_same(store, reference)


@pytest.mark.slow
def test_failed_write_on_overwrite_keeps_the_old_store(paintings, reference, tmp_path):
    store = tmp_path / "s.h5"
    shutil.copy(reference, store)
    before = store.read_bytes()
    args = ["extract", *PIXELS, "--data", paintings, "--out", store, "--overwrite"]
    one_error_line(featx(*args, cwd=tmp_path, env={"FEATX_FAULT": "append:flush:2:enospc"}), str(store),
                   "the store is as it was before this run", only=True)
    assert store.read_bytes() == before and not leftovers(tmp_path)


def test_torn_tail_that_cannot_be_cut_is_salvaged_not_thrown_away(tmp_path, monkeypatch):
    """A write stopped inside a flush may leave an index HDF5 cannot cut back: the committed rows are copied
    into a new file (never moved aside as damaged while they can be read)."""
    cfg = ExtractCfg(backbone="pixels", arch="pixels", source="pixels", weights="none", layer="pixels", module="",
                     pool="flatten", data=DataCfg())
    path = write_arrays(tmp_path / "s.h5", cfg, features=np.arange(10, dtype=np.float32).reshape(5, 2),
                        labels=[0, 1, 0, 1, 0], ids=[f"c/{i}.jpg" for i in range(5)], split=["train"] * 5,
                        classes=["x", "y"], failed=[("c/bad.jpg", "truncated")])

    def cannot_cut(f, n):
        raise RuntimeError("Unable to synchronously change a dataset's dimensions (addr overflow, addr = 10752)")

    monkeypatch.setattr(store_writer, "_cut", cannot_cut)
    with pytest.warns(UserWarning, match="its 5 committed rows were copied into a new file"):
        with open_writer(path, cfg) as w:
            assert w.n_rows == 5
    fs = load_features(path)
    assert list(fs.ids) == [f"c/{i}.jpg" for i in range(5)] and fs.features.tolist() == [[2 * i, 2 * i + 1]
                                                                                        for i in range(5)]
    assert fs.failed == [("c/bad.jpg", "truncated")]
    assert not list(tmp_path.glob("*.corrupt-*")) and not leftovers(tmp_path)


def test_background_writer_writes_nothing_after_a_failed_write():
    """Rows stay in order: writes queued behind a failed one are skipped, even once its error was raised."""
    done = []
    gate = threading.Event()
    w = BackgroundWriter(depth=8)

    def full():
        raise OSError(errno.ENOSPC, "No space left on device")

    w.submit(lambda: gate.wait(10))
    w.submit(full)
    w.submit(lambda: done.append(1))
    gate.set()
    deadline = time.monotonic() + 10
    while w._error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(OSError):
        w.submit(lambda: done.append(2))
    w.drain()
    assert done == []


def test_fault_hook_raises_the_named_errno(monkeypatch):
    monkeypatch.setenv("FEATX_FAULT", "write:x.json:2:edquot")
    fault("write:x.json")  # the first pass goes by
    fault("write:y.json")
    with pytest.raises(OSError) as info:
        fault("write:x.json")
    assert info.value.errno == errno.EDQUOT


# ---------------------------------------------------------------- fit, analyze and finetune outputs


@pytest.fixture(scope="module")
def synth_store(tmp_path_factory) -> Path:
    import _synth

    return _synth.store(tmp_path_factory.mktemp("synth") / "s.h5")


@pytest.fixture(scope="module")
def good_fit(synth_store, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fit")
    r = featx("fit", synth_store, "--clf", "softmax", "--out", root / "run", cwd=root)
    assert r.returncode == 0, r.stderr
    return root / "run"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["metrics.json", "model.skops", "model.json", "report.txt", "confusion_matrix.png",
                                  "misclassified.png"])
def test_fit_outputs(name, synth_store, good_fit, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(good_fit, run)
    metrics = (run / "metrics.json").read_bytes()
    r = featx("fit", synth_store, "--clf", "softmax", "--out", run, "--overwrite", cwd=tmp_path,
              env={"FEATX_FAULT": f"write:{name}:enospc"})
    one_error_line(r, str(run / name), "no space left", "free there", "the previous file, if any, is unchanged",
                   only=True)
    assert not leftovers(run)
    assert (run / "metrics.json").read_bytes() == metrics  # the finished run's record, untouched


@pytest.mark.slow
@pytest.mark.parametrize("name", ["scores.json", "summary.md", "s-pca-2d.png", "s-projections.npz", "scores.csv"])
def test_analyze_outputs(name, synth_store, tmp_path):
    out = tmp_path / "analysis"
    r = featx("analyze", synth_store, "--out", out, cwd=tmp_path, env={"FEATX_FAULT": f"write:{name}:enospc"})
    one_error_line(r, str(out / name), "no space left", "free there")
    assert not leftovers(out) and not (out / name).exists()


@pytest.fixture(scope="module")
def small_paintings(tmp_path_factory, monet_dir) -> Path:
    return split_subset(monet_dir, tmp_path_factory.mktemp("ft-data"), {"train": 6, "val": 2, "test": 2})


FINETUNE = ["-b", "timm:test_efficientnet", "--weights", "none", "--unfreeze", "all", "--epochs", "1",
            "--batch-size", "8", "--workers", "0", "-q"]


@pytest.fixture(scope="module")
def good_finetune(small_paintings, tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("ft")
    env = {"FEATX_CACHE": str(root / "cache")}
    r = featx("finetune", *FINETUNE, "-d", small_paintings, "-o", root / "run", cwd=root, env=env)
    assert r.returncode == 0, r.stderr
    return root / "run", env


@pytest.mark.slow
@pytest.mark.parametrize("name", ["best.pt", "metrics.json"])
def test_finetune_outputs(name, small_paintings, good_finetune, tmp_path):
    good, env = good_finetune
    run = tmp_path / "run"
    shutil.copytree(good, run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    r = featx("finetune", *FINETUNE, "-d", small_paintings, "-o", run, "--overwrite", cwd=tmp_path,
              env={**env, "FEATX_FAULT": f"write:{name}:enospc"})
    one_error_line(r, str(run / name), "no space left", "free there", "the previous file, if any, is unchanged")
    assert not leftovers(run)
    assert (run / name).read_bytes() == before[name]
    if name == "best.pt":  # the first write of the run: nothing else was replaced either
        assert {p.name: p.read_bytes() for p in run.iterdir()} == before
