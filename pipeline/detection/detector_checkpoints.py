"""Loading detector checkpoints without running code from the file (unless explicitly trusted).

``torch.load`` unpickles: a ``.pth`` can execute arbitrary code when loaded with ``weights_only=False``.
mmengine 0.10.7 calls ``torch.load`` with torch's default, ``weights_only=True`` since torch 2.6, and
then fails on MMDetection checkpoints whose ``meta`` holds numpy objects (``UnpicklingError``); the usual
advice, ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, turns the protection off for every load in the process.
Here the checkpoint is read with ``weights_only=True`` plus an allow-list of the data-only globals that
MMDetection / mmengine checkpoints contain (numpy arrays, dtypes and scalars; mmengine's HistoryBuffer);
anything else is refused with the list of offending globals. ``trusted=True`` (params:
``detect.mmdet.trusted_checkpoint``) is the explicit opt-in to a full pickle load, for legacy files you
trust. ``.safetensors`` files never execute code; their class names go in the metadata key ``classes``
(a JSON list).
"""
from __future__ import annotations

import io
import json
import pickle
import re

import numpy as np
import torch

from pipeline import storage


def _numpy_globals() -> list:
    """Data-only numpy globals, under both the numpy 1 (numpy.core) and numpy 2 (numpy._core) names."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    out = []
    for fn in (multiarray._reconstruct, multiarray.scalar):
        out += [(fn, f"numpy.core.multiarray.{fn.__name__}"), (fn, f"numpy._core.multiarray.{fn.__name__}")]
    out += [np.ndarray, np.dtype]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles dtypes as numpy.dtypes.<Name>DType
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return out


def allowed_globals() -> list:
    """The allow-list passed to ``torch.serialization.safe_globals``."""
    out = _numpy_globals()
    try:
        from mmengine.logging.history_buffer import HistoryBuffer  # training logs in mmengine checkpoints
        out.append(HistoryBuffer)
    except ImportError:
        pass
    return out


def read_checkpoint(uri: str, trusted: bool = False, param: str = "detect.mmdet.checkpoint") -> dict:
    """Reads a ``.pth`` / ``.pt`` / ``.safetensors`` checkpoint from a path or fsspec URI.

    Args:
        uri: local path or fsspec URI (``s3://...``, ``gs://...``, ``memory://...``).
        trusted: allow a full pickle load (runs code from the file): only for files you trust.
        param: the parameter that named ``uri``, for error messages.

    Returns:
        ``{"state_dict": ..., "meta": {...}}`` (other top-level keys of a ``.pth`` are kept).

    Raises:
        FileNotFoundError: ``uri`` does not exist.
        ValueError: the file is not a checkpoint, or needs globals outside the allow-list.
    """
    if not uri:
        raise ValueError(f"{param} is empty: give a checkpoint path or URI "
                         "(or 'random' for random weights, tests and demos only)")
    if not storage.exists(uri):
        raise FileNotFoundError(f"{param}: checkpoint {uri} does not exist")
    with storage.open_file(uri) as f:
        data = f.read()
    if str(uri).endswith(".safetensors"):
        return _read_safetensors(data, uri, param)
    buf = io.BytesIO(data)
    try:
        if trusted:
            ckpt = torch.load(buf, map_location="cpu", weights_only=False)
        else:
            with torch.serialization.safe_globals(allowed_globals()):
                ckpt = torch.load(buf, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if trusted:
            raise ValueError(f"{param}: {uri} is not a readable torch checkpoint: {e}") from e
        unsafe = _unsafe_globals(data) or re.findall(r"GLOBAL ([\w.]+)", str(e))
        if not unsafe:
            raise ValueError(f"{param}: {uri} is not a readable torch checkpoint: "
                             f"{str(e).strip().splitlines()[-1][:300]}") from e
        raise ValueError(
            f"{param}: {uri} contains pickled objects outside the safe allow-list ({unsafe}); "
            "loading it would run code from the file. If you trust the file, set "
            "detect.mmdet.trusted_checkpoint: true, or convert it once to weights-only / safetensors"
        ) from e
    except (RuntimeError, EOFError, OSError) as e:
        raise ValueError(f"{param}: {uri} is not a readable torch checkpoint: {e}") from e
    if not isinstance(ckpt, dict):
        raise ValueError(f"{param}: {uri} holds a {type(ckpt).__name__}, expected a dict (state_dict)")
    if "state_dict" not in ckpt:  # a bare state_dict
        ckpt = {"state_dict": ckpt, "meta": {}}
    ckpt.setdefault("meta", {})
    return ckpt


def _unsafe_globals(data: bytes) -> list[str]:
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data))
    except Exception:  # only used to improve the message
        return []


def _read_safetensors(data: bytes, uri: str, param: str) -> dict:
    from safetensors.torch import load

    try:
        state_dict = load(data)
    except Exception as e:
        raise ValueError(f"{param}: {uri} is not a readable safetensors file: {e}") from e
    meta = {}
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")]).get("__metadata__") or {}
    if "classes" in header:
        meta["dataset_meta"] = {"classes": json.loads(header["classes"])}
    return {"state_dict": state_dict, "meta": meta}


def checkpoint_classes(ckpt: dict) -> list[str] | None:
    """Class names recorded in an MMDetection checkpoint (mmdet 3 ``dataset_meta`` or mmdet 2 ``CLASSES``)."""
    meta = ckpt.get("meta") or {}
    dataset_meta = meta.get("dataset_meta") or {}
    classes = dataset_meta.get("classes") or dataset_meta.get("CLASSES") or meta.get("CLASSES")
    return list(classes) if classes else None


def save_checkpoint(model: torch.nn.Module, classes: list[str], path: str, **meta) -> None:
    """Saves an MMDetection-style checkpoint that :func:`read_checkpoint` loads weights-only."""
    ckpt = {"meta": {"dataset_meta": {"classes": tuple(classes)}, **meta},
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    with storage.atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
