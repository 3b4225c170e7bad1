"""Shared fixtures: the real HICO and MPII annotation files, the prepared demo, and GPU skipping."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_HICO = Path(os.environ.get("DEFR_SHARED_HICO", ROOT.parent / "shared" / "data" / "hico"))
SHARED_MPII = Path(os.environ.get("DEFR_SHARED_MPII", ROOT.parent / "shared" / "data" / "mpii"))
SHARED_PHOTOS = Path(os.environ.get("DEFR_SHARED_PHOTOS", ROOT.parent / "shared" / "data" / "photos"))

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


@pytest.fixture(scope="session")
def shared_mpii() -> Path:
    """The real MPII activity labels and split lists in ../shared/data/mpii (skip when absent)."""
    if not (SHARED_MPII / "activities.csv").exists():
        pytest.skip(f"real MPII activity labels not found at {SHARED_MPII} (set DEFR_SHARED_MPII)")
    return SHARED_MPII


@pytest.fixture(scope="session")
def shared_photos() -> Path:
    """Three real photographs with hand-drawn boxes in ../shared/data/photos (skip when absent)."""
    if not (SHARED_PHOTOS / "boxes.json").exists():
        pytest.skip(f"shared photos not found at {SHARED_PHOTOS} (set DEFR_SHARED_PHOTOS)")
    return SHARED_PHOTOS


@pytest.fixture
def load_calls(monkeypatch) -> list[str]:
    """Counts real language-model loads: every text-encoder backend's loader is wrapped, and still runs."""
    from pipeline.text import encoders

    calls: list[str] = []
    for backend, real in list(encoders.LOADERS.items()):
        def counting(enc, real=real):
            calls.append(enc.model_id)
            return real(enc)
        monkeypatch.setitem(encoders.LOADERS, backend, counting)
    return calls


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is visible")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


DEMO_TEST_PARAMS = {
    "demo": {"dataset": "hico", "seed": 0, "n_train": 150, "n_test": 40, "image_size": [160, 128]},
    "prepare": {"dataset": "hico", "root": None, "val_fraction": 0.1, "seed": 0, "check_images": True,
                "hico": {"anno": "anno.mat", "hicodet_train": "instances_train2015.json",
                         "hicodet_test": "instances_test2015.json", "train_images": "images/train2015",
                         "test_images": "images/test2015"}},
    "placement": {"prepare": {"workers": 4}},
}


@pytest.fixture(scope="session")
def prepared_demo(tmp_path_factory) -> Path:
    """A small demo run through the real generate_demo and prepare stages.

    Returns the prepared folder (images/pairs/classes/rejects.parquet); the raw data (JPEGs the
    tables point to, by absolute path) sits beside it in ``../raw``.
    """
    import yaml

    from stages import generate_demo, prepare

    work = tmp_path_factory.mktemp("demo")
    import copy

    params = copy.deepcopy(DEMO_TEST_PARAMS)
    params["prepare"]["root"] = str(work / "raw")
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    generate_demo.main(["--params", str(work / "params.yaml"), "--out", str(work / "raw")])
    prepare.main(["--params", str(work / "params.yaml"), "--out", str(work / "prepared")])
    return work / "prepared"
