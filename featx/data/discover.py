"""Labelled image datasets: discovery of ids, labels and splits (no torch).

Supported layouts, tried in this order:

* a CSV manifest ``path,label[,split]`` (paths relative to the CSV's folder);
* ``--label-from-name REGEX``: every image under the root, label = group 1 of the
  regex searched in the file name (WikiArt / "Best Artworks" naming);
* ``train/``, ``val/``, ``test/`` subfolders, each class-per-folder;
* class-per-folder.

Ids are POSIX paths relative to the data root, sorted, so they are stable across
runs and machines. When the layout carries no split, a seeded stratified split is
assigned (:func:`featx.data.splits.stratified_split`) and stored with the features.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .splits import DEFAULT_RATIOS, SPLIT_ALIASES, stratified_split

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"})


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image set. ``ids[i]`` is relative to ``root``; ``labels[i]`` indexes ``classes``."""

    root: Path
    ids: tuple[str, ...]
    labels: np.ndarray
    classes: tuple[str, ...]
    split: tuple[str, ...]
    layout: str
    split_source: str  # "folders", "manifest" or "stratified(seed=...)"

    @property
    def name(self) -> str:
        return self.root.name or "data"

    def path(self, i: int) -> Path:
        return self.root / self.ids[i]

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, keep: np.ndarray) -> "ImageDataset":
        """Rows where the boolean mask ``keep`` is true (same classes)."""
        idx = np.flatnonzero(keep)
        return ImageDataset(self.root, tuple(self.ids[i] for i in idx), self.labels[idx], self.classes,
                            tuple(self.split[i] for i in idx), self.layout, self.split_source)


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image(p))


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_dataset(
    data: str | Path,
    *,
    label_from_name: str | None = None,
    split_seed: int = 0,
    split_ratios: tuple[float, float, float] = DEFAULT_RATIOS,
) -> ImageDataset:
    """Discover the images and labels under ``data`` (a folder or a CSV manifest)."""
    data = Path(data).expanduser()
    if not data.exists():
        raise DataError(f"--data {data}: no such file or folder; point it at a class-per-folder image directory "
                        "or a CSV manifest")
    if data.is_file():
        if data.suffix.lower() != ".csv":
            raise DataError(f"--data {data}: a file must be a CSV manifest with columns path,label[,split]")
        return _from_manifest(data, split_seed, split_ratios)
    if label_from_name:
        return _from_names(data, label_from_name, split_seed, split_ratios)
    subdirs = {p.name.lower(): p for p in _class_folders(data)}
    split_dirs = {SPLIT_ALIASES[k]: v for k, v in subdirs.items() if k in SPLIT_ALIASES}
    if "train" in split_dirs and len(split_dirs) >= 2:
        return _from_split_folders(data, split_dirs)
    return _from_class_folders(data, split_seed, split_ratios)


def _check_classes(root: Path, counts: dict[str, int], where: str) -> None:
    if not counts:
        raise DataError(f"--data {root}: no images found (expected class folders of .jpg/.png files)")
    if len(counts) < 2:
        raise DataError(f"--data {root}: only one class ({next(iter(counts))!r}) {where}; "
                        "a classifier needs at least two")


def _from_class_folders(root: Path, seed: int, ratios) -> ImageDataset:
    folders = _class_folders(root)
    loose = [p for p in root.iterdir() if p.is_file() and is_image(p)]
    if not folders:
        if loose:
            raise DataError(f"--data {root}: images lie directly in the folder; put them in one sub-folder per "
                            "class, or pass --label-from-name REGEX or a CSV manifest")
        raise DataError(f"--data {root}: folder is empty (expected one sub-folder of images per class)")
    ids, names = [], []
    counts: dict[str, int] = {}
    for folder in folders:
        files = _images_under(folder)
        if not files:
            raise DataError(f"--data: class folder {folder} has no images (.jpg/.png/...); remove it or add images")
        counts[folder.name] = len(files)
        ids += [p.relative_to(root).as_posix() for p in files]
        names += [folder.name] * len(files)
    _check_classes(root, counts, "found in class folders")
    return _finish(root, ids, names, None, "class-folders", seed, ratios)


