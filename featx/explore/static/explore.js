// featx explore: the page. Every label, id and path from the server is shown with textContent (or as an
// attribute set by the DOM API), never parsed as markup; no inline script or style is needed (see the CSP).
"use strict";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2",
  "#c7c7c7", "#dbdb8d", "#9edae5"];
const GREY = "#cfcfcf";
const GRID_MAX = 200;  // thumbnails shown for a selection
const PIXEL_DRAW = 20000;  // above this many points the map is drawn as pixels (a 100k-point redraw in ~10 ms)

const $ = (id) => document.getElementById(id);
const S = { state: null, maps: {}, heldout: {}, audit: {}, tab: "map" };

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v;
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else if (k === "data") for (const [dk, dv] of Object.entries(v)) e.dataset[dk] = dv;
    else e[k] = v;
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

function status(text, bad) {
  const s = $("status");
  s.textContent = text || "";
  s.classList.toggle("bad", !!bad);
}

class Stale extends Error {}

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ headers: { "X-Featx": "1" }, credentials: "same-origin" }, opts || {}));
  let body = null;
  try { body = await r.json(); } catch (e) { body = { error: `${r.status} ${r.statusText}` }; }
  if (r.status === 409) { staleReload(body.error); throw new Stale(body.error); }
  if (!r.ok) throw new Error(body.error || `${r.status}`);
  return body;
}

function staleReload(msg) {
  status(`${msg || "a store changed"}: maps reloaded`, true);
  S.maps = {}; S.heldout = {}; S.audit = {};
  loadState().then(() => { if (S.tab === "map") showMap(); if (S.tab === "compare") showCompare(); });
}

function thumbURL(store, row, version) { return `/api/thumb/${store}/${row}?v=${encodeURIComponent(version)}`; }

// ---------------------------------------------------------------- the map widget

