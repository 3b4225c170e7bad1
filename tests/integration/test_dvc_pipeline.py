"""`dvc repro` re-runs exactly what changed: a result param re-runs its stage and those after it, a
placement knob re-runs nothing, an edit to a file a param names re-runs its stage; nothing changed, nothing
runs. DVC runs for real through its CLI on a clone of the session's shrunken pipeline run
(tests/dvc_project.py, the ``pipeline_run`` fixture); state is restored from git and the DVC cache, not by
running stages again. The exact key list of each stage is tests/unit/test_dvc_yaml.py's."""
from __future__ import annotations

import compileall
import json
import shutil
import time
from pathlib import Path

import pytest
import yaml

from tests.params_keys import result_keys
from stage_support.schema import PLACEMENT
from tests.dvc_project import UP_TO_DATE, clone_project, dvc, edit_params, ran_stages, restore

# the session's pipeline run (the pipeline_run fixture) counts against the first test that asks for it
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(2400)]
SECTION = {"generate_demo": "demo"}


@pytest.fixture(scope="module")
def project(pipeline_run, tmp_path_factory) -> Path:
    return clone_project(pipeline_run, tmp_path_factory.mktemp("pipeline") / "project")


def changed_keys(status: dict) -> dict[str, set[str]]:
    """stage -> the params (sections) that `dvc status --json` reports as changed for it."""
    out: dict[str, set[str]] = {}
    for stage, entries in status.items():
        for entry in entries:
            for dep, what in (entry.get("changed deps", {}) if isinstance(entry, dict) else {}).items():
                if isinstance(what, dict):  # a params file: {section: "modified"}
                    out.setdefault(stage, set()).update(what)
    return out


def downstream(repo: Path) -> dict[str, set[str]]:
    """stage -> itself and every stage that (transitively) reads its outputs, from dvc.yaml."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    outs = {name: [next(iter(o)) if isinstance(o, dict) else o for key in ("outs", "metrics", "plots")
                   for o in st.get(key, [])] for name, st in stages.items()}
    params = yaml.safe_load((repo / "params.yaml").read_text())

    def resolve(dep: str) -> str:
        if dep.startswith("${"):
            value: object = params
            for part in dep[2:-1].split("."):
                value = value[part]
            return str(value)
        return dep

    readers = {name: {r for r, st in stages.items() if any(
        resolve(d) == o or resolve(d).startswith(o.rstrip("/") + "/") for d in st["deps"] for o in outs[name])}
        for name in stages}
    closure = {}
    for name in stages:
        seen, todo = {name}, [name]
        while todo:
            for r in readers[todo.pop()] - seen:
                seen.add(r)
                todo.append(r)
        closure[name] = seen
    return closure


def changed(value):
    """A different value of the same type (DVC compares values; the schema is not involved here)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, list):
        return value + [value[-1] if value else 1]
    if value is None:
        return 1
    return "inputs" if "/" in str(value) else f"{value}x"  # file params: another path that exists


def edit(repo: Path, dotted: str, value) -> None:
    edit_params(repo, {dotted: value})


def get(repo: Path, dotted: str):
    node = yaml.safe_load((repo / "params.yaml").read_text())
    for part in dotted.split("."):
        node = node[part]
    return node


def flat(schema: dict, prefix: str) -> list[str]:
    return [k for key, spec in schema.items()
            for k in (flat(spec, f"{prefix}.{key}") if isinstance(spec, dict) else [f"{prefix}.{key}"])]


def test_nothing_changed_runs_nothing(project, record_property):
    assert UP_TO_DATE in dvc("status", cwd=project).stdout
    start = time.perf_counter()
    again = dvc("repro", cwd=project)
    record_property("dvc_repro_noop_s", round(time.perf_counter() - start, 2))
    assert ran_stages(again) == set(), again.stdout[-2000:]


