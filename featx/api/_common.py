"""What the API functions share: turning stores and paths into what the stages take, and result figures."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..store.handle import Store

StoreLike = str | os.PathLike | Store


def store_list(stores: StoreLike | Sequence[StoreLike]) -> list[StoreLike]:
    """One store or a sequence of them, as a list."""
    if isinstance(stores, (str, os.PathLike, Store)):
        return [stores]
    return list(stores)


def store_path(store: StoreLike) -> Path:
    """The file of a :class:`Store` or a path."""
    return store.path if isinstance(store, Store) else Path(store)


def figures_by_name(found: dict) -> dict:
    """``{file name: Figure}`` of the figures collected while a run folder was written."""
    return {Path(p).name: fig for p, fig in found.items()}
