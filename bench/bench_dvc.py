"""The DVC pipeline as a new user meets it: two fresh copies give the same dvc.lock, and `dvc repro` with
nothing changed is quick.

    python -m bench dvc

Two copies of the project (tracked files only, as a fresh clone has them; the demo params unchanged) each
run `dvc repro` from nothing; the benchmark prints which dvc.lock entries differ (none expected) and the
wall time of a full run. Then `dvc repro` and `dvc status` with nothing changed, median of 5, against the
baseline of `dvc --version` (DVC's own start-up) measured in the same run.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import yaml

from tests.dvc_project import copy_project, dvc, run


def _fresh_copy(dest: Path) -> Path:
    dest.mkdir(parents=True)
    copy_project(dest)
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-q", "-m", "clone"], dest)
    return dest


def _lock_entries(repo: Path) -> dict[str, str]:
    """Every hash in dvc.lock, by stage and path (deps, outs) or params key."""
    out = {}
    for stage, entry in yaml.safe_load((repo / "dvc.lock").read_text())["stages"].items():
        for kind in ("deps", "outs"):
            for item in entry.get(kind, []):
                out[f"{stage} {kind} {item['path']}"] = item.get("md5") or item.get("hash")
        for file, values in (entry.get("params") or {}).items():
            out[f"{stage} params {file}"] = yaml.safe_dump(values, sort_keys=True)
    return out


def _median(fn, n: int = 5) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        repos = []
        for name in ("a", "b"):
            repo = _fresh_copy(Path(tmp) / name)
            start = time.perf_counter()
            dvc("repro", cwd=repo, timeout=3600)
            print(f"fresh copy {name}: dvc repro of the demo in {time.perf_counter() - start:.0f} s")
            repos.append(repo)
        a, b = (_lock_entries(r) for r in repos)
        differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        same = (repos[0] / "dvc.lock").read_bytes() == (repos[1] / "dvc.lock").read_bytes()
        print(f"dvc.lock of the two copies: {'identical bytes' if same else f'{len(differ)} entries differ'} "
              f"({len(a)} entries)" + "".join(f"\n  differs: {k}" for k in differ))
        dirty = run(["git", "status", "--porcelain"], repos[0]).stdout.split("\n")
        changed_tracked = [line for line in dirty if line and not line.startswith("??")]
        print(f"git status after the run: {len(changed_tracked)} tracked files changed"
              + "".join(f"\n  {line}" for line in changed_tracked))
        base = _median(lambda: dvc("--version", cwd=repos[0]))
        noop = _median(lambda: dvc("repro", cwd=repos[0]))
        status = _median(lambda: dvc("status", cwd=repos[0]))
        print(f"`dvc repro` with nothing changed: {noop:.2f} s median of 5 ({noop / base:.1f}x `dvc --version` "
              f"= {base:.2f} s); `dvc status`: {status:.2f} s ({status / base:.1f}x)")
