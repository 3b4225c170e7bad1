"""Runs a command (``dvc repro``) with one local Ray head that all its stages join, then ends the head.

    python scripts/with_local_ray.py dvc repro --quiet          # what `make demo` runs

Every stage that uses Ray (train, predict, detect, score_regions) would otherwise start a local Ray of its
own and stop it again: 10-20 s each on a laptop. Here one head starts first (loopback only, token
authentication with a token of its own: ``pipeline.distributed.LocalHead``), each stage joins it through
``RAY_ADDRESS`` (no stage tracks where it runs, so nothing re-runs because of it) and the head ends when
the command does, also on Ctrl-C or SIGTERM. When a cluster is given (``RAY_ADDRESS`` or
``placement.ray_address`` in params.yaml), the command runs as it is.
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


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    if cluster_given():
        return subprocess.call(argv)
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
        return subprocess.call(argv, env={**os.environ, **head.env, "RAY_ADDRESS": head.address})
    except KeyboardInterrupt:
        return 130
    finally:
        head.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
