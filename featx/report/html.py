"""The interactive view of projections: one self-contained HTML file (canvas, inline JS and data, no CDN).

Labels, ids and the title are data, never markup: the title is HTML-escaped, the data is JSON with ``<>&``
as ``\\uXXXX`` escapes (:func:`~.escape.script_json`) and the script shows it with ``textContent`` only.
Hovered points show an embedded thumbnail (a ``data:`` URI set as an ``<img>``'s ``src`` by the script).
"""

from __future__ import annotations

import base64
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..errors import DataError
from ..files import write_text
from .escape import html_text, script_json
from .projection_plots import class_colors

THUMBS = 2000
"""At most this many rows get an embedded thumbnail (about 2-3 KB each); the page says when there are more."""
THUMB_PX = 64
"""The longest side of an embedded thumbnail, in pixels."""

_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 13px sans-serif; margin: 12px; }}
#wrap {{ display: flex; gap: 12px; align-items: flex-start; }}
canvas {{ border: 1px solid #ccc; cursor: crosshair; }}
#legend div {{ cursor: pointer; white-space: nowrap; }} #legend .off {{ opacity: 0.3; }}
#tip {{ position: fixed; pointer-events: none; background: #fff; border: 1px solid #888; padding: 3px 6px;
        display: none; font: 12px monospace; }}
