"""What an operator sees when a gateway or router cannot start, as the command prints it.

Each test runs ``frys-ws`` as a process (as Kubernetes does) against real ``nats-server``
processes, and checks the exit code, the time to exit and every line written to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import nats
import nats.js.errors
import pytest
from aiohttp import web

from frys.gateway.config import GatewayConfig
from frys.gateway.listener import Listener
from frys.gateway.node import Gateway
from frys.gateway.server import build_app
from frys.runtime.nats_process import NatsProcess, free_port
from frys.shared.protocol.subjects import Subjects
from frys.shared.telemetry import telemetry_from_env
from tests.conftest import SECRET, RunningGateway

DRAIN_S = 2.0
CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("FRYS_", "OTEL_"))}


def frys(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "frys.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**CLEAN_ENV, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def run(*args: str, env: dict[str, str] | None = None, timeout_s: float = 30.0) -> tuple[int, str]:
    proc = frys(*args, env=env)
    _, err = proc.communicate(timeout=timeout_s)
    return proc.returncode, err


def gateway_args(nats_url: str, port: int, *extra: str) -> list[str]:
    return [
        "gateway",
        "--nats-url",
        nats_url,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--jwt-secret",
        SECRET,
        "--drain-s",
        str(DRAIN_S),
        *extra,
    ]


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every stderr line, each of which must be one JSON log record."""
    records = []
    for line in stderr.splitlines():
        record = json.loads(line)  # fails on a raw traceback or any stray text
        assert isinstance(record, dict)
        records.append(record)
    return records


def assert_no_noise(stderr: str) -> None:
    for noise in ("Traceback", "Task was destroyed", "was never retrieved", "Unclosed"):
        assert noise not in stderr, stderr


def readyz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
    except OSError:
        return 0, {}