class MapView {
  constructor(canvas) {
    this.cv = canvas; this.ctx = canvas.getContext("2d");
    this.data = null; this.color = null; this.palette = [GREY]; this.hidden = new Set();
    this.highlight = null; this.marker = null;
    this.k = 1; this.tx = 0; this.ty = 0; this.cells = new Map();
    this.onHover = null; this.onClick = null; this.onSelect = null;
    let drag = null;
    canvas.addEventListener("mousedown", (e) => {
      const p = this.mouse(e);
      drag = { x: p[0], y: p[1], tx: this.tx, ty: this.ty, box: e.shiftKey, moved: false };
    });
    window.addEventListener("mousemove", (e) => {
      const p = this.mouse(e);
      if (!drag) { if (e.target === canvas) this.hover(p, e); return; }
      drag.moved = drag.moved || Math.abs(p[0] - drag.x) + Math.abs(p[1] - drag.y) > 3;
      if (drag.box) { this.draw(); this.rect(drag.x, drag.y, p[0], p[1]); }
      else { this.tx = drag.tx + p[0] - drag.x; this.ty = drag.ty + p[1] - drag.y; this.draw(); }
    });
    window.addEventListener("mouseup", (e) => {
      if (!drag) return;
      const p = this.mouse(e), d = drag; drag = null;
      if (d.box && d.moved) { this.draw(); if (this.onSelect) this.onSelect(this.inside(d.x, d.y, p[0], p[1])); }
      else if (!d.moved && e.target === canvas) { const i = this.nearest(p); if (i >= 0 && this.onClick) this.onClick(i); }
    });
    canvas.addEventListener("mouseleave", () => { if (this.onHover) this.onHover(-1); });
    canvas.addEventListener("wheel", (e) => {
      e.preventDefault();
      const p = this.mouse(e), f = e.deltaY < 0 ? 1.25 : 0.8;
      this.tx = p[0] - (p[0] - this.tx) * f; this.ty = p[1] - (p[1] - this.ty) * f; this.k *= f; this.draw();
    }, { passive: false });
  }
  mouse(e) {  // canvas pixels: from the content box (inside the border), scaled to the canvas's own size
    const cv = this.cv, b = cv.getBoundingClientRect();
    return [(e.clientX - b.left - cv.clientLeft) * cv.width / cv.clientWidth,
      (e.clientY - b.top - cv.clientTop) * cv.height / cv.clientHeight];
  }
  setData(d) {
    this.data = d; this.k = 1; this.tx = 0; this.ty = 0;
    const n = d.n; this.sx = new Float32Array(n); this.sy = new Float32Array(n); this.ok = new Uint8Array(n);
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < n; i++) {
      const x = d.x[i], y = d.y[i];
      if (x === null || y === null) continue;
      this.ok[i] = 1;
      if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
    }
    const m = 16, w = this.cv.width - 2 * m, h = this.cv.height - 2 * m;
    const s = Math.min(w / ((x1 - x0) || 1), h / ((y1 - y0) || 1));
    this.base = { x0, y0, s, ox: m + (w - s * (x1 - x0)) / 2, oy: m + (h - s * (y1 - y0)) / 2 };
    for (let i = 0; i < n; i++) if (this.ok[i]) {
      this.sx[i] = this.base.ox + (d.x[i] - x0) * s; this.sy[i] = this.cv.height - this.base.oy - (d.y[i] - y0) * s;
    }
    this.marker = null; this.highlight = null;
  }
  toScreenXY(x, y) {
    const b = this.base;
    return [(b.ox + (x - b.x0) * b.s) * this.k + this.tx, (this.cv.height - b.oy - (y - b.y0) * b.s) * this.k + this.ty];
  }
  screen(i) { return [this.sx[i] * this.k + this.tx, this.sy[i] * this.k + this.ty]; }
  setColors(color, palette, names) {
    this.color = color; this.palette = palette; this.names = names; this.hidden = new Set();
    const groups = palette.map(() => []);
    for (let i = 0; i < color.length; i++) if (this.ok[i]) groups[color[i]].push(i);
    // grey first, so coloured points are drawn over it
    this.groups = groups.map((g, c) => [c, g]).sort((a, b) => (palette[a[0]] === GREY ? -1 : 0) - (palette[b[0]] === GREY ? -1 : 0));
  }
  draw() {
    const ctx = this.ctx, W = this.cv.width, H = this.cv.height;
    ctx.clearRect(0, 0, W, H);
    this.cells = null;  // the hover index, rebuilt on the next hover
    if (!this.data || !this.groups) return;
    const n = this.data.n, r = n > 20000 ? 1.5 : n > 3000 ? 2.5 : 3.5;
    const dim = this.highlight !== null;
    if (n > PIXEL_DRAW) this.drawPixels(dim ? 0x48 : 0xd0);
    else {
      ctx.globalAlpha = dim ? 0.18 : 0.8;
      for (const [c, idx] of this.groups) {
        if (this.hidden.has(c)) continue;
        ctx.fillStyle = this.palette[c];
        for (const i of idx) {
          const x = this.sx[i] * this.k + this.tx, y = this.sy[i] * this.k + this.ty;
          if (x < -r || y < -r || x > W + r || y > H + r) continue;
          ctx.fillRect(x - r, y - r, 2 * r, 2 * r);
        }
      }
    }
    if (dim) {
      ctx.globalAlpha = 1;
      for (const i of this.highlight) {
        if (!this.ok[i]) continue;
        const [x, y] = this.screen(i);
        ctx.fillStyle = this.palette[this.color[i]]; ctx.fillRect(x - r - 1, y - r - 1, 2 * r + 2, 2 * r + 2);
        ctx.strokeStyle = "#000"; ctx.lineWidth = 1; ctx.strokeRect(x - r - 1, y - r - 1, 2 * r + 2, 2 * r + 2);
      }
    }
    ctx.globalAlpha = 1;
    if (this.marker) {
      const [x, y] = this.toScreenXY(this.marker[0], this.marker[1]);
      ctx.fillStyle = "#000"; ctx.beginPath(); ctx.arc(x, y, 9, 0, 6.283); ctx.fill();
      ctx.fillStyle = "#ffd500"; ctx.beginPath(); ctx.arc(x, y, 6, 0, 6.283); ctx.fill();
    }
  }
  drawPixels(alpha) {
    // many points: 3x3 squares written straight into the pixels (one putImageData, no path per point)
    const W = this.cv.width, H = this.cv.height, img = this.ctx.createImageData(W, H);
    const buf = new Uint32Array(img.data.buffer);
    for (const [c, idx] of this.groups) {
      if (this.hidden.has(c)) continue;
      const hex = parseInt(this.palette[c].slice(1), 16);
      const col = ((alpha << 24) | ((hex & 0xff) << 16) | (hex & 0xff00) | (hex >> 16)) >>> 0;  // RGBA, little-endian
      for (const i of idx) {
        const x = (this.sx[i] * this.k + this.tx) | 0, y = (this.sy[i] * this.k + this.ty) | 0;
        if (x < 1 || y < 1 || x >= W - 1 || y >= H - 1) continue;
        const o = y * W + x;
        buf[o - W - 1] = buf[o - W] = buf[o - W + 1] = buf[o - 1] = buf[o] = buf[o + 1] =
          buf[o + W - 1] = buf[o + W] = buf[o + W + 1] = col;
      }
    }
    this.ctx.putImageData(img, 0, 0);
  }
  index() {
    // screen cells of 12 px -> the visible points in them, for hovering and clicking
    const cell = 12, W = this.cv.width, H = this.cv.height, cells = new Map();
    for (const [c, idx] of this.groups || []) {
      if (this.hidden.has(c)) continue;
      for (const i of idx) {
        const x = this.sx[i] * this.k + this.tx, y = this.sy[i] * this.k + this.ty;
        if (x < 0 || y < 0 || x > W || y > H) continue;
        const key = ((x / cell) | 0) * 100000 + ((y / cell) | 0);
        let list = cells.get(key); if (!list) cells.set(key, list = []); list.push(i);
      }
    }
    return cells;
  }
  rect(x0, y0, x1, y1) {
    const ctx = this.ctx; ctx.strokeStyle = "#36c"; ctx.lineWidth = 1; ctx.setLineDash([4, 3]);
    ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0)); ctx.setLineDash([]);
  }
  inside(x0, y0, x1, y1) {
    const lx = Math.min(x0, x1), hx = Math.max(x0, x1), ly = Math.min(y0, y1), hy = Math.max(y0, y1), out = [];
    for (let i = 0; i < this.data.n; i++) {
      if (!this.ok[i] || this.hidden.has(this.color[i])) continue;
      const [x, y] = this.screen(i);
      if (x >= lx && x <= hx && y >= ly && y <= hy) out.push(i);
    }
    return out;
  }
  nearest(p) {
    if (!this.cells) this.cells = this.index();
    const cell = 12, cx = (p[0] / cell) | 0, cy = (p[1] / cell) | 0;
    let best = -1, bd = 100;
    for (let gx = cx - 1; gx <= cx + 1; gx++) for (let gy = cy - 1; gy <= cy + 1; gy++) {
      for (const i of this.cells.get(gx * 100000 + gy) || []) {
        const [x, y] = this.screen(i), d = (x - p[0]) ** 2 + (y - p[1]) ** 2;
        if (d < bd) { bd = d; best = i; }
      }
    }
    return best;
  }
  hover(p, e) { if (this.onHover) this.onHover(this.nearest(p), e); }
}

