"""Offline checks of the cluster files under ``cluster/`` (``ray up`` and ``kubectl`` are never run).

Launcher YAMLs (aws-gpu, gcp-gpu, onprem) go through Ray's own check, the first two steps ``ray up`` takes:
``prepare_config`` (merges the provider's ``defaults.yaml`` shipped with Ray, the setup commands and the node
types' min/max workers; for ``local`` it builds the single on-prem node type) and ``validate_config`` (the
``ray/autoscaler/ray-schema.json`` JSON schema: unknown top-level, ``auth``, ``docker`` or node-type fields and
non-integer resources are errors). Neither reaches a cloud: the provider bootstrap that does (AMIs, IAM, subnets,
quotas, the existence of an instance type in a zone) comes after, in ``ray up``, and needs an account, so it is
not checked here. ``test_validation_catches_typos`` proves the check runs by breaking each file and expecting it
to fail. The node types are then held to the design: GPU counts that match the instance type, the ``tune_driver``
custom resource on the head and on-demand types only, never on a spot type.

``kuberay.yaml`` has no schema in the Ray wheel, so it is checked against the fields of the RayCluster CRD it uses
(an allow-list) and for the usual KubeRay mistakes: a non-string ``rayStartParams`` value, GPU limits that disagree
with ``num-gpus``.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from fusionlab.train.local_ray import RAY_PROCESS_ENV

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
CLOUD = ["aws-gpu.yaml", "gcp-gpu.yaml"]
LAUNCHER = [*CLOUD, "onprem.yaml"]
DRIVER_RESOURCE = "tune_driver"  # platform/fusionlab/tune/sweep.py: DRIVER_RESOURCE

# vCPUs and GPUs of every instance type the files use (the providers' published specs).
INSTANCE_TYPES = {
    "m5.2xlarge": (8, 0),
    "g5.xlarge": (4, 1),         # 1x NVIDIA A10G
    "p4d.24xlarge": (96, 8),     # 8x NVIDIA A100 40 GB
    "n2-standard-8": (8, 0),
    "g2-standard-8": (8, 1),     # 1x NVIDIA L4
    "a2-highgpu-8g": (96, 8),    # 8x NVIDIA A100 40 GB
}


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def check(config: dict) -> dict:
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def instance_type(node_config: dict) -> str:
    return node_config.get("InstanceType") or node_config["machineType"]


def is_spot(node_config: dict) -> bool:
    aws = node_config.get("InstanceMarketOptions", {}).get("MarketType") == "spot"
    scheduling = node_config.get("scheduling", {})
    gcp = scheduling.get("provisioningModel") == "SPOT" or scheduling.get("preemptible") is True
    return aws or gcp


def commands(config: dict, key: str) -> str:
    return "\n".join(config.get(key, []))


@pytest.mark.parametrize("name", LAUNCHER)
def test_launcher_config_passes_ray_validation(name):
    prepared = check(load(name))
    assert prepared["head_node_type"] in prepared["available_node_types"]


# One broken variant per kind of mistake: a misspelt field at the top, in a node type, in auth, in docker; a
# resource or worker count that is not an integer.
def _rename(path: list[str], new: str):
    def mutate(config: dict) -> None:
        parent = config
        for key in path[:-1]:
            parent = parent[key]
        parent[new] = parent.pop(path[-1])
    return mutate


def _set(path: list[str], value):
    def mutate(config: dict) -> None:
        parent = config
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = value
    return mutate


CLOUD_BREAKS = {
    "top-level typo": _rename(["setup_commands"], "setup_comands"),
    "node type typo": _rename(["available_node_types", "gpu_1x_spot", "resources"], "resource"),
    "min workers typo": _rename(["available_node_types", "gpu_1x", "min_workers"], "min_worker"),
    "auth typo": _rename(["auth", "ssh_user"], "ssh_usr"),
    "docker typo": _rename(["docker", "pull_before_run"], "pull_befor_run"),
    "fractional GPU": _set(["available_node_types", "gpu_1x_spot", "resources", "GPU"], 0.5),
    "GPU as a string": _set(["available_node_types", "gpu_8x_spot", "resources", "GPU"], "8"),
    "negative custom resource": _set(["available_node_types", "head", "resources", DRIVER_RESOURCE], -1),
    "max_workers as a string": _set(["max_workers"], "12"),
}
ONPREM_BREAKS = {
    "top-level typo": _rename(["head_start_ray_commands"], "head_start_commands"),
    "auth typo": _rename(["auth", "ssh_private_key"], "ssh_key"),
}


@pytest.mark.parametrize(("name", "break_name"), [(n, b) for n in CLOUD for b in CLOUD_BREAKS]
                         + [("onprem.yaml", b) for b in ONPREM_BREAKS])
def test_validation_catches_typos(name, break_name):
    config = load(name)
    check(config)  # the file itself is fine ...
    (CLOUD_BREAKS if name in CLOUD else ONPREM_BREAKS)[break_name](config)
    with pytest.raises(jsonschema.ValidationError):  # ... and the broken copy is not
        check(config)


def node_type_problems(config: dict) -> list[str]:
    """What in a cloud config's node types breaks the design (an empty list when nothing does)."""
    problems = []
    node_types = check(config)["available_node_types"]
    head_name = config["head_node_type"]
    head = node_types[head_name]
    if head["resources"].get(DRIVER_RESOURCE, 0) <= 0:
        problems.append("the head must declare tune_driver (it hosts Tune trial drivers)")
    if head["resources"].get("GPU", 0) or is_spot(head["node_config"]):
        problems.append("the head must be an on-demand CPU node")
    gpus_per_type = set()
    for type_name, node_type in node_types.items():
        kind = instance_type(node_type["node_config"])
        if kind not in INSTANCE_TYPES:
            problems.append(f"{type_name}: add {kind}'s vCPUs and GPUs to INSTANCE_TYPES")
            continue
        cpus, gpus = INSTANCE_TYPES[kind]
        resources = node_type["resources"]
        if resources.get("GPU", 0) != gpus or resources.get("CPU") != cpus:
            problems.append(f"{type_name}: {kind} has {cpus} vCPUs and {gpus} GPUs, not {resources}")
        if is_spot(node_type["node_config"]) and DRIVER_RESOURCE in resources:
            problems.append(f"{type_name} is spot: it must not declare tune_driver")
        if type_name != head_name and not 0 <= node_type["min_workers"] <= node_type["max_workers"]:
            problems.append(f"{type_name}: min_workers > max_workers")
        if gpus:
            gpus_per_type.add(gpus)
    if gpus_per_type != {1, 8}:
        problems.append(f"want a 1-GPU and an 8-GPU worker type, not {sorted(gpus_per_type)} GPUs")
    if not any(is_spot(node_type["node_config"]) for node_type in node_types.values()):
        problems.append("no spot GPU type")
    return problems


