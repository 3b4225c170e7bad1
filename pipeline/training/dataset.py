"""Images table -> (image tensor, target row) samples for training and validation."""
from __future__ import annotations


import numpy as np
import pyarrow as pa
import torch
from PIL import Image

from pipeline.classes.space import read_zero_shot
from pipeline.datasets.images import ImageError, read_rgb
from pipeline.datasets.labels import label_matrix
from pipeline.datasets.splits import split_rows

from pipeline.choices import LABEL_MAPPINGS


def targets_from_labels(labels: np.ndarray, ambiguous: str = "negative", unknown: str = "negative") -> np.ndarray:
    """Labels in HICO's coding (+1, -1, 0 ambiguous, NaN unknown) -> int8 loss targets in {1, -1, 0 = excluded}.

    The authors' code trains every non-positive as negative (both defaults); ``ignore`` excludes the class
    from that image's loss, ``positive`` (ambiguous only) counts it as present. A single-label dataset (MPII)
    is coded +1 for its class and -1 for every other one, so its targets are those labels as they are: one
    positive per image, what ``softmax_ce`` needs.
    """
    for name, value in (("ambiguous", ambiguous), ("unknown", unknown)):
        if value not in LABEL_MAPPINGS or (name == "unknown" and value == "positive"):
            raise ValueError(f"train.{name}_as {value!r}: expected one of {LABEL_MAPPINGS} "
                             "('positive' only for ambiguous)")
    code = {"negative": -1, "ignore": 0, "positive": 1}
    out = np.full(labels.shape, -1, dtype=np.int8)
    out[labels == 1] = 1
    out[labels == 0] = code[ambiguous]
    out[np.isnan(labels)] = code[unknown]
    return out


def load_image(uri: str) -> Image.Image:
    """Reads one image (local path or fsspec URI) as RGB; raises naming the URI."""
    try:
        return read_rgb(uri)
    except ImageError as e:
        raise OSError(f"cannot read image {uri}: {e}") from e


class ImageDataset(torch.utils.data.Dataset):
    """(transformed image, targets, row) for the rows of an images table; ``indices`` picks/repeats rows.

    A key is a position in ``indices`` (validation: a fixed transform), or a (row, seed) pair
    (training, :func:`pipeline.training.sampling.epoch_samples`): the transform's random draws then come
    from torch's generator seeded with ``seed`` (and put back after), so a sample's augmentation depends on
    its seed alone, in any loader process and any batch.

    ``read`` turns a URI into what ``transform`` takes: a PIL image (default) or the file's bytes
    (:func:`pipeline.training.batch_augmentation.read_bytes` for the split loader/device augmentation).
    """

    def __init__(self, uris: list[str], targets: np.ndarray, transform, indices=None, read=load_image):
        self.uris, self.targets, self.transform, self.read = uris, targets, transform, read
        self.indices = np.arange(len(uris)) if indices is None else np.asarray(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key: int | tuple[int, int]):
        if isinstance(key, tuple):
            r, seed = int(key[0]), int(key[1])
            with torch.random.fork_rng(devices=[]):
                # The CPU generator alone (what the transform draws from): torch.manual_seed would also queue a
                # seed for CUDA, formatting the caller's whole stack each time (in a Ray Train worker a sixth
                # of the demo's training step time), and on a GPU process reseed the device's generator,
                # which fork_rng(devices=[]) does not put back.
                torch.default_generator.manual_seed(seed)
                image = self._image(r)
        else:
            r = int(self.indices[key])
            image = self._image(r)
        return image, torch.from_numpy(self.targets[r].astype(np.float32)), r

    def _image(self, r: int):
        data = self.read(self.uris[r])
        try:
            return self.transform(data)
        except Exception as e:  # PIL / libjpeg raise OSError, RuntimeError, ValueError...: name the file
            raise OSError(f"cannot decode image {self.uris[r]}: {type(e).__name__}: {e}") from e


def split_samples(images: pa.Table, split: str, num_classes: int, ambiguous: str, unknown: str):
    """(uris, labels [N, C] HICO coding, targets [N, C] int8) of one split.

    In a zero-shot setting (``prepare.zero_shot``, recorded in the table's metadata) the unseen classes are
    excluded (target 0) for every image, whatever ``unknown`` says: no loss term, hence no gradient, reaches
    their classifier rows, which keep their language-embedding initialisation.
    """
    rows = split_rows(images, split)
    labels = label_matrix(rows, num_classes)
    targets = targets_from_labels(labels, ambiguous, unknown)
    zero_shot = read_zero_shot(images, "images table")
    if zero_shot is not None:
        targets[:, list(zero_shot.unseen)] = 0
    return rows.column("uri").to_pylist(), labels, targets
