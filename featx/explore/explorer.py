"""What the app can be asked, as plain Python: the opened stores, their maps, runs, paintings and uploads.

:class:`Explorer` answers every request of the page with dicts and bytes (the server only routes and
guards); a painting is always named by its store's key and row number in the view the page drew, never by
a path.
"""

from __future__ import annotations

import io
import tempfile
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError, OptionError
from .collection import Collection, NotFound, Stale
from .maps import METHODS, Maps
from .runs import FLAGS, FitRunInfo, find_audit, find_fit_runs, top_five

MAX_UPLOAD_BYTES = 20 << 20  # an image dropped on the page: larger ones are refused before decoding
MAX_ROWS_PER_REQUEST = 5000


class Explorer:
    """The app's state: one :class:`Collection` per store (keys ``0``, ``1``, ...) and the fit runs of them.

    Parameters
    ----------
    stores : list of Path
        The ``.h5`` stores to show.
    runs_dir : Path, optional
        Where ``featx fit``/``featx analyze``/``featx audit`` runs are (``runs/``); searched again on
        :meth:`rescan`.
    """

    def __init__(self, stores: Sequence[Path], runs_dir: Path | None = None):
        if not stores:
            raise OptionError("no store given: pass one or more .h5 stores written by featx extract")
        self.runs_dir = Path(runs_dir).resolve() if runs_dir is not None else None
        self.collections = [Collection(Path(p), str(i)) for i, p in enumerate(stores)]
        self._lock = threading.Lock()
        self._maps: dict[str, Maps] = {}
        self.runs: list[FitRunInfo] = []
        self._cam_lock = threading.Lock()
        self.rescan()

    # ---------------------------------------------------------------- lookup

    def collection(self, key: str, version: str | None = None) -> Collection:
        """The collection ``key``, re-read if its store changed; :class:`Stale` when ``version`` is old."""
        c = next((c for c in self.collections if c.key == key), None)
        if c is None:
            raise NotFound(f"store {key!r}: not one of the opened stores")
        c.check(version)
        return c

    def maps(self, c: Collection) -> Maps:
        with self._lock:
            m = self._maps.get(c.key)
            if m is None or m.version != c.version:
                m = self._maps[c.key] = Maps(c, self.runs_dir)
            return m

    def run(self, key: str) -> FitRunInfo:
        r = next((r for r in self.runs if r.key == key), None)
        if r is None:
            raise NotFound(f"run {key!r}: no such fit run")
        r.collection.check()
        return r

    def warm(self) -> None:
        """Read every store's features and make its PCA map now (the server calls this in a thread as it
        starts), so the first page does not wait for them; a failure is left for the page's request to report."""
        for c in self.collections:
            try:
                self.maps(c).get("pca")
                c.vectors()  # a cached map needs no features: the neighbour search does
            except Exception:  # noqa: BLE001  (reported by the request that needs the map)
                pass

    def rescan(self) -> None:
        """Look for fit runs again (after a ``featx fit`` while the app runs)."""
        self.runs = find_fit_runs(self.runs_dir, self.collections)

    # ---------------------------------------------------------------- the page's requests

    def state(self) -> dict:
        """The stores, the runs and, per store, its maps' status and audit counts."""
        for c in self.collections:
            c.check()
        stores = []
        for c in self.collections:
            audit = find_audit(self.runs_dir, c)
            stores.append({**c.summary(), "maps": self.maps(c).status(), "methods": list(METHODS),
                           "audit": audit.counts() if audit else None,
                           "runs": [r.key for r in self.runs if r.collection is c]})
        return {"stores": stores, "runs": [r.summary(self.runs_dir) for r in self.runs], "flags": list(FLAGS)}

    def map(self, key: str, method: str) -> dict:
        """Coordinates, labels and splits of every row (``x``/``y`` are None while the map is being made)."""
        if method not in METHODS:
            raise OptionError(f"map {method!r}: use {', '.join(METHODS)}")
        c = self.collection(key)
        maps = self.maps(c)
        xy = maps.get(method)
        split_names = sorted(set(c.splits.tolist()))
        split_index = {s: i for i, s in enumerate(split_names)}
        out = {"store": c.key, "version": c.version, "method": method, "status": maps.status()[method],
               "error": maps.errors.get(method), "source": maps.source.get(method), "n": len(c),
               "classes": c.classes, "labels": c.labels.tolist(), "split_names": split_names,
               "splits": [split_index[s] for s in c.splits.tolist()], "x": None, "y": None}
        if xy is not None:
            finite = np.isfinite(xy).all(axis=1)
            out["x"] = [round(float(v), 4) if f else None for v, f in zip(xy[:, 0], finite)]
            out["y"] = [round(float(v), 4) if f else None for v, f in zip(xy[:, 1], finite)]
        return out

    def rows(self, key: str, rows: Sequence[int], version: str | None) -> list[dict]:
        """Id, label and split of several rows (a grid of a selection)."""
        c = self.collection(key, version)
        if len(rows) > MAX_ROWS_PER_REQUEST:
            raise OptionError(f"at most {MAX_ROWS_PER_REQUEST} rows per request")
        return [c.describe(c.row(int(r))) for r in rows]

    def painting(self, key: str, row: int, version: str | None, k: int = 12) -> dict:
        """One painting: id, label, split, each fit run's prediction, neighbours and audit flags."""
        c = self.collection(key, version)
        row = c.row(row)
        audit = find_audit(self.runs_dir, c)
        runs = [r for r in self.runs if r.collection is c]
        return {**c.describe(row), "store": c.key, "version": c.version, "store_name": c.path.name,
                "predictions": [r.prediction(row) for r in runs],
                "neighbors": c.neighbors(row=row, k=k),
                "flags": audit.flags.get(row, {}) if audit else {}, "audited": audit is not None,
                "cam_runs": [r.key for r in runs if str(r.metrics.get("classifier")) in ("softmax", "linearsvc", "mlp")]}

    def held_out(self, run: str) -> dict:
        """Rows a run held out and whether it got each right (for colouring the map)."""
        r = self.run(run)
        h = r.held_out()
        c = r.collection
        if h is None:
            return {"run": run, "store": c.key, "version": c.version, "rows": [], "correct": [], "predicted": [],
                    "note": "no predictions.csv in this run: fit it again to see its held-out rows"}
        return {"run": run, "store": c.key, "version": c.version, "rows": h.rows.tolist(),
                "correct": (h.y_true == h.y_pred).tolist(), "predicted": h.y_pred.tolist(), "classes": r.classes,
                "source": h.source}

    def confusion(self, run: str) -> dict:
        r = self.run(run)
        got = r.confusion()
        if got is None:
            raise DataError(f"run {r.path.name}: no held-out predictions (no predictions.csv, and its evaluation "
                            "was cross-validation); fit it again with this featx")
        return {**r.summary(self.runs_dir), **got, "run": run, "store": r.collection.key,
                "version": r.collection.version}

    def audit(self, key: str) -> dict:
        """Per flagged row, its flags (``FLAGS``) and notes."""
        c = self.collection(key)
        a = find_audit(self.runs_dir, c)
        if a is None:
            return {"store": key, "version": c.version, "rows": [], "flags": [], "folder": None}
        rows = sorted(a.flags)
        return {"store": key, "version": c.version, "rows": rows, "flags": [a.flags[r] for r in rows],
                "folder": a.path.name}

    def match(self, a: str, b: str) -> dict:
        """For each row of store ``a``, the row of store ``b`` holding the same id (-1 if none)."""
        ca, cb = self.collection(a), self.collection(b)
        return {"a": a, "b": b, "version_a": ca.version, "version_b": cb.version,
                "rows": [cb.row_of.get(i, -1) for i in ca.ids.tolist()],
                "common": int(sum(i in cb.row_of for i in ca.ids.tolist()))}

    def thumbnail(self, key: str, row: int, version: str | None) -> bytes:
        return self.collection(key, version).thumbnail(row)

    def image(self, key: str, row: int, version: str | None) -> bytes:
        return self.collection(key, version).image(row)

    # ---------------------------------------------------------------- heavy work: torch on demand

    def cam(self, run: str, row: int, version: str | None, method: str = "gradcam") -> bytes:
        """A PNG of the painting with the run's class activation map over it (Grad-CAM family)."""
        from ..look.explain import ExplainOptions, explain_images

        r = self.run(run)
        c = r.collection
        c.check(version)
        source = c.source(row)
        with tempfile.TemporaryDirectory(prefix="featx-explore-") as tmp, self._cam_lock:
            path = source if isinstance(source, Path) else _spill(source.open().read(), Path(tmp))
            e = explain_images(r.path, [path], ExplainOptions(method=method), progress=False)[0]
        return _overlay_png(e.image, e.map)

    def classify(self, key: str, data: bytes, run: str | None, method: str = "pca", k: int = 12) -> dict:
        """An uploaded image: the run's top classes, its nearest paintings in the store and its place on the map.

        The bytes stay in a temporary folder that is removed before this returns; they are decoded by
        featx's reader with its size limits, and the model is the run's ``model.skops`` (no pickle).
        """
        from ..data.images import ImageReadError, load_rgb
        from ..learn.predict import embed_for_model

        if len(data) > MAX_UPLOAD_BYTES:
            raise DataError(f"the image is {len(data) >> 20} MiB; featx explore takes images up to "
                            f"{MAX_UPLOAD_BYTES >> 20} MiB")
        if not data:
            raise DataError("empty upload: drop an image file on the page")
        c = self.collection(key)
        with tempfile.TemporaryDirectory(prefix="featx-explore-") as tmp:
            path = _spill(data, Path(tmp))
            try:
                load_rgb(path)  # the bomb limits and a clear reason before any model work
            except ImageReadError as exc:
                raise DataError(f"the upload is not an image featx can read ({exc})") from None
            X, keep, failed = embed_for_model([c.store.fingerprint], [path])
        if not keep:
            raise DataError(f"the upload could not be embedded ({failed[0][1] if failed else 'unknown reason'})")
        vector = X[0]
        neighbors = c.neighbors(vector=vector, k=k)
        top = []
        if run:
            r = self.run(run)
            if r.collection is not c:
                raise OptionError(f"run {run} was fitted on {r.collection.path.name}, not on {c.path.name}")
            top = top_five(r.model().proba(vector[None, :])[0], r.classes)
        maps = self.maps(c)
        if maps.get(method) is None:
            method = "pca"
            maps.get(method)
        return {"store": c.key, "version": c.version, "top": top, "run": run, "neighbors": neighbors,
                "method": method, "position": maps.place(vector, method, neighbors)}


def _spill(data: bytes, folder: Path) -> Path:
    path = folder / "upload"
    path.write_bytes(data)
    return path


def _overlay_png(image: np.ndarray, heat: np.ndarray) -> bytes:
    """The painting with a jet-coloured map blended over it, as PNG bytes."""
    from matplotlib import colormaps
    from PIL import Image

    colored = (colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255).astype(np.uint8)
    blend = (0.55 * image.astype(np.float32) + 0.45 * colored.astype(np.float32)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(blend).save(buf, "PNG")
    return buf.getvalue()


__all__ = ["Explorer", "Stale", "MAX_UPLOAD_BYTES"]
