"""Gateway configuration: one typed, validated value built from file, environment and flags.

Precedence is flags > environment (``FRYS_*``) > file (``--config``, JSON or TOML) >
defaults. Every setting with a unit carries it in its name. Validation happens once at start
and reports every problem together, so an operator fixes a bad deployment in one pass.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frys.runtime.nats_auth import NatsAuth
from frys.shared.protocol.subjects import Subjects


class ConfigError(ValueError):
    """One or more settings are invalid; the message lists them all."""


def _default_gateway_id() -> str:
    host = socket.gethostname().split(".")[0] or "gw"
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in host)[:40]
    return f"{safe}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class GatewayConfig:
    nats_url: str = "nats://127.0.0.1:4222"
    host: str = "0.0.0.0"
    port: int = 8080
    internal_port: int = 0
    """A second port for ``/metrics`` and ``POST /api/publish`` (and the probes), so that
    whatever exposes ``port`` to the public never exposes them; 0: all on ``port``."""
    gateway_id: str = field(default_factory=_default_gateway_id)
    public_url: str = ""
    """URL clients use to reach this gateway directly (``migrate`` targets); derived from
    host and port when empty."""
    subject_prefix: str = "frys"
    workers: int = 1

    # TLS on the gateway's own port (wss://, https://): off while tls_cert_file is empty
    tls_cert_file: str = ""
    """PEM certificate chain; re-read when it changes on disk (new connections use it)."""
    tls_key_file: str = ""
    tls_client_ca_file: str = ""
    """CA of backend client certificates: a certificate it verifies may call
    ``POST /api/publish`` instead of the API key. Browsers are not asked to present one."""
    tls_reload_s: float = 5.0
    """How often the certificate and key files are checked for a change."""

    # NATS credentials and TLS (see frys.runtime.nats_auth)
    nats_creds_file: str = ""
    nats_nkey_seed_file: str = ""
    nats_user: str = ""
    nats_password: str = ""
    nats_token: str = ""
    nats_tls_ca_file: str = ""
    nats_tls_cert_file: str = ""
    nats_tls_key_file: str = ""

    # authentication
    jwt_secret: str = ""
    jwt_public_key_file: str = ""
    jwt_jwks_file: str = ""
    jwt_jwks_url: str = ""
    """An identity provider's JWKS (https): fetched at start, then every
    ``jwt_jwks_refresh_s`` and when a token names an unknown key id."""
    jwt_jwks_ca_file: str = ""
    """CA bundle for ``jwt_jwks_url`` instead of the system's."""
    jwt_jwks_refresh_s: float = 300.0
    jwt_jwks_min_refresh_s: float = 30.0
    """Fewest seconds between two fetches, however many unknown key ids arrive."""
    jwt_key_id: str = ""
    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwt_leeway_s: float = 0.0
    api_key: str = ""
    allowed_origins: tuple[str, ...] = ()
    """Browser origins allowed to connect; ``*`` allows all. Requests without an Origin
    header (non-browser clients) are always allowed; same-origin requests are allowed."""
    resume_secret: str = ""
    """Key that signs resume tokens; gateways of one installation share it."""

    # session limits
    connect_timeout_s: float = 5.0
    handshake_timeout_s: float = 10.0
    """From TCP accept to a complete HTTP request (TLS handshake included)."""
    max_connections: int = 250_000
    """Connections held at most; more get 503 before any parsing (0: no limit)."""
    max_connections_per_ip: int = 0
    """Connections from one address (0: no limit, the setting behind a load balancer)."""
    max_frame_bytes: int = 2 * 1024 * 1024
    queue_bytes: int = 1024 * 1024
    max_subscriptions: int = 512
    publish_rate_per_s: float = 5000.0
    publish_burst: int = 10000
    max_invalid_frames: int = 20
    ping_interval_s: float = 25.0
    request_timeout_ms: int = 5000
    relay_max_streams_per_channel: int = 64
    relay_memory_bytes: int = 64 * 1024 * 1024
    relay_idle_s: float = 300.0
    max_tensor_streams_per_session: int = 16
    publish_ack_timeout_s: float = 5.0
    """Longest wait for the stream to confirm a stored publish; then 504 (retry, same mid)."""
    max_request_timeout_ms: int = 60000

    # durability
    events_max_age_s: float = 3600.0
    events_max_bytes: int = 1024 * 1024 * 1024
    events_duplicate_window_s: float = 120.0
    stream_replicas: int = 0
    """Replicas of the streams and buckets this gateway creates: 1, 3 or 5; 0 chooses from
    the NATS the gateway reaches (3 when its JetStream can place three replicas, else 1).
    Streams and buckets that exist keep theirs."""
    control_outcome_ttl_s: float = 3600.0
    presence_ttl_s: float = 15.0
    presence_resume_grace_s: float = 10.0
    """How long a member that disconnected without leaving stays, so that a session that
    resumes (reconnect, drain, migration) shows other members no leave and join."""

    # placement (the router)
    interaction_report_s: float = 2.0
    migrate_rate_per_s: float = 200.0

    # protocol optimiser (docs/optimiser.md)
    optimiser: bool = True
    """Learn dictionaries and compress small messages for readers that declare zstd-dict."""
    optimiser_w_cpu: float = 1.0
    """Weight of a CPU second against a second of link time in the cost of a choice."""
    optimiser_min_samples: int = 500
    """Messages of a schema sampled before its dictionary is learnt."""
    optimiser_loopback_local: bool = True
    """Readers on a loopback address count as on this host (link class local: small
    messages then go plain); off to treat them as remote (benchmarks on one machine)."""
    dict_retention_s: float = 7 * 86400.0
    """Dictionaries stay fetchable this long after they were last in use."""

    # lifecycle
    drain_s: float = 10.0
    reconnect_spread_ms: int = 5000

    @property
    def subjects(self) -> Subjects:
        return Subjects(self.subject_prefix)

    @property
    def advertised_url(self) -> str:
        if self.public_url:
            return self.public_url
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        scheme = "wss" if self.tls_cert_file else "ws"
        return f"{scheme}://{host}:{self.port}/ws"

    def validate(self) -> GatewayConfig:
        problems: list[str] = []
        if not self.nats_url.startswith(("nats://", "tls://", "ws://", "wss://")):
            problems.append("nats_url must start with nats://, tls://, ws:// or wss://")
        if not 0 <= self.port <= 65535:
            problems.append("port must be 0-65535")
        if not 0 <= self.internal_port <= 65535:
            problems.append("internal_port must be 0-65535 (0: no internal port)")
        elif self.internal_port and self.internal_port == self.port:
            problems.append("internal_port must differ from port")
        if not self.gateway_id or not all(c.isalnum() or c in "-_" for c in self.gateway_id):
            problems.append("gateway_id must be non-empty and use only [A-Za-z0-9_-]")
        try:
            Subjects(self.subject_prefix)
        except ValueError as exc:
            problems.append(str(exc))
        if not (
            self.jwt_secret or self.jwt_public_key_file or self.jwt_jwks_file or self.jwt_jwks_url
        ):
            problems.append(
                "one of jwt_secret, jwt_public_key_file, jwt_jwks_file or jwt_jwks_url is required"
            )
        if self.jwt_jwks_url and not self.jwt_jwks_url.startswith("https://"):
            problems.append("jwt_jwks_url must be an https:// URL")
        if self.jwt_jwks_min_refresh_s < 0 or self.jwt_jwks_refresh_s <= 0:
            problems.append("jwt_jwks_refresh_s must be > 0 and jwt_jwks_min_refresh_s ≥ 0")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            problems.append("tls_cert_file and tls_key_file go together")
        if self.tls_client_ca_file and not self.tls_cert_file:
            problems.append("tls_client_ca_file needs tls_cert_file (client certificates need TLS)")
        if self.tls_reload_s <= 0:
            problems.append("tls_reload_s must be > 0")
        problems += NatsAuth.from_settings(self).problems()
        for path_field in (
            "jwt_public_key_file",
            "jwt_jwks_file",
            "jwt_jwks_ca_file",
            "tls_cert_file",
            "tls_key_file",
            "tls_client_ca_file",
        ):
            value = getattr(self, path_field)
            if value and not Path(value).is_file():
                problems.append(f"{path_field}: no such file {value!r}")
        if self.jwt_secret and len(self.jwt_secret.encode()) < 32:
            problems.append("jwt_secret must be at least 32 bytes (RFC 7518 §3.2)")
        positive = (
            "connect_timeout_s",
            "handshake_timeout_s",
            "max_frame_bytes",
            "queue_bytes",
            "max_subscriptions",
            "publish_rate_per_s",
            "publish_burst",
            "max_invalid_frames",
            "request_timeout_ms",
            "publish_ack_timeout_s",
            "relay_max_streams_per_channel",
            "relay_memory_bytes",
            "relay_idle_s",
            "max_tensor_streams_per_session",
            "max_request_timeout_ms",
            "events_max_age_s",
            "events_max_bytes",
            "events_duplicate_window_s",
            "control_outcome_ttl_s",
            "presence_ttl_s",
            "presence_resume_grace_s",
            "drain_s",
            "workers",
            "interaction_report_s",
            "migrate_rate_per_s",
            "optimiser_min_samples",
            "dict_retention_s",
        )
        problems += [f"{name} must be > 0" for name in positive if getattr(self, name) <= 0]
        if self.events_duplicate_window_s > self.events_max_age_s:
            problems.append("events_duplicate_window_s must not exceed events_max_age_s")
        if self.max_connections < 0 or self.max_connections_per_ip < 0:
            problems.append("max_connections and max_connections_per_ip must be ≥ 0")
        if self.ping_interval_s < 0 or self.jwt_leeway_s < 0 or self.reconnect_spread_ms < 0:
            problems.append("ping_interval_s, jwt_leeway_s and reconnect_spread_ms must be ≥ 0")
        if self.optimiser_w_cpu < 0:
            problems.append("optimiser_w_cpu must be ≥ 0")
        if self.stream_replicas not in (0, 1, 3, 5):
            problems.append("stream_replicas must be 1, 3 or 5 (or 0: chosen from the cluster)")
        if problems:
            raise ConfigError("invalid gateway configuration:\n  - " + "\n  - ".join(problems))
        return self


