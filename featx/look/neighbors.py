"""Nearest neighbours in a store: the paintings the network sees as most alike (``featx neighbors``).

A query is a row of the store (by id or row number) or an image file, embedded with the store's own
backbone, layer, pooling and preprocessing (:func:`featx.learn.predict.embed_for_model`, as ``predict``
does). Similarity is the cosine of the stored features; the search is exact (:mod:`.similarity`) unless
an approximate index is asked for, or ``index="auto"`` and the store has more than :data:`ANN_ROWS` rows
and ``featx[ann]`` is installed (:mod:`.index`). :func:`overlap_across` compares the neighbourhoods of the
same images in two stores (another backbone, a fine-tuned network): the mean overlap@k.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.locate import ImageLocator
from ..errors import DataError, OptionError, StoreError
from .similarity import Vectors, normalize, top_k

ANN_ROWS = 500_000  # index="auto" searches an approximate index above this many rows (when installed)
INDEXES = ("auto", "exact", "ann")


@dataclass(frozen=True)
class NeighborsOptions:
    """What ``featx neighbors`` / :func:`featx.neighbors` is asked, checked on construction.

    Parameters
    ----------
    k : int, default 12
        Neighbours per query.
    split : str or tuple of str, optional
        Search only the rows of these splits (``train``, ``val``, ``test``); all rows when None.
    exclude_self : bool, default False
        Leave out the query's own row (a stored query otherwise finds itself first, similarity 1.0).
    index : {"auto", "exact", "ann"}, default "auto"
        ``exact``: blocked exact search; ``ann``: the approximate index beside the store (``featx[ann]``),
        built or rebuilt when missing or stale; ``auto``: ``ann`` above 500,000 rows when installed.
    weights : path, optional
        The checkpoint file, for a store of local-checkpoint features (image-file queries only).
    """

    k: int = 12
    split: str | tuple[str, ...] | None = None
    exclude_self: bool = False
    index: str = "auto"
    weights: str | Path | None = None

    def __post_init__(self):
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise OptionError(f"--k {self.k!r}: give a whole number of neighbours, 1 or more")
        if self.index not in INDEXES:
            raise OptionError(f"--index {self.index!r}: use one of {', '.join(INDEXES)}")
        splits = (self.split,) if isinstance(self.split, str) else (self.split or ())
        bad = [s for s in splits if s not in ("train", "val", "test")]
        if bad:
            raise OptionError(f"--split {bad[0]!r}: use train, val or test")
        if not isinstance(self.split, (str, type(None))):
            object.__setattr__(self, "split", tuple(self.split))


@dataclass
class QueryResult:
    """One query and its neighbours.

    Attributes
    ----------
    query : str
        The query as given (an id, ``row N`` or a file path).
    kind : {"id", "row", "file"}
    row : int or None
        The query's row in the store (None for an image file).
    path : str
        The query's image file.
    id, label, split : str or None
        The query row's id, class and split (None for an image file).
    neighbors : list of dict
        ``{"rank", "row", "id", "label", "split", "similarity"}``, most similar first.
    """

    query: str
    kind: str
    row: int | None
    path: str
    id: str | None = None
    label: str | None = None
    split: str | None = None
    neighbors: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"query": self.query, "kind": self.kind, "row": self.row, "id": self.id, "label": self.label,
                "split": self.split, "path": self.path, "neighbors": self.neighbors}

    def header(self) -> str:
        """One line naming the query: what was given and, for a stored row, its row or id, label and split."""
        if self.kind == "file":
            return f"{self.query} (image file)"
        where = f"row {self.row}" if self.kind == "id" else self.id
        return f"{self.query} ({where}, {self.label}, {self.split})"


@dataclass
class Neighbors:
    """What :func:`find_neighbors` found: one :class:`QueryResult` per query, in order.

    Attributes
    ----------
    results : list of QueryResult
    method : str
        ``"exact"`` or the approximate index's description.
    store : Path
        The store searched.
    failures : list of (str, str)
        Image-file queries that could not be read, and why.
    sources : dict of int to Path, TarMember or None
        The image of each row shown (a file or a tar member; None where it cannot be located), for :meth:`sheet`.
    """

    results: list[QueryResult]
    method: str
    store: Path
    failures: list[tuple[str, str]] = field(default_factory=list)
    sources: dict = field(default_factory=dict, repr=False)

    def __iter__(self):
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, i: int) -> QueryResult:
        return self.results[i]

    def records(self) -> list[dict]:
        """One flat dict per (query, neighbour): query, rank, row, id, label, split, similarity."""
        return [{"query": r.query, **n} for r in self.results for n in r.neighbors]

    def to_pandas(self):
        """:meth:`records` as a :class:`pandas.DataFrame` (pandas is needed only here)."""
        import pandas as pd

        return pd.DataFrame(self.records(), columns=["query", "rank", "row", "id", "label", "split", "similarity"])

    def to_json(self) -> str:
        """One JSON object: the store, the method and each query with its neighbours."""
        return json.dumps({"store": str(self.store), "method": self.method,
                           "queries": [r.to_dict() for r in self.results],
                           "failures": [list(f) for f in self.failures]})

    def table(self) -> str:
        """The neighbours as plain text: a header per query, then rank, id, label, split, similarity."""
        lines = []
        for r in self.results:
            lines.append(r.header() + ":")
            width = max([len(n["id"]) for n in r.neighbors] + [2])
            lwidth = max([len(n["label"]) for n in r.neighbors] + [5])
            lines.append(f"  {'rank':>4}  {'id':<{width}}  {'label':<{lwidth}}  {'split':<5}  similarity")
            for n in r.neighbors:
                lines.append(f"  {n['rank']:>4}  {n['id']:<{width}}  {n['label']:<{lwidth}}  {n['split']:<5}  "
                             f"{n['similarity']:.4f}")
        return "\n".join(lines)

    def _image(self, row: int | None, path: str):
        """The image of a stored row (its file or tar member), else the file given as a query."""
        return self.sources[row] if row is not None and row in self.sources else Path(path)

    def sheet(self, path: str | Path, *, thumb: int = 160) -> Path:
        """A contact sheet PNG: one row per query, the query first (framed), then its neighbours labelled
        with rank, class and similarity."""
        from ..report.plots import save, subplots, thumbnail

        cols = 1 + max((len(r.neighbors) for r in self.results), default=0)
        rows = max(1, len(self.results))
        inch = thumb / 100
        fig, axes = subplots(rows, cols, figsize=(cols * inch * 1.05, rows * inch * 1.3 + 0.4), dpi=100,
                             squeeze=False)
        for ax in axes.ravel():
            ax.axis("off")
        for ax_row, r in zip(axes, self.results):
            what = f"{r.label[:20]}\n{r.split}" if r.kind != "file" else Path(r.path).name[:24]
            cells = [(self._image(r.row, r.path), f"query: {what}", True)] + [
                (self._image(n["row"], n["path"]),
                 f"{n['rank']}. {n['label'][:20]}\n{n['split']}  {n['similarity']:.3f}", False) for n in r.neighbors]
            for ax, (source, caption, is_query) in zip(ax_row, cells):
                img = thumbnail(source, thumb)
                ax.imshow(img if img is not None else np.full((thumb, thumb, 3), 160, np.uint8))
                if img is None:
                    ax.text(thumb / 2, thumb / 2, "missing", ha="center", va="center", color="white")
                if is_query:
                    ax.axis("on")
                    ax.set_xticks([])
                    ax.set_yticks([])
                    for spine in ax.spines.values():
                        spine.set_edgecolor("tab:red")
                        spine.set_linewidth(3)
                ax.set_title(caption, fontsize=7)
        fig.suptitle(f"nearest neighbours in {Path(self.store).name} ({self.method})", fontsize=9)
        return save(fig, path)


def resolve_queries(store, queries: Sequence[str | os.PathLike], rows: Sequence[int] = ()
                    ) -> list[tuple[str, str, int | None, Path]]:
    """``(query, kind, row, path)`` per query: a store id, an image file (row None), or a row number.

    A string that is both an id and an existing file counts as the id (its stored row).
    """
    ids = store.ids
    row_of = {str(i): r for r, i in enumerate(ids)}
    out = []
    for q in queries:
        s = os.fspath(q)
        if s in row_of:
            out.append((s, "id", row_of[s], store.data_root / s))
        elif Path(s).is_file():
            out.append((s, "file", None, Path(s)))
        else:
            raise DataError(f"query {s!r}: neither an id in {store.path.name} nor an image file; give an id as "
                            "`featx info STORE` lists them, a path to an image, or --row N")
    for r in rows:
        if isinstance(r, bool) or not 0 <= int(r) < len(store):
            raise OptionError(f"--row {r}: the store has rows 0 to {len(store) - 1}")
        out.append((f"row {int(r)}", "row", int(r), store.data_root / str(ids[int(r)])))
    return out


def embed_files(store, paths: Sequence[Path], *, weights=None) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
    """Features of image files under the store's fingerprint (its backbone, layer, pooling, preprocessing), by
    path, and ``(path, reason)`` for those that could not be read."""
    from ..errors import ClassifierError
    from ..learn.predict import embed_for_model

    try:
        X, keep, failed = embed_for_model([store.fingerprint], list(paths), weights=weights)
    except ClassifierError as exc:  # "cannot embed images: ... not installed"
        raise DataError(str(exc)) from None
    got = {str(p): x for p, x in zip(keep, X)}
    return got, failed


def _searcher(store, options: NeighborsOptions, candidates: np.ndarray | None):
    """A ``search(queries, k, exclude) -> (rows, sims)`` function and its method's name."""
    use_ann = options.index == "ann"
    if options.index == "auto" and len(store) > ANN_ROWS:
        from . import index as ann

        use_ann = ann.available()
        if not use_ann:
            warnings.warn(f"{len(store):,} rows: searching exactly; {ann.EXTRA}", stacklevel=3)
    if use_ann:
        from . import index as ann

        idx = ann.load_or_build(store)
        return (lambda Q, k, ex: idx.search(Q, k, exclude=ex, candidates=candidates)), idx.describe()
    vectors = Vectors(store)
    return (lambda Q, k, ex: top_k(Q, vectors, k, exclude=ex, candidates=candidates)), "exact"


