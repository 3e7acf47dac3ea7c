"""The chart refuses what the gateway and NATS refuse, and ships what operators run on.

- every documented values example renders to a gateway (and router) environment that
  passes the gateway's own configuration validation;
- one rule for the HS256 secret, one for stream sizes against NATS storage and the volume;
- the internal port (metrics, HTTP publish) never reaches a public Service or the Ingress;
- NetworkPolicies, the NATS exporter, the image digest, an in-memory ``/tmp``, autoscaling
  on connections;
- the Grafana dashboard and the PrometheusRule name only metrics that exist: on the
  ``/metrics`` of a gateway running in this test, the router's registry, a real
  ``nats-server``'s ``/varz`` (what the exporter turns into ``nats_varz_*``), or
  kube-state-metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from frys.client import Client
from frys.gateway.bus import Bus, JetStreamRefused
from frys.gateway.config import GatewayConfig, load_config
from frys.router.config import load_router_config
from frys.runtime.nats_process import NatsProcess
from tests.conftest import SECRET, RunningGateway, token
from tests.deploy.test_helm_chart import (
    CHART,
    GW,
    NAMESPACE,
    PROD,
    RELEASE,
    _pod_env,
    _validator,
    container,
    env_of,
    env_value,
    find,
    load_yaml,
    needs_helm,
    one,
    render,
    render_fails,
    yaml,
)

ROOT = CHART.parents[2]
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
DASHBOARD = CHART / "dashboards" / "frys-ws.json"
ROUTER = f"{RELEASE}-router"
NATS = f"{RELEASE}-nats"


# --- every documented values example passes the gateway's validation ------------------------


def documented_values() -> dict[str, str]:
    """The chart's values examples: the files in ci/ and every YAML block of
    docs/deploy.md whose top-level keys are all chart values (other blocks configure other
    software: a Collector, the NATS project's chart, a metrics adapter)."""
    chart_keys = set(load_yaml(CHART / "values.yaml"))
    examples = {f"ci/{p.name}": p.read_text() for p in sorted((CHART / "ci").glob("*.yaml"))}
    blocks = re.findall(r"```yaml\n(.*?)```", DEPLOY_DOC.read_text(), re.S)
    for number, block in enumerate(blocks, 1):
        data = yaml.safe_load(block)
        if isinstance(data, dict) and data and set(data) <= chart_keys:
            examples[f"docs/deploy.md block {number}"] = block
    return examples


def test_the_documentation_has_values_examples() -> None:
    examples = documented_values()
    assert len(examples) >= 5, sorted(examples)
    validator = _validator()
    defaults = load_yaml(CHART / "values.yaml")
    for name, text in examples.items():
        from tests.deploy.test_helm_chart import deep_merge

        merged = deep_merge(defaults, yaml.safe_load(text))
        assert [e.message for e in validator.iter_errors(merged)] == [], name


@needs_helm
@pytest.mark.parametrize("example", sorted(documented_values()))
def test_documented_values_pass_the_gateways_validation(example: str, tmp_path: Path) -> None:
    """Render the example, build pod 0's environment as the kubelet would, and run the
    gateway's (and router's) own configuration loading and validation on it."""
    docs = render(overrides=documented_values()[example])
    env = _pod_env(docs, tmp_path / "gateway")
    config = load_config(env=env)  # raises ConfigError with every problem
    assert config.gateway_id == f"{GW}-0"
    gw = container(one(docs, "StatefulSet", GW), "gateway")
    ports = {p["name"]: p["containerPort"] for p in gw["ports"]}
    assert config.port == ports["http"]
    assert config.internal_port == ports.get("internal", 0)
    if find(docs, "Deployment", ROUTER):
        router_env = _pod_env(docs, tmp_path / "router", ROUTER, "router")
        assert load_router_config(env=router_env).nats_url == config.nats_url


# --- one rule for the HS256 secret -----------------------------------------------------------


@needs_helm
def test_jwt_secret_rule_is_the_gateways() -> None:
    """The shortest secret the chart accepts is the shortest the gateway accepts."""
    validator = _validator()
    defaults = load_yaml(CHART / "values.yaml")

    def chart_accepts(secret: str) -> bool:
        values = {**defaults, "auth": {**defaults["auth"], "jwtSecret": secret}}
        return not list(validator.iter_errors(values))

    def gateway_accepts(secret: str) -> bool:
        try:
            GatewayConfig(jwt_secret=secret).validate()
        except ValueError:
            return False
        return True

    shortest_chart = next(n for n in range(1, 100) if chart_accepts("k" * n))
    shortest_gateway = next(n for n in range(1, 100) if gateway_accepts("k" * n))
    assert shortest_chart == shortest_gateway == 32
    assert "/auth/jwtSecret" in render_fails("auth:\n  jwtSecret: sixteen-chars-ok\n")
    assert "≥ 32 characters" in (CHART / "values.yaml").read_text()
    assert "16 characters" not in DEPLOY_DOC.read_text()


# --- stream limits, NATS storage and the volume ------------------------------------------------


@needs_helm
@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            "gateway:\n  eventsMaxBytes: 8000000000\n",
            "gateway.eventsMaxBytes (8000000000 bytes) must be at most 90% of "
            "nats.jetstream.maxFileStore (8Gi = 8589934592 bytes)",
        ),
        (
            "nats:\n  jetstream:\n    maxFileStore: 10Gi\n",
            "nats.jetstream.maxFileStore (10Gi) must be at most 90% of "
            "nats.jetstream.storage.size (10Gi)",
        ),
        (
            "nats:\n  jetstream:\n    maxFileStore: 9500M\n    storage:\n      size: 10G\n",
            "must be at most 90% of nats.jetstream.storage.size (10G)",
        ),
        ("gateway:\n  internalPort: 8080\n", "gateway.internalPort (8080) must differ"),
        (
            "gateway:\n  autoscaling:\n    targetCPUUtilizationPercentage: null\n",
            "needs targetCPUUtilizationPercentage, targetConnectionsPerPod or both",
        ),
    ],
    ids=["events-vs-store", "store-vs-volume", "decimal-units", "internal-port", "no-metric"],
)
def test_helm_refuses_limits_nats_or_the_volume_cannot_hold(overrides: str, message: str) -> None:
    assert message in render_fails(overrides)