// ---------------------------------------------------------------- shared pieces

function thumbCard(store, version, info, extra, onOpen) {
  const card = el("div", { class: "thumb", title: info.id, data: { row: info.row } },
    el("img", { src: thumbURL(store, info.row, version), alt: "", loading: "lazy" }),
    el("div", { class: "cap" }, info.label), el("div", { class: "cap" }, extra || info.split));
  card.addEventListener("click", () => (onOpen || openPainting)(store, info.row, version));
  return card;
}

async function fillGrid(gridEl, titleEl, store, version, rows, title, extraOf) {
  gridEl.replaceChildren();
  titleEl.textContent = `${title}: ${rows.length} painting(s)` + (rows.length > GRID_MAX ? `, the first ${GRID_MAX} shown` : "");
  const shown = rows.slice(0, GRID_MAX);
  if (!shown.length) return;
  const infos = await api(`/api/rows/${store}?rows=${shown.join(",")}&v=${encodeURIComponent(version)}`);
  for (const info of infos) gridEl.append(thumbCard(store, version, info, extraOf ? extraOf(info) : null));
}

function storeOptions(select, keep) {
  const prev = select.value;
  select.replaceChildren(...S.state.stores.map((s) => el("option", { value: s.key }, `${s.name} (${s.rows} rows)`)));
  if (keep && [...select.options].some((o) => o.value === prev)) select.value = prev;
}

