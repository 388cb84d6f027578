"""``featx.neighbors``: the paintings a store's features place nearest to a query (``featx neighbors``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..look.neighbors import (
    Neighbors,
    NeighborsOptions,
    Overlap,
    find_neighbors,
    overlap_across,
)
from ..store.handle import Store


def _store(store) -> Store:
    return store if isinstance(store, Store) else Store(store)


def neighbors(store, queries: str | os.PathLike | Sequence[str | os.PathLike] = (), *, rows: Sequence[int] = (),
              k: int = 12, split: str | Sequence[str] | None = None, exclude_self: bool = False,
              index: str = "auto", weights: str | Path | None = None) -> Neighbors:
    """The ``k`` rows of a store most cosine-similar to each query (``featx neighbors``).

    Parameters
    ----------
    store : Store or path
        The store searched.
    queries : str, path or list of them
        Store ids, or image files (embedded with the store's backbone, layer, pooling and preprocessing).
    rows : list of int
        Row numbers of the store, queried after ``queries``.
    k : int, default 12
        Neighbours per query.
    split : str or list of str, optional
        Search only these splits' rows.
    exclude_self : bool, default False
        Leave out a stored query's own row (otherwise it comes first, similarity 1.0).
    index : {"auto", "exact", "ann"}, default "auto"
        Exact search, or the approximate index beside the store (``pip install 'featx[ann]'``);
        ``auto`` uses the index above 500,000 rows when it is installed.
    weights : path, optional
        The checkpoint file, for a store of local-checkpoint features.

    Returns
    -------
    Neighbors
        Per query its neighbours (``rank``, ``row``, ``id``, ``label``, ``split``, ``similarity``);
        ``.table()``, ``.to_json()``, ``.to_pandas()``, ``.sheet(path)``.

    Examples
    --------
    >>> featx.neighbors(store, rows=[0], k=5).to_pandas()  # doctest: +SKIP
    """
    split = split if split is None or isinstance(split, str) else tuple(split)
    options = NeighborsOptions(k=k, split=split, exclude_self=exclude_self, index=index, weights=weights)
    qs = [queries] if isinstance(queries, (str, os.PathLike)) else list(queries)
    return find_neighbors(_store(store), qs, rows=list(rows), options=options)


def neighbors_overlap(store_a, store_b, queries: Sequence[str] = (), *, k: int = 12,
                      progress: bool = False) -> Overlap:
    """How much two stores of the same images agree on each image's k nearest neighbours
    (``featx neighbors STORE_A --across STORE_B``).

    Parameters
    ----------
    store_a, store_b : Store or path
        Two stores holding (some of) the same ids: another backbone, a fine-tuned network.
    queries : list of str, optional
        Ids queried; every id both stores hold when empty.
    k : int, default 12
        Neighbourhood size.
    progress : bool, default False
        Show a progress bar.

    Returns
    -------
    Overlap
        ``.mean`` (mean overlap@k), ``.per_query`` (id -> overlap@k).
    """
    return overlap_across(_store(store_a), _store(store_b), list(queries), k=k, progress=progress)