@pytest.mark.parametrize("name", CLOUD)
def test_node_types_match_instances_and_keep_drivers_off_spot(name):
    config = load(name)
    assert node_type_problems(config) == []
    assert config["docker"]["image"].split(":")[0].endswith("/fusionlab"), "the image the Dockerfile builds"


def dockerfile_args() -> dict[str, str]:
    text = (CLUSTER.parent / "Dockerfile").read_text()
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.M))


def test_the_image_runs_the_launchers_ray_and_the_makefiles_torch_with_fusionlab_installed():
    text = (CLUSTER.parent / "Dockerfile").read_text()
    args = dockerfile_args()
    # The cluster runs the Ray that launches it: the base image's tag is the installed Ray, for Python 3.11.
    assert args["RAY_VERSION"] == ray.__version__
    assert re.search(r"^FROM rayproject/ray:\$\{RAY_VERSION\}-py311-gpu$", text, re.M)
    makefile = (CLUSTER.parent / "Makefile").read_text()
    assert args["TORCH_VERSION"] == re.search(r"^TORCH_VERSION \?= (\S+)$", makefile, re.M).group(1)
    torch_at, fusionlab_at = text.index('"torch==${TORCH_VERSION}"'), text.index("pip install --no-cache-dir /opt/")
    assert torch_at < fusionlab_at, "torch goes in first, pinned to the Makefile's version"
    for client in ("psycopg2-binary", "boto3"):  # MLflow's PostgreSQL store, S3 artifacts
        assert client in text
    ignored = (CLUSTER.parent / ".dockerignore").read_text().split()
    assert {".git", ".venv"} <= set(ignored), "the build context leaves the venv and history out"


