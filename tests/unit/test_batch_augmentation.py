"""The split augmentation (crop in the loader, the rest per batch on the device) keeps today's distribution:
crop area and aspect, flip rate and colour statistics compared with the PIL transform on a fixed seed."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.model import ModelConfig
from pipeline.training.augment import train_transform
from pipeline.training.batch_augmentation import BatchAugmentation, CropReader, collate_crops

W, H, S, N = 320, 240, 64, 400
CPU = torch.device("cpu")


def jpeg(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="JPEG", quality=100, subsampling=0)
    return out.getvalue()


def coordinate_image() -> bytes:
    """R encodes x, G encodes y: the output pixels say where the crop came from and whether it was flipped."""
    x = np.linspace(0, 255, W)[None, :].repeat(H, 0)
    y = np.linspace(0, 255, H)[:, None].repeat(W, 1)
    return jpeg(np.stack([x, y, np.full_like(x, 128)], -1).round().astype(np.uint8))


def colour_image() -> bytes:
    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    return jpeg(np.asarray(small.resize((W, H), Image.BICUBIC)))


def old_outputs(data: bytes, jitter: float, seed: int = 0) -> torch.Tensor:
    """Today's transform, de-normalised to [0, 1]."""
    config = ModelConfig(image_size=S)
    t = train_transform(config, crop_scale=0.5, jitter=jitter)
    torch.manual_seed(seed)
    out = torch.stack([t(Image.open(io.BytesIO(data))) for _ in range(N)])
    return out * torch.tensor(config.std).view(1, 3, 1, 1) + torch.tensor(config.mean).view(1, 3, 1, 1)


def new_outputs(data: bytes, jitter: float, seed: int = 0, n: int = N) -> torch.Tensor:
    config = ModelConfig(image_size=S)
    reader = CropReader(S, 0.5)
    torch.manual_seed(seed)
    items, _, _ = collate_crops([(reader(data), torch.zeros(1), i) for i in range(n)])
    out = BatchAugmentation(S, config.mean, config.std, jitter)(items, CPU)
    return out * torch.tensor(config.std).view(1, 3, 1, 1) + torch.tensor(config.mean).view(1, 3, 1, 1)


def crop_geometry(out: torch.Tensor) -> dict[str, np.ndarray]:
    """Per image: area fraction and aspect of the crop, and whether it was flipped, from the coordinate image."""
    r = out[:, 0].numpy() * (W - 1)
    g = out[:, 1].numpy() * (H - 1)
    mid_r, mid_c = S // 2, S // 2
    left, right = r[:, mid_r, 1], r[:, mid_r, -2]   # one pixel in: bicubic overshoot at the border
    top, bottom = g[:, 1, mid_c], g[:, -2, mid_c]
    w = np.abs(right - left) * S / (S - 3)
    h = (bottom - top) * S / (S - 3)
    return {"area": w * h / (W * H), "log_aspect": np.log(w / h), "flipped": right < left}


def test_crop_area_aspect_and_flip_rate_match_todays_transform():
    data = coordinate_image()
    old, new = crop_geometry(old_outputs(data, 0.0)), crop_geometry(new_outputs(data, 0.0))
    for key, tol in (("area", 0.025), ("log_aspect", 0.03)):
        assert abs(old[key].mean() - new[key].mean()) < tol, (key, old[key].mean(), new[key].mean())
        assert abs(old[key].std() - new[key].std()) < tol, (key, old[key].std(), new[key].std())
    # The drawn range: areas 0.5..1 (a crop is clamped to the image when the aspect does not fit), 3/4..4/3
    assert 0.45 < new["area"].min() and new["area"].max() < 1.05
    assert np.log(3 / 4) - 0.05 < new["log_aspect"].min() and new["log_aspect"].max() < np.log(4 / 3) + 0.05
    assert abs(old["flipped"].mean() - 0.5) < 0.08 and abs(new["flipped"].mean() - 0.5) < 0.08


