"""`featx info`: summarise a store (rows, dim, classes, splits, failures, fingerprint)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from . import app
from ..report.runs import printable
from ._common import handles_errors, out


@app.command()
@handles_errors
def info(
    store: Annotated[Path, typer.Argument(help="A featx HDF5 store.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Summarise a store: rows, dim, dtype, classes, splits, failures, fingerprint."""
    from ..store.reader import load_features

    fs = load_features(store, require_complete=False, with_features=False)
    a = fs.attrs
    dim, dtype = a["dim"], a["dtype"]
    classes = {c: int((fs.labels == k).sum()) for k, c in enumerate(fs.classes)}
    splits = {s: int((fs.split == s).sum()) for s in ("train", "val", "test")}
    summary = {"path": printable(str(store)), "rows": len(fs), "dim": dim, "dtype": dtype, "complete": fs.complete,
               "classes": classes, "splits": splits, "split_source": a.get("split_source"),
               "failed": len(fs.failed), "logits": fs.logits is not None, "data_root": printable(str(fs.data_root)),
               "fingerprint": fs.fingerprint, "versions": a.get("versions"), "created": a.get("created")}
    if as_json:
        out(json.dumps(summary, indent=1))
        return
    fp = fs.fingerprint
    out(f"{store}  ({'complete' if fs.complete else 'INCOMPLETE: re-run the extract command to finish'})")
    out(f"  rows {len(fs)}, dim {dim}, dtype {dtype}, logits {'yes' if fs.logits is not None else 'no'}")
    out(f"  backbone {fp.get('backbone')} weights {fp.get('weights')} layer {fp.get('layer')} pool {fp.get('pool')} "
        f"tta {fp.get('tta')} input {fp.get('data', {}).get('input_size')}")
    out(f"  classes ({len(classes)}): " + ", ".join(f"{c} {n}" for c, n in classes.items()))
    out("  splits: " + ", ".join(f"{s} {n}" for s, n in splits.items()) + f"  [{a.get('split_source')}]")
    out(f"  failed {len(fs.failed)}" + "".join(f"\n    {i}: {r}" for i, r in fs.failed[:10]))
    out(f"  data root {fs.data_root}")
    out(f"  fingerprint {json.dumps(fp, sort_keys=True)}")