function methodOptions(select) {
  const prev = select.value || "pca";
  select.replaceChildren(...["pca", "umap"].map((m) => el("option", { value: m }, m.toUpperCase())));
  select.value = prev;
}

async function getMap(store, method) {
  const key = `${store}/${method}`;
  let m = S.maps[key];
  if (m && m.x) return m;
  m = await api(`/api/map/${store}/${method}`);
  if (m.x) S.maps[key] = m;
  return m;
}

async function loadState() {
  S.state = await api("/api/state");
  storeOptions($("map-store"), true); storeOptions($("cls-store"), true);
  storeOptions($("cmp-a"), true); storeOptions($("cmp-b"), true);
  if (S.state.stores.length > 1 && $("cmp-b").value === $("cmp-a").value) $("cmp-b").value = S.state.stores[1].key;
  methodOptions($("map-method")); methodOptions($("cmp-method"));
  colorOptions(); runOptions(); renderRuns();
}

// ---------------------------------------------------------------- the map tab

const mapView = new MapView($("map-canvas"));
const tip = $("tip");

function colorOptions() {
  const sel = $("map-color"), prev = sel.value, store = $("map-store").value;
  const opts = [el("option", { value: "class" }, "class"), el("option", { value: "split" }, "split")];
  for (const r of S.state.runs.filter((r) => r.store === store))
    opts.push(el("option", { value: `run:${r.key}` }, `right / wrong: ${r.classifier} (${r.run})`));
  const st = S.state.stores.find((s) => s.key === store);
  if (st && st.audit) opts.push(el("option", { value: "audit" }, "audit flag"));
  sel.replaceChildren(...opts);
  if ([...sel.options].some((o) => o.value === prev)) sel.value = prev;
}

async function colorsFor(store, m, by) {
  const n = m.n;
  if (by === "split") return { color: Uint8Array.from(m.splits), palette: m.split_names.map((_, i) => PALETTE[(i + 2) % 20]), names: m.split_names };
  if (by.startsWith("run:")) {
    const run = by.slice(4);
    const h = S.heldout[run] || (S.heldout[run] = await api(`/api/heldout/${run}`));
    const color = new Uint8Array(n);  // 0: not held out
    h.at = new Map();
    h.rows.forEach((r, j) => { color[r] = h.correct[j] ? 1 : 2; h.at.set(r, j); });
    return { color, palette: [GREY, "#2ca02c", "#d62728"], names: ["not held out", "right", "wrong"], heldout: h };
  }
  if (by === "audit") {
    const a = S.audit[store] || (S.audit[store] = await api(`/api/audit/${store}`));
    const names = ["not flagged", ...S.state.flags];
    const color = new Uint8Array(n);
    a.rows.forEach((r, j) => { const f = S.state.flags.findIndex((x) => x in a.flags[j]); color[r] = f + 1; });
    return { color, palette: [GREY, "#d62728", "#ff7f0e", "#9467bd", "#17becf", "#8c564b"], names, audit: a };
  }
  const color = new Uint16Array(n);
  m.labels.forEach((l, i) => { color[i] = l < 0 ? m.classes.length : l; });
  return { color, palette: [...m.classes.map((_, i) => PALETTE[i % 20]), GREY], names: [...m.classes, "unlabelled"] };
}

function legend(box, view, c) {
  box.replaceChildren();
  const counts = new Array(c.names.length).fill(0);
  for (let i = 0; i < c.color.length; i++) if (view.ok[i]) counts[c.color[i]]++;
  c.names.forEach((name, i) => {
    if (!counts[i]) return;
    const item = el("div", {}, el("span", { class: "sw" }), `${name} (${counts[i]})`);
    item.firstChild.style.background = c.palette[i];
    item.addEventListener("click", () => {
      view.hidden.has(i) ? view.hidden.delete(i) : view.hidden.add(i); item.classList.toggle("off"); view.draw();
    });
    box.append(item);
  });
}

