"""The one precision policy of training and every inference path (``placement.<stage>.precision``).

``auto`` is bf16 autocast on CUDA (the GPU's tensor cores; scores within the bound tests/unit measures of
fp32) and fp32 on CPU, where bf16 is slower; ``bf16`` forces autocast anywhere (a CPU run can compare it
with fp32); ``fp32`` turns it off.
"""
from __future__ import annotations

import contextlib

import torch

from pipeline.choices import PRECISIONS


def resolve(precision: str, device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device``: ``torch.bfloat16``, or None for plain fp32.

    Raises:
        ValueError: ``precision`` is not one of ``PRECISIONS``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {PRECISIONS}")
    if precision == "fp32" or (precision == "auto" and torch.device(device).type != "cuda"):
        return None
    return torch.bfloat16


def autocast(device: torch.device | str, precision: str):
    """A context manager running the block at ``precision`` on ``device`` (torch.autocast, or nothing)."""
    dtype = resolve(precision, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def full_precision(fn, dtype: torch.dtype = torch.float32):
    """``fn`` run outside autocast on its input cast to ``dtype`` (the model's weights').

    For the classification head: its logits are gamma (100) x a cosine, and bf16 keeps 8 bits of them (a
    step of 0.5 near 100), while in fp32 it costs next to nothing (one [P, D] x [D, C] product).
    """
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return fn(x.to(dtype))
    return run


def effective(precision: str, device: str) -> str:
    """``bf16`` or ``fp32``: what ``precision`` runs at on ``device`` (``cuda``, ``cpu``; a result's metadata)."""
    return "bf16" if resolve(precision, "cuda" if device == "cuda" else "cpu") else "fp32"
