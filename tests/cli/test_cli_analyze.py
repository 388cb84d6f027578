"""`featx analyze` end to end: synthetic stores through the CLI, torch-free import, real Monet stores."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from helpers import copy_subset
from PIL import Image
from typer.testing import CliRunner

from featx.analysis import registry
from featx.analysis.analyze import AnalyzeOptions, analyze
from featx.analysis.transfer import ranked_keys, score_keys
from featx.cli import app
from featx.config import DataCfg, ExtractCfg
from featx.store.writer import write_arrays

runner = CliRunner()
SCORE_KEYS, RANKED_KEYS = score_keys(), ranked_keys()


def replace_score(monkeypatch, key: str, fn) -> None:
    """Compute the registered score ``key`` with ``fn`` for one test."""
    monkeypatch.setitem(registry.SCORES, key, dataclasses.replace(registry.SCORES[key], fn=fn))


def make_store(path: Path, *, sep: float, seed: int = 0, logits: bool = True, images: bool = False,
               n_per_class: int = 40, dim: int = 48, classes=("monet", "sisley", "renoir")) -> Path:
    """Gaussian classes (``sep`` apart), split 70/15/15, optional logits tied to the class and image files."""
    rng = np.random.default_rng(seed)
    c = len(classes)
    y = np.repeat(np.arange(c), n_per_class)
    X = (rng.normal(size=(c, dim)) * sep)[y] + rng.normal(size=(len(y), dim))
    split = np.array((["train"] * 28 + ["val"] * 6 + ["test"] * 6) * c)[: len(y)]
    ids = [f"{classes[k]}/img{i:03d}.png" for i, k in enumerate(y)]
    root = path.parent / "images"
    if images:
        for i, k in enumerate(y):
            f = root / ids[i]
            f.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (24, 18), (80 * k, 40, 200 - 60 * k)).save(f)
    z = None
    if logits:
        z = rng.normal(size=(len(y), 1000)).astype(np.float32)
        z[np.arange(len(y)), 10 * y + rng.integers(0, 3, len(y))] += 4 * sep  # source labels follow the class
    cfg = ExtractCfg(backbone=f"syn{sep}", arch="syn", source="test", weights="none", layer="x", module="x",
                     pool="avg", data=DataCfg(), with_logits=logits)
    return write_arrays(path, cfg, features=X.astype(np.float32), labels=y, ids=ids, split=split,
                        classes=list(classes), data_root=root, logits=z)


def invoke(*args):
    return runner.invoke(app, ["analyze", *map(str, args)])


def assert_png(path: Path):
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) > 100


def test_transferability_single_store(tmp_path):
    store = make_store(tmp_path / "good.h5", sep=3.0)
    r = invoke(store, "--transferability", "--out", tmp_path / "out")
    assert r.exit_code == 0, r.output
    scores = json.loads((tmp_path / "out" / "scores.json").read_text())
    s = scores["good"]
    assert set(SCORE_KEYS) <= set(s)
    assert all(isinstance(s[k], float) for k in SCORE_KEYS)
    assert s["n"] == 84 and s["rows"] == "train split"  # scores on the train split by default
    assert s["task_overlap"] > 0.9 and 0 <= s["task_overlap_se"] < 0.05 and s["task_overlap_baseline"] < 0.4
    assert s["knn_acc"] > 0.9 and s["leep"] <= 0 and s["nce"] <= 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "scores.csv")))
    assert rows[0]["store"] == "good" and float(rows[0]["logme"]) == pytest.approx(s["logme"])
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| logme |" in summary and "task_overlap" in summary
    assert "logme" in r.output and "wrote" in r.output


def test_several_stores_ranked_and_tau_against_fit_runs(tmp_path):
    stores = [make_store(tmp_path / f"s{i}.h5", sep=sep, seed=i) for i, sep in enumerate((0.05, 0.3, 1.0, 3.0))]
    runs = tmp_path / "runs"
    for i, (store, acc) in enumerate(zip(stores, (0.4, 0.6, 0.8, 0.95))):
        d = runs / f"fit-{i}"
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({"store": str(store), "accuracy": acc, "classifier": "softmax"}))
        (d / "other.json").write_text("{}")
        other = runs / f"knn-{i}"  # another classifier, reversed: never mixed in ("best of whatever runs")
        other.mkdir()
        (other / "metrics.json").write_text(json.dumps({"store": str(store), "accuracy": 1.0 - acc / 2,
                                                        "classifier": "knn"}))
    (runs / "broken").mkdir()
    (runs / "broken" / "metrics.json").write_text("{not json")  # ignored
    r = invoke(*stores, "-t", "--runs-dir", runs, "--judge-by", "fit:softmax")
    assert r.exit_code == 0, r.output
    out = runs / "analyze-s0-vs-s1-vs-s2-vs-s3"
    ranking = list(csv.DictReader(open(out / "ranking.csv")))
    best = next(row for row in ranking if row["store"] == "s3")
    for key in ("logme", "hscore_shrink", "gbc", "knn_acc", "probe_acc", "leep", "task_overlap", "nce_cv",
                "task_overlap_u_cv"):
        assert best[f"{key}_rank"] == "1", key
    assert "nce_rank" not in best and "task_overlap_u_rank" not in best  # in-sample: reported, not ranked
    taus = {row["score"]: row for row in csv.DictReader(open(out / "taus.csv"))}
    assert set(taus) <= set(RANKED_KEYS) and "nce" not in taus and "nce_cv" in taus
    assert float(taus["logme"]["kendall_tau"]) == pytest.approx(1.0)
    assert float(taus["logme"]["pearson_r"]) > 0.8 and taus["logme"]["protocol"] == "fit:softmax"
    assert float(taus["knn_acc"]["weighted_tau"]) > 0.5
    scores = json.loads((out / "scores.json").read_text())
    assert scores["s3"]["accuracy"] == {"protocol": "fit:softmax", "value": 0.95, "runs": 1, "chosen": "newest run"}
    assert_png(out / "ranking.png")
    summary = (out / "summary.md").read_text()
    assert "Kendall tau" in summary and "Pearson r" in summary and "`featx fit --clf softmax`" in summary
    assert "pearson r" in r.output


def test_scores_judged_against_the_test_split_probe_by_default(tmp_path):
    stores = [make_store(tmp_path / f"p{i}.h5", sep=sep, seed=i) for i, sep in enumerate((0.02, 0.2, 3.0))]
    r = invoke(*stores, "-t", "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    scores = json.loads((tmp_path / "o" / "scores.json").read_text())
    acc = {k: v["accuracy"] for k, v in scores.items()}
    assert all(a["protocol"] == "probe" and a["n_test"] == 18 for a in acc.values())
    assert acc["p2"]["value"] > 0.9 and acc["p0"]["value"] < 0.8
    taus = {row["score"]: row for row in csv.DictReader(open(tmp_path / "o" / "taus.csv"))}
    assert taus["knn_acc"]["protocol"] == "probe" and float(taus["knn_acc"]["kendall_tau"]) > 0
    assert "accuracy on the test split" in (tmp_path / "o" / "summary.md").read_text()


def test_missing_logits_computes_the_rest_and_warns(tmp_path):
    store = make_store(tmp_path / "nolog.h5", sep=3.0, logits=False)
    r = invoke(store, "--transferability", "--out", tmp_path / "o")
    assert r.exit_code == 0
    assert "warning: leep" in r.output
    assert "--with-logits" in r.output and "leep" in r.output and "Traceback" not in r.output
    s = json.loads((tmp_path / "o" / "scores.json").read_text())["nolog"]
    assert s["leep"] is None and s["nce"] is None and s["task_overlap_u"] is None
    assert s["logme"] is not None and any("--with-logits" in n for n in s["notes"])


def test_user_errors_are_one_line(tmp_path):
    r = invoke(tmp_path / "missing.h5", "-t")
    assert r.exit_code == 4 and "no such feature store" in r.output
    store = make_store(tmp_path / "a.h5", sep=1.0)
    r = invoke(store, "-t", "--split", "holdout", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "'--split'" in r.output and "'holdout' is not one of" in r.output
    assert len(r.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_views_outliers_overlap_html(tmp_path):
    store = make_store(tmp_path / "v.h5", sep=3.0, images=True, n_per_class=30)
    out = tmp_path / "views"
    r = invoke(store, "--pca", "--tsne", "--thumbnails", "--html", "--outliers", "--overlap", "--out", out)
    assert r.exit_code == 0, r.output
    for name in ("v-pca-2d", "v-tsne-2d", "v-pca-thumbs", "v-tsne-thumbs", "v-pca-variance", "v-separability",
                 "v-outliers", "v-overlap"):
        assert_png(out / f"{name}.png")
    npz = np.load(out / "v-projections.npz")
    assert npz["pca2d"].shape == (90, 2) and npz["tsne2d"].shape == (90, 2) and len(npz["ids"]) == 90
    again = tmp_path / "again"
    assert invoke(store, "--3d", "--out", again).exit_code == 0  # --3d alone implies --pca
    assert_png(again / "v-pca-3d.png")
    npz3 = np.load(again / "v-projections.npz")
    assert npz3["pca3d"].shape == (90, 3) and np.allclose(npz3["pca2d"], npz["pca2d"])  # reproducible

    class P(HTMLParser):
        ok, data, _in = False, "", False

        def handle_starttag(self, tag, attrs):
            self._in = dict(attrs).get("id") == "featx-data"

        def handle_data(self, d):
            if self._in:
                self.data += d

    p = P()
    p.feed((out / "v.html").read_text())
    data = json.loads(p.data)
    assert sorted(data["ids"]) == sorted(npz["ids"].tolist()) and len(data["ids"]) == 90
    assert set(data["views"]) == {"PCA 2-D", "t-SNE 2-D"}
    assert all(len(v["index"]) == 90 for v in data["views"].values())
    outl = list(csv.DictReader(open(out / "v-outliers.csv")))
    assert len(outl) == 15 and {row["class"] for row in outl} == {"monet", "sisley", "renoir"}
    ov = json.loads((out / "v-overlap.json").read_text())
    assert np.allclose(np.sum(ov["matrix"], axis=1), 1) and min(np.diag(ov["matrix"])) > 0.9
    summary = (out / "summary.md").read_text()
    assert "Outliers" in summary and "neighbourhood overlap" in summary and "Linear SVM" in summary


def test_no_option_means_scores_and_pca(tmp_path):
    store = make_store(tmp_path / "d.h5", sep=2.0)
    res = analyze([store], AnalyzeOptions(runs_dir=tmp_path / "runs"))
    assert res.out_dir == tmp_path / "runs" / "analyze-d"
    assert (res.out_dir / "d-pca-2d.png").exists() and (res.out_dir / "scores.csv").exists()
    assert res.scores["d"]["pca"]["linear_separability"]["2"] > 0.8


@pytest.mark.slow
def test_analyze_never_imports_torch(tmp_path):
    store = make_store(tmp_path / "t.h5", sep=2.0)
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from featx.cli import app\n"
        f"r = CliRunner().invoke(app, ['analyze', {str(store)!r}, '-t', '--pca', '--overlap', '--out', "
        f"{str(tmp_path / 'o')!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'timm'))\n"
        "print('TORCH' if bad else 'CLEAN', bad[:3])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "CLEAN" in done.stdout, done.stdout


# ----------------------------------------------------------------------------- real data

@pytest.mark.slow
def test_pretrained_beats_random_weights_on_monet(monet_lite0_store, monet_random_store, tmp_path):
    out = tmp_path / "monet"
    r = invoke(monet_lite0_store, monet_random_store, "-t", "--split", "all", "--out", out)
    assert r.exit_code == 0, r.output
    scores = json.loads((out / "scores.json").read_text())
    good, rand = scores[Path(monet_lite0_store).stem], scores[Path(monet_random_store).stem]
    assert good["n"] == rand["n"] == 600 and good["dim"] == 1280
    whitened = ("hscore", "hscore_shrink", "fisher")
    for key in SCORE_KEYS:
        if key not in whitened:
            assert good[key] > rand[key], (key, good[key], rand[key])
    # n = 600 <= d = 1280: plain H-score saturates at C - 1 for any features (spec pitfall), and the
    # Ledoit-Wolf-whitened scores sit near their ceiling too (measured: hscore_shrink 0.889 vs 0.897,
    # fisher 8.43 vs 8.74, random weights slightly ahead). analyze says so in the notes; with n >> d
    # (first 64 principal components) all three rank the pretrained features first.
    assert good["hscore"] == pytest.approx(1.0, abs=1e-3) and rand["hscore"] == pytest.approx(1.0, abs=1e-3)
    assert any("n <= d" in note for note in good["notes"])
    from sklearn.decomposition import PCA

    from featx.analysis import transfer
    from featx.store.reader import load_features

    pcs = {}
    for name, path in (("good", monet_lite0_store), ("rand", monet_random_store)):
        fs = load_features(path)
        pcs[name] = (PCA(64, random_state=0).fit_transform(fs.features), fs.labels)
    for key in whitened:
        fn = getattr(transfer, key)
        assert fn(*pcs["good"]) > 1.3 * fn(*pcs["rand"]), key
    assert good["probe_acc"] > 0.75 and good["task_overlap"] > good["task_overlap_baseline"]
    ranking = list(csv.DictReader(open(out / "ranking.csv")))
    assert next(r for r in ranking if r["store"] == Path(monet_lite0_store).stem)["logme_rank"] == "1"


@pytest.mark.slow
def test_monet_views(monet_lite0_store, tmp_path):
    out = tmp_path / "views"
    r = invoke(monet_lite0_store, "--pca", "--thumbnails", "--outliers", "--overlap", "--html", "--out", out)
    assert r.exit_code == 0, r.output
    stem = Path(monet_lite0_store).stem
    for name in ("pca-2d", "pca-thumbs", "outliers", "overlap", "separability"):
        assert_png(out / f"{stem}-{name}.png")
    sep = json.loads((out / "scores.json").read_text())[stem]["pca"]["linear_separability"]
    assert max(sep.values()) > 0.75


@pytest.mark.slow
def test_fit_and_analyze_share_runs_dir_and_never_overwrite_a_run(tmp_path):
    stores = [make_store(tmp_path / f"r{i}.h5", sep=sep, seed=i) for i, sep in enumerate((0.1, 1.0, 3.0))]
    runs = tmp_path / "elsewhere"
    r = runner.invoke(app, ["fit", *map(str, stores), "--clf", "knn", "--runs-dir", str(runs), "--name", "lb"])
    assert r.exit_code == 0, r.output
    assert len(list(runs.glob("lb/*/metrics.json"))) == 3
    r = invoke(*stores, "-t", "--runs-dir", runs, "--judge-by", "fit:knn")
    assert r.exit_code == 0, r.output
    first = runs / "analyze-r0-vs-r1-vs-r2"
    assert (first / "taus.csv").exists()  # fit results were found under the shared --runs-dir
    judged = json.loads((first / "scores.json").read_text())["r2"]["accuracy"]
    assert judged["protocol"] == "fit:knn" and judged["runs"] == 1 and judged["value"] > 0.9
    r = invoke(*stores, "-t", "--runs-dir", runs)
    assert r.exit_code == 0 and (runs / "analyze-r0-vs-r1-vs-r2-2" / "scores.json").exists()
    assert f"{first} already holds a run" in r.output
    stamp = (first / "scores.json").stat().st_mtime_ns
    r = invoke(*stores, "-t", "--runs-dir", runs, "--overwrite")
    assert r.exit_code == 0 and (first / "scores.json").stat().st_mtime_ns > stamp
    assert not (runs / "analyze-r0-vs-r1-vs-r2-3").exists()
    r = runner.invoke(app, ["fit", str(stores[0]), "--runs-dir", str(runs), "--name", "lb"])
    assert r.exit_code == 0 and (runs / "lb-2" / "metrics.json").exists()
    assert f"{runs / 'lb'} already holds a run; writing to {runs / 'lb-2'}" in r.stdout


# ------------------------------------------------- wide features, memory budget, failing scores

def test_a_failing_score_is_null_with_a_note_and_the_others_are_written(tmp_path, monkeypatch):
    def boom(F, y, **kw):
        raise MemoryError("Unable to allocate 4.7 GiB for an array with shape (25088, 25088)")

    replace_score(monkeypatch, "hscore_shrink", boom)
    store = make_store(tmp_path / "f.h5", sep=2.0)
    r = invoke(store, "-t", "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "o" / "scores.json").read_text())["f"]
    assert s["hscore_shrink"] is None and s["errors"]["hscore_shrink"].startswith("MemoryError: Unable to allocate")
    assert any(n.startswith("hscore_shrink failed and is null") for n in s["notes"])
    assert all(isinstance(s[k], float) for k in SCORE_KEYS if k != "hscore_shrink")
    assert "warning: f: hscore_shrink failed and is null (MemoryError" in r.output and "Traceback" not in r.output
    assert "| hscore_shrink | failed |" in (tmp_path / "o" / "summary.md").read_text()


def test_every_score_failing_is_an_error_not_a_crash(tmp_path, monkeypatch):
    def boom(*a, **kw):
        raise RuntimeError("nope")

    for key in score_keys(source=False):
        replace_score(monkeypatch, key, boom)
    store = make_store(tmp_path / "nolog.h5", sep=2.0, logits=False)
    r = invoke(store, "-t", "--out", tmp_path / "o")
    assert r.exit_code == 2 and "no transferability score could be computed" in r.output
    assert "Traceback" not in r.output and (tmp_path / "o" / "scores.json").exists()


def test_over_budget_scores_run_on_principal_components_or_are_skipped(tmp_path, monkeypatch):
    from featx.analysis import transfer

    seen = {}

    def knn(F, y, **kw):
        seen.update(kw, dims=F.shape[1])
        return transfer.knn_acc(F, y, **kw)

    replace_score(monkeypatch, "knn_acc", knn)
    store = make_store(tmp_path / "w.h5", sep=2.0, dim=20000, n_per_class=40)
    r = invoke(store, "-t", "--out", tmp_path / "o", "--max-memory", "24M", "--score-dims", "16", "--k", "7")
    assert r.exit_code == 0, r.output
    assert seen["k"] == 7  # --k reaches kNN accuracy, whatever was reduced before it
    s = json.loads((tmp_path / "o" / "scores.json").read_text())["w"]
    assert s["memory"]["budget_mib"] == 24 and s["memory"]["estimate_mib"]["logme"] > 24
    assert s["score_dims"]["logme"] == 16 and s["score_dims"]["hscore_shrink"] == 16
    assert all(s[k] is not None for k in SCORE_KEYS), s["notes"]
    assert any("on the first 16 principal components" in n for n in s["notes"])
    assert any("PCA to 16 dims (--score-dims) keeps" in n for n in s["notes"])
    assert "(PCA 16)" in (tmp_path / "o" / "summary.md").read_text()
    r = invoke(store, "-t", "--out", tmp_path / "tiny", "--max-memory", "1M")  # not even the PCA fits
    assert r.exit_code == 0, r.output  # the source-model scores were still written
    s = json.loads((tmp_path / "tiny" / "scores.json").read_text())["w"]
    assert s["logme"] is None and s["score_dims"]["logme"] is None and s["nce_cv"] is not None
    assert any(n.startswith("logme skipped: needs about") and "--max-memory" in n for n in s["notes"])
    assert "warning: w: logme skipped" in r.output


@pytest.mark.parametrize("args,flag", [(["--max-memory", "lots"], "--max-memory"),
                                       (["--max-memory", "10K"], "--max-memory"),
                                       (["--score-dims", "1"], "--score-dims"),
                                       (["--judge-by", "best"], "--judge-by")])
def test_bad_budget_options_are_one_line_errors(tmp_path, args, flag):
    store = make_store(tmp_path / "b.h5", sep=1.0)
    r = invoke(store, "-t", "--out", tmp_path / "o", *args)
    assert r.exit_code == 2 and flag in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output


@pytest.fixture(scope="session")
def vgg_block5_store(tmp_path_factory, monet_dir) -> Path:
    """VGG16 block5_pool flattened (7 x 7 x 512 = 25,088 dims, random weights, with logits) on 40
    Monet/Sisley paintings, extracted by the CLI in a subprocess."""
    root = tmp_path_factory.mktemp("vgg")
    data = copy_subset(monet_dir, root / "paintings", 20, split="train")
    out = root / "vgg16-block5_pool.h5"
    done = subprocess.run([sys.executable, "-m", "featx", "extract", "-b", "vgg16", "--weights", "none", "--layer",
                           "block5_pool", "--pool", "flatten", "--with-logits", "--data", str(data), "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=_env())
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def _env() -> dict:
    import os

    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


@pytest.mark.slow
def test_vgg16_block5_pool_store_analyzed_in_a_subprocess(vgg_block5_store, tmp_path):
    out = tmp_path / "o"
    done = subprocess.run([sys.executable, "-m", "featx", "analyze", str(vgg_block5_store), "--transferability",
                           "--out", str(out)], capture_output=True, text=True, timeout=600, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]  # no crash (a segfault is -11)
    s = json.loads((out / "scores.json").read_text())[vgg_block5_store.stem]
    assert s["dim"] == 25088 and s["n"] < 100
    for key in SCORE_KEYS:
        v = s[key]
        assert (isinstance(v, float) and np.isfinite(v)) or (v is None and key in s["errors"]), (key, v)
    assert s["score_dims"]["hscore_shrink"] == 25088  # a few rows: the exact low-rank path, no reduction
    assert s["memory"]["estimate_mib"]["hscore_shrink"] < 300
    assert "Traceback" not in done.stderr
