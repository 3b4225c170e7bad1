"""A queued experiment that fails, DVC run for real: `dvc exp show` marks it Failed (table and JSON), its stage
put the last good outputs back in the experiment's own workspace, and the main workspace is untouched.

Why its metric columns show the baseline's numbers: DVC collects a failed queue entry from the commit it
queued (``dvc/repo/experiments/queue/celery.py``, ``collect_failed_data`` -> ``collect_rev(stash_rev)``), a
snapshot of the workspace at ``dvc exp run --queue`` time, which holds the baseline's committed metrics. A
stage that restores nothing shows the same (this test with ``main()`` in place of ``console.run``: the
same row, the same 21), so it is DVC's presentation, not the last-good restore: docs/failures.md says to
read the State column (or ``--hide-failed``).
"""
from __future__ import annotations

import json
import subprocess

import psutil
import pytest

from tests.integration.test_last_good import BIN, DVC_YAML, STAGE, dvc, outputs, project_env, set_value

pytestmark = [pytest.mark.integration]


def _project(path, stage: str):
    path.mkdir()
    (path / "toy_stage.py").write_text(stage)
    (path / "dvc.yaml").write_text(DVC_YAML)
    (path / "data.txt").write_text("7\n")
    set_value(path, 3)
    for args in (["git", "init", "-q"], ["git", "add", "-A"]):
        subprocess.run(args, cwd=path, check=True, env=project_env())
    dvc(path, "init", "-q")
    dvc(path, "repro")
    subprocess.run(["git", "add", "-A"], cwd=path, check=True, env=project_env())
    subprocess.run(["git", "commit", "-qm", "good run"], cwd=path, check=True, env=project_env())


def _run_queue(repo) -> str:
    """`dvc exp run --run-all`, its output in a file (its queue worker may outlive it, holding pipes), and
    every process it left in this project ended."""
    log = repo.parent / f"{repo.name}-run-all.log"
    try:
        with open(log, "w") as f:
            subprocess.run([str(BIN / "dvc"), "exp", "run", "--run-all"], cwd=repo, env=project_env(), stdout=f,
                           stderr=subprocess.STDOUT, timeout=600)
    finally:
        for p in psutil.process_iter(["cmdline", "cwd"]):
            if "queue-worker" in " ".join(p.info["cmdline"] or []) and str(p.info["cwd"] or "").startswith(str(repo)):
                p.kill()
    return log.read_text()


@pytest.mark.slow  # DVC's queue (a Celery worker) takes most of a minute here
def test_a_failed_queued_experiment_is_marked_failed_and_leaves_the_workspace_alone(tmp_path):
    repo = tmp_path / "toy"
    _project(repo, STAGE)
    good = outputs(repo)
    dvc(repo, "exp", "run", "--queue", "-S", 'toy.value="bad"', "-n", "bad")
    log = _run_queue(repo)
    assert "toy.value='bad' is not an integer" in log
    assert "kept the last good results" in log   # in the experiment's workspace
    assert outputs(repo) == good      # the experiment's failure and restore stayed in its own workspace
    shown = json.loads(dvc(repo, "exp", "show", "--json").stdout)
    bad, = [e for row in shown for e in row.get("experiments") or [] if e["name"] == "bad"]
    assert bad["executor"]["state"] == "failed" and bad["revs"][0]["error"]["msg"] == "Experiment run failed"
    table = dvc(repo, "exp", "show", "--md").stdout
    row, = [line for line in table.splitlines() if "[bad]" in line]
    assert "Failed" in row
    # its metrics: the baseline's as queued (DVC reads the queued snapshot; the same without any restore)
    assert bad["revs"][0]["data"]["metrics"]["metrics.json"]["data"] == {"score": 21}
    assert "[bad]" not in dvc(repo, "exp", "show", "--md", "--hide-failed").stdout
