"""`featx status` and `featx merge`: a sharded extraction's state from its files, and merging its shards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app
from ._common import handles_errors, out


@app.command()
@handles_errors
def status(
    store: Annotated[Path, typer.Argument(help="The store (or any of its shard files).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Shards of an extraction (done / running / interrupted / missing, rows, failures) and its merged store.

    Read from the files alone: works from any node that sees the file system, with no
    scheduler to ask. Exit 0 when the merged store is current, 1 otherwise.
    """
    from ..jobs.status import extraction_status

    st = extraction_status(store)
    if as_json:
        out(json.dumps(st.to_dict(), indent=2))
    else:
        if st.count:
            out(f"{st.count} shards of {st.store}")
            for s in st.shards:
                out(f"  {s.index:>4}  {s.state:<11}  {s.rows:>8} rows  {s.failures:>5} failed  {s.path.name}"
                    + (f"  ({s.note})" if s.note else ""))
        words = {"current": "merged and current", "stale": "merged, but not from the shards above (finish them, then `featx merge`)",
                 "incomplete": "not finished", "absent": "not merged yet", "single": "a single-process store"}
        out(f"store: {words[st.merged]}" + (f", {st.rows} rows, {st.failures} failed" if st.merged != "absent" else ""))
    raise typer.Exit(0 if st.done else 1)


@app.command()
@handles_errors
def merge(
    shards: Annotated[list[Path], typer.Argument(help="Every shard file of one extraction "
                                                "(<store>.shard-i-of-n.h5).")],
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="The merged store (default: the store "
                                                     "the shards were cut from).")] = None,
) -> None:
    """Merge the shards of an extraction into one store, equal to a single-process run.

    Refuses a missing, unfinished or foreign shard (another fingerprint, data root or class
    list), naming it. The rows are copied in id order into a new file that replaces the
    store atomically. Usually not needed: the task that completes the set merges it.
    """
    from ..store.merge import merge_shards

    res = merge_shards(shards, out_path)
    out(f"merged {res.shards} shards into {res.path}: {res.rows} rows, {res.failures} unreadable")
