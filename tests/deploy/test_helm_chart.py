"""The Helm chart ``deploy/helm/frys-ws``: lint, render, validate, and check what it deploys.

Rendering needs Helm, found through ``FRYS_HELM``, then ``PATH``, then ``.ci/cache/bin/helm``
(``deploy/helm/fetch-helm.sh .ci/cache/bin`` installs it); without it those tests skip. The
values schema is also checked directly with ``jsonschema``, so it is covered without Helm.
Every rendered manifest is validated strictly against the Kubernetes API schemas shipped by
``kubernetes-validate``. None of this needs a cluster.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import functools
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "frys-ws"
PRODUCTION = CHART / "ci" / "production-values.yaml"
FETCH = ROOT / "deploy" / "helm" / "fetch-helm.sh"
NAMESPACE = "frys"
RELEASE = "frys-ws"
# Validated against the newest schemas kubernetes-validate ships that clusters run today, and
# against the oldest version the chart supports (Chart.yaml kubeVersion).
KUBE_VERSIONS = ("1.30.0", "1.34.0")
RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)
# Kinds from CRDs, which kubernetes-validate has no schema for; checked by hand below.
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}

Manifest = dict[str, Any]


def _find_helm() -> str | None:
    explicit = os.environ.get("FRYS_HELM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    on_path = shutil.which("helm")
    if on_path:
        return on_path
    cached = ROOT / ".ci" / "cache" / "bin" / "helm"
    return str(cached) if os.access(cached, os.X_OK) else None


HELM = _find_helm()
needs_helm = pytest.mark.skipif(
    HELM is None,
    reason="helm not found: set FRYS_HELM, put helm on PATH, "
    "or run deploy/helm/fetch-helm.sh .ci/cache/bin",
)


# --- helpers -----------------------------------------------------------------------------


def _helm(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    return subprocess.run(
        [HELM, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )


def _values_args(files: tuple[str, ...], overrides: str) -> list[str]:
    """``-f`` for each file, then ``-f -``: the overrides YAML arrives on standard input."""
    args: list[str] = []
    for file in files:
        args += ["-f", file]
    if overrides:
        args += ["-f", "-"]
    return args


@functools.cache
def _template(files: tuple[str, ...] = (), overrides: str = "", release: str = RELEASE) -> str:
    args = ["template", release, str(CHART), "--namespace", NAMESPACE]
    values = _values_args(files, overrides)
    result = _helm(*args, "--kube-version", KUBE_VERSIONS[-1], *values, stdin=overrides)
    assert result.returncode == 0, result.stderr
    return result.stdout


def render(
    files: tuple[str, ...] = (), overrides: str = "", release: str = RELEASE
) -> list[Manifest]:
    """Rendered manifests (deep copies: tests may change them)."""
    docs = [d for d in yaml.safe_load_all(_template(files, overrides, release)) if d]
    return copy.deepcopy(docs)


def render_fails(overrides: str) -> str:
    result = _helm("template", RELEASE, str(CHART), *_values_args((), overrides), stdin=overrides)
    assert result.returncode != 0, "rendering should have failed"
    return result.stderr


def find(docs: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]


def one(docs: list[Manifest], kind: str, name: str) -> Manifest:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def container(workload: Manifest, name: str) -> Manifest:
    containers = workload["spec"]["template"]["spec"]["containers"]
    matches = [c for c in containers if c["name"] == name]
    assert len(matches) == 1
    result: Manifest = matches[0]
    return result


def env_of(c: Manifest) -> dict[str, Manifest]:
    return {e["name"]: e for e in c.get("env", [])}


def env_value(c: Manifest, name: str) -> str:
    value: str = env_of(c)[name]["value"]
    return value


def expand(value: str, variables: dict[str, str]) -> str:
    """The kubelet's $(VAR) expansion."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: variables[m.group(1)], value)


def deep_merge(base: Manifest, overlay: Manifest) -> Manifest:
    merged = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_yaml(path: Path) -> Manifest:
    data: Manifest = yaml.safe_load(path.read_text())
    return data


def nats_block(conf: str, block: str) -> str:
    """Body of a top-level ``name { ... }`` block of a NATS config (no nested braces)."""
    match = re.search(rf"^{block}\s*\{{(.*?)^\}}", conf, re.S | re.M)
    assert match, f"no {block} block"
    return match.group(1)


PROD = (str(PRODUCTION),)
GW = f"{RELEASE}-gateway"


# --- fetch script ------------------------------------------------------------------------


