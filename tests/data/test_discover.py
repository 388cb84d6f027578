"""Dataset discovery: layouts, stable ids, splits and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from featx.data.discover import load_dataset
from featx.data.splits import hash_split
from featx.errors import DataError
from helpers import rgb


def _folder(root, spec):
    for rel in spec:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        rgb(len(str(p))).save(p)
    return root


def test_class_folders_sorted_ids_and_hash_split(tmp_path):
    _folder(tmp_path, [f"cat/{i}.jpg" for i in range(10)] + [f"dog/{i}.png" for i in range(20)])
    ds = load_dataset(tmp_path)
    assert ds.classes == ("cat", "dog")
    assert list(ds.ids) == sorted(ds.ids)
    assert ds.labels.tolist() == [0] * 10 + [1] * 20
    assert set(ds.split) <= {"train", "val", "test"} and ds.split.count("train") >= 15
    assert load_dataset(tmp_path).split == ds.split  # seeded: stable
    assert load_dataset(tmp_path, split_seed=1).split != ds.split
    assert ds.source["split"] == {"kind": "hash", "seed": 0, "ratios": [0.8, 0.1, 0.1]}
    assert (ds.size > 0).all() and (ds.mtime_ns > 0).all()


def test_adding_images_never_moves_existing_ones_between_splits(tmp_path):
    _folder(tmp_path, [f"cat/{i}.jpg" for i in range(40)] + [f"dog/{i}.jpg" for i in range(40)])
    first = load_dataset(tmp_path)
    before = dict(zip(first.ids, first.split))
    _folder(tmp_path, [f"cat/new{i}.jpg" for i in range(30)] + [f"dog/new{i}.jpg" for i in range(5)])
    second = load_dataset(tmp_path)
    after = dict(zip(second.ids, second.split))
    assert len(after) == 115 and all(after[i] == s for i, s in before.items())
    halves = load_dataset(tmp_path, split_ratios=(0.5, 0.25, 0.25))
    assert 0.3 < halves.split.count("train") / len(halves) < 0.7


def test_hash_split_ratios_and_tiny_classes():
    ids = [f"c{c}/{i}.jpg" for c in range(2) for i in range(5000)]
    names = [i.split("/")[0] for i in ids]
    split = hash_split(ids, names, seed=3, ratios=(0.7, 0.2, 0.1))
    shares = [split.count(s) / len(ids) for s in ("train", "val", "test")]
    assert np.allclose(shares, (0.7, 0.2, 0.1), atol=0.02)
    with pytest.raises(DataError, match="--split-ratios"):
        hash_split(ids, names, ratios=(0.5, 0.5, 0.5))
    for seed in range(20):  # a class too small for the ratios still gets a train row
        tiny = hash_split(["a/1", "b/1", "b/2"], ["a", "b", "b"], seed=seed, ratios=(0.1, 0.45, 0.45))
        assert tiny[0] == "train" and "train" in tiny[1:]


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
    assert load_dataset(tmp_path / "n.csv").split_source.startswith("hash")
    assert len(ds.source["manifest_sha256"]) == 64


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

