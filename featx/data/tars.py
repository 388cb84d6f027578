"""WebDataset-style tar shards as input: ``--data 'shards/train-{000000..000099}.tar'``.

Millions of small JPEG files are slow on cluster file systems; a few large tar files are not.
A sample is the group of members sharing a *key* (the member path up to the first dot of its
file name): ``claude-monet/0001.jpg`` + ``claude-monet/0001.cls``. Its label is, in order, the
text of a ``.cls`` member, the ``label`` (or ``class``) of a ``.json`` member, the text of a
``.txt`` member, else the key's folder. The store ids are the keys. Images are read straight
from the tar at their recorded offset (uncompressed tars only, as WebDataset writes them), so
DataLoader workers read in parallel without unpacking anything. Standard library only.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .dataset import ImageDataset, Rows, is_image

LABEL_MEMBERS = ("cls", "json", "txt")
TAR_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")  # the {000..099} of a tar-shard pattern


def is_tar_spec(data: str | Path) -> bool:
    """WebDataset-style tar input: a ``.tar`` file or a brace pattern ``train-{000..009}.tar``."""
    text = str(data)
    return bool(TAR_RANGE.search(text)) or text.endswith((".tar", ".tar.gz", ".tgz"))


@dataclass(frozen=True)
class TarMember:
    """One image inside a tar file, readable without the tarfile module (offset and size)."""

    tar: str
    offset: int
    size: int
    name: str

    def open(self) -> io.BytesIO:
        with open(self.tar, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.size)
        if len(data) != self.size:
            raise OSError(f"{self}: truncated tar member")
        return io.BytesIO(data)

    def __str__(self) -> str:
        return f"{self.tar}:{self.name}"


def expand(spec: str) -> list[Path]:
    """``a-{000..002}.tar`` -> ``[a-000.tar, a-001.tar, a-002.tar]`` (zero padding kept; several ranges nest)."""
    m = TAR_RANGE.search(spec)
    if not m:
        return [Path(spec)]
    lo, hi = m.group(1), m.group(2)
    if int(hi) < int(lo):
        raise DataError(f"--data {spec}: the range {{{lo}..{hi}}} is empty; write {{low..high}}")
    width = len(lo) if lo.startswith("0") else 0
    out: list[Path] = []
    for k in range(int(lo), int(hi) + 1):
        out += expand(spec[:m.start()] + str(k).zfill(width) + spec[m.end():])
    return out


def _key(name: str) -> tuple[str, str]:
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def _label_text(tf: tarfile.TarFile, member: tarfile.TarInfo, ext: str) -> str | None:
    raw = tf.extractfile(member).read().decode("utf-8", "replace").strip()
    if ext != "json":
        return raw or None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    value = doc.get("label", doc.get("class")) if isinstance(doc, dict) else None
    return None if value is None else str(value)


def _scan(path: Path) -> dict[str, dict]:
    """key -> {"image": TarMember, "stat": (size, mtime_ns), "cls"/"json"/"txt": label text} of one tar."""
    samples: dict[str, dict] = {}
    try:
        with tarfile.open(path, "r:") as tf:
            for m in tf:
                if not m.isfile():
                    continue
                key, ext = _key(m.name)
                entry = samples.setdefault(key, {})
                if ext in LABEL_MEMBERS:
                    entry[ext] = _label_text(tf, m, ext)
                elif is_image(m.name):
                    if "image" in entry:
                        raise DataError(f"--data {path}: key {key!r} has two images ({entry['image'].name}, {m.name})")
                    entry["image"] = TarMember(str(path), m.offset_data, m.size, m.name)
                    entry["stat"] = (m.size, int(m.mtime) * 1_000_000_000)
    except tarfile.ReadError as exc:
        compressed = " (compressed tars cannot be read by offset: write them uncompressed)" \
            if path.suffix in (".gz", ".tgz") else ""
        raise DataError(f"--data {path}: not a readable tar file ({exc}){compressed}") from None
    return samples


def image_members(spec: str | Path) -> dict[str, TarMember]:
    """Key -> image member of every tar of ``spec`` that exists, as :func:`load_tar_dataset` finds them (a tar
    that is gone is skipped: its keys are simply absent). A tar that cannot be read raises :class:`DataError`."""
    found: dict[str, TarMember] = {}
    for path in expand(str(spec)):
        path = path.expanduser()
        if path.is_file():
            found.update((key, e["image"]) for key, e in _scan(path).items() if "image" in e)
    return found


def load_tar_dataset(spec: str | Path, seed: int, ratios) -> ImageDataset:
    """Discover the samples of every tar of ``spec`` (labels, hash split, member stats)."""
    paths = [p.expanduser() for p in expand(str(spec))]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"--data {spec}: {len(missing)} of {len(paths)} tar files missing, e.g. {missing[0]}")
    rows, members, where = Rows(), {}, {}
    for path in paths:
        for key, entry in _scan(path).items():
            if "image" not in entry:
                continue  # label-only or caption-only samples carry nothing to embed
            if key in where:
                raise DataError(f"--data {spec}: key {key!r} is in both {where[key].name} and {path.name}; "
                                "keys must be unique across shards")
            where[key] = path
            label = next((entry[e] for e in LABEL_MEMBERS if entry.get(e)), None) or key.rpartition("/")[0]
            if not label:
                raise DataError(f"--data {path}: sample {key!r} has no label (.cls/.json/.txt member or a folder in "
                                "its key)")
            rows.ids.append(key)
            rows.names.append(label)
            rows.stats.append((*entry["stat"], None))
            members[key] = entry["image"]
    root = paths[0].parent.resolve()
    spec_path = Path(str(spec)).expanduser()
    pattern = str(spec_path.parent.resolve() / spec_path.name)  # absolute, the {a..b} range kept
    ds = rows.dataset(root, "tar", seed, ratios, {"data": pattern, "tars": len(paths)}, f"in {len(paths)} tar file(s)")
    return ds.with_members(tuple(members[k] for k in ds.ids))
