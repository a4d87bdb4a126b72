"""The KubeRay manifests and image recipe in k8s/: offline checks, no cluster needed.

Every YAML parses; pod templates validate against the Kubernetes schema (kubernetes-validate,
offline); RayCluster/RayJob structure against our own subset of the KubeRay CRDs
(k8s/schema/ray-crd-subset.json); the security rules hold (non-root, dashboard not exposed, no
literal secrets, GPU requests equal limits); each overlay renders with kustomize and its spec
validates with valuescope's own loader. The rendered overlays (and the example in k8s/examples)
go through the same checks as the files in k8s/base, so a patch cannot slip past them. Token
authentication, NetworkPolicies, read-only root filesystems, per-role Secrets and digest pinning
are checked in test_security.py.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from cluster.spec import RunSpec, parse_spec

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="needs the kubernetes-validate package (pip install it)"
)

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
BASE = K8S / "base"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())
EXAMPLES = sorted(p.name for p in (K8S / "examples").iterdir() if p.is_dir())
# Kubernetes version the pod templates are validated against (KubeRay 1.x supports 1.23+).
K8S_VERSION = "1.30"
# Secrets the pods may read (one per role; which role gets which: test_security.py), and the
# Ray token's Secret, which KubeRay itself injects.
SECRETS = ("valuescope-storage", "valuescope-models", "valuescope-submitter")
AUTH_SECRET = "valuescope-ray-auth"
SPEC_CONFIGMAP = "valuescope-spec"
SPEC_MOUNT = "/specs"
RAY_UID = 1000
GPU = "nvidia.com/gpu"
# Env var names whose value must come from a Secret, never be written in a manifest.
SECRET_LIKE = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", re.IGNORECASE)
# Shapes of real credentials: AWS access key ids, OpenAI keys, Hugging Face tokens.
CREDENTIAL_SHAPES = re.compile(r"\b(AKIA[0-9A-Z]{16}|sk-[A-Za-z0-9_-]{20,}|hf_[A-Za-z0-9]{20,})\b")


# --- loading -----------------------------------------------------------------------------------


def load_docs(path: Path) -> list[Any]:
    """All documents of a (multi-document) YAML file, empty ones dropped."""
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def yaml_files() -> list[Path]:
    return sorted([*K8S.rglob("*.yaml"), *K8S.rglob("*.yml")])


def is_object(doc: Any) -> bool:
    """A Kubernetes object (not a Kustomization, a patch list or an embedded spec file)."""
    return (
        isinstance(doc, dict)
        and "apiVersion" in doc
        and "kind" in doc
        and not doc["apiVersion"].startswith("kustomize.config.k8s.io/")
    )


def base_objects() -> list[dict[str, Any]]:
    """The objects in k8s/base, secret template included."""
    return [
        doc for path in sorted(BASE.glob("*.yaml")) for doc in load_docs(path) if is_object(doc)
    ]


def kustomize_command() -> list[str] | None:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


NO_KUSTOMIZE = (
    "neither kubectl nor kustomize is on PATH (apt-get install kubectl, or a kustomize binary)"
)


@functools.cache
def render(directory: str) -> tuple[dict[str, Any], ...]:
    """The objects `kubectl kustomize DIRECTORY` produces (cached: each overlay renders once)."""
    command = kustomize_command()
    if command is None:
        pytest.skip(NO_KUSTOMIZE)
    result = subprocess.run(
        [*command, str(K8S / directory)],
        capture_output=True,
        text=True,
        timeout=120,
        # No cluster is contacted; an empty kubeconfig makes sure of it.
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    assert result.returncode == 0, f"kustomize {directory} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc is not None)


# Object sets every check runs on: the files in k8s/base and what each kustomization renders.
SOURCES = [
    "base-files",
    "base",
    *(f"overlays/{name}" for name in OVERLAYS),
    *(f"examples/{name}" for name in EXAMPLES),
]


def objects_of(source: str) -> list[dict[str, Any]]:
    if source == "base-files":
        return base_objects()
    return list(render(source))


def ray_objects(source: str) -> list[dict[str, Any]]:
    return [o for o in objects_of(source) if o["apiVersion"].startswith("ray.io/")]


def cluster_spec(obj: dict[str, Any]) -> dict[str, Any]:
    """The RayClusterSpec of a RayCluster or a RayJob."""
    return obj["spec"] if obj["kind"] == "RayCluster" else obj["spec"]["rayClusterSpec"]


def pod_templates(obj: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(where, role, template) for every pod template of a RayCluster or RayJob."""
    name = f"{obj['kind']}/{obj['metadata']['name']}"
    spec = cluster_spec(obj)
    yield f"{name} head", "head", spec["headGroupSpec"]["template"]
    for group in spec["workerGroupSpecs"]:
        yield f"{name} worker group {group['groupName']!r}", "worker", group["template"]
    if obj["kind"] == "RayJob" and "submitterPodTemplate" in obj["spec"]:
        yield f"{name} submitter", "submitter", obj["spec"]["submitterPodTemplate"]


