"""`dvc repro` re-runs exactly what changed: a result param re-runs its stage and those after it, a
placement knob re-runs nothing, an edit to a file a param names re-runs its stage; nothing changed, nothing
runs. DVC runs for real through its CLI on a shrunken copy of the project (tests/dvc_project.py)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from stages.params import result_keys
from stages.schema import PLACEMENT
from tests.dvc_project import UP_TO_DATE, dvc, edit_params, new_project, ran_stages, run

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SECTION = {"generate_demo": "demo"}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    repo = new_project(tmp_path_factory.mktemp("pipeline") / "project")
    dvc("repro", cwd=repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "demo run"], repo)
    return repo


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


def test_placement_knobs_rerun_nothing(project):
    original = (project / "params.yaml").read_text()
    keys = flat(PLACEMENT, "placement")
    assert "placement.train.num_workers" in keys and "placement.ray_address" in keys
    try:
        for key in keys:
            edit(project, key, changed(get(project, key)))
            status = json.loads(dvc("status", "--json", cwd=project).stdout or "{}")
            assert status == {}, f"changing {key} made DVC see changes: {status}"
            (project / "params.yaml").write_text(original)
    finally:
        (project / "params.yaml").write_text(original)


def test_each_result_param_is_seen_by_exactly_its_stage(project):
    """`dvc repro --dry` for each result key: its own stage would run, no other (the stages after it run
    when its outputs change: the next test shows that for real)."""
    original = (project / "params.yaml").read_text()
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    checked = 0
    try:
        for stage in stages:
            for key in result_keys(SECTION.get(stage, stage)):
                edit(project, key, changed(get(project, key)))
                ran = ran_stages(dvc("repro", "--dry", cwd=project))
                assert ran == {stage}, f"changing {key}: would run {sorted(ran)}, expected only {stage}"
                (project / "params.yaml").write_text(original)
                checked += 1
    finally:
        (project / "params.yaml").write_text(original)
    assert checked >= 60


def test_a_result_param_reruns_its_stage_and_the_ones_after_it_for_real(project):
    """embed_text.template: new embeddings -> new model -> new scores; prepare and detect do not run."""
    original = (project / "params.yaml").read_text()
    after = downstream(project)["embed_text"]
    assert after == {"embed_text", "train", "predict", "score_regions", "evaluate"}
    try:
        edit(project, "embed_text.template", "a photo of a person {verb_ing} {a_object}")
        assert ran_stages(dvc("repro", cwd=project)) == after
    finally:
        (project / "params.yaml").write_text(original)
        dvc("repro", cwd=project)  # back to the committed state for the next test


def test_editing_a_file_that_a_param_names_reruns_its_stage(project):
    """The precomputed-detections / detector-config case of the issue: DVC sees the file's content."""
    original = (project / "params.yaml").read_text()
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
        (project / "params.yaml").write_text(original)
        config.unlink()
        dvc("repro", "detect", cwd=project)
