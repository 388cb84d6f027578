"""featx explore in a real headless Chromium (Selenium), clicked through as a reader would: the map draws every
painting, hovering shows a thumbnail, shift-drag selects, a click opens the painting page (prediction,
neighbours, audit), the runs tab's confusion cells list their paintings, the side-by-side maps light up the same
paintings, an uploaded painting finds its own copy, and a hostile class label stays text. One server per store
set for the module; each test loads the page afresh. The README's screenshot comes from here
(``FEATX_WRITE_DOCS_IMG=1``)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import urllib.request
from pathlib import Path

import pytest
from helpers import ExploreServer, chrome

STATIC = Path(__file__).resolve().parents[2] / "featx" / "explore" / "static"
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img" / "explore.png"
XSS = "<img src=x onerror=document.title='PWNED'>"
TITLE = "featx explore"
WAIT = 30  # seconds: page loads and maps; an upload loads the network once (more)


# ---------------------------------------------------------------- quick: the page's own files


def test_static_files_build_no_markup_and_load_nothing_from_elsewhere():
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    js = (STATIC / "explore.js").read_text(encoding="utf-8")
    css = (STATIC / "explore.css").read_text(encoding="utf-8")
    for name, text in (("index.html", html), ("explore.js", js), ("explore.css", css)):
        for bad in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                    "http://", "https://", "//cdn", "@import"):
            assert bad not in text, (name, bad)
    # the CSP allows only the app's own script and style: no inline script, handler or style in the page
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.DOTALL)
    assert scripts == [(' src="/static/explore.js" defer', "")]
    assert not re.search(r"\son[a-z]+\s*=", html) and "style=" not in html and "<style" not in html
    assert not re.search(r"\b(src|href)=\"(?!/static/|data:,)", html)
    # every element the script looks up by id is in the page (a renamed id would fail only at run time)
    ids = set(re.findall(r'\bid="([^"]+)"', html))
    wanted = set(re.findall(r'\$\("([a-z-]+)"\)', js))
    assert wanted and wanted <= ids, wanted - ids


# ---------------------------------------------------------------- the browser, the servers and helpers


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    driver = chrome(tmp_path_factory.mktemp("chrome"))
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def hostile_server(hostile_world):
    s = ExploreServer(hostile_world["store"], "--runs", hostile_world["runs"], cwd=hostile_world["root"])
    yield s
    s.stop()


def get_json(server: ExploreServer, path: str):
    with urllib.request.urlopen(server.base + path, timeout=60) as r:
        return json.loads(r.read())


def wait(driver, condition, timeout: float = WAIT, what: str = ""):
    """``condition(driver)`` (a function, or a JS expression to return) until truthy, or fail saying what."""
    from selenium.common.exceptions import (
        StaleElementReferenceException,
        TimeoutException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    fn = condition if callable(condition) else (lambda d: d.execute_script(f"return ({condition})"))
    try:
        return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(fn)
    except TimeoutException:
        line = driver.execute_script("return document.getElementById('status').textContent")
        raise AssertionError(f"waited {timeout} s for {what or condition}; the page's status line: {line!r}") from None


def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def open_page(driver, server: ExploreServer) -> None:
    driver.get(server.url)
    wait(driver, "window.featx && window.featx.mapReady()", what="the map")
    assert driver.title == TITLE


def points(driver, view: str = "map") -> dict[int, tuple[float, float]]:
    """Where each row is drawn on a map, in canvas pixels."""
    got = js(driver, "const f = window.featx, v = arguments[0], out = {};"
                     "for (let i = 0; i < f.rows(v); i++) { const p = f.pointOn(v, i); if (p) out[i] = p; }"
                     "return out;", view)
    return {int(k): (v[0], v[1]) for k, v in got.items()}


def to_client(driver, canvas: str, x: float, y: float) -> tuple[int, int]:
    """A canvas pixel as whole page coordinates (what a mouse can be moved to)."""
    cx, cy = js(driver, "const cv = document.getElementById(arguments[0]), b = cv.getBoundingClientRect();"
                        "return [b.left + cv.clientLeft + arguments[1] * cv.clientWidth / cv.width,"
                        "        b.top + cv.clientTop + arguments[2] * cv.clientHeight / cv.height];", canvas, x, y)
    return round(cx), round(cy)


def to_canvas(driver, canvas: str, cx: int, cy: int) -> tuple[float, float]:
    x, y = js(driver, "const cv = document.getElementById(arguments[0]), b = cv.getBoundingClientRect();"
                      "return [(arguments[1] - b.left - cv.clientLeft) * cv.width / cv.clientWidth,"
                      "        (arguments[2] - b.top - cv.clientTop) * cv.height / cv.clientHeight];", canvas, cx, cy)
    return x, y


def mouse(driver, *steps, shift: bool = False) -> None:
    """W3C actions: ("move", x, y), ("down",), ("up",) in page coordinates, with Shift held throughout."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.keys import Keys

    ab = ActionBuilder(driver)
    keys, ptr = ab.key_action, ab.pointer_action
    if shift:
        keys.key_down(Keys.SHIFT)
        ptr.pause(0)
    for step in steps:
        if step[0] == "move":
            ptr.move_to_location(step[1], step[2])
        else:
            (ptr.pointer_down if step[0] == "down" else ptr.pointer_up)()
        keys.pause(0)  # one tick per pointer step, so Shift stays down for all of them
    if shift:
        keys.key_up(Keys.SHIFT)
        ptr.pause(0)
    ab.perform()


