"""cluster/ files are valid: YAML parses, launcher configs pass Ray's own schema, KubeRay manifests have
what the operator requires (field names and types from KubeRay's ray.io/v1 Go types)."""
from __future__ import annotations

import json
import re
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


# --- Security: token authentication, private dashboards, firewalls (cluster/README.md, "Connecting") -------

CONFIG_FILES = sorted([*CLUSTER.rglob("*.yaml"), CLUSTER / "Dockerfile"])
DOCS = [CLUSTER / "README.md", ROOT / "docs" / "cluster.md"]
AUTH_DISABLED = re.compile(r"RAY_AUTH_MODE\W{0,3}disabled", re.IGNORECASE)
TOKEN_FILE_VAR = re.compile(r"RAY_AUTH_TOKEN_PATH=(\S+)")


def _code_blocks(markdown: str) -> str:
    """The fenced code of a Markdown file: what a reader copies and runs (prose may name a setting)."""
    return "\n".join(markdown.split("```")[1::2])


def _yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def test_no_cluster_file_turns_token_auth_off():
    assert CONFIG_FILES and all(f.exists() for f in DOCS)
    for f in CONFIG_FILES:
        assert not AUTH_DISABLED.search(f.read_text()), f"{f.relative_to(ROOT)} sets RAY_AUTH_MODE=disabled"
    for f in DOCS:
        assert not AUTH_DISABLED.search(_code_blocks(f.read_text())), f"{f.relative_to(ROOT)}: a command disables auth"
    assert not AUTH_DISABLED.search("ENV RAY_AUTH_MODE=token"), "the pattern itself must not match token mode"
    assert AUTH_DISABLED.search('RAY_AUTH_MODE: "disabled"'), "the pattern must catch the YAML spelling"


def test_docker_image_turns_token_auth_on_and_holds_no_token():
    env_lines = [line for line in (CLUSTER / "Dockerfile").read_text().splitlines() if line.startswith("ENV ")]
    assert any(re.search(r"\bRAY_AUTH_MODE=token\b", line) for line in env_lines)
    assert "RAY_AUTH_TOKEN" not in (CLUSTER / "Dockerfile").read_text(), "a token must never be baked in the image"


def test_runtime_envs_leave_auth_to_the_cluster():
    assert "RAY_AUTH_MODE" not in load("runtime_env.yaml")["env_vars"]
    inline = yaml.safe_load(load("k8s/rayjob.yaml")["spec"]["runtimeEnvYAML"])
    assert not any(k.startswith("RAY_AUTH") for k in inline["env_vars"])


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_starts_every_node_with_the_token_the_launcher_copies(name):
    config = load(name)
    # The token travels by file_mounts (remote: local) from a file outside the repository.
    mounts = {remote: local for remote, local in config["file_mounts"].items() if "token" in remote}
    assert len(mounts) == 1, f"{name}: one token file in file_mounts"
    (remote, local), = mounts.items()
    local_path = Path(local).expanduser().resolve()
    assert ROOT not in local_path.parents, f"{name}: the token file must live outside the repository"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in config[key] if "ray start" in c]
        for command in starts:
            before = command.split("ray start")[0]
            assert re.search(r"\bRAY_AUTH_MODE=token\b", before), f"{name} {key}: ray start without token mode"
            paths = TOKEN_FILE_VAR.findall(before)
            assert [p.replace("$HOME", "~") for p in paths] == [remote], (
                f"{name} {key}: RAY_AUTH_TOKEN_PATH must name the file_mounts copy {remote}")
    # Drivers started on the nodes (dvc repro after `ray attach`) send the token too.
    setup = " ".join(config["setup_commands"])
    assert "export RAY_AUTH_MODE=token" in setup
    assert [p.rstrip("'").replace("$HOME", "~") for p in TOKEN_FILE_VAR.findall(setup)] == [remote]


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_dashboard_listens_on_loopback(name):
    config = load(name)
    head = " ".join(c for c in config["head_start_ray_commands"] if "ray start" in c)
    assert "--dashboard-host=127.0.0.1" in head, f"{name}: the dashboard must listen on the head's loopback"
    # `make install` leaves the dashboard out; `ray dashboard` / `ray job submit` need it on the head.
    assert any("ray[default]==" in c for c in config["head_setup_commands"]), f"{name}: no dashboard installed"
    for key in ("head_start_ray_commands", "worker_start_ray_commands", "setup_commands", "head_setup_commands"):
        assert not any("0.0.0.0" in c for c in config[key]), f"{name} {key}: something listens on 0.0.0.0"


