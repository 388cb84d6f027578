"""Labelled image datasets: discovery of ids, labels, splits and file stats (no torch).

Supported layouts, tried in this order:

* a CSV manifest ``path,label[,split]`` (paths relative to the CSV's folder);
* ``--label-from-name REGEX``: every image under the root, label = group 1 of the
  regex searched in the file name (WikiArt / "Best Artworks" naming);
* ``train/``, ``val/``, ``test/`` subfolders, each class-per-folder;
* class-per-folder.

Ids are POSIX paths relative to the data root, sorted, so they are stable across
runs and machines; names that are not UTF-8 keep their bytes (``os.fsdecode``'s
surrogate escapes). Symlinked files and folders are followed (each real folder once);
a file reached by several paths (symlinks, hard links) is one row, under its first id
in sorted order. Hidden files and folders (``.name``) are skipped. Each row carries
the file's size and modification time (ns), which the store uses to see changed
files. When the layout carries no split, a seeded hash split is assigned
(:func:`featx.data.splits.hash_split`) and stored with the features.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .splits import DEFAULT_RATIOS, SPLIT_ALIASES, check_ratios, hash_split

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"})
NO_STAT = (-1, -1, None)  # size, mtime_ns, (dev, inode) of a file that cannot be stat'ed


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image set. ``ids[i]`` is relative to ``root``; ``labels[i]`` indexes ``classes``.

    ``size`` and ``mtime_ns`` are the files' stats at discovery (-1 when missing);
    ``source`` says how labels and splits were derived (recorded in the store).
    """

    root: Path
    ids: tuple[str, ...]
    labels: np.ndarray
    classes: tuple[str, ...]
    split: tuple[str, ...]
    layout: str
    split_source: str  # "folders", "manifest" or "hash(seed=..., ratios=...)"
    size: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    mtime_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    source: dict = field(default_factory=dict)
    members: tuple = ()  # images inside tar files (:class:`featx.data.tars.TarMember`), aligned with ids

    @property
    def name(self) -> str:
        return self.root.name or "data"

    def path(self, i: int) -> Path:
        """What to read for item ``i``: its file, or its member of a tar file."""
        return self.members[i] if self.members else self.root / self.ids[i]

    def with_members(self, members: tuple) -> "ImageDataset":
        return dataclasses.replace(self, members=members)

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, keep: np.ndarray) -> "ImageDataset":
        """Rows where the boolean mask ``keep`` is true (same classes)."""
        idx = np.flatnonzero(keep)
        return ImageDataset(self.root, tuple(self.ids[i] for i in idx), self.labels[idx], self.classes,
                            tuple(self.split[i] for i in idx), self.layout, self.split_source, self.size[idx],
                            self.mtime_ns[idx], self.source, tuple(self.members[i] for i in idx) if self.members else ())


_SUFFIXES = frozenset(e[1:] for e in IMAGE_EXTENSIONS)


def is_image(name: str) -> bool:
    head, dot, ext = name.rpartition(".")
    return bool(dot and head) and ext.lower() in _SUFFIXES and not name.startswith(".")


def _stat_row(st: os.stat_result) -> tuple[int, int, tuple[int, int]]:
    return st.st_size, st.st_mtime_ns, (st.st_dev, st.st_ino)


def file_stat(path: str | Path) -> tuple[int, int, tuple[int, int] | None]:
    """(size, mtime_ns, (dev, inode)) of ``path`` following symlinks, or :data:`NO_STAT`."""
    try:
        return _stat_row(os.stat(path))
    except OSError:
        return NO_STAT


HASH_ALGO = "blake2b-128"


def file_digest(path: str | Path) -> str:
    """Content hash of a file (:data:`HASH_ALGO`, hex), or "" when it cannot be read."""
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return ""
    return h.hexdigest()


def _images_under(folder: Path, root: Path) -> list[tuple[str, tuple]]:
    """(id relative to ``root``, stat) of every image under ``folder``, sorted, following symlinks (each real
    folder once). Strings throughout: a 100k-file tree costs one ``stat`` per file, not pathlib objects.

    A dangling symlink with an image name is kept (with :data:`NO_STAT`): it fails when read and
    is recorded as such, instead of vanishing.
    """
    found: list[tuple[str, tuple]] = []
    seen: set[tuple[int, int]] = set()

    def walk(d: str, rel: str) -> None:
        try:
            st = os.stat(d)
            if (st.st_dev, st.st_ino) in seen:
                return
            seen.add((st.st_dev, st.st_ino))
            entries = list(os.scandir(d))
        except OSError:
            return
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                is_dir = e.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                walk(e.path, rel + e.name + "/")
            elif is_image(e.name):
                try:
                    found.append((rel + e.name, _stat_row(e.stat())))
                except OSError:
                    if e.is_symlink():
                        found.append((rel + e.name, NO_STAT))

    prefix = folder.relative_to(root).as_posix() + "/" if folder != root else ""
    walk(str(folder), prefix)
    found.sort(key=lambda t: t[0])
    return found


