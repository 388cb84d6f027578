"""A label, id or file name is data, never markup, a formula or code (real CLI processes, real files, a real
browser): class labels ``<img src=x onerror=...>``, ``=HYPERLINK(...)``, ``a|b `c` [d](e)`` and ``$\\bad{$ 5$``, image files
``=img*.png`` and a store named ``=1+1|x|`s`.h5`` go through ``featx extract``, ``featx analyze --html`` and
``featx fit``; the HTML view is opened in headless Chromium, the CSVs read as a spreadsheet would see them and
the Markdown rendered by markdown-it (CommonMark + tables, raw HTML allowed as on GitHub)."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
from helpers import chrome, labelled_manifest

from featx.report.escape import csv_cell, md_code, md_text, script_json

FEATX = [sys.executable, "-m", "featx"]
XSS = "<img src=x onerror=document.title='PWNED'>"
FORMULA = '=HYPERLINK("https://evil.example/x","click")'
PIPE = "a|b `c` [d](e)"
MATH = "$\\bad{$ 5$"  # matplotlib mathtext: parsed, it is a fatal error in every PNG
LABELS = [XSS, FORMULA, PIPE, MATH]
STORE_NAME = "=1+1|x|`s`"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def featx(*args, cwd: Path) -> subprocess.CompletedProcess:
    r = subprocess.run([*FEATX, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    """A manifest of 32 tiny images under hostile labels and names, extracted (pixels), analysed and fitted."""
    root = tmp_path_factory.mktemp("hostile")
    manifest = labelled_manifest(root / "data", LABELS, name="=img{c}-{i}.png")
    store = root / "stores" / f"{STORE_NAME}.h5"
    featx("extract", "-b", "pixels", "-d", manifest, "--out", store, "-q", cwd=root)
    featx("analyze", store, "--transferability", "--pca", "--html", "--outliers", "--overlap", "--out",
          root / "analyze", cwd=root)
    featx("fit", store, "--clf", "softmax,knn", "--out", root / "fit", cwd=root)
    return {"analyze": root / "analyze", "fit": root / "fit", "root": root}


@pytest.mark.slow
def test_html_view_shows_an_injected_label_as_text_in_chromium(hostile, tmp_path):
    page = hostile["analyze"] / f"{STORE_NAME}.html"
    text = page.read_text(encoding="utf-8")
    assert "innerHTML" not in text and "<img" not in text  # the label is in the data, escaped as \u003cimg
    driver = chrome(tmp_path)
    try:
        driver.get(page.as_uri())
        deadline = time.time() + 2  # an onerror handler runs after the broken image fails to load: give it time
        while time.time() < deadline:
            assert driver.title != "PWNED", "a class label ran as script"
            time.sleep(0.1)
        assert driver.title == f"featx analyze: {STORE_NAME} (all rows, n={8 * len(LABELS)})"
        legend = driver.execute_script(
            "const l = document.getElementById('legend');"
            "return {text: l.textContent, entries: Array.from(l.children, e => e.textContent),"
            "        imgs: l.querySelectorAll('img').length, all_imgs: document.querySelectorAll('img').length,"
            "        views: document.getElementById('view').options.length};")
        assert legend["entries"] == [f"\u25cf {label}" for label in sorted(LABELS)]  # the script ran: one per class
        assert XSS in legend["text"] and legend["imgs"] == 0 and legend["all_imgs"] == 0
        assert legend["views"] == 1
        assert driver.execute_script("return document.querySelector('h2').textContent") == driver.title
        # hovering a point shows its id and hostile label as text, and its embedded thumbnail as an image
        driver.execute_script(
            "const cv = document.getElementById('plot'), b = cv.getBoundingClientRect();"
            "cv.dispatchEvent(new MouseEvent('mousemove', {clientX: b.left + P[0][0], clientY: b.top + P[0][1],"
            "                                               bubbles: true}));")
        deadline, tip = time.time() + 5, {}
        while time.time() < deadline:
            tip = driver.execute_script(
                "const t = document.getElementById('tip'), im = t.querySelector('img');"
                "return {shown: t.style.display, text: t.textContent, imgs: t.querySelectorAll('img').length,"
                "        width: im ? im.naturalWidth : 0, src: im ? im.src.slice(0, 23) : ''};")
            if tip["width"] > 0:
                break
            time.sleep(0.1)
        assert tip["shown"] == "block" and tip["imgs"] == 1 and tip["width"] > 0, tip
        assert tip["src"] == "data:image/jpeg;base64,"
        assert any(f"[{label}]" in tip["text"] for label in LABELS) and ".png" in tip["text"], tip
        assert driver.execute_script("return document.querySelectorAll('img').length") == 1  # only the thumbnail
        assert driver.title != "PWNED"
    finally:
        driver.quit()


def _cells(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow  # the hostile fixture runs extract, analyze and fit: ~15 s
def test_csv_cells_that_a_spreadsheet_would_run_are_written_as_text(hostile):
    out, fit = hostile["analyze"], hostile["fit"]
    tables = {p.name: _cells(p) for p in [*out.glob("*.csv"), fit / "leaderboard.csv"]}
    assert {"scores.csv", "ranking.csv", f"{STORE_NAME}-outliers.csv", "leaderboard.csv"} <= set(tables)
    for name, rows in tables.items():
        for row in rows:
            for col, cell in row.items():
                assert not cell.startswith(FORMULA_START) or NUMBER.fullmatch(cell), (name, col, cell)
    outliers = tables[f"{STORE_NAME}-outliers.csv"]
    assert {r["class"] for r in outliers} == {XSS, "'" + FORMULA, PIPE, MATH}
    assert all(r["id"].startswith("'=img") for r in outliers)
    for name in ("scores.csv", "ranking.csv", "leaderboard.csv"):
        assert {r["store"] for r in tables[name]} == {"'" + STORE_NAME}, name
    score = tables["scores.csv"][0]
    assert float(score["logme"]) < 0 and float(score["gbc"]) < 0  # negative numbers stay numbers, unquoted


class _Rendered(HTMLParser):
    """Tags, text and table rows (cell texts) of rendered Markdown."""

    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.rows: list[list[str]] = []
        self.text = ""
        self._cell = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")
            self._cell = True

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._cell = False

    def handle_data(self, data):
        self.text += data
        if self._cell:
            self.rows[-1][-1] += data


def _render(md: str) -> _Rendered:
    markdown_it = pytest.importorskip("markdown_it", reason="markdown-it-py (a dependency of rich) is missing")
    html = markdown_it.MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    parsed = _Rendered()
    parsed.feed(html)
    return parsed


@pytest.mark.slow  # the hostile fixture runs extract, analyze and fit: ~15 s
def test_markdown_tables_keep_their_columns_and_labels_stay_text(hostile):
    summary = (hostile["analyze"] / "summary.md").read_text(encoding="utf-8")
    board = (hostile["fit"] / "leaderboard.md").read_text(encoding="utf-8")
    for md, columns in ((summary, 2), (board, 13)):
        rendered = _render(md)
        assert "img" not in rendered.tags and "a" not in rendered.tags and "em" not in rendered.tags
        assert rendered.rows and all(len(row) == columns for row in rendered.rows), rendered.rows
        assert STORE_NAME in rendered.text
    summary_text = _render(summary).text
    for label in LABELS:
        assert label in summary_text  # outliers, overlap: every label shown as itself
    board_rows = _render(board).rows
    assert [row[1] for row in board_rows[1:]] == [STORE_NAME, STORE_NAME]


def test_escape_helpers():
    assert md_text("a|b `c` <i>[d](e)</i> *f* _g_\nh") == r"a\|b \`c\` \<i\>\[d\](e)\</i\> \*f\* \_g\_ h"
    assert md_text("- item") == r"\- item" and md_text("1. item") == r"1\. item" and md_text("-0.5") == "-0.5"
    assert md_code("x``y") == "```x``y```" and md_code("`a") == "`` `a ``"
    assert csv_cell("=1+1") == "'=1+1" and csv_cell("@SUM(A1)") == "'@SUM(A1)" and csv_cell("-1+2") == "'-1+2"
    assert csv_cell("-0.5") == "-0.5" and csv_cell(-0.5) == -0.5 and csv_cell("plain") == "plain"
    blob = script_json({"a": "</script><!-- \u2028 & x"})
    assert "<" not in blob and ">" not in blob and "&" not in blob and "\u2028" not in blob
    assert json.loads(blob) == {"a": "</script><!-- \u2028 & x"}