def colour_stats(out: torch.Tensor) -> dict[str, np.ndarray]:
    gray = (out * torch.tensor([0.2989, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    return {"brightness": gray.mean((1, 2)).numpy(), "contrast": gray.std((1, 2)).numpy(),
            "saturation": (out.amax(1) - out.amin(1)).mean((1, 2)).numpy(),
            "red": out[:, 0].mean((1, 2)).numpy()}


def test_colour_statistics_match_todays_transform():
    data = colour_image()
    old, new = colour_stats(old_outputs(data, 0.4)), colour_stats(new_outputs(data, 0.4))
    for key in old:
        assert abs(old[key].mean() - new[key].mean()) < 0.02, (key, old[key].mean(), new[key].mean())
        assert 0.85 < new[key].std() / old[key].std() < 1.15, (key, old[key].std(), new[key].std())
    # and jitter does something: without it brightness varies far less
    assert colour_stats(new_outputs(data, 0.0))["brightness"].std() < 0.5 * new["brightness"].std()


def test_same_seed_same_bytes_and_device_decoding_gives_the_same_pixels():
    data = colour_image()
    a, b = new_outputs(data, 0.4, seed=3, n=32), new_outputs(data, 0.4, seed=3, n=32)
    assert torch.equal(a, b)
    assert not torch.equal(a, new_outputs(data, 0.4, seed=4, n=32))
    # decode="device" ships the JPEG and its box; the device (here the CPU) decodes: the same crops as a
    # full-size decode in the loader (a reader whose S exceeds the crop never reduces the decode)
    torch.manual_seed(5)
    loader = [CropReader(10_000, 0.5)(data) for _ in range(8)]
    torch.manual_seed(5)
    shipped = [CropReader(10_000, 0.5, "device")(data) for _ in range(8)]
    assert all(box is None for _, box, _ in loader) and all(box is not None for _, box, _ in shipped)
    crops = BatchAugmentation(S, (0, 0, 0), (1, 1, 1), 0.0).crops(shipped, CPU)
    assert all(torch.equal(c, ref) for c, (ref, _, _) in zip(crops, loader))


def test_reduced_size_decode_keeps_the_crop_at_least_model_size_and_looks_the_same():
    rng = np.random.default_rng(1)
    big = jpeg(np.asarray(Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
                          .resize((1600, 1200), Image.BICUBIC)))
    config = ModelConfig(image_size=S)
    torch.manual_seed(0)
    crops = [CropReader(S, 0.5)(big) for _ in range(20)]
    assert all(min(c.shape[1:]) >= S for c, _, _ in crops) and max(max(c.shape[1:]) for c, _, _ in crops) < 1600 / 2
    torch.manual_seed(0)
    full = [CropReader(10_000, 0.5)(big) for _ in range(20)]  # never reduced: S above the crop size
    augment = BatchAugmentation(S, config.mean, config.std, 0.0)
    small, ref = augment(crops, CPU), augment(full, CPU)  # the same draws: the same seed
    assert (small - ref).abs().mean() < 0.05  # normalised units; DCT-domain scaling vs antialiased bicubic


def test_png_and_grey_images_decode_in_the_loader(tmp_path):
    out = io.BytesIO()
    Image.fromarray(np.full((50, 70), 200, np.uint8)).save(out, format="PNG")
    torch.manual_seed(0)
    crop, box, _ = CropReader(S, 0.5, "device")(out.getvalue())
    assert box is None and crop.shape[0] == 3 and crop.dtype == torch.uint8


def test_unknown_decode_place_is_refused():
    with pytest.raises(ValueError, match="decode 'gpu'"):
        CropReader(S, 0.5, "gpu")


def test_epochs_train_on_the_batch_path_with_a_persistent_loader_process_and_repeat_bit_for_bit(tmp_path):
    import os

    from pipeline.training.loader import loader_processes, train_data
    from pipeline.training.recipe import setup, train_epoch
    from tests.training_inputs import tiny_config, tiny_images

    images = tiny_images(tmp_path, n_train=8)
    # auto: every CPU the worker can use but one loads (here 2 -> 1 DataLoader process); on a GPU node the
    # node's cores per GPU count when they are more (capped by the CPUs this process may use)
    usable = len(os.sched_getaffinity(0))
    assert loader_processes("auto", 2) == min(2, usable) - 1 and loader_processes("auto", 1) == 0
    assert loader_processes("auto", 1, cores_per_gpu=12) == min(12, usable) - 1 and loader_processes(3, 1) == 3
    cfg = tiny_config(augment="batch", global_batch=4, micro_batch=4, loader_workers=1)

    def run():
        w = setup(cfg, images, 0, 1, CPU)
        assert w.augment is not None and w.loader_processes == 1
        losses, pids = [], []
        for epoch in range(2):
            losses.append(train_epoch(w, cfg, epoch, 0)["train_loss"])
            pids.append(sorted(p.pid for p in w.loader._iterator._workers))
        assert pids[0] == pids[1]  # the loader process lives across epochs
        return losses, w.model.head.weight.detach().clone()

    (loss_a, w_a), (loss_b, w_b) = run(), run()
    assert np.isfinite(loss_a).all() and loss_a == loss_b and torch.equal(w_a, w_b)
    # auto picks the PIL path on CPU (cheaper there), the batch path on CUDA
    uris, targets = images.column("uri").to_pylist(), np.ones((images.num_rows, 5), np.int8)
    _, collate, augment = train_data(uris, targets, ModelConfig(image_size=32), cfg | {"augment": "auto"}, CPU)
    assert collate is None and augment is None
    with pytest.raises(ValueError, match="train.augment 'gpu'"):
        train_data(uris, targets, ModelConfig(image_size=32), cfg | {"augment": "gpu"}, CPU)


def test_a_truncated_jpeg_fails_naming_the_file(tmp_path):
    from pipeline.training.batch_augmentation import read_bytes
    from pipeline.training.dataset import ImageDataset

    path = tmp_path / "broken.jpg"
    path.write_bytes(colour_image()[:400])
    data = ImageDataset([str(path)], np.ones((1, 2), np.int8), CropReader(S, 0.5), read=read_bytes)
    with pytest.raises(OSError, match="cannot decode image .*broken.jpg"):
        data[(0, 7)]  # a training key: (row, draw seed)


@pytest.mark.parametrize("value, ok", [("auto", True), (0, True), (3, True), (-1, False), ("two", False),
                                       (True, False)])
def test_placement_loader_workers_takes_auto_or_a_count(tmp_path, value, ok):
    import yaml

    from stage_support import params as P

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"placement": {"train": {"loader_workers": value}}}))
    if ok:
        assert P.placement("train", str(path))["loader_workers"] == value
    else:
        with pytest.raises(P.ParamsError, match="placement.train.loader_workers .*expected auto or an integer >= 0"):
            P.placement("train", str(path))