TAR_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")  # the {000..099} of a tar-shard pattern


def is_tar_spec(data: str | Path) -> bool:
    """WebDataset-style tar input: a ``.tar`` file or a brace pattern ``train-{000..009}.tar``."""
    text = str(data)
    return bool(TAR_RANGE.search(text)) or text.endswith((".tar", ".tar.gz", ".tgz"))


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_dataset(
    data: str | Path,
    *,
    label_from_name: str | None = None,
    split_seed: int = 0,
    split_ratios: tuple[float, float, float] = DEFAULT_RATIOS,
) -> ImageDataset:
    """Discover the images, labels and file stats under ``data`` (a folder or a CSV manifest)."""
    ratios = check_ratios(split_ratios)
    if is_tar_spec(data):
        from .tars import load_tar_dataset

        if label_from_name:
            raise DataError("--label-from-name: tar shards take labels from .cls/.json/.txt members or key folders")
        return load_tar_dataset(data, split_seed, ratios)
    data = Path(data).expanduser()
    if not data.exists():
        raise DataError(f"--data {data}: no such file or folder; point it at a class-per-folder image directory "
                        "or a CSV manifest")
    if data.is_file():
        if data.suffix.lower() != ".csv":
            raise DataError(f"--data {data}: a file must be a CSV manifest with columns path,label[,split]")
        return _from_manifest(data, split_seed, ratios)
    if label_from_name:
        return _from_names(data, label_from_name, split_seed, ratios)
    subdirs = {p.name.lower(): p for p in _class_folders(data)}
    split_dirs = {SPLIT_ALIASES[k]: v for k, v in subdirs.items() if k in SPLIT_ALIASES}
    if "train" in split_dirs and len(split_dirs) >= 2:
        return _from_split_folders(data, split_dirs)
    return _from_class_folders(data, split_seed, ratios)


def reload_dataset(source: dict) -> ImageDataset:
    """Discover the data again from a store's recorded ``source`` (same root, labels and split rule)."""
    split = source.get("split", {})
    return load_dataset(source["data"], label_from_name=source.get("label_from_name"),
                        split_seed=int(split.get("seed", 0)), split_ratios=tuple(split.get("ratios", DEFAULT_RATIOS)))


@dataclass
class _Rows:
    """Rows gathered by a layout reader before sorting."""

    ids: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    stats: list[tuple] = field(default_factory=list)

    def add_files(self, files: list[tuple[str, tuple]], name: str, split: str | None = None) -> None:
        self.ids += [rel for rel, _ in files]
        self.names += [name] * len(files)
        self.stats += [st for _, st in files]
        if split:
            self.splits += [split] * len(files)


def _check_classes(root: Path, counts: dict[str, int], where: str) -> None:
    if not counts:
        raise DataError(f"--data {root}: no images found (expected class folders of .jpg/.png files)")
    if len(counts) < 2:
        raise DataError(f"--data {root}: only one class ({next(iter(counts))!r}) {where}; "
                        "a classifier needs at least two")


def _class_files(folder: Path, root: Path) -> list[tuple[str, tuple]]:
    files = _images_under(folder, root)
    if not files:
        raise DataError(f"--data: class folder {folder} has no images (.jpg/.png/...); remove it or add images")
    return files


def _from_class_folders(root: Path, seed: int, ratios) -> ImageDataset:
    folders = _class_folders(root)
    if not folders:
        if any(p.is_file() and is_image(p.name) for p in root.iterdir()):
            raise DataError(f"--data {root}: images lie directly in the folder; put them in one sub-folder per "
                            "class, or pass --label-from-name REGEX or a CSV manifest")
        raise DataError(f"--data {root}: folder is empty (expected one sub-folder of images per class)")
    rows = _Rows()
    for folder in folders:
        rows.add_files(_class_files(folder, root), folder.name)
    return _finish(root, rows, "class-folders", seed, ratios, {"data": str(root.resolve())}, "found in class folders")


