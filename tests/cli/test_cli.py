"""The frys-ws command as a user runs it: dev mode end to end, and token minting."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jwt

from frys.client import connect


def _read_banner(proc: subprocess.Popen[str], timeout_s: float = 30.0) -> dict[str, str]:
    assert proc.stdout is not None
    fields: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    while "Dev token" not in fields:
        if time.monotonic() > deadline or proc.poll() is not None:
            raise AssertionError(f"dev mode did not start: {fields}")
        line = proc.stdout.readline()
        parts = line.strip().split(None, 2) if line.startswith("  ") else []
        if len(parts) >= 2:
            key = " ".join(parts[:2]) if parts[0] in ("Dev", "API", "JWT") else parts[0]
            fields[key] = line.strip()[len(key) :].strip().split()[0]
    return fields


def _readme_example() -> str:
    """The README's client example, exactly as printed."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    return readme.split("```python\n", 1)[1].split("```", 1)[0]


def _port_open(url: str) -> bool:
    host, port = url.rsplit("//", 1)[1].rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, int(port.split("/")[0]))) == 0


async def test_dev_starts_everything_and_stops_cleanly() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "frys.cli.main", "--plain-logs", "dev", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        banner = await asyncio.to_thread(_read_banner, proc)
        url, nats_url = banner["WebSocket"], banner["NATS"]
        async with connect(url, token=banner["Dev token"]) as client:
            events = await client.subscribe("wf:demo:events")
            reply = await client.request("wf:demo:control", {"action": "resume"})
            assert reply == {"ok": True, "action": "resume", "workflow": "demo"}
            event = await events.next(5)
            assert event.data["action"] == "resume" and event.from_ == "demo-engine"
        readme = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", _readme_example()],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "FRYS_URL": url, "FRYS_TOKEN": banner["Dev token"]},
        )
        assert readme.returncode == 0, readme.stderr
        assert "'step': 'started'" in readme.stdout and "'action': 'pause'" in readme.stdout
        assert _port_open(nats_url)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 20) == 0
        assert not _port_open(nats_url), "the dev NATS server outlived frys-ws dev"
        assert not _port_open(url)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_token_command_mints_a_verifiable_token() -> None:
    secret = "s" * 40
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "frys.cli.main",
            "token",
            "--secret",
            secret,
            "--sub",
            "agent-7",
            "--kind",
            "agent",
            "--grant",
            "wf:42:*=subscribe,publish",
            "--ttl-s",
            "60",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    claims = jwt.decode(out, secret, algorithms=["HS256"])
    assert claims["sub"] == "agent-7"
    assert claims["frys"] == {"kind": "agent", "grants": {"wf:42:*": ["subscribe", "publish"]}}
    assert 50 <= claims["exp"] - time.time() <= 61
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "frys.cli.main",
            "token",
            "--secret",
            secret,
            "--sub",
            "x",
            "--grant",
            "wf:4.2:*=subscribe",
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "bad grant" in bad.stderr


def test_gateway_command_rejects_bad_configuration() -> None:
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "frys.cli.main",
            "gateway",
            "--nats-url",
            "http://x",
            "--port",
            "99999",
        ],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("FRYS_")},
    )
    assert bad.returncode == 2
    for problem in ("nats_url must start", "port must be", "jwt_secret"):
        assert problem in bad.stderr