#tip img {{ display: block; margin-top: 3px; }}
</style></head><body>
<h2>{title}</h2>
<p>View: <select id="view"></select> <span id="note"></span> <span id="thumbnote"></span></p>
<div id="wrap"><canvas id="plot" width="900" height="720"></canvas><div id="legend"></div></div>
<div id="tip"></div>
<script type="application/json" id="featx-data">{data}</script>
<script>
const D = JSON.parse(document.getElementById("featx-data").textContent);
const cv = document.getElementById("plot"), ctx = cv.getContext("2d"), tip = document.getElementById("tip");
const sel = document.getElementById("view"), hidden = new Set();
let P = [], grid = new Map(), G = 24, tipRow = -1;
document.getElementById("thumbnote").textContent = D.thumb_note || "";
for (const name of Object.keys(D.views)) {{ const o = document.createElement("option"); o.text = name; sel.add(o); }}
const leg = document.getElementById("legend");
D.classes.forEach((c, i) => {{
  const el = document.createElement("div"), dot = document.createElement("span");
  dot.style.color = D.colors[i]; dot.textContent = "\\u25cf";
  el.append(dot, " " + c);  // a text node: a label is shown, never parsed as markup
  el.onclick = () => {{ hidden.has(i) ? hidden.delete(i) : hidden.add(i); el.classList.toggle("off"); draw(); }};
  leg.appendChild(el);
}});
function layout() {{
  const v = D.views[sel.value], m = 20;
  document.getElementById("note").textContent = v.note || "";
  const xs = v.x, ys = v.y;
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;  // no spread: 100k args overflow
  for (let j = 0; j < xs.length; j++) {{
    x0 = Math.min(x0, xs[j]); x1 = Math.max(x1, xs[j]); y0 = Math.min(y0, ys[j]); y1 = Math.max(y1, ys[j]); }}
  const sx = (cv.width - 2 * m) / ((x1 - x0) || 1), sy = (cv.height - 2 * m) / ((y1 - y0) || 1);
  P = v.index.map((r, j) => [m + (xs[j] - x0) * sx, cv.height - m - (ys[j] - y0) * sy, r]);
  grid = new Map();
  P.forEach((p, j) => {{ const k = Math.floor(p[0] / G) + "," + Math.floor(p[1] / G);
    if (!grid.has(k)) grid.set(k, []); grid.get(k).push(j); }});
  draw();
}}
function draw() {{
  ctx.clearRect(0, 0, cv.width, cv.height);
  const r = P.length > 20000 ? 1.2 : P.length > 2000 ? 2 : 3.5;
  for (const [x, y, row] of P) {{
    const c = D.labels[row]; if (hidden.has(c)) continue;
    ctx.fillStyle = D.colors[c]; ctx.globalAlpha = 0.75; ctx.beginPath(); ctx.arc(x, y, r, 0, 6.283); ctx.fill();
  }}
  ctx.globalAlpha = 1;
}}
cv.onmousemove = (e) => {{
  const b = cv.getBoundingClientRect(), x = e.clientX - b.left, y = e.clientY - b.top;
  let best = -1, bd = 64;
  for (let gx = Math.floor(x / G) - 1; gx <= Math.floor(x / G) + 1; gx++)
    for (let gy = Math.floor(y / G) - 1; gy <= Math.floor(y / G) + 1; gy++)
      for (const j of grid.get(gx + "," + gy) || []) {{
        const p = P[j], d = (p[0] - x) ** 2 + (p[1] - y) ** 2;
        if (d < bd && !hidden.has(D.labels[p[2]])) {{ bd = d; best = j; }}
      }}
  if (best < 0) {{ tip.style.display = "none"; tipRow = -1; return; }}
  const row = P[best][2];
  if (row !== tipRow) {{
    tipRow = row;
    tip.textContent = `${{D.ids[row]}}  [${{D.classes[D.labels[row]]}}]`;
    const src = D.thumbs[row];
    if (src) {{ const im = document.createElement("img"); im.src = src; tip.appendChild(im); }}  // a data: URI
  }}
  tip.style.left = (e.clientX + 12) + "px"; tip.style.top = (e.clientY + 12) + "px"; tip.style.display = "block";
}};
cv.onmouseleave = () => {{ tip.style.display = "none"; tipRow = -1; }};
sel.onchange = layout;
layout();
</script></body></html>
"""


def interactive_html(views: dict[str, tuple[np.ndarray, np.ndarray, str]], ids: Sequence[str],
                     labels: np.ndarray, classes: Sequence[str], path: str | Path, *, title: str = "featx",
                     images: Callable[[int], object] | None = None, max_thumbs: int = THUMBS) -> Path:
    """One self-contained HTML file (canvas + inline JS, points as inline JSON, no CDN): a view
    selector over ``views`` (name -> (coords n x 2, row index, note)), hover shows id and label,
    clicking a legend entry hides a class.

    ``images(row)``: the image of a row (a file, a tar member or None, as ``FeatureSet.image_source``);
    given, hovering shows a thumbnail (``THUMB_PX`` px JPEG embedded as a ``data:`` URI) for up to
    ``max_thumbs`` (``THUMBS``, 2,000) of the rows shown, evenly spaced over them; the page says when
    there were more, or when images could not be read.
    """
    colors = ["#%02x%02x%02x" % tuple(int(255 * v) for v in c[:3]) for c in class_colors(len(classes))]
    shown = np.unique(np.concatenate([np.asarray(index, dtype=np.int64) for _, index, _ in views.values()]
                                     or [np.zeros(0, np.int64)]))
    thumbs, thumb_note = _thumbnails(images, shown, max_thumbs) if images is not None else ({}, "")
    data = {
        "classes": [str(c) for c in classes], "colors": colors, "ids": [str(i) for i in ids],
        "labels": [int(v) for v in labels],
        "views": {name: {"x": np.round(xy[:, 0], 4).tolist(), "y": np.round(xy[:, 1], 4).tolist(),
                         "index": [int(i) for i in index], "note": note}
                  for name, (xy, index, note) in views.items()},
        "thumbs": thumbs, "thumb_note": thumb_note,
    }
    return write_text(Path(path), _HTML.format(title=html_text(title), data=script_json(data)))


def _thumbnails(images: Callable[[int], object], rows: np.ndarray, limit: int) -> tuple[dict[str, str], str]:
    """``{row: data URI}`` of up to ``limit`` of ``rows`` (evenly spaced), and a note for the page."""
    from .thumbs import jpeg_thumbnail  # PIL only when thumbnails are made
    picked = rows if len(rows) <= limit else rows[np.unique(np.linspace(0, len(rows) - 1, limit).astype(int))]

    def uri(row: int) -> str | None:
        try:
            data = jpeg_thumbnail(images(row), THUMB_PX, quality=75)
        except DataError:
            return None
        return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")

    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        made = dict(zip((str(int(r)) for r in picked), pool.map(uri, (int(r) for r in picked))))
    thumbs = {r: u for r, u in made.items() if u is not None}
    notes = []
    if len(picked) < len(rows):
        notes.append(f"thumbnails for {len(picked):,} of {len(rows):,} points (at most {limit:,} are embedded)")
    if len(thumbs) < len(picked):
        notes.append(f"{len(picked) - len(thumbs):,} image(s) could not be read")
    return thumbs, "; ".join(notes)
