"""The MMDetection backend for real (mmdet 3.3.0 + the patched mmcv 2.1.0 build), CPU, random weights."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import require_module  # noqa: E402

require_module("mmdet.apis", "MMDetection stack not installed: `make install-detect` (scripts/install_mmdet.sh)")

from pipeline.detection.detector_checkpoints import save_checkpoint  # noqa: E402
from pipeline.detection.mmdet_backend import MMDetDetector, resolve_config, inference_pipeline_cfg  # noqa: E402

TINY = "rtmdet_tiny_8xb32-300e_coco"   # bundled with mmdet: site-packages/mmdet/.mim/configs/rtmdet/
SCALE = [160, 160]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A seeded random-weight RTMDet-tiny and its checkpoint (mmengine layout)."""
    det = MMDetDetector(TINY, "random", test_scale=SCALE, seed=1)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    save_checkpoint(det.model, det.classes, str(path))
    return det, path


def _images(n=3):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (96 + 8 * i, 128, 3), dtype=np.uint8) for i in range(n)]


def test_config_names_resolve_to_bundled_files():
    path = resolve_config(TINY)
    assert path.name == TINY + ".py" and ".mim" in str(path)
    assert resolve_config("rtmdet/" + TINY) == path
    assert resolve_config(str(path)) == path
    with pytest.raises(FileNotFoundError, match=r"detect.mmdet.config: 'rtmdet_tinyy_8xb32'.*rtmdet_tiny"):
        resolve_config("rtmdet_tinyy_8xb32")


def test_test_scale_changes_resize_and_pad():
    from mmengine.config import Config

    steps = inference_pipeline_cfg(Config.fromfile(str(resolve_config(TINY))), [320, 320])
    kinds = {s["type"].split(".")[-1]: s for s in steps}
    assert steps[0]["type"] == "mmdet.LoadImageFromNDArray" and "LoadAnnotations" not in kinds
    assert kinds["Resize"]["scale"] == (320, 320) and kinds["Pad"]["size"] == (320, 320)
    frcnn = Config.fromfile(str(resolve_config("faster-rcnn_r50_fpn_1x_coco")))
    kinds = {s["type"].split(".")[-1]: s for s in inference_pipeline_cfg(frcnn, [480, 320])}
    assert kinds["Resize"]["scale"] == (480, 320) and "Pad" not in kinds


def test_batched_detections_are_in_range_and_survive_a_checkpoint_round_trip(tiny):
    det, path = tiny
    images = _images()
    first = det.predict(images)
    assert len(first) == 3 and all(len(b) > 0 for b, *_ in first)  # random RTMDet-tiny fires a lot
    for (boxes, labels, scores, unmapped), im in zip(first, images):
        assert boxes.shape[1] == 4 and labels.min() >= 0 and labels.max() < 80 and unmapped == 0
        assert ((scores >= 0) & (scores <= 1)).all()
    again = MMDetDetector(TINY, str(path), test_scale=SCALE, seed=99).predict(images)
    for a, b in zip(first, again):
        for x, y in zip(a[:3], b[:3]):
            np.testing.assert_array_equal(x, y)


def test_checkpoint_of_another_architecture_is_refused(tiny):
    _, path = tiny
    with pytest.raises(ValueError, match=r"tiny.pth does not fit detect.mmdet.config .*rtmdet_s_8xb32"
                                         r".*shape mismatch"):
        MMDetDetector("rtmdet_s_8xb32-300e_coco", str(path))


def test_non_coco_or_miscounted_classes_are_refused(tiny, tmp_path):
    det, _ = tiny
    names = list(det.classes)
    names[5:8] = ["traffic cone", "forklift", "pallet"]
    save_checkpoint(det.model, names, str(tmp_path / "odd.pth"))
    with pytest.raises(ValueError, match=r"odd.pth classes: the detector is not COCO-like.*forklift"):
        MMDetDetector(TINY, str(tmp_path / "odd.pth"), test_scale=SCALE)
    save_checkpoint(det.model, ["person", "car", "cat"], str(tmp_path / "three.pth"))
    with pytest.raises(ValueError, match=r"lists 3 classes but detect.mmdet.config .* predicts 80"):
        MMDetDetector(TINY, str(tmp_path / "three.pth"), test_scale=SCALE)


def test_missing_checkpoint_names_the_parameter(tmp_path):
    with pytest.raises(FileNotFoundError, match="detect.mmdet.checkpoint: checkpoint .*missing.pth"):
        MMDetDetector(TINY, str(tmp_path / "missing.pth"))


@pytest.mark.gpu
def test_cuda_detections_match_cpu(tiny):
    det, path = tiny
    images = _images(2)
    gpu = MMDetDetector(TINY, str(path), device="cuda", test_scale=SCALE).predict(images)
    for (b_cpu, l_cpu, s_cpu, _), (b_gpu, l_gpu, s_gpu, _) in zip(det.predict(images), gpu):
        top = slice(0, 20)  # the best boxes; near-ties further down may reorder across devices
        np.testing.assert_allclose(s_gpu[top], s_cpu[top], atol=1e-3)
        np.testing.assert_allclose(b_gpu[top], b_cpu[top], atol=0.5)
