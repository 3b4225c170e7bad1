"""Training data: label -> target mapping, over-sampling, sharding, augmentation, samples."""
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from pipeline import schemas
from pipeline.model import ModelConfig
from pipeline.training.augment import train_transform
from pipeline.training.dataset import ImageDataset, split_samples, targets_from_labels
from pipeline.training.sampling import oversample, shard


def test_targets_follow_the_mapping_params():
    labels = np.array([[1, -1, 0, np.nan]], np.float32)
    assert targets_from_labels(labels).tolist() == [[1, -1, -1, -1]]  # the authors' choice
    assert targets_from_labels(labels, "ignore", "ignore").tolist() == [[1, -1, 0, 0]]
    assert targets_from_labels(labels, "positive", "negative").tolist() == [[1, -1, 1, -1]]
    with pytest.raises(ValueError, match="unknown_as"):
        targets_from_labels(labels, "negative", "positive")
    with pytest.raises(ValueError, match="ambiguous_as"):
        targets_from_labels(labels, "maybe")


def test_oversampling_reaches_the_minimum_for_every_class_with_positives():
    rng = np.random.default_rng(0)
    t = -np.ones((200, 30), np.int8)
    for c in range(25):  # classes 25..29 never occur
        t[rng.choice(200, size=1 + c, replace=False), c] = 1
    idx = oversample(t, 40, seed=1)
    seen = (t[idx] > 0).sum(axis=0)
    assert (seen[:25] >= 40).all() and (seen[25:] == 0).all()
    assert set(range(200)) <= set(idx.tolist())  # every image still appears at least once
    assert not np.array_equal(idx, oversample(t, 40, seed=2))


def test_shards_are_equal_sized_disjoint_multiples_covering_everything():
    idx = np.arange(103)
    parts = [shard(idx, r, 2, multiple=8) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) and len(parts[0]) % 8 == 0
    assert set(np.concatenate(parts).tolist()) == set(range(103))


def _images(tmp_path, hois=(3, 5)):
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "a.jpg")
    rows = {"image_id": [0, 1], "split": ["train", "val"], "file_name": ["a.jpg"] * 2,
            "uri": [str(tmp_path / "a.jpg")] * 2, "width": [40, 40], "height": [30, 30],
            "positives": [[hois[0]], [hois[1]]], "negatives": [[1], []], "ambiguous": [[], [2]]}
    return schemas.conform(pa.table(rows), schemas.IMAGES, "images")


def test_samples_carry_targets_and_augmented_images(tmp_path):
    uris, labels, targets = split_samples(_images(tmp_path), "train", 600, "ignore", "ignore")
    assert targets[0, 3] == 1 and targets[0, 1] == -1 and targets[0, 2] == 0 and labels.shape == (1, 600)
    ds = ImageDataset(uris, targets, train_transform(ModelConfig(image_size=32)), indices=[0, 0, 0])
    x, y, row = ds[0]
    assert len(ds) == 3 and x.shape == (3, 32, 32) and y[3] == 1 and row == 0


def test_label_out_of_range_and_empty_split_are_named(tmp_path):
    with pytest.raises(ValueError, match="image_id 1.*700"):
        split_samples(_images(tmp_path, hois=(3, 700)), "val", 600, "negative", "negative")
    with pytest.raises(ValueError, match="no images of split 'test'"):
        split_samples(_images(tmp_path), "test", 600, "negative", "negative")


def test_unreadable_image_is_named(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    ds = ImageDataset([str(tmp_path / "bad.jpg")], np.zeros((1, 600), np.int8), lambda x: x)
    with pytest.raises(OSError, match="bad.jpg"):
        ds[0]