def all_pod_templates(source: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [t for obj in ray_objects(source) for t in pod_templates(obj)]


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


@functools.cache
def ray_schema_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((K8S / "schema" / "ray-crd-subset.json").read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def spec_of(configmap: dict[str, Any], source: str) -> RunSpec:
    text = configmap["data"]["spec.yaml"]
    return parse_spec(yaml.safe_load(text), f"{source}: ConfigMap {SPEC_CONFIGMAP} spec.yaml")


def configmap(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = [
        o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == SPEC_CONFIGMAP
    ]
    return found


# --- parsing and schemas -----------------------------------------------------------------------


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_yaml_parses(path):
    docs = load_docs(path)
    assert docs, f"{path}: no YAML documents"
    for doc in docs:
        assert isinstance(doc, dict | list), f"{path}: a document is a {type(doc).__name__}"


def test_base_has_the_expected_objects():
    kinds = {(o["kind"], o["metadata"]["name"]) for o in base_objects()}
    assert {
        ("RayCluster", "valuescope"),
        ("RayJob", "valuescope-run"),
        ("ConfigMap", SPEC_CONFIGMAP),
        *(("Secret", name) for name in (*SECRETS, AUTH_SECRET)),
        ("NetworkPolicy", "valuescope-ray-head"),
        ("NetworkPolicy", "valuescope-ray-workers"),
        ("NetworkPolicy", "valuescope-ray-submitter"),
    } <= kinds


@pytest.mark.parametrize("source", SOURCES)
def test_pod_templates_validate_against_kubernetes_schema(source):
    templates = all_pod_templates(source)
    assert templates, f"{source}: no pod templates found"
    for where, _, template in templates:
        # A v1 PodTemplate wraps exactly a PodTemplateSpec, which is what KubeRay embeds.
        wrapper = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "check"},
            "template": template,
        }
        try:
            kubernetes_validate.validate(wrapper, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in list(exc.path)[1:])
            pytest.fail(f"{source}: {where}: template.{path}: {exc.message}")


@pytest.mark.parametrize("source", SOURCES)
def test_builtin_objects_validate_against_kubernetes_schema(source):
    builtin = [o for o in objects_of(source) if not o["apiVersion"].startswith("ray.io/")]
    assert builtin
    for obj in builtin:
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{source}: {obj['kind']}/{obj['metadata']['name']}: {path}: {exc.message}")


@pytest.mark.parametrize("source", SOURCES)
def test_ray_objects_match_crd_subset_schema(source):
    objects = ray_objects(source)
    assert {o["kind"] for o in objects} >= {"RayJob"}
    validator = ray_schema_validator()
    for obj in objects:
        errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
        assert not errors, f"{source}: {obj['kind']}/{obj['metadata']['name']}: " + "; ".join(
            f"{'.'.join(map(str, e.path)) or '(top)'}: {e.message}" for e in errors
        )


def test_crd_subset_schema_rejects_common_mistakes():
    validator = ray_schema_validator()
    (job,) = [o for o in base_objects() if o["kind"] == "RayJob"]
    assert validator.is_valid(job)

    def broken(edit):
        obj = json.loads(json.dumps(job))
        edit(obj["spec"])
        return obj

    def numeric_start_param(spec):
        spec["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-gpus"] = 0

    def misspelt_field(spec):
        spec["rayClusterSpec"]["enableInTreeAutoScaling"] = True

    def no_max_replicas(spec):
        del spec["rayClusterSpec"]["workerGroupSpecs"][0]["maxReplicas"]

    def no_cleanup(spec):
        del spec["shutdownAfterJobFinishes"]

    def bad_mode(spec):
        spec["submissionMode"] = "K8sJob"

    for edit in (numeric_start_param, misspelt_field, no_max_replicas, no_cleanup, bad_mode):
        assert not validator.is_valid(broken(edit)), edit.__name__


# --- Ray cluster shape -------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_head_has_no_gpus_and_workers_autoscale(source):
    for obj in ray_objects(source):
        spec = cluster_spec(obj)
        where = f"{source}: {obj['kind']}/{obj['metadata']['name']}"
        assert spec["enableInTreeAutoscaling"] is True, where
        assert spec["headGroupSpec"]["rayStartParams"].get("num-gpus") == "0", where
        for c in spec["headGroupSpec"]["template"]["spec"]["containers"]:
            resources = c.get("resources", {})
            assert GPU not in resources.get("limits", {}), f"{where}: head container asks for GPUs"
        for group in spec["workerGroupSpecs"]:
            lo, n, hi = group["minReplicas"], group["replicas"], group["maxReplicas"]
            assert 0 <= lo <= n <= hi, f"{where}: worker group {group['groupName']}: {lo}/{n}/{hi}"
            gpus = [
                int(c["resources"]["limits"].get(GPU, 0)) for c in containers(group["template"])
            ]
            assert sum(gpus) >= 1, f"{where}: worker group {group['groupName']} has no GPU"
            params = group["rayStartParams"]
            if "num-gpus" in params:
                assert int(params["num-gpus"]) == sum(gpus), f"{where}: num-gpus != GPU limit"


@pytest.mark.parametrize("source", SOURCES)
def test_workers_have_memory_backed_dev_shm(source):
    for where, role, template in all_pod_templates(source):
        if role != "worker":
            continue
        volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
        for c in template["spec"]["containers"]:
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert "/dev/shm" in mounts, f"{source}: {where}: {c['name']} has no /dev/shm mount"
            volume = volumes[mounts["/dev/shm"]]
            assert volume.get("emptyDir", {}).get("medium") == "Memory", f"{source}: {where}"


def test_rayjob_cluster_is_the_raycluster():
    objects = {o["kind"]: o for o in base_objects()}
    assert objects["RayJob"]["spec"]["rayClusterSpec"] == objects["RayCluster"]["spec"], (
        "k8s/base/rayjob.yaml spec.rayClusterSpec and raycluster.yaml spec have drifted apart"
    )


def test_rayjob_lifecycle():
    (job,) = [o for o in base_objects() if o["kind"] == "RayJob"]
    spec = job["spec"]
    assert spec.get("submissionMode", "K8sJobMode") == "K8sJobMode"
    assert spec["shutdownAfterJobFinishes"] is True
    assert 0 < spec["ttlSecondsAfterFinished"] <= 3600
    assert spec["activeDeadlineSeconds"] > 0
    assert spec["submitterPodTemplate"]["spec"]["restartPolicy"] in {"Never", "OnFailure"}


def test_ray_version_matches_the_image():
    dockerfile = (K8S / "image" / "Dockerfile").read_text(encoding="utf-8")
    (image_ray,) = re.findall(r"^ARG RAY_VERSION=(\S+)$", dockerfile, re.MULTILINE)
    for obj in base_objects():
        if obj["apiVersion"].startswith("ray.io/"):
            assert cluster_spec(obj)["rayVersion"] == image_ray, obj["kind"]


@pytest.mark.parametrize("source", SOURCES)
def test_every_container_runs_the_same_image(source):
    images = {
        c["image"] for _, _, template in all_pod_templates(source) for c in containers(template)
    }
    assert len(images) == 1, (
        f"{source}: several images {sorted(images)}; one `images:` entry must cover all"
    )


# --- security ----------------------------------------------------------------------------------


def assert_non_root(where: str, pod: dict[str, Any], container: dict[str, Any]) -> None:
    ctx = container.get("securityContext", {})
    effective = {**pod, **ctx}
    assert effective.get("runAsNonRoot") is True, f"{where}: runAsNonRoot is not true"
    assert effective.get("runAsUser") == RAY_UID, f"{where}: runAsUser is not {RAY_UID}"
    assert ctx.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
    assert "ALL" in ctx.get("capabilities", {}).get("drop", []), (
        f"{where}: capabilities not dropped"
    )
    assert not ctx.get("capabilities", {}).get("add"), f"{where}: adds capabilities"
    assert ctx.get("privileged") is not True, f"{where}: privileged"


@pytest.mark.parametrize("source", SOURCES)
def test_no_container_runs_as_root(source):
    for where, _, template in all_pod_templates(source):
        pod = template["spec"].get("securityContext", {})
        assert pod.get("runAsUser", RAY_UID) != 0, f"{source}: {where}: pod runs as root"
        assert not template["spec"].get("hostNetwork"), f"{source}: {where}: hostNetwork"
        assert not template["spec"].get("hostPID"), f"{source}: {where}: hostPID"
        for c in containers(template):
            assert_non_root(f"{source}: {where}: container {c['name']}", pod, c)
    for obj in ray_objects(source):
        # The autoscaler sidecar KubeRay injects into the head pod.
        options = cluster_spec(obj).get("autoscalerOptions", {})
        where = f"{source}: {obj['kind']} autoscaler"
        assert_non_root(where, {}, {"name": "autoscaler", **options})


@pytest.mark.parametrize("source", SOURCES)
def test_dashboard_is_not_exposed(source):
    for obj in objects_of(source):
        assert obj["kind"] != "Ingress", f"{source}: an Ingress exposes the cluster"
        if obj["kind"] == "Service":
            assert obj["spec"].get("type", "ClusterIP") == "ClusterIP", f"{source}: Service type"
    for obj in ray_objects(source):
        head = cluster_spec(obj)["headGroupSpec"]
        where = f"{source}: {obj['kind']}/{obj['metadata']['name']}"
        assert head.get("serviceType", "ClusterIP") == "ClusterIP", f"{where}: head serviceType"
        assert head.get("enableIngress", False) is False, f"{where}: enableIngress"
        service = head.get("headService", {}).get("spec", {})
        assert service.get("type", "ClusterIP") == "ClusterIP", f"{where}: headService type"
        for _, _, template in pod_templates(obj):
            for c in containers(template):
                for port in c.get("ports", []):
                    assert "hostPort" not in port, f"{where}: {c['name']} uses a hostPort"


@pytest.mark.parametrize("source", SOURCES)
def test_no_literal_secrets_in_env(source):
    for where, _, template in all_pod_templates(source):
        for c in containers(template):
            for var in c.get("env", []):
                name = var["name"]
                at = f"{source}: {where}: {c['name']} env {name}"
                if "value" in var:
                    assert not SECRET_LIKE.search(name), f"{at}: set literally; use secretKeyRef"
                    assert not CREDENTIAL_SHAPES.search(str(var["value"])), f"{at}: credential"
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ref["name"] in SECRETS, f"{at}: unexpected Secret {ref['name']}"
            assert not c.get("envFrom"), f"{source}: {where}: envFrom imports unknown keys"


def test_no_credentials_in_any_file():
    for path in [*yaml_files(), *K8S.rglob("Dockerfile*"), *K8S.rglob("*.json")]:
        text = path.read_text(encoding="utf-8")
        assert not CREDENTIAL_SHAPES.search(text), f"{path}: looks like a real credential"


def test_secret_example_holds_only_placeholders():
    secrets = load_docs(BASE / "secret.example.yaml")
    names = [s["metadata"]["name"] for s in secrets]
    assert sorted(names) == sorted((*SECRETS, AUTH_SECRET)), names
    for secret in secrets:
        assert secret["kind"] == "Secret"
        assert "data" not in secret, "use stringData with placeholders, never base64 data"
        for key, value in secret["stringData"].items():
            if SECRET_LIKE.search(key):
                assert "REPLACE" in value, f"secret.example.yaml {key}: not a placeholder"
    # Every key the pods read is documented in the template (possibly commented out).
    text = (BASE / "secret.example.yaml").read_text(encoding="utf-8")
    (job,) = [o for o in base_objects() if o["kind"] == "RayJob"]
    for _, _, template in pod_templates(job):
        for c in containers(template):
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ref["key"] in text, f"{ref['key']} missing from secret.example.yaml"


def test_secret_template_is_never_applied():
    for path in K8S.rglob("kustomization.yaml"):
        (kustomization,) = load_docs(path)
        assert "secret.example.yaml" not in kustomization.get("resources", []), path
    for source in SOURCES[1:]:
        kinds = {o["kind"] for o in objects_of(source)}
        assert "Secret" not in kinds, f"{source} renders a Secret"


@pytest.mark.parametrize("source", SOURCES)
def test_gpu_limits_equal_requests(source):
    for where, _, template in all_pod_templates(source):
        for c in containers(template):
            resources = c.get("resources", {})
            limits, requests = resources.get("limits", {}), resources.get("requests", {})
            assert limits.get(GPU) == requests.get(GPU), (
                f"{source}: {where}: {c['name']} {GPU} limit {limits.get(GPU)} "
                f"!= request {requests.get(GPU)}"
            )
            assert "memory" in limits, f"{source}: {where}: {c['name']} has no memory limit"


# --- the valuescope spec -----------------------------------------------------------------------


def test_base_configmap_spec_validates():
    spec = spec_of(configmap(base_objects()), "k8s/base")
    (model,) = spec.models
    assert model.name == "meta-llama/Llama-3.1-8B-Instruct"
    assert model.scorer == "vllm" and model.gpus_per_replica == 1 and model.replicas == "auto"
    assert spec.design.kind == "full" and spec.outcomes == ["starter"]
    assert spec.root.startswith("s3://")
    assert spec.execution.ray_address == "auto", "a RayJob must join its cluster, not start Ray"


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_spec_file_validates(name):
    from cluster.spec import load_spec

    spec = load_spec(K8S / "overlays" / name / "spec.yaml")
    assert spec.execution.ray_address == "auto"


def test_specs_are_mounted_where_the_entrypoint_reads_them():
    objects = base_objects()
    (job,) = [o for o in objects if o["kind"] == "RayJob"]
    entry = job["spec"]["entrypoint"].split()
    assert entry[:2] == ["valuescope", "run"], entry
    spec_path = Path(entry[2])
    assert str(spec_path.parent) == SPEC_MOUNT and spec_path.name in configmap(objects)["data"]
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    volumes = {v["name"]: v for v in head["volumes"]}
    (mount,) = [m for m in head["containers"][0]["volumeMounts"] if m["mountPath"] == SPEC_MOUNT]
    assert volumes[mount["name"]]["configMap"]["name"] == SPEC_CONFIGMAP


def entrypoint_argv(root: str | None) -> list[str]:
    """The words `bash -c` makes of the entrypoint, as in KubeRay's submitter Job."""
    (job,) = [o for o in base_objects() if o["kind"] == "RayJob"]
    env = {k: v for k, v in os.environ.items() if k != "VALUESCOPE_ROOT"}
    if root is not None:
        env["VALUESCOPE_ROOT"] = root
    script = 'printf "%s\\0" ' + job["spec"]["entrypoint"]
    out = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout
    return out.split("\0")[:-1]


def test_entrypoint_root_override():
    spec = ["valuescope", "run", f"{SPEC_MOUNT}/spec.yaml"]
    assert entrypoint_argv(None) == spec
    assert entrypoint_argv("") == spec
    assert entrypoint_argv("s3://bucket/my prefix") == [*spec, "--root", "s3://bucket/my prefix"]


def test_entrypoint_parses_with_the_cli(tmp_path):
    from cluster.cli import cli

    run = cli.commands.get("run")
    if run is None:
        pytest.skip(
            "`valuescope run` is not in cluster/cli/main.py yet; the RayJob entrypoint needs it"
        )
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(configmap(base_objects())["data"]["spec.yaml"], encoding="utf-8")
    argv = entrypoint_argv("s3://bucket/prefix")[2:]
    argv[0] = str(spec_file)
    run.make_context("run", argv)  # raises click.UsageError on an unknown option


# --- kustomize ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_renders_one_job_sized_for_its_model(name):
    objects = list(render(f"overlays/{name}"))
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["ConfigMap", *["NetworkPolicy"] * 3, "RayJob"], kinds
    spec = spec_of(configmap(objects), f"overlays/{name}")
    on_disk = load_docs(K8S / "overlays" / name / "spec.yaml")[0]
    assert spec == parse_spec(on_disk), "the rendered ConfigMap is not the overlay's spec.yaml"
    (job,) = [o for o in objects if o["kind"] == "RayJob"]
    (group,) = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    gpus = int(group["template"]["spec"]["containers"][0]["resources"]["limits"][GPU])
    for model in spec.models:
        if model.scorer == "vllm":
            assert model.tensor_parallel <= model.gpus_per_replica <= gpus, (
                f"overlay {name}: {model.name} asks {model.gpus_per_replica} GPUs per replica "
                f"(tensor_parallel {model.tensor_parallel}); a worker has {gpus}"
            )
            assert gpus % model.gpus_per_replica == 0, f"overlay {name}: GPUs left idle"


def test_presets_grow_with_model_size():
    expected = {"small": (1, 1), "medium": (2, 2), "large": (4, 4)}
    assert set(expected) <= set(OVERLAYS)
    for name, (gpus, tensor_parallel) in expected.items():
        objects = list(render(f"overlays/{name}"))
        (job,) = [o for o in objects if o["kind"] == "RayJob"]
        (group,) = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert int(limits[GPU]) == gpus, name
        (model,) = spec_of(configmap(objects), name).models
        assert (model.gpus_per_replica, model.tensor_parallel) == (gpus, tensor_parallel), name
    small = render("overlays/small")
    (job,) = [o for o in small if o["kind"] == "RayJob"]
    (group,) = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert (group["minReplicas"], group["maxReplicas"]) == (1, 8)
