"""Router configuration from ``FRYS_*`` environment variables and flags, validated at start."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from frys.runtime.nats_auth import NatsAuth
from frys.shared.protocol.subjects import Subjects


class RouterConfigError(ValueError):
    pass


@dataclass(frozen=True)
class RouterConfig:
    nats_url: str = "nats://127.0.0.1:4222"
    subject_prefix: str = "frys"
    host: str = "0.0.0.0"
    port: int = 8081
    plan_interval_s: float = 5.0
    gateway_ttl_s: float = 6.0
    """A gateway silent this long is down: its clients are re-placed."""
    forget_after_s: float = 120.0
    k8s: str = "auto"
    """``on``: watch gateway pods; ``off``: heartbeats only; ``auto``: on inside a cluster."""
    k8s_namespace: str = ""
    k8s_selector: str = "app.kubernetes.io/component=gateway"
    half_life_s: float = 600.0
    min_dwell_s: float = 300.0
    agent_ttl_s: float = 30.0
    """An agent no gateway report has named for this long is gone (not a connection)."""
    min_plan_interval_s: float = 1.0
    """The forecast may bring the next plan forward, never closer than this."""
    # NATS credentials and TLS: the gateway's settings of the same names (frys.runtime.nats_auth)
    nats_creds_file: str = ""
    nats_nkey_seed_file: str = ""
    nats_user: str = ""
    nats_password: str = ""
    nats_token: str = ""
    nats_tls_ca_file: str = ""
    nats_tls_cert_file: str = ""
    nats_tls_key_file: str = ""

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.subject_prefix)

    def validate(self) -> RouterConfig:
        problems: list[str] = []
        if not self.nats_url.startswith(("nats://", "tls://", "ws://", "wss://")):
            problems.append("nats_url must start with nats://, tls://, ws:// or wss://")
        try:
            Subjects(self.subject_prefix)
        except ValueError as exc:
            problems.append(str(exc))
        if self.k8s not in ("auto", "on", "off"):
            problems.append("k8s must be auto, on or off")
        for name in (
            "plan_interval_s",
            "gateway_ttl_s",
            "forget_after_s",
            "half_life_s",
            "agent_ttl_s",
            "min_plan_interval_s",
        ):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0")
        if self.min_dwell_s < 0:
            problems.append("min_dwell_s must be >= 0")
        if not 0 <= self.port <= 65535:
            problems.append("port must be 0-65535")
        problems += NatsAuth.from_settings(self).problems()
        if problems:
            raise RouterConfigError("invalid router configuration:\n  - " + "\n  - ".join(problems))
        return self


_ENV = {
    "nats_url": "FRYS_NATS_URL",
    "subject_prefix": "FRYS_SUBJECT_PREFIX",
    "host": "FRYS_HOST",
    "port": "FRYS_PORT",
    "plan_interval_s": "FRYS_ROUTER_PLAN_INTERVAL_S",
    "gateway_ttl_s": "FRYS_ROUTER_GATEWAY_TTL_S",
    "forget_after_s": "FRYS_ROUTER_FORGET_AFTER_S",
    "k8s": "FRYS_ROUTER_K8S",
    "k8s_namespace": "FRYS_ROUTER_K8S_NAMESPACE",
    "k8s_selector": "FRYS_ROUTER_K8S_SELECTOR",
    "half_life_s": "FRYS_ROUTER_HALF_LIFE_S",
    "min_dwell_s": "FRYS_ROUTER_MIN_DWELL_S",
    "agent_ttl_s": "FRYS_ROUTER_AGENT_TTL_S",
    "min_plan_interval_s": "FRYS_ROUTER_MIN_PLAN_INTERVAL_S",
    **{
        name: f"FRYS_{name.upper()}"
        for name in (
            "nats_creds_file",
            "nats_nkey_seed_file",
            "nats_user",
            "nats_password",
            "nats_token",
            "nats_tls_ca_file",
            "nats_tls_cert_file",
            "nats_tls_key_file",
        )
    },
}


def environment_variables() -> dict[str, str]:
    """Setting name → the ``FRYS_*`` variable it is read from (for help texts and for
    telling an operator about a misspelt variable)."""
    return dict(_ENV)


SECRET_SETTINGS = frozenset({"nats_password", "nats_token"})
"""Settings never written to a log."""


def load_router_config(
    env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
) -> RouterConfig:
    env = os.environ if env is None else env
    fields = {f.name: f for f in dataclasses.fields(RouterConfig)}
    values: dict[str, Any] = {}
    problems = []
    for name, var in _ENV.items():
        if var in env:
            values[name] = env[var]
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    typed: dict[str, Any] = {}
    for name, raw in values.items():
        kind = fields[name].type
        try:
            typed[name] = int(raw) if kind == "int" else float(raw) if kind == "float" else str(raw)
        except (TypeError, ValueError):
            problems.append(f"{name}: cannot parse {raw!r} as {kind}")
    if problems:
        raise RouterConfigError("invalid router configuration:\n  - " + "\n  - ".join(problems))
    return RouterConfig(**typed).validate()