def _from_split_folders(root: Path, split_dirs: dict[str, Path]) -> ImageDataset:
    ids, names, splits = [], [], []
    counts: dict[str, int] = {}
    for split, sdir in split_dirs.items():
        folders = _class_folders(sdir)
        if not folders:
            raise DataError(f"--data: split folder {sdir} has no class sub-folders")
        for folder in folders:
            files = _images_under(folder)
            if not files:
                raise DataError(f"--data: class folder {folder} has no images (.jpg/.png/...); "
                                "remove it or add images")
            counts[folder.name] = counts.get(folder.name, 0) + len(files)
            ids += [p.relative_to(root).as_posix() for p in files]
            names += [folder.name] * len(files)
            splits += [split] * len(files)
    _check_classes(root, counts, "found in the split folders")
    return _finish(root, ids, names, splits, "split-folders", 0, DEFAULT_RATIOS)


def _from_names(root: Path, pattern: str, seed: int, ratios) -> ImageDataset:
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise DataError(f"--label-from-name {pattern!r}: invalid regex ({exc})") from None
    files = _images_under(root)
    if not files:
        raise DataError(f"--data {root}: no images found")
    ids, names, unmatched = [], [], []
    for p in files:
        m = rx.search(p.name)
        if not m:
            unmatched.append(p.name)
            continue
        ids.append(p.relative_to(root).as_posix())
        names.append(m.group(1) if m.groups() else m.group(0))
    if unmatched:
        raise DataError(f"--label-from-name {pattern!r}: {len(unmatched)} file name(s) do not match, "
                        f"e.g. {unmatched[0]!r}; fix the regex or move those files")
    _check_classes(root, {n: 1 for n in names}, f"from --label-from-name {pattern!r}")
    return _finish(root, ids, names, None, "label-from-name", seed, ratios)


def _from_manifest(csv_path: Path, seed: int, ratios) -> ImageDataset:
    root = csv_path.parent
    with csv_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        if "path" not in fields or "label" not in fields:
            raise DataError(f"--data {csv_path}: manifest needs a header with columns path,label[,split]; "
                            f"found {reader.fieldnames}")
        rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    if not rows:
        raise DataError(f"--data {csv_path}: manifest has no rows")
    has_split = "split" in fields
    ids, names, splits = [], [], []
    for lineno, row in enumerate(rows, start=2):
        rel = Path(row["path"])
        if rel.is_absolute():
            raise DataError(f"--data {csv_path}:{lineno}: path {row['path']!r} must be relative to the CSV's folder")
        ids.append(rel.as_posix())
        names.append(row["label"])
        if has_split:
            s = SPLIT_ALIASES.get(row["split"].lower())
            if s is None:
                raise DataError(f"--data {csv_path}:{lineno}: split {row['split']!r} is not one of train/val/test")
            splits.append(s)
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"--data {csv_path}: path {dup!r} is listed more than once")
    _check_classes(root, {n: 1 for n in names}, f"in {csv_path.name}")
    return _finish(root, ids, names, splits if has_split else None, "manifest", seed, ratios)


def _finish(root, ids, names, splits, layout, seed, ratios) -> ImageDataset:
    order = sorted(range(len(ids)), key=ids.__getitem__)
    ids = [ids[i] for i in order]
    names = [names[i] for i in order]
    classes = tuple(sorted(set(names)))
    index = {c: k for k, c in enumerate(classes)}
    labels = np.array([index[n] for n in names], dtype=np.int64)
    if splits is not None:
        split = tuple(splits[i] for i in order)
        source = "folders" if layout == "split-folders" else "manifest"
    else:
        split = stratified_split(labels, seed=seed, ratios=ratios)
        source = f"stratified(seed={seed}, ratios={list(ratios)})"
    return ImageDataset(root.resolve(), tuple(ids), labels, classes, split, layout, source)
