"""`featx info`: summarise a store (rows, dim, classes, splits, failures, fingerprint)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from .app import app
from ..report.runs import printable
from ._common import handles_errors, out


@app.command()
@handles_errors
def info(
    store: Annotated[Path, typer.Argument(help="A featx HDF5 store.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    verify: Annotated[bool, typer.Option("--verify", help="Compare the store with its data folder: changed, "
                                         "missing and new files, relabels (extracts nothing).")] = False,
) -> None:
    """Summarise a store: rows, dim, dtype, classes, splits, failures, fingerprint.

    With --verify, re-discover the data the store was made from (its recorded root, labels
    and split rule) and report what `featx extract` would change, without extracting.
    """
    if verify:
        _verify(store, as_json)
        return
    from ..store.reader import load_features

    fs = load_features(store, require_complete=False, with_features=False)
    a = fs.attrs
    dim, dtype = a["dim"], a["dtype"]
    classes = {c: int((fs.labels == k).sum()) for k, c in enumerate(fs.classes)}
    splits = {s: int((fs.split == s).sum()) for s in ("train", "val", "test")}
    summary = {"path": printable(str(store)), "rows": len(fs), "dim": dim, "dtype": dtype, "complete": fs.complete,
               "classes": classes, "splits": splits, "split_source": a.get("split_source"),
               "failed": len(fs.failed), "logits": fs.logits is not None, "data_root": printable(str(fs.data_root)),
               "source": a.get("source"), "numeric": a.get("numeric"), "hash": a.get("hash"),
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
    out(f"  data root {fs.data_root}  [{a.get('layout')}]")
    numeric = ", ".join(f"{n.get('precision')} on {n.get('device')} ({n.get('runtime')})"
                        for n in a.get("numeric") or [] if isinstance(n, dict))
    out(f"  numeric {numeric or 'not recorded'}; hash {a.get('hash') or 'off'}; generation {a.get('generation', 0)}")
    out(f"  fingerprint {json.dumps(fp, sort_keys=True)}")


def _verify(store: Path, as_json: bool) -> None:
    from ..extraction.plan import verify_store
    from .extract import sync_line

    delta, rows, ds = verify_store(store)
    files = {"changed": [ds.ids[j] for _, j in delta.changed], "missing": [rows.ids[i] for i in delta.missing],
             "new": [ds.ids[j] for j in delta.new], "retry": [ds.ids[j] for j in delta.retry]}
    summary = {**delta.summary(), "in_sync": delta.empty}
    if as_json:
        out(json.dumps({"path": printable(str(store)), **summary,
                        "files": {k: [printable(v) for v in vs] for k, vs in files.items()}}, indent=1))
        return
    out(f"{store}: " + ("in sync with " + str(ds.root) if delta.empty else f"differs from {ds.root}: "
                        + sync_line(delta.summary())))
    for kind, ids in files.items():
        for image_id in ids[:10]:
            out(f"  {kind}: {image_id}")
        if len(ids) > 10:
            out(f"  ... and {len(ids) - 10} more {kind}")
