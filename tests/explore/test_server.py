"""featx explore over HTTP: a real server process on a free loopback port, raw requests, real stores.

The guards (no file outside the stores' images, Host check, token on other binds, POST header, CSP), a store
that changes while the app runs, and the answers behind each pane (maps, runs and confusion cells,
paintings, audits, side by side, uploads) checked against what featx fit / audit / predict wrote.
"""

from __future__ import annotations

import csv
import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from PIL import Image

from helpers import ExploreServer as Server
from helpers import rgb, run_featx as featx, tiny_split_folder

pytest.importorskip("starlette", reason="featx explore needs the explore extra: pip install 'featx[explore]'")
pytest.importorskip("uvicorn", reason="featx explore needs the explore extra: pip install 'featx[explore]'")


def request(server: Server, path: str, *, method: str = "GET", body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, dict, bytes]:
    """One raw HTTP request (the path is sent exactly as given: no client-side normalisation)."""
    u = urlsplit(server.base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", (headers or {}).pop("Host", f"127.0.0.1:{u.port}"))
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def get_json(server: Server, path: str, **kw) -> dict:
    status, _, body = request(server, path, **kw)
    assert status == 200, (path, status, body[:300])
    return json.loads(body)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """A pixels store of 20 synthetic images in train/val/test folders, and an image outside its data root."""
    root = tmp_path_factory.mktemp("explore-tiny")
    data = tiny_split_folder(root / "data")
    rgb(999, (40, 40)).save(root / "outside.jpg")
    store = root / "cache" / "tiny.h5"
    featx("extract", "-b", "pixels", "-d", data, "--out", store, "-q", cwd=root)
    return {"root": root, "data": data, "store": store}


@pytest.fixture(scope="module")
def tiny_server(tiny):
    s = Server(tiny["store"], cwd=tiny["root"])
    yield s
    s.stop()


# ---------------------------------------------------------------- guards

def test_only_the_pages_files_and_the_stores_images_are_served(tiny_server):
    status, headers, body = request(tiny_server, "/")
    assert status == 200 and b"featx explore" in body
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    for path in ("/etc/passwd", "/static/../../../../etc/passwd", "/static/..%2f..%2f..%2fetc%2fpasswd",
                 "/api/thumb/0/..%2f..%2fetc%2fpasswd", "/api/image/0/-1", "/api/image/0/99999",
                 "/api/thumb/9/0", "/static/server.py", "/static/index.html/../../collection.py",
                 "//etc/passwd", "/api/image/0/0%00"):
        status, headers, body = request(tiny_server, path)
        assert status in (403, 404), (path, status)
        assert b"root:" not in body and b"import" not in body, path
        assert "content-security-policy" in headers, path
    status, headers, _ = request(tiny_server, "/api/thumb/0/0")
    assert status == 200 and headers["content-type"] == "image/jpeg"


def test_a_request_for_another_host_is_refused(tiny_server):
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    status, _, body = request(tiny_server, "/api/state", headers={"Host": "evil.example:80"})
    assert status == 403 and b"not this server" in body
    assert request(tiny_server, "/api/state", headers={"Host": "localhost"})[0] == 200


def test_a_post_needs_the_apps_header_and_uploads_are_limited(tiny_server):
    assert request(tiny_server, "/api/rescan", method="POST", body=b"")[0] == 403
    assert request(tiny_server, "/api/rescan", method="POST", body=b"", headers={"X-Featx": "1"})[0] == 200
    status, _, body = request(tiny_server, "/api/classify/0", method="POST", body=b"\0" * (21 << 20),
                              headers={"X-Featx": "1"})
    assert status == 413, body[:200]
    status, _, body = request(tiny_server, "/api/classify/0", method="POST", body=b"<svg onload=alert(1)>",
                              headers={"X-Featx": "1"})
    assert status == 400 and b"not an image" in body


def test_a_symlink_out_of_the_data_root_is_refused(tiny):
    """A painting replaced by a link to a file outside the data folder: neither its thumbnail nor its image."""
    root = tiny["root"]
    victim = sorted((tiny["data"] / "test" / "a").iterdir())[0]
    rel = victim.relative_to(tiny["data"]).as_posix()
    backup = root / "victim.bak"
    shutil.copy(victim, backup)
    victim.unlink()
    victim.symlink_to(root / "outside.jpg")
    server = Server(tiny["store"], cwd=root)
    try:
        state = get_json(server, "/api/state")["stores"][0]
        row = get_json(server, "/api/rows/0?rows=" + ",".join(map(str, range(state["rows"]))))
        r = next(x["row"] for x in row if x["id"] == rel)
        for kind in ("thumb", "image"):
            status, _, body = request(server, f"/api/{kind}/0/{r}")
            assert status == 404, (kind, status)
            assert b"outside" in body or b"refused" in body or b"not" in body
        assert request(server, f"/api/thumb/0/{(r + 1) % state['rows']}")[0] == 200
    finally:
        server.stop()
        victim.unlink()
        shutil.copy(backup, victim)


def test_any_other_bind_needs_the_token(tiny):
    server = Server(tiny["store"], "--host", "0.0.0.0", cwd=tiny["root"])
    try:
        assert "?token=" in server.url
        token = server.url.split("token=")[1]
        assert len(token) >= 24
        assert request(server, "/")[0] == 403
        assert request(server, "/api/state")[0] == 403
        assert request(server, "/api/state?token=wrong-token-value")[0] == 403
        status, headers, _ = request(server, f"/?token={token}")
        assert status == 200
        cookie = headers["set-cookie"].split(";")[0]
        assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
        assert request(server, "/api/state", headers={"Cookie": cookie})[0] == 200
        assert request(server, "/api/state", headers={"X-Featx-Token": token})[0] == 200
    finally:
        server.stop()


def test_bad_options_give_one_error_line(tiny):
    from helpers import one_error_line

    r = subprocess.run([sys.executable, "-m", "featx", "explore", str(tiny["store"]), "--host", "0.0.0.0",
                        "--token", "short", "--no-browser"], capture_output=True, text=True, timeout=60)
    one_error_line(r, 2, "--token")
    r = subprocess.run([sys.executable, "-m", "featx", "explore", str(tiny["root"] / "missing.h5"), "--no-browser"],
                       capture_output=True, text=True, timeout=60)
    one_error_line(r, 4, "missing.h5")


def test_a_tar_store_shows_the_paintings_in_its_tar(tmp_path):
    """A tar-shard store's ids are keys inside the tar, not files: thumbnails and images are read from it."""
    import io
    import tarfile

    data = tiny_split_folder(tmp_path / "data", {"train": 3})
    with tarfile.open(tmp_path / "shard-000000.tar", "w") as tf:
        for f in sorted(data.rglob("*.jpg")):
            tf.add(f, arcname=f.relative_to(data / "train").as_posix())
    store = tmp_path / "tar.h5"
    featx("extract", "-b", "pixels", "-d", tmp_path / "shard-000000.tar", "--out", store, "-q", cwd=tmp_path)
    shutil.rmtree(data)  # only the tar is left
    server = Server(store, cwd=tmp_path)
    try:
        for kind in ("thumb", "image"):
            status, headers, body = request(server, f"/api/{kind}/0/0")
            assert status == 200 and headers["content-type"] == "image/jpeg", (kind, status, body[:200])
            with Image.open(io.BytesIO(body)) as im:
                assert im.size == (40, 40) and np.asarray(im).std() > 10  # the painting, not a blank
    finally:
        server.stop()


# ---------------------------------------------------------------- a store that changes

def test_a_store_that_grows_while_the_app_runs_is_re_read(tmp_path):
    data = tiny_split_folder(tmp_path / "data", {"train": 3, "val": 1, "test": 1})
    store = tmp_path / "s.h5"
    featx("extract", "-b", "pixels", "-d", data, "--out", store, "-q", cwd=tmp_path)
    server = Server(store, cwd=tmp_path)
    try:
        m = get_json(server, "/api/map/0/pca")
        assert m["n"] == 10 and len(m["x"]) == 10
        old = m["version"]
        get_json(server, f"/api/painting/0/0?v={old}")
        for i in range(4):
            rgb(500 + i, (40, 40)).save(data / "train" / "a" / f"new{i}.jpg")
        featx("extract", "-b", "pixels", "-d", data, "--out", store, "-q", cwd=tmp_path)
        status, _, body = request(server, f"/api/painting/0/0?v={old}")
        assert status == 409 and b"reload" in body
        state = get_json(server, "/api/state")
        assert state["stores"][0]["rows"] == 14
        m2 = get_json(server, "/api/map/0/pca")
        assert m2["n"] == 14 and m2["version"] != old and None not in m2["x"]
        ids = {r["id"] for r in get_json(server, "/api/rows/0?rows=" + ",".join(map(str, range(14))))}
        assert {f"train/a/new{i}.jpg" for i in range(4)} <= ids
    finally:
        server.stop()


# ---------------------------------------------------------------- the panes, on real paintings

def _predictions(fit: Path) -> list[dict]:
    with open(fit / "predictions.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_runs_confusion_cells_hold_the_held_out_paintings(world, world_server):
    state = get_json(world_server, "/api/state")
    assert [s["rows"] for s in state["stores"]] == [72, 72]
    (run,) = [r for r in state["runs"] if r["store"] == "0"]
    metrics = json.loads((world["fit"] / "metrics.json").read_text())
    assert run["accuracy"] == pytest.approx(metrics["accuracy"])
    c = get_json(world_server, f"/api/confusion/{run['key']}")
    assert c["matrix"] == metrics["confusion_matrix"]
    preds = {p["id"]: p for p in _predictions(world["fit"])}
    for cell, rows in c["cells"].items():
        t, p = map(int, cell.split(","))
        infos = get_json(world_server, f"/api/rows/0?rows={','.join(map(str, rows))}&v={c['version']}")
        assert len(infos) == c["matrix"][t][p]
        for info in infos:
            assert preds[info["id"]]["label"] == c["classes"][t] == info["label"]
            assert preds[info["id"]]["predicted"] == c["classes"][p]
    h = get_json(world_server, f"/api/heldout/{run['key']}")
    assert np.mean(h["correct"]) == pytest.approx(metrics["accuracy"])
    predicted = dict(zip(h["rows"], h["predicted"]))
    for cell, rows in c["cells"].items():
        assert {predicted[r] for r in rows} == {int(cell.split(",")[1])}


@pytest.mark.slow
def test_a_painting_page_has_predictions_neighbours_and_audit_flags(world, world_server):
    m = get_json(world_server, "/api/map/0/pca")
    v = m["version"]
    preds = {p["id"]: p for p in _predictions(world["fit"])}
    rows = get_json(world_server, "/api/rows/0?rows=" + ",".join(map(str, range(72))) + f"&v={v}")
    test_row = next(r for r in rows if r["id"] in preds)
    p = get_json(world_server, f"/api/painting/0/{test_row['row']}?v={v}")
    (pred,) = p["predictions"]
    assert pred["how"] == "held out"
    want = float(preds[test_row["id"]][f"p:{pred['top'][0][0]}"])
    assert pred["top"][0][1] == pytest.approx(want, abs=1e-4)
    sims = [n["similarity"] for n in p["neighbors"]]
    assert len(sims) == 12 and sims == sorted(sims, reverse=True)
    assert test_row["row"] not in [n["row"] for n in p["neighbors"]]
    assert p["audited"] is True
    with open(world["runs"] / "audit" / "least_sure.csv", newline="", encoding="utf-8") as fh:
        least = [r["id"] for r in csv.DictReader(fh)]
    row_of = {r["id"]: r["row"] for r in rows}
    flagged = get_json(world_server, f"/api/painting/0/{row_of[least[0]]}?v={v}")
    assert "least_sure" in flagged["flags"]
    audit = get_json(world_server, "/api/audit/0")
    assert set(least) <= {rows[r]["id"] for r in audit["rows"]}


@pytest.mark.slow
def test_side_by_side_matches_rows_by_id(world_server):
    match = get_json(world_server, "/api/match/0/1")
    assert match["common"] == 72
    a = get_json(world_server, "/api/rows/0?rows=" + ",".join(map(str, range(72))))
    b = get_json(world_server, "/api/rows/1?rows=" + ",".join(map(str, match["rows"])))
    assert [x["id"] for x in a] == [x["id"] for x in b]


@pytest.mark.slow
def test_an_upload_is_classified_like_featx_predict_and_finds_its_painting(world, world_server, tmp_path):
    painting = sorted((world["data"] / "test" / "claude-monet").iterdir())[0]
    rel = painting.relative_to(world["data"]).as_posix()
    run = get_json(world_server, "/api/state")["runs"][0]["key"]
    r = get_json(world_server, f"/api/classify/0?run={run}&map=pca", method="POST", body=painting.read_bytes(),
                 headers={"X-Featx": "1"})
    assert r["neighbors"][0]["id"] == rel and r["neighbors"][0]["similarity"] > 0.99
    out = subprocess.run([sys.executable, "-m", "featx", "predict", str(world["fit"]), str(painting), "--json"],
                         capture_output=True, text=True, cwd=world["root"], timeout=300)
    assert out.returncode == 0, out.stderr
    want = json.loads(out.stdout.splitlines()[0])  # one JSON object per image
    assert r["top"][0][0] == want["top"][0][0]
    assert r["top"][0][1] == pytest.approx(want["top"][0][1], abs=2e-3)
    m = get_json(world_server, "/api/map/0/pca")
    row = r["neighbors"][0]["row"]
    assert r["position"] == pytest.approx([m["x"][row], m["y"][row]], abs=0.02)
    assert not any(p.name.startswith("featx-explore-") for p in Path(os.environ.get("TMPDIR", "/tmp")).iterdir())


@pytest.mark.slow
def test_umap_is_made_in_the_background_and_kept_beside_the_store(world, world_server):
    deadline = time.monotonic() + 300
    m = get_json(world_server, "/api/map/0/umap")
    while m["x"] is None and time.monotonic() < deadline:
        assert m["status"] in ("computing", "not started"), m.get("error")
        time.sleep(2)
        m = get_json(world_server, "/api/map/0/umap")
    assert m["x"] is not None and len(m["x"]) == 72 and None not in m["x"]
    kept = list((world["store"].parent / "lite0.explore" / "maps").glob("umap-*.npz"))
    assert kept
    again = Server(world["store"], cwd=world["root"])
    try:
        m2 = get_json(again, "/api/map/0/umap")
        assert m2["source"] == "made earlier" and m2["x"] == m["x"]
    finally:
        again.stop()
