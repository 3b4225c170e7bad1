"""Runs a command (``dvc repro``) with one local Ray head that all its stages join, then ends the head.

    python scripts/with_local_ray.py dvc repro --quiet          # what `make demo` runs

Every stage that uses Ray (train, predict, detect, score_regions) would otherwise start a local Ray of its
own and stop it again: 10-20 s each on a laptop. Here one head starts first (loopback only, token
authentication with a token of its own: ``pipeline.distributed.LocalHead``), each stage joins it through
``RAY_ADDRESS`` (no stage tracks where it runs, so nothing re-runs because of it) and the head ends when
the command does, also on Ctrl-C or SIGTERM. When a cluster is given (``RAY_ADDRESS`` or
``placement.ray_address`` in params.yaml), the command runs as it is.

After a failed ``dvc repro`` / ``dvc exp run`` it puts back the outputs that dvc.lock records and the
workspace lacks (``python -m stage_support.last_good``): DVC removes a stage's outputs before running it,
and where it then fails before the stage's code runs (a dependency that does not exist), no stage could.
The head's folder (token, log) is removed when it ends (``pipeline.distributed.LocalHead``).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cluster_given(params: Path = Path("params.yaml")) -> bool:
    if os.environ.get("RAY_ADDRESS", "").strip():
        return True
    try:
        import yaml

        placement = (yaml.safe_load(params.read_text()) or {}).get("placement") or {}
    except (OSError, ValueError):
        return False
    return bool(str(placement.get("ray_address") or "").strip())


def put_back_outputs(argv: list[str], rc: int) -> int:
    """After a failed DVC run: the outputs DVC removed and no stage put back, restored from its cache."""
    if rc and Path(argv[0]).name == "dvc" and argv[1:2] in (["repro"], ["exp"]):
        from stage_support.last_good import restore_missing, summary

        for stage, restored in restore_missing(".").items():
            print(f"last_good: {stage}: {summary(restored)}", flush=True)
    return rc


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    if cluster_given():
        return put_back_outputs(argv, subprocess.call(argv))
    from pipeline.distributed import LocalHead

    head = LocalHead()

    def stop(signum, frame):  # the head goes with us; the command gets the signal from the terminal / dvc
        head.stop()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    start = time.perf_counter()
    try:
        head.start()
        print(f"ray: one local Ray for every stage at {head.address} (loopback only, token authentication; "
              f"started in {time.perf_counter() - start:.0f} s)", flush=True)
        rc = subprocess.call(argv, env={**os.environ, **head.env, "RAY_ADDRESS": head.address})
    except KeyboardInterrupt:
        return 130
    finally:
        head.stop()
    return put_back_outputs(argv, rc)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
