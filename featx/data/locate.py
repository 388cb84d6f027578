"""Where a store row's image is: a file under the store's data root, or a member of its tar shards.

:class:`ImageLocator` is what serves or draws a store's images. A store can come from anyone, so an id is
never trusted as a path: an absolute id, one with ``..`` components, or one whose real path (symlinks
followed) leaves the real data root is refused, and so is anything that is not a regular file. Tar stores
(``layout == "tar"``) map ids to members by scanning their shards once, on first use. Standard library only.
"""

from __future__ import annotations

import operator
import os
import stat as stat_mod
import threading
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Sequence

from ..errors import DataError
from .tars import TarMember, image_members


class ImageLocator:
    """Where a store's images are: files under its data root, or members of its tar shards.

    Parameters
    ----------
    ids : sequence of str
        The store's ids, in row order.
    root : Path, optional
        The data root of a folder layout (ids are relative to it).
    tars : str, optional
        The absolute brace pattern of a tar store's shards (``attrs["source"]["data"]``).
    links_outside : bool, default False
        Let a symlink inside the data root lead outside it (featx's own pictures of a local store, whose
        symlinked class folders discovery follows). Absolute ids and ``..`` stay refused; leave False for
        anything that serves images to others.
    """

    def __init__(self, ids: Sequence[str], *, root: str | Path | None = None, tars: str | None = None,
                 links_outside: bool = False):
        if (root is None) == (tars is None):
            raise ValueError("give root= (a folder layout) or tars= (a tar store), not both or neither")
        self.ids = [str(i) for i in ids]
        self.root = None if root is None else Path(root)
        self.tars = tars
        self.links_outside = links_outside
        self._members: dict[str, TarMember] | None = None
        self._real_root: Path | None = None
        self._lock = threading.Lock()

    @classmethod
    def for_store(cls, attrs: dict, ids: Sequence[str], *, links_outside: bool = False) -> "ImageLocator":
        """The locator of a store from its decoded attributes (``featx.Store(...).attrs``) and ids."""
        if attrs.get("layout") == "tar":
            pattern = (attrs.get("source") or {}).get("data")
            if not pattern:
                raise DataError("this tar store does not record its tar files (source.data); re-extract it")
            return cls(ids, tars=str(pattern), links_outside=links_outside)
        return cls(ids, root=attrs.get("data_root") or ".", links_outside=links_outside)

    def __len__(self) -> int:
        return len(self.ids)

    def __getstate__(self) -> dict:  # picklable (worker processes): the lock stays behind
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def id_of(self, row: int) -> str:
        """The id of ``row``; :class:`DataError` for a row the store does not have."""
        try:
            row = operator.index(row)
        except TypeError:
            raise DataError(f"row {row!r}: not a row number") from None
        if not 0 <= row < len(self.ids):
            raise DataError(f"row {row}: the store has rows 0 to {len(self.ids) - 1}")
        return self.ids[row]

    def source(self, row: int) -> Path | TarMember:
        """The image of ``row``: a regular file inside the data root (its real path) or a tar member.

        Raises :class:`DataError` (one line) when the id is refused or its image is missing.
        """
        image_id = self.id_of(row)
        return self._member(image_id) if self.tars is not None else self._file(image_id)

    def find(self, row: int) -> Path | TarMember | None:
        """:meth:`source`, or None where it raises (pictures draw a placeholder instead)."""
        try:
            return self.source(row)
        except DataError:
            return None

    def stat(self, row: int) -> tuple[int, int]:
        """``(size, mtime_ns)`` of the image of ``row`` (of a tar member: its size and the tar file's mtime)."""
        src = self.source(row)
        try:
            st = os.stat(src.tar if isinstance(src, TarMember) else src)
        except OSError as exc:
            raise DataError(f"{src}: cannot be read ({exc.strerror or exc})") from None
        return (src.size, st.st_mtime_ns) if isinstance(src, TarMember) else (st.st_size, st.st_mtime_ns)

    # ---------------------------------------------------------------- folder layouts

    def _file(self, image_id: str) -> Path:
        if not image_id or "\x00" in image_id:
            raise DataError(f"id {image_id!r}: not a file name")
        posix = PurePosixPath(image_id)
        if posix.is_absolute() or PureWindowsPath(image_id).drive or ".." in posix.parts:
            raise DataError(f"id {image_id!r}: refused (an id must be a path inside the data folder)")
        root = self._root()
        path = root / posix
        try:
            real = path.resolve(strict=True) if not self.links_outside else path
            if not self.links_outside and not real.is_relative_to(root):
                raise DataError(f"id {image_id!r}: refused (it links outside the data folder {root})")
            st = os.stat(real)
        except (FileNotFoundError, NotADirectoryError):
            raise DataError(f"{path}: image file not found") from None
        except RuntimeError:  # a symlink loop
            raise DataError(f"{path}: a symlink loop") from None
        except OSError as exc:
            raise DataError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        if not stat_mod.S_ISREG(st.st_mode):
            raise DataError(f"{path}: not a regular file")
        return real

    def _root(self) -> Path:
        if self._real_root is None:
            try:
                self._real_root = self.root.absolute() if self.links_outside else self.root.resolve(strict=True)
            except OSError:
                raise DataError(f"{self.root}: the store's data folder is missing") from None
        return self._real_root

    # ---------------------------------------------------------------- tar stores

    def _member(self, image_id: str) -> TarMember:
        with self._lock:  # one scan, however many threads ask at once
            if self._members is None:
                self._members = image_members(self.tars)
        member = self._members.get(image_id)
        if member is None:
            raise DataError(f"id {image_id!r}: not found in the store's tar files {self.tars}")
        return member
