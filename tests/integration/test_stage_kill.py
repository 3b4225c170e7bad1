"""A stage killed half way through writing leaves no partial artifact, and its re-run succeeds.

``python -m stages.prepare`` runs as a real subprocess and gets SIGKILL (no cleanup handlers run) while
its output folder is being written into its temporary sibling.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from pipeline import schemas

ROOT = Path(__file__).resolve().parents[2]
PREPARED_FILES = ["classes.parquet", "images.parquet", "pairs.parquet", "rejects.parquet"]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def start_prepare(params: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DEFR_LOG_DIR": str(out.parent / "logs")}
    return subprocess.Popen([sys.executable, "-m", "stages.prepare", "--params", str(params), "--out", str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_mid_write(params: Path, out: Path, timeout: float = 120) -> list[str]:
    """Starts prepare, SIGKILLs it once its temporary output holds some but not all files.

    Returns the files the temporary held at the kill; [] when the writer finished first (a lost race).
    """
    proc = start_prepare(params, out)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            temps = list(out.parent.glob(f".{out.name}.*.tmp"))
            written = [f.name for t in temps for f in (t / out.name).glob("*.parquet")] if temps else []
            if written:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                return sorted(written)
            time.sleep(0.0005)
        assert proc.returncode == 0 or proc.returncode is None, proc.stdout.read()[-3000:]
        return []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_killed_prepare_leaves_no_partial_output_and_reruns(prepared_demo, tmp_path):
    raw = prepared_demo.parent / "raw"
    params = tmp_path / "params.yaml"
    demo_params = yaml.safe_load((prepared_demo.parent / "params.yaml").read_text())
    params.write_text(yaml.safe_dump({"prepare": {**demo_params["prepare"], "root": str(raw)}}))
    out = tmp_path / "data" / "prepared"

    for _ in range(5):
        written = kill_mid_write(params, out)
        if written and len(written) < len(PREPARED_FILES):
            break
        if out.exists():  # the writer won the race: start again from nothing
            shutil.rmtree(out)
    else:
        pytest.fail(f"could not kill prepare mid-write in 5 attempts (last saw {written})")

    # The kill landed with some files written into the temporary: the artifact path itself is untouched.
    assert not out.exists(), f"partial artifact at {out} after SIGKILL with {written} written"
    leftovers = list(out.parent.glob(f".{out.name}.*.tmp"))
    assert leftovers, "the killed writer's temporary should still be there (SIGKILL skips cleanup)"

    # The re-run (what `dvc repro` does next) writes the whole artifact and sweeps the dead writer's temp.
    rerun = start_prepare(params, out)
    log, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, log[-3000:]
    assert sorted(p.name for p in out.iterdir()) == PREPARED_FILES
    assert not list(out.parent.glob(f".{out.name}.*.tmp")), "stale temporaries left after the re-run"
    for name, schema in [("images", schemas.IMAGES), ("pairs", schemas.PAIRS), ("classes", schemas.CLASSES)]:
        fresh = pq.read_table(out / f"{name}.parquet")
        reference = pq.read_table(prepared_demo / f"{name}.parquet")
        schemas.conform(fresh, schema, name)
        assert fresh.num_rows > 0 and fresh.equals(reference), f"{name}: re-run differs from a clean run"