def test_aws_security_group_admits_only_the_cluster_and_ssh():
    config = load("aws.yaml")
    group = config["provider"]["security_group"]
    assert group["GroupName"]
    for rule in group.get("IpPermissions", []):
        ranges = [r.get("CidrIp") for r in rule.get("IpRanges", [])] + [r.get("CidrIpv6") for r in
                                                                          rule.get("Ipv6Ranges", [])]
        assert not {"0.0.0.0/0", "::/0"} & set(ranges), f"aws.yaml: {rule} is open to the world"
    # A node type with SecurityGroupIds of its own would bypass the group.
    assert not any("SecurityGroupIds" in t["node_config"] for t in config["available_node_types"].values())
    # The README creates that group (by that name) with the intra-group rule and SSH from one address.
    text = (CLUSTER / "README.md").read_text()
    assert f"--group-name {group['GroupName']}" in text
    assert "UserIdGroupPairs=[{GroupId=$SG}]" in text
    ssh = re.findall(r"--port 22 --cidr (\S+)", text)
    assert ssh and "0.0.0.0/0" not in ssh


def test_rays_own_security_group_still_opens_ssh_to_the_world():
    """Why the README creates the AWS group before `ray up`: a group the launcher creates gets SSH from
    0.0.0.0/0 whatever IpPermissions says (they are added to its defaults). If Ray changes this, the
    README's explanation must change too."""
    from ray.autoscaler._private.aws.config import _create_default_inbound_rules

    rules = _create_default_inbound_rules({"sg-1"}, extended_rules=[])
    assert any(r["IpRanges"] == [{"CidrIp": "0.0.0.0/0"}] for r in rules if r.get("FromPort") == 22)
    text = (CLUSTER / "README.md").read_text()
    assert "always adds that rule" in text and "revoke-security-group-ingress" in text


def test_gcp_nodes_are_tagged_on_a_network_of_their_own():
    config = load("gcp.yaml")
    for name, node_type in config["available_node_types"].items():
        node = node_type["node_config"]
        assert "defr-ray" in node["tags"]["items"], f"gcp.yaml {name}: no network tag"
        (interface,) = node["networkInterfaces"]
        assert interface["subnetwork"].endswith("/subnetworks/defr-ray"), f"gcp.yaml {name}: not on defr-ray"
        assert "/default" not in interface["subnetwork"]
    text = (CLUSTER / "README.md").read_text()
    rules = [line for line in text.splitlines() if "firewall-rules create" in line or line.startswith("    --")]
    joined = " ".join(rules)
    assert "--source-tags=defr-ray --target-tags=defr-ray" in joined
    ssh_sources = re.findall(r"--rules=tcp:22 --source-ranges=(\S+)", joined)
    assert ssh_sources and "0.0.0.0/0" not in ssh_sources


def _pod_templates(spec: dict) -> list[dict]:
    return [spec["headGroupSpec"]["template"], *[g["template"] for g in spec["workerGroupSpecs"]]]


def _env(container: dict) -> dict:
    return {e["name"]: e for e in container.get("env", [])}


def test_raycluster_every_ray_container_gets_the_token_from_a_secret():
    spec = load("k8s/raycluster.yaml")["spec"]
    envs = [_env(c) for t in _pod_templates(spec) for c in t["spec"]["containers"]]
    # The autoscaler runs beside the head and talks to GCS: it needs the token as well.
    envs.append({e["name"]: e for e in spec["autoscalerOptions"]["env"]})
    secrets = set()
    for env in envs:
        assert env["RAY_AUTH_MODE"].get("value") == "token"
        ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert not ref.get("optional"), "an optional Secret would start Ray without a token"
        secrets.add((ref["name"], ref["key"]))
    assert len(secrets) == 1, f"one Secret for the whole cluster, got {secrets}"
    (secret, key), = secrets
    assert f"kubectl create secret generic {secret} --from-literal={key}=" in (CLUSTER / "README.md").read_text()


def test_rayjob_turns_on_kuberays_token_auth():
    spec = load("k8s/rayjob.yaml")["spec"]["rayClusterSpec"]
    assert spec["authOptions"]["mode"] == "token"
    for template in _pod_templates(spec):
        for c in template["spec"]["containers"]:
            assert _env(c).get("RAY_AUTH_MODE", {"value": "token"}).get("value") == "token"


