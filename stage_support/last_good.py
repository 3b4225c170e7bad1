"""A failed stage puts back the outputs of its last good run, so a failed `dvc repro` costs no result.

DVC deletes a stage's outputs before it runs the stage's command, so a misspelled param, a bad input, a
crash or a kill would leave the workspace without the last good model, prepared data, metrics and plots.
They are not lost: ``dvc.lock`` records the hash of every output of the stage's last successful run, and
DVC's cache holds those contents (cached outputs always; ``cache: false`` metrics and plots too, because
DVC's run cache commits them). When a stage run by ``dvc repro`` fails, :func:`restore` writes each of
its outputs back from there (a file from its cache object; a directory from its ``.dir`` manifest;
failing that, a file from git's ``HEAD`` when its content has the recorded hash), each through a temporary
path beside it and one rename. Outputs that already hold the recorded content are left as they are.

Only stages run by DVC are touched (DVC sets ``DVC_ROOT`` and ``DVC_STAGE`` for a stage's command); a stage
script run by hand, or a stage that has never succeeded, restores nothing. ``stage_support/console.py`` calls it
when a stage fails or is stopped, and ``stage_support/watchdog.py`` when it had to kill a stuck stage. Why this
mechanism rather than a params check first or ``persist: true``: docs/failures.md ("A failed run keeps
the last good result").

One failure happens before any stage code runs: a dependency that does not exist (``prepare.root`` naming a
missing folder). DVC's ``Stage.run`` removes the outputs first and then fails computing the dependency's hash
(``[Errno 2]``), so nothing of the stage can put them back. For that case (and any other) one command puts
back every output that dvc.lock records and the workspace lacks, never touching one that is there::

    python -m stage_support.last_good            # every stage of dvc.lock; or name stages: ... prepare train

``scripts/with_local_ray.py`` (what ``make demo`` runs ``dvc repro`` under) runs it after a failed command.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20


@dataclass
class Restored:
    """What :func:`restore` did for one output of the stage."""

    path: str
    how: str  # "cache", "git", "kept" (already the last good content) or "missing" (could not be restored)


def _md5_file(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _stage_entry(root: Path, stage: str) -> dict | None:
    """The stage's record in dvc.lock (``stage`` as DVC addresses it: ``train`` or ``sub/dvc.yaml:train``)."""
    import yaml

    dvcfile, _, name = stage.rpartition(":")
    lock = root / (Path(dvcfile).parent if dvcfile else Path(".")) / "dvc.lock"
    try:
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    except (OSError, yaml.YAMLError):
        return None
    return stages.get(name) if isinstance(stages, dict) else None


def cache_dirs(root: Path) -> list[Path]:
    """DVC's object folders for ``hash: md5`` outputs (DVC 3) and legacy ones (DVC 2), in that order."""
    base = root / ".dvc" / "cache"
    try:
        from dvc.config import Config

        configured = Config(dvc_dir=str(root / ".dvc"))["cache"].get("dir")
        if configured:
            base = Path(configured) if os.path.isabs(configured) else (root / ".dvc" / configured)
    except Exception:  # noqa: BLE001 - no readable DVC config: DVC's default place
        pass
    return [base / "files" / "md5", base]


def _object(dirs: list[Path], entry_hash: str, legacy: bool) -> Path | None:
    for folder in (dirs[1:] if legacy else dirs[:1]):
        candidate = folder / entry_hash[:2] / entry_hash[2:]
        if candidate.is_file():
            return candidate
    return None


def _matches(target: Path, md5: str, dirs: list[Path], legacy: bool) -> bool:
    """True when ``target`` already holds the content ``md5`` names (a directory: every file of its
    manifest, and no other file)."""
    if md5.endswith(".dir"):
        manifest = _object(dirs, md5, legacy)
        if manifest is None or not target.is_dir():
            return False
        entries = json.loads(manifest.read_text())
        files = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()}
        return files == {e["relpath"] for e in entries} and all(
            _md5_file(target / e["relpath"]) == e["md5"] for e in entries)
    return target.is_file() and _md5_file(target) == md5


def _from_cache(md5: str, dirs: list[Path], legacy: bool, tmp: Path) -> bool:
    if md5.endswith(".dir"):
        manifest = _object(dirs, md5, legacy)
        if manifest is None:
            return False
        entries = json.loads(manifest.read_text())
        objects = [(e["relpath"], _object(dirs, e["md5"], legacy)) for e in entries]
        if any(obj is None for _, obj in objects):
            return False
        tmp.mkdir(parents=True)
        for relpath, obj in objects:
            (tmp / relpath).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(obj, tmp / relpath)
        return True
    obj = _object(dirs, md5, legacy)
    if obj is None:
        return False
    shutil.copyfile(obj, tmp)
    return True


