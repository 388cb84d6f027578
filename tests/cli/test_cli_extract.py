"""CLI: help on every command, one-line errors with non-zero exits, extract/info round trip."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from featx.cli import app
from helpers import rgb

runner = CliRunner()


def test_every_command_has_help():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    commands = [c for c in ("extract", "info", "backbones", "sample-data", "fit", "predict", "analyze")
                if c in res.output]
    assert {"extract", "info", "backbones", "sample-data"} <= set(commands)
    for cmd in commands + ["backbones nodes"]:
        sub = runner.invoke(app, cmd.split() + ["--help"])
        assert sub.exit_code == 0 and "Usage" in sub.output, cmd


def test_backbones_table():
    res = runner.invoke(app, ["backbones"])
    assert res.exit_code == 0
    line = next(ln for ln in res.output.splitlines() if ln.startswith("efficientnet_lite0"))
    assert "1280" in line and "yes" in line
    assert "vgg16" in res.output and "4096" in res.output


def _two_classes(root, n=3):
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            rgb(i + (10 if c == "b" else 0)).save(root / c / f"{i}.jpg")
    return root


@pytest.mark.parametrize("setup,args,code,match", [
    ("ok", ["-b", "resnet5O"], 2, "did you mean resnet50"),
    ("missing", ["-b", "pixels"], 2, "no such file or folder"),
    ("empty", ["-b", "pixels"], 2, "folder is empty"),
    ("no_images", ["-b", "pixels"], 2, "has no images"),
    ("one_class", ["-b", "pixels"], 2, "only one class"),
    ("ok", ["-b", "vgg16", "--weights", "none", "--layer", "fc3"], 2, "valid: block4_pool, block5_pool, fc1, fc2"),
    ("ok", ["-b", "resnet18", "--weights", "nope.pth"], 3, "not a file"),
    ("ok", ["-b", "pixels", "--tta", "vflip"], 2, "'vflip' is not one of 'none', 'hflip'"),
    ("ok", ["-b", "pixels", "--runtime", "tensorrt"], 2, "'tensorrt' is not one of 'auto', 'torch', 'openvino'"),
    ("ok", ["-b", "efficientnet_lite0", "--runtime", "openvino", "--device", "cuda"], 2,
     "--runtime openvino runs on the CPU"),
])
def test_extract_errors_are_one_line(tmp_path, setup, args, code, match):
    data = tmp_path / "data"
    if setup == "ok":
        _two_classes(data)
    elif setup != "missing":
        data.mkdir()
        if setup == "no_images":
            _two_classes(data)
            (data / "c").mkdir()
        if setup == "one_class":
            (data / "a").mkdir()
            rgb(0).save(data / "a" / "x.jpg")
    res = runner.invoke(app, ["extract", "-d", str(data), "-o", str(tmp_path / "o.h5"), *args])
    assert res.exit_code == code, res.output
    err = res.stderr.strip() if hasattr(res, "stderr") else res.output.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and match in err, err
    assert "Traceback" not in res.output


def test_extract_then_info(tmp_path):
    data = _two_classes(tmp_path / "data", n=4)
    (data / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "px.h5"
    res = runner.invoke(app, ["extract", "-b", "pixels", "-d", str(data), "-o", str(out), "-q", "--workers", "0"])
    assert res.exit_code == 0, res.output
    assert "wrote 8 new rows" in res.output and "1 unreadable" in res.output and "b/broken.jpg" in res.output
    assert "torch fp32 on cpu" in res.output  # the pixels baseline has no network to convert
    assert "time: start-up" in res.output and "in the background" in res.output
    again = runner.invoke(app, ["extract", "-b", "pixels", "-d", str(data), "-o", str(out)])
    assert again.exit_code == 0 and "cache hit" in again.output
    info = runner.invoke(app, ["info", str(out), "--json"])
    assert info.exit_code == 0
    summary = json.loads(info.output)
    assert summary["rows"] == 8 and summary["dim"] == 3072 and summary["failed"] == 1
    assert summary["classes"] == {"a": 4, "b": 4} and sum(summary["splits"].values()) == 8
    assert summary["fingerprint"]["backbone"] == "pixels" and summary["complete"]
    text = runner.invoke(app, ["info", str(out)])
    assert "rows 8, dim 3072" in text.output and "b/broken.jpg" in text.output


@pytest.mark.slow
def test_info_on_foreign_file(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_text("not hdf5")
    res = runner.invoke(app, ["info", str(bad)])
    assert res.exit_code == 4 and "not a readable HDF5 file" in res.output


def test_sample_data_is_a_real_dataset(tmp_path):
    res = runner.invoke(app, ["sample-data", str(tmp_path / "digits"), "--per-class", "3"])
    assert res.exit_code == 0
    from featx.data.discover import load_dataset

    ds = load_dataset(tmp_path / "digits")
    assert len(ds) == 30 and len(ds.classes) == 10
    before = {i: (s, m) for i, s, m in zip(ds.ids, ds.size, ds.mtime_ns)}
    assert runner.invoke(app, ["sample-data", str(tmp_path / "digits"), "--per-class", "3"]).exit_code == 0
    again = load_dataset(tmp_path / "digits")  # identical files are not rewritten: stores stay cache hits
    assert {i: (s, m) for i, s, m in zip(again.ids, again.size, again.mtime_ns)} == before
