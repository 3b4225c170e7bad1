"""Training data: label -> target mapping, over-sampling, sharding, augmentation, samples."""
import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

from pipeline import schemas
from pipeline.model import ModelConfig
from pipeline.training.augment import train_transform
from pipeline.training.dataset import ImageDataset, split_samples, targets_from_labels
from pipeline.training.sampling import BatchSplit, epoch_samples, oversample, split_batch


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


def test_each_step_trains_the_same_samples_and_draws_for_any_split_of_the_global_batch():
    targets = np.where(np.random.default_rng(0).random((103, 4)) < 0.3, 1, -1).astype(np.int8)

    def steps(split: BatchSplit, start_step: int = 0) -> list[set]:
        """Per optimizer step: the (row, seed) pairs all workers train in it."""
        shares = [epoch_samples(targets, 0, 7, 3, split, r, start_step).reshape(-1, split.per_worker, 2)
                  for r in range(split.workers)]
        assert len({s.shape for s in shares}) == 1  # equal shares keep DDP's collectives in step
        return [{tuple(x) for s in shares for x in s[k].tolist()} for k in range(len(shares[0]))]

    one = steps(BatchSplit(1, 2, 4))
    assert len(one) == 13 and all(len(s) == 8 for s in one)  # 103 samples padded to 13 global batches of 8
    assert {r for s in one for r, _ in s} == set(range(103))
    assert steps(BatchSplit(4, 1, 2)) == one == steps(BatchSplit(2, 4, 1))
    assert steps(BatchSplit(2, 2, 2), start_step=5) == one[5:]  # the rest of an epoch: the same draws
    seeds = [seed for s in one for _, seed in s]
    assert len(set(seeds)) == len(seeds)  # a padded repeat of a row still draws its own augmentation
    other = epoch_samples(targets, 0, 7, 4, BatchSplit(1, 2, 4), 0)
    assert not set(other[:, 1].tolist()) & set(seeds)  # another epoch, other draws


@pytest.mark.parametrize("batch, workers, cap, split", [(128, 8, 32, (8, 16, 1)), (128, 4, 32, (4, 32, 1)),
                                                        (128, 1, 32, (1, 32, 4)), (24, 2, 32, (2, 12, 1)),
                                                        (96, 3, 20, (3, 16, 2)), (74, 2, 32, (2, 1, 37))])
def test_the_global_batch_splits_into_full_micro_batches_of_at_most_the_cap(batch, workers, cap, split):
    got = split_batch(batch, workers, cap)
    assert (got.workers, got.micro_batch, got.accumulation) == split and got.global_batch == batch


def test_a_global_batch_that_does_not_divide_by_the_workers_is_refused_with_the_nearest_choices():
    with pytest.raises(ValueError, match=r"train.global_batch = 25 .* placement.train.num_workers = 2 .*"
                                         r"nearest valid train.global_batch 24 or 26, or placement.train.num_workers 1 or 5"):
        split_batch(25, 2, 32)
    with pytest.raises(ValueError, match="global_batch 126 or 129, or placement.train.num_workers 2 or 4"):
        split_batch(128, 3, 32)


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
    # a training key (row, seed): the transform's draws depend on the seed alone, and leave torch's generator be
    state = torch.get_rng_state()
    assert torch.equal(ds[(0, 5)][0], ds[(0, 5)][0]) and not torch.equal(ds[(0, 5)][0], ds[(0, 6)][0])
    assert torch.equal(torch.get_rng_state(), state)


def test_a_training_sample_seeds_the_cpu_generator_alone(tmp_path, monkeypatch):
    """No device generator is reseeded per sample: torch.manual_seed would queue a CUDA seed (with the
    caller's formatted stack: a sixth of a Ray Train worker's step on the CPU demo) or, in a GPU process,
    reset the device's generator outside what fork_rng puts back."""
    uris, _, targets = split_samples(_images(tmp_path), "train", 600, "ignore", "ignore")
    draws = []
    ds = ImageDataset(uris, targets, lambda image: draws.append(torch.rand(3)) or image)
    reseeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: reseeded.append(seed))
    ds[(0, 5)]
    assert reseeded == [] and torch.equal(draws[0], torch.rand(3, generator=torch.Generator().manual_seed(5)))


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


def test_an_input_bound_epoch_names_the_knob_only_where_a_cpu_is_idle():
    from pipeline.training.recipe import data_wait_warning

    assert data_wait_warning(0.1, 0, idle_cpus=4) is None  # fed
    assert data_wait_warning(0.6, 0, idle_cpus=0) is None  # no CPU for another loader process
    message = data_wait_warning(0.6, 2, idle_cpus=3)
    assert "60%" in message and "placement.train.loader_workers" in message and "2 loader processes" in message
