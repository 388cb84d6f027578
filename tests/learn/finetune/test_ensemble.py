"""Ensembles of `featx finetune --seeds K` (and `--backbone A,B`): the run folder, prediction, extraction and a
checked manifest.

A two-member ensemble of a random-weights ResNet-18 (one epoch on a few synthetic images, through the
real command) is read by `featx predict` (the mean of the members' probabilities), by `featx extract
--weights` (the members' pooled features side by side, under a fingerprint naming every member's
digest) and by the Python API; a manifest with a missing or changed member is one `error:` line, exit 3.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import one_error_line, tiny_split_folder

import featx
from featx.backbones.registry import get_cfg
from featx.backbones.weights_ref import (
    ENSEMBLE_FILE,
    WeightsRef,
    ensemble_manifest_dict,
    read_ensemble,
)
from featx.errors import OptionError, WeightsError
from featx.extraction.plan import make_cfg
from featx.learn.finetune.config import FinetuneCfg
from featx.learn.finetune.ensemble import check_backbones, check_seeds

R18 = get_cfg("resnet18")
WEIGHTS_EXIT = WeightsError.exit_code


def featx_cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "featx", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=900, check=False)


def fake_ensemble(root: Path, n: int = 2) -> Path:
    """An ensemble.json over ``n`` member files (bytes only: the manifest is checked before torch reads them)."""
    for s in range(n):
        (root / f"seed-{s}").mkdir(parents=True)
        (root / f"seed-{s}" / "best.pt").write_bytes(f"member {s}".encode())
    d = ensemble_manifest_dict("resnet18", ["a", "b"], [(root / f"seed-{s}" / "best.pt", s) for s in range(n)], root)
    (root / ENSEMBLE_FILE).write_text(json.dumps(d))
    return root


def sha16(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# ---------------------------------------------------------------- the manifest (quick)


def test_the_identity_names_the_ensemble_and_every_members_digest(tmp_path):
    ens = fake_ensemble(tmp_path / "ft-x3")
    ref = WeightsRef.parse(str(ens), R18)
    digests = [sha16(ens / f"seed-{s}" / "best.pt") for s in range(2)]
    assert ref.kind == "ensemble" and ref.identity == f"ensemble:ft-x3:{digests[0]},{digests[1]}"
    assert WeightsRef.parse(str(ens / ENSEMBLE_FILE), R18) == ref  # the folder or its manifest
    assert WeightsRef.from_identity(ref.identity) == WeightsRef("ensemble", "ft-x3", ",".join(digests))
    assert [(m.kind, m.path, m.digest) for m in ref.members] == [
        ("file", (ens / f"seed-{s}" / "best.pt").resolve(), digests[s]) for s in range(2)]
    before = make_cfg("resnet18", weights=ref)[0]
    # another member (a re-trained seed with a manifest written for it) is another ensemble: another store
    (ens / "seed-1" / "best.pt").write_bytes(b"retrained")
    d = ensemble_manifest_dict("resnet18", ["a", "b"], [(ens / f"seed-{s}" / "best.pt", s) for s in range(2)], ens)
    (ens / ENSEMBLE_FILE).write_text(json.dumps(d))
    after = make_cfg("resnet18", weights=WeightsRef.parse(str(ens), R18))[0]
    assert before.weights != after.weights and before.digest != after.digest
    assert after.weights.endswith(sha16(ens / "seed-1" / "best.pt"))


def tamper(ens: Path, how: str) -> str:
    """Break the ensemble ``how``; the text the error line must hold."""
    manifest = ens / ENSEMBLE_FILE
    if how == "missing member":
        (ens / "seed-1" / "best.pt").unlink()
        return "seed-1/best.pt is missing"
    if how == "changed member":
        with (ens / "seed-0" / "best.pt").open("ab") as fh:
            fh.write(b"x")
        return "seed-0/best.pt has changed"
    d = json.loads(manifest.read_text())
    if how == "tampered digest":
        d["members"][1]["sha256"] = "0" * 64
        manifest.write_text(json.dumps(d))
        return "seed-1/best.pt has changed"
    if how == "not an ensemble":
        manifest.write_text(json.dumps({**d, "format": "something-else"}))
        return "not a featx ensemble manifest"
    manifest.write_text("{")  # not JSON
    return "not valid JSON"


BREAKS = ["missing member", "changed member", "tampered digest", "not an ensemble", "not json"]


@pytest.mark.parametrize("how", BREAKS)
def test_a_bad_manifest_is_one_weights_error(tmp_path, how):
    ens = fake_ensemble(tmp_path / "ens")
    needle = tamper(ens, how)
    with pytest.raises(WeightsError, match=needle) as e:
        read_ensemble(ens)
    assert "\n" not in str(e.value) and str(ens / ENSEMBLE_FILE) in str(e.value)
    with pytest.raises(WeightsError, match=needle):
        WeightsRef.parse(str(ens), R18)


def test_another_backbone_or_a_finetuning_start_is_refused(tmp_path):
    ens = fake_ensemble(tmp_path / "ens")
    with pytest.raises(WeightsError, match="an ensemble of resnet18 networks, not of --backbone resnet50"):
        WeightsRef.parse(str(ens), get_cfg("resnet50"))
    with pytest.raises(OptionError, match="--seeds 0"):
        check_seeds(0)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["missing member", "tampered digest"])
def test_the_commands_answer_a_bad_manifest_with_one_line_and_exit_3(tmp_path, how):
    data = tiny_split_folder(tmp_path / "data")
    ens = fake_ensemble(tmp_path / "ens")
    needle = tamper(ens, how)
    one_error_line(featx_cli("predict", ens, data / "test" / "a" / "a11.jpg", cwd=tmp_path), WEIGHTS_EXIT, needle)
    one_error_line(featx_cli("extract", "-b", "resnet18", "--weights", ens, "--data", data, "--out", "x.h5",
                             cwd=tmp_path), WEIGHTS_EXIT, needle)
    assert not (tmp_path / "x.h5").exists()


def test_a_manifest_of_several_backbones_names_each_members(tmp_path):
    ens = fake_ensemble(tmp_path / "old")
    old = json.loads((ens / ENSEMBLE_FILE).read_text())
    for m in old["members"]:  # a manifest written before several backbones: the top-level one is every member's
        del m["backbone"]
    (ens / ENSEMBLE_FILE).write_text(json.dumps(old))
    assert read_ensemble(ens).backbones == ("resnet18",)
    mixed = tmp_path / "mixed"
    for b in ("resnet18", "efficientnet_lite0"):
        (mixed / b).mkdir(parents=True)
        (mixed / b / "best.pt").write_bytes(b.encode())
    d = ensemble_manifest_dict("resnet18", ["a", "b"], [(mixed / b / "best.pt", 0) for b in ("resnet18",
                               "efficientnet_lite0")], mixed, ["resnet18", "efficientnet_lite0"])
    (mixed / ENSEMBLE_FILE).write_text(json.dumps(d))
    e = read_ensemble(mixed)
    assert e.backbone == "resnet18+efficientnet_lite0" and e.backbones == ("resnet18", "efficientnet_lite0")
    assert [m.backbone for m in e.members] == ["resnet18", "efficientnet_lite0"]
    with pytest.raises(WeightsError, match="several backbones .*resnet18, efficientnet_lite0.* featx predict") as err:
        WeightsRef.parse(str(mixed), R18)  # featx extract --weights: the members take different inputs
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("names, weights, needle", [
    (["resnet18", "resnet18"], "imagenet", "name each backbone once"),
    (["resnet18", "no_such_net"], "imagenet", "no_such_net"),
    (["resnet18", "efficientnet_lite0"], "start.pt", "one file cannot start several backbones"),
])
def test_several_backbones_are_checked_before_any_training(names, weights, needle):
    with pytest.raises(Exception, match=needle) as e:
        check_backbones(FinetuneCfg("resnet18", weights=weights), names)
    assert getattr(type(e.value), "exit_code", None) is not None  # a featx error: one line, its exit code
    assert check_backbones(FinetuneCfg("resnet18"), []) == ["resnet18"]


# ---------------------------------------------------------------- a trained ensemble (slow)


def tiny_ensemble(root: Path, backbone: str, *options) -> tuple[Path, Path, Path, str]:
    """`featx finetune -b BACKBONE OPTIONS` of random weights (the last block and the head, one epoch) on a tiny
    split folder: ``(root, data, run folder, stdout)``."""
    data = tiny_split_folder(root / "data")
    r = featx_cli("finetune", "-b", backbone, "--weights", "none", "--unfreeze", "1", "--epochs", "1", "--batch-size",
                  "4", "--views", "1", "--cv", "0", "--workers", "0", "-q", *options, "--data", data, "--out",
                  root / "ens", cwd=root)
    assert r.returncode == 0, r.stderr
    return root, data, root / "ens", r.stdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`featx finetune --seeds 2` of a random ResNet-18 (the last block and the head, one epoch)."""
    root = tmp_path_factory.mktemp("ensemble")
    return tiny_ensemble(root, "resnet18", "--seeds", "2", "--seed", "3")


