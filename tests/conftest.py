"""Shared fixtures: the real HICO annotation files, and GPU skipping."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_HICO = Path(os.environ.get("DEFR_SHARED_HICO", ROOT.parent / "shared" / "data" / "hico"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@pytest.fixture(scope="session")
def shared_hico() -> Path:
    """The real HICO / HICO-DET annotation files in ../shared/data/hico (skip when absent)."""
    if not (SHARED_HICO / "anno.mat").exists():
        pytest.skip(f"real HICO annotations not found at {SHARED_HICO} (set DEFR_SHARED_HICO)")
    return SHARED_HICO


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is visible")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
