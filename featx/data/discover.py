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
import hashlib
import os
import re
from pathlib import Path

from ..errors import DataError
from .dataset import ImageDataset, Rows, is_image
from .splits import DEFAULT_RATIOS, SPLIT_ALIASES, check_ratios
from .tars import is_tar_spec, load_tar_dataset

NO_STAT = (-1, -1, None)  # size, mtime_ns, (dev, inode) of a file that cannot be stat'ed


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
    rows = Rows()
    for folder in folders:
        rows.add_files(_class_files(folder, root), folder.name)
    return rows.dataset(root, "class-folders", seed, ratios, {"data": str(root.resolve())}, "found in class folders")


def _from_split_folders(root: Path, split_dirs: dict[str, Path]) -> ImageDataset:
    rows = Rows()
    for split, sdir in split_dirs.items():
        folders = _class_folders(sdir)
        if not folders:
            raise DataError(f"--data: split folder {sdir} has no class sub-folders")
        for folder in folders:
            rows.add_files(_class_files(folder, root), folder.name, split)
    return rows.dataset(root, "split-folders", 0, DEFAULT_RATIOS, {"data": str(root.resolve())},
                   "found in the split folders")


def _from_names(root: Path, pattern: str, seed: int, ratios) -> ImageDataset:
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise DataError(f"--label-from-name {pattern!r}: invalid regex ({exc})") from None
    files = _images_under(root, root)
    if not files:
        raise DataError(f"--data {root}: no images found")
    rows, unmatched = Rows(), []
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
    return rows.dataset(root, "label-from-name", seed, ratios,
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
    rows = Rows()
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
    return rows.dataset(root, "manifest", seed, ratios,
                   {"data": str(csv_path.resolve()), "manifest_sha256": digest.hexdigest()}, f"in {csv_path.name}")


