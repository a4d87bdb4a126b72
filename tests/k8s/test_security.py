"""Security properties of the KubeRay manifests in k8s/: offline, no cluster needed.

Each check runs on the files in k8s/base and on what every kustomization (overlays, examples)
renders:

- Ray token authentication is on (``authOptions``), from the Secret the template documents;
- NetworkPolicies: every pod is selected for ingress AND egress, and a small evaluator of the
  NetworkPolicy rules (pod selectors, namespace selectors, ipBlocks, ports) answers who may
  reach whom: the Ray pods and the operator get through, a neighbour pod that only carries our
  ``app.kubernetes.io/name`` label, a pod of another namespace, the metadata service and
  non-HTTPS internet traffic do not;
- every container, the autoscaler sidecar included, has a read-only root filesystem, and
  everything Ray and the libraries write lies on a size-limited emptyDir;
- each role (head, workers, submitter) reads only the Secrets and keys it needs;
- the digest-pinning example pins every image by digest.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

import pytest
from test_manifests import (
    AUTH_SECRET,
    BASE,
    SOURCES,
    cluster_spec,
    containers,
    load_docs,
    objects_of,
    pod_templates,
    ray_objects,
    render,
)

NAMESPACE = "valuescope"
RAYJOB = "valuescope-run"

# Which Secrets (and which of their keys) each role may read. The head runs the driver and the
# fits (storage only: nothing is scheduled on it); workers run the replicas, which write part
# files and load models; the submitter only passes the results root to `ray job submit`.
STORAGE = (
    "valuescope-storage",
    {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "VALUESCOPE_S3_ENDPOINT"},
)
MODELS = ("valuescope-models", {"HF_TOKEN", "OPENAI_API_KEY"})
SUBMITTER = ("valuescope-submitter", {"VALUESCOPE_ROOT"})
ROLE_SECRETS: dict[str, dict[str, set[str]]] = {
    "head": dict([STORAGE]),
    "worker": dict([STORAGE, MODELS]),
    "submitter": dict([SUBMITTER]),
}

# Paths the Ray containers must be able to write with a read-only root filesystem.
RAY_WRITABLE = ("/tmp", "/dev/shm", "/home/ray/.cache")
CACHE_ENV = ("HF_HOME", "XDG_CACHE_HOME", "TRITON_CACHE_DIR", "CUDA_CACHE_PATH")
DIGEST = re.compile(r"^[a-z0-9.:/_-]+@sha256:[0-9a-f]{64}$")


# --- token authentication ----------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_ray_token_authentication_is_on(source):
    for obj in ray_objects(source):
        spec = cluster_spec(obj)
        where = f"{source}: {obj['kind']}/{obj['metadata']['name']}"
        auth = spec.get("authOptions")
        assert auth is not None, f"{where}: no authOptions, the Jobs API is open to anyone"
        assert auth.get("mode") == "token", f"{where}: authOptions.mode is {auth.get('mode')!r}"
        assert auth.get("secretName") == AUTH_SECRET, f"{where}: authOptions.secretName"
        major, minor, _ = (int(x) for x in spec["rayVersion"].split("."))
        assert (major, minor) >= (2, 52), f"{where}: Ray {spec['rayVersion']} has no token auth"
        for _, _, template in pod_templates(obj):
            for c in containers(template):
                names = {v["name"] for v in c.get("env", [])}
                # KubeRay sets both from authOptions; a value here would override or leak it.
                assert not names & {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}, f"{where}: {c['name']}"


def test_auth_secret_template_has_the_token_key():
    (secret,) = [
        s for s in load_docs(BASE / "secret.example.yaml") if s["metadata"]["name"] == AUTH_SECRET
    ]
    assert set(secret["stringData"]) == {"auth_token"}
    assert "REPLACE" in secret["stringData"]["auth_token"]


# --- NetworkPolicy evaluation ------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace and labels) or an address outside the cluster; both have an IP."""

    name: str
    ip: str
    namespace: str | None = None
    labels: dict[str, str] = field(default_factory=dict)


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels AND matchExpressions)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def peer_matches(peer: dict[str, Any], policy_ns: str, other: Endpoint) -> bool:
    if "ipBlock" in peer:
        ip = ipaddress.ip_address(other.ip)
        block = peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    if other.namespace is None:
        return False
    if "namespaceSelector" in peer:
        ns_labels = {"kubernetes.io/metadata.name": other.namespace}
        if not selects(peer["namespaceSelector"], ns_labels):
            return False
    elif other.namespace != policy_ns:
        return False
    return selects(peer.get("podSelector", {}), other.labels)