let mapTimer = null;
async function showMap() {
  const store = $("map-store").value, method = $("map-method").value, by = $("map-color").value || "class";
  clearTimeout(mapTimer);
  const m = await getMap(store, method);
  if (!m.x) {
    $("map-note").textContent = m.status === "failed" ? `${method.toUpperCase()} failed: ${m.error}` :
      `${method.toUpperCase()} is being computed (minutes for a large store); showing it when ready`;
    if (m.status !== "failed") mapTimer = setTimeout(showMap, 3000);
    return;
  }
  $("map-note").textContent = `${m.n} rows` + (m.source ? `; ${m.source}` : "");
  if (mapView.data !== m) mapView.setData(m);
  const c = await colorsFor(store, m, by);
  mapView.colors = c;
  mapView.setColors(c.color, c.palette, c.names);
  legend($("map-legend"), mapView, c);
  mapView.draw();
  status(`${S.state.stores.find((s) => s.key === store).name}: ${m.n} paintings`);
}

let hoverRow = -1;
mapView.onHover = (i, e) => {
  if (i < 0) { tip.hidden = true; hoverRow = -1; return; }
  const m = mapView.data, store = $("map-store").value;
  tip.style.left = `${e.clientX + 14}px`; tip.style.top = `${e.clientY + 14}px`;
  tip.hidden = false;
  if (i === hoverRow) return;
  hoverRow = i;
  $("tip-img").src = thumbURL(store, i, m.version);
  const label = m.labels[i] >= 0 ? m.classes[m.labels[i]] : "unlabelled";
  const c = mapView.colors;
  let extra = m.split_names[m.splits[i]];
  if (c && c.audit) extra = c.names[c.color[i]];
  if (c && c.heldout) {
    const j = c.heldout.at.get(i);
    extra = j === undefined ? "not held out" : `predicted ${c.heldout.classes[c.heldout.predicted[j]]} (${c.names[c.color[i]]})`;
  }
  $("tip-text").textContent = `row ${i} · ${label} · ${extra}`;
  api(`/api/rows/${store}?rows=${i}&v=${encodeURIComponent(m.version)}`).then((r) => {
    if (hoverRow === i) $("tip-text").textContent = `${r[0].id}\n${label} · ${extra}`;
  }).catch(() => {});
};
mapView.onClick = (i) => openPainting($("map-store").value, i, mapView.data.version);
mapView.onSelect = (rows) => {
  const m = mapView.data, store = $("map-store").value, c = mapView.colors;
  mapView.highlight = rows.length ? rows : null; mapView.draw();
  fillGrid($("grid"), $("grid-title"), store, m.version, rows, "Selected",
    c && (c.heldout || c.audit) ? (info) => c.names[c.color[info.row]] : null).catch(report);
};

// ---------------------------------------------------------------- the painting page

