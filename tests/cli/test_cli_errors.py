"""Every command, handed what users hand it by mistake, answers with one `error:` line and its exit code.

Real processes (`python -m featx`), real files: a folder passed as a store, a file that is not HDF5,
a store with no rows, and paths whose bytes are not UTF-8 (common in archives made on Windows).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import _synth
from featx.store.writer import open_writer
from helpers import one_error_line, rgb

LATIN1 = "caf\udce9"  # the file-name bytes b"caf\xe9" as Python sees them (surrogate escape)


def featx(*args, cwd: Path) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "featx", *(os.fsencode(str(a)) for a in args)]
    return subprocess.run(argv, cwd=cwd, capture_output=True, timeout=300)


def two_classes(data: Path, n: int) -> Path:
    """``data/a`` and ``data/b`` with ``n`` small distinct JPEGs each."""
    for c in ("a", "b"):
        (data / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rgb(i + (10 if c == "b" else 0)).save(data / c / f"{i}.jpg")
    return data


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("errors")
    (root / "folder.h5").mkdir()
    (root / "notes.h5").write_text("not an HDF5 file\n")
    with open_writer(root / "empty.h5", _synth.cfg()) as w:
        w.create(_synth.cfg(), 4, None, {"classes": ["a", "b"], "data_root": "."})
        w.finalize()
    good = _synth.store(root / "good.h5")
    os.link(good, root / f"{LATIN1}.h5")
    return root


CASES = [("folder.h5", 4, "is a folder"), ("notes.h5", 4, "not a readable HDF5 file"),
         (f"missing-{LATIN1}.h5", 4, "no such feature store")]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["info", "fit", "analyze"])
@pytest.mark.parametrize("store,code,message", CASES)
def test_store_commands_on_bad_stores(place, command, store, code, message):
    line = one_error_line(featx(command, store, cwd=place), code, message)
    assert store.replace(LATIN1, "caf\\xe9") in line  # the file is named, its odd byte shown escaped


@pytest.mark.slow
@pytest.mark.parametrize("command,code,message", [("fit", 2, "the store has no rows"),
                                                  ("analyze", 2, "the store has no rows")])
def test_empty_store(place, command, code, message):
    one_error_line(featx(command, "empty.h5", cwd=place), code, "empty.h5", message)


def test_info_on_empty_store_reports_zero_rows(place):
    r = featx("info", "empty.h5", cwd=place)
    assert r.returncode == 0 and "rows 0, dim 4" in r.stdout.decode()


@pytest.mark.slow
@pytest.mark.parametrize("command", ["info", "fit", "analyze"])
def test_store_at_a_non_utf8_path_works(place, command):
    r = featx(command, f"{LATIN1}.h5", *(["--runs-dir", "runs"] if command != "info" else ["--json"]), cwd=place)
    out = r.stdout.decode("utf-8") + r.stderr.decode("utf-8")
    assert r.returncode == 0, out
    assert "Traceback" not in out
    if command == "info":
        assert json.loads(r.stdout)["path"] == "caf\\xe9.h5"
    elif command == "fit":
        run = Path(out.split(" -> ")[-1].strip())
        metrics = json.loads((place / run / "metrics.json").read_text())
        assert metrics["store"] == str((place / f"{LATIN1}.h5").resolve())  # the real path, losslessly
    else:
        assert "caf\\xe9" in out


def test_predict_bad_models(place):
    one_error_line(featx("predict", "folder.h5", "x.jpg", cwd=place), 2, "no such model")
    one_error_line(featx("predict", "notes.h5", "x.jpg", cwd=place), 2, "missing sidecar")
    one_error_line(featx("predict", f"{LATIN1}.joblib", "x.jpg", cwd=place), 2, "caf\\xe9.joblib")


def test_extract_refuses_to_write_over_what_is_not_a_store(place):
    data = two_classes(place / "data", 2)
    before = sorted(os.listdir(place))
    one_error_line(featx("extract", "-b", "pixels", "-d", data, "-o", "folder.h5", "-q", cwd=place), 4,
                   "--out folder.h5: is a folder")
    one_error_line(featx("extract", "-b", "pixels", "-d", data, "-o", "notes.h5", "-q", cwd=place), 4,
                   "not an HDF5 store")
    assert sorted(os.listdir(place)) == before and (place / "notes.h5").read_text() == "not an HDF5 file\n"
    odd = place / f"{LATIN1}-data"
    os.rename(data, odd)
    one_error_line(featx("extract", "-b", "pixels", "-d", odd, "-o", "x.h5", "-q", cwd=place), 2,
                   "--data", "caf\\xe9-data", "not valid UTF-8")
    assert not list(place.glob("x.h5*"))


def test_bad_choice_is_one_line_exit_2(place):
    one_error_line(featx("extract", "-b", "pixels", "-d", ".", "--pool", "mean", cwd=place), 2,
                   "'--pool'", "'mean' is not one of 'avg', 'max', 'gem', 'flatten', 'spp', 'none'",
                   "featx extract --help")
    one_error_line(featx("fit", "good.h5", "--class-weight", "auto", cwd=place), 2, "'--class-weight'")
    one_error_line(featx("extract", "-b", "pixels", "-d", ".", "--device", "gpu", cwd=place), 2, "'--device'")


@pytest.mark.slow
def test_latin1_image_names_go_through_every_command(tmp_path):
    """Case 5 of the store issue end to end: an image named with Latin-1 bytes is a row like any other."""
    data = two_classes(tmp_path / "data", 6)
    rgb(99).save(os.path.join(data / "a", f"{LATIN1}.jpg"))
    r = featx("extract", "-b", "pixels", "-d", data, "-o", "s.h5", "-q", "--split-ratios", "0.5,0.25,0.25",
              cwd=tmp_path)
    assert r.returncode == 0 and b"wrote 13 new rows" in r.stdout, r.stderr
    again = featx("extract", "-b", "pixels", "-d", data, "-o", "s.h5", "-q", "--split-ratios", "0.5,0.25,0.25",
                  cwd=tmp_path)
    assert again.returncode == 0 and b"cache hit" in again.stdout
    verify = featx("info", "s.h5", "--verify", cwd=tmp_path)
    assert verify.returncode == 0 and b"in sync" in verify.stdout, verify.stderr
    fit = featx("fit", "s.h5", "--clf", "softmax", "--runs-dir", "runs", cwd=tmp_path)
    assert fit.returncode == 0 and b"Traceback" not in fit.stderr, fit.stderr
    from featx.store.reader import load_features

    assert f"a/{LATIN1}.jpg" in list(load_features(tmp_path / "s.h5").ids)


@pytest.mark.slow
def test_damaged_store_is_one_warning_line_and_kept(tmp_path):
    data = two_classes(tmp_path / "data", 3)
    assert featx("extract", "-b", "pixels", "-d", data, "-o", "s.h5", "-q", cwd=tmp_path).returncode == 0
    whole = (tmp_path / "s.h5").read_bytes()
    (tmp_path / "s.h5").write_bytes(whole[: len(whole) // 2])
    r = featx("extract", "-b", "pixels", "-d", data, "-o", "s.h5", "-q", cwd=tmp_path)
    err = r.stderr.decode().strip().splitlines()
    assert r.returncode == 0 and b"wrote 6 new rows" in r.stdout
    assert len(err) == 1 and err[0].startswith("warning: ") and "damaged store" in err[0], err
    assert [p.read_bytes() for p in tmp_path.glob("s.h5.corrupt-*")] == [whole[: len(whole) // 2]]