@needs_helm
def test_limits_at_the_boundary_render() -> None:
    """90% exactly is accepted, in NATS's own units (MB = 2^20 bytes there)."""
    overrides = (
        "gateway:\n  eventsMaxBytes: 943718400\n"  # 0.9 × 1000 MiB
        "nats:\n  jetstream:\n    maxFileStore: 1000MB\n    storage:\n      size: 1112Mi\n"
    )
    render(overrides=overrides)
    assert "eventsMaxBytes" in render_fails(overrides.replace("943718400", "943718401"))


def _nats_max_storage(tmp_path: Path, size: str) -> int:
    """What a real nats-server makes of ``max_file_store: SIZE`` (its /varz)."""

    @dataclasses.dataclass
    class Sized(NatsProcess):
        def _config_text(self) -> str:
            return (
                super()
                ._config_text()
                .replace("jetstream {", f"jetstream {{\n  max_file_store: {size}")
            )

    server = Sized(name="frys-sized", store_dir=tmp_path / size).start()
    try:
        with urllib.request.urlopen(f"{server.monitor_url}/varz", timeout=5) as r:
            varz = json.loads(r.read())
    finally:
        server.close()
    return int(varz["jetstream"]["config"]["max_storage"])


@needs_helm
@pytest.mark.parametrize(("size", "expected"), [("1000MB", 1000 << 20), ("1000M", 1000 * 10**6)])
def test_the_charts_units_are_nats_units(size: str, expected: int, tmp_path: Path) -> None:
    """The check reads maxFileStore as nats-server does: the same boundary, to the byte."""
    assert _nats_max_storage(tmp_path, size) == expected
    limit = expected * 9 // 10
    base = f"nats:\n  jetstream:\n    maxFileStore: {size}\n    storage:\n      size: 2Gi\n"
    render(overrides=base + f"gateway:\n  eventsMaxBytes: {limit}\n")
    assert "eventsMaxBytes" in render_fails(base + f"gateway:\n  eventsMaxBytes: {limit + 2}\n")


@dataclasses.dataclass
class TenMegabytes(NatsProcess):
    def _config_text(self) -> str:
        return super()._config_text().replace("jetstream {", "jetstream {\n  max_file_store: 10MB")