def _from_git(root: Path, relpath: str, md5: str, tmp: Path) -> bool:
    """A file committed in git's HEAD with exactly the recorded content (``cache: false`` outputs)."""
    if md5.endswith(".dir"):
        return False
    try:
        blob = subprocess.run(["git", "-C", str(root), "show", f"HEAD:{relpath}"], capture_output=True,
                              timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    if hashlib.md5(blob).hexdigest() != md5:
        return False
    tmp.write_bytes(blob)
    return True


def _put(tmp: Path, target: Path) -> None:
    """Replaces ``target`` by ``tmp`` (a file or a folder): the old one is moved aside first, then
    removed, so the path holds either the old or the restored output at every moment."""
    aside = None
    if target.exists() or target.is_symlink():
        aside = target.with_name(f".{target.name}.failed-{uuid.uuid4().hex[:8]}")
        target.rename(aside)
    tmp.rename(target)
    if aside is not None and aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside)
    elif aside is not None:
        aside.unlink()


def restore(stage: str | None = None, root: str | os.PathLike | None = None,
            only_missing: bool = False) -> list[Restored]:
    """Puts back every output of ``stage``'s last good run (as dvc.lock records it) that is not there.

    Args:
        stage: the stage as DVC addresses it (default: ``DVC_STAGE``, set by DVC for the stage command).
        root: the DVC project (default: ``DVC_ROOT``).
        only_missing: put back only outputs the workspace lacks; one that is there (whatever it holds) is
            left as it is and reported ``kept``.

    Returns:
        One :class:`Restored` per output recorded in dvc.lock; empty when not run by DVC or the stage has
        no good run yet.
    """
    stage = stage or os.environ.get("DVC_STAGE")
    root = root or os.environ.get("DVC_ROOT")
    if not stage or not root:
        return []
    root = Path(root)
    entry = _stage_entry(root, stage)
    if not entry:
        return []
    base = root / (Path(stage.rpartition(":")[0]).parent if ":" in stage else Path("."))
    dirs = cache_dirs(root)
    done: list[Restored] = []
    for out in entry.get("outs", []):
        relpath, md5 = out.get("path"), out.get("md5")
        if not relpath or not md5:
            continue
        legacy = out.get("hash") != "md5"
        target = base / relpath
        tmp = target.with_name(f".{target.name}.restore-{uuid.uuid4().hex[:8]}")
        try:
            if (only_missing and (target.exists() or target.is_symlink())) or _matches(target, md5, dirs, legacy):
                done.append(Restored(relpath, "kept"))
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            how = ("cache" if _from_cache(md5, dirs, legacy, tmp)
                   else "git" if _from_git(root, target.relative_to(root).as_posix(), md5, tmp)
                   else "missing")
            if how != "missing":
                _put(tmp, target)
            done.append(Restored(relpath, how))
        except OSError:  # a full disk, a read-only folder: say it could not, leave no temporary behind
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            done.append(Restored(relpath, "missing"))
    return done


def summary(restored: list[Restored]) -> str | None:
    """The console line that says what the failure kept (None when DVC did not run the stage)."""
    if not restored:
        return None
    back = [r.path for r in restored if r.how in ("cache", "git")]
    kept = [r.path for r in restored if r.how == "kept"]
    lost = [r.path for r in restored if r.how == "missing"]
    parts = []
    if back or kept:
        parts.append(f"kept the last good results: {', '.join(back + kept)}"
                     + (" (put back from DVC's cache: DVC removes a stage's outputs before it runs)" if back else ""))
    if lost:
        parts.append(f"could not restore {', '.join(lost)} (not in DVC's cache; `dvc pull` or a re-run "
                     "brings them back)")
    return "; ".join(parts)


def restore_missing(root: str | os.PathLike = ".", stages: list[str] | None = None) -> dict[str, list[Restored]]:
    """For each stage of ``root``'s dvc.lock (or ``stages``), the outputs put back that the workspace lacked.

    Returns:
        {stage: what :func:`restore` did with ``only_missing``}, for the stages that lacked an output.
    """
    import yaml

    if stages is None:
        try:
            stages = list((yaml.safe_load((Path(root) / "dvc.lock").read_text()) or {}).get("stages", {}))
        except (OSError, yaml.YAMLError):
            return {}
    done = {}
    for stage in stages:
        restored = restore(stage, root, only_missing=True)
        if any(r.how != "kept" for r in restored):
            done[stage] = restored
    return done


def main(argv: list[str] | None = None) -> int:
    """``python -m stage_support.last_good [STAGE ...]``: see the module docstring."""
    import sys

    stages = list(sys.argv[1:] if argv is None else argv) or None
    done = restore_missing(".", stages)
    for stage, restored in done.items():
        print(f"last_good: {stage}: {summary(restored)}")
    if not done:
        print("last_good: every output that dvc.lock records is in the workspace; nothing to put back")
    return 1 if any(r.how == "missing" for rs in done.values() for r in rs) else 0


if __name__ == "__main__":
    raise SystemExit(main())