def _from_split_folders(root: Path, split_dirs: dict[str, Path]) -> ImageDataset:
    rows = _Rows()
    for split, sdir in split_dirs.items():
        folders = _class_folders(sdir)
        if not folders:
            raise DataError(f"--data: split folder {sdir} has no class sub-folders")
        for folder in folders:
            rows.add_files(_class_files(folder, root), folder.name, split)
    return _finish(root, rows, "split-folders", 0, DEFAULT_RATIOS, {"data": str(root.resolve())},
                   "found in the split folders")


def _from_names(root: Path, pattern: str, seed: int, ratios) -> ImageDataset:
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise DataError(f"--label-from-name {pattern!r}: invalid regex ({exc})") from None
    files = _images_under(root, root)
    if not files:
        raise DataError(f"--data {root}: no images found")
    rows, unmatched = _Rows(), []
    for rel, st in files:
        name = rel.rsplit("/", 1)[-1]
        m = rx.search(name)
        if not m:
            unmatched.append(name)
            continue
        rows.add_files([(rel, st)], m.group(1) if m.groups() else m.group(0))
    if unmatched:
        raise DataError(f"--label-from-name {pattern!r}: {len(unmatched)} file name(s) do not match, "
                        f"e.g. {unmatched[0]!r}; fix the regex or move those files")
    return _finish(root, rows, "label-from-name", seed, ratios,
                   {"data": str(root.resolve()), "label_from_name": pattern}, f"from --label-from-name {pattern!r}")


def _from_manifest(csv_path: Path, seed: int, ratios) -> ImageDataset:
    root = csv_path.parent
    with csv_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        if "path" not in fields or "label" not in fields:
            raise DataError(f"--data {csv_path}: manifest needs a header with columns path,label[,split]; "
                            f"found {reader.fieldnames}")
        lines = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    if not lines:
        raise DataError(f"--data {csv_path}: manifest has no rows")
    has_split = "split" in fields
    rows = _Rows()
    for lineno, line in enumerate(lines, start=2):
        rel = Path(line["path"])
        if rel.is_absolute():
            raise DataError(f"--data {csv_path}:{lineno}: path {line['path']!r} must be relative to the CSV's folder")
        rows.ids.append(rel.as_posix())
        rows.names.append(line["label"])
        rows.stats.append(file_stat(root / rel))
        if has_split:
            s = SPLIT_ALIASES.get(line["split"].lower())
            if s is None:
                raise DataError(f"--data {csv_path}:{lineno}: split {line['split']!r} is not one of train/val/test")
            rows.splits.append(s)
    if len(set(rows.ids)) != len(rows.ids):
        dup = next(i for i in rows.ids if rows.ids.count(i) > 1)
        raise DataError(f"--data {csv_path}: path {dup!r} is listed more than once")
    columns = sorted(zip(rows.ids, rows.names, rows.splits or [""] * len(rows.ids)))
    digest = hashlib.sha256("\n".join("\t".join(c) for c in columns).encode("utf-8", "surrogateescape"))
    return _finish(root, rows, "manifest", seed, ratios,
                   {"data": str(csv_path.resolve()), "manifest_sha256": digest.hexdigest()}, f"in {csv_path.name}")


def _dedupe(rows: _Rows, order: list[int]) -> list[int]:
    """``order`` without later paths to a file already reached (same device and inode)."""
    seen: set = set()
    keep = []
    for i in order:
        key = rows.stats[i][2]
        if key is not None:
            if key in seen:
                continue
            seen.add(key)
        keep.append(i)
    return keep


def _finish(root: Path, rows: _Rows, layout: str, seed: int, ratios, source: dict, where: str) -> ImageDataset:
    order = _dedupe(rows, sorted(range(len(rows.ids)), key=rows.ids.__getitem__))
    ids = [rows.ids[i] for i in order]
    names = [rows.names[i] for i in order]
    _check_classes(root, {n: 1 for n in names}, where)
    classes = tuple(sorted(set(names)))
    index = {c: k for k, c in enumerate(classes)}
    labels = np.array([index[n] for n in names], dtype=np.int64)
    if rows.splits:
        split = tuple(rows.splits[i] for i in order)
        split_source = "folders" if layout == "split-folders" else "manifest"
        source["split"] = {"kind": split_source}
    else:
        split = hash_split(ids, names, seed=seed, ratios=ratios)
        split_source = f"hash(seed={seed}, ratios={list(ratios)})"
        source["split"] = {"kind": "hash", "seed": seed, "ratios": list(ratios)}
    size = np.array([rows.stats[i][0] for i in order], dtype=np.int64)
    mtime = np.array([rows.stats[i][1] for i in order], dtype=np.int64)
    return ImageDataset(root.resolve(), tuple(ids), labels, classes, split, layout, split_source, size, mtime,
                        {"layout": layout, **source})
