"""Near-duplicates and leaks: pairs of a store's rows whose features are almost the same painting.

:func:`find_duplicates` finds every pair of rows with cosine similarity at or above a threshold (an exact,
blocked all-pairs search: :func:`featx.look.similarity.pairs_above`), joins them into connected groups, and
lists the pairs that straddle splits: a test painting with a near-copy in train or val is a **leak** (it
inflates the test score); train/val pairs are listed separately. The default threshold,
:data:`DEFAULT_THRESHOLD`, is calibrated on real paintings (``docs/neighbors.md``, "Choosing the
duplicate threshold").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ..errors import OptionError
from .similarity import Vectors, pairs_above

# Calibrated with efficientnet_lite0 (imagenet weights, pre_logits, avg) on the monet-sisley paintings:
# planted resized / JPEG re-encoded copies score >= 0.97 and 90 % centre crops >= 0.85, while the most similar
# pair of distinct paintings scores below 0.85 (docs/neighbors.md gives the measured figures).
DEFAULT_THRESHOLD = 0.9


class Pair(NamedTuple):
    """Two rows of a store and the cosine similarity of their features (``row_a < row_b``)."""

    row_a: int
    row_b: int
    similarity: float


@dataclass
class Duplicates:
    """What :func:`find_duplicates` found.

    Attributes
    ----------
    threshold : float
        The cosine similarity at or above which two rows count as duplicates.
    pairs : list of Pair
        Every such pair, most similar first.
    groups : list of list of int
        Connected groups of rows (pairs sharing a row join), largest first; each sorted.
    leaks : list of Pair
        Pairs with one row in test and the other in train or val, most similar first.
    train_val : list of Pair
        Pairs with one row in train and the other in val.
    ids, splits, labels : numpy.ndarray
        Per store row: id, split and class name (for reporting the pairs).
    """

    threshold: float
    pairs: list[Pair]
    groups: list[list[int]]
    leaks: list[Pair]
    train_val: list[Pair]
    ids: np.ndarray = field(repr=False)
    splits: np.ndarray = field(repr=False)
    labels: np.ndarray = field(repr=False)

    def leaked_rows(self, split: str = "test") -> np.ndarray:
        """Rows of ``split`` that have a near-copy in another split (sorted): those to drop to re-score."""
        rows = {r for p in self.leaks + self.train_val for r in (p.row_a, p.row_b) if self.splits[r] == split}
        return np.array(sorted(rows), dtype=np.int64)

    def records(self, which: str = "pairs") -> list[dict]:
        """``which`` (``"pairs"``, ``"leaks"`` or ``"train_val"``) as dicts: row, id, split and label of
        each side, and the similarity (ready for a CSV writer; escape the strings for HTML/Markdown)."""
        if which not in ("pairs", "leaks", "train_val"):
            raise OptionError(f"records({which!r}): use 'pairs', 'leaks' or 'train_val'")
        out = []
        for p in getattr(self, which):
            rec = {}
            for side, r in (("a", p.row_a), ("b", p.row_b)):
                rec.update({f"row_{side}": int(r), f"id_{side}": str(self.ids[r]), f"split_{side}": str(self.splits[r]),
                            f"label_{side}": str(self.labels[r])})
            rec["similarity"] = round(float(p.similarity), 6)
            out.append(rec)
        return out

    def __len__(self) -> int:
        return len(self.pairs)


def check_threshold(threshold: float) -> float:
    """A cosine threshold in (0, 1], else an :class:`OptionError` naming ``--threshold``."""
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise OptionError(f"--threshold {threshold!r}: give a cosine similarity between 0 and 1, "
                          f"e.g. {DEFAULT_THRESHOLD}") from None
    if not 0 < t <= 1:
        raise OptionError(f"--threshold {threshold}: give a cosine similarity in (0, 1], e.g. {DEFAULT_THRESHOLD}")
    return t


def groups_of(row_a: np.ndarray, row_b: np.ndarray) -> list[list[int]]:
    """Connected components of the pairs' graph (union-find), largest first, each sorted."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(row_a.tolist(), row_b.tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    comps: dict[int, list[int]] = {}
    for x in parent:
        comps.setdefault(find(x), []).append(x)
    return sorted((sorted(c) for c in comps.values()), key=lambda c: (-len(c), c[0]))


def find_duplicates(store, *, threshold: float | None = None, split: str | Sequence[str] | None = None,
                    progress: bool = False) -> Duplicates:
    """Near-duplicate pairs of a store's rows, their groups, and the pairs that leak across splits.

    Parameters
    ----------
    store : featx.Store
        The store searched (all rows of its view).
    threshold : float, optional
        Cosine similarity at or above which two rows are duplicates; :data:`DEFAULT_THRESHOLD` when None.
    split : str or list of str, optional
        Search only the rows of these splits (all rows when None).
    progress : bool, default False
        Show a progress bar over the blocks.

    Returns
    -------
    Duplicates
    """
    t = DEFAULT_THRESHOLD if threshold is None else check_threshold(threshold)
    splits = np.asarray(store.splits).astype(str)
    ids = np.asarray(store.ids).astype(str)
    labels = np.asarray(store.labels(names=True)).astype(str)
    candidates = None
    if split is not None:
        candidates = np.zeros(len(store), bool)
        candidates[store.rows(split=split)] = True
    row_a, row_b, sims = pairs_above(Vectors(store), t, candidates=candidates, progress=progress)
    pairs = [Pair(int(a), int(b), float(s)) for a, b, s in zip(row_a, row_b, sims)]
    sa, sb = splits[row_a], splits[row_b]
    crosses_test = (sa != sb) & ((sa == "test") | (sb == "test"))
    train_val = (sa != sb) & ~crosses_test & np.isin(sa, ("train", "val")) & np.isin(sb, ("train", "val"))
    return Duplicates(threshold=t, pairs=pairs, groups=groups_of(row_a, row_b),
                      leaks=[p for p, x in zip(pairs, crosses_test) if x],
                      train_val=[p for p, x in zip(pairs, train_val) if x],
                      ids=ids, splits=splits, labels=labels)
