"""dvc.yaml cannot drift from the code: each stage lists what its code imports and loads, the files its
params name, and its params section, which holds exactly its result keys (stage_support/schema.py); placement is
listed by none."""
from __future__ import annotations

import re

import pytest
import yaml

from tests.params_keys import file_keys, result_keys, validate_file
from tests.stage_deps import DATA_FILES, PACKAGES, ROOT, covered, stage_files

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
SECTION = {"generate_demo": "demo"}
STAGES = sorted(DVC)


def section(stage: str) -> str:
    return SECTION.get(stage, stage)


def code_deps(stage: str) -> list[str]:
    return [d for d in DVC[stage]["deps"] if d.split("/")[0] in PACKAGES]


@pytest.mark.parametrize("stage", STAGES)
def test_every_module_and_data_file_a_stage_loads_is_a_dependency(stage):
    deps = code_deps(stage)
    missing = sorted(f for f in stage_files(stage) if not covered(f, deps))
    assert not missing, f"dvc.yaml stage {stage!r} misses dependencies {missing}"


@pytest.mark.parametrize("stage", STAGES)
def test_no_stage_depends_on_code_it_never_loads(stage):
    """A folder dep only where the stage loads every module in it: editing a module the stage never
    imports (a test helper, a benchmark, another stage's code) must not re-run it."""
    used = stage_files(stage)
    for dep in code_deps(stage):
        path = ROOT / dep
        members = [str(p.relative_to(ROOT)) for p in path.rglob("*") if p.is_file() and "__pycache__" not in
                   p.parts] if path.is_dir() else [dep]
        assert path.exists(), f"dvc.yaml stage {stage!r} lists {dep}, which does not exist"
        unused = sorted(m for m in members if m not in used and not any(covered(m, [f]) for f in used))
        assert not unused, f"dvc.yaml stage {stage!r} lists {dep} but never loads {unused}"


@pytest.mark.parametrize("stage", STAGES)
def test_params_are_listed_by_section_and_the_section_holds_exactly_the_result_keys(stage):
    """A stage lists its params section; the section (in params.yaml and in the schema) holds exactly the
    keys that change the stage's outputs, so the listing is key-exact. By section, because DVC fails on a
    listed key that params.yaml lacks (a renamed or misspelled key) only after it removed the outputs."""
    listed = DVC[stage].get("params", [])
    assert listed == [section(stage)], f"dvc.yaml stage {stage!r}: params must be its section {section(stage)!r}"
    in_file = sorted(_leaves(PARAMS[section(stage)], section(stage)))
    assert in_file == sorted(result_keys(section(stage))), (
        f"params.yaml section {section(stage)!r} differs from its schema's result keys in stage_support/schema.py")
    assert not any(p.split(".")[0] == "placement" for p in listed)


def _leaves(tree: dict, prefix: str) -> list[str]:
    out = []
    for key, value in tree.items():
        out += _leaves(value, f"{prefix}.{key}") if isinstance(value, dict) and value else [f"{prefix}.{key}"]
    return out


@pytest.mark.parametrize("stage", STAGES)
def test_files_named_by_params_are_dependencies(stage):
    deps = DVC[stage]["deps"]
    for key in file_keys(section(stage)):
        assert "${" + key + "}" in deps, f"dvc.yaml stage {stage!r}: the file {key} names is not a dependency"


def test_only_the_declared_modules_read_package_data():
    readers = set()
    for path in (ROOT / "pipeline").rglob("*.py"):
        # the package's data are read by name (importlib.resources); importing pipeline.assets.clip_configs
        # is plain code, listed by the import walk
        if re.search(r"[\"']pipeline\.assets[\"']|resources\.files", path.read_text()):
            readers.add(".".join(path.relative_to(ROOT).with_suffix("").parts))
    assert readers == set(DATA_FILES), (
        f"modules that read package data changed: {sorted(readers ^ set(DATA_FILES))}; update "
        "tests/stage_deps.py DATA_FILES so their stages list the files")


def test_the_committed_params_file_passes_the_schema():
    assert validate_file(ROOT / "params.yaml") == []


def test_every_interpolated_dependency_is_a_file_param():
    for stage in STAGES:
        for dep in DVC[stage]["deps"]:
            m = re.fullmatch(r"\$\{(.+)\}", dep)
            if m:
                assert m.group(1) in file_keys(section(stage)), f"{stage}: {dep} is not a file param of the schema"


@pytest.mark.parametrize("stage", sorted(DVC))
def test_every_stage_depends_on_the_lock(stage):
    # A stage's outputs depend on the library versions (pyarrow writes its version into every parquet,
    # numpy and torch change floats): a new requirements.lock must re-run it, and the run cache must not
    # restore a result computed with other versions.
    assert "requirements.lock" in DVC[stage]["deps"], f"dvc.yaml stage {stage!r} does not list requirements.lock"
    assert (ROOT / "requirements.lock").is_file()