def test_fetch_script_needs_a_destination() -> None:
    result = subprocess.run(["bash", str(FETCH)], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "usage" in result.stderr
    assert "set -euo pipefail" in FETCH.read_text()
    assert os.access(FETCH, os.X_OK)


def test_fetch_script_is_idempotent(tmp_path: Path) -> None:
    """A destination that already holds Helm 4 and kubectl is kept: nothing is downloaded."""
    dest = tmp_path / "bin"
    dest.mkdir()
    scripts = {
        "helm": '#!/bin/sh\n[ "$1" = version ] && printf v4.1.4 && exit 0\nexit 1\n',
        "kubectl": "#!/bin/sh\nexit 0\n",
    }
    for name, text in scripts.items():
        (dest / name).write_text(text)
        (dest / name).chmod(stat.S_IRWXU)
    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # no npm needed on this path
    result = subprocess.run(
        ["bash", str(FETCH), str(dest)], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(dest / "helm")
    assert (dest / "helm").read_text() == scripts["helm"]


# --- values schema without Helm --------------------------------------------------------------


def _schema() -> Manifest:
    data: Manifest = json.loads((CHART / "values.schema.json").read_text())
    return data


def _validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    schema = _schema()
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


BAD_VALUES = {
    "replicas as text": "gateway:\n  replicas: three\n",
    "stream replicas 2": "gateway:\n  streamReplicas: 2\n",
    "no NATS at all": "nats:\n  enabled: false\n",
    "NATS url without scheme": "nats:\n  enabled: false\n  url: nats-host:4222\n",
    "Ingress without host": "ingress:\n  enabled: true\n",
    "TLS without secret": (
        "ingress:\n  enabled: true\n  host: ws.example.com\n  tls:\n    enabled: true\n"
    ),
    "short ingress timeout": "ingress:\n  timeoutSeconds: 60\n",
    "router k8s mode": "router:\n  kubernetes: maybe\n",
    "unknown top-level key": "gatway:\n  replicas: 3\n",
    "secret in config file": "gateway:\n  config:\n    jwt_secret: abcdefghijklmnopqrstuvwxyz\n",
    "short jwt secret": "auth:\n  jwtSecret: short\n",
    "16-character jwt secret": "auth:\n  jwtSecret: sixteen-chars-ok\n",
    "image digest without algorithm": "image:\n  digest: 0123abcd\n",
    "internal port out of range": "gateway:\n  internalPort: 70000\n",
    "public key mode without key": "auth:\n  mode: publicKey\n",
    "even NATS cluster": "nats:\n  replicas: 2\n",
    "bad sampler": "otel:\n  sampler: sometimes\n",
    "OTLP as JSON": "otel:\n  protocol: http/json\n",
    "gateway TLS without its Secret": "gateway:\n  tls:\n    enabled: true\n",
    "unknown TLS mode": "ingress:\n  tlsMode: offload\n",
    "NATS TLS as text": "nats:\n  tls:\n    enabled: 'yes'\n",
    "JWKS URL mode without URL": "auth:\n  mode: jwksUrl\n",
    "JWKS URL over plain HTTP": "auth:\n  mode: jwksUrl\n  jwksUrl: http://id.example.com/jwks\n",
}


def test_schema_is_draft07_and_accepts_the_shipped_values() -> None:
    validator = _validator()
    assert _schema()["$schema"] == "http://json-schema.org/draft-07/schema#"
    defaults = load_yaml(CHART / "values.yaml")
    assert list(validator.iter_errors(defaults)) == []
    production = deep_merge(defaults, load_yaml(PRODUCTION))
    assert list(validator.iter_errors(production)) == []


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_schema_rejects_bad_values(case: str) -> None:
    validator = _validator()
    values = deep_merge(load_yaml(CHART / "values.yaml"), yaml.safe_load(BAD_VALUES[case]))
    assert list(validator.iter_errors(values)), f"{case} was accepted"


# --- lint and render ---------------------------------------------------------------------


@needs_helm
@pytest.mark.parametrize("files", [(), PROD], ids=["default", "production"])
def test_helm_lint_strict(files: tuple[str, ...]) -> None:
    result = _helm("lint", "--strict", str(CHART), *_values_args(files, ""))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@needs_helm
def test_helm_rejects_a_bad_values_file() -> None:
    stderr = render_fails(BAD_VALUES["replicas as text"])
    assert "/gateway/replicas" in stderr
    assert "want integer" in stderr


@needs_helm
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ("gateway:\n  reconnectSpreadMs: 10000\n", "must be below gateway.drainSeconds"),
        (
            "gateway:\n  autoscaling:\n    minReplicas: 8\n    maxReplicas: 4\n",
            "minReplicas must not exceed maxReplicas",
        ),
        ("nats:\n  replicas: 1\ngateway:\n  streamReplicas: 3\n", "exceeds nats.replicas"),
        ("auth:\n  existingSecret: mine\n  apiKey: inline\n", "auth.existingSecret is set"),
        ("nats:\n  lameDuckSeconds: 55\n", "must exceed nats.lameDuckSeconds"),
        (
            "ingress:\n  enabled: true\n  host: h\n  tlsMode: reencrypt\n",
            "needs gateway.tls.enabled",
        ),
        (
            "ingress:\n  enabled: true\n  host: h\n"
            "gateway:\n  tls:\n    enabled: true\n    secretName: gw-tls\n",
            "needs ingress.tlsMode reencrypt or passthrough",
        ),
        (
            "ingress:\n  enabled: true\n  host: h\n  tlsMode: passthrough\n"
            "  tls:\n    enabled: true\n    secretName: x\n"
            "gateway:\n  tls:\n    enabled: true\n    secretName: gw-tls\n",
            "ingress.tls must stay disabled",
        ),
    ],
    ids=[
        "spread-vs-drain",
        "hpa-min-max",
        "stream-replicas",
        "secret-twice",
        "lame-duck",
        "reencrypt-without-gateway-tls",
        "gateway-tls-behind-edge",
        "passthrough-with-ingress-tls",
    ],
)
def test_helm_rejects_inconsistent_values(overrides: str, message: str) -> None:
    assert message in render_fails(overrides)


def _validation_cases() -> Iterator[Any]:
    for files, label in (((), "default"), (PROD, "production")):
        for version in KUBE_VERSIONS:
            yield pytest.param(files, version, id=f"{label}-k8s{version}")


@needs_helm
@pytest.mark.parametrize(("files", "kube_version"), list(_validation_cases()))
def test_every_manifest_passes_strict_kubernetes_validation(
    files: tuple[str, ...], kube_version: str
) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    docs = render(files)
    assert len(docs) > 10
    custom = 0
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CUSTOM_KINDS:
            custom += 1
            continue
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kv.validate(doc, kube_version, strict=True)
        except kv.ValidationError as exc:
            pytest.fail(f"{name} is invalid for Kubernetes {kube_version}: {exc.message}")
    # The production values enable the ServiceMonitors (gateway, router, NATS) and the rules.
    assert custom == (4 if files else 0)


VARIANTS = {
    "jwks": "auth:\n  mode: jwks\n  jwks: '{\"keys\": []}'\n  keyId: k1\n",
    "fixed-replicas-no-spread": (
        "gateway:\n  autoscaling:\n    enabled: false\n  podAntiAffinity: none\n"
        "  topologySpread:\n    enabled: false\n  pdb:\n    enabled: false\n"
    ),
    "plain-ingress-with-api": (
        "ingress:\n  enabled: true\n  host: ws.internal\n  nginx: false\n"
        "  exposePublishApi: true\n  pathType: Exact\n"
    ),
    "single-nats-no-router-rbac": (
        "nats:\n  replicas: 1\n  podAntiAffinity: hard\nrouter:\n  rbac:\n    create: false\n"
    ),
    "gateway-tls-reencrypt": (
        "gateway:\n  tls:\n    enabled: true\n    secretName: gw-tls\n    clientAuth: true\n"
        "ingress:\n  enabled: true\n  host: ws.example.com\n  tlsMode: reencrypt\n"
        "  tls:\n    enabled: true\n    secretName: edge-tls\n"
        "metrics:\n  serviceMonitor:\n    enabled: true\n"
    ),
    "gateway-tls-passthrough": (
        "gateway:\n  tls:\n    enabled: true\n    secretName: gw-tls\n"
        "ingress:\n  enabled: true\n  host: ws.example.com\n  tlsMode: passthrough\n"
    ),
    "nats-plain-no-auth": "nats:\n  tls:\n    enabled: false\n  auth:\n    enabled: false\n",
    "external-nats-creds": (
        "nats:\n  enabled: false\n  url: tls://nats.messaging:4222\n"
        "  external:\n    caSecret: nats-ca\n    credsSecret: frys-nats-creds\n"
    ),
    "load-balancer-extras": (
        "gateway:\n  service:\n    type: LoadBalancer\n    loadBalancerSourceRanges: [10.0.0.0/8]\n"
        "  extraEnv:\n    - name: FRYS_PING_INTERVAL_S\n      value: '30'\n"
        "  affinity:\n    nodeAffinity:\n      requiredDuringSchedulingIgnoredDuringExecution:\n"
        "        nodeSelectorTerms:\n          - matchExpressions:\n"
        "              - {key: pool, operator: In, values: [realtime]}\n"
        "  tolerations: [{key: realtime, operator: Exists, effect: NoSchedule}]\n"
        "  preStop:\n    useExec: true\n"
    ),
}


