"""The cluster configs under clusters/: Ray cluster-launcher files (aws, gcp) and
the KubeRay manifests.

Launcher configs are validated against the JSON schema shipped inside the ray
package (``ray/autoscaler/ray-schema.json``) and by Ray's own
``prepare_config`` + ``validate_config`` (both offline: they read the provider's
defaults.yaml, no cloud call). On top of the schema, the checker functions
below enforce this project's policy: GPU workers scale from zero, the head has
no GPU and no CPU for trials, nothing opens a Ray port (or anything but SSH) to
the internet, the dashboard binds to loopback, the object store is sized, the
disks are large enough, and the setup installs the pinned CUDA torch and the
project. The last tests break a loaded config on purpose and check that the
checkers notice, so they can fail.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CLUSTERS = ROOT / "clusters"
LAUNCHER_CONFIGS = ("aws.yaml", "gcp.yaml")
KUBERAY_FILE = "kuberay.yaml"

RAY_PORTS = (6379, 8265, 10001)  # GCS, dashboard / job API, Ray client
PUBLIC_CIDRS = {"0.0.0.0/0", "::/0"}
PUBLIC_HOSTS = {"0.0.0.0", "::", "[::]", "*"}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
MIN_DISK_GB = 200
COMMAND_KEYS = (
    "initialization_commands",
    "setup_commands",
    "head_setup_commands",
    "worker_setup_commands",
    "head_start_ray_commands",
    "worker_start_ray_commands",
)


# --------------------------------------------------------------------------- loading


def load_launcher(name: str) -> dict:
    return yaml.safe_load((CLUSTERS / name).read_text(encoding="utf-8"))


def load_kuberay() -> list[dict]:
    text = (CLUSTERS / KUBERAY_FILE).read_text(encoding="utf-8")
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def ray_schema() -> dict:
    """The cluster-config JSON schema that ships with the installed ray package."""
    resource = importlib.resources.files("ray.autoscaler").joinpath("ray-schema.json")
    return json.loads(resource.read_text(encoding="utf-8"))


def schema_errors(config: dict) -> list[str]:
    schema = ray_schema()
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator_cls(schema).iter_errors(config)
    ]


# --------------------------------------------------------------------------- launcher checks


def node_types(config: dict) -> dict[str, dict]:
    return config.get("available_node_types") or {}


def gpu_count(node_type: dict) -> float:
    """GPUs a node type advertises: its ``resources`` or, failing that, GCP guestAccelerators."""
    resources = node_type.get("resources") or {}
    if "GPU" in resources:
        return float(resources["GPU"])
    accelerators = (node_type.get("node_config") or {}).get("guestAccelerators") or []
    return float(sum(a.get("acceleratorCount", 0) for a in accelerators))


def gpu_worker_types(config: dict) -> dict[str, dict]:
    head = config.get("head_node_type")
    return {name: t for name, t in node_types(config).items() if name != head and gpu_count(t) > 0}


def disk_sizes_gb(node_config: dict) -> list[float]:
    """Root/boot disk sizes of an AWS (BlockDeviceMappings) or GCP (disks) node_config."""
    sizes = [m.get("Ebs", {}).get("VolumeSize") for m in node_config.get("BlockDeviceMappings") or []]
    sizes += [d.get("initializeParams", {}).get("diskSizeGb") for d in node_config.get("disks") or []]
    return [float(s) for s in sizes if s is not None]


def _port_ranges(rule: dict) -> list[tuple[int, int]]:
    """Ports an ingress rule opens, as inclusive ranges (AWS IpPermissions or GCP firewall form)."""
    everything = [(0, 65535)]
    if "allowed" in rule:  # GCP firewall: allowed: [{IPProtocol, ports: ["22", "8000-9000"]}]
        ranges: list[tuple[int, int]] = []
        for allowed in rule.get("allowed") or []:
            ports = allowed.get("ports")
            if str(allowed.get("IPProtocol", "all")).lower() == "all" or not ports:
                return everything
            for port in ports:
                lo, _, hi = str(port).partition("-")
                ranges.append((int(lo), int(hi or lo)))
        return ranges
    protocol = str(rule.get("IpProtocol", rule.get("protocol", "-1"))).lower()
    lo, hi = rule.get("FromPort", -1), rule.get("ToPort", -1)
    if protocol in ("-1", "all") or lo in (-1, None) or hi in (-1, None):
        return everything
    return [(int(lo), int(hi))]


def _rule_cidrs(rule: dict) -> list[str]:
    cidrs = [r.get("CidrIp") for r in rule.get("IpRanges") or []]
    cidrs += [r.get("CidrIpv6") for r in rule.get("Ipv6Ranges") or []]
    cidrs += [rule.get("CidrIp"), rule.get("CidrIpv6")]
    cidrs += list(rule.get("sourceRanges") or rule.get("source_ranges") or [])
    return [c for c in cidrs if c]


def ingress_rules(obj, path: str = "") -> list[tuple[str, dict]]:
    """Every mapping anywhere in the config that grants ingress from IP ranges."""
    found: list[tuple[str, dict]] = []
    if isinstance(obj, dict):
        is_egress = str(obj.get("direction", "INGRESS")).upper() == "EGRESS"
        if _rule_cidrs(obj):  # a rule: its IpRanges entries are part of it, not rules of their own
            return [] if is_egress else [(path or "<root>", obj)]
        for key, value in obj.items():
            found += ingress_rules(value, f"{path}/{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found += ingress_rules(value, f"{path}/{i}")
    return found


def ingress_problems(config: dict) -> list[str]:
    """Rules open to the internet on anything but SSH, or open to anyone on a Ray port."""
    problems = []
    for where, rule in ingress_rules(config):
        ranges = _port_ranges(rule)
        cidrs = _rule_cidrs(rule)
        public = sorted(PUBLIC_CIDRS.intersection(cidrs))
        if public and any((lo, hi) != (22, 22) for lo, hi in ranges):
            problems.append(f"{where}: ports {ranges} open to {public} (only SSH 22 may be)")
        for port in RAY_PORTS:
            if any(lo <= port <= hi for lo, hi in ranges):
                problems.append(f"{where}: Ray port {port} opened to {cidrs}")
    return problems


def all_commands(config: dict) -> list[str]:
    commands = [c for key in COMMAND_KEYS for c in config.get(key) or []]
    for node_type in node_types(config).values():
        for key in ("initialization_commands", "worker_setup_commands"):
            commands += node_type.get(key) or []
    return [str(c) for c in commands]


_DASHBOARD_HOST = re.compile(r"--dashboard-host(?:=|\s+)(['\"]?)([^\s'\";]+)\1")


def dashboard_problems(config: dict) -> list[str]:
    problems = []
    for command in all_commands(config):
        for match in _DASHBOARD_HOST.finditer(command):
            if match.group(2) in PUBLIC_HOSTS:
                problems.append(f"dashboard bound to {match.group(2)} in: {command}")
    head_starts = [str(c) for c in config.get("head_start_ray_commands") or [] if "ray start" in str(c)]
    if not head_starts:
        problems.append("head_start_ray_commands: no `ray start`")
    for command in head_starts:
        hosts = [m.group(2) for m in _DASHBOARD_HOST.finditer(command)]
        if not hosts or not set(hosts) <= LOOPBACK_HOSTS:
            problems.append(f"head `ray start` must bind the dashboard to loopback explicitly: {command}")
    return problems


def start_command_problems(config: dict) -> list[str]:
    problems = []
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [str(c) for c in config.get(key) or [] if "ray start" in str(c)]
        if not starts:
            problems.append(f"{key}: no `ray start`")
        for command in starts:
            match = re.search(r"--object-store-memory(?:=|\s+)(\d+)", command)
            if not match or int(match.group(1)) < 2**30:
                problems.append(f"{key}: object store not sized (--object-store-memory >= 1 GiB): {command}")
    return problems


def setup_problems(config: dict) -> list[str]:
    """torch==2.13.0 from a CUDA index of the PyTorch index is installed, then the project."""
    commands = [str(c) for c in config.get("setup_commands") or []]
    problems = []
    torch_at = project_at = None
    for i, command in enumerate(commands):
        torch = re.search(r"pip install\b.*torch==2\.13\.0.*--(?:extra-)?index-url[= ](\S+)", command)
        if torch and torch_at is None:
            torch_at = i
            if not re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+/?", torch.group(1)):
                problems.append(
                    f"setup_commands: torch must come from a CUDA index of download.pytorch.org, not {torch.group(1)}"
                )
        if (
            re.search(r"pip install\b.*(-e\s+\S*vrsearch|vrsearch\s*@|git\+\S*vrsearch)", command)
            and project_at is None
        ):
            project_at = i
    if torch_at is None:
        problems.append("setup_commands: no `pip install torch==2.13.0 --index-url <PyTorch CUDA index>`")
    if project_at is None:
        problems.append("setup_commands: the project (vrsearch) is not installed")
    if torch_at is not None and project_at is not None and torch_at > project_at:
        problems.append("setup_commands: install torch before the project")
    return problems


_MOUNT = re.compile(r"\bmount\s+-t\s+\S+[^;]*?\s(/[^\s;]+)\s*;")
_RUN_PATHS = re.compile(r"(?:output\.dir|dataset\.root)=['\"]?([^\s'\"]+)")


def shared_mounts(config: dict) -> set[str]:
    """Paths a file system is mounted at on *every* node: by ``setup_commands``, or by
    both the head's and the workers' setup commands."""

    def mounted(key: str) -> set[str]:
        return {m.group(1).rstrip("/") for c in config.get(key) or [] for m in _MOUNT.finditer(str(c))}

    return mounted("setup_commands") | (mounted("head_setup_commands") & mounted("worker_setup_commands"))


def shared_storage_problems(config: dict, text: str) -> list[str]:
    """The run directory and the data must be on a file system every node mounts at the same
    path (trials write checkpoints there from any node; a retry on another node reads them):
    every ``output.dir=`` / ``dataset.root=`` the file shows must lie under such a mount."""
    mounts = shared_mounts(config)
    if not mounts:
        return ["no shared file system mounted on every node (setup_commands)"]
    paths = _RUN_PATHS.findall(text)
    if not paths:
        return ["the file shows no output.dir=/dataset.root= on the shared file system"]
    return [
        f"{p} is not under a path every node mounts ({sorted(mounts)})"
        for p in paths
        if not any(p.startswith(m + "/") for m in mounts)
    ]


def launcher_problems(config: dict) -> list[str]:
    """Everything this project requires of a cluster-launcher config beyond the schema."""
    problems = []
    types = node_types(config)
    head_name = config.get("head_node_type")
    head = types.get(head_name)
    if head is None:
        problems.append(f"head_node_type {head_name!r} is not one of available_node_types")
    else:
        if gpu_count(head) > 0:
            problems.append(f"head {head_name}: has GPUs")
        if (head.get("resources") or {}).get("CPU") != 0:
            problems.append(f"head {head_name}: must advertise CPU: 0 so that no trial lands on it")
        machine = str(
            (head.get("node_config") or {}).get("InstanceType")
            or (head.get("node_config") or {}).get("machineType")
            or ""
        )
        if re.match(r"^(g\d|p\d|a2-|a3-|g2-)", machine):
            problems.append(f"head {head_name}: {machine} is a GPU instance type")
    gpu_types = gpu_worker_types(config)
    if not gpu_types:
        problems.append("no GPU worker node type")
    for name, node_type in gpu_types.items():
        if node_type.get("min_workers", 0) != 0:
            problems.append(f"{name}: min_workers must be 0 (GPU nodes only while trials need them)")
    if gpu_types and not any(t.get("max_workers", 0) >= 1 for t in gpu_types.values()):
        problems.append("no GPU worker type can start a node (max_workers 0 everywhere)")
    if config.get("max_workers", 0) < max((t.get("max_workers", 0) for t in gpu_types.values()), default=0):
        problems.append("global max_workers is below a GPU type's max_workers")
    if not config.get("idle_timeout_minutes"):
        problems.append("idle_timeout_minutes not set")
    for name, node_type in types.items():
        sizes = disk_sizes_gb(node_type.get("node_config") or {})
        if not sizes or max(sizes) < MIN_DISK_GB:
            problems.append(f"{name}: root disk {sizes} GB, need >= {MIN_DISK_GB}")
    if not config.get("file_mounts") and "git clone" not in " ".join(all_commands(config)):
        problems.append("the project reaches the nodes neither by file_mounts nor by git clone")
    return (
        problems
        + ingress_problems(config)
        + dashboard_problems(config)
        + start_command_problems(config)
        + setup_problems(config)
    )


# --------------------------------------------------------------------------- KubeRay checks


def _containers(template: dict) -> list[dict]:
    return ((template or {}).get("spec") or {}).get("containers") or []


def _gpu_limit(container: dict) -> float:
    limits = (container.get("resources") or {}).get("limits") or {}
    return float(sum(float(v) for k, v in limits.items() if k.endswith("/gpu")))


def _pod_problems(template: dict, where: str, pvc_names: set[str]) -> list[str]:
    problems = []
    spec = (template or {}).get("spec") or {}
    containers = _containers(template)
    if not containers:
        return [f"{where}: template.spec.containers is empty"]
    if spec.get("hostNetwork"):
        problems.append(f"{where}: hostNetwork exposes Ray ports on the node")
    for container in containers + (spec.get("initContainers") or []):
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                problems.append(f"{where}: hostPort {port['hostPort']} exposes a port on the node")
    resources = containers[0].get("resources") or {}
    if not resources.get("requests") or not resources.get("limits"):
        problems.append(f"{where}: the Ray container needs resources.requests and resources.limits")
    claimed = {
        v["name"]
        for v in spec.get("volumes") or []
        if (v.get("persistentVolumeClaim") or {}).get("claimName") in pvc_names
    }
    if not claimed:
        problems.append(f"{where}: no volume from the shared PersistentVolumeClaim {sorted(pvc_names)}")
    elif not {m.get("name") for m in containers[0].get("volumeMounts") or []} & claimed:
        problems.append(f"{where}: the Ray container does not mount the shared volume")
    return problems


def cluster_spec_problems(spec: dict, where: str, pvc_names: set[str]) -> list[str]:
    problems = []
    if spec.get("enableInTreeAutoscaling") is not True:
        problems.append(f"{where}: enableInTreeAutoscaling must be true")
    head = spec.get("headGroupSpec") or {}
    if not head:
        problems.append(f"{where}: no headGroupSpec")
    if head.get("serviceType") in ("LoadBalancer", "NodePort"):
        problems.append(f"{where}: head serviceType {head['serviceType']} exposes the dashboard")
    host = str((head.get("rayStartParams") or {}).get("dashboard-host", "")).strip("'\"")
    if host in PUBLIC_HOSTS:
        problems.append(f"{where}: rayStartParams dashboard-host {host}")
    problems += _pod_problems(head.get("template"), f"{where}/headGroupSpec", pvc_names)
    if any(_gpu_limit(c) for c in _containers(head.get("template"))):
        problems.append(f"{where}: the head asks for GPUs")
    groups = spec.get("workerGroupSpecs") or []
    if not groups:
        problems.append(f"{where}: no workerGroupSpecs")
    gpu_groups = 0
    for i, group in enumerate(groups):
        gwhere = f"{where}/workerGroupSpecs/{group.get('groupName', i)}"
        for key in ("groupName", "minReplicas", "maxReplicas", "template"):
            if key not in group:
                problems.append(f"{gwhere}: missing {key}")
        if group.get("maxReplicas", 0) < group.get("minReplicas", 0):
            problems.append(f"{gwhere}: maxReplicas < minReplicas")
        if any(_gpu_limit(c) for c in _containers(group.get("template"))):
            gpu_groups += 1
            if group.get("minReplicas", 0) != 0 or group.get("replicas", 0) != 0:
                problems.append(f"{gwhere}: GPU workers must scale from zero (minReplicas/replicas 0)")
            if group.get("maxReplicas", 0) < 1:
                problems.append(f"{gwhere}: maxReplicas must allow at least one GPU pod")
        problems += _pod_problems(group.get("template"), gwhere, pvc_names)
    if groups and not gpu_groups:
        problems.append(f"{where}: no worker group with an nvidia.com/gpu limit")
    return problems


def kuberay_problems(docs: list[dict]) -> list[str]:
    problems = []
    for i, doc in enumerate(docs):
        for key in ("apiVersion", "kind"):
            if not doc.get(key):
                problems.append(f"document {i}: missing {key}")
        if not (doc.get("metadata") or {}).get("name"):
            problems.append(f"document {i}: missing metadata.name")
    kinds = [d.get("kind") for d in docs]
    pvc_names = {
        d["metadata"]["name"]
        for d in docs
        if d.get("kind") == "PersistentVolumeClaim" and (d.get("metadata") or {}).get("name")
    }
    if not pvc_names:
        problems.append("no PersistentVolumeClaim for the shared volume")
    for kind in ("RayCluster", "RayJob"):
        if kind not in kinds:
            problems.append(f"no {kind}")
    for doc in docs:
        kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name")
        spec = doc.get("spec") or {}
        if kind in ("RayCluster", "RayJob") and doc.get("apiVersion") != "ray.io/v1":
            problems.append(f"{kind} {name}: apiVersion must be ray.io/v1")
        if kind == "Service" and spec.get("type") in ("LoadBalancer", "NodePort"):
            problems.append(f"Service {name}: type {spec['type']} exposes the cluster")
        if kind == "Ingress":
            problems.append(f"Ingress {name}: exposes the cluster")
        if kind == "RayCluster":
            problems += cluster_spec_problems(spec, f"RayCluster {name}", pvc_names)
        if kind == "RayJob":
            if "vrsearch run" not in str(spec.get("entrypoint", "")):
                problems.append(f"RayJob {name}: entrypoint does not run `vrsearch run`")
            if "rayClusterSpec" in spec:
                problems += cluster_spec_problems(spec["rayClusterSpec"], f"RayJob {name}", pvc_names)
                if spec.get("shutdownAfterJobFinishes") is not True:
                    problems.append(f"RayJob {name}: shutdownAfterJobFinishes must be true")
            elif not spec.get("clusterSelector"):
                problems.append(f"RayJob {name}: neither rayClusterSpec nor clusterSelector")
    return problems


def entrypoint_study(entrypoint: str) -> tuple[str, list[str]]:
    """``vrsearch run STUDY --set k=v ...`` -> (STUDY, [k=v, ...])."""
    words = shlex.split(entrypoint)
    start = words.index("run")
    study, overrides = words[start + 1], []
    for i, word in enumerate(words):
        if word == "--set":
            overrides.append(words[i + 1])
        elif word.startswith("--set="):
            overrides.append(word.split("=", 1)[1])
    return study, overrides


# --------------------------------------------------------------------------- tests: launcher configs


def test_every_launcher_file_is_tested():
    found = {p.name for p in CLUSTERS.glob("*.yaml")} - {KUBERAY_FILE}
    assert found == set(LAUNCHER_CONFIGS)


def test_ray_schema_is_the_one_inside_ray():
    schema = ray_schema()
    assert "available_node_types" in schema["properties"]
    assert "provider" in schema["required"]


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_validates_against_ray_schema(name):
    assert schema_errors(load_launcher(name)) == []


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_passes_rays_validate_config(name):
    """What `ray up` does before it talks to the cloud: merge the provider's
    defaults (prepare_config), then validate_config (schema + node-type rules)."""
    try:
        from ray.autoscaler._private.util import prepare_config, validate_config
    except ImportError as exc:  # internal API: only the schema check then
        pytest.skip(f"ray.autoscaler._private.util unavailable: {exc}")
    config = load_launcher(name)
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    # our own commands survive the merge with the provider defaults
    # (whose head start would bind the dashboard to 0.0.0.0)
    assert prepared["head_start_ray_commands"] == config["head_start_ray_commands"]
    assert dashboard_problems(prepared) == []


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_config_meets_project_policy(name):
    assert launcher_problems(load_launcher(name)) == []


def dvcl_resources() -> dict:
    return yaml.safe_load((ROOT / "studies" / "dvcl_flare.yaml").read_text(encoding="utf-8"))["resources"]


def trials_per_node(cpus: float, gpus: float, res: dict) -> int:
    return int(
        min(
            gpus // (res["workers_per_trial"] * res["gpus_per_worker"]),
            cpus // (res["workers_per_trial"] * res["cpus_per_worker"]),
        )
    )


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_max_workers_are_sized_to_the_dvcl_study(name):
    """Each GPU type that can start nodes holds studies/dvcl_flare.yaml's 4 trials x 2 x
    (8 CPU, 1 GPU) with ceil(concurrent_trials / trials per node) nodes, and has no more:
    Tune never runs more trials at once, so a further node would never be used."""
    res = dvcl_resources()
    config = load_launcher(name)
    active = {n: t for n, t in gpu_worker_types(config).items() if t.get("max_workers", 0) > 0}
    assert active
    for node_type in active.values():
        per_node = trials_per_node(node_type["resources"]["CPU"], node_type["resources"]["GPU"], res)
        assert per_node >= 1 and node_type["max_workers"] == -(-res["concurrent_trials"] // per_node)
    assert config["max_workers"] >= max(t["max_workers"] for t in active.values())


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_launcher_run_dir_and_data_are_on_storage_every_node_mounts(name):
    assert shared_storage_problems(load_launcher(name), (CLUSTERS / name).read_text(encoding="utf-8")) == []


# --------------------------------------------------------------------------- tests: KubeRay


def test_kuberay_manifests_meet_project_policy():
    docs = load_kuberay()
    assert {d["kind"] for d in docs} >= {"PersistentVolumeClaim", "RayCluster", "RayJob"}
    assert kuberay_problems(docs) == []


def test_kuberay_pvc_is_shared_read_write_many():
    (pvc,) = [d for d in load_kuberay() if d["kind"] == "PersistentVolumeClaim"]
    assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    assert pvc["spec"]["resources"]["requests"]["storage"]


def test_kuberay_rayjob_entrypoint_is_a_valid_vrsearch_run():
    """The study file exists and every --set of the entrypoint is a field of it;
    the run directory lands on the shared volume."""
    from vrsearch.study import load_study

    (job,) = [d for d in load_kuberay() if d["kind"] == "RayJob"]
    study_path, overrides = entrypoint_study(job["spec"]["entrypoint"])
    mounts = {
        m["mountPath"]
        for c in _containers(job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"])
        for m in c.get("volumeMounts") or []
    }
    study = load_study(ROOT / study_path, overrides)
    assert any(str(study.output.dir).startswith(m.rstrip("/") + "/") for m in mounts)
    assert any(str(study.dataset.root).startswith(m.rstrip("/") + "/") for m in mounts)


def test_kuberay_gpu_groups_are_sized_to_the_dvcl_study():
    """One 2-GPU pod per trial of studies/dvcl_flare.yaml: maxReplicas = concurrent_trials."""
    res = dvcl_resources()
    specs = [_kuberay_cluster(load_kuberay()), _kuberay_job(load_kuberay())["rayClusterSpec"]]
    for group in (g for spec in specs for g in spec["workerGroupSpecs"]):
        limits = _containers(group["template"])[0]["resources"]["limits"]
        per_pod = trials_per_node(float(limits["cpu"]), float(limits["nvidia.com/gpu"]), res)
        assert per_pod >= 1 and group["maxReplicas"] == -(-res["concurrent_trials"] // per_pod)


# --------------------------------------------------------------------------- tests: the checks can fail


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
def test_shared_storage_checker_catches(name):
    text = (CLUSTERS / name).read_text(encoding="utf-8")
    config = load_launcher(name)
    assert shared_storage_problems(config, text.replace("output.dir=/mnt/shared/", "output.dir=/home/ubuntu/"))
    head_only = {**config, "head_setup_commands": config["setup_commands"], "setup_commands": []}
    assert shared_storage_problems(head_only, text) == ["no shared file system mounted on every node (setup_commands)"]


def _public_dashboard_rule(config: dict) -> dict:
    config["provider"]["security_group"] = {
        "GroupName": "ray-dashboard-open",
        "IpPermissions": [
            {"FromPort": 8265, "ToPort": 8265, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    }
    return config


def test_public_dashboard_rule_is_schema_valid_but_caught():
    config = _public_dashboard_rule(load_launcher("aws.yaml"))
    assert schema_errors(config) == []  # the schema alone would let it through
    problems = ingress_problems(config)
    assert any("8265" in p for p in problems)
    assert launcher_problems(config) != []


@pytest.mark.parametrize(
    "rule, caught",
    [
        ({"FromPort": 22, "ToPort": 22, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, False),
        ({"FromPort": 22, "ToPort": 22, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "203.0.113.7/32"}]}, False),
        ({"FromPort": 443, "ToPort": 443, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, True),
        ({"FromPort": 10001, "ToPort": 10001, "IpProtocol": "tcp", "Ipv6Ranges": [{"CidrIpv6": "::/0"}]}, True),
        ({"FromPort": 6379, "ToPort": 6379, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}, True),
        ({"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}, True),
        ({"FromPort": 8000, "ToPort": 9000, "IpProtocol": "tcp", "IpRanges": [{"CidrIp": "198.51.100.0/24"}]}, True),
        ({"name": "open", "sourceRanges": ["0.0.0.0/0"], "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}]}, False),
        ({"name": "open", "sourceRanges": ["0.0.0.0/0"], "allowed": [{"IPProtocol": "tcp", "ports": ["8265"]}]}, True),
        ({"name": "open", "sourceRanges": ["0.0.0.0/0"], "allowed": [{"IPProtocol": "all"}]}, True),
    ],
)
def test_ingress_checker(rule, caught):
    config = load_launcher("gcp.yaml")
    config["provider"]["firewall_rules"] = [rule]  # wherever it sits, the checker walks the whole config
    assert bool(ingress_problems(config)) is caught


def _head_start(config: dict, flag: str) -> dict:
    config["head_start_ray_commands"] = [
        c.replace("--dashboard-host=127.0.0.1", flag) for c in config["head_start_ray_commands"]
    ]
    return config


def _set(path: str, value):
    def mutate(config: dict) -> dict:
        *parents, last = path.split("/")
        target = config
        for key in parents:
            target = target[key]
        target[last] = value
        return config

    return mutate


def _drop_object_store(config: dict) -> dict:
    config["worker_start_ray_commands"] = [
        re.sub(r"--object-store-memory=\d+", "", c) for c in config["worker_start_ray_commands"]
    ]
    return config


def _cpu_torch(config: dict) -> dict:
    config["setup_commands"] = [c.replace("whl/cu130", "whl/cpu") for c in config["setup_commands"]]
    return config


@pytest.mark.parametrize("name", LAUNCHER_CONFIGS)
@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: _head_start(c, "--dashboard-host=0.0.0.0"),
        lambda c: _head_start(c, "--dashboard-host 0.0.0.0"),
        lambda c: _head_start(c, ""),  # the default is not good enough: say loopback
        lambda c: _set(f"available_node_types/{next(iter(gpu_worker_types(c)))}/min_workers", 1)(c),
        lambda c: _set(f"available_node_types/{c['head_node_type']}/resources", {"CPU": 8, "GPU": 1})(c),
        lambda c: _set(f"available_node_types/{c['head_node_type']}/resources", {"CPU": 8})(c),
        _drop_object_store,
        _cpu_torch,
    ],
    ids=[
        "dashboard=0.0.0.0",
        "dashboard 0.0.0.0",
        "dashboard default",
        "gpu min_workers 1",
        "head with gpu",
        "head with cpus",
        "no object store size",
        "cpu torch",
    ],
)
def test_launcher_checker_catches(name, mutate):
    config = mutate(load_launcher(name))
    assert launcher_problems(config) != []


def test_small_disk_is_caught():
    config = load_launcher("aws.yaml")
    for node_type in node_types(config).values():
        for mapping in node_type["node_config"]["BlockDeviceMappings"]:
            mapping["Ebs"]["VolumeSize"] = 50
    assert any("disk" in p for p in launcher_problems(config))


def test_schema_check_can_fail():
    config = load_launcher("aws.yaml")
    next(iter(gpu_worker_types(config).values()))["resources"]["GPU"] = "four"
    config["no_such_field"] = True
    assert len(schema_errors(config)) >= 2


def _kuberay_cluster(docs: list[dict]) -> dict:
    return next(d for d in docs if d["kind"] == "RayCluster")["spec"]


def _kuberay_job(docs: list[dict]) -> dict:
    return next(d for d in docs if d["kind"] == "RayJob")["spec"]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda docs: _kuberay_cluster(docs)["headGroupSpec"].update(serviceType="LoadBalancer"),
        lambda docs: _kuberay_job(docs)["rayClusterSpec"]["headGroupSpec"].update(serviceType="NodePort"),
        lambda docs: docs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "dash"},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 8265}]},
            }
        ),
        lambda docs: _kuberay_cluster(docs)["headGroupSpec"]["rayStartParams"].update({"dashboard-host": "0.0.0.0"}),
        lambda docs: _kuberay_cluster(docs)["headGroupSpec"]["template"]["spec"].update(hostNetwork=True),
        lambda docs: _kuberay_cluster(docs).update(enableInTreeAutoscaling=False),
        lambda docs: _kuberay_cluster(docs)["workerGroupSpecs"][0].update(minReplicas=2, replicas=2),
        lambda docs: _kuberay_cluster(docs)["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"][
            "limits"
        ].pop("nvidia.com/gpu"),
        lambda docs: _kuberay_cluster(docs)["workerGroupSpecs"][0]["template"]["spec"].pop("volumes"),
        lambda docs: _kuberay_job(docs).pop("rayClusterSpec"),
        lambda docs: _kuberay_job(docs).update(entrypoint="python train.py"),
        lambda docs: docs.remove(next(d for d in docs if d["kind"] == "PersistentVolumeClaim")),
        lambda docs: docs[0]["metadata"].pop("name"),
    ],
    ids=[
        "LoadBalancer head",
        "NodePort job head",
        "LoadBalancer Service",
        "dashboard 0.0.0.0",
        "hostNetwork",
        "no autoscaling",
        "gpu min 2",
        "no gpu limit",
        "no shared volume",
        "job without cluster",
        "job not vrsearch",
        "no pvc",
        "unnamed",
    ],
)
def test_kuberay_checker_catches(mutate):
    docs = copy.deepcopy(load_kuberay())
    mutate(docs)
    assert kuberay_problems(docs) != []


def test_entrypoint_parser():
    assert entrypoint_study("vrsearch run s.yaml --address auto --set a.b=1 --set=c=2") == ("s.yaml", ["a.b=1", "c=2"])
