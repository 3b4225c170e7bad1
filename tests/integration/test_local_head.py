"""`scripts/with_local_ray.py` (what `make demo` runs `dvc repro` under): one local Ray head that every
stage joins, on loopback only, with a token of its own; a driver without the token is refused; the head
and every process it started are gone when the command ends. Ray and its CLI run for real."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration]

INSIDE = r"""
import json, os, subprocess, sys
import psutil
from pipeline.distributed import init_ray
address = os.environ["RAY_ADDRESS"]
ray = init_ray(address, timeout_s=60)
assert ray.get(ray.remote(lambda: 41 + 1).remote()) == 42
port = address.rsplit(":", 1)[1]
gcs = [p for p in psutil.process_iter(["name", "cmdline"]) if p.info["name"] == "gcs_server"
       and any(a.endswith("port=" + port) for a in p.info["cmdline"] or [])]
group = os.getpgid(gcs[0].pid)
members = [p for p in psutil.process_iter() if os.getpgid(p.pid) == group]
listening = sorted({(p.name(), c.laddr.ip) for p in members for c in p.net_connections(kind="inet")
                    if c.status == psutil.CONN_LISTEN})
strip = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN")
env = {k: v for k, v in os.environ.items() if k not in strip}
env["HOME"] = os.environ["OTHER_HOME"]
join = "from pipeline.distributed import init_ray; init_ray(%r, timeout_s=20)" % address
probe = subprocess.run([sys.executable, "-c", join], env=env, capture_output=True, text=True, timeout=120)
print("RESULT" + json.dumps({"group": group, "listening": listening, "probe_rc": probe.returncode,
                             "probe_err": probe.stderr[-1500:],
                             "token_dir": os.path.dirname(os.environ["RAY_AUTH_TOKEN_PATH"])}))
"""


def test_one_local_head_for_a_command_loopback_token_and_gone_after(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env.update(OTHER_HOME=str(tmp_path / "other"), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "with_local_ray.py"), sys.executable, "-c", INSIDE],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "one local Ray for every stage" in out.stdout
    result = json.loads(out.stdout.split("RESULT", 1)[1])
    names = {name for name, _ in result["listening"]}
    assert {"gcs_server", "raylet"} <= names, result["listening"]  # found the head's servers: not vacuous
    outside = [s for s in result["listening"] if not s[1].removeprefix("::ffff:").startswith("127.")]
    assert not outside, f"the head listens beyond loopback: {outside}"
    assert result["probe_rc"] != 0 and "refused this driver" in result["probe_err"], result["probe_err"]
    left = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == result["group"] and p.status() != psutil.STATUS_ZOMBIE:
                left.append(p.pid)
        except (ProcessLookupError, psutil.Error):
            continue
    assert not left, f"processes of the head still alive after the command: {left}"
    assert "defr-ray-" in result["token_dir"] and not Path(result["token_dir"]).exists()  # its token went too


def test_a_given_cluster_runs_the_command_as_it_is(tmp_path):
    env = {**os.environ, "RAY_ADDRESS": "127.0.0.1:1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "with_local_ray.py"), sys.executable, "-c",
                          "import os; print('ADDR', os.environ['RAY_ADDRESS'])"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "ADDR 127.0.0.1:1" in out.stdout and "one local Ray" not in out.stdout