ENV_PREFIX = "FRYS_"


def _coerce(name: str, kind: Any, raw: Any) -> Any:
    if kind in ("int", int):
        return int(raw)
    if kind in ("float", float):
        return float(raw)
    if kind in ("tuple[str, ...]",):
        if isinstance(raw, str):
            return tuple(s.strip() for s in raw.split(",") if s.strip())
        return tuple(str(s) for s in raw)
    return str(raw)


def load_config(
    file: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> GatewayConfig:
    """Merge defaults, a config file, ``FRYS_*`` environment variables and flag overrides."""
    env = os.environ if env is None else env
    fields = {f.name: f for f in dataclasses.fields(GatewayConfig)}
    values: dict[str, Any] = {}
    problems: list[str] = []
    file = file or env.get("FRYS_CONFIG") or None
    if file:
        path = Path(file)
        try:
            text = path.read_text()
            data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read config file {file!r}: {exc}") from None
        for key, raw in data.items():
            if key not in fields:
                problems.append(f"unknown setting {key!r} in {file}")
            else:
                values[key] = raw
    for name in fields:
        raw_env = env.get(ENV_PREFIX + name.upper())
        if raw_env is not None:
            values[name] = raw_env
    for name, raw in (overrides or {}).items():
        if raw is not None:
            values[name] = raw
    typed: dict[str, Any] = {}
    for name, raw in values.items():
        try:
            typed[name] = _coerce(name, fields[name].type, raw)
        except (TypeError, ValueError):
            problems.append(f"{name}: cannot parse {raw!r} as {fields[name].type}")
    if problems:
        raise ConfigError("invalid gateway configuration:\n  - " + "\n  - ".join(problems))
    return GatewayConfig(**typed).validate()
