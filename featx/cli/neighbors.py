"""`featx neighbors`: the paintings nearest to a query in a store's feature space."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import handles_errors, out, warn
from .app import app


@app.command()
@handles_errors
def neighbors(
    store: Annotated[Path, typer.Argument(help="A featx HDF5 store.", show_default=False)],
    queries: Annotated[Optional[list[str]], typer.Argument(
        help="Store ids (as `featx info` and --json list them) or image files, embedded with the store's "
             "backbone, layer, pooling and preprocessing.", show_default=False)] = None,
    row: Annotated[Optional[list[int]], typer.Option("--row", help="A row number of the store to query "
                                                     "(repeatable).", show_default=False)] = None,
    k: Annotated[int, typer.Option("--k", help="Neighbours per query.")] = 12,
    split: Annotated[Optional[list[str]], typer.Option(help="Search only these splits' rows (train, val, test; "
                                                       "repeatable).", show_default=False)] = None,
    exclude_self: Annotated[bool, typer.Option("--exclude-self", help="Leave out a stored query's own row "
                                               "(otherwise it comes first, similarity 1.0).")] = False,
    index: Annotated[str, typer.Option(help="exact (blocked exact search), ann (approximate index beside the "
                                       "store, needs the ann extra: pip install featx\\[ann]; built or rebuilt "
                                       "when the rows changed) or auto (ann above 500,000 rows when installed).")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object: each query with its neighbours "
                                          "(with --across: the mean and per-query overlap@k).")] = False,
    sheet: Annotated[Optional[Path], typer.Option(help="Write a contact sheet PNG: one row per query, the query "
                                                  "first, then its neighbours with class and similarity.",
                                                  show_default=False)] = None,
    across: Annotated[Optional[Path], typer.Option(help="Another store of the same images (another backbone, a "
                                                   "fine-tuned network): print how much the two stores' k nearest "
                                                   "neighbours agree (mean overlap@k; rows matched by id; every "
                                                   "common id is a query when none is given).",
                                                   show_default=False)] = None,
    weights: Annotated[Optional[Path], typer.Option(help="Checkpoint file, for a store of local-checkpoint "
                                                    "features (file:<sha256> weights), to embed image files.",
                                                    show_default=False)] = None,
) -> None:
    """Find the rows of STORE most similar (cosine) to each QUERY: a table of rank, id, label, split, similarity."""
    from ..api.neighbors import neighbors as run
    from ..api.neighbors import neighbors_overlap
    from ..errors import OptionError

    if across is not None:
        if row or sheet is not None:
            raise OptionError("--across compares whole neighbourhoods: give ids as QUERY, without --row or --sheet")
        result = neighbors_overlap(store, across, queries or [], k=k, progress=True)
        if as_json:
            out(result.to_json())
        else:
            out(f"mean overlap@{result.k}: {result.mean:.4f} over {len(result.per_query)} queries "
                f"({result.common} ids in both stores)")
        return
    result = run(store, queries or [], rows=row or [], k=k, split=split or None, exclude_self=exclude_self,
                 index=index, weights=weights)
    for path, reason in result.failures:
        warn(f"{path}: skipped ({reason})")
    out(result.to_json() if as_json else result.table())
    if sheet is not None:
        written = result.sheet(sheet)
        if not as_json:
            out(f"contact sheet: {written}")