def test_bytecode_caches_in_code_folders_change_nothing(project):
    """Python's __pycache__ beside the sources of a folder dependency (pipeline/demo, pipeline/report, ...) is
    not a change: with or without PYTHONDONTWRITEBYTECODE, the same sources give the same lock (.dvcignore)."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    folders = {dep["path"] for stage in lock["stages"].values() for dep in stage.get("deps", [])
               if "nfiles" in dep and list((project / dep["path"]).glob("*.py"))}
    assert {"pipeline/demo", "pipeline/report"} <= folders
    for folder in folders:
        assert compileall.compile_dir(str(project / folder), quiet=1, force=True)
        assert list((project / folder).glob("__pycache__/*.pyc")), folder
    try:
        assert UP_TO_DATE in dvc("status", cwd=project).stdout
    finally:
        for folder in folders:
            shutil.rmtree(project / folder / "__pycache__", ignore_errors=True)


def test_placement_knobs_rerun_nothing(project):
    """Every placement key changed at once, one `dvc status`: DVC sees no change (a status is the union of
    what each key changes, so one key that a stage tracked would show here, under its stage)."""
    original = (project / "params.yaml").read_text()
    keys = flat(PLACEMENT, "placement")
    assert "placement.train.num_workers" in keys and "placement.ray_address" in keys
    try:
        before = {key: get(project, key) for key in keys}
        edit_params(project, {key: changed(value) for key, value in before.items()})
        assert [key for key in keys if get(project, key) == before[key]] == []
        status = json.loads(dvc("status", "--json", cwd=project).stdout or "{}")
        assert status == {}, f"changing placement keys made DVC see changes: {status}"
    finally:
        (project / "params.yaml").write_text(original)


def test_each_result_param_is_seen_by_exactly_its_stage(project):
    """Each result key changed alone is seen by its stage and by no other, through DVC's own params
    comparison (its Python API, one process: ~60 keys in seconds, where a CLI call each took minutes); then
    every key changed at once, one `dvc status --json` through the CLI: each stage reports its section
    (dvc.yaml lists sections) and nothing else does. A stage runs when its deps change: the stages after it
    run when its outputs change, which the next test shows for real."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    original = (project / "params.yaml").read_text()
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    expected = {stage: set(result_keys(SECTION.get(stage, stage))) for stage in stages}
    expected = {stage: keys for stage, keys in expected.items() if keys}
    assert sum(map(len, expected.values())) >= 60
    try:
        with Repo(str(project)) as repo:
            params = {st.name: [d for d in st.deps if isinstance(d, ParamsDependency)] for st in repo.index.stages}
            assert UP_TO_DATE in dvc("status", cwd=project).stdout  # the lock's params are the file's now
            for stage, keys in expected.items():
                for key in sorted(keys):
                    (project / "params.yaml").write_text(original)
                    edit_params(project, {key: changed(get(project, key))})
                    seeing = {name for name, deps in params.items() if any(d.workspace_status() for d in deps)}
                    assert seeing == {stage}, f"{key}: DVC sees it in {sorted(seeing)}, expected only {stage}"
        (project / "params.yaml").write_text(original)
        edit_params(project, {key: changed(get(project, key)) for keys in expected.values() for key in keys})
        status = json.loads(dvc("status", "--json", cwd=project).stdout or "{}")
    finally:
        (project / "params.yaml").write_text(original)
    seen = changed_keys(status)
    assert seen == {stage: {SECTION.get(stage, stage)} for stage in expected}, seen


def test_a_result_param_reruns_its_stage_and_the_ones_after_it_for_real(project):
    """embed_text.template: new embeddings -> new model -> new scores; prepare and detect do not run."""
    after = downstream(project)["embed_text"]
    assert after == {"embed_text", "train", "predict", "score_regions", "evaluate"}
    try:
        edit(project, "embed_text.template", "a photo of a person {verb_ing} {a_object}")
        assert ran_stages(dvc("repro", cwd=project)) == after
    finally:
        restore(project)  # back to the committed state for the next test, from git and the DVC cache


def test_editing_a_file_that_a_param_names_reruns_its_stage(project):
    """The precomputed-detections / detector-config case of the issue: DVC sees the file's content."""
    config = project / "inputs" / "my_detector.py"
    config.write_text("# a detector config of one's own (unused by the oracle backend, still a dependency)\n")
    try:
        edit(project, "detect.mmdet.config_file", "inputs/my_detector.py")
        first = dvc("repro", cwd=project)
        assert ran_stages(first) == {"detect"}, first.stdout[-2000:]  # same detections: nothing after it runs
        assert UP_TO_DATE in dvc("status", cwd=project).stdout
        config.write_text(config.read_text() + "model = dict(type='RTMDet')\n")
        status = json.loads(dvc("status", "--json", cwd=project).stdout)
        assert list(status) == ["detect"], status
        assert status["detect"][0]["changed deps"] == {"inputs/my_detector.py": "modified"}, status
    finally:
        config.unlink(missing_ok=True)
        restore(project)