@pytest.mark.parametrize("name", CLOUD)
def test_node_type_check_catches_drivers_on_spot_and_wrong_gpu_counts(name):
    config = load(name)
    config["available_node_types"]["gpu_1x_spot"]["resources"][DRIVER_RESOURCE] = 1
    config["available_node_types"]["gpu_8x_spot"]["resources"]["GPU"] = 1
    problems = node_type_problems(config)
    assert any(p.startswith("gpu_1x_spot is spot") for p in problems), problems
    assert any(p.startswith("gpu_8x_spot: ") and "8 GPUs" in p for p in problems), problems


@pytest.mark.parametrize("name", LAUNCHER)
def test_setup_installs_pinned_torch_then_fusionlab_and_starts_mlflow_on_loopback(name):
    config = load(name)
    setup = config["setup_commands"]
    if name in CLOUD:  # the image has everything: a node (a spot replacement too) installs nothing at boot
        assert not [command for command in setup if "pip install" in command], setup
    else:  # on-prem hosts keep a venv of their own
        makefile = (CLUSTER.parent / "Makefile").read_text()
        torch_version = re.search(r"^TORCH_VERSION \?= (\S+)$", makefile, re.M).group(1)
        torch_at = next(i for i, c in enumerate(setup) if f'"torch=={torch_version}"' in c)
        fusionlab_at = next(i for i, c in enumerate(setup)
                            if "git+https://" in c and "fusionlab@${FUSIONLAB_VERSION}" in c)
        assert torch_at < fusionlab_at, "torch goes in first, pinned to the Makefile's version"
    env = setup[0]
    for variable in ("FUSIONLAB_STORAGE", "FUSIONLAB_MLFLOW_DB", "FUSIONLAB_WORKDIR"):
        assert re.search(rf"export (\S+ )*{variable}=", env), variable
    for variable, value in RAY_PROCESS_ENV.items():  # what a local Ray's processes get, every node's get too
        assert re.search(rf"export (\S+ )*{variable}={re.escape(value)}'", env), variable
    if name in CLOUD:  # models and plots to the bucket the MLflow server serves them from
        assert 'FUSIONLAB_ARTIFACT_ROOT="$FUSIONLAB_STORAGE/mlflow-artifacts"' in env
    # experiments/submit.py reads these two: every process logs to the database, the workdir is on shared storage.
    assert 'MLFLOW_TRACKING_URI="$FUSIONLAB_MLFLOW_DB"' in env
    workdir = re.search(r"FUSIONLAB_WORKDIR=(\S+?)[ ']", env).group(1)
    shared = "/mnt/shared/" if name == "onprem.yaml" else "/mnt/fusionlab/"
    assert workdir.startswith(shared)
    if name in CLOUD:  # mounted on the host first, then into the container
        assert "mount -t nfs4" in commands(config, "initialization_commands")
        assert "-v /mnt/fusionlab:/mnt/fusionlab" in config["docker"]["run_options"]
    storage = re.search(r"FUSIONLAB_STORAGE=(\S+?)'", env).group(1)
    assert storage.startswith({"aws-gpu.yaml": "s3://", "gcp-gpu.yaml": "gs://", "onprem.yaml": "/"}[name])
    head = commands(config, "head_start_ray_commands")
    mlflow = re.search(r"mlflow server (.*)", head, re.S).group(1)
    assert "--host 127.0.0.1" in mlflow
    assert '--backend-store-uri "$FUSIONLAB_MLFLOW_DB"' in mlflow
    assert '--artifacts-destination "$FUSIONLAB_STORAGE/mlflow-artifacts"' in mlflow
    assert "--dashboard-host=0.0.0.0" not in head


def test_onprem_lists_hosts_and_declares_the_driver_resource_on_the_head():
    config = load("onprem.yaml")
    provider = config["provider"]
    assert provider["type"] == "local" and provider["head_ip"] and provider["worker_ips"]
    assert config["auth"]["ssh_user"]
    prepared = check(config)
    assert prepared["max_workers"] == len(provider["worker_ips"])
    head = commands(config, "head_start_ray_commands")
    resources = json.loads(re.search(r"--resources='([^']*)'", head).group(1))
    assert resources[DRIVER_RESOURCE] > 0
    assert DRIVER_RESOURCE not in commands(config, "worker_start_ray_commands")


