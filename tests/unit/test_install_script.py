"""The install scripts fail loudly: a step whose install did not happen exits non-zero with its log's tail.

Real installers on a throwaway virtual environment (uv venv, no torch: ``TORCH_SPEC=`` keeps the
environment's own): the lock step stops at the first refusal, so each run takes seconds.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory) -> Path:
    """A new virtual environment with pip and nothing of the project (no torch either)."""
    venv = tmp_path_factory.mktemp("install") / "venv"
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv:
        subprocess.run([uv, "venv", "-q", "--seed", "--python", sys.executable, str(venv)], check=True)
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    return venv


def _run(script: str, *args: str, env: dict, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPTS / script), *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300)


def test_a_tampered_hash_in_the_lock_installs_nothing_and_exits_non_zero(bare_venv, tmp_path):
    lock = (ROOT / "requirements.lock").read_text()
    first = re.search(r"^([A-Za-z0-9][\w.-]*)==\S+ \\\n((?:\s+--hash=sha256:\w+ ?\\?\n)+)", lock, re.M)
    name, hashes = first.group(1), first.group(2)
    # every hash of one package changed (one good hash would still let pip and uv accept a file)
    tampered = re.sub(r"sha256:(\w{64})", lambda m: "sha256:" + m.group(1)[::-1], hashes)
    (tmp_path / "requirements.lock").write_text(lock.replace(hashes, tampered, 1))
    out = _run("install.sh", str(bare_venv), env={"DEFR_LOCK": str(tmp_path / "requirements.lock"),
                                                  "TORCH_SPEC": "", "DEFR_LOG_DIR": str(tmp_path / "logs")})
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert re.search(rf"install: the project and .*requirements.lock .*\.\.\. FAILED", out.stdout), text
    assert "hash" in text.lower() and name in text, text          # the log's tail says what was refused
    assert str(tmp_path / "logs" / "install.log") in out.stdout
    nothing = subprocess.run([str(bare_venv / "bin" / "python"), "-c", "import dvc"], capture_output=True)
    assert nothing.returncode != 0  # and indeed nothing of the lock was installed


def test_mmdet_install_fails_loudly_without_torch_and_when_its_build_fails(bare_venv, tmp_path):
    env = {"DEFR_LOG_DIR": str(tmp_path / "logs"), "DEFR_WHEEL_CACHE": str(tmp_path / "wheels")}
    out = _run("install_mmdet.sh", str(bare_venv / "bin" / "python"), env=env)
    assert out.returncode != 0 and "FAILED" in out.stdout and "cannot import torch" in out.stdout, out.stdout
    # The build step itself failing (here: CUDA ops asked for, no nvcc): its line says FAILED, with the reason.
    out = _run("install_mmdet.sh", sys.executable, env={
        **env, "DEFR_FORCE_REINSTALL": "1", "FORCE_CUDA": "1", "CUDA_HOME": str(tmp_path / "no-cuda"),
        "PATH": "/usr/bin:/bin"})
    assert out.returncode != 0, out.stdout + out.stderr
    assert re.search(r"install: mmcv 2\.1\.0 built from source .*\.\.\. FAILED after \d+ s", out.stdout), out.stdout
    assert "needs nvcc" in out.stdout


def test_step_lines_give_minutes_for_long_steps():
    out = subprocess.run(["bash", "-c", f"source {SCRIPTS / 'install_steps.sh'}; duration 646; duration 14"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["646 s (10 min 46 s)", "14 s"]


# A stand-in for the venv's python that plays pip for install_mmdet.sh (the real build takes 10-20 minutes; it
# runs from an empty cache in the fresh-home check of make test): it serves an mmcv sdist whose setup.py has
# the flag the script patches, "builds" a wheel, and imports the stack once that wheel was installed. What is
# under test is the script's own flow: the step lines, the cleanup when the step's subshell exits, the cache.
PLAYS_PIP = r'''#!/usr/bin/env bash
state="$(dirname "$0")/installed"
[ "$1" = - ] && { cat >/dev/null; echo py311-torch2.14.1-cpu; exit 0; }  # the script's flavour probe
case "$1 $2 $3" in
  "-m pip download")
    for a in "$@"; do [ "$prev" = -d ] && out=$a; prev=$a; done
    work=$(mktemp -d); mkdir -p "$work/mmcv-2.1.0" "$out"
    echo "extra_compile_args = ['-std=c++17']" > "$work/mmcv-2.1.0/setup.py"
    tar -czf "$out/mmcv-2.1.0.tar.gz" -C "$work" mmcv-2.1.0; rm -rf "$work" ;;
  "-m pip wheel")
    for a in "$@"; do [ "$prev" = -w ] && out=$a; prev=$a; done
    grep -q -- -std=c++20 setup.py || { echo "setup.py not patched" >&2; exit 1; }
    mkdir -p "$out"; touch "$out/mmcv-2.1.0-cp311-cp311-linux_x86_64.whl" ;;
  "-m pip install") case "$*" in *mmcv-2.1.0-*.whl*) touch "$state" ;; esac ;;
  *) [ "$1" = -c ] && [ -f "$state" ] && { echo "mmdet stack OK: 2.1.0 0.10.7 3.3.0"; exit 0; }; exit 1 ;;
esac
'''


def test_a_build_from_an_empty_cache_succeeds_cleans_up_and_is_cached(tmp_path):
    py = tmp_path / "bin" / "python"
    py.parent.mkdir()
    py.write_text(PLAYS_PIP)
    py.chmod(0o755)
    cache = tmp_path / "wheels"
    env = {"DEFR_LOG_DIR": str(tmp_path / "logs"), "DEFR_WHEEL_CACHE": str(cache), "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    out = _run("install_mmdet.sh", str(py), env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"install: mmcv 2\.1\.0 built from source \(py311-torch2\.14\.1-cpu\) .*\.\.\. \d+ s", out.stdout)
    assert "of it the mmcv build (cached for later installs" in out.stdout
    built = cache / "mmcv-2.1.0-py311-torch2.14.1-cpu"
    assert [p.name for p in built.glob("*.whl")] == ["mmcv-2.1.0-cp311-cp311-linux_x86_64.whl"]
    assert (built / "BUILD_TIME.txt").is_file()
    assert not list((tmp_path / "tmp").iterdir()) and not built.with_name(built.name + ".tmp").exists()
    (py.parent / "installed").unlink()  # a new venv: the cached wheel, no build
    again = _run("install_mmdet.sh", str(py), env=env)
    assert again.returncode == 0 and "the cached wheel" in again.stdout and "built from source" not in again.stdout
