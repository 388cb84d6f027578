"""`featx neighbors` and featx.look: exact blocked search against brute force, queries by id, row and image
file, the contact sheet, overlap across stores, and the approximate index rebuilt when rows change."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from _synth import blobs, cfg
from _synth import store as synth_store
from helpers import split_subset
from PIL import Image
from typer.testing import CliRunner

import featx
from featx.cli import app
from featx.errors import DataError, OptionError
from featx.look import index as ann
from featx.look.neighbors import NeighborsOptions
from featx.look.similarity import Vectors, top_k
from featx.store.writer import open_writer

runner = CliRunner()


def brute(X: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    N = X / np.linalg.norm(X, axis=1, keepdims=True)
    s = N @ (q / np.linalg.norm(q))
    order = np.lexsort((np.arange(len(s)), -s))[:k]
    return order, s[order]


@pytest.fixture
def synth(tmp_path):
    X, y, split, ids = blobs((60, 60, 60), dim=32, seed=4)
    return synth_store(tmp_path / "s.h5", X=X, y=y, split=split, ids=ids, dim=32), X, split


def test_stored_query_finds_itself_first_and_matches_brute_force(synth):
    path, X, _ = synth
    res = featx.neighbors(path, rows=[17], k=6)
    nb = res[0].neighbors
    assert nb[0]["row"] == 17 and nb[0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    rows, sims = brute(X, X[17], 6)
    assert [n["row"] for n in nb] == rows.tolist()
    np.testing.assert_allclose([n["similarity"] for n in nb], sims, atol=1e-5)
    assert [n["rank"] for n in nb] == list(range(1, 7))
    # the same row by id; exclude_self drops it; split= keeps only that split's rows
    store = featx.Store(path)
    by_id = featx.neighbors(store, str(store.ids[17]), k=6)
    assert [n["row"] for n in by_id[0].neighbors] == rows.tolist() and by_id[0].kind == "id"
    ex = featx.neighbors(store, rows=[17], k=5, exclude_self=True)[0].neighbors
    assert [n["row"] for n in ex] == rows[1:].tolist()
    test_only = featx.neighbors(store, rows=[17], k=4, split="test")[0].neighbors
    assert {n["split"] for n in test_only} == {"test"} and len(test_only) == 4
    df = featx.neighbors(store, rows=[1, 2], k=3).to_pandas()
    assert list(df.columns) == ["query", "rank", "row", "id", "label", "split", "similarity"] and len(df) == 6


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_blocked_streamed_search_equals_brute_force(tmp_path, dtype):
    X, y, split, ids = blobs((300, 300, 300), dim=24, seed=7)
    from featx.store.writer import write_arrays

    path = write_arrays(tmp_path / "s.h5", cfg(dtype=dtype), features=X, labels=y, ids=ids, split=split,
                        classes=["a", "b", "c"])
    store = featx.Store(path)
    assert store.attrs["dtype"] == dtype
    Xs = store.features()  # the stored values (float16 rounded)
    q = Xs[[3, 500, 899]]
    for vec in (Vectors(store, block_rows=128), Vectors(store, in_memory=False, block_rows=100)):
        rows, sims = top_k(q, vec, 10)
        for i in range(3):
            want, wsims = brute(Xs.astype(np.float64), q[i].astype(np.float64), 10)
            if dtype == "float32":
                assert rows[i].tolist() == want.tolist()
            else:  # float16 rows held as float16: near-ties may swap, the similarities agree to fp16 precision
                assert rows[i][0] == want[0]
                true = brute(Xs.astype(np.float64), q[i].astype(np.float64), len(Xs))
                exact_sim = dict(zip(true[0].tolist(), true[1].tolist()))
                np.testing.assert_allclose([exact_sim[r] for r in rows[i]], wsims, atol=2e-3)
            np.testing.assert_allclose(sims[i], wsims, atol=2e-3 if dtype == "float16" else 1e-5)
    mem = Vectors(store)
    assert mem.in_memory and mem._X.dtype == np.dtype(dtype)


def test_cli_table_json_and_errors(synth, tmp_path):
    path, _, _ = synth
    store = featx.Store(path)
    r = runner.invoke(app, ["neighbors", str(path), str(store.ids[0]), "--row", "9", "--k", "3"])
    assert r.exit_code == 0, r.output
    assert "rank" in r.output and "similarity" in r.output and str(store.ids[0]) in r.output
    assert r.output.count("1.0000") >= 2  # each stored query first, similarity 1
    r = runner.invoke(app, ["neighbors", str(path), "--row", "9", "--k", "3", "--json"])
    doc = json.loads(r.output)
    assert doc["method"] == "exact" and doc["queries"][0]["neighbors"][0]["row"] == 9
    assert len(doc["queries"][0]["neighbors"]) == 3
    for args, needle, code in ((["no/such/id.jpg"], "neither an id", 2), (["--row", "9999"], "--row 9999", 2),
                               (["--row", "1", "--k", "0"], "--k", 2), (["--row", "1", "--index", "fast"], "--index", 2),
                               (["--row", "1", "--split", "holdout"], "--split", 2), ([], "no query", 2)):
        r = runner.invoke(app, ["neighbors", str(path), *args])
        assert r.exit_code == code, (args, r.output)
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], (args, r.output)
    r = runner.invoke(app, ["neighbors", str(tmp_path / "missing.h5"), "--row", "0"])
    assert r.exit_code == 4 and r.output.startswith("error:")


def test_options_check_themselves():
    with pytest.raises(OptionError, match="--k"):
        NeighborsOptions(k=-1)
    with pytest.raises(OptionError, match="--index"):
        NeighborsOptions(index="hnsw")
    assert NeighborsOptions(split=["train", "val"]).split == ("train", "val")


def test_overlap_across_stores(tmp_path, synth):
    path, X, split = synth
    store = featx.Store(path)
    same = featx.neighbors_overlap(path, path, k=5)
    assert same.mean == 1.0 and len(same.per_query) == len(store) and same.common == len(store)
    rng = np.random.default_rng(0)
    other = synth_store(tmp_path / "other.h5", X=rng.normal(size=X.shape).astype(np.float32), split=split,
                        ids=list(store.ids), dim=X.shape[1], backbone="other")
    diff = featx.neighbors_overlap(path, other, k=5)
    assert diff.mean < 0.2  # random features share little of the blobs' neighbourhoods
    r = runner.invoke(app, ["neighbors", str(path), "--across", str(other), "--k", "5", "--json"])
    doc = json.loads(r.output)
    assert doc["mean_overlap"] == pytest.approx(diff.mean, abs=1e-6) and len(doc["per_query"]) == len(store)
    r = runner.invoke(app, ["neighbors", str(path), "--across", str(other), "--row", "1"])
    assert r.exit_code == 2 and r.output.startswith("error: --across compares whole neighbourhoods")
    disjoint = synth_store(tmp_path / "disjoint.h5", dim=32, ids=[f"x/{i}.jpg" for i in range(180)])
    with pytest.raises(featx.FeatxError, match="share 0 image id"):
        featx.neighbors_overlap(path, disjoint)


def _append(path, rows):
    with open_writer(path, cfg()) as w:
        w.append([f"extra/{i}.jpg" for i in range(len(rows))], [0] * len(rows), ["train"] * len(rows),
                 rows.astype(np.float32))


@pytest.mark.skipif(not ann.available(), reason="faiss-cpu is not installed (pip install 'featx[ann]')")
def test_index_is_built_once_and_rebuilt_after_an_append(tmp_path):
    X, y, split, ids = blobs((400, 400, 400), dim=32, seed=8)
    path = synth_store(tmp_path / "s.h5", X=X, y=y, split=split, ids=ids, dim=32)
    first = ann.load_or_build(featx.Store(path), progress=False)
    file, meta = ann.paths(featx.Store(path))
    assert first.built and file.exists() and meta.exists()
    again = ann.load_or_build(featx.Store(path), progress=False)
    assert not again.built  # same rows: read back, not rebuilt
    res = featx.neighbors(path, rows=[5, 700], k=10, index="ann")
    exact = featx.neighbors(path, rows=[5, 700], k=10, index="exact")
    assert res.method.startswith("ann") and exact.method == "exact"
    for a, e in zip(res, exact):
        assert a.neighbors[0]["row"] == e.neighbors[0]["row"]
        assert len({n["row"] for n in a.neighbors} & {n["row"] for n in e.neighbors}) >= 8
        exact_sim = {n["row"]: n["similarity"] for n in e.neighbors}
        assert all(abs(n["similarity"] - exact_sim[n["row"]]) < 0.01 for n in a.neighbors if n["row"] in exact_sim)
    new = (X[5] * 3)[None]  # a new row pointing where row 5 points
    _append(path, new)
    store = featx.Store(path)
    assert ann.key(store) != json.loads(meta.read_text())["key"]
    rebuilt = ann.load_or_build(store, progress=False)
    assert rebuilt.built and rebuilt.index.ntotal == len(store) == len(X) + 1
    rows, _ = rebuilt.search(new, 2)
    assert set(rows[0].tolist()) == {5, len(X)}


def test_ann_without_faiss_says_one_line_about_the_extra(synth, tmp_path):
    path, _, _ = synth
    code = ("import sys; sys.modules['faiss'] = None\n"  # faiss absent, as in an install without featx[ann]
            "from featx.cli import main; sys.argv = ['featx', 'neighbors', sys.argv[1], '--row', '0', '--index', 'ann']"
            "\nmain()")
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=False)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: --index ann: the approximate index needs faiss-cpu: pip install 'featx[ann]' (or pip install faiss-cpu)"]
    # --index auto above the row threshold (lowered here to the store's 180 rows): exact search and one line
    auto = code.replace("'ann'", "'auto'").replace("from featx.cli", "import featx.look.neighbors as nb; "
                                                   "nb.ANN_ROWS = 100\nfrom featx.cli")
    r = subprocess.run([sys.executable, "-c", auto, str(path)], capture_output=True, text=True, check=False)
    assert r.returncode == 0 and "1.0000" in r.stdout  # exact search still works
    assert r.stderr.strip().splitlines() == [
        "warning: 180 rows: searching exactly; the approximate index needs faiss-cpu: pip install 'featx[ann]' "
        "(or pip install faiss-cpu)"]


def test_stored_queries_never_load_torch(synth):
    path, _, _ = synth
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom featx.cli import app\n"
            "r = CliRunner().invoke(app, ['neighbors', sys.argv[1], '--row', '3', '--k', '2'])\n"
            "print(r.exit_code, 'torch' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=False)
    assert r.stdout.split() == ["0", "False"], r.stderr


def test_image_query_on_a_store_whose_backbone_cannot_be_rebuilt(synth, tmp_path):
    path, _, _ = synth
    img = tmp_path / "q.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(img)
    r = runner.invoke(app, ["neighbors", str(path), str(img)])
    assert r.exit_code == 2 and r.output.startswith("error: --backbone 'synthetic' is unknown")
    assert len(r.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_real_paintings_file_query_ranks_like_its_stored_row(tmp_path, monet_dir):
    from featx.extraction.options import ExtractOptions
    from featx.extraction.run import extract

    data = split_subset(monet_dir, tmp_path / "data", {"train": 15, "val": 3, "test": 3})
    out = tmp_path / "store.h5"
    extract(ExtractOptions("efficientnet_lite0", data, out=out, progress=False))
    store = featx.Store(out)
    qid = str(store.ids[len(store) - 1])
    stored = featx.neighbors(store, qid, k=8)[0].neighbors
    assert stored[0]["id"] == qid and stored[0]["similarity"] == pytest.approx(1.0, abs=1e-4)
    # the same painting as a file outside the data folder, embedded on the fly
    outside = tmp_path / "query.jpg"
    shutil.copyfile(data / qid, outside)
    embedded = featx.neighbors(store, outside, k=8)
    assert embedded[0].kind == "file"
    got = embedded[0].neighbors
    assert [n["id"] for n in got] == [n["id"] for n in stored]
    assert got[0]["similarity"] == pytest.approx(1.0, abs=1e-3)
    # an unreadable file among the queries is skipped and reported; alone, it is an error
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    mixed = featx.neighbors(store, [bad, outside], k=3)
    assert [q.query for q in mixed] == [str(outside)] and mixed.failures[0][0] == str(bad)
    with pytest.raises(DataError, match="no query image could be read"):
        featx.neighbors(store, [bad])
    # the CLI: table, and a contact sheet PNG of the right size
    sheet = tmp_path / "sheet.png"
    r = subprocess.run([sys.executable, "-m", "featx", "neighbors", str(out), str(outside), qid, "--k", "5",
                        "--sheet", str(sheet)], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(qid) >= 3 and "contact sheet:" in r.stdout
    with Image.open(sheet) as im:
        assert im.format == "PNG" and im.width > im.height > 300  # two rows of six thumbnails
