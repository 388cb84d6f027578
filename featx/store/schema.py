"""The store's layout: datasets, attributes, and the checks that a file is a usable featx store."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from ..config import SCHEMA_VERSION, ExtractCfg

FORMAT = "featx-features"
STR = h5py.string_dtype("utf-8")
JSON_ATTRS = ("classes", "fingerprint", "backbone", "versions")


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape the numbers (only those already imported)."""
    from .. import __version__

    out = {"featx": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "h5py": h5py.__version__}
    for mod in ("torch", "torchvision", "timm", "PIL"):
        m = sys.modules.get(mod)
        if m is not None:
            out[mod] = getattr(m, "__version__", "?")
    return out


def decode_attrs(attrs) -> dict:
    """HDF5 attributes as Python values (JSON attributes parsed)."""
    out = {}
    for k, v in attrs.items():
        if isinstance(v, bytes):
            v = v.decode()
        if isinstance(v, np.bool_):
            v = bool(v)
        if k in JSON_ATTRS and isinstance(v, str):
            v = json.loads(v)
        out[k] = v
    return out


def format_problem(attrs) -> str | None:
    """Why an open HDF5 file (its raw ``attrs``) is not a store this featx can read, or None."""
    if attrs.get("format") != FORMAT:
        return f"not a featx feature store (no format={FORMAT!r} attribute)"
    version = int(attrs.get("schema_version", 0))
    if version > SCHEMA_VERSION:
        return f"store schema v{version} is newer than this featx (v{SCHEMA_VERSION}); upgrade featx"
    return None


def settings_problem(attrs: dict, cfg: ExtractCfg, classes: Sequence[str]) -> str | None:
    """How a store's decoded ``attrs`` differ from an extraction of ``cfg`` over ``classes``, or None."""
    old, new = attrs.get("fingerprint") or {}, cfg.to_dict()
    if old != new:
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return f"store was made with different settings ({', '.join(diff)})"
    if list(attrs.get("classes", [])) != list(classes):
        return f"store has classes {attrs.get('classes')} but the data now has {list(classes)}"
    return None


def summary_attrs(f: h5py.File) -> dict:
    """Decoded attributes plus the shapes a summary needs (reads no rows)."""
    attrs = decode_attrs(f.attrs)
    attrs["n_rows"] = int(f["ids"].shape[0])
    attrs["dim"] = int(f["features"].shape[1])
    attrs["dtype"] = str(f["features"].dtype)
    attrs["n_failed"] = int(f["failed/id"].shape[0])
    return attrs


def create(path: Path, cfg: ExtractCfg, dim: int, logits_dim: int | None, meta: dict) -> h5py.File:
    """A new, empty store at ``path`` (written under a temporary name, then renamed), open for appending."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        _write_empty(tmp, cfg, dim, logits_dim, meta)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return h5py.File(path, "a")


def _write_empty(tmp: Path, cfg: ExtractCfg, dim: int, logits_dim: int | None, meta: dict) -> None:
    with h5py.File(tmp, "w") as f:
        dtype = np.float16 if cfg.dtype == "float16" else np.float32
        rows = max(1, min(1024, (1 << 20) // max(1, dim * np.dtype(dtype).itemsize)))
        f.create_dataset("features", (0, dim), dtype=dtype, maxshape=(None, dim), chunks=(rows, dim))
        f.create_dataset("labels", (0,), dtype=np.int64, maxshape=(None,), chunks=(4096,))
        f.create_dataset("ids", (0,), dtype=STR, maxshape=(None,), chunks=(4096,))
        f.create_dataset("split", (0,), dtype=STR, maxshape=(None,), chunks=(4096,))
        if logits_dim:
            f.create_dataset("logits", (0, logits_dim), dtype=np.float32, maxshape=(None, logits_dim),
                             chunks=(max(1, (1 << 20) // (4 * logits_dim)), logits_dim))
        g = f.create_group("failed")
        for name in ("id", "reason"):
            g.create_dataset(name, (0,), dtype=STR, maxshape=(None,), chunks=(1024,))
        f.attrs.update({
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "fingerprint": json.dumps(cfg.to_dict(), sort_keys=True),
            "classes": json.dumps(list(meta["classes"])),
            "backbone": json.dumps(meta.get("backbone", {}), sort_keys=True),
            "data_root": str(meta["data_root"]),
            "dataset": meta.get("dataset", ""),
            "layout": meta.get("layout", ""),
            "split_source": meta.get("split_source", ""),
            "versions": json.dumps(library_versions()),
            "created": now(),
            "updated": now(),
            "complete": False,
        })