async function openPainting(store, row, version) {
  const p = await api(`/api/painting/${store}/${row}?v=${encodeURIComponent(version)}`);
  const panel = $("painting");
  panel.hidden = false; panel.dataset.store = store; panel.dataset.row = row;
  $("painting-img").src = `/api/image/${store}/${row}?v=${encodeURIComponent(p.version)}`;
  $("painting-cam").hidden = true; $("painting-cam").removeAttribute("src");
  $("painting-id").textContent = p.id;
  const facts = $("painting-facts");
  facts.replaceChildren();
  for (const [k, v] of [["label", p.label || "unlabelled"], ["split", p.split], ["row", p.row], ["store", p.store_name]])
    facts.append(el("dt", {}, k), el("dd", {}, String(v)));
  const preds = $("painting-preds");
  preds.replaceChildren();
  if (!p.predictions.length) preds.append(el("p", { class: "note" }, "No fit run of this store (run featx fit, then reload)."));
  for (const pr of p.predictions) {
    const t = el("table", { class: "pred" }, el("caption", {}, `${pr.classifier} (${pr.run}): ${pr.how}`));
    for (const [cls, prob] of pr.top) {
      const bar = el("span", { class: "bar" }); bar.style.width = `${Math.round(prob * 120)}px`;
      t.append(el("tr", {}, el("td", {}, cls), el("td", {}, `${(100 * prob).toFixed(1)}%`, bar)));
    }
    preds.append(t);
  }
  const flags = $("painting-flags");
  flags.replaceChildren();
  const names = Object.keys(p.flags);
  if (!p.audited) flags.append(el("p", { class: "note" }, "No audit of this store (run featx audit)."));
  else if (!names.length) flags.append(el("p", { class: "note" }, "No audit flag."));
  for (const f of names) flags.append(el("div", {}, el("span", { class: "flag" }, f), " ", p.flags[f]));
  const camCtl = $("painting-cam-ctl");
  camCtl.replaceChildren();
  if (p.cam_runs.length) {
    const sel = el("select", {}, ...p.cam_runs.map((k) => el("option", { value: k }, k)));
    const btn = el("button", { on: { click: () => {
      status("computing the class activation map (a few seconds on CPU)");
      const img = $("painting-cam");
      img.onload = () => { img.hidden = false; status("class activation map: Grad-CAM of the predicted class"); };
      img.onerror = () => status("the class activation map could not be computed", true);
      img.src = `/api/cam/${sel.value}/${row}?v=${encodeURIComponent(p.version)}`;
    } } }, "Show class activation map");
    camCtl.append(el("h3", {}, "Where the model looked"), sel, " ", btn);
  }
  const nn = $("neighbors");
  nn.replaceChildren(...p.neighbors.map((n) => thumbCard(store, p.version, n, `${n.split} · ${n.similarity.toFixed(3)}`)));
  panel.scrollTop = 0;
}
$("painting-close").addEventListener("click", () => { $("painting").hidden = true; });
document.addEventListener("keydown", (e) => { if (e.key === "Escape") $("painting").hidden = true; });

// ---------------------------------------------------------------- runs and confusion matrices

function renderRuns() {
  const t = $("runs-table");
  t.replaceChildren(el("tr", {}, ...["run", "store", "backbone", "classifier", "accuracy", "macro F1", "eval"].map((h) => el("th", {}, h))));
  if (!S.state.runs.length) { t.append(el("tr", {}, el("td", { colSpan: 7 }, "No fit run of the opened stores under the runs folder."))); return; }
  for (const r of S.state.runs) {
    const acc = r.accuracy === null || r.accuracy === undefined ? "" : `${r.accuracy.toFixed(3)} ± ${(r.accuracy_se || 0).toFixed(3)}`;
    const row = el("tr", { class: "run", data: { run: r.key } }, el("td", {}, r.run), el("td", {}, r.store_name),
      el("td", {}, r.backbone), el("td", {}, r.classifier), el("td", {}, acc),
      el("td", {}, r.macro_f1 === null || r.macro_f1 === undefined ? "" : r.macro_f1.toFixed(3)), el("td", {}, r.eval));
    row.addEventListener("click", () => { for (const x of t.querySelectorAll("tr")) x.classList.remove("sel"); row.classList.add("sel"); showConfusion(r.key).catch(report); });
    t.append(row);
  }
}

async function showConfusion(run) {
  const c = await api(`/api/confusion/${run}`);
  const box = $("confusion");
  const max = Math.max(1, ...c.matrix.flat());
  const t = el("table", {}, el("caption", {}, `${c.classifier} on ${c.store_name}: held-out rows (${c.n}), rows true, columns predicted`));
  t.append(el("tr", {}, el("th", {}, "true \\ predicted"), ...c.classes.map((n) => el("th", {}, n))));
  c.matrix.forEach((row, i) => {
    const tr = el("tr", {}, el("th", {}, c.classes[i]));
    row.forEach((count, j) => {
      const b = el("button", { data: { cell: `${i},${j}` } }, String(count));
      const a = count / max;
      b.style.background = i === j ? `rgba(44,160,44,${0.1 + 0.6 * a})` : count ? `rgba(214,39,40,${0.15 + 0.6 * a})` : "#f6f6f6";
      b.addEventListener("click", () => {
        fillGrid($("cell-grid"), $("cell-title"), c.store, c.version, c.cells[`${i},${j}`] || [],
          `true ${c.classes[i]}, predicted ${c.classes[j]}`).catch(report);
      });
      tr.append(el("td", {}, b));
    });
    t.append(tr);
  });
  box.replaceChildren(t);
  $("cell-grid").replaceChildren(); $("cell-title").textContent = "";
}