async def test_the_limit_is_the_one_jetstream_enforces(prefix: str) -> None:
    """A stream within the chart's 90% is created by a real JetStream; one above its store
    is refused with err_code 10047, which the gateway reports as permanent."""
    server = TenMegabytes(name="frys-10mb").start()
    try:
        for max_bytes, fits in ((9 << 20, True), (11 << 20, False)):
            config = GatewayConfig(
                nats_url=server.url,
                jwt_secret=SECRET,
                subject_prefix=f"{prefix}{max_bytes}",
                events_max_bytes=max_bytes,
            )
            bus = Bus(config)
            try:
                if fits:
                    await asyncio.wait_for(bus.connect(), 20)
                    assert bus.ready
                else:
                    with pytest.raises(JetStreamRefused, match="err_code 10047"):
                        await asyncio.wait_for(bus.connect(), 20)
            finally:
                await bus.close()
    finally:
        server.close()


# --- what the chart deploys for operators ------------------------------------------------------


@needs_helm
def test_image_digest_pins_every_frys_container() -> None:
    digest = "sha256:" + "ab" * 32
    docs = render(overrides=f"image:\n  repository: reg.example/frys-ws\n  digest: {digest}\n")
    gw = container(one(docs, "StatefulSet", GW), "gateway")
    router = container(one(docs, "Deployment", ROUTER), "router")
    test_pod = one(docs, "Pod", f"{RELEASE}-test-readyz")["spec"]["containers"][0]
    for c in (gw, router, test_pod):
        assert c["image"] == f"reg.example/frys-ws@{digest}"
    assert gw["image"] != container(one(render(), "StatefulSet", GW), "gateway")["image"]


