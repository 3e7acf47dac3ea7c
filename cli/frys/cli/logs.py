"""Structured logging: one JSON object per line, with session and trace ids when known."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace


class JsonFormatter(logging.Formatter):
    EXTRA = ("sid", "trace_id", "span_id", "gateway", "channel", "code")

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in self.EXTRA:
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        if "trace_id" not in out:
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                out["trace_id"] = format(context.trace_id, "032x")
                out["span_id"] = format(context.span_id, "016x")
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


LEVELS = ("debug", "info", "warning", "error", "critical")
"""Log levels the command line accepts (``--log-level``, ``FRYS_LOG_LEVEL``)."""


def setup_logging(level: str = "info", json_logs: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_logs:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def shown(value: Any) -> str:
    if isinstance(value, tuple):
        value = ",".join(value)
    return "none" if value in ("", ()) else str(value)


SECRETS = frozenset({"jwt_secret", "api_key", "resume_secret", "nats_password", "nats_token"})
"""Settings whose values never reach a log line."""


def describe_settings(config: Any, always: Sequence[str]) -> str:
    """``name=value`` for the settings in ``always`` and every one that differs from its
    default, secrets shown only as set: what an operator checks first when a process
    behaves unlike its neighbours."""
    parts = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        default = field.default
        if field.name not in always and value == default:
            continue
        if field.name in SECRETS:
            value = "(set)" if value else "(empty)"
        parts.append(f"{field.name}={shown(value)}")
    return ", ".join(parts)
