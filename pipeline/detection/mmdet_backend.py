"""An MMDetection detector: config resolution, safe checkpoint loading, batched inference.

Install the stack with ``make install-detect`` (it runs ``scripts/install_mmdet.sh``; ``make test`` does it
too).
mmdet is imported lazily, so the rest of the pipeline works without it.

The config is a path to an MMDetection config file or the name of a config bundled with mmdet (its
``.mim/configs`` tree, e.g. ``rtmdet_tiny_8xb32-300e_coco`` or ``faster_rcnn/faster-rcnn_r50_fpn_1x_coco``).
The model is built without any download (``init_detector`` drops the backbone's pretrained init) and the
weights come only from the checkpoint, read by :mod:`pipeline.detection.detector_checkpoints`.
"""
from __future__ import annotations

import copy
import difflib
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from pipeline.detection.detector_checkpoints import checkpoint_classes, read_checkpoint
from pipeline.classes.coco import class_map

log = logging.getLogger(__name__)
RANDOM = "random"  # checkpoint value for random weights: tests and demos only


def bundled_config_root() -> Path:
    """The config tree that pip-installed mmdet ships (``site-packages/mmdet/.mim/configs``)."""
    import mmdet

    return Path(mmdet.__file__).parent / ".mim" / "configs"


def resolve_config(name: str) -> Path:
    """A config path, or the bundled config whose file name (without .py) or relative path is ``name``.

    Raises:
        FileNotFoundError: naming ``detect.mmdet.config`` and the closest bundled names.
    """
    path = Path(name)
    if path.suffix == ".py" and path.is_file():
        return path
    root = bundled_config_root()
    stem = str(name).removesuffix(".py")
    hits = [root / f"{stem}.py"] if "/" in stem else sorted(root.glob(f"*/{stem}.py"))
    hits = [h for h in hits if h.is_file()]
    if hits:
        return hits[0]
    names = [p.stem for p in root.glob("*/*.py")]
    close = difflib.get_close_matches(path.stem, names, n=5, cutoff=0.5)
    raise FileNotFoundError(f"detect.mmdet.config: {name!r} is neither a config file nor a config "
                            f"bundled with mmdet under {root}; close names: {close}")


def head_num_classes(model_cfg) -> int | None:
    """Number of classes the config's detection head predicts (one- or two-stage detectors)."""
    for head in (model_cfg.get("bbox_head"), (model_cfg.get("roi_head") or {}).get("bbox_head")):
        if isinstance(head, (list, tuple)):  # cascade heads
            head = head[-1]
        if head is not None and "num_classes" in head:
            return int(head["num_classes"])
    return None


def inference_pipeline_cfg(cfg, test_scale: list[int] | None) -> list:
    """The config's test pipeline for in-memory images, optionally at ``test_scale`` = [w, h].

    Changing the size means changing both ``Resize`` and a fixed-size ``Pad`` (RTMDet pads to 640x640:
    resizing alone would still run the network at 640).
    """
    steps = copy.deepcopy(cfg.test_dataloader.dataset.pipeline)
    steps[0]["type"] = "mmdet.LoadImageFromNDArray"
    steps = [s for s in steps if not str(s["type"]).endswith("LoadAnnotations")]
    if test_scale:
        scale = tuple(int(x) for x in test_scale)
        for s in steps:
            kind = str(s["type"]).split(".")[-1]
            if kind == "Resize":
                s["scale"] = scale
            elif kind == "Pad" and s.get("size") is not None:
                s["size"] = scale
    return steps


