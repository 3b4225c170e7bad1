"""Team storage through a DVC remote, with DVC run for real through its CLI.

In a clone of the session's shrunken pipeline run (its own git repository; the ``pipeline_run`` fixture)
a second `dvc repro` runs nothing and a late stage's param re-runs only that stage and those after it;
every stage output and the run cache are pushed to a local-directory remote; a fresh clone then
(a) `dvc pull`s, `dvc status` reports nothing to run and `dvc repro --pull` runs nothing, and (b) without any
dvc.lock, `dvc repro --pull` restores the stages from the pushed run cache instead of recomputing them.
"""
from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

import pytest
import yaml

from tests.dvc_project import UP_TO_DATE, clone_project, commit_all, dvc, run

# the session's pipeline run (the pipeline_run fixture) counts against the first test that asks for it
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(2400)]


def tracked_outputs(repo: Path) -> dict[str, bool]:
    """path -> cached (True: content in the DVC remote; False: `cache: false`, content in git) of every
    output, metric and plot of dvc.yaml's stages."""
    outputs = {}
    for stage in yaml.safe_load((repo / "dvc.yaml").read_text())["stages"].values():
        for entry in [e for key in ("outs", "metrics", "plots") for e in stage.get(key, [])]:
            path, opts = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
            outputs[path] = (opts or {}).get("cache", True)
    return outputs


def run_cache_chain(repo: Path) -> list[str]:
    """Stages DVC can restore from the run cache alone: all their outputs cached (DVC keeps no run-cache
    entry for a stage with a `cache: false` output) and every dep that another stage produces coming from
    such a stage too."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    producer = {o["path"]: name for name, st in lock.items() for o in st.get("outs", [])}
    chain: list[str] = []
    for name in lock:  # dvc.lock lists stages in pipeline order
        outs = [e for key in ("outs", "metrics", "plots") for e in stages[name].get(key, [])]
        cached = all(isinstance(e, str) or (next(iter(e.values())) or {}).get("cache", True) for e in outs)
        upstream = {producer[o] for d in lock[name].get("deps", []) for o in producer
                    if d["path"] == o or d["path"].startswith(o.rstrip("/") + "/")}
        if cached and upstream <= set(chain):
            chain.append(name)
    return chain


def digest(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode() + f.read_bytes())
    return h.hexdigest()


def test_push_clone_pull_status_and_run_cache(pipeline_run, tmp_path, record_property):
    # The whole pipeline ran once for the session (`dvc repro`, committed); this is a clone of that run.
    src, remote = clone_project(pipeline_run, tmp_path / "project"), tmp_path / "remote"
    t_repro = float((pipeline_run.parent / "repro_seconds").read_text())
    dvc("remote", "add", "-d", "team", str(remote), cwd=src)
    commit_all(src, "a team remote")

    # A second `dvc repro` runs nothing; a param that only a late stage reads re-runs only that stage and
    # the stages after it.
    again = dvc("repro", cwd=src)
    assert "Running stage" not in again.stdout + again.stderr, again.stdout[-3000:]
    params = yaml.safe_load((src / "params.yaml").read_text())
    params["score_regions"]["score_power"] = 2.8
    (src / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    partial = dvc("repro", cwd=src)
    ran = set(re.findall(r"Running stage '([\w-]+)'", partial.stdout + partial.stderr))
    assert ran == {"score_regions", "evaluate"}, partial.stdout[-3000:]
    run(["git", "add", "-A"], src)
    run(["git", "commit", "-q", "-m", "score_power 2.8"], src)
    outputs = tracked_outputs(src)
    stages = list(yaml.safe_load((src / "dvc.lock").read_text())["stages"])
    assert {"generate_demo", "prepare"} <= set(stages) and len(outputs) >= 2

    t0 = time.perf_counter()
    dvc("push", "--run-cache", cwd=src)
    t_push = time.perf_counter() - t0
    # Every output of dvc.lock is in the remote now: `dvc status --cloud` compares cache and remote.
    assert "Cache and remote 'team' are in sync" in dvc("status", "--cloud", cwd=src).stdout

    # (a) A teammate clones the repository and pulls: nothing to run, the same bytes everywhere.
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(src), str(clone)], tmp_path)
    cached = [p for p, in_remote in outputs.items() if in_remote]
    assert cached and not any((clone / p).exists() for p in cached), "cached outputs must come from the remote"
    t0 = time.perf_counter()
    dvc("pull", cwd=clone)
    t_pull = time.perf_counter() - t0
    status = dvc("status", cwd=clone).stdout
    assert UP_TO_DATE in status, f"a fresh clone + dvc pull would recompute:\n{status}"
    for p in outputs:
        assert digest(clone / p) == digest(src / p), p
    repro = dvc("repro", "--pull", cwd=clone)
    assert "Running stage" not in repro.stdout + repro.stderr, repro.stdout[-3000:]

    # (b) Without dvc.lock (a teammate who set the same params by hand), `dvc repro --pull` finds the
    # stages in the pushed run cache and restores them instead of running them.
    fresh = tmp_path / "fresh"
    run(["git", "clone", "-q", str(src), str(fresh)], tmp_path)
    chain = run_cache_chain(fresh)
    assert {"generate_demo", "prepare"} <= set(chain), chain
    (fresh / "dvc.lock").unlink()
    t0 = time.perf_counter()
    repro = dvc("repro", "--pull", *chain, cwd=fresh)
    t_restore = time.perf_counter() - t0
    log = repro.stdout + repro.stderr
    assert "Running stage" not in log, log[-3000:]
    for stage in chain:
        assert f"Stage '{stage}' is cached" in log, f"{stage} not restored from the run cache:\n{log[-3000:]}"
    assert UP_TO_DATE in dvc("status", *chain, cwd=fresh).stdout
    for stage in chain:
        for o in yaml.safe_load((src / "dvc.lock").read_text())["stages"][stage].get("outs", []):
            assert digest(fresh / o["path"]) == digest(src / o["path"]), o["path"]

    figures = {"stages": len(stages), "run_cache_stages": chain, "repro_s": round(t_repro, 1),
               "push_s": round(t_push, 2), "pull_s": round(t_pull, 2), "repro_from_run_cache_s": round(t_restore, 2),
               "remote_mb": round(sum(f.stat().st_size for f in remote.rglob("*") if f.is_file()) / 1e6, 2)}
    record_property("dvc_remote", figures)
    print("dvc remote figures:", figures)
