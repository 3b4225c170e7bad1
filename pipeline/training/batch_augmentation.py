"""The recipe's augmentation split between the data loader and the training device.

Today's transform (:func:`pipeline.training.augment.train_transform`) does everything per image on the CPU:
decode, PIL bicubic random resized crop to the model size, flip, colour jitter, ToTensor, Normalize. At
672 px most of that cost is the resize and the jitter of a 672 x 672 image, which a GPU does on a whole
batch for almost nothing. Here the loader does only what must happen per file:

* :class:`CropReader` (loader side, per image): read the bytes, draw the random-resized-crop box with
  torchvision's own ``RandomResizedCrop.get_params`` (the same distribution as today), decode the JPEG
  (``torchvision.io.decode_jpeg``; PIL's reduced-size ``draft`` decode when the crop is at least twice the
  model size, so a 4000 px photo is not decoded in full for a 672 px crop), and cut the box out at the
  source resolution: a uint8 [3, h, w] tensor. With ``decode="device"`` it ships the JPEG bytes and the box
  instead, and the device decodes the batch (nvjpeg on CUDA).
* :class:`BatchAugmentation` (device side, per batch): bicubic antialiased resize of each crop to S x S,
  horizontal flip (p 0.5), colour jitter (brightness, contrast, saturation in a random order per image, as
  ``ColorJitter``), normalisation. It draws nothing: :class:`CropReader` draws each image's flip and jitter
  with its crop box, from the generator the loader seeds for that sample, so a sample's augmentation is a
  function of its seed alone, whatever batch it lands in (and a run is the same bytes on the same machine).
"""
from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline import storage