// ---------------------------------------------------------------- side by side

const cmpA = new MapView($("cmp-canvas-a")), cmpB = new MapView($("cmp-canvas-b"));
let match = null;

async function showCompare() {
  const a = $("cmp-a").value, b = $("cmp-b").value, method = $("cmp-method").value;
  const [ma, mb] = [await getMap(a, method), await getMap(b, method)];
  if (!ma.x || !mb.x) { $("cmp-note").textContent = `${method.toUpperCase()} is being computed`; setTimeout(showCompare, 3000); return; }
  match = await api(`/api/match/${a}/${b}`);
  const back = new Int32Array(mb.n).fill(-1);
  match.rows.forEach((rb, ra) => { if (rb >= 0) back[rb] = ra; });
  match.back = back;
  $("cmp-note").textContent = `${match.common} paintings in both stores`;
  for (const [view, m] of [[cmpA, ma], [cmpB, mb]]) {
    view.setData(m);
    const c = await colorsFor(null, m, "class");
    view.setColors(c.color, c.palette, c.names); view.draw();
    view.onClick = (i) => openPainting(view === cmpA ? a : b, i, m.version);
    view.onHover = (i, e) => {
      if (i < 0) { tip.hidden = true; return; }
      tip.hidden = false; tip.style.left = `${e.clientX + 14}px`; tip.style.top = `${e.clientY + 14}px`;
      $("tip-img").src = thumbURL(view === cmpA ? a : b, i, m.version);
      $("tip-text").textContent = `row ${i} · ${m.labels[i] >= 0 ? m.classes[m.labels[i]] : ""}`;
    };
  }
  cmpA.onSelect = (rows) => linked(rows, rows.map((r) => match.rows[r]).filter((r) => r >= 0), a, ma);
  cmpB.onSelect = (rows) => linked(rows.map((r) => match.back[r]).filter((r) => r >= 0), rows, a, ma);
}

function linked(rowsA, rowsB, a, ma) {
  cmpA.highlight = rowsA.length ? rowsA : null; cmpB.highlight = rowsB.length ? rowsB : null;
  cmpA.draw(); cmpB.draw();
  fillGrid($("cmp-grid"), $("cmp-title"), a, ma.version, rowsA, "Selected (shown from the left store)").catch(report);
}

// ---------------------------------------------------------------- classify a painting

const clsView = new MapView($("cls-canvas"));

function runOptions() {
  const store = $("cls-store").value, sel = $("cls-run"), prev = sel.value;
  const runs = S.state.runs.filter((r) => r.store === store);
  sel.replaceChildren(el("option", { value: "" }, runs.length ? "(neighbours only)" : "(no fit run: neighbours only)"),
    ...runs.map((r) => el("option", { value: r.key }, `${r.classifier} (${r.run}, acc ${r.accuracy === null ? "?" : r.accuracy.toFixed(3)})`)));
  // keep the reader's choice ("neighbours only" too, once picked); otherwise the store's best run
  if ([...sel.options].some((o) => o.value === prev) && (prev || sel.dataset.picked)) sel.value = prev;
  else if (runs.length) sel.value = runs[0].key;
}

