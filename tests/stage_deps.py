"""What each DVC stage really depends on, derived from the code (used by tests/unit/test_dvc_yaml.py).

A stage's code dependencies are its script plus every project module it can import, transitively
(imports inside functions included: a lazy import is still code the stage runs), plus the package
__init__ files those imports execute and the package data files the modules load. Print what dvc.yaml
should list with:

    python -m tests.stage_deps            # one block per stage
    python -m tests.stage_deps --write    # rewrite the code deps of every stage in dvc.yaml in place
"""
from __future__ import annotations

import ast
import sys
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "stages", "stage_support")

# Package data read at run time, by the module that reads it. tests/unit/test_dvc_yaml.py checks that no
# other module mentions pipeline.assets, so a new reader cannot be missed here.
DATA_FILES = {
    "pipeline.classes.hico_vocab": ["pipeline/assets/hico_vocab.json"],
    "pipeline.assets.clip_configs": ["pipeline/assets/open_clip"],
    "pipeline.classes.zero_shot": ["pipeline/assets/hico_zero_shot.json"],
    "pipeline.serve.deployment": ["pipeline/serve/page"],   # the web page of `defr serve` (no stage imports it)
}


def module_path(name: str) -> Path | None:
    """The file of a project module (package -> its __init__.py), None if it is not a project module."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*name.split("."))
    if base.with_suffix(".py").exists():
        return base.with_suffix(".py")
    if (base / "__init__.py").exists():
        return base / "__init__.py"
    return None


def _imports(name: str) -> set[str]:
    """Project modules named by the import statements of module ``name`` (anywhere in the file)."""
    path = module_path(name)
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return {m for m in found if module_path(m) is not None}


@lru_cache(maxsize=None)
def closure(name: str) -> frozenset[str]:
    """``name`` and every project module it imports, transitively, with the parent packages' __init__."""
    seen, todo = set(), [name]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        parts = m.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # importing a.b.c runs a and a.b
        todo += sorted(_imports(m) - seen)
    return frozenset(seen)


def stage_files(stage: str) -> set[str]:
    """Project-relative paths of every file the stage's code reads (modules and package data)."""
    mods = closure(f"stages.{stage}")
    files = {str(module_path(m).relative_to(ROOT)) for m in mods}
    for m in mods:
        files.update(DATA_FILES.get(m, []))
    return files


def covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def suggested_deps(stage: str) -> list[str]:
    """Files to list, with a folder collapsed where the stage uses every module in it."""
    files = stage_files(stage)
    out = set(files)
    folders = sorted({str(Path(f).parent) for f in files if f.endswith(".py")}, key=len)
    for folder in folders:
        if folder in PACKAGES:
            continue
        # every file of the folder (package data too): a folder stands for all of them
        members = {str(p.relative_to(ROOT)) for p in (ROOT / folder).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts}
        if members and members <= files and not any(covered(folder, [o]) for o in out if o != folder):
            out = {f for f in out if not covered(f, [folder])} | {folder}
    return sorted(out)


def rewrite_dvc_yaml(path: Path = ROOT / "dvc.yaml") -> None:
    """Replaces each stage's project-code deps (lines ``- pipeline/...`` / ``- stages/...``) with the
    derived ones; data deps, ``${file param}`` deps and comments stay as they are."""
    out, stage, in_deps = [], None, False
    for line in path.read_text().split("\n"):
        head = line.split("#")[0]
        if head.startswith("  ") and not head.startswith("   ") and head.strip().endswith(":"):
            stage = head.strip()[:-1]
        if line.startswith("    ") and not line.startswith("     "):
            in_deps = line.strip() == "deps:"
            if in_deps:
                out.append(line)
                out += [f"      - {d}" for d in suggested_deps(stage)]
                continue
        if in_deps and line.startswith("      - ") and line[8:].split("/")[0] in PACKAGES:
            continue
        out.append(line)
    path.write_text("\n".join(out))


if __name__ == "__main__":
    import yaml

    if sys.argv[1:] == ["--write"]:
        rewrite_dvc_yaml()
        sys.exit(0)
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage in (sys.argv[1:] or stages):
        print(f"{stage}:")
        for dep in suggested_deps(stage):
            print(f"  - {dep}")