def find_neighbors(store, queries: Sequence[str | os.PathLike] = (), *, rows: Sequence[int] = (),
                   options: NeighborsOptions | None = None) -> Neighbors:
    """The ``options.k`` rows of ``store`` most cosine-similar to each query.

    Parameters
    ----------
    store : featx.Store
    queries : list of str or path
        Store ids or image files (embedded with the store's backbone).
    rows : list of int
        Row numbers of the store, queried after ``queries``.
    options : NeighborsOptions

    Returns
    -------
    Neighbors
    """
    options = options or NeighborsOptions()
    resolved = resolve_queries(store, queries, rows)
    if not resolved:
        raise OptionError("no query: give store ids or image files as QUERY, or --row N")
    files = [p for _, kind, _, p in resolved if kind == "file"]
    embedded, failures = embed_files(store, files, weights=options.weights) if files else ({}, [])
    resolved = [q for q in resolved if q[1] != "file" or str(q[3]) in embedded]
    if not resolved:
        raise DataError(f"no query image could be read, e.g. {failures[0][0]}: {failures[0][1]}")
    candidates = None
    if options.split is not None:
        candidates = np.zeros(len(store), bool)
        candidates[store.rows(split=options.split)] = True
    search, method = _searcher(store, options, candidates)
    stored = [r for _, kind, r, _ in resolved if kind != "file"]
    stored_vecs = dict(zip(stored, _stored_rows(store, stored))) if stored else {}
    Q = np.stack([stored_vecs[r] if r is not None else embedded[str(p)] for _, _, r, p in resolved])
    exclude = [r if (options.exclude_self and r is not None) else -1 for _, _, r, _ in resolved]
    k = min(options.k, len(store))
    nn_rows, nn_sims = search(Q, k, exclude)
    ids, splits, labels = store.ids, store.splits, store.labels(names=True)
    results = []
    for (q, kind, r, p), rr, ss in zip(resolved, nn_rows, nn_sims):
        nbrs = [{"rank": i + 1, "row": int(x), "id": str(ids[x]), "label": str(labels[x]), "split": str(splits[x]),
                 "similarity": round(float(s), 6), "path": str(store.data_root / str(ids[x]))}
                for i, (x, s) in enumerate(zip(rr, ss)) if x >= 0]
        about = {} if r is None else {"id": str(ids[r]), "label": str(labels[r]), "split": str(splits[r])}
        results.append(QueryResult(str(q), kind, r, str(p), neighbors=nbrs, **about))
    locator = ImageLocator.for_store(store.attrs, ids, links_outside=True)
    shown = {r for _, _, r, _ in resolved if r is not None} | {n["row"] for q in results for n in q.neighbors}
    return Neighbors(results, method, store.path, list(failures), {r: locator.find(r) for r in shown})