@pytest.mark.slow
def test_the_run_folder_holds_the_members_the_manifest_and_the_ensembles_verdict(trained):
    _, _, ens, stdout = trained
    manifest = json.loads((ens / ENSEMBLE_FILE).read_text())
    assert [m["path"] for m in manifest["members"]] == ["seed-3/best.pt", "seed-4/best.pt"]
    for m in manifest["members"]:
        assert m["sha256"] == hashlib.sha256((ens / m["path"]).read_bytes()).hexdigest()
        member = json.loads((ens / m["path"]).parent.joinpath("metrics.json").read_text())
        assert member["seed"] == m["seed"] and member["verdict"]["n"] == 6  # each member is a full run
    metrics = json.loads((ens / "metrics.json").read_text())
    assert metrics["classifier"] == "finetune-ensemble" and metrics["seeds"] == [3, 4]
    assert metrics["weights"] == WeightsRef.parse(str(ens), R18).identity
    v = metrics["verdict"]
    assert v["finetuned"] == "fine-tuned ensemble of 2" and v["n"] == 6
    assert v["metrics"]["accuracy"]["finetuned"] == pytest.approx(metrics["accuracy"])
    assert v["line"] in (ens / "verdict.md").read_text() and v["line"] in (ens / "report.txt").read_text()
    lines = stdout.strip().splitlines()
    assert lines[-1] == v["line"]  # the CLI ends with the verdict
    assert any(line.startswith("ensemble: ") and str(ens / ENSEMBLE_FILE) in line for line in lines)


