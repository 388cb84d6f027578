"""The leaderboard of several fits (store x classifier): terminal table, CSV and markdown."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..files import write_text
from .escape import md_table
from .runs import printable, write_csv


LEADERBOARD_COLUMNS = ("rank", "store", "backbone", "weights", "layer", "pool", "dim", "classifier", "accuracy",
                       "accuracy_se", "macro_f1", "val_accuracy", "fit_seconds", "eval", "run")


def leaderboard_rows(entries: Sequence[tuple[dict, Path]]) -> list[dict]:
    """Rows sorted by held-out accuracy then macro F1 (best first)."""
    rows = []
    for m, run in entries:
        fps = [s["fingerprint"] for s in m["stores"]]
        join = lambda key: " + ".join(str(fp.get(key, "?")) for fp in fps)  # noqa: E731
        rows.append({"store": printable(" + ".join(Path(st["path"]).stem for st in m["stores"])), "backbone": join("backbone"), "weights": join("weights"), "layer": join("layer"),
                     "pool": join("pool"), "dim": sum(s["dim"] for s in m["stores"]), "classifier": m["classifier"],
                     "accuracy": m["accuracy"], "accuracy_se": m["accuracy_se"], "macro_f1": m["macro_f1"],
                     "val_accuracy": m["val_accuracy"], "fit_seconds": m["fit_seconds"],
                     "eval": f"{m['evaluation']['mode']} n={m['evaluation']['n_eval']}", "run": str(run)})
    rows.sort(key=lambda r: (-r["accuracy"], -r["macro_f1"]))
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return rows


def _cells(r: dict) -> list[str]:
    def num(v, nd=3):
        return "" if v is None else f"{v:.{nd}f}"

    return [str(r["rank"]), r["store"], r["backbone"], r["weights"], r["layer"], r["pool"], str(r["dim"]), r["classifier"],
            f"{r['accuracy']:.3f} +- {r['accuracy_se']:.3f}", num(r["macro_f1"]), num(r["val_accuracy"]),
            num(r["fit_seconds"], 1), r["eval"]]


_HEAD = ["#", "store", "backbone", "weights", "layer", "pool", "dim", "classifier", "accuracy", "macro F1", "val acc",
         "fit s", "eval"]


def format_table(rows: Sequence[dict]) -> str:
    """Aligned plain-text table for the terminal."""
    table = [_HEAD] + [_cells(r) for r in rows]
    widths = [max(len(row[j]) for row in table) for j in range(len(_HEAD))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_markdown(rows: Sequence[dict]) -> str:
    """The leaderboard as a Markdown table; every cell is text (:func:`~.escape.md_text`): a store or layer
    name holding ``|``, backticks or HTML cannot add a column, code, a link or markup."""
    return "\n".join(md_table(_HEAD, (_cells(r) for r in rows))) + "\n"


def write_leaderboard(run_dir: Path, rows: Sequence[dict]) -> tuple[Path, Path]:
    """``leaderboard.csv`` (every column, raw numbers) and ``leaderboard.md``."""
    csv_path, md_path = run_dir / "leaderboard.csv", run_dir / "leaderboard.md"
    write_csv(csv_path, [{k: r[k] for k in LEADERBOARD_COLUMNS} for r in rows])
    write_text(md_path, format_markdown(rows))
    return csv_path, md_path