@needs_helm
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_value_variants_render_valid_manifests(variant: str) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    docs = render(overrides=VARIANTS[variant])
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) not in CUSTOM_KINDS:
            kv.validate(doc, KUBE_VERSIONS[-1], strict=True)
    # Gateways, and NATS unless an external one is used.
    assert len(find(docs, "StatefulSet")) == (1 if variant.startswith("external") else 2)


@needs_helm
def test_strict_validation_would_catch_a_broken_manifest() -> None:
    """The validator is not a no-op: a typo'd field and a wrong type are both reported."""
    kv = pytest.importorskip("kubernetes_validate")
    sts = one(render(), "StatefulSet", GW)
    typo = copy.deepcopy(sts)
    typo["spec"]["template"]["spec"]["terminationGracePeriod"] = 30
    wrong_type = copy.deepcopy(sts)
    wrong_type["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "thirty"
    for broken in (typo, wrong_type):
        with pytest.raises(kv.ValidationError):
            kv.validate(broken, KUBE_VERSIONS[-1], strict=True)


# --- what the chart deploys ------------------------------------------------------------------


@needs_helm
def test_production_resource_list() -> None:
    docs = render(PROD)
    kinds = sorted({(d["kind"], d["metadata"]["name"]) for d in docs})
    expected_core = {
        ("StatefulSet", GW),
        ("StatefulSet", f"{RELEASE}-nats"),
        ("Deployment", f"{RELEASE}-router"),
        ("HorizontalPodAutoscaler", GW),
        ("Ingress", GW),
        ("PodDisruptionBudget", GW),
        ("PodDisruptionBudget", f"{RELEASE}-nats"),
        ("Role", f"{RELEASE}-router"),
        ("RoleBinding", f"{RELEASE}-router"),
        ("Service", GW),
        ("Service", f"{GW}-pods"),
        ("Service", f"{RELEASE}-nats-headless"),
        ("ServiceMonitor", GW),
        ("ConfigMap", f"{RELEASE}-nats-config"),
        ("ConfigMap", GW),
    }
    assert expected_core <= set(kinds)
    assert not find(docs, "Secret"), "existingSecret is set: the chart must not create one"


@needs_helm
@pytest.mark.parametrize("files", [(), PROD], ids=["default", "production"])
def test_recommended_labels_and_selectors(files: tuple[str, ...]) -> None:
    for doc in render(files):
        labels = doc["metadata"]["labels"]
        missing = [k for k in RECOMMENDED_LABELS if k not in labels]
        assert not missing, f"{doc['kind']}/{doc['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        if doc["kind"] in ("StatefulSet", "Deployment"):
            selector = doc["spec"]["selector"]["matchLabels"]
            pod_labels = doc["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= pod_labels.items()
            assert "app.kubernetes.io/component" in selector


@needs_helm
@pytest.mark.parametrize(
    ("overrides", "drain"),
    [("", 10.0), ("gateway:\n  drainSeconds: 12.5\n  reconnectSpreadMs: 3000\n", 12.5)],
    ids=["default", "fractional"],
)
def test_gateway_termination_outlasts_prestop_and_drain(overrides: str, drain: float) -> None:
    sts = one(render(overrides=overrides), "StatefulSet", GW)
    pod = sts["spec"]["template"]["spec"]
    gw = container(sts, "gateway")
    assert float(env_value(gw, "FRYS_DRAIN_S")) == drain
    pre_stop = gw["lifecycle"]["preStop"]
    sleep = pre_stop["sleep"]["seconds"]
    assert sleep > 0
    assert pod["terminationGracePeriodSeconds"] > sleep + drain
    assert float(env_value(gw, "FRYS_RECONNECT_SPREAD_MS")) / 1000 < drain


@needs_helm
def test_gateway_prestop_can_use_exec() -> None:
    sts = one(render(overrides="gateway:\n  preStop:\n    useExec: true\n"), "StatefulSet", GW)
    pre_stop = container(sts, "gateway")["lifecycle"]["preStop"]
    assert pre_stop == {"exec": {"command": ["sleep", "5"]}}


@needs_helm
def test_gateway_pod_spec() -> None:
    docs = render()
    sts = one(docs, "StatefulSet", GW)
    pod = sts["spec"]["template"]["spec"]
    gw = container(sts, "gateway")
    assert gw["command"] + gw["args"] == ["frys-ws", "gateway"]
    assert gw["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "internal", "containerPort": 9090, "protocol": "TCP"},
    ]
    assert gw["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http", "scheme": "HTTP"}
    assert gw["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http", "scheme": "HTTP"}
    security = gw["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert gw["resources"]["requests"]["cpu"]
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    assert sts["spec"]["serviceName"] == f"{GW}-pods"
    assert env_value(gw, "FRYS_GATEWAY_ID") == "$(POD_NAME)"
    assert env_value(gw, "FRYS_STREAM_REPLICAS") == "3"
    assert env_value(gw, "FRYS_EVENTS_MAX_BYTES") == "1073741824"  # not 1.073741824e+09
    # No OpenTelemetry unless an endpoint is configured.
    assert not [name for name in env_of(gw) if name.startswith("OTEL_")]


@needs_helm
@pytest.mark.parametrize("files", [(), PROD], ids=["default", "production"])
def test_env_references_are_defined_before_use(files: tuple[str, ...]) -> None:
    """The kubelet expands $(VAR) only from variables listed earlier in env."""
    for doc in render(files):
        if doc["kind"] not in ("StatefulSet", "Deployment"):
            continue
        for c in doc["spec"]["template"]["spec"]["containers"]:
            seen: set[str] = set()
            for entry in c.get("env", []):
                for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", entry.get("value", "")):
                    assert ref in seen, f"{doc['metadata']['name']}: {entry['name']} uses {ref}"
                seen.add(entry["name"])


@needs_helm
def test_hpa_owns_gateway_replicas() -> None:
    docs = render(PROD)
    hpa = one(docs, "HorizontalPodAutoscaler", GW)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": GW,
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["spec"]["behavior"]["scaleDown"]["policies"] == [
        {"type": "Pods", "value": 1, "periodSeconds": 60}
    ]
    # With an HPA, helm upgrade must not reset the replica count.
    assert "replicas" not in one(docs, "StatefulSet", GW)["spec"]

    fixed = render(overrides="gateway:\n  replicas: 4\n  autoscaling:\n    enabled: false\n")
    assert not find(fixed, "HorizontalPodAutoscaler")
    assert one(fixed, "StatefulSet", GW)["spec"]["replicas"] == 4


@needs_helm
def test_pdbs_select_their_pods() -> None:
    docs = render(PROD)
    for name, workload in ((GW, GW), (f"{RELEASE}-nats", f"{RELEASE}-nats")):
        pdb = one(docs, "PodDisruptionBudget", name)
        assert pdb["spec"]["maxUnavailable"] == 1
        pod_labels = one(docs, "StatefulSet", workload)["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


@needs_helm
def test_ingress_routes_every_possible_pod() -> None:
    docs = render(PROD)
    ingress = one(docs, "Ingress", GW)
    annotations = ingress["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert annotations["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["ws.example.com"], "secretName": "frys-ws-tls"}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "ws.example.com"
    paths = {p["path"]: p["backend"]["service"] for p in rule["http"]["paths"]}
    assert paths.pop("/ws")["name"] == GW
    max_pods = one(docs, "HorizontalPodAutoscaler", GW)["spec"]["maxReplicas"]
    assert len(paths) == max_pods == 12

    services = {s["metadata"]["name"]: s for s in find(docs, "Service")}
    gw = container(one(docs, "StatefulSet", GW), "gateway")
    public_url = env_value(gw, "FRYS_PUBLIC_URL")
    assert public_url == "wss://ws.example.com/gw/$(POD_NAME)/ws"
    for ordinal in range(max_pods):
        pod_name = f"{GW}-{ordinal}"  # StatefulSet pod naming
        url = expand(public_url, {"POD_NAME": pod_name, "POD_NAMESPACE": NAMESPACE})
        path = url.removeprefix("wss://ws.example.com")
        backend = paths[path]  # the URL a gateway advertises is routed...
        service = services[backend["name"]]  # ...to a Service that selects only that pod
        assert service["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == pod_name
        assert backend["port"]["number"] == service["spec"]["ports"][0]["port"]
        assert service["spec"]["ports"][0]["targetPort"] == "http"


@needs_helm
def test_per_pod_paths_follow_the_hpa_maximum() -> None:
    overrides = (
        "ingress:\n  enabled: true\n  host: ws.example.com\n"
        "gateway:\n  autoscaling:\n    maxReplicas: 7\n"
    )
    docs = render(overrides=overrides)
    (rule,) = one(docs, "Ingress", GW)["spec"]["rules"]
    per_pod = [p["path"] for p in rule["http"]["paths"] if p["path"].startswith("/gw/")]
    assert per_pod == [f"/gw/{GW}-{i}/ws" for i in range(7)]
    gw = container(one(docs, "StatefulSet", GW), "gateway")
    assert env_value(gw, "FRYS_PUBLIC_URL") == "ws://ws.example.com/gw/$(POD_NAME)/ws"


@needs_helm
def test_public_url_without_ingress_is_the_per_pod_dns_name() -> None:
    docs = render()
    assert not find(docs, "Ingress")
    headless = one(docs, "Service", f"{GW}-pods")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    gw = container(one(docs, "StatefulSet", GW), "gateway")
    url = expand(env_value(gw, "FRYS_PUBLIC_URL"), {"POD_NAME": f"{GW}-0", "POD_NAMESPACE": "ns"})
    assert url == f"ws://{GW}-0.{GW}-pods.ns.svc.cluster.local:8080/ws"
    explicit = "wss://gw-$(POD_NAME).example.com/ws"
    docs = render(overrides=f'gateway:\n  publicUrl: "{explicit}"\n')
    gw = container(one(docs, "StatefulSet", GW), "gateway")
    assert env_value(gw, "FRYS_PUBLIC_URL") == explicit


@needs_helm
def test_long_release_names_keep_valid_pod_and_service_names() -> None:
    release = "collaboration-gateway-release-of-the-frys-engine-prod"
    assert len(release) == 53  # the longest name Helm accepts
    docs = render(overrides="ingress:\n  enabled: true\n  host: ws.example.com\n", release=release)
    sts = next(d for d in find(docs, "StatefulSet") if "gateway" in d["metadata"]["name"])
    maximum = one(docs, "HorizontalPodAutoscaler", sts["metadata"]["name"])["spec"]["maxReplicas"]
    dns_label = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
    for ordinal in range(maximum):
        pod_name = f"{sts['metadata']['name']}-{ordinal}"
        assert len(pod_name) <= 63 and dns_label.match(pod_name)
    for service in find(docs, "Service"):
        assert dns_label.match(service["metadata"]["name"])
        assert len(service["metadata"]["name"]) <= 63


@needs_helm
def test_router_rbac_and_selector() -> None:
    docs = render()
    router = one(docs, "Deployment", f"{RELEASE}-router")
    assert router["spec"]["replicas"] == 1
    assert router["spec"]["strategy"]["type"] == "Recreate"
    pod = router["spec"]["template"]["spec"]
    c = container(router, "router")
    assert c["command"] + c["args"] == ["frys-ws", "router"]
    assert c["ports"][0]["containerPort"] == 8081
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["automountServiceAccountToken"] is True

    role = one(docs, "Role", f"{RELEASE}-router")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}
    ]
    binding = one(docs, "RoleBinding", f"{RELEASE}-router")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": NAMESPACE}
    ]
    one(docs, "ServiceAccount", pod["serviceAccountName"])
    assert not find(docs, "ClusterRole")

    # The selector the router watches matches the gateway pods, and only them.
    selector = dict(
        pair.split("=", 1) for pair in env_value(c, "FRYS_ROUTER_K8S_SELECTOR").split(",")
    )
    for workload in find(docs, "StatefulSet") + find(docs, "Deployment"):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        matches = selector.items() <= labels.items()
        assert matches == (workload["metadata"]["name"] == GW)
    assert env_value(c, "FRYS_ROUTER_K8S_NAMESPACE") == "$(POD_NAMESPACE)"
    assert env_value(c, "FRYS_NATS_URL") == env_value(
        container(one(docs, "StatefulSet", GW), "gateway"), "FRYS_NATS_URL"
    )


@needs_helm
def test_router_without_kubernetes_gets_no_api_access() -> None:
    docs = render(overrides="router:\n  kubernetes: 'off'\n")
    assert not find(docs, "Role") and not find(docs, "RoleBinding")
    router = one(docs, "Deployment", f"{RELEASE}-router")
    assert router["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    docs = render(overrides="router:\n  enabled: false\n")
    assert not [d for d in docs if d["metadata"]["name"].endswith("-router")]


@needs_helm
def test_nats_cluster_of_three_with_fsync_always() -> None:
    docs = render(PROD)
    nats = f"{RELEASE}-nats"
    sts = one(docs, "StatefulSet", nats)
    assert sts["spec"]["replicas"] == 3
    headless = one(docs, "Service", f"{nats}-headless")
    assert sts["spec"]["serviceName"] == headless["metadata"]["name"]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert {p["port"] for p in headless["spec"]["ports"]} == {4222, 6222, 8222, 7777}
    c = container(sts, "nats")
    assert c["image"].startswith("nats:2.")
    assert {p["containerPort"] for p in c["ports"]} == {4222, 6222, 8222}
    assert "ldm" in " ".join(c["lifecycle"]["preStop"]["exec"]["command"])
    assert c["readinessProbe"]["httpGet"]["port"] == "monitor"
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert claim["spec"]["resources"]["requests"]["storage"] == "100Gi"
    assert {"name": "data", "mountPath": "/data"} in c["volumeMounts"]

    conf = one(docs, "ConfigMap", f"{nats}-config")["data"]["nats.conf"]
    jetstream = nats_block(conf, "jetstream")
    assert re.search(r"^\s*sync_interval:\s*always\s*$", jetstream, re.M)
    assert re.search(r'^\s*store_dir:\s*"/data"', jetstream, re.M)
    routes = re.findall(r'"nats://([^"]+)"', nats_block(conf, "cluster"))
    domain = f"{nats}-headless.{NAMESPACE}.svc.cluster.local"
    assert routes == [f"{nats}-{i}.{domain}:6222" for i in range(3)]
    gw = container(one(docs, "StatefulSet", GW), "gateway")
    assert env_value(gw, "FRYS_NATS_URL").split(",") == [
        f"tls://{nats}-{i}.{domain}:4222" for i in range(3)
    ]


@needs_helm
def test_rendered_nats_config_is_accepted_by_nats_server(tmp_path: Path) -> None:
    server = shutil.which("nats-server") or shutil.which(
        "nats-server", path=str(Path(sys.executable).parent)
    )
    if server is None:
        pytest.skip("nats-server not installed")
    conf = one(render(PROD), "ConfigMap", f"{RELEASE}-nats-config")["data"]["nats.conf"]
    # The production values name a cert-manager Secret; the one the chart generates with
    # the default values stands in for it (the server loads the files even with -t).
    generated = one(render(), "Secret", f"{RELEASE}-nats-tls")["data"]
    for key, value in generated.items():
        (tmp_path / key).write_bytes(base64.b64decode(value))
    local = (
        conf.replace('"/data"', f'"{tmp_path / "data"}"')
        .replace("/var/run/nats", str(tmp_path))
        .replace("/etc/nats-tls", str(tmp_path))
    )
    (tmp_path / "nats.conf").write_text(local)
    env = {
        **os.environ,
        "SERVER_NAME": f"{RELEASE}-nats-0",
        "FRYS_GATEWAY_PASSWORD": "g",
        "FRYS_ROUTER_PASSWORD": "r",
        "FRYS_ENGINE_PASSWORD": "e",
    }
    result = subprocess.run(
        [server, "-c", str(tmp_path / "nats.conf"), "-t"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # The same check fails for a broken setting, so a pass means something.
    (tmp_path / "bad.conf").write_text(local.replace("sync_interval: always", "sync_interval: x"))
    bad = subprocess.run(
        [server, "-c", str(tmp_path / "bad.conf"), "-t"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert bad.returncode != 0


@needs_helm
def test_external_nats() -> None:
    urls = "nats://nats-a.messaging:4222,nats://nats-b.messaging:4222"
    docs = render(overrides=f'nats:\n  enabled: false\n  url: "{urls}"\n')
    assert not [d for d in docs if "nats" in d["metadata"]["name"]]
    gw = container(one(docs, "StatefulSet", GW), "gateway")
    assert env_value(gw, "FRYS_NATS_URL") == urls
    assert env_value(gw, "FRYS_STREAM_REPLICAS") == "1"


@needs_helm
def test_chart_created_secret() -> None:
    docs = render()
    secret = one(docs, "Secret", f"{RELEASE}-auth")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert set(data) == {"jwt-secret", "api-key", "resume-secret"}
    assert len(data["jwt-secret"]) >= 32  # the gateway refuses shorter HS256 secrets
    assert len(data["resume-secret"]) >= 16
    gw = container(one(docs, "StatefulSet", GW), "gateway")
    env = env_of(gw)
    for name, key in (
        ("FRYS_JWT_SECRET", "jwt-secret"),
        ("FRYS_API_KEY", "api-key"),
        ("FRYS_RESUME_SECRET", "resume-secret"),
    ):
        assert env[name]["valueFrom"]["secretKeyRef"] == {
            **env[name]["valueFrom"]["secretKeyRef"],
            "name": f"{RELEASE}-auth",
            "key": key,
        }

    given = render(overrides="auth:\n  jwtSecret: a-secret-of-thirty-two-characters\n")
    secret = one(given, "Secret", f"{RELEASE}-auth")
    jwt_secret = base64.b64decode(secret["data"]["jwt-secret"]).decode()
    assert jwt_secret == "a-secret-of-thirty-two-characters"


@needs_helm
def test_existing_secret_and_public_key_file() -> None:
    docs = render(PROD)
    gw = container(one(docs, "StatefulSet", GW), "gateway")
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in gw["env"]
        if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    }
    assert refs == {
        "FRYS_JWT_SECRET": "frys-ws-auth",
        "FRYS_API_KEY": "frys-ws-auth",
        "FRYS_RESUME_SECRET": "frys-ws-auth",
        "FRYS_NATS_PASSWORD": "frys-ws-nats-auth",
    }
    assert env_value(gw, "FRYS_JWT_ISSUER") == "https://id.example.com/"
    assert env_value(gw, "FRYS_JWT_AUDIENCE") == "frys-ws"

    pem = "\n".join(
        (
            "-----BEGIN PUBLIC KEY-----",
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
            "-----END PUBLIC KEY-----",
            "",
        )
    )
    overrides = "auth:\n  mode: publicKey\n  jwtPublicKey: |\n" + "".join(
        f"    {line}\n" for line in pem.splitlines()
    )
    docs = render(overrides=overrides)
    secret = one(docs, "Secret", f"{RELEASE}-auth")
    assert base64.b64decode(secret["data"]["jwt-public-key.pem"]).decode() == pem
    sts = one(docs, "StatefulSet", GW)
    gw = container(sts, "gateway")
    assert "FRYS_JWT_SECRET" not in env_of(gw)
    path = Path(env_value(gw, "FRYS_JWT_PUBLIC_KEY_FILE"))
    mount = next(m for m in gw["volumeMounts"] if m["name"] == "auth")
    assert str(path.parent) == mount["mountPath"]
    volume = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "auth")
    assert volume["secret"]["items"] == [{"key": path.name, "path": path.name}]


@needs_helm
def test_gateway_config_file() -> None:
    docs = render(PROD)
    cm = one(docs, "ConfigMap", GW)
    assert json.loads(cm["data"]["config.json"]) == {
        "publish_rate_per_s": 2000,
        "max_subscriptions": 256,
    }
    sts = one(docs, "StatefulSet", GW)
    gw = container(sts, "gateway")
    path = Path(env_value(gw, "FRYS_CONFIG"))
    mount = next(m for m in gw["volumeMounts"] if m["name"] == "config")
    assert str(path.parent) == mount["mountPath"] and path.name == "config.json"
    assert "FRYS_CONFIG" not in env_of(container(one(render(), "StatefulSet", GW), "gateway"))


@needs_helm
def test_otel_environment() -> None:
    docs = render(PROD)
    for name, component in ((GW, "gateway"), (f"{RELEASE}-router", "router")):
        workload = find(docs, "StatefulSet", name) + find(docs, "Deployment", name)
        c = container(workload[0], component)
        assert env_value(c, "OTEL_EXPORTER_OTLP_ENDPOINT") == (
            "http://otel-collector.observability.svc.cluster.local:4318"
        )
        assert env_value(c, "OTEL_EXPORTER_OTLP_PROTOCOL") == "http/protobuf"
        assert env_value(c, "OTEL_METRICS_EXPORTER") == "none"  # Prometheus scrapes instead
        assert env_value(c, "OTEL_SERVICE_NAME") == name
        assert env_value(c, "OTEL_TRACES_SAMPLER") == "parentbased_traceidratio"
        assert env_value(c, "OTEL_TRACES_SAMPLER_ARG") == "0.05"
        attrs = dict(a.split("=", 1) for a in env_value(c, "OTEL_RESOURCE_ATTRIBUTES").split(","))
        assert attrs["k8s.pod.name"] == "$(POD_NAME)"
        assert attrs["deployment.environment.name"] == "production"


@needs_helm
def test_service_monitor_scrapes_every_gateway_pod() -> None:
    docs = render(PROD)
    monitor = one(docs, "ServiceMonitor", GW)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [
        s for s in find(docs, "Service") if selector.items() <= s["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in selected] == [f"{GW}-pods"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {p["name"] for p in selected[0]["spec"]["ports"]}
    # Scrape annotations are off in production (the ServiceMonitor does it) and on by default.
    annotations = one(docs, "StatefulSet", GW)["spec"]["template"]["metadata"]["annotations"]
    assert "prometheus.io/scrape" not in annotations
    annotations = one(render(), "StatefulSet", GW)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9090"  # metrics are on the internal port
    assert endpoint["port"] == "internal"


@needs_helm
def test_helm_test_pod_checks_readiness() -> None:
    pod = one(render(), "Pod", f"{RELEASE}-test-readyz")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    assert f"http://{GW}:8080/readyz" in script
    compile(script, "readyz-test", "exec")  # the embedded check is valid Python


# --- the chart and the gateway agree ---------------------------------------------------------


def _pod_env(
    docs: list[Manifest], tmp_path: Path, workload: str = GW, name: str = "gateway"
) -> dict[str, str]:
    """A container's environment as the kubelet would build it for pod 0, with the files of
    its Secret volumes written under ``tmp_path`` (and the paths in the environment moved
    there), so that settings naming files find them."""
    sts = (
        one(docs, "StatefulSet", workload) if workload == GW else one(docs, "Deployment", workload)
    )
    secrets = {
        (s["metadata"]["name"], key): base64.b64decode(value).decode()
        for s in find(docs, "Secret")
        for key, value in s["data"].items()
    }
    pod = sts["spec"]["template"]["spec"]
    c = container(sts, name)
    moved: dict[str, str] = {}
    for mount in c.get("volumeMounts", []):
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        if "secret" not in volume:
            continue
        folder = tmp_path / "mounts" / mount["name"]
        folder.mkdir(parents=True, exist_ok=True)
        secret_name = volume["secret"]["secretName"]
        keys = [i["key"] for i in volume["secret"].get("items", [])] or [
            k for (n, k) in secrets if n == secret_name
        ]
        for key in keys:
            # A Secret the chart does not render (an existing one) gets stand-in content.
            (folder / key).write_text(secrets.get((secret_name, key), "stand-in"))
        moved[mount["mountPath"]] = str(folder)
    env: dict[str, str] = {}
    for entry in c["env"]:
        name = entry["name"]
        source = entry.get("valueFrom", {})
        if "value" in entry:
            env[name] = expand(entry["value"], env)
        elif "fieldRef" in source:
            field = source["fieldRef"]["fieldPath"]
            env[name] = {"metadata.name": f"{GW}-0", "metadata.namespace": NAMESPACE}[field]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            # An existing Secret is not rendered: stand in a valid value for it.
            env[name] = secrets.get((ref["name"], ref["key"]), "an-existing-secret-value-32-chars")
    for var, value in env.items():
        for mount_path, folder in moved.items():
            if value.startswith(mount_path + "/"):
                env[var] = folder + value[len(mount_path) :]
                local = Path(env[var])
                if not local.exists():  # a key of an existing Secret the chart cannot see
                    local.write_text("stand-in")
    if "FRYS_CONFIG" in env:
        config = tmp_path / "config.json"
        config.write_text(one(docs, "ConfigMap", GW)["data"]["config.json"])
        env["FRYS_CONFIG"] = str(config)
    return env


@needs_helm
@pytest.mark.parametrize("files", [(), PROD], ids=["default", "production"])
def test_gateway_accepts_the_rendered_configuration(files: tuple[str, ...], tmp_path: Path) -> None:
    """Every FRYS_* variable the chart sets is a gateway setting, and together they pass the
    gateway's own validation."""
    from frys.gateway.config import GatewayConfig, load_config

    docs = render(files)
    env = _pod_env(docs, tmp_path)
    settings = {f.name for f in dataclasses.fields(GatewayConfig)}
    frys_vars = [n for n in env if n.startswith("FRYS_") and n != "FRYS_CONFIG"]
    assert len(frys_vars) >= 15
    assert [n for n in frys_vars if n.removeprefix("FRYS_").lower() not in settings] == []

    config = load_config(env=env)
    assert config.gateway_id == f"{GW}-0"
    assert config.port == 8080
    assert config.stream_replicas == 3
    assert len(config.nats_url.split(",")) == 3
    assert config.resume_secret and config.jwt_secret
    if files:
        assert config.advertised_url == f"wss://ws.example.com/gw/{GW}-0/ws"
        assert config.drain_s == 20.0
        assert config.publish_rate_per_s == 2000.0
        assert config.allowed_origins == ("https://app.example.com",)
        assert config.jwt_issuer == "https://id.example.com/"
    else:
        assert config.advertised_url.startswith(f"ws://{GW}-0.{GW}-pods.{NAMESPACE}.svc.")


def test_config_file_schema_matches_the_gateway_settings() -> None:
    """gateway.config accepts gateway settings only, and none the chart already sets."""
    from frys.gateway.config import GatewayConfig

    settings = {f.name for f in dataclasses.fields(GatewayConfig)}
    allowed = set(_schema()["properties"]["gateway"]["properties"]["config"]["properties"])
    assert allowed <= settings
    template = (CHART / "templates" / "gateway-statefulset.yaml").read_text()
    set_by_chart = {
        name.removeprefix("FRYS_").lower() for name in re.findall(r"name: (FRYS_\w+)", template)
    }
    assert set_by_chart - {"config"} <= settings
    assert allowed.isdisjoint(set_by_chart)
    assert {"api_key", "jwt_secret", "resume_secret"}.isdisjoint(allowed)


@needs_helm
def test_telemetry_accepts_the_rendered_otel_environment(tmp_path: Path) -> None:
    """The OTEL_* variables the chart sets are ones the gateway's telemetry set-up supports."""
    telemetry = pytest.importorskip("frys.shared.telemetry")
    env = _pod_env(render(PROD), tmp_path)
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://")
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:9"  # nothing is sent: no spans
    tel = telemetry.telemetry_from_env("frys-ws-gateway", env=env)
    try:
        assert tel.tracing
    finally:
        tel.shutdown()


@needs_helm
@pytest.mark.parametrize("files", [(), PROD], ids=["default", "production"])
def test_install_notes(files: tuple[str, ...]) -> None:
    result = _helm(
        "install",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--dry-run=client",
        *_values_args(files, ""),
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.partition("NOTES:")[2]
    assert f"statefulset/{GW}" in notes
    if files:
        assert "wss://ws.example.com/ws" in notes
        assert "wss://ws.example.com/gw/<pod-name>/ws" in notes
        assert "generated secrets" not in notes
    else:
        assert f"port-forward svc/{GW} 8080:8080" in notes
        assert "generated secrets" in notes


# --- encryption and credentials ----------------------------------------------------------------


def _permission_lists(conf: str) -> dict[str, set[str]]:
    """The subjects of the FRYS_PERMISSIONS block of a rendered NATS configuration."""
    block = conf[conf.index("FRYS_PERMISSIONS = {") :]
    lists = {}
    for direction in ("publish", "subscribe"):
        line = re.search(rf"^\s*{direction}: \{{ allow: \[(.*)\] \}}$", block, re.M)
        assert line, f"no {direction} list"
        lists[direction] = set(re.findall(r'"([^"]+)"', line.group(1)))
    return lists


@needs_helm
@pytest.mark.parametrize("prefix", ["frys", "acme.wf-1"])
def test_nats_permissions_are_the_runtime_set(prefix: str) -> None:
    """The chart grants its NATS users exactly what frys.runtime.nats_auth grants (the set
    the TLS tests run a gateway, the router and a backend under), for any prefix."""
    from frys.runtime.nats_auth import frys_permissions

    docs = render(overrides=f"subjectPrefix: {prefix}\n")
    conf = one(docs, "ConfigMap", f"{RELEASE}-nats-config")["data"]["nats.conf"]
    expected = frys_permissions(prefix)
    lists = _permission_lists(conf)
    assert lists["publish"] == set(expected["publish"]["allow"])
    assert lists["subscribe"] == set(expected["subscribe"]["allow"])
    assert f"{prefix}.>" in lists["publish"]
    assert not [s for s in lists["publish"] if s in ("$JS.API.>", ">", "$JS.>")]


@needs_helm
def test_bundled_nats_has_tls_and_users_by_default(tmp_path: Path) -> None:
    from cryptography import x509

    docs = render()
    nats = f"{RELEASE}-nats"
    conf = one(docs, "ConfigMap", f"{nats}-config")["data"]["nats.conf"]
    assert 'cert_file: "/etc/nats-tls/tls.crt"' in nats_block(conf, "tls")
    assert "verify: true" in conf  # routes verify each other
    assert re.search(r"user: gateway, password: \$FRYS_GATEWAY_PASSWORD", conf)
    assert "no_auth_user" not in conf

    # The generated certificate is signed by the generated CA and names every server.
    tls = one(docs, "Secret", f"{nats}-tls")
    assert tls["type"] == "kubernetes.io/tls"
    files = {k: base64.b64decode(v) for k, v in tls["data"].items()}
    cert = x509.load_pem_x509_certificate(files["tls.crt"])
    ca = x509.load_pem_x509_certificate(files["ca.crt"])
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = names.get_values_for_type(x509.DNSName)
    gw = container(one(docs, "StatefulSet", GW), "gateway")
    for url in env_value(gw, "FRYS_NATS_URL").split(","):
        host = url.removeprefix("tls://").rsplit(":", 1)[0]
        assert any(
            name == host or (name.startswith("*.") and host.split(".", 1)[1] == name[2:])
            for name in dns
        ), host

    # Each server gets the passwords from the generated Secret; each component its own user.
    auth = one(docs, "Secret", f"{nats}-auth")
    assert set(auth["data"]) == {"gateway-password", "router-password", "engine-password"}
    server_env = env_of(container(one(docs, "StatefulSet", nats), "nats"))
    for user in ("gateway", "router", "engine"):
        ref = server_env[f"FRYS_{user.upper()}_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": f"{nats}-auth", "key": f"{user}-password"}
    router = container(one(docs, "Deployment", f"{RELEASE}-router"), "router")
    for c, user in ((gw, "gateway"), (router, "router")):
        assert env_value(c, "FRYS_NATS_USER") == user
        assert env_of(c)["FRYS_NATS_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == (
            f"{user}-password"
        )
        assert env_value(c, "FRYS_NATS_TLS_CA_FILE") == "/etc/frys/nats-tls/ca.crt"

    # The rendered environments pass the gateway's and the router's own validation.
    from frys.gateway.config import load_config
    from frys.router.config import load_router_config
    from frys.runtime.nats_auth import NatsAuth

    gateway_config = load_config(env=_pod_env(docs, tmp_path / "gw"))
    assert gateway_config.nats_user == "gateway"
    assert Path(gateway_config.nats_tls_ca_file).read_bytes() == files["ca.crt"]
    assert "tls" in NatsAuth.from_settings(gateway_config).connect_options()
    router_env = _pod_env(docs, tmp_path / "router", f"{RELEASE}-router", "router")
    router_config = load_router_config(env=router_env)
    assert (router_config.nats_user, router_config.nats_password) == (
        "router",
        base64.b64decode(auth["data"]["router-password"]).decode(),
    )

    plain = render(overrides="nats:\n  tls:\n    enabled: false\n  auth:\n    enabled: false\n")
    conf = one(plain, "ConfigMap", f"{nats}-config")["data"]["nats.conf"]
    assert "tls {" not in conf and "accounts" not in conf
    gw = container(one(plain, "StatefulSet", GW), "gateway")
    assert env_value(gw, "FRYS_NATS_URL").startswith("nats://")
    assert not [n for n in env_of(gw) if n.startswith("FRYS_NATS_") and n != "FRYS_NATS_URL"]


@needs_helm
def test_external_nats_with_ca_and_creds(tmp_path: Path) -> None:
    docs = render(overrides=VARIANTS["external-nats-creds"])
    for workload, name, kind in (
        (GW, "gateway", "StatefulSet"),
        (f"{RELEASE}-router", "router", "Deployment"),
    ):
        w = one(docs, kind, workload)
        c = container(w, name)
        assert env_value(c, "FRYS_NATS_CREDS_FILE") == f"/etc/frys/nats-creds/{name}.creds"
        assert env_value(c, "FRYS_NATS_TLS_CA_FILE") == "/etc/frys/nats-tls/ca.crt"
        volumes = {v["name"]: v for v in w["spec"]["template"]["spec"]["volumes"]}
        assert volumes["nats-creds"]["secret"]["secretName"] == "frys-nats-creds"
        assert volumes["nats-creds"]["secret"]["items"] == [
            {"key": f"{name}.creds", "path": f"{name}.creds"}
        ]
        assert volumes["nats-tls"]["secret"]["secretName"] == "nats-ca"
    config = _pod_env(docs, tmp_path)
    from frys.gateway.config import load_config

    assert load_config(env=config).nats_creds_file.endswith("gateway.creds")


@needs_helm
def test_gateway_tls_reencrypt(tmp_path: Path) -> None:
    docs = render(overrides=VARIANTS["gateway-tls-reencrypt"])
    sts = one(docs, "StatefulSet", GW)
    gw = container(sts, "gateway")
    assert env_value(gw, "FRYS_TLS_CERT_FILE") == "/etc/frys/tls/tls.crt"
    assert env_value(gw, "FRYS_TLS_KEY_FILE") == "/etc/frys/tls/tls.key"
    assert env_value(gw, "FRYS_TLS_CLIENT_CA_FILE") == "/etc/frys/tls/ca.crt"
    assert env_value(gw, "FRYS_PUBLIC_URL") == "wss://ws.example.com/gw/$(POD_NAME)/ws"
    assert gw["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert gw["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    volume = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
    # The whole Secret, not items or subPath: the kubelet's renewal swap reaches the pod.
    assert volume["secret"] == {"secretName": "gw-tls", "defaultMode": 0o440}
    mount = next(m for m in gw["volumeMounts"] if m["name"] == "tls")
    assert "subPath" not in mount and mount["mountPath"] == "/etc/frys/tls"
    annotations = one(docs, "Ingress", GW)["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/backend-protocol"] == "HTTPS"
    assert one(docs, "Ingress", GW)["spec"]["tls"][0]["secretName"] == "edge-tls"
    (endpoint,) = one(docs, "ServiceMonitor", GW)["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    script = one(docs, "Pod", f"{RELEASE}-test-readyz")["spec"]["containers"][0]["command"][-1]
    assert f"https://{GW}:8080/readyz" in script
    compile(script, "readyz-test", "exec")

    from frys.gateway.config import load_config

    config = load_config(env=_pod_env(docs, tmp_path))
    assert config.tls_cert_file.endswith("tls.crt") and config.tls_client_ca_file
    assert config.advertised_url.startswith("wss://")


@needs_helm
def test_gateway_tls_passthrough_routes_each_pod_by_host() -> None:
    docs = render(overrides=VARIANTS["gateway-tls-passthrough"])
    ingress = one(docs, "Ingress", GW)
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/ssl-passthrough"] == (
        "true"
    )
    assert "tls" not in ingress["spec"]  # TLS ends at the gateways
    rules = {r["host"]: r["http"]["paths"] for r in ingress["spec"]["rules"]}
    assert rules.pop("ws.example.com")[0]["backend"]["service"]["name"] == GW
    services = {s["metadata"]["name"]: s for s in find(docs, "Service")}
    gw = container(one(docs, "StatefulSet", GW), "gateway")
    public_url = env_value(gw, "FRYS_PUBLIC_URL")
    assert public_url == "wss://$(POD_NAME).ws.example.com/ws"
    assert len(rules) == 6
    for ordinal in range(6):
        pod_name = f"{GW}-{ordinal}"
        url = expand(public_url, {"POD_NAME": pod_name})
        host = url.removeprefix("wss://").removesuffix("/ws")
        (path,) = rules[host]
        service = services[path["backend"]["service"]["name"]]
        assert service["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == pod_name


@needs_helm
def test_jwks_url_mode(tmp_path: Path) -> None:
    """Keys from the identity provider's endpoint: nothing to mount, no JWT secret."""
    from frys.gateway.config import load_config

    url = "https://id.example.com/.well-known/jwks.json"
    docs = render(overrides=f"auth:\n  mode: jwksUrl\n  jwksUrl: {url}\n")
    gw = container(one(docs, "StatefulSet", GW), "gateway")
    assert env_value(gw, "FRYS_JWT_JWKS_URL") == url
    others = {"FRYS_JWT_SECRET", "FRYS_JWT_JWKS_FILE", "FRYS_JWT_PUBLIC_KEY_FILE"}
    assert not others & set(env_of(gw))
    assert set(one(docs, "Secret", f"{RELEASE}-auth")["data"]) == {"api-key", "resume-secret"}
    assert load_config(env=_pod_env(docs, tmp_path)).jwt_jwks_url == url
