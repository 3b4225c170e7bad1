"""A DVC remote on S3, for real: ``dvc push`` to ``s3://`` with ``endpointurl`` on the loopback S3 server
(tests/s3_server.py, credentials checked), a fresh clone, ``dvc pull``, ``dvc repro --pull`` running
nothing, ``dvc status -c`` clean; and without dvc.lock, stages restored from the pushed run cache.

The commands are the ones docs/team_storage.md gives. DVC gets the endpoint from the remote's committed
config and the keys from each clone's ``.dvc/config.local``, never from the AWS_* variables the fixture
exports (they are removed from the DVC processes' environment). Only the stages up to embed_text run:
what is tested is the remote (tests/integration/test_dvc_remote.py runs the whole pipeline), so the pull
names its target (``dvc pull embed_text --with-deps``: the later stages have no outputs to pull).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.dvc_project import UP_TO_DATE, copy_project, shrink_params
from tests.integration.test_dvc_remote import digest, run_cache_chain, tracked_outputs
from tests.s3_server import s3, s3_server  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TARGET = "embed_text"  # generate_demo -> prepare -> embed_text
IN_SYNC = "Cache and remote 'team' are in sync"


def dvc_env() -> dict[str, str]:
    """The test's environment without the AWS keys and endpoint: DVC must find them in its own config."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")}
    env.update(PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}", DVC_NO_ANALYTICS="1",
               GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.com")
    return env


def sh(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    if args[0] == "dvc":
        args = (str(Path(sys.executable).parent / "dvc"), *args[1:])
    out = subprocess.run(list(args), cwd=cwd, env=dvc_env(), capture_output=True, text=True, timeout=900)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed in {cwd}:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
    return out


def set_keys(repo: Path, server) -> None:
    """What each teammate types once (docs/team_storage.md): keys into the git-ignored config.local."""
    sh("dvc", "remote", "modify", "--local", "team", "access_key_id", server.access_key, cwd=repo)
    sh("dvc", "remote", "modify", "--local", "team", "secret_access_key", server.secret_key, cwd=repo)


def test_s3_remote_push_clone_pull_repro_pull_and_run_cache(s3, tmp_path, record_property):
    bucket = s3.new_bucket()
    src = tmp_path / "project"
    src.mkdir()
    copy_project(src)
    shrink_params(src / "params.yaml")
    (src / "dvc.lock").unlink()  # the results of the shrunken run only
    sh("git", "init", "-q", "-b", "main", cwd=src)
    sh("dvc", "remote", "add", "-d", "team", f"s3://{bucket}/dvc", cwd=src)
    sh("dvc", "remote", "modify", "team", "endpointurl", s3.endpoint, cwd=src)
    set_keys(src, s3)
    sh("git", "add", "-A", cwd=src)
    sh("git", "commit", "-q", "-m", "project with an S3 remote", cwd=src)
    committed = sh("git", "show", "HEAD:.dvc/config", cwd=src).stdout
    assert f"s3://{bucket}/dvc" in committed and s3.endpoint in committed
    assert s3.secret_key not in committed and s3.access_key not in committed
    assert ".dvc/config.local" not in sh("git", "ls-files", cwd=src).stdout

    sh("dvc", "repro", TARGET, cwd=src)
    sh("git", "add", "-A", cwd=src)
    sh("git", "commit", "-q", "-m", "demo run", cwd=src)
    lock = yaml.safe_load((src / "dvc.lock").read_text())["stages"]
    cached = tracked_outputs(src)  # path -> content in the DVC remote (False: `cache: false`, in git)
    outs = [o["path"] for st in lock.values() for o in st.get("outs", []) if cached.get(o["path"], True)]
    assert {"generate_demo", "prepare", TARGET} <= set(lock) and outs

    t0 = time.perf_counter()
    sh("dvc", "push", "--run-cache", cwd=src)
    t_push = time.perf_counter() - t0
    assert IN_SYNC in sh("dvc", "status", "-c", cwd=src).stdout
    objects = s3.keys(bucket, "dvc/")
    assert any(k.startswith("dvc/files/md5/") for k in objects), objects[:10]  # the outputs
    assert any(k.startswith("dvc/runs/") for k in objects), objects[:10]  # the run cache

    # A teammate: clone, own keys, pull. Nothing to run, the same bytes, remote in sync.
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(src), str(clone), cwd=tmp_path)
    assert not any((clone / p).exists() for p in outs), "outputs must come from the bucket"
    no_keys = sh("dvc", "pull", TARGET, "--with-deps", cwd=clone, check=False)
    assert no_keys.returncode != 0, "a clone without keys must not pull from an authenticated bucket"
    set_keys(clone, s3)
    t0 = time.perf_counter()
    sh("dvc", "pull", TARGET, "--with-deps", cwd=clone)  # the stages that ran; the rest never did
    t_pull = time.perf_counter() - t0
    assert UP_TO_DATE in sh("dvc", "status", TARGET, "--with-deps", cwd=clone).stdout
    for p in outs:
        assert digest(clone / p) == digest(src / p), p
    repro = sh("dvc", "repro", "--pull", TARGET, cwd=clone)
    assert "Running stage" not in repro.stdout + repro.stderr, repro.stdout[-3000:]
    assert IN_SYNC in sh("dvc", "status", "-c", cwd=clone).stdout

    # Without dvc.lock, `dvc repro --pull` restores what the pushed run cache vouches for, running nothing.
    fresh = tmp_path / "fresh"
    sh("git", "clone", "-q", str(src), str(fresh), cwd=tmp_path)
    set_keys(fresh, s3)
    chain = run_cache_chain(fresh)
    assert {"generate_demo", "prepare"} <= set(chain), chain
    (fresh / "dvc.lock").unlink()
    t0 = time.perf_counter()
    restored = sh("dvc", "repro", "--pull", *chain, cwd=fresh)
    t_restore = time.perf_counter() - t0
    log = restored.stdout + restored.stderr
    assert not re.search(r"Running stage", log), log[-3000:]
    for stage in chain:
        assert f"Stage '{stage}' is cached" in log, f"{stage} not restored from the run cache:\n{log[-3000:]}"
        for o in lock[stage].get("outs", []):
            assert digest(fresh / o["path"]) == digest(src / o["path"]), o["path"]

    figures = {"objects_in_bucket": len(objects), "push_s": round(t_push, 2), "pull_s": round(t_pull, 2),
               "repro_from_run_cache_s": round(t_restore, 2), "run_cache_stages": chain}
    record_property("dvc_s3_remote", figures)
    print("dvc s3 remote figures:", figures)
