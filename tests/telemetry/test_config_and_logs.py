"""Configuration from flags, environment and a file, validated at start; JSON logs."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from frys.cli.logs import JsonFormatter
from frys.gateway.config import ConfigError, load_config
from frys.shared.telemetry import TelemetryConfigError, telemetry_from_env

SECRET = "x" * 40


def test_precedence_flags_over_env_over_file(tmp_path: Path) -> None:
    file = tmp_path / "gw.toml"
    file.write_text(f'port = 9001\nqueue_bytes = 4096\njwt_secret = "{SECRET}"\n')
    env = {"FRYS_PORT": "9002", "FRYS_ALLOWED_ORIGINS": "https://a.example, https://b.example"}
    cfg = load_config(str(file), env=env, overrides={"queue_bytes": 8192})
    assert (cfg.port, cfg.queue_bytes, cfg.jwt_secret) == (9002, 8192, SECRET)
    assert cfg.allowed_origins == ("https://a.example", "https://b.example")
    json_file = tmp_path / "gw.json"
    json_file.write_text(json.dumps({"jwt_secret": SECRET, "drain_s": 3}))
    assert load_config(env={"FRYS_CONFIG": str(json_file)}).drain_s == 3.0


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    file = tmp_path / "bad.json"
    file.write_text(json.dumps({"jwt_secret": "short", "queue_bytes": 0, "colour": "blue"}))
    with pytest.raises(ConfigError) as err:
        load_config(str(file), env={})
    assert "unknown setting 'colour'" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(
            env={
                "FRYS_JWT_SECRET": "short",
                "FRYS_QUEUE_BYTES": "0",
                "FRYS_STREAM_REPLICAS": "2",
                "FRYS_NATS_URL": "http://x",
            }
        )
    message = str(err.value)
    for problem in (
        "jwt_secret must be at least 32 bytes",
        "queue_bytes must be > 0",
        "stream_replicas must be 1, 3 or 5",
        "nats_url must start",
    ):
        assert problem in message
    with pytest.raises(ConfigError, match="cannot parse 'many' as int"):
        load_config(env={"FRYS_JWT_SECRET": SECRET, "FRYS_PORT": "many"})
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(str(tmp_path / "missing.toml"), env={})


def test_otel_off_unless_configured_and_unsupported_protocol_is_refused() -> None:
    assert not telemetry_from_env("svc", env={}).tracing
    assert telemetry_from_env("svc", env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}).tracing
    assert not telemetry_from_env(
        "svc", env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}
    ).tracing
    with pytest.raises(TelemetryConfigError, match="'http/json' is not supported"):
        telemetry_from_env(
            "svc",
            env={
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
            },
        )
    grpc = telemetry_from_env(
        "svc",
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
    )
    assert grpc.tracing
    grpc.shutdown()


def test_json_logs_carry_session_and_trace_ids() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("frys.test.logs")
    logger.addHandler(handler)
    logger.propagate = False
    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("work") as span:
        logger.warning("slow reader %s", "s1", extra={"sid": "s1"})
    record = json.loads(stream.getvalue())
    assert record["msg"] == "slow reader s1" and record["level"] == "warning"
    assert record["sid"] == "s1"
    assert record["trace_id"] == format(span.get_span_context().trace_id, "032x")