def _stored_rows(store, rows: Sequence[int]) -> np.ndarray:
    return store.features(ids=list(store.ids[np.asarray(rows, dtype=np.int64)]))


# ---------------------------------------------------------------------------------------------- across stores

@dataclass
class Overlap:
    """How much two stores agree on each image's neighbourhood (:func:`overlap_across`).

    Attributes
    ----------
    mean : float
        Mean overlap@k over the queries: the share of the k nearest rows (by id) both stores find.
    k : int
    per_query : dict of str to float
        Overlap@k per query id.
    store_a, store_b : Path
    common : int
        Ids in both stores (the rows searched).
    """

    mean: float
    k: int
    per_query: dict[str, float]
    store_a: Path
    store_b: Path
    common: int

    def to_json(self, *, per_query: bool = True) -> str:
        d = {"store_a": str(self.store_a), "store_b": str(self.store_b), "k": self.k, "common": self.common,
             "queries": len(self.per_query), "mean_overlap": round(self.mean, 6)}
        if per_query:
            d["per_query"] = {q: round(v, 6) for q, v in self.per_query.items()}
        return json.dumps(d)


def overlap_across(store_a, store_b, queries: Sequence[str] = (), *, k: int = 12, progress: bool = False) -> Overlap:
    """Mean overlap@k of the neighbourhoods of the same images in two stores (rows matched by id).

    Each query's own row is left out and only ids both stores hold are searched. Every common id is a
    query when ``queries`` is empty.
    """
    from tqdm import tqdm

    NeighborsOptions(k=k)
    ids_a, ids_b = [str(i) for i in store_a.ids], [str(i) for i in store_b.ids]
    row_b = {i: r for r, i in enumerate(ids_b)}
    common = [i for i in ids_a if i in row_b]
    if len(common) < 2:
        raise StoreError(f"{store_b.path.name} and {store_a.path.name} share {len(common)} image id(s); --across "
                         "needs two stores of the same images")
    qs = [str(q) for q in queries] or common
    missing = [q for q in qs if q not in row_b or q not in set(common)]
    if missing:
        raise DataError(f"query {missing[0]!r}: not an id in both {store_a.path.name} and {store_b.path.name}")
    k = min(k, len(common) - 1)
    # both sides as arrays over the common ids, in the same order
    Xa = normalize(store_a.features(ids=common))
    Xb = normalize(store_b.features(ids=common))
    pos = {i: j for j, i in enumerate(common)}
    qpos = np.array([pos[q] for q in qs], dtype=np.int64)
    va, vb = Vectors.from_array(Xa), Vectors.from_array(Xb)
    per = {}
    step = 1024
    for lo in tqdm(range(0, len(qpos), step), desc="overlap", unit="block", disable=not progress or len(qpos) <= step,
                   leave=False):
        part = qpos[lo:lo + step]
        na, _ = top_k(Xa[part], va, k, exclude=part)
        nb, _ = top_k(Xb[part], vb, k, exclude=part)
        for j, a, b in zip(part, na, nb):
            per[common[j]] = len(set(a.tolist()) & set(b.tolist())) / k
    return Overlap(float(np.mean(list(per.values()))), k, per, store_a.path, store_b.path, len(common))