@pytest.mark.slow
def test_ensemble_probabilities_are_the_mean_of_the_members(trained):
    root, data, ens, _ = trained
    images = sorted((data / "test").glob("*/*.jpg"))

    def probs(model) -> np.ndarray:
        out = featx.predict(model, images, top_k=2)
        assert [r["path"] for r in out] == [str(p) for p in images]
        return np.array([[dict(r["top"])[c] for c in ("a", "b")] for r in out])

    members = [probs(ens / f"seed-{s}" / "best.pt") for s in (3, 4)]
    together = probs(ens)
    assert together == pytest.approx((members[0] + members[1]) / 2, abs=1e-6)
    assert not np.allclose(members[0], members[1])  # two different networks
    r = featx_cli("predict", ens, images[0], "--json", "--top-k", "2", cwd=root)
    top = dict(json.loads(r.stdout.splitlines()[0])["top"])
    assert [top["a"], top["b"]] == pytest.approx(list(together[0]), abs=1e-6)


@pytest.mark.slow
def test_extract_puts_the_members_features_side_by_side(trained):
    root, data, ens, _ = trained
    r = featx_cli("extract", "-b", "resnet18", "--weights", ens, "--data", data, "--out", "ens.h5", "--runtime",
                  "torch", "--precision", "fp32", "-q", cwd=root)
    assert r.returncode == 0, r.stderr
    store = featx.Store(root / "ens.h5")
    assert store.fingerprint["weights"] == WeightsRef.parse(str(ens), R18).identity
    halves = []
    for s in (3, 4):
        m = featx.extract("resnet18", data, out=root / f"m{s}.h5", weights=str(ens / f"seed-{s}" / "best.pt"),
                          runtime="torch", precision="fp32", progress=False, workers=0)
        assert list(m.ids) == list(store.ids)
        halves.append(m.features())
    assert store.dim == 2 * halves[0].shape[1]
    assert store.features() == pytest.approx(np.hstack(halves), abs=1e-5)
    again = featx.extract("resnet18", data, out=root / "ens.h5", weights=str(ens), runtime="torch",
                          precision="fp32", progress=False)
    assert again.extraction.cache_hit
    # a changed member is no cache hit: one error line
    broken = root / "broken"
    shutil.copytree(ens, broken)
    with (broken / "seed-4" / "best.pt").open("ab") as fh:
        fh.write(b"x")
    one_error_line(featx_cli("extract", "-b", "resnet18", "--weights", broken, "--data", data, "--out", "ens.h5",
                             cwd=root), WEIGHTS_EXIT, "seed-4/best.pt has changed")