def _network_policies() -> list[dict]:
    docs = _yaml_docs(CLUSTER / "k8s" / "networkpolicy.yaml")
    assert docs and all(d["kind"] == "NetworkPolicy" and d["apiVersion"] == "networking.k8s.io/v1" for d in docs)
    return docs


def _selects(selector: dict, labels: dict) -> bool:
    wanted = selector.get("matchLabels", {})
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


@pytest.mark.parametrize("name,spec_path", [("k8s/raycluster.yaml", ("spec",)),
                                            ("k8s/rayjob.yaml", ("spec", "rayClusterSpec"))])
def test_networkpolicy_admits_only_the_clusters_own_pods(name, spec_path):
    spec = load(name)
    for key in spec_path:
        spec = spec[key]
    assert spec["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP", f"{name}: head exposed outside"
    assert not spec["headGroupSpec"].get("enableIngress"), f"{name}: an Ingress would expose the dashboard"
    labels = [t.get("metadata", {}).get("labels", {}) for t in _pod_templates(spec)]
    policies = [p for p in _network_policies() if _selects(p["spec"]["podSelector"], labels[0])]
    assert len(policies) == 1, f"{name}: exactly one NetworkPolicy must select its pods"
    policy = policies[0]["spec"]
    assert all(_selects(policy["podSelector"], pod) for pod in labels), f"{name}: a pod group is not selected"
    assert "Ingress" in policy["policyTypes"]
    for rule in policy["ingress"]:
        assert rule.get("from"), f"{name}: an ingress rule without `from` admits every source"
        for source in rule["from"]:
            assert "ipBlock" not in source, f"{name}: admits an address range"
            own = _selects(source.get("podSelector", {}), labels[0]) and "namespaceSelector" not in source
            # Anything but the cluster's own pods may reach the jobs API only (RayJob: submitter, operator).
            assert own or [p["port"] for p in rule.get("ports", [])] == [8265], f"{name}: {source} too wide"
    host = spec["headGroupSpec"]["rayStartParams"].get("dashboard-host", "0.0.0.0")
    if host != "127.0.0.1":
        # Only where the operator itself must call the jobs API (RayJob), behind its token.
        assert spec.get("authOptions", {}).get("mode") == "token", f"{name}: dashboard on {host} without auth"
        assert any(rule.get("ports") for rule in policy["ingress"]), name


# --- Params keys named in the cluster files and docs exist in stage_support/schema.py -------------------------------

def _schema_keys() -> tuple[set[str], set[str]]:
    from stage_support.schema import CHECKS, PLACEMENT, SECTIONS

    def walk(schema: dict, prefix: str):
        for key, value in schema.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path
            if isinstance(value, dict):
                yield from walk(value, path)

    tops = {*SECTIONS, "placement", "checks"}
    return set(walk({**SECTIONS, "placement": PLACEMENT, "checks": CHECKS}, "")), tops


def stale_params_keys(text: str) -> list[str]:
    """Dotted params keys (``section.key``, ``placement.<stage>.device``) in ``text`` that the schema lacks."""
    known, tops = _schema_keys()
    # Not preceded by a word, dot, slash or dash: `stages.train` is a module, `ray.worker.gpu` a node type.
    pattern = re.compile(r"(?<![\w./-])(" + "|".join(sorted(tops)) + r")((?:\.[A-Za-z_<][\w<>]*)+)")
    stale = []
    for m in pattern.finditer(text):
        key = (m.group(1) + m.group(2)).rstrip(".")
        if "<" in key:  # a placeholder segment stands for any key at that level
            rx = re.compile("^" + r"\.".join("[^.]+" if "<" in s else re.escape(s) for s in key.split(".")) + "$")
            if not any(rx.match(k) for k in known):
                stale.append(key)
        elif key not in known:
            stale.append(key)
    return stale


def test_the_stale_key_check_catches_moved_keys():
    assert stale_params_keys("set train.storage_path to s3://b") == ["train.storage_path"]
    assert stale_params_keys("set placement.train.storage_path; stages.train; ray.worker.gpu") == []
    assert stale_params_keys("placement.<stage>.device and placement.<stage>.nope") == ["placement.<stage>.nope"]


def test_cluster_files_and_docs_name_only_current_params_keys():
    for f in [*CONFIG_FILES, *DOCS]:
        assert not stale_params_keys(f.read_text()), f"{f.relative_to(ROOT)} names keys the schema no longer has"


def test_readme_connecting_section_is_where_the_error_points():
    text = (CLUSTER / "README.md").read_text()
    source = (ROOT / "pipeline" / "distributed.py").read_text()
    assert "cluster/README.md: 'Connecting'" in source
    section = text.split("## Connecting", 1)[1].split("\n## ", 1)[0]
    for needed in ("trusted network", "RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN_PATH", "ray dashboard",
                   "kubectl port-forward", "openssl rand -hex 32"):
        assert needed in section, needed


def _params_has(key: str) -> bool:
    """Whether params.yaml has the dotted key (a ``<placeholder>`` segment matches any key at its level)."""
    levels = [yaml.safe_load((ROOT / "params.yaml").read_text())]
    for part in key.split("."):
        levels = [v for d in levels if isinstance(d, dict)
                  for k, v in d.items() if ("<" in part or k == part)]
    return bool(levels)


def test_the_keys_the_cluster_files_name_are_in_params_yaml():
    known, tops = _schema_keys()
    pattern = re.compile(r"(?<![\w./-])(" + "|".join(sorted(tops)) + r")((?:\.[A-Za-z_<][\w<>]*)+)")
    named = {(m.group(1) + m.group(2)).rstrip(".") for f in [*CONFIG_FILES, CLUSTER / "README.md"]
             for m in pattern.finditer(f.read_text())}
    assert "placement.train.storage_path" in named  # the check reads what it should
    missing = sorted(k for k in named if not _params_has(k))
    assert not missing, f"cluster files name keys params.yaml lacks: {missing}"
    assert not _params_has("train.storage_path")  # the old place, which aws.yaml / gcp.yaml once named


def test_no_cluster_file_needs_the_resource_check_skipped():
    for f in CONFIG_FILES:
        assert "DEFR_SKIP_RESOURCE_CHECK" not in f.read_text(), f"{f.relative_to(ROOT)} skips the preflight"


def _gpus(container: dict) -> float:
    return float(container["resources"]["limits"].get("nvidia.com/gpu", 0))


@pytest.mark.parametrize("name,spec_path", [("k8s/raycluster.yaml", ("spec",)),
                                            ("k8s/rayjob.yaml", ("spec", "rayClusterSpec"))])
def test_kuberay_node_types_match_the_manifests_and_reach_the_head(name, spec_path):
    """The preflight reads the GPU groups from cluster/kuberay_node_types.yaml (KubeRay keeps them in the
    RayCluster resource, out of a stage's sight): same sizes and limits as the manifests."""
    spec = load(name)
    for key in spec_path:
        spec = spec[key]
    declared = load("kuberay_node_types.yaml")
    types = declared["available_node_types"]
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert types[declared["head_node_type"]]["resources"] == {
        "CPU": float(head["resources"]["limits"]["cpu"])}
    groups = spec["workerGroupSpecs"]
    assert sorted(g["groupName"] for g in groups) == sorted(t for t in types if t != declared["head_node_type"])
    for group in groups:
        container = group["template"]["spec"]["containers"][0]
        t = types[group["groupName"]]
        assert t["resources"] == {"CPU": float(container["resources"]["limits"]["cpu"]), "GPU": _gpus(container)}
        assert (t["min_workers"], t["max_workers"]) == (group["minReplicas"], group["maxReplicas"]), name
    assert declared["max_workers"] == sum(g["maxReplicas"] for g in groups)
    env = {e["name"]: e.get("value") for e in head["env"]}
    workdir = re.search(r"^WORKDIR (\S+)", (CLUSTER / "Dockerfile").read_text(), re.M).group(1)
    assert env["DEFR_AUTOSCALING_CONFIG"] == f"{workdir}/cluster/kuberay_node_types.yaml"


@pytest.mark.parametrize("name", ["gcp.yaml", "kuberay_node_types.yaml"])
def test_the_preflight_sees_the_gpu_nodes_a_cold_cluster_can_add(name, monkeypatch):
    """What check_resources reads on the head (aws.yaml's sizes are filled in by `ray up` from the
    instance types, into the head's ~/ray_bootstrap_config.yaml)."""
    from pipeline import capacity

    monkeypatch.setenv(capacity.AUTOSCALING_CONFIG_ENV, str(CLUSTER / name))
    types, _ = capacity._declared_node_types()
    gpu_types = {t: v for t, v in types.items() if v[1] >= 1 and not v[3]}
    assert gpu_types and all(v[2] >= 1 for v in gpu_types.values()), types