def wait_for_reason(port: int, proc: subprocess.Popen[str], wanted: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        status, body = readyz(port)
        if status == 503 and wanted in str(body.get("reason", "")):
            return body
        time.sleep(0.2)
    raise AssertionError(f"/readyz never said {wanted!r}: {body}")


def stop_and_time(proc: subprocess.Popen[str], sig: signal.Signals) -> tuple[int, float, str]:
    started = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, time.monotonic() - started, err


@contextlib.contextmanager
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


# --- signals in every phase ------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_while_nats_is_unreachable_exits_within_the_drain_time(sig: signal.Signals) -> None:
    dead = free_port()  # nothing listens there
    port = free_port()
    proc = frys(*gateway_args(f"nats://127.0.0.1:{dead}", port))
    try:
        body = wait_for_reason(port, proc, f"nats: not reachable at nats://127.0.0.1:{dead}")
        assert body["ready"] is False and body["nats"] is False
        assert "refused" in body["reason"].lower()
        code, took, err = stop_and_time(proc, sig)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, err
    assert took < DRAIN_S, f"took {took:.1f} s"
    assert_no_noise(err)
    warnings = [r for r in json_lines(err) if r["level"] == "warning"]
    assert warnings, err
    assert f"NATS not reachable at nats://127.0.0.1:{dead}" in warnings[0]["msg"]
    assert "retrying" in warnings[0]["msg"]


def test_signal_while_jetstream_has_no_quorum_exits_within_the_drain_time() -> None:
    """One server of a three-node JetStream cluster: NATS answers, JetStream cannot (no
    meta leader), which is worth waiting for, yet SIGTERM still ends the gateway."""
    routes = (free_port(), free_port(), free_port())
    lonely = NatsProcess(
        name="frys-lonely", cluster_name="frys-q", cluster_port=routes[0], routes=routes
    ).start()
    port = free_port()
    proc = frys(*gateway_args(lonely.url, port))
    try:
        body = wait_for_reason(port, proc, "jetstream: not ready")
        assert body["nats"] is False
        code, took, err = stop_and_time(proc, signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
        lonely.close()
    assert code == 0, err
    assert took < DRAIN_S, f"took {took:.1f} s"
    assert_no_noise(err)
    assert any("JetStream at" in r["msg"] and "not ready" in r["msg"] for r in json_lines(err))


# --- failures that end the process -------------------------------------------------------------


async def test_port_taken_is_one_line_and_no_one_hears_of_the_gateway(
    nats_server: NatsProcess, prefix: str
) -> None:
    nc = await nats.connect(nats_server.url)
    heard: list[str] = []

    async def listen(msg: Any) -> None:
        heard.append(msg.subject)

    await nc.subscribe(f"{prefix}.>", cb=listen)
    await nc.flush()
    try:
        with taken_port() as port:
            code, err = await asyncio.to_thread(
                run,
                *gateway_args(nats_server.url, port, "--subject-prefix", prefix),
                env={"FRYS_LOG_LEVEL": "debug"},  # even the debug lines: none before it
            )
        await asyncio.sleep(0.5)
        await nc.flush()
        assert heard == [], "the gateway announced itself before failing to listen"
        with pytest.raises(nats.js.errors.NotFoundError):
            await nc.jetstream().stream_info(Subjects(prefix).events_stream)
    finally:
        await nc.close()
    assert code == 1
    assert_no_noise(err)
    (record,) = json_lines(err)
    assert record["level"] == "error"
    assert record["msg"] == (
        f"cannot listen on 127.0.0.1:{port}: Address already in use; exiting with code 1"
    )


@dataclass
class SmallStoreNats(NatsProcess):
    """A NATS whose JetStream may store 1 MB: less than one events stream reserves."""

    def _config_text(self) -> str:
        return super()._config_text().replace("jetstream {", "jetstream {\n  max_file_store: 1MB")


@pytest.fixture
def small_nats() -> Iterator[NatsProcess]:
    server = SmallStoreNats(name="frys-small").start()
    yield server
    server.close()


def test_permanent_jetstream_refusal_is_reported_and_ends_the_gateway(
    small_nats: NatsProcess,
) -> None:
    code, err = run(*gateway_args(small_nats.url, free_port()))
    assert code == 1
    assert_no_noise(err)
    errors = [r for r in json_lines(err) if r["level"] in ("error", "critical")]
    assert len(errors) == 1, err
    message = errors[0]["msg"]
    assert message.startswith("JetStream refused the gateway's streams:")
    assert "insufficient storage resources" in message and "err_code 10047" in message
    assert "events_max_bytes=1073741824" in message and "max_file_store" in message
    assert message.endswith("exiting with code 1")


async def test_readyz_names_a_permanent_jetstream_refusal(
    small_nats: NatsProcess, prefix: str, http: Any
) -> None:
    """Embedded (not through the command), the refusal is /readyz's reason."""
    config = GatewayConfig(
        nats_url=small_nats.url, host="127.0.0.1", port=0, jwt_secret=SECRET, subject_prefix=prefix
    ).validate()
    gateway = Gateway(config, telemetry_from_env("frys-gateway", env={}))
    runner = web.AppRunner(build_app(gateway), handle_signals=False, access_log=None)
    await runner.setup()
    listener = Listener(runner, gateway.guard)
    port = await listener.start("127.0.0.1", 0)
    try:
        await asyncio.wait_for(gateway.failed.wait(), 20)
        async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
            assert r.status == 503
            body = await r.json()
        assert "err_code 10047" in body["reason"] and body["nats"] is False
        async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
            assert r.status == 200  # a restart cures nothing here: the operator must act
    finally:
        await listener.close()
        await runner.cleanup()


async def test_healthz_fails_once_the_nats_client_gives_up(
    gateway: RunningGateway, http: Any
) -> None:
    """nats-py closes its connection for good on some server errors (an authorization
    violation, for one) and then never reconnects: only a restart helps, so liveness fails.
    The close is made here the way nats-py makes it, through the client's own close."""
    async with http.get(f"{gateway.http}/healthz") as r:
        assert r.status == 200
    await gateway.gateway.bus.nc.close()
    async with http.get(f"{gateway.http}/healthz") as r:
        assert r.status == 503
        body = await r.json()
    assert body["status"] == "dead" and "closed" in body["reason"]
    async with http.get(f"{gateway.http}/readyz") as r:
        assert r.status == 503
        assert "closed" in (await r.json())["reason"]


# --- configuration mistakes ----------------------------------------------------------------


def test_bad_log_level_is_one_line() -> None:
    code, err = run("--log-level", "loud", "gateway")
    assert code == 2
    assert err.splitlines() == [
        "frys-ws: log level 'loud' is not one of debug, info, warning, error, critical"
    ]
    code, err = run("gateway", env={"FRYS_LOG_LEVEL": "verbose"})
    assert code == 2 and len(err.splitlines()) == 1 and "'verbose'" in err


def test_unsupported_otlp_protocol_is_one_line() -> None:
    code, err = run(
        *gateway_args("nats://127.0.0.1:4222", free_port()),
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
        },
    )
    assert code == 2
    assert_no_noise(err)
    (record,) = json_lines(err)
    assert "OTEL_EXPORTER_OTLP_PROTOCOL='http/json' is not supported" in record["msg"]


def test_invalid_configuration_is_one_record_with_every_problem() -> None:
    code, err = run("gateway", "--nats-url", "http://x", "--port", "99999")
    assert code == 2
    (record,) = json_lines(err)
    assert record["level"] == "error"
    for problem in ("nats_url must start", "port must be", "jwt_secret"):
        assert problem in record["msg"]


@pytest.mark.parametrize("command", ["gateway", "router"])
def test_misspelt_frys_variables_are_named(command: str) -> None:
    env = {"FRYS_JWT_SECRT": SECRET, "FRYS_NATS_ULR": "nats://x:4222", "FRYS_NATS_URL": "http://x"}
    code, err = run(command, env=env)
    assert code == 2  # the bad FRYS_NATS_URL ends it after the warnings
    warned = {r["msg"] for r in json_lines(err) if r["level"] == "warning"}
    assert warned == {
        "environment variable FRYS_JWT_SECRT is not a frys-ws setting: ignored; "
        "did you mean FRYS_JWT_SECRET?",
        "environment variable FRYS_NATS_ULR is not a frys-ws setting: ignored; "
        "did you mean FRYS_NATS_URL?",
    }


def test_router_port_taken_is_one_line(nats_server: NatsProcess) -> None:
    with taken_port() as port:
        code, err = run(
            "router", "--nats-url", nats_server.url, "--host", "127.0.0.1", "--port", str(port)
        )
    assert code == 1
    assert_no_noise(err)
    records = json_lines(err)
    assert records[0]["msg"].startswith("router settings: nats_url=")  # start-up settings
    assert "port=" + str(port) in records[0]["msg"]
    assert records[-1] == {
        **records[-1],
        "level": "error",
        "msg": f"cannot listen on 127.0.0.1:{port}: Address already in use; exiting with code 1",
    }


# --- help --------------------------------------------------------------------------------------


def test_every_gateway_and_router_flag_names_its_default_and_variable() -> None:
    from frys.cli.main import _parser

    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("gateway", "router"):
        flags = [
            action
            for action in sub.choices[command]._actions
            if action.option_strings and action.dest not in ("help", "config")
        ]
        assert len(flags) >= 8
        for action in flags:
            assert action.help is not None and "(default: " in action.help, action.dest
            assert "; env FRYS_" in action.help, action.dest


def test_loadtest_help_and_bare_list_the_scenarios() -> None:
    for args in (["loadtest"], ["loadtest", "--help"], ["loadtest", "-h"]):
        proc = subprocess.run(
            [sys.executable, "-m", "frys.cli.main", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=CLEAN_ENV,
            check=False,
        )
        assert proc.returncode == 0, (args, proc.stderr)
        assert "usage: frys-ws loadtest SCENARIO" in proc.stdout
        assert "fanout" in proc.stdout and "durability" in proc.stdout


# --- the internal port -------------------------------------------------------------------------


async def test_internal_port_keeps_metrics_and_publish_off_the_public_port(
    nats_server: NatsProcess, prefix: str, http: Any
) -> None:
    from frys.cli.run_gateway import serve_gateway
    from tests.conftest import API_KEY

    config = GatewayConfig(
        nats_url=nats_server.url,
        host="127.0.0.1",
        port=0,
        internal_port=free_port(),
        jwt_secret=SECRET,
        api_key=API_KEY,
        subject_prefix=prefix,
        drain_s=1.0,
        reconnect_spread_ms=100,
    ).validate()
    stop = asyncio.Event()
    ready: asyncio.Future[tuple[Gateway, int]] = asyncio.get_running_loop().create_future()

    async def on_ready(gateway: Gateway, port: int) -> None:
        ready.set_result((gateway, port))

    serving = asyncio.get_running_loop().create_task(serve_gateway(config, stop, on_ready))
    try:
        gateway, port = await asyncio.wait_for(ready, 20)
        assert gateway.config.port == port != 0  # the bound port, for peers and migrate
        public = f"http://127.0.0.1:{port}"
        internal = f"http://127.0.0.1:{config.internal_port}"
        publish = {"channel": "wf:i:events", "data": {"n": 1}}
        auth = {"Authorization": f"Bearer {API_KEY}"}
        for path in ("/healthz", "/readyz"):
            for base in (public, internal):
                async with http.get(base + path) as r:
                    assert r.status == 200, (base, path)
        async with http.get(public + "/metrics") as r:
            assert r.status == 404
        async with http.post(public + "/api/publish", json=publish, headers=auth) as r:
            assert r.status in (404, 405)
        async with http.get(internal + "/metrics") as r:
            assert r.status == 200 and "frys_ready" in await r.text()
        async with http.post(internal + "/api/publish", json=publish, headers=auth) as r:
            assert r.status == 200 and (await r.json())["ok"] is True
        async with http.get(internal + "/ws") as r:
            assert r.status == 404  # no WebSockets on the internal port
    finally:
        stop.set()
        await asyncio.wait_for(serving, 10)


def test_internal_port_must_differ_from_port() -> None:
    with pytest.raises(ValueError, match="internal_port must differ from port"):
        dataclasses.replace(GatewayConfig(jwt_secret=SECRET), internal_port=8080).validate()