class MMDetDetector:
    """One MMDetection model, ready for batched inference on RGB arrays.

    Args:
        config: config path or bundled config name.
        checkpoint: path or fsspec URI of the weights; ``"random"`` for seeded random weights
            (tests and demos only).
        device: ``cpu`` or ``cuda[:i]``.
        test_scale: [w, h] for the test pipeline's Resize and Pad; None keeps the config's.
        trusted_checkpoint: allow a full pickle load of the checkpoint (runs code in the file).
        allow_unmapped_classes: drop the boxes of non-COCO classes instead of refusing the detector.
        seed: seed of the random weights.
    """

    def __init__(self, config: str, checkpoint: str, device: str = "cpu",
                 test_scale: list[int] | None = None, trusted_checkpoint: bool = False,
                 allow_unmapped_classes: bool = False, seed: int = 0):
        from mmcv.transforms import Compose
        from mmdet.apis import init_detector
        from mmdet.evaluation import get_classes
        from mmengine.config import Config

        self.config_path = resolve_config(config)
        cfg = Config.fromfile(str(self.config_path))
        ckpt = None if checkpoint == RANDOM else read_checkpoint(checkpoint, trusted_checkpoint)
        n_head = head_num_classes(cfg.model)
        classes = checkpoint_classes(ckpt) if ckpt else None
        self.classes_source = "checkpoint"
        if classes is None:
            metainfo = (cfg.get("test_dataloader", {}).get("dataset", {}).get("metainfo") or {})
            classes = list(metainfo.get("classes") or []) or None
            self.classes_source = "config"
        if classes is None and n_head == 80:
            classes = list(get_classes("coco"))  # what init_detector itself assumes
            self.classes_source = "assumed COCO (none in checkpoint or config)"
            if ckpt is not None:
                log.warning("%s names no classes; assuming COCO-80 order like mmdet does", checkpoint)
        if classes is None:
            raise ValueError(f"detect.mmdet.checkpoint {checkpoint} names no classes and the head of "
                             f"{self.config_path} predicts {n_head}, not COCO's 80: cannot map labels")
        if n_head is not None and len(classes) != n_head:
            raise ValueError(f"detect.mmdet.checkpoint {checkpoint} lists {len(classes)} classes but "
                             f"detect.mmdet.config {self.config_path} predicts {n_head}: they do not match")
        self.classes = list(classes)
        self.to_coco = class_map(self.classes, allow_unmapped_classes, source=f"{checkpoint} classes")

        torch.manual_seed(seed)  # random weights (checkpoint "random") are reproducible
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = init_detector(cfg, checkpoint=None, device="cpu")
        if ckpt is not None:
            load_weights(model, ckpt["state_dict"], checkpoint, self.config_path)
        model.dataset_meta = {"classes": tuple(self.classes)}
        self.model = model.to(device).eval()
        self.device = device
        self.pipeline = Compose(inference_pipeline_cfg(cfg, test_scale))

    @torch.no_grad()
    def predict(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]:
        """Detects objects in a batch of RGB uint8 [H, W, 3] images.

        Returns:
            per image: (boxes [N, 4] xyxy original pixels, COCO-80 labels [N], scores [N],
            number of boxes dropped because their class is not a COCO object).
        """
        if not images:
            return []
        items = [self.pipeline({"img": np.ascontiguousarray(im[..., ::-1]), "img_id": i})  # mmdet wants BGR
                 for i, im in enumerate(images)]
        batch = {"inputs": [it["inputs"] for it in items],
                 "data_samples": [it["data_samples"] for it in items]}
        out = []
        for result in self.model.test_step(batch):
            pred = result.pred_instances
            labels = self.to_coco[pred.labels.cpu().numpy().astype(np.int64)]
            keep = labels >= 0
            out.append((pred.bboxes.cpu().numpy()[keep], labels[keep],
                        pred.scores.cpu().numpy()[keep], int((~keep).sum())))
        return out


def load_weights(model: torch.nn.Module, state_dict: dict, checkpoint: str, config: Path) -> None:
    """Loads ``state_dict`` strictly; a mismatch names both files and the first differing keys."""
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k}: {tuple(state_dict[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        raise ValueError(
            f"detect.mmdet.checkpoint {checkpoint} does not fit detect.mmdet.config {config}: "
            f"{len(missing)} missing key(s) {missing[:3]}, {len(unexpected)} unexpected key(s) "
            f"{unexpected[:3]}, {len(shapes)} shape mismatch(es) {shapes[:3]}")
    model.load_state_dict(state_dict, strict=True)
