"""The dataset adapters by name: ``prepare.dataset`` picks one, its ``prepare.<dataset>`` section says
where its files are, and :func:`prepare_dataset` turns them into the pipeline's tables.

- ``hico``: HICO ``anno.mat`` + HICO-DET boxes (:mod:`pipeline.datasets.hico`);
- ``mpii``: MPII Human Pose activities, single-label (:mod:`pipeline.datasets.mpii`);
- ``table``: a user's own images + CSV / JSON Lines tables (:mod:`pipeline.datasets.table`);
- ``vcoco``: V-COCO's official files + COCO 2014 boxes and images (:mod:`pipeline.datasets.vcoco`).

``prepare.zero_shot`` then takes the unseen classes of a HICO-DET zero-shot setting out of the training
split (:mod:`pipeline.datasets.zero_shot`).
"""
from __future__ import annotations

from typing import Any

from pipeline.classes.zero_shot import check_setting, unseen_classes
from pipeline.datasets.build import DatasetInput, Prepared, assemble
from pipeline.datasets.zero_shot import apply_zero_shot

from pipeline.choices import DATASETS


def read_dataset(dataset: str, root: str, files: dict[str, Any]) -> DatasetInput:
    """The adapter's reading of the raw files (no image is opened yet).

    Args:
        dataset: one of :data:`DATASETS`.
        root: the raw dataset's folder (local path or fsspec URI).
        files: the adapter's options (the keys of its ``prepare.<dataset>`` params section).
    """
    if dataset == "hico":
        from pipeline.datasets.hico import HicoFiles, read_hico

        return read_hico(HicoFiles(root, **files))
    if dataset == "mpii":
        from pipeline.datasets.mpii import MpiiFiles, read_mpii

        return read_mpii(MpiiFiles(root, **files))
    if dataset == "table":
        from pipeline.datasets.table import TableFiles, read_table_dataset

        return read_table_dataset(TableFiles(root, **files))
    if dataset == "vcoco":
        from pipeline.datasets.vcoco import VcocoFiles, read_vcoco_dataset

        return read_vcoco_dataset(VcocoFiles(root, **files))
    raise ValueError(f"prepare.dataset {dataset!r}: expected one of {DATASETS}")


def prepare_dataset(dataset: str, root: str, files: dict[str, Any], val_fraction: float = 0.1, seed: int = 0,
                    decode_images: bool = True, workers: int = 8, max_reject_fraction: float = 1.0,
                    rejects_path: str = "", zero_shot: str = "none") -> Prepared:
    """Reads a raw dataset with its adapter and builds the images, pairs, classes and rejects tables.

    Args:
        zero_shot: a HICO-DET zero-shot setting (``prepare.zero_shot``): its unseen classes leave the train
            and val splits (:mod:`pipeline.datasets.zero_shot`); ``none`` keeps every class.

    Raises:
        FileNotFoundError: ``root`` does not exist (names ``prepare.root``).
        AnnotationError: a malformed annotation file.
        DataLossError: a split lost more than ``max_reject_fraction`` of its images or pairs.
    """
    from pipeline import storage

    check_setting(zero_shot, "prepare.zero_shot")
    storage.check_access(root, "prepare.root")  # driver, credentials, bucket: fail in seconds
    if not storage.exists(root, "prepare.root"):
        raise FileNotFoundError(f"prepare.root = {root!r}: no such folder (the raw dataset's folder: a local path "
                                "or fsspec URI; relative paths are relative to the project root)")
    data = read_dataset(dataset, root, files)
    if zero_shot != "none":   # a dataset the setting cannot apply to fails before its images are read
        unseen_classes(zero_shot, data.classes, dataset)
    return apply_zero_shot(assemble(data, val_fraction, seed, decode_images, workers, max_reject_fraction,
                                    rejects_path), zero_shot)
