"""One store opened by ``featx explore``: its rows, neighbours, images and thumbnails, re-read when it changes.

A :class:`Collection` holds one consistent view of a store (:class:`featx.Store`): the ids, labels and splits
of its rows and, once asked, their normalised features for the neighbour search. Every request first calls
:meth:`Collection.check`, which stats the file; when it changed, the view moves to the rows committed now and
everything computed from the old rows is dropped. The page names the view it drew (:attr:`version`), so a
request about rows of an older view is refused (:class:`Stale`) rather than answered from other rows.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np

from ..data.images import ImageReadError, load_rgb
from ..data.locate import ImageLocator
from ..errors import DataError, StoreError
from ..look.similarity import Vectors, top_k
from ..report.thumbs import ThumbCache
from ..store.handle import Store, StoreChangedError

IMAGE_SIDE = 1024  # the painting page's image: re-encoded JPEG, long side at most this
THUMB_SIDE = 160


class Stale(Exception):
    """A request named rows of a view the store has since replaced (the page reloads its map)."""


class NotFound(DataError):
    """No such store, run or row, or an image the app will not serve (missing, or outside the data root)."""


def _version(store: Store, stat: tuple) -> str:
    """The view's name: the file (its inode: ``--overwrite`` writes a new one), its generation and rows."""
    return f"{stat[0]}.{store.generation}.{len(store)}"


def sidecar(path: Path) -> Path:
    """The folder beside a store where explore keeps what it makes once (thumbnails, maps)."""
    return path.parent / f"{path.stem}.explore"


class Collection:
    """A store as the app shows it.

    Parameters
    ----------
    path : Path
        The ``.h5`` store.
    key : str
        Its name in URLs (``0``, ``1``, ...): the page never sends a path.
    """

    def __init__(self, path: Path, key: str):
        self.path = Path(path).resolve()
        self.key = key
        self._lock = threading.RLock()
        self._vectors_lock = threading.Lock()
        self._stat: tuple | None = None
        self._store: Store | None = None
        self._load()

    # ---------------------------------------------------------------- the view

    def _file_stat(self) -> tuple:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot be read any more ({exc.strerror})") from None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _load(self) -> None:
        self._stat = self._file_stat()
        store = Store(self.path) if self._store is None else self._store.refresh()
        self._store = store
        self.ids = store.ids.astype(str)
        self.labels = store.labels()
        self.splits = store.splits.astype(str)
        self.classes = [str(c) for c in store.classes]
        self.version = _version(store, self._stat)
        self.row_of = {i: r for r, i in enumerate(self.ids)}
        with self._vectors_lock:  # never while vectors() builds them for the old view
            self._vectors: Vectors | None = None
        self.locator = ImageLocator.for_store(store.attrs, self.ids)
        self.thumbs = ThumbCache(self.path, self.locator, size=THUMB_SIDE, folder=sidecar(self.path) / "thumbs")
        self.derived: dict = {}  # what other modules compute from this view (maps, predictions), dropped with it

    @property
    def store(self) -> Store:
        return self._store

    def check(self, version: str | None = None) -> None:
        """Re-read the store if its file changed; :class:`Stale` when ``version`` (the page's view) is not the
        current one."""
        with self._lock:
            stat = self._file_stat()
            if stat != self._stat:
                store = self._store.refresh()
                if _version(store, stat) != self.version:
                    self._load()
                self._stat = stat
        if version is not None and version != self.version:
            raise Stale(f"{self.path.name} changed (view {version}, now {self.version}): reload the page")

    def reload(self) -> None:
        """Move to the rows committed now (after a read found its rows rewritten)."""
        with self._lock:
            self._load()

    def __len__(self) -> int:
        return len(self.ids)

    def row(self, r: int) -> int:
        """``r`` checked against the view's rows (a :class:`DataError` outside them)."""
        if not 0 <= r < len(self.ids):
            raise NotFound(f"row {r}: {self.path.name} has rows 0 to {len(self.ids) - 1}")
        return r

    def summary(self) -> dict:
        """What the page lists of the store."""
        fp = self._store.fingerprint
        counts = np.bincount(self.labels[self.labels >= 0], minlength=len(self.classes))
        return {"key": self.key, "name": self.path.name, "version": self.version, "rows": len(self.ids),
                "classes": self.classes, "class_counts": counts.tolist(),
                "splits": sorted(set(self.splits.tolist())), "backbone": str(fp.get("backbone", "?")),
                "layer": str(fp.get("layer", "")), "pool": str(fp.get("pool", "")),
                "weights": str(fp.get("weights", "")), "dim": int(self._store.dim)}

    def describe(self, r: int) -> dict:
        """Id, label and split of row ``r``."""
        lab = int(self.labels[r])
        return {"row": int(r), "id": str(self.ids[r]), "label": self.classes[lab] if lab >= 0 else "",
                "split": str(self.splits[r])}

    # ---------------------------------------------------------------- features and neighbours

    def vectors(self) -> Vectors:
        """The rows' L2-normalised features (read once per view)."""
        with self._vectors_lock:  # not the view's lock: a request that needs no features does not wait
            if self._vectors is None:
                version = self.version
                try:
                    vectors = Vectors(self._store)
                except (StoreChangedError, ValueError, IndexError):  # rewritten, or grown, while being read
                    vectors = None
                if vectors is None or version != self.version:  # the next check() re-reads the store
                    raise Stale(f"{self.path.name} changed while it was read: reload the page")
                self._vectors = vectors
            return self._vectors

    def features(self, rows: np.ndarray) -> np.ndarray:
        """The stored (not normalised) features of ``rows``."""
        try:
            return self._store.features(ids=list(self.ids[np.asarray(rows, np.int64)]))
        except StoreChangedError:
            self.reload()
            raise Stale(f"{self.path.name} was rewritten while it was read: reload the page") from None

    def neighbors(self, *, row: int | None = None, vector: np.ndarray | None = None, k: int = 12) -> list[dict]:
        """The ``k`` rows nearest (cosine) to row ``row`` (itself left out) or to a feature ``vector``."""
        vectors = self.vectors()
        q = vectors.take([row]) if row is not None else np.asarray(vector, np.float32)[None, :]
        rows, sims = top_k(q, vectors, min(k, len(self.ids)), exclude=[row if row is not None else -1])
        return [{**self.describe(int(r)), "similarity": round(float(s), 4)}
                for r, s in zip(rows[0], sims[0]) if r >= 0]

    # ---------------------------------------------------------------- pictures

    def thumbnail(self, r: int) -> bytes:
        """A small JPEG of row ``r`` (made once into the sidecar folder)."""
        try:
            return self.thumbs.get(self.row(r))
        except DataError as exc:
            raise NotFound(str(exc)) from None

    def source(self, r: int):
        """Row ``r``'s image file or tar member (:class:`NotFound` when refused: see :mod:`featx.data.locate`)."""
        try:
            return self.locator.source(self.row(r))
        except DataError as exc:
            raise NotFound(str(exc)) from None

    def image(self, r: int) -> bytes:
        """Row ``r``'s painting as a JPEG, long side at most :data:`IMAGE_SIDE` (decoded with the bomb limits)."""
        try:
            img = load_rgb(self.source(r), min_size=IMAGE_SIDE // 2)
        except ImageReadError as exc:
            raise NotFound(f"{self.ids[r]}: cannot be read ({exc})") from None
        img.thumbnail((IMAGE_SIDE, IMAGE_SIDE))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=88)
        return buf.getvalue()
