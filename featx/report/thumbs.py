"""Small JPEG thumbnails of a store's rows: :func:`jpeg_thumbnail` makes one, :class:`ThumbCache` keeps them.

The cache is a folder beside the store (``<store>.thumbs/``, 256 subfolders). A thumbnail's file name is a
hash of the row's id, its image's size and mtime and the thumbnail size, so an edited or replaced painting
gets a new thumbnail and an unchanged one is never made twice. Files are written atomically
(:mod:`featx.files`). Where the folder cannot be written, thumbnails stay in a bounded in-memory LRU.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from ..data.images import ImageReadError, load_rgb
from ..data.locate import ImageLocator
from ..errors import DataError, DiskFullError
from ..files import write_bytes

MEMORY_BYTES = 64 * 1024 * 1024  # the in-memory fallback holds at most this many bytes of thumbnails


def jpeg_thumbnail(source, size: int, *, quality: int = 80) -> bytes:
    """JPEG bytes of ``source`` (a file or a tar member) fitting ``size`` x ``size``, aspect kept.

    Decoded by :func:`~featx.data.images.load_rgb` (its pixel limits and reduced-size JPEG decoding);
    :class:`DataError` when the image cannot be read.
    """
    try:
        img = load_rgb(source, min_size=size)
    except ImageReadError as exc:
        raise DataError(f"{source}: cannot read the image ({exc})") from None
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class ThumbCache:
    """Small JPEG thumbnails of a store's rows, made once into a folder beside the store.

    Parameters
    ----------
    store_path : Path
        The store (``.h5``); the default folder is ``<parent>/<stem>.thumbs``.
    locator : ImageLocator
        Where the rows' images are (it refuses ids that leave the data folder).
    size : int, default 160
        The longest side of a thumbnail, in pixels.
    folder : Path, optional
        Another folder for the thumbnails.

    Attributes
    ----------
    folder : Path or None
        Where thumbnails are written; None when they are kept in memory (the folder could not be written).
    made : int
        Thumbnails made (decoded and encoded) by this object.
    """

    def __init__(self, store_path: str | Path, locator: ImageLocator, *, size: int = 160,
                 folder: str | Path | None = None):
        store_path = Path(store_path)
        self.locator = locator
        self.size = int(size)
        self.folder: Path | None = Path(folder) if folder is not None else \
            store_path.parent / f"{store_path.stem}.thumbs"
        self.made = 0
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._memory_bytes = 0
        self._lock = threading.Lock()
        self._key_locks = [threading.Lock() for _ in range(64)]  # one maker per key in this process
        if not self._writable(self.folder):
            self.folder = None

    @staticmethod
    def _writable(folder: Path) -> bool:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                return True
        except (OSError, DiskFullError):
            return False

    def key(self, row: int) -> str:
        """The cache key of ``row``: a hash of its id, its image's (size, mtime_ns) and the thumbnail size."""
        size, mtime_ns = self.locator.stat(row)
        text = f"{self.locator.id_of(row)}\0{size}\0{mtime_ns}\0{self.size}"
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()

    def _file(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.jpg"

    def _cached(self, key: str) -> bytes | None:
        if self.folder is not None:
            try:
                return self._file(key).read_bytes()
            except OSError:
                pass
        with self._lock:
            data = self._memory.get(key)
            if data is not None:
                self._memory.move_to_end(key)
            return data

    def _remember(self, key: str, data: bytes) -> None:
        with self._lock:
            if key not in self._memory:
                self._memory[key] = data
                self._memory_bytes += len(data)
            while self._memory_bytes > MEMORY_BYTES and len(self._memory) > 1:
                self._memory_bytes -= len(self._memory.popitem(last=False)[1])

    def _make(self, row: int, key: str) -> tuple[bytes, bool]:
        """The thumbnail of ``row`` under ``key``, and whether this call made it."""
        with self._key_locks[int(key[:2], 16) % len(self._key_locks)]:
            data = self._cached(key)  # another thread may have made it meanwhile
            if data is not None:
                return data, False
            data = jpeg_thumbnail(self.locator.source(row), self.size)
            with self._lock:
                self.made += 1
            if self.folder is not None:
                try:
                    write_bytes(self._file(key), data)
                    return data, True
                except (OSError, DiskFullError):
                    pass  # a full or read-only disk: keep it in memory
            self._remember(key, data)
            return data, True

    def get(self, row: int) -> bytes:
        """The JPEG thumbnail of ``row``, made on first use; :class:`DataError` when its image cannot be
        located or read."""
        key = self.key(row)
        data = self._cached(key)
        return data if data is not None else self._make(row, key)[0]

    def warm(self, rows: Sequence[int], *, workers: int = 2) -> int:
        """Make the missing thumbnails of ``rows`` in ``workers`` threads; returns how many were made (rows
        whose image cannot be read are skipped)."""
        def one(row: int) -> bool:
            try:
                key = self.key(row)
                return self._cached(key) is None and self._make(row, key)[1]
            except DataError:
                return False

        with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
            return sum(pool.map(one, [int(r) for r in rows]))
