"""Dataset discovery: layouts, stable ids, splits and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from featx.data.discover import load_dataset
from featx.data.splits import stratified_split
from featx.errors import DataError
from helpers import rgb


def _folder(root, spec):
    for rel in spec:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        rgb(len(str(p))).save(p)
    return root


def test_class_folders_sorted_ids_and_stratified_split(tmp_path):
    _folder(tmp_path, [f"cat/{i}.jpg" for i in range(10)] + [f"dog/{i}.png" for i in range(20)])
    ds = load_dataset(tmp_path)
    assert ds.classes == ("cat", "dog")
    assert list(ds.ids) == sorted(ds.ids)
    assert ds.labels.tolist() == [0] * 10 + [1] * 20
    counts = {(c, s): sum(1 for lab, sp in zip(ds.labels, ds.split) if lab == c and sp == s)
              for c in (0, 1) for s in ("train", "val", "test")}
    assert counts == {(0, "train"): 8, (0, "val"): 1, (0, "test"): 1, (1, "train"): 16, (1, "val"): 2,
                      (1, "test"): 2}
    assert load_dataset(tmp_path).split == ds.split  # seeded: stable
    assert load_dataset(tmp_path, split_seed=1).split != ds.split


def test_split_folders(monet_dir):
    ds = load_dataset(monet_dir)
    assert len(ds) == 600 and ds.classes == ("alfred-sisley", "claude-monet")
    assert {s: ds.split.count(s) for s in ("train", "val", "test")} == {"train": 480, "val": 60, "test": 60}
    assert ds.split_source == "folders"
    assert all(i.split("/")[0] == s for i, s in zip(ds.ids, ds.split))


def test_manifest_with_and_without_split(tmp_path):
    _folder(tmp_path, ["img/a1.jpg", "img/a2.jpg", "img/b1.jpg", "img/b2.jpg"])
    (tmp_path / "m.csv").write_text("path,label,split\nimg/b1.jpg,b,train\nimg/a1.jpg,a,train\n"
                                    "img/a2.jpg,a,test\nimg/b2.jpg,b,valid\n")
    ds = load_dataset(tmp_path / "m.csv")
    assert ds.ids == ("img/a1.jpg", "img/a2.jpg", "img/b1.jpg", "img/b2.jpg")
    assert ds.split == ("train", "test", "train", "val")
    assert ds.labels.tolist() == [0, 0, 1, 1]
    (tmp_path / "n.csv").write_text("path,label\nimg/a1.jpg,a\nimg/b1.jpg,b\n")
    assert load_dataset(tmp_path / "n.csv").split_source.startswith("stratified")


def test_label_from_name(tmp_path):
    _folder(tmp_path, ["claude-monet_water-lilies.jpg", "claude-monet_haystacks.jpg", "sub/alfred-sisley_flood.jpg"])
    ds = load_dataset(tmp_path, label_from_name=r"^(.+?)_")
    assert ds.classes == ("alfred-sisley", "claude-monet")
    assert dict(zip(ds.ids, ds.labels.tolist()))["sub/alfred-sisley_flood.jpg"] == 0
    with pytest.raises(DataError, match="do not match"):
        load_dataset(tmp_path, label_from_name=r"^(\d+)_")
    with pytest.raises(DataError, match="invalid regex"):
        load_dataset(tmp_path, label_from_name=r"(")


@pytest.mark.parametrize("case,match", [
    ("missing", "no such file or folder"),
    ("empty", "folder is empty"),
    ("no_images", "has no images"),
    ("one_class", "only one class"),
    ("loose", "directly in the folder"),
])
def test_dataset_errors(tmp_path, case, match):
    root = tmp_path / "data"
    if case != "missing":
        root.mkdir()
    if case == "no_images":
        _folder(root, ["a/1.jpg"])
        (root / "b").mkdir()
        (root / "b" / "notes.txt").write_text("x")
    if case == "one_class":
        _folder(root, ["a/1.jpg", "a/2.jpg"])
    if case == "loose":
        _folder(root, ["1.jpg"])
    with pytest.raises(DataError, match=match):
        load_dataset(root)


def test_stratified_split_tiny_classes_keep_train():
    labels = np.array([0, 1, 1, 2, 2, 2])
    split = stratified_split(labels, seed=3)
    for c in (0, 1, 2):
        assert "train" in [s for s, lab in zip(split, labels) if lab == c]
