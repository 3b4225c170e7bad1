"""cluster/ files are valid: YAML parses, launcher configs pass Ray's own schema, KubeRay manifests have
what the operator requires (field names and types from KubeRay's ray.io/v1 Go types)."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
LAUNCHERS = ["aws.yaml", "gcp.yaml"]
RAY_SCHEMA = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"


def load(name: str) -> dict:
    docs = list(yaml.safe_load_all((CLUSTER / name).read_text()))
    assert len(docs) == 1 and isinstance(docs[0], dict), f"cluster/{name}: expected one YAML mapping"
    return docs[0]


def test_every_yaml_parses():
    files = sorted(CLUSTER.rglob("*.yaml"))
    assert len(files) >= 6
    for f in files:
        assert all(isinstance(d, dict) for d in yaml.safe_load_all(f.read_text())), f


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_config_validates_against_rays_schema(name):
    config = load(name)
    jsonschema.validate(config, json.loads(RAY_SCHEMA.read_text()))
    # What `ray up` does before launching: merge the provider's defaults, then Ray's own validator
    # (cross-field checks: head type listed, sum of min_workers <= max_workers).
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(config))


def test_schema_check_catches_a_broken_launcher_config():
    config = load("aws.yaml")
    del config["available_node_types"]["ray.worker.gpu"]["resources"]
    with pytest.raises(jsonschema.ValidationError, match="resources"):
        jsonschema.validate(config, json.loads(RAY_SCHEMA.read_text()))


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_has_cpu_head_gpu_workers_and_installs_the_project(name):
    config = load(name)
    types = config["available_node_types"]
    head = config["head_node_type"]
    workers = [t for t in types if t != head]
    assert workers and all(types[t].get("min_workers", 0) == 0 for t in workers)
    head_type = json.dumps(types[head]["node_config"])
    assert "gpu" not in head_type.lower() and "p4d" not in head_type and "g5" not in head_type
    worker_configs = json.dumps([types[t] for t in workers])
    assert any(k in worker_configs for k in ('"GPU"', "g5.", "p4d.", "g2-", "a2-")), name
    setup = " ".join(config["setup_commands"])
    assert "git clone" in setup and "make install" in setup
    # Every node starts Ray from the project's venv so that Ray and Python versions agree.
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config[key] if "ray start" in c]
        assert starts and all("defr/.venv/bin/ray start" in c for c in starts), key
    assert any("RAY_ADDRESS=auto" in c for c in config["head_setup_commands"])


def _containers(template: dict, where: str) -> list[dict]:
    containers = template["spec"]["containers"]
    assert containers, f"{where}: template.spec.containers is empty"
    for c in containers:
        assert c.get("name") and c.get("image"), f"{where}: every container needs name and image"
    return containers


def check_ray_cluster_spec(spec: dict, where: str) -> None:
    """The fields KubeRay's RayClusterSpec requires, with the types the CRD declares."""
    assert spec["rayVersion"] == ray.__version__, f"{where}: rayVersion must match the installed Ray"
    head = spec["headGroupSpec"]
    # rayStartParams is map[string]string: a number or bool there is rejected by the API server.
    assert isinstance(head["rayStartParams"], dict)
    assert all(isinstance(v, str) for v in head["rayStartParams"].values()), f"{where}: head rayStartParams"
    head_containers = _containers(head["template"], f"{where}.headGroupSpec")
    ports = {p["containerPort"] for p in head_containers[0].get("ports", [])}
    assert {6379, 8265} <= ports, f"{where}: head must expose GCS 6379 and dashboard 8265"
    groups = spec["workerGroupSpecs"]
    assert groups
    names = [g["groupName"] for g in groups]
    assert len(set(names)) == len(names), f"{where}: groupName must be unique"
    for g in groups:
        w = f"{where}.workerGroupSpecs[{g['groupName']}]"
        assert isinstance(g["rayStartParams"], dict)
        assert all(isinstance(v, str) for v in g["rayStartParams"].values()), w
        assert 0 <= g["minReplicas"] <= g.get("replicas", 0) <= g["maxReplicas"], w
        worker = _containers(g["template"], w)[0]
        assert "nvidia.com/gpu" in worker["resources"]["limits"], f"{w}: GPU workers need a GPU limit"
    images = {c["image"] for c in head_containers}
    images |= {c["image"] for g in groups for c in g["template"]["spec"]["containers"]}
    assert len(images) == 1, f"{where}: head and workers must run the same image, got {images}"
    # Every volume mounted by a container is declared in its pod.
    for template in [head["template"], *[g["template"] for g in groups]]:
        declared = {v["name"] for v in template["spec"].get("volumes", [])}
        for c in template["spec"]["containers"]:
            assert {m["name"] for m in c.get("volumeMounts", [])} <= declared, where


def test_raycluster_manifest():
    doc = load("k8s/raycluster.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster"
    assert doc["metadata"]["name"]
    check_ray_cluster_spec(doc["spec"], "raycluster.yaml spec")


def test_rayjob_manifest_runs_dvc_repro():
    doc = load("k8s/rayjob.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob"
    assert doc["metadata"]["name"]
    spec = doc["spec"]
    assert "dvc repro" in spec["entrypoint"] and "dvc push --run-cache" in spec["entrypoint"]
    assert spec.get("submissionMode", "K8sJobMode") in {"K8sJobMode", "HTTPMode", "InteractiveMode"}
    # The operator rejects a RayJob with both or neither of rayClusterSpec and clusterSelector.
    assert ("rayClusterSpec" in spec) != ("clusterSelector" in spec)
    check_ray_cluster_spec(spec["rayClusterSpec"], "rayjob.yaml spec.rayClusterSpec")
    for key in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        assert isinstance(spec[key], int) and spec[key] >= 0, key
    if spec.get("ttlSecondsAfterFinished"):
        assert spec["shutdownAfterJobFinishes"] is True, "ttlSecondsAfterFinished needs shutdownAfterJobFinishes"
    # runtimeEnvYAML is a string holding YAML; it must agree with cluster/runtime_env.yaml.
    inline = yaml.safe_load(spec["runtimeEnvYAML"])
    shared_env = load("runtime_env.yaml")["env_vars"]
    for key, value in inline["env_vars"].items():
        assert key in shared_env and (value == shared_env[key] or key == "DEFR_SHARED_STORAGE"), key


def test_runtime_env_is_accepted_by_ray():
    from ray.runtime_env import RuntimeEnv

    env = load("runtime_env.yaml")
    RuntimeEnv(**env)  # raises on unknown fields or wrong types
    assert all(isinstance(v, str) for v in env["env_vars"].values())
    for heavy in (".venv", "data", ".dvc/cache"):
        assert heavy in env["excludes"], f"runtime_env.yaml must not upload {heavy}"


def test_readme_gives_the_commands():
    text = (CLUSTER / "README.md").read_text()
    for command in ("ray up cluster/aws.yaml", "ray attach", "dvc repro", "ray down",
                    "kubectl apply -f cluster/k8s/rayjob.yaml", "ray job submit"):
        assert command in text, command