@needs_helm
def test_tmp_is_in_memory() -> None:
    docs = render()
    for workload in (one(docs, "StatefulSet", GW), one(docs, "Deployment", ROUTER)):
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        assert volumes["tmp"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Mi"}


@needs_helm
def test_internal_port_never_reaches_a_public_service_or_the_ingress() -> None:
    overrides = (
        "gateway:\n  service:\n    type: LoadBalancer\n"
        "ingress:\n  enabled: true\n  host: ws.example.com\n"
    )
    docs = render(overrides=overrides)
    gw = container(one(docs, "StatefulSet", GW), "gateway")
    assert env_value(gw, "FRYS_INTERNAL_PORT") == "9090"
    entry = one(docs, "Service", GW)
    assert entry["spec"]["type"] == "LoadBalancer"
    assert [p["targetPort"] for p in entry["spec"]["ports"]] == ["http"]
    for service in find(docs, "Service"):
        targets = {p["targetPort"] for p in service["spec"]["ports"]}
        if "internal" in targets:
            assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
            assert service["spec"].get("clusterIP") in (None, "None")
    internal = one(docs, "Service", f"{GW}-internal")
    assert [p["port"] for p in internal["spec"]["ports"]] == [9090]
    (rule,) = one(docs, "Ingress", GW)["spec"]["rules"]
    backends = {p["backend"]["service"]["name"] for p in rule["http"]["paths"]}
    assert f"{GW}-internal" not in backends
    assert "/api/publish" not in {p["path"] for p in rule["http"]["paths"]}
    # Asked for, HTTP publish through the Ingress goes to the internal Service.
    exposed = render(overrides=overrides + "  exposePublishApi: true\n")
    (rule,) = one(exposed, "Ingress", GW)["spec"]["rules"]
    publish = next(p for p in rule["http"]["paths"] if p["path"] == "/api/publish")
    assert publish["backend"]["service"] == {"name": f"{GW}-internal", "port": {"number": 9090}}
    # internalPort 0: one port, as before.
    single = container(
        one(render(overrides="gateway:\n  internalPort: 0\n"), "StatefulSet", GW), "gateway"
    )
    assert [p["name"] for p in single["ports"]] == ["http"]
    assert "FRYS_INTERNAL_PORT" not in env_of(single)


@needs_helm
def test_network_policies_confine_nats_and_the_internal_port() -> None:
    docs = render(PROD)
    gateway_labels = one(docs, "StatefulSet", GW)["spec"]["selector"]["matchLabels"]
    router_labels = one(docs, "Deployment", ROUTER)["spec"]["selector"]["matchLabels"]
    nats_labels = one(docs, "StatefulSet", NATS)["spec"]["selector"]["matchLabels"]

    nats_policy = one(docs, "NetworkPolicy", NATS)["spec"]
    assert nats_policy["podSelector"]["matchLabels"] == nats_labels
    by_port = {rule["ports"][0]["port"]: rule.get("from", []) for rule in nats_policy["ingress"]}
    client_peers = by_port["client"]
    assert {"podSelector": {"matchLabels": gateway_labels}} in client_peers
    assert {"podSelector": {"matchLabels": router_labels}} in client_peers
    engine = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "workflow-engine"}}
    }
    assert engine in client_peers and len(client_peers) == 3  # nobody else
    assert by_port["cluster"] == [{"podSelector": {"matchLabels": nats_labels}}]
    assert all(peers for peers in by_port.values()), "a rule without peers admits everyone"

    gateway_policy = one(docs, "NetworkPolicy", GW)["spec"]
    public, internal = gateway_policy["ingress"]
    assert "from" not in public and public["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert internal["ports"] == [{"port": "internal", "protocol": "TCP"}]
    assert {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": RELEASE}}} in internal[
        "from"
    ]
    assert not find(render(), "NetworkPolicy"), "off by default"


@needs_helm
def test_nats_exporter_is_scraped() -> None:
    docs = render(PROD)
    sts = one(docs, "StatefulSet", NATS)
    exporter = container(sts, "exporter")
    assert exporter["image"].startswith("natsio/prometheus-nats-exporter:")
    assert "-varz" in exporter["args"] and "-jsz=all" in exporter["args"]
    assert "-prefix=nats" in exporter["args"]  # hence nats_varz_* in the rules
    assert exporter["args"][-1] == "http://localhost:8222/"
    assert exporter["securityContext"]["readOnlyRootFilesystem"] is True
    monitor = one(docs, "ServiceMonitor", NATS)
    selector = monitor["spec"]["selector"]["matchLabels"]
    selected = [
        s for s in find(docs, "Service") if selector.items() <= s["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in selected] == [f"{NATS}-headless"]
    (endpoint,) = monitor["spec"]["endpoints"]
    port = next(p for p in selected[0]["spec"]["ports"] if p["name"] == endpoint["port"])
    assert port["targetPort"] == "metrics"
    assert {"name": "metrics", "containerPort": 7777} in exporter["ports"]
    off = render(overrides="nats:\n  exporter:\n    enabled: false\n")
    assert [
        c["name"] for c in one(off, "StatefulSet", NATS)["spec"]["template"]["spec"]["containers"]
    ] == ["nats"]


@needs_helm
def test_autoscaling_on_connections_per_pod() -> None:
    both = render(overrides="gateway:\n  autoscaling:\n    targetConnectionsPerPod: 20000\n")
    metrics = one(both, "HorizontalPodAutoscaler", GW)["spec"]["metrics"]
    assert [m["type"] for m in metrics] == ["Resource", "Pods"]
    assert metrics[1]["pods"] == {
        "metric": {"name": "frys_connections"},
        "target": {"type": "AverageValue", "averageValue": "20000"},
    }
    only = render(
        overrides="gateway:\n  autoscaling:\n    targetCPUUtilizationPercentage: null\n"
        "    targetConnectionsPerPod: 5000\n"
    )
    assert [m["type"] for m in one(only, "HorizontalPodAutoscaler", GW)["spec"]["metrics"]] == [
        "Pods"
    ]


# --- dashboard and alerts name metrics that exist ----------------------------------------------

PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "rate", "increase", "irate", "histogram_quantile",
    "clamp_min", "clamp_max", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "label_values", "abs", "le",
}  # fmt: skip

KUBE_STATE_METRICS = {
    "kube_horizontalpodautoscaler_status_current_replicas",
    "kube_horizontalpodautoscaler_spec_max_replicas",
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (labels, ranges, strings and functions
    taken out)."""
    assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
    text = re.sub(r'"(?:\\.|[^"\\])*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[0-9]+[smhd]\]", "", text)
    assert "[" not in text, f"a range that is not a duration: {expr}"
    text = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", text)
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b", text))
    return {w for w in words if w not in PROMQL_WORDS}


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def rule_exprs() -> list[str]:
    overrides = "metrics:\n  prometheusRule:\n    enabled: true\n"
    (rule,) = find(render(overrides=overrides), "PrometheusRule")
    return [r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]]


def nats_varz_names(tmp_path: Path) -> set[str]:
    """``nats_varz_*`` names the exporter makes from a real nats-server's /varz: every
    numeric field, nested objects joined with ``_``."""
    server = NatsProcess(name="frys-varz", store_dir=tmp_path / "varz").start()
    try:
        with urllib.request.urlopen(f"{server.monitor_url}/varz", timeout=5) as r:
            varz = json.loads(r.read())
    finally:
        server.close()
    names: set[str] = set()

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}_{key}", inner)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            names.add(prefix)

    walk("nats_varz", varz)
    return names


async def served_metric_names(gateway: RunningGateway, clients: Any, http: Any) -> set[str]:
    """Sample names on a running gateway's /metrics after traffic of every kind the
    dashboard shows: deliveries, publishes, an error, a close."""
    c: Client = await clients(gateway.url, token=token("dash"))
    sub = await c.subscribe("wf:d:collab")
    for i in range(64):  # one in 64 carries its publish time: the latency histogram
        await c.publish("wf:d:collab", i)
    for _ in range(64):
        await sub.next(5)
    with pytest.raises(Exception):  # noqa: B017, PT011 - no engine: an error frame
        await c.request("wf:d:control", {"action": "go"}, timeout=2)
    await c.close()
    async with http.ws_connect(gateway.url) as ws:  # a first frame that is no connect:
        await ws.send_bytes(b"\xc1")  # the gateway closes it (4400), a counted close
        await ws.receive(timeout=5)
    names: set[str] = set()
    for _ in range(50):
        async with http.get(f"{gateway.http}/metrics") as r:
            text = await r.text()
        names = {
            line.split("{")[0].split(" ")[0]
            for line in text.splitlines()
            if line and not line.startswith("#")
        }
        if {"frys_closes_total", "frys_errors_total"} <= names:
            break
        await asyncio.sleep(0.1)
    return names


def router_metric_names() -> set[str]:
    from prometheus_client import generate_latest

    from frys.router.config import RouterConfig
    from frys.router.server import observe
    from frys.router.service import RouterService
    from frys.shared.telemetry import telemetry_from_env

    tel = telemetry_from_env("frys-router", env={})
    observe(RouterService(RouterConfig()), tel)
    text = generate_latest(tel.registry).decode()
    tel.shutdown()
    return {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] not in ("#", "")
    }


@needs_helm
async def test_dashboard_and_alerts_name_metrics_that_exist(
    gateway: RunningGateway, clients: Any, http: Any, tmp_path: Path
) -> None:
    served = await served_metric_names(gateway, clients, http)
    router = router_metric_names()
    nats = nats_varz_names(tmp_path)
    known = served | router | nats | KUBE_STATE_METRICS
    assert {"nats_varz_jetstream_stats_storage", "nats_varz_slow_consumers"} <= nats
    for source, exprs in (("dashboard", dashboard_exprs()), ("rules", rule_exprs())):
        assert exprs
        for expr in exprs:
            names = metric_names(expr)
            assert names, expr
            assert names <= known, f"{source}: {sorted(names - known)} in {expr}"
    used = set().union(*(metric_names(e) for e in dashboard_exprs()))
    # The dashboard covers what docs/deploy.md's panel table lists.
    documented = set(re.findall(r"`(frys_[a-z_]+)`", DEPLOY_DOC.read_text()))
    documented = {n for n in documented if n in served}
    covered = {n.removesuffix("_bucket") for n in used} | used
    assert {n.removesuffix("_total") for n in documented} <= {
        n.removesuffix("_total") for n in covered
    } | {"frys_delivery_latency_milliseconds"}


def test_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "gateway"} <= variables
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            for variable in re.findall(r"\$(\w+)", target["expr"]):
                assert variable in variables, target["expr"]


@needs_helm
def test_dashboard_and_rules_render() -> None:
    overrides = (
        "metrics:\n  prometheusRule:\n    enabled: true\n    labels: {release: kps}\n"
        "  grafanaDashboard:\n    enabled: true\n"
    )
    docs = render(overrides=overrides)
    (config_map,) = [
        c for c in find(docs, "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")
    ]
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["frys-ws.json"]) == json.loads(DASHBOARD.read_text())
    (rule,) = find(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kps"
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) >= {
        "FrysGatewayNotReady",
        "FrysNatsReconnects",
        "FrysSlowDisconnectsRising",
        "FrysGatewaysAtMaxReplicas",
        "FrysNatsJetStreamStorageHigh",
    }
    for alert in alerts.values():
        assert f'namespace="{NAMESPACE}"' in alert["expr"]
        assert alert["labels"]["severity"] in ("warning", "critical")
        assert alert["annotations"]["summary"]
    assert alerts["FrysGatewayNotReady"]["for"] == "2m"
    assert f'horizontalpodautoscaler="{GW}"' in alerts["FrysGatewaysAtMaxReplicas"]["expr"]
    # Every alert the docs name is shipped.
    documented = set(re.findall(r"`(Frys[A-Za-z]+)`", DEPLOY_DOC.read_text()))
    assert documented and documented <= set(alerts)