def port_matches(rule: dict[str, Any], port: int, protocol: str) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    for p in ports:
        lo = p.get("port")
        hi = p.get("endPort", lo)
        if p.get("protocol", "TCP") == protocol and (lo is None or lo <= port <= hi):
            return True
    return False


def direction_allows(policies, pod: Endpoint, other: Endpoint, port, protocol, kind) -> bool:
    """Whether the policies selecting ``pod`` let traffic of direction ``kind`` through."""
    key, peers_key = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
    selecting = [
        p
        for p in policies
        if pod.namespace == NAMESPACE
        and kind in p["spec"].get("policyTypes", ["Ingress"])
        and selects(p["spec"]["podSelector"], pod.labels)
    ]
    if not selecting:
        return True  # a pod no policy selects for this direction is not isolated
    return any(
        port_matches(rule, port, protocol)
        and (
            not rule.get(peers_key)
            or any(peer_matches(x, NAMESPACE, other) for x in rule[peers_key])
        )
        for p in selecting
        for rule in p["spec"].get(key) or []
    )


def allowed(policies, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
    egress = src.namespace is None or direction_allows(policies, src, dst, port, protocol, "Egress")
    ingress = dst.namespace is None or direction_allows(
        policies, dst, src, port, protocol, "Ingress"
    )
    return egress and ingress


def kuberay_labels(template: dict[str, Any], node_type: str, group: str) -> dict[str, str]:
    """The labels KubeRay gives a Ray pod: its own, with the template's on top, except the
    three it never lets a template override (ray.io/node-type, ray.io/group, ray.io/cluster)."""
    own = {
        "ray.io/is-ray-node": "yes",
        "ray.io/cluster": f"{RAYJOB}-x7k2q",
        "ray.io/node-type": node_type,
        "ray.io/group": group,
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    fixed = {k: own[k] for k in ("ray.io/node-type", "ray.io/group", "ray.io/cluster")}
    return {**own, **template.get("metadata", {}).get("labels", {}), **fixed}


def cluster_pods(source: str) -> dict[str, Endpoint]:
    (job,) = [o for o in ray_objects(source) if o["kind"] == "RayJob"]
    templates = {role: t for _, role, t in pod_templates(job)}
    submitter_labels = {
        **templates["submitter"].get("metadata", {}).get("labels", {}),
        "batch.kubernetes.io/job-name": job["metadata"]["name"],
        "job-name": job["metadata"]["name"],
    }
    ns = NAMESPACE
    return {
        "head": Endpoint(
            "head", "10.8.0.10", ns, kuberay_labels(templates["head"], "head", "headgroup")
        ),
        "worker": Endpoint(
            "worker", "10.8.1.11", ns, kuberay_labels(templates["worker"], "worker", "gpu")
        ),
        "worker2": Endpoint(
            "worker2", "10.8.2.12", ns, kuberay_labels(templates["worker"], "worker", "gpu")
        ),
        "submitter": Endpoint("submitter", "10.8.0.13", ns, submitter_labels),
    }


OPERATOR = Endpoint(
    "operator", "10.8.3.2", "kuberay-system", {"app.kubernetes.io/name": "kuberay-operator"}
)
DNS = Endpoint("dns", "10.8.4.3", "kube-system", {"k8s-app": "kube-dns"})
# A pod of another workload in the same namespace that carries our app label (which the only
# selector of the old policy was) and even the head's component label.
NEIGHBOUR = Endpoint(
    "neighbour",
    "10.8.5.4",
    NAMESPACE,
    {"app.kubernetes.io/name": "valuescope", "app.kubernetes.io/component": "ray-head"},
)
S3 = Endpoint("s3", "52.216.8.1")
METADATA = Endpoint("metadata", "169.254.169.254")
IN_CLUSTER_SERVICE = Endpoint("service", "10.100.0.20")
API_SERVER = Endpoint("apiserver", "172.20.0.1")


def network_cases(pods: dict[str, Endpoint]) -> list[tuple[Endpoint, Endpoint, int, str, bool]]:
    head, worker, worker2, submitter = (pods[k] for k in ("head", "worker", "worker2", "submitter"))
    # The same pods moved to another namespace: every label right, namespace wrong.
    foreign = {
        k: Endpoint(v.name + "@other", v.ip[:-1] + "9", "other", v.labels) for k, v in pods.items()
    }
    return [
        # the Ray cluster talks to itself on any port
        (worker, head, 6379, "TCP", True),
        (head, worker, 10005, "TCP", True),
        (worker, worker2, 10005, "TCP", True),
        # the Jobs API: from the submitter and the operator, nothing else of theirs
        (submitter, head, 8265, "TCP", True),
        (OPERATOR, head, 8265, "TCP", True),
        (submitter, head, 6379, "TCP", False),
        (submitter, worker, 8265, "TCP", False),
        (OPERATOR, head, 6379, "TCP", False),
        (OPERATOR, worker, 8265, "TCP", False),
        # labels alone, or the right labels in the wrong namespace, do not get in
        (NEIGHBOUR, head, 8265, "TCP", False),
        (NEIGHBOUR, head, 6379, "TCP", False),
        (NEIGHBOUR, worker, 10005, "TCP", False),
        (foreign["worker"], head, 6379, "TCP", False),
        (foreign["submitter"], head, 8265, "TCP", False),
        (foreign["head"], worker, 10005, "TCP", False),
        (head, submitter, 8265, "TCP", False),
        # egress: DNS, HTTPS to the internet, the API server for the autoscaler on the head
        (head, DNS, 53, "UDP", True),
        (worker, DNS, 53, "UDP", True),
        (submitter, DNS, 53, "UDP", True),
        (worker, S3, 443, "TCP", True),
        (head, S3, 443, "TCP", True),
        (head, API_SERVER, 6443, "TCP", True),
        (worker, API_SERVER, 6443, "TCP", False),
        (worker, S3, 22, "TCP", False),
        (worker, S3, 80, "TCP", False),
        (worker, METADATA, 80, "TCP", False),
        (worker, METADATA, 443, "TCP", False),
        (worker, IN_CLUSTER_SERVICE, 443, "TCP", False),
        (worker, NEIGHBOUR, 8080, "TCP", False),
        (head, S3, 22, "TCP", False),
        (submitter, S3, 443, "TCP", False),
        (submitter, worker, 10005, "TCP", False),
    ]


@pytest.mark.parametrize("source", [s for s in SOURCES if s != "base-files"])
def test_network_policies_let_through_exactly_the_ray_traffic(source):
    objects = objects_of(source)
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    pods = cluster_pods(source)
    for name, pod in pods.items():
        for kind in ("Ingress", "Egress"):
            assert any(
                kind in p["spec"].get("policyTypes", [])
                and selects(p["spec"]["podSelector"], pod.labels)
                for p in policies
            ), f"{source}: no NetworkPolicy restricts {kind.lower()} of the {name} pod"
    wrong = [
        f"{src.name} -> {dst.name}:{port}/{proto} {'allowed' if not want else 'blocked'}"
        for src, dst, port, proto, want in network_cases(pods)
        if allowed(policies, src, dst, port, proto) != want
    ]
    assert not wrong, f"{source}: " + "; ".join(wrong)


def test_policy_selectors_need_labels_only_the_controllers_set():
    """Every pod selector that picks valuescope pods, as target or as peer, includes a label
    KubeRay or the Job controller sets, besides ours."""
    controller_keys = {"ray.io/node-type", "batch.kubernetes.io/job-name"}
    for policy in [o for o in objects_of("base") if o["kind"] == "NetworkPolicy"]:
        name = policy["metadata"]["name"]
        spec = policy["spec"]
        selectors = [spec["podSelector"]] + [
            peer["podSelector"]
            for rule in [*(spec.get("ingress") or []), *(spec.get("egress") or [])]
            for peer in rule.get("from", rule.get("to", []))
            if "podSelector" in peer and "namespaceSelector" not in peer
        ]
        for selector in selectors:
            keys = set(selector.get("matchLabels", {}))
            assert keys & controller_keys and "app.kubernetes.io/name" in keys, (
                f"NetworkPolicy {name}: selector {selector} can be met by any pod with our labels"
            )


# --- read-only root filesystem -----------------------------------------------------------------


def emptydir_volumes(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        v["name"]: v["emptyDir"] for v in template["spec"].get("volumes", []) if "emptyDir" in v
    }


def writable_paths(template: dict[str, Any], container: dict[str, Any], where: str) -> list[str]:
    """Mount paths of the container's writable volumes, after checking each is a bounded
    emptyDir (nothing writable on the node's disk or a shared volume)."""
    empty = emptydir_volumes(template)
    paths = []
    for mount in container.get("volumeMounts", []):
        if mount.get("readOnly"):
            continue
        assert mount["name"] in empty, (
            f"{where}: writable mount {mount['mountPath']} is not an emptyDir"
        )
        assert empty[mount["name"]].get("sizeLimit"), (
            f"{where}: emptyDir {mount['name']} has no sizeLimit"
        )
        paths.append(mount["mountPath"])
    return paths


def under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


@pytest.mark.parametrize("source", SOURCES)
def test_root_filesystems_are_read_only(source):
    for obj in ray_objects(source):
        for where, role, template in pod_templates(obj):
            for c in containers(template):
                at = f"{source}: {where}: {c['name']}"
                ctx = c.get("securityContext", {})
                assert ctx.get("readOnlyRootFilesystem") is True, f"{at}: root filesystem writable"
                paths = writable_paths(template, c, at)
                assert "/tmp" in paths, f"{at}: no writable /tmp"
                if role == "submitter":
                    continue
                missing = [p for p in RAY_WRITABLE if p not in paths]
                assert not missing, f"{at}: Ray needs writable {missing}"
                env = {v["name"]: v.get("value") for v in c.get("env", [])}
                for name in CACHE_ENV:
                    assert env.get(name) and under(env[name], paths), (
                        f"{at}: {name}={env.get(name)} is not on a writable volume"
                    )
        options = cluster_spec(obj).get("autoscalerOptions", {})
        at = f"{source}: {obj['kind']} autoscaler"
        assert options.get("securityContext", {}).get("readOnlyRootFilesystem") is True, at
        head = cluster_spec(obj)["headGroupSpec"]["template"]
        assert writable_paths(head, options, at) == ["/tmp"], f"{at}: needs the head's /tmp"


# --- per-role secrets --------------------------------------------------------------------------


def secret_refs(template: dict[str, Any], container: dict[str, Any]) -> dict[str, set[str]]:
    """Secret name -> keys a container can read (env, envFrom, secret and projected volumes)."""
    refs: dict[str, set[str]] = {}
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            refs.setdefault(ref["name"], set()).add(ref["key"])
    for source in container.get("envFrom", []):
        if "secretRef" in source:
            refs.setdefault(source["secretRef"]["name"], set()).add("*")
    volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        projected = [
            s["secret"] for s in volume.get("projected", {}).get("sources", []) if "secret" in s
        ]
        direct = [volume["secret"]] if "secret" in volume else []
        for secret in direct + projected:
            name = secret.get("secretName", secret.get("name"))
            refs.setdefault(name, set()).add("*")
    return refs


@pytest.mark.parametrize("source", SOURCES)
def test_each_role_reads_only_its_secrets(source):
    for obj in ray_objects(source):
        # The head holds no model credentials because no replica can be scheduled on it.
        params = cluster_spec(obj)["headGroupSpec"]["rayStartParams"]
        assert params.get("num-cpus") == "0" and params.get("num-gpus") == "0", (
            f"{source}: {obj['kind']}: replicas could land on the head, which has no model keys"
        )
        for where, role, template in pod_templates(obj):
            expected = ROLE_SECRETS[role]
            for c in containers(template):
                at = f"{source}: {where}: {c['name']}"
                refs = secret_refs(template, c)
                assert set(refs) == set(expected), (
                    f"{at}: reads Secrets {sorted(refs)}, its role ({role}) needs {sorted(expected)}"
                )
                for name, keys in refs.items():
                    extra = keys - expected[name]
                    assert not extra, f"{at}: reads {sorted(extra)} of {name}, not its role's"
        options = cluster_spec(obj).get("autoscalerOptions", {})
        assert not secret_refs({"spec": {}}, options), f"{source}: the autoscaler reads a Secret"


def test_secret_template_matches_the_roles():
    documented = {s["metadata"]["name"]: s for s in load_docs(BASE / "secret.example.yaml")}
    text = (BASE / "secret.example.yaml").read_text(encoding="utf-8")
    for secrets in ROLE_SECRETS.values():
        for name, keys in secrets.items():
            assert name in documented, f"secret.example.yaml has no Secret {name}"
            for key in keys:
                assert key in text, f"secret.example.yaml: {name} does not document {key}"
            assert set(documented[name]["stringData"]) <= keys, f"{name}: keys no pod reads"


# --- images ------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", SOURCES)
def test_no_image_escapes_the_kustomize_images_entry(source):
    """The autoscaler and KubeRay's init containers run the pod templates' image unless
    autoscalerOptions names another, which `images:` (and a digest pin) would then miss."""
    for obj in ray_objects(source):
        assert "image" not in cluster_spec(obj).get("autoscalerOptions", {}), source


def test_pinned_example_pins_every_image_by_digest():
    objects = list(render("examples/pinned-digest"))
    images = {
        c["image"]
        for obj in objects
        if obj["apiVersion"].startswith("ray.io/")
        for _, _, template in pod_templates(obj)
        for c in containers(template)
    }
    assert images, "the example renders no container"
    for image in images:
        assert DIGEST.match(image), f"{image}: not pinned by digest"
        assert ":" not in image.split("@")[0].rsplit("/", 1)[-1], f"{image}: tag and digest"