def isolated(pts: dict[int, tuple[float, float]], rows=None, gap: float = 14.0) -> list[int]:
    """Rows drawn at least ``gap`` pixels from every other row (a hover or click there finds that row)."""
    return [i for i in (rows if rows is not None else pts) if i in pts and all(
        (pts[i][0] - q[0]) ** 2 + (pts[i][1] - q[1]) ** 2 >= gap ** 2 for j, q in pts.items() if j != i)]


def select_box(driver, canvas: str, view: str, frac) -> set[int]:
    """Shift-drag a box over ``frac`` (x0, y0, x1, y1 as fractions of the canvas) with its edges moved off the
    points; returns the rows inside it, computed here from where the page says they are drawn."""
    pts = points(driver, view)
    w, h = js(driver, "const c = document.getElementById(arguments[0]); return [c.width, c.height]", canvas)
    edges = [frac[0] * w, frac[1] * h, frac[2] * w, frac[3] * h]
    for k in range(4):
        while any(abs(p[k % 2] - edges[k]) < 4 for p in pts.values()):
            edges[k] += 3 if k < 2 else -3
    (ax, ay), (bx, by) = to_client(driver, canvas, edges[0], edges[1]), to_client(driver, canvas, edges[2], edges[3])
    mouse(driver, ("move", ax, ay), ("down",), ("move", (ax + bx) // 2, (ay + by) // 2), ("move", bx, by), ("up",),
          shift=True)
    (x0, y0), (x1, y1) = to_canvas(driver, canvas, ax, ay), to_canvas(driver, canvas, bx, by)
    return {i for i, (x, y) in pts.items() if x0 <= x <= x1 and y0 <= y <= y1}


def grid_rows(driver, grid: str) -> list[int]:
    return [int(r) for r in js(driver, f"return Array.from(document.querySelectorAll('#{grid} .thumb'), "
                                       "t => t.dataset.row)")]


def predictions(fit: Path) -> dict[str, dict]:
    with open(fit / "predictions.csv", newline="", encoding="utf-8") as fh:
        return {r["id"]: r for r in csv.DictReader(fh)}


def images_loaded(selector: str) -> str:
    return (f"Array.from(document.querySelectorAll('{selector}')).length > 0 && "
            f"Array.from(document.querySelectorAll('{selector}')).every(i => i.complete && i.naturalWidth > 0)")


# ---------------------------------------------------------------- the map


@pytest.mark.slow
def test_map_draws_every_painting(browser, world_server):
    open_page(browser, world_server)
    assert js(browser, "return window.featx.rowsDrawn()") == 72
    pts = points(browser)
    assert len(pts) == 72
    # each row's point is painted on the canvas, and the canvas as shown on screen is not blank
    alpha = js(browser, "const c = document.getElementById('map-canvas').getContext('2d');"
                        "return arguments[0].map(p => c.getImageData(Math.round(p[0]), Math.round(p[1]), 1, 1).data[3]);",
               [pts[i] for i in range(72)])
    assert min(alpha) > 0, alpha
    import numpy as np
    from PIL import Image

    shot = np.asarray(Image.open(io.BytesIO(browser.find_element("id", "map-canvas").screenshot_as_png)).convert("RGB"))
    coloured = int((shot.min(axis=2) < 200).sum())  # the white canvas with its grey border has none
    assert coloured > 72 * 10, coloured
    legend = js(browser, "return Array.from(document.getElementById('map-legend').children, e => e.textContent)")
    assert legend == ["alfred-sisley (36)", "claude-monet (36)"]
    assert "72 rows" in js(browser, "return document.getElementById('map-note').textContent")


@pytest.mark.slow
def test_hovering_a_point_shows_its_thumbnail_and_id(browser, world_server):
    open_page(browser, world_server)
    pts = points(browser)
    row = isolated(pts)[0]
    (info,) = get_json(world_server, f"/api/rows/0?rows={row}")
    mouse(browser, ("move", *to_client(browser, "map-canvas", *pts[row])))
    wait(browser, "!document.getElementById('tip').hidden && " + images_loaded("#tip-img"), what="the tooltip")
    wait(browser, f"document.getElementById('tip-text').textContent.includes({json.dumps(info['id'])})",
         what="the id in the tooltip")
    text = js(browser, "return document.getElementById('tip-text').textContent")
    assert text == f"{info['id']}\n{info['label']} · {info['split']}"
    assert js(browser, "return document.getElementById('tip-img').src").startswith(f"{world_server.base}/api/thumb/0/{row}?")
    # moving off the map hides it again
    mouse(browser, ("move", 5, 5))
    wait(browser, "document.getElementById('tip').hidden", what="the tooltip hidden")


@pytest.mark.slow
def test_shift_drag_lists_the_paintings_inside_the_box(browser, world_server):
    open_page(browser, world_server)
    inside = select_box(browser, "map-canvas", "map", (0.05, 0.05, 0.5, 0.7))
    assert 3 <= len(inside) < 72
    wait(browser, f"document.querySelectorAll('#grid .thumb').length === {len(inside)}", what="the selection grid")
    assert sorted(grid_rows(browser, "grid")) == sorted(inside)
    assert sorted(js(browser, "return window.featx.highlighted('map')")) == sorted(inside)
    assert js(browser, "return document.getElementById('grid-title').textContent") == \
        f"Selected: {len(inside)} painting(s)"
    # the grid's captions are the rows' labels, and its thumbnails load
    infos = {i["row"]: i for i in get_json(world_server, f"/api/rows/0?rows={','.join(map(str, sorted(inside)))}")}
    caps = js(browser, "return Array.from(document.querySelectorAll('#grid .thumb'), "
                       "t => [Number(t.dataset.row), t.title, t.querySelector('.cap').textContent])")
    assert all(infos[r]["id"] == title and infos[r]["label"] == label for r, title, label in caps)
    js(browser, "document.querySelector('#grid .thumb').scrollIntoView()")
    wait(browser, images_loaded("#grid .thumb:first-child img"), what="a grid thumbnail")


@pytest.mark.slow
def test_clicking_a_point_opens_its_painting_page(browser, world_server, world, tmp_path):
    open_page(browser, world_server)
    pts = points(browser)
    preds = predictions(world["fit"])
    audit = get_json(world_server, "/api/audit/0")
    flagged = dict(zip(audit["rows"], audit["flags"]))
    infos = {i["row"]: i for i in get_json(world_server, f"/api/rows/0?rows={','.join(map(str, sorted(pts)))}")}
    # a held-out painting the audit flagged, drawn apart from the others
    row = next(r for r in isolated(pts, sorted(flagged)) if infos[r]["id"] in preds)
    pred, info = preds[infos[row]["id"]], infos[row]
    mouse(browser, ("move", *to_client(browser, "map-canvas", *pts[row])), ("down",), ("up",))
    wait(browser, "!document.getElementById('painting').hidden && "
                  "document.querySelectorAll('#neighbors .thumb').length === 12", what="the painting page")
    assert js(browser, "return document.getElementById('painting-id').textContent") == info["id"]
    facts = js(browser, "return Array.from(document.querySelectorAll('#painting-facts dd'), e => e.textContent)")
    assert facts == [info["label"], info["split"], str(row), "lite0.h5"]
    # the fit run's prediction: held out, its best class and probability as in predictions.csv
    table = js(browser, "const t = document.querySelector('#painting-preds table.pred');"
                        "return [t.caption.textContent, Array.from(t.rows, r => Array.from(r.cells, c => c.textContent))]")
    assert table[0].startswith("softmax (") and table[0].endswith("held out"), table
    assert table[1][0] == [pred["predicted"], f"{100 * float(pred['confidence']):.1f}%"]
    assert sorted(r[0] for r in table[1]) == ["alfred-sisley", "claude-monet"]
    # the audit's flags of this painting, each with its note
    flags = js(browser, "return document.getElementById('painting-flags').textContent")
    for name, note in flagged[row].items():
        assert name in flags and note in flags, (flags, flagged[row])
    # twelve neighbours, the painting not among them, their thumbnails and the painting itself load
    near = grid_rows(browser, "neighbors")
    assert len(set(near)) == 12 and row not in near
    wait(browser, images_loaded("#painting-img") + " && " + images_loaded("#neighbors img"), what="the images")
    assert js(browser, "return document.getElementById('painting-img').naturalWidth") >= 200
    # the README's picture: a painting page, its prediction, audit and neighbours (FEATX_WRITE_DOCS_IMG=1)
    out = DOCS_IMG if os.environ.get("FEATX_WRITE_DOCS_IMG") == "1" else tmp_path / "explore.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(out))
    from PIL import Image

    with Image.open(out) as im:
        assert im.size == (1300, 900)
        small = im.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(out, optimize=True)  # 128 colours: the committed figure stays under 200 KB (tests/test_docs.py)
    # Escape closes it
    from selenium.webdriver.common.keys import Keys

    browser.find_element("tag name", "body").send_keys(Keys.ESCAPE)
    wait(browser, "document.getElementById('painting').hidden", what="the painting page closed")


# ---------------------------------------------------------------- runs and confusion cells


@pytest.mark.slow
def test_runs_tab_confusion_cells_list_their_paintings(browser, world_server, world):
    open_page(browser, world_server)
    browser.find_element("css selector", "#tabs button[data-tab=runs]").click()
    wait(browser, "document.querySelectorAll('#runs-table tr.run').length === 1", what="the leaderboard")
    metrics = json.loads((world["fit"] / "metrics.json").read_text())
    cells = js(browser, "return Array.from(document.querySelectorAll('#runs-table tr.run td'), c => c.textContent)")
    assert cells[:4] == ["fit-softmax", "lite0.h5", "efficientnet_lite0", "softmax"]
    assert cells[4].startswith(f"{metrics['accuracy']:.3f} ± ")

    def click_run(d):  # the tab re-reads the runs: the row may be redrawn under the click
        d.find_element("css selector", "#runs-table tr.run").click()
        return d.find_elements("css selector", "#confusion button")

    wait(browser, click_run, what="the confusion matrix")
    buttons = js(browser, "return Array.from(document.querySelectorAll('#confusion button'), "
                          "b => [b.dataset.cell, Number(b.textContent)])")
    matrix = metrics["confusion_matrix"]
    assert {cell: n for cell, n in buttons} == {f"{t},{p}": matrix[t][p] for t in range(2) for p in range(2)}
    classes = ["alfred-sisley", "claude-monet"]
    for cell, n in buttons:
        browser.find_element("css selector", f"#confusion button[data-cell='{cell}']").click()
        t, p = map(int, cell.split(","))
        title = f"true {classes[t]}, predicted {classes[p]}: {n} painting(s)"
        wait(browser, f"document.getElementById('cell-title').textContent === {json.dumps(title)} && "
                      f"document.querySelectorAll('#cell-grid .thumb').length === {n}", what=title)
        labels = js(browser, "return Array.from(document.querySelectorAll('#cell-grid .thumb .cap:nth-child(2)'), "
                             "c => c.textContent)")
        assert labels == [classes[t]] * n


# ---------------------------------------------------------------- side by side


@pytest.mark.slow
def test_side_by_side_selection_lights_up_the_same_paintings(browser, world_server):
    open_page(browser, world_server)
    browser.find_element("css selector", "#tabs button[data-tab=compare]").click()
    wait(browser, "window.featx.ready('a') && window.featx.ready('b')", what="the two maps")
    assert js(browser, "return [document.getElementById('cmp-a').value, document.getElementById('cmp-b').value]") \
        == ["0", "1"]
    assert js(browser, "return document.getElementById('cmp-note').textContent") == "72 paintings in both stores"
    ids_a = [i["id"] for i in get_json(world_server, f"/api/rows/0?rows={','.join(map(str, range(72)))}")]
    ids_b = [i["id"] for i in get_json(world_server, f"/api/rows/1?rows={','.join(map(str, range(72)))}")]
    for canvas, view, other in (("cmp-canvas-a", "a", "b"), ("cmp-canvas-b", "b", "a")):
        inside = select_box(browser, canvas, view, (0.05, 0.05, 0.55, 0.6))
        assert 3 <= len(inside) < 72
        wait(browser, f"(window.featx.highlighted({json.dumps(view)}) || []).length === {len(inside)}",
             what=f"the selection on {view}")
        ids = {(ids_a if view == "a" else ids_b)[r] for r in inside}
        lit = js(browser, f"return window.featx.highlighted({json.dumps(other)})")
        assert {(ids_a if other == "a" else ids_b)[r] for r in lit} == ids and len(lit) == len(inside)
        wait(browser, f"document.querySelectorAll('#cmp-grid .thumb').length === {len(inside)}", what="the grid")
        assert {ids_a[r] for r in grid_rows(browser, "cmp-grid")} == ids
        # on the other map the lit points are drawn opaque over the dimmed rest
        pts = points(browser, other)
        alpha = js(browser, "const c = document.getElementById(arguments[0]).getContext('2d');"
                            "return arguments[1].map(p => c.getImageData(Math.round(p[0]), Math.round(p[1]), 1, 1).data[3]);",
                   f"cmp-canvas-{other}", [pts[r] for r in lit])
        assert min(alpha) == 255, alpha
        far = [r for r in isolated(pts, gap=10) if r not in lit and all(
            (pts[r][0] - pts[q][0]) ** 2 + (pts[r][1] - pts[q][1]) ** 2 > 100 for q in lit)]
        dim = js(browser, "const c = document.getElementById(arguments[0]).getContext('2d');"
                          "return arguments[1].map(p => c.getImageData(Math.round(p[0]), Math.round(p[1]), 1, 1).data[3]);",
                 f"cmp-canvas-{other}", [pts[r] for r in far])
        assert far and max(dim) < 128, dim


# ---------------------------------------------------------------- classify an uploaded painting


@pytest.mark.slow
def test_an_uploaded_painting_finds_its_own_copy_first(browser, world_server, world, tmp_path):
    painting = min((world["data"] / "test" / "claude-monet").iterdir())
    upload = tmp_path / "my painting.jpg"
    shutil.copyfile(painting, upload)
    own_id = painting.relative_to(world["data"]).as_posix()
    open_page(browser, world_server)
    browser.find_element("css selector", "#tabs button[data-tab=classify]").click()
    assert js(browser, "return document.getElementById('cls-run').value") != ""  # the store's fit run by default
    browser.find_element("id", "cls-file").send_keys(str(upload))
    wait(browser, "document.querySelectorAll('#cls-grid .thumb').length > 0", timeout=180, what="the upload's answer")
    result = js(browser, "const r = document.getElementById('cls-result'), t = r.querySelector('table');"
                         "return [t.caption.textContent, Array.from(t.rows, x => Array.from(x.cells, c => c.textContent)),"
                         "        r.dataset.top]")
    assert result[0] == "Top classes"
    assert sorted(r[0] for r in result[1]) == ["alfred-sisley", "claude-monet"]
    assert result[2] == result[1][0][0]
    assert sum(float(r[1].rstrip("%")) for r in result[1]) == pytest.approx(100, abs=0.2)
    cards = js(browser, "return Array.from(document.querySelectorAll('#cls-grid .thumb'), "
                        "t => [t.title, t.querySelectorAll('.cap')[1].textContent])")
    assert len(cards) == 12
    assert cards[0][0] == own_id and re.fullmatch(r"test · (1\.000|0\.99\d)", cards[0][1]), cards[0]
    sims = [float(c[1].split(" · ")[1]) for c in cards]
    assert sims == sorted(sims, reverse=True) and sims[1] < sims[0]
    assert js(browser, "return document.getElementById('cls-nn-title').textContent") == \
        "Nearest paintings in the store (12)"
    # the upload is placed on the map, its neighbours lit
    wait(browser, "window.featx.ready('classify')", what="the classify map")
    assert len(js(browser, "return window.featx.highlighted('classify')")) == 12
    wait(browser, images_loaded("#cls-result img.preview"), what="the preview")


# ---------------------------------------------------------------- a hostile label


@pytest.mark.slow
def test_a_hostile_label_stays_text_everywhere(browser, hostile_server):
    open_page(browser, hostile_server)

    def safe(where: str):
        assert browser.title == TITLE, f"a class label ran as script ({where})"
        found = js(browser, "return [document.querySelectorAll('img[src=\"x\"]').length,"
                            "        document.querySelectorAll('b').length]")
        assert found == [0, 0], where

    legend = js(browser, "return document.getElementById('map-legend').textContent")
    assert XSS in legend and "<img" in legend
    safe("legend")
    # the tooltip of a painting under that label
    pts = points(browser)
    infos = get_json(hostile_server, f"/api/rows/0?rows={','.join(map(str, sorted(pts)))}")
    row = next(i["row"] for i in infos if i["label"] == XSS and i["row"] in isolated(pts, gap=8))
    mouse(browser, ("move", *to_client(browser, "map-canvas", *pts[row])))
    wait(browser, f"document.getElementById('tip-text').textContent.includes({json.dumps(XSS)}) && "
                  "document.getElementById('tip-text').textContent.includes('<b>img')", what="the tooltip")
    safe("tooltip")
    # its painting page: the label in the facts and the prediction table, the file name in the title
    mouse(browser, ("down",), ("up",))
    wait(browser, "!document.getElementById('painting').hidden && "
                  "document.getElementById('painting-preds').querySelector('table') !== null", what="painting page")
    page = js(browser, "return [document.getElementById('painting-id').textContent,"
                       "        document.getElementById('painting-facts').textContent,"
                       "        document.getElementById('painting-preds').textContent]")
    assert page[0].startswith("<b>img") and XSS in page[1] and XSS in page[2], page
    wait(browser, images_loaded("#painting-img"), what="the painting")
    safe("painting page")
    # the confusion matrix's headers and a cell's grid
    from selenium.webdriver.common.keys import Keys

    browser.find_element("tag name", "body").send_keys(Keys.ESCAPE)
    browser.find_element("css selector", "#tabs button[data-tab=runs]").click()

    def click_run(d):
        d.find_element("css selector", "#runs-table tr.run").click()
        return d.find_elements("css selector", "#confusion button")

    wait(browser, click_run, what="the confusion matrix")
    assert XSS in js(browser, "return document.getElementById('confusion').textContent")
    safe("confusion matrix")
