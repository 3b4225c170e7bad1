"""Checkpoint loading: weights-only with an allow-list, explicit opt-in for trusted pickles."""
from __future__ import annotations

import io
import pickle

import fsspec
import numpy as np
import pytest
import torch

from pipeline.detection.detector_checkpoints import checkpoint_classes, read_checkpoint


class Marker:
    """Stands for any object a checkpoint may pickle (its class is code the loader would import)."""

    def __init__(self, value=1):
        self.value = value


def _mmdet_like(path, **extra):
    """Like an mmengine checkpoint: numpy objects in meta (what breaks torch.load's default)."""
    ckpt = {"meta": {"seed": np.int64(3), "hist": np.arange(3, dtype=np.float64), "epoch": 12,
                     "dataset_meta": {"classes": ("person", "bicycle")}},
            "state_dict": {"w": torch.arange(4.0)}, **extra}
    torch.save(ckpt, path)


def test_numpy_meta_loads_weights_only(tmp_path):
    _mmdet_like(tmp_path / "a.pth")
    with pytest.raises(pickle.UnpicklingError):  # the problem mmengine 0.10.7 hits on torch >= 2.6
        torch.load(tmp_path / "a.pth", weights_only=True)
    ckpt = read_checkpoint(str(tmp_path / "a.pth"))
    assert ckpt["meta"]["seed"] == 3 and ckpt["meta"]["hist"].tolist() == [0, 1, 2]
    assert torch.equal(ckpt["state_dict"]["w"], torch.arange(4.0))
    assert checkpoint_classes(ckpt) == ["person", "bicycle"]


def test_arbitrary_objects_need_the_trusted_opt_in(tmp_path):
    _mmdet_like(tmp_path / "b.pth", extra=Marker(7))
    with pytest.raises(ValueError, match=r"Marker.*detect.mmdet.trusted_checkpoint: true"):
        read_checkpoint(str(tmp_path / "b.pth"))
    assert read_checkpoint(str(tmp_path / "b.pth"), trusted=True)["extra"].value == 7


def test_missing_empty_and_broken_checkpoints_name_the_parameter(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"detect.mmdet.checkpoint: checkpoint .*nope.pth does not"):
        read_checkpoint(str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match="detect.mmdet.checkpoint is empty"):
        read_checkpoint("")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        read_checkpoint(str(tmp_path / "junk.pth"))


def test_bare_state_dict_fsspec_uri_and_safetensors(tmp_path):
    buf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buf)
    with fsspec.open("memory://ckpt/bare.pth", "wb") as f:
        f.write(buf.getvalue())
    ckpt = read_checkpoint("memory://ckpt/bare.pth")
    assert torch.equal(ckpt["state_dict"]["w"], torch.ones(2)) and checkpoint_classes(ckpt) is None

    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(tmp_path / "m.safetensors"), metadata={"classes": '["person"]'})
    ckpt = read_checkpoint(str(tmp_path / "m.safetensors"))
    assert checkpoint_classes(ckpt) == ["person"] and ckpt["state_dict"]["w"].shape == (3,)
