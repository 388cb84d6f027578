"""featx.report.projection_plots and featx.report.html: scatter PNGs, curves, the interactive view."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from _synth import clusters
from featx.report import projection_plots as PP
from featx.report.html import interactive_html
from helpers import assert_png


@pytest.mark.parametrize("n_classes", [2, 50])
def test_scatter_pngs(tmp_path, n_classes):
    rng = np.random.default_rng(0)
    y = rng.integers(0, n_classes, 2000)
    classes = [f"class {i}" for i in range(n_classes)]
    PP.scatter(rng.normal(size=(2000, 2)), y, classes, tmp_path / "a.png", title="t", note="showing 2,000 of 9,000")
    PP.scatter(rng.normal(size=(2000, 3)), y, classes, tmp_path / "b.png", title="t")
    for name in ("a.png", "b.png"):
        assert_png(tmp_path / name, min_side=100)
    assert len(set(PP.class_colors(n_classes))) == n_classes


def test_thumbnail_scatter_with_and_without_images(tmp_path):
    X, y = clusters(n_per_class=10)
    paths = []
    for i in range(len(y)):
        p = tmp_path / f"img{i}.png"
        if i % 2:
            Image.new("RGB", (40, 30), (200, 20 * y[i], 50)).save(p)
        paths.append(p)  # even rows: missing file -> plain dot
    PP.thumbnail_scatter(X[:, :2], y, list("abcd"), paths, tmp_path / "t.png", max_thumbs=16)
    assert_png(tmp_path / "t.png", min_side=100)
    PP.thumbnail_scatter(X[:, :2], y, list("abcd"), [tmp_path / "none.jpg"] * len(y), tmp_path / "u.png")
    assert_png(tmp_path / "u.png", min_side=100)


def test_variance_and_separability_plots(tmp_path):
    PP.variance_curve(np.array([0.5, 0.3, 0.1, 0.05]), tmp_path / "v.png")
    PP.separability_curve({2: 0.6, 10: 0.9}, tmp_path / "s.png", chance=0.25)
    assert_png(tmp_path / "v.png", min_side=100)
    assert_png(tmp_path / "s.png", min_side=100)


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.data, self._in = [], None, False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in = dict(attrs).get("id") == "featx-data"

    def handle_data(self, data):
        if self._in:
            self.data = (self.data or "") + data

    def handle_endtag(self, tag):
        self._in = False


def test_interactive_html_holds_every_point(tmp_path):
    X, y = clusters(n_per_class=30)
    ids = [f"c{c}/img</script>{i}.jpg" for i, c in enumerate(y)]  # hostile id must not end the script
    path = interactive_html({"PCA 2-D": (X[:, :2], np.arange(120), "all rows"),
                                "t-SNE 2-D": (X[:60, 2:4], np.arange(60), "sub-sampled")},
                               ids, y, list("abcd"), tmp_path / "x.html", title="demo <b>")
    text = path.read_text()
    assert "http://" not in text and "https://" not in text  # self-contained, no CDN
    parser = _Collect()
    parser.feed(text)
    assert {"html", "canvas", "script", "select"} <= set(parser.tags)
    data = json.loads(parser.data)
    assert data["ids"] == ids and data["labels"] == y.tolist()
    assert len(data["views"]["PCA 2-D"]["x"]) == 120 and len(data["views"]["t-SNE 2-D"]["index"]) == 60
    assert np.allclose(data["views"]["PCA 2-D"]["y"], X[:, 1], atol=1e-4)


def test_interactive_html_embeds_thumbnails_up_to_its_limit(tmp_path):
    import base64
    import io

    from featx.data.locate import ImageLocator

    X, y = clusters(n_per_class=30)
    (tmp_path / "img").mkdir()
    ids = [f"img/{i}.png" for i in range(120)]
    for i in range(0, 120, 2):  # odd rows have no file
        Image.fromarray(np.full((40, 100, 3), i, np.uint8)).save(tmp_path / ids[i])
    loc = ImageLocator.for_store({"data_root": str(tmp_path)}, ids)
    views = {"PCA 2-D": (X[:, :2], np.arange(120), "")}
    data = _data(interactive_html(views, ids, y, list("abcd"), tmp_path / "a.html", images=loc.find))
    assert sorted(map(int, data["thumbs"])) == list(range(0, 120, 2))
    with Image.open(io.BytesIO(base64.b64decode(data["thumbs"]["4"].split(",", 1)[1]))) as im:
        assert im.format == "JPEG" and im.size == (64, 26)
    assert data["thumb_note"] == "60 image(s) could not be read"
    limited = _data(interactive_html(views, ids, y, list("abcd"), tmp_path / "b.html", images=loc.find,
                                     max_thumbs=10))
    assert len(limited["thumbs"]) <= 10 and limited["thumb_note"].startswith("thumbnails for 10 of 120 points")
    plain = _data(interactive_html(views, ids, y, list("abcd"), tmp_path / "c.html"))
    assert plain["thumbs"] == {} and plain["thumb_note"] == ""


def _data(path) -> dict:
    parser = _Collect()
    parser.feed(path.read_text())
    return json.loads(parser.data)
