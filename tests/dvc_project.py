"""A temporary copy of the project as its own git + DVC repository, with DVC run for real through its CLI.

Used by the integration tests that exercise `dvc repro`, `dvc status`, remotes and killed runs.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.conftest import DEMO_TEST_PARAMS

ROOT = Path(__file__).resolve().parents[1]
UP_TO_DATE = "Data and pipelines are up to date."

# Shrunken values for the stages after prepare, applied only to keys the params file has (so the tests keep
# working as stages gain params); the demo and prepare sections come from tests/conftest.py.
SHRINK = {
    "train": {"epochs": 1, "restart_epochs": 1, "global_batch": 16, "image_size": 64, "min_per_class": 0},
    "score_regions": {"attention_maps": 1},
    "placement": {"embed_text": {"cache": ""}, "predict": {"actors": 1, "device": "cpu"},
                  "train": {"num_workers": 1, "micro_batch": 16, "loader_workers": 0, "max_failures": 0,
                            "use_gpu": False},
                  "score_regions": {"device": "cpu"}},
}


# The session's shared Ray (tests/conftest.py ``shared_ray``): its token settings, for every DVC command.
RAY_ENV: dict[str, str] = {}


def use_ray(shared) -> None:
    """Gives the DVC commands of this session the environment that joins ``shared`` (its token file)."""
    RAY_ENV.update(shared.env)


def env() -> dict[str, str]:
    # DVC runs stage commands with the first `python` on PATH: the project's venv, as the Makefile does.
    # Ray's authentication mode is not forced: a stage's own local Ray uses token authentication.
    e = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    e.update(RAY_ENV)
    e.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{e['PATH']}", DVC_NO_ANALYTICS="1",
             GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
             GIT_COMMITTER_EMAIL="t@example.com", RAY_USAGE_STATS_ENABLED="0",
             HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
             # DVC runs commands with `$SHELL -c`: /bin/sh as on CI (where SHELL is unset), whatever the
             # developer's login shell. Debian's dash stays between dvc and the stage; bash would not.
             SHELL="/bin/sh")
    return e


def run(args: list[str], cwd: Path, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    out = subprocess.run(args, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed in {cwd}:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    return out


def dvc(*args: str, cwd: Path, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    return run([str(Path(sys.executable).parent / "dvc"), *args], cwd, check, timeout)


def ran_stages(out: subprocess.CompletedProcess) -> set[str]:
    """The stages `dvc repro` (or `dvc repro --dry`) ran."""
    return set(re.findall(r"Running stage '([\w-]+)'", out.stdout + out.stderr))


def copy_project(dest: Path) -> None:
    """The tracked and untracked-but-not-ignored files of the working tree (no data, venv or caches)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file() and not name.startswith(("tests/", "bench/")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def _update(target: dict, values: dict) -> None:
    """Sets the keys of ``values`` that ``target`` has (recursively); None values are left alone."""
    for k, v in values.items():
        if k in target and isinstance(v, dict) and isinstance(target[k], dict):
            _update(target[k], v)
        elif k in target and v is not None:
            target[k] = v


def shrink_params(path: Path) -> None:
    params = yaml.safe_load(path.read_text())
    _update(params, DEMO_TEST_PARAMS)
    _update(params, SHRINK)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def new_project(dest: Path) -> Path:
    """A shrunken copy of the project, committed in a new git repository."""
    dest.mkdir(parents=True, exist_ok=True)
    copy_project(dest)
    shrink_params(dest / "params.yaml")
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-q", "-m", "project"], dest)
    return dest


def commit_all(repo: Path, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", message], repo)


def ran_pipeline(dest: Path, ray_address: str = "") -> tuple[Path, float]:
    """A shrunken project whose whole pipeline ran (`dvc repro`) and was committed, with its stages joining
    the Ray at ``ray_address`` (placement.ray_address; empty: each stage starts a local Ray); and the seconds
    the run took."""
    repo = new_project(dest)
    if ray_address:
        edit_params(repo, {"placement.ray_address": ray_address})
        commit_all(repo, "the session's Ray")
    start = time.perf_counter()
    dvc("repro", cwd=repo)
    seconds = time.perf_counter() - start
    commit_all(repo, "demo run")
    return repo, seconds


def clone_project(src: Path, dest: Path) -> Path:
    """A working copy of ``src`` in the state of its last commit, without running a stage: `git clone`, a
    hard-linked copy of its DVC cache (outputs and run cache; what the clone adds goes to its own copy,
    so clones never see each other's runs), and `dvc checkout` of the outputs dvc.lock names."""
    run(["git", "clone", "-q", str(src), str(dest)], dest.parent)
    cache = src / ".dvc" / "cache"
    if cache.exists():
        shutil.copytree(cache, dest / ".dvc" / "cache", copy_function=os.link)
    dvc("checkout", "-q", cwd=dest)
    return dest


def restore(repo: Path) -> None:
    """Back to the last commit: tracked files (params.yaml, dvc.lock, git-tracked metrics and plots) from
    git, stage outputs from the DVC cache (`dvc checkout`); no stage runs. Checks that DVC agrees."""
    run(["git", "checkout", "-q", "--", "."], repo)
    run(["git", "clean", "-q", "-f", "--", "inputs"], repo)
    dvc("checkout", "-q", "--force", cwd=repo)
    status = dvc("status", cwd=repo).stdout
    assert UP_TO_DATE in status, f"{repo} not back to its committed state:\n{status[-2000:]}"


def edit_params(repo: Path, values: dict) -> None:
    """Sets dotted keys (``{"train.epochs": 6}``) in the project's params.yaml."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for dotted, value in values.items():
        node = params
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