RATIO = (3.0 / 4.0, 4.0 / 3.0)  # torchvision RandomResizedCrop's default aspect range (today's transform)
from pipeline.choices import DECODE_PLACES
GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights (ColorJitter's contrast/saturation)
DRAWS = 7  # per image: flip, 3 jitter factors, 3 numbers whose ranks order the jitter ops


def read_bytes(uri: str) -> bytes:
    """The file's bytes (local path or fsspec URI); raises naming the URI."""
    try:
        with storage.open_file(uri) as f:
            return f.read()
    except OSError as e:
        raise OSError(f"cannot read image {uri}: {e}") from e


def crop_box(width: int, height: int, scale: tuple[float, float]) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random resized crop, drawn from torch's global RNG exactly as
    ``torchvision.transforms.RandomResizedCrop`` draws it (so the loader's workers seed it the same way)."""
    from torchvision.transforms import RandomResizedCrop

    # get_params reads only the shape: an expanded 1-element tensor costs nothing.
    shape_only = torch.empty((1, 1, 1), dtype=torch.uint8).expand(3, height, width)
    return tuple(int(v) for v in RandomResizedCrop.get_params(shape_only, list(scale), list(RATIO)))


def _is_jpeg(data: bytes) -> bool:
    return data[:3] == b"\xff\xd8\xff"


class CropReader:
    """Loader side: file bytes -> (uint8 [3, h, w] crop, None, draws), or (JPEG bytes as uint8 [n], box, draws)
    when the device decodes; ``draws`` are the 7 uniform numbers of the flip and the jitter that
    :class:`BatchAugmentation` applies. Picklable, so DataLoader worker processes can run it.

    Args:
        size: the model's input size S (decides how far a JPEG may be decoded at reduced size).
        crop_scale: smallest fraction of the image area a crop keeps (upper bound 1).
        decode: ``loader`` (decode here) or ``device`` (ship the bytes; JPEGs only, others decode here).
    """

    def __init__(self, size: int, crop_scale: float, decode: str = "loader"):
        if decode not in DECODE_PLACES:
            raise ValueError(f"decode {decode!r}: expected one of {DECODE_PLACES}")
        self.size, self.scale, self.decode = int(size), (float(crop_scale), 1.0), decode

    def __call__(self, data: bytes) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        with Image.open(io.BytesIO(data)) as im:  # parses the header only
            width, height = im.size
            top, left, h, w = crop_box(width, height, self.scale)
            draws = torch.rand(DRAWS)  # after the box, from the same (per-sample) generator
            jpeg = _is_jpeg(data) and im.mode in ("RGB", "L", "CMYK", "YCbCr")
            # The largest power-of-two reduction that keeps the crop at least S pixels on both sides.
            reduce = 1 << max(0, min(3, int(math.log2(max(1.0, min(w, h) / self.size)))))
            if jpeg and self.decode == "device":
                raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
                return raw, torch.tensor([top, left, h, w], dtype=torch.int64), draws
            if jpeg and reduce == 1:
                return _decode_jpeg(data)[:, top:top + h, left:left + w].contiguous(), None, draws
            if jpeg:
                im.draft("RGB", (math.ceil(width / reduce), math.ceil(height / reduce)))
            sx, sy = width / im.size[0], height / im.size[1]  # 1 unless draft reduced the decode
            box = (round(left / sx), round(top / sy), round((left + w) / sx), round((top + h) / sy))
            crop = np.asarray(im.convert("RGB").crop(box))
        return torch.from_numpy(crop.copy()).permute(2, 0, 1).contiguous(), None, draws


def _decode_jpeg(data: bytes | torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_jpeg

    raw = data if isinstance(data, torch.Tensor) else torch.frombuffer(bytearray(data), dtype=torch.uint8)
    return decode_jpeg(raw, mode=ImageReadMode.RGB, device=device)


def collate_crops(batch: list) -> tuple[list, torch.Tensor, torch.Tensor]:
    """DataLoader collate for :class:`CropReader` samples (crops differ in size: kept as a list)."""
    items, targets, rows = zip(*batch)
    return list(items), torch.stack(list(targets)), torch.as_tensor(rows)


class BatchAugmentation:
    """Device side: a list of loader items (:class:`CropReader`) -> normalised float [B, 3, S, S] on ``device``.

    Args:
        size: output size S.
        mean, std: the backbone's normalisation.
        jitter: brightness / contrast / saturation strength (0 disables), as ``ColorJitter(j, j, j)``.
    """

    def __init__(self, size: int, mean, std, jitter: float):
        self.size, self.jitter = int(size), float(jitter)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def crops(self, items: list, device: torch.device) -> list[torch.Tensor]:
        """uint8 [3, h, w] crops on ``device``; JPEG bytes are decoded there (one batched call)."""
        out: list = [None] * len(items)
        pending = [(i, data, box) for i, (data, box, _) in enumerate(items) if box is not None]
        for i, (data, box, _) in enumerate(items):
            if box is None:
                out[i] = data.to(device, non_blocking=True)
        if pending:
            from torchvision.io import ImageReadMode, decode_jpeg

            target = device if device.type == "cuda" else "cpu"
            decoded = decode_jpeg([d for _, d, _ in pending], mode=ImageReadMode.RGB, device=target)
            for (i, _, box), img in zip(pending, decoded):
                top, left, h, w = (int(v) for v in box)
                out[i] = img[:, top:top + h, left:left + w].to(device)
        return out

    def __call__(self, items: list, device: torch.device) -> torch.Tensor:
        s, n = self.size, len(items)
        draws = torch.stack([d for _, _, d in items])  # [n, 7], drawn in the loader (CropReader)
        flips = draws[:, 0] < 0.5
        factors = 1.0 + self.jitter * (2 * draws[:, 1:4] - 1)
        order = torch.argsort(draws[:, 4:7], dim=1)  # op applied at each position
        x = torch.cat([F.interpolate(c[None].float(), size=(s, s), mode="bicubic", align_corners=False,
                                     antialias=True) for c in self.crops(items, device)])
        x = (x.clamp_(0, 255) / 255.0)
        flips = flips.to(device)
        x = torch.where(flips.view(n, 1, 1, 1), x.flip(-1), x)
        if self.jitter > 0:
            x = _jitter(x, factors.to(device), order.to(device))
        return (x - self.mean.to(device)) / self.std.to(device)


def _gray(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor(GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _blend(x: torch.Tensor, other: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return (f * x + (1 - f) * other).clamp_(0, 1)


def _jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """torchvision ColorJitter (brightness, contrast, saturation; no hue) on a batch: each image applies the
    three ops in its own order with its own factors; a factor of 1 is the identity, so at each of the three
    positions every op runs on the whole batch with factor 1 for the images that apply another op there."""
    n = x.shape[0]
    for position in range(3):
        for op in range(3):
            f = torch.where(order[:, position] == op, factors[:, op], torch.ones_like(factors[:, op])).view(n, 1, 1, 1)
            if op == 0:  # brightness: blend with black
                x = (f * x).clamp_(0, 1)
            elif op == 1:  # contrast: blend with the mean grey level of the image
                x = _blend(x, _gray(x).mean(dim=(2, 3), keepdim=True), f)
            else:  # saturation: blend with the grey image
                x = _blend(x, _gray(x), f)
    return x