# --- KubeRay -------------------------------------------------------------------------------------------------------

# The RayCluster (ray.io/v1) fields kuberay.yaml may use; anything else is a typo or needs adding here after a look
# at the CRD. Pod templates are Kubernetes PodTemplateSpecs and checked only where the cluster depends on them.
SPEC_FIELDS = {"rayVersion", "enableInTreeAutoscaling", "autoscalerOptions", "headGroupSpec", "workerGroupSpecs",
               "headServiceAnnotations", "suspend"}
HEAD_FIELDS = {"serviceType", "rayStartParams", "template", "headService", "enableIngress"}
WORKER_FIELDS = {"groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams", "template",
                 "scaleStrategy", "numOfHosts", "suspend", "idleTimeoutSeconds"}


def non_string_params(doc: dict) -> list[str]:
    spec = doc["spec"]
    return [key for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
            for key, value in group["rayStartParams"].items() if not isinstance(value, str)]


def kuberay_custom_resources(params: dict) -> dict:
    # KubeRay hands `resources` to the shell: the value is a JSON object wrapped in one more pair of quotes.
    value = params.get("resources")
    return json.loads(json.loads(value)) if value else {}


def test_kuberay_raycluster_structure():
    doc = load("kuberay.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster" and doc["metadata"]["name"]
    spec = doc["spec"]
    assert set(spec) <= SPEC_FIELDS, set(spec) - SPEC_FIELDS
    assert spec["rayVersion"] == ray.__version__
    head, workers = spec["headGroupSpec"], spec["workerGroupSpecs"]
    assert set(head) <= HEAD_FIELDS, set(head) - HEAD_FIELDS
    assert {"rayStartParams", "template"} <= set(head)
    assert workers
    assert non_string_params(doc) == [], "every rayStartParams value must be a string"
    for group in [head, *workers]:
        pod = group["template"]["spec"]
        ray_container = pod["containers"][0]  # KubeRay runs Ray in the first container
        assert "fusionlab" in ray_container["image"], "an image with fusionlab installed, not Ray's own"
        mounts = {m["mountPath"]: m["name"] for m in ray_container["volumeMounts"]}
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]
                  if "persistentVolumeClaim" in v}
        assert claims[mounts["/mnt/fusionlab"]] == "fusionlab-shared", "the workdir must be shared storage"
        limits = ray_container["resources"]["limits"]
        gpus = int(limits.get("nvidia.com/gpu", 0))
        assert int(group["rayStartParams"].get("num-gpus", gpus)) == gpus
        assert int(group["rayStartParams"]["num-cpus"]) <= int(limits["cpu"])
        env = {e["name"] for e in ray_container["env"]}
        assert {"FUSIONLAB_WORKDIR", "FUSIONLAB_STORAGE", "MLFLOW_TRACKING_URI"} <= env
        values = {e["name"]: e.get("value") for e in ray_container["env"]}
        assert {name: values.get(name) for name in RAY_PROCESS_ENV} == RAY_PROCESS_ENV
    assert kuberay_custom_resources(head["rayStartParams"])[DRIVER_RESOURCE] > 0
    for group in workers:
        assert set(group) <= WORKER_FIELDS, set(group) - WORKER_FIELDS
        assert {"groupName", "replicas", "minReplicas", "maxReplicas", "rayStartParams", "template"} <= set(group)
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        assert int(group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) >= 1
        assert DRIVER_RESOURCE not in kuberay_custom_resources(group["rayStartParams"]), "GPU pods are spot"
    mlflow = next(c for c in head["template"]["spec"]["containers"] if c["name"] == "mlflow")
    assert "--host 127.0.0.1" in " ".join(mlflow["args"])


def test_kuberay_check_catches_a_numeric_ray_start_param():
    doc = load("kuberay.yaml")
    assert non_string_params(doc) == []
    doc["spec"]["workerGroupSpecs"][0]["rayStartParams"]["num-gpus"] = 1  # YAML `num-gpus: 1`, unquoted
    assert non_string_params(doc) == ["num-gpus"]
