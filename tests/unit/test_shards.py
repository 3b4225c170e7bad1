"""Training images packed into tar shards (pipeline/datasets/shards.py): the loader's batches are the same,
bit for bit, as reading one file per image; a pack at a URI is fetched shard by shard into a local cache and
read from there; bad reads name the image."""
from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.datasets.shards import ShardReader, pack, pack_split
from pipeline.model import ModelConfig
from pipeline.storage import filesystem, write_parquet
from pipeline.training.loader import Samples, make_loader, train_data
from pipeline.training.sampling import epoch_samples, split_batch
from tests.training_inputs import tiny_config, tiny_images


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return tiny_images(tmp_path_factory.mktemp("images"), n_train=12, n_val=2)


def batches(images, cfg, processes):
    """The training loader's epoch-1 batches as the recipe builds them (augmented on the CPU as on a device)."""
    train = images.filter(np.array(images["split"].to_pylist()) == "train")
    uris, targets = train["uri"].to_pylist(), np.zeros((train.num_rows, 5), np.int8)
    split = split_batch(4, 1, 4)
    dataset, collate, augment = train_data(uris, targets, ModelConfig.from_dict(cfg["model"]), cfg, torch.device("cpu"))
    samples = Samples()
    samples.set(epoch_samples(targets, 0, cfg["seed"], 1, split, 0))
    out = []
    for x, _, rows in make_loader(dataset, split.micro_batch, processes, collate, samples):
        out.append((augment(x, torch.device("cpu")) if augment else x, rows))
    return out


@pytest.mark.parametrize("augment", ["pil", "batch"])
def test_the_loader_gives_the_same_batches_from_shards_as_from_files(images, tmp_path, augment):
    uris = images["uri"].to_pylist()
    index = pack(uris, str(tmp_path / "pack"), shard_bytes=8_000)  # ~3 images per shard: several shards
    assert index["uri"].to_pylist() == uris and len(set(index["shard"].to_pylist())) >= 4
    with tarfile.open(tmp_path / "pack" / index["shard"][0].as_py()) as tar:  # plain tar, WebDataset names
        assert tar.getnames()[0] == "00000000.jpg" and tar.extractfile(tar.getmembers()[0]).read() == \
            open(uris[0], "rb").read()
    cfg = tiny_config(augment=augment)
    files = batches(images, cfg, 0)
    folder = Path(uris[0]).parent
    folder.rename(folder.with_name("away"))  # the pack alone must serve the images
    try:
        packed = batches(images, cfg | {"shards": str(tmp_path / "pack")}, 1)  # read in a loader process
    finally:
        folder.with_name("away").rename(folder)
    assert len(files) == len(packed) == 3
    for (a, rows_a), (b, rows_b) in zip(files, packed):
        assert torch.equal(rows_a, rows_b) and torch.equal(a, b)


def test_a_pack_at_a_uri_is_fetched_once_per_shard_and_checked(images, tmp_path):
    uris = images["uri"].to_pylist()
    target = f"memory://defr-test-{tmp_path.name}/pack"
    pack(uris, target, shard_bytes=8_000)
    reader = ShardReader(target, cache=str(tmp_path / "cache"))
    assert [reader.read(u) for u in uris] == [open(u, "rb").read() for u in uris]
    fs, path = filesystem(target)
    shards = sorted(p.rsplit("/", 1)[1] for p in fs.ls(path, detail=False) if p.endswith(".tar"))
    assert sorted(p.name for p in reader._folder.glob("*.tar")) == shards  # every shard fetched into the cache
    for shard in shards:
        fs.rm_file(f"{path}/{shard}")
    assert reader.read(uris[5]) == open(uris[5], "rb").read()  # from the cache: the bucket is not asked again
    with pytest.raises(OSError, match=r"image /nowhere\.jpg is not in the pack at memory://"):
        reader.read("/nowhere.jpg")
    shard = reader._folder / reader._index[uris[1]][0]
    data = bytearray(shard.read_bytes())
    data[reader._index[uris[1]][1] + 100] ^= 0xFF
    shard.write_bytes(bytes(data))
    fresh = ShardReader(target, cache=str(tmp_path / "cache"))
    with pytest.raises(OSError, match=f"image {uris[1]}: .* damaged"):
        fresh.read(uris[1])


def test_pack_split_packs_once_and_again_when_images_change(images, tmp_path):
    table = tmp_path / "images.parquet"
    write_parquet(images, table)
    target = str(tmp_path / "pack")
    assert pack_split(str(table), "train", target, shard_bytes=8_000).startswith("packed the 12 train images")
    assert "packed at" in pack_split(str(table), "train", target)
    write_parquet(images.set_column(1, "split", [["train"] * images.num_rows]), table)  # 2 more images
    assert pack_split(str(table), "train", target).startswith("packed the 14 train images")