async function classify(file) {
  const store = $("cls-store").value, run = $("cls-run").value;
  const out = $("cls-result");
  out.replaceChildren(el("p", {}, `classifying ${file.name} ...`));
  status("embedding the image with the store's backbone (the first time loads the network)");
  const r = await api(`/api/classify/${store}?run=${encodeURIComponent(run)}&map=pca`, { method: "POST", body: file, headers: { "X-Featx": "1", "Content-Type": "application/octet-stream" } });
  const preview = el("img", { alt: "", class: "preview" }); preview.src = URL.createObjectURL(file); preview.width = 200;
  const t = el("table", {}, el("caption", {}, r.run ? "Top classes" : "No model chosen: nearest paintings only"));
  for (const [cls, p] of r.top) {
    const bar = el("span", { class: "bar" }); bar.style.width = `${Math.round(p * 120)}px`;
    t.append(el("tr", {}, el("td", {}, cls), el("td", {}, `${(100 * p).toFixed(1)}%`, bar)));
  }
  out.replaceChildren(el("div", { class: "pwrap" }, preview, t));
  out.dataset.top = r.top.length ? r.top[0][0] : "";
  $("cls-nn-title").textContent = `Nearest paintings in the store (${r.neighbors.length})`;
  $("cls-grid").replaceChildren(...r.neighbors.map((n) => thumbCard(store, r.version, n, `${n.split} · ${n.similarity.toFixed(3)}`)));
  const m = await getMap(store, r.method);
  if (m.x) {
    clsView.setData(m);
    const c = await colorsFor(store, m, "class");
    clsView.setColors(c.color, c.palette, c.names);
    clsView.marker = r.position; clsView.highlight = r.neighbors.map((n) => n.row);
    clsView.onClick = (i) => openPainting(store, i, m.version);
    clsView.draw();
  }
  status(`${file.name}: done`);
}

const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files.length) classify(e.dataTransfer.files[0]).catch(report);
});
$("cls-file").addEventListener("change", (e) => { if (e.target.files.length) classify(e.target.files[0]).catch(report); });

// ---------------------------------------------------------------- tabs and start

function report(err) { if (!(err instanceof Stale)) status(String(err.message || err), true); }

function showTab(name) {
  S.tab = name;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("on", b.dataset.tab === name);
  for (const s of document.querySelectorAll(".tab")) s.classList.toggle("on", s.id === `tab-${name}`);
  if (name === "map") showMap().catch(report);
  if (name === "compare") showCompare().catch(report);
  if (name === "runs") api("/api/rescan", { method: "POST" }).then((st) => { S.state = st; renderRuns(); colorOptions(); runOptions(); }).catch(report);
}
for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));
$("map-store").addEventListener("change", () => { colorOptions(); mapView.highlight = null; showMap().catch(report); });
$("map-method").addEventListener("change", () => showMap().catch(report));
$("map-color").addEventListener("change", () => showMap().catch(report));
for (const id of ["cmp-a", "cmp-b", "cmp-method"]) $(id).addEventListener("change", () => showCompare().catch(report));
$("cls-store").addEventListener("change", runOptions);
$("cls-run").addEventListener("change", () => { $("cls-run").dataset.picked = "1"; });

// for tests and scripts: where a row is drawn on a map (canvas pixels), what is loaded and highlighted
const VIEWS = { map: mapView, a: cmpA, b: cmpB, classify: clsView };
const onView = (v, row) => (v.data && v.ok[row] ? v.screen(row) : null);
window.featx = {
  pointOnMap: (row) => onView(mapView, row),
  mapReady: () => !!(mapView.data && mapView.groups),
  rowsDrawn: () => (mapView.data ? mapView.ok.reduce((a, b) => a + b, 0) : 0),
  // milliseconds to draw the map again, as each pan or zoom step does (the median of `times` redraws)
  redrawMs: (times) => {
    const ms = [];
    for (let i = 0; i < (times || 9); i++) { const t = performance.now(); mapView.draw(); ms.push(performance.now() - t); }
    return ms.sort((a, b) => a - b)[ms.length >> 1];
  },
  // the same for the side-by-side maps ("a", "b") and the classify map: ready, a row's point, the highlighted rows
  ready: (view) => !!(VIEWS[view].data && VIEWS[view].groups),
  rows: (view) => (VIEWS[view].data ? VIEWS[view].data.n : 0),
  pointOn: (view, row) => onView(VIEWS[view], row),
  highlighted: (view) => (VIEWS[view].highlight ? Array.from(VIEWS[view].highlight) : null),
};

loadState().then(() => showMap()).catch(report);
