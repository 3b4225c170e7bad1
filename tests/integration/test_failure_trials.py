"""The fault trials a new user meets, each through the stage's own command line (`python -m stages.X`, as
`dvc repro` runs it): every one ends within 60 s with exit status 1 and a line that names the param, file or
address and what was expected. docs/failures.md is the table of these trials."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.test_train_stage import PLACE, TRAIN, write_text_embeddings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
LIMIT_S = 60


def stage(args: list[str], cwd: Path, python: str = sys.executable, **env) -> tuple[subprocess.CompletedProcess, float]:
    environ = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, "DEFR_LOG_DIR": str(cwd / "logs"),
               "PYTHONPATH": str(ROOT), **env}
    start = time.perf_counter()
    out = subprocess.run([python, "-m", *args], cwd=ROOT, env=environ, capture_output=True, text=True,
                         timeout=LIMIT_S + 60)
    return out, time.perf_counter() - start


@pytest.fixture(scope="module")
def train_args(prepared_demo, tmp_path_factory):
    work = tmp_path_factory.mktemp("trials")
    emb = write_text_embeddings(prepared_demo, work / "text_embeddings.parquet")

    def args(name: str, train: dict | None = None, placement: dict | None = None) -> list[str]:
        params = work / f"{name}.yaml"
        params.write_text(yaml.safe_dump({"train": TRAIN | (train or {}),
                                          "placement": {"train": PLACE | {"storage_path": str(work / "runs")}
                                                        | (placement or {})}}))
        return ["stages.train", "--params", str(params), "--images", str(prepared_demo / "images.parquet"),
                "--text-embeddings", str(emb), "--model-out", str(work / name / "model"),
                "--history", str(work / name / "h.csv"), "--metrics", str(work / name / "m.json")]

    return work, args


TRAIN_TRIALS = {
    "lr_not_a_number": ({"lr": "fast"}, None, "train.lr = 'fast': expected a number"),
    "loss_misspelled": ({"loss": "lse-sign"}, None, "did you mean 'lse_sign'"),
    "model_unknown": ({"model": "ViT-Z-99"}, None, "train.model = 'ViT-Z-99': not an open_clip model"),
    "no_epochs": ({"epochs": 0}, None, "train.epochs = 0: expected an integer in [1, 10000]"),
    "misspelled_optional_key": (None, {"max_failurs": 1}, "placement.train.max_failurs: unknown key; did you mean"),
    "moved_key_in_old_place": ({"num_workers": 2}, None, "train.num_workers: this key moved to placement.train"),
    "more_workers_than_the_cluster_holds": ({"global_batch": 64}, {"num_workers": 64},
                                            "64 Ray Train workers need 64 x (1 CPU) but the Ray cluster has"),
}


@pytest.mark.parametrize("trial", list(TRAIN_TRIALS))
def test_train_trials_fail_fast_naming_the_param(train_args, trial):
    work, args = train_args
    train, placement, expected = TRAIN_TRIALS[trial]
    out, seconds = stage(args(trial, train, placement), work)
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    assert expected in out.stdout, out.stdout[-2000:]
    assert "full log:" in out.stdout and out.stderr == ""
    assert seconds < LIMIT_S, f"{trial} took {seconds:.0f} s"
    assert not (work / trial / "model").exists()


def test_an_unreachable_ray_address_fails_naming_it(train_args):
    work, args = train_args
    out, seconds = stage(args("unreachable"), work, RAY_ADDRESS="127.0.0.1:1")
    assert out.returncode == 1 and "cannot reach the Ray cluster at 127.0.0.1:1" in out.stdout, out.stdout[-2000:]
    assert "ray start --head" in out.stdout and seconds < LIMIT_S


def test_a_python_path_with_a_space_fails_at_once_naming_the_cause(train_args, tmp_path):
    work, args = train_args
    spaced = tmp_path / "with space"
    spaced.mkdir()
    venv = Path(sys.prefix)
    (spaced / "venv").symlink_to(venv, target_is_directory=True)
    python = str(spaced / "venv" / "bin" / Path(sys.executable).name)
    out, seconds = stage(args("spaced"), work, python=python)
    assert out.returncode == 1 and "has a space in its path" in out.stdout, out.stdout[-2000:]
    assert seconds < LIMIT_S


@pytest.mark.parametrize("section, values, expected", [
    ("prepare", {"val_fracton": 0.2}, "prepare.val_fracton: unknown key; did you mean prepare.val_fraction?"),
    ("demo", {"n_test": 0}, "demo.n_test = 0: expected an integer in [1, 1000000]"),
])
def test_data_stage_trials_fail_naming_the_param(tmp_path, section, values, expected):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({section: values}))
    module = {"prepare": "stages.prepare", "demo": "stages.generate_demo"}[section]
    out, seconds = stage([module, "--params", str(params), "--out", str(tmp_path / "out")], tmp_path)
    assert out.returncode == 1 and expected in out.stdout, out.stdout[-2000:]
    assert seconds < LIMIT_S and not (tmp_path / "out").exists()
