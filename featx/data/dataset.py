"""What discovery produces: :class:`ImageDataset`, and the :class:`Rows` every layout reader
(folders, manifest, names, tar shards) gathers and turns into one, sorted, deduplicated and split."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .splits import hash_split

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"})
_SUFFIXES = frozenset(e[1:] for e in IMAGE_EXTENSIONS)


def is_image(name: str) -> bool:
    head, dot, ext = name.rpartition(".")
    return bool(dot and head) and ext.lower() in _SUFFIXES and not name.startswith(".")


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
                            self.mtime_ns[idx], self.source,
                            tuple(self.members[i] for i in idx) if self.members else ())


@dataclass
class Rows:
    """Rows gathered by a layout reader before sorting: id, label name, split (all or none), stat."""

    ids: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    stats: list[tuple] = field(default_factory=list)  # (size, mtime_ns, (dev, inode) or None)

    def add_files(self, files: list[tuple[str, tuple]], name: str, split: str | None = None) -> None:
        self.ids += [rel for rel, _ in files]
        self.names += [name] * len(files)
        self.stats += [st for _, st in files]
        if split:
            self.splits += [split] * len(files)

    def dataset(self, root: Path, layout: str, seed: int, ratios, source: dict, where: str) -> ImageDataset:
        """The rows sorted by id, one per file, labelled, split (their own, else the seeded hash split);
        ``source`` (extended with the split rule) says how; ``where`` ends the too-few-classes error."""
        order = self._dedupe(sorted(range(len(self.ids)), key=self.ids.__getitem__))
        ids = [self.ids[i] for i in order]
        names = [self.names[i] for i in order]
        _check_classes(root, {n: 1 for n in names}, where)
        classes = tuple(sorted(set(names)))
        index = {c: k for k, c in enumerate(classes)}
        labels = np.array([index[n] for n in names], dtype=np.int64)
        if self.splits:
            split = tuple(self.splits[i] for i in order)
            split_source = "folders" if layout == "split-folders" else "manifest"
            source["split"] = {"kind": split_source}
        else:
            split = hash_split(ids, names, seed=seed, ratios=ratios)
            split_source = f"hash(seed={seed}, ratios={list(ratios)})"
            source["split"] = {"kind": "hash", "seed": seed, "ratios": list(ratios)}
        size = np.array([self.stats[i][0] for i in order], dtype=np.int64)
        mtime = np.array([self.stats[i][1] for i in order], dtype=np.int64)
        return ImageDataset(root.resolve(), tuple(ids), labels, classes, split, layout, split_source, size, mtime,
                            {"layout": layout, **source})

    def _dedupe(self, order: list[int]) -> list[int]:
        """``order`` without later paths to a file already reached (same device and inode)."""
        seen: set = set()
        keep = []
        for i in order:
            key = self.stats[i][2]
            if key is not None:
                if key in seen:
                    continue
                seen.add(key)
            keep.append(i)
        return keep


def _check_classes(root: Path, counts: dict[str, int], where: str) -> None:
    if not counts:
        raise DataError(f"--data {root}: no images found (expected class folders of .jpg/.png files)")
    if len(counts) < 2:
        raise DataError(f"--data {root}: only one class ({next(iter(counts))!r}) {where}; "
                        "a classifier needs at least two")