@pytest.fixture(scope="module")
def two_backbones(tmp_path_factory):
    """`featx finetune -b resnet18,efficientnet_lite0` of random weights (the last block and the head, one epoch)."""
    root = tmp_path_factory.mktemp("backbones")
    return tiny_ensemble(root, "resnet18,efficientnet_lite0")


@pytest.mark.slow
def test_an_ensemble_of_two_backbones_predicts_their_mean_and_compares_with_both_probes(two_backbones):
    root, data, ens, stdout = two_backbones
    manifest = json.loads((ens / ENSEMBLE_FILE).read_text())
    assert [(m["path"], m["backbone"]) for m in manifest["members"]] == [
        ("resnet18-seed-0/best.pt", "resnet18"), ("efficientnet_lite0-seed-0/best.pt", "efficientnet_lite0")]
    metrics = json.loads((ens / "metrics.json").read_text())
    assert metrics["backbones"] == ["resnet18", "efficientnet_lite0"] and metrics["seeds"] == [0, 0]
    assert metrics["verdict"]["probe"] == "frozen linear probes of the 2 backbones"
    for m in manifest["members"]:  # each member is a full run of its own backbone
        member = json.loads((ens / m["path"]).parent.joinpath("metrics.json").read_text())
        assert member["backbone"] == m["backbone"] and member["verdict"]["n"] == 6
    images = sorted((data / "test").glob("*/*.jpg"))

    def probs(model) -> np.ndarray:
        out = featx.predict(model, images, top_k=2)
        return np.array([[dict(r["top"])[c] for c in ("a", "b")] for r in out])

    members = [probs(ens / m["path"]) for m in manifest["members"]]
    assert probs(ens) == pytest.approx((members[0] + members[1]) / 2, abs=1e-6)
    assert "resnet18 seed 0" in stdout and "efficientnet_lite0 seed 0" in stdout
    assert stdout.strip().splitlines()[-1] == metrics["verdict"]["line"]
    one_error_line(featx_cli("extract", "-b", "resnet18", "--weights", ens, "--data", data, "--out", "x.h5",
                             cwd=root), WEIGHTS_EXIT, "several backbones")
    assert not (root / "x.h5").exists()
