"""A whole Frys installation on this machine: NATS (one server or a cluster) and gateway
processes on free ports, which can be killed, drained and restarted like real nodes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from frys.runtime.nats_process import NatsProcess, die_with_parent, free_port, start_cluster

SECRET = "frys-local-cluster-secret-0123456789abcdef"


def frys_ws_command(*args: str) -> list[str]:
    """The argv of the installed ``frys-ws`` command: child processes start the way an
    operator starts them. The script installed next to this Python comes first (same
    environment, same code), before whatever ``frys-ws`` the ``PATH`` finds."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / "frys-ws"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return [str(candidate), *args]
    found = shutil.which("frys-ws")
    if found is None:
        raise FileNotFoundError("frys-ws not found: install the frys-ws package")
    return [found, *args]


def start_cluster_retrying(size: int, name: str, attempts: int = 3) -> list[NatsProcess]:
    """:func:`start_cluster`, again with fresh ports when one was taken meanwhile (route
    ports are chosen before the servers bind them, so another process may get there
    first on a busy machine)."""
    for attempt in range(attempts):
        try:
            return start_cluster(size, name)
        except RuntimeError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@dataclass
class GatewayProcess:
    """``frys-ws gateway`` as a child process."""

    nats_url: str
    prefix: str
    gateway_id: str
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix=f"{self.gateway_id}-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FRYS_")},
            "FRYS_NATS_URL": self.nats_url,
            "FRYS_HOST": "127.0.0.1",
            "FRYS_PORT": str(self.port),
            "FRYS_GATEWAY_ID": self.gateway_id,
            "FRYS_PUBLIC_URL": self.url,
            "FRYS_SUBJECT_PREFIX": self.prefix,
            "FRYS_JWT_SECRET": SECRET,
            "FRYS_API_KEY": "local-cluster-api-key",
            "FRYS_ALLOWED_ORIGINS": "*",
            **self.env,
        }
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                frys_ws_command("gateway"),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,  # no gateway outlives the harness
            )

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"gateway {self.gateway_id} exited:\n{self.log_text()}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"{self.http}/readyz") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise TimeoutError(f"gateway {self.gateway_id} not ready:\n{self.log_text()}")

    def kill(self) -> None:
        """SIGKILL: the gateway vanishes without a word, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    async def wait_exit(self, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        return await asyncio.to_thread(self.proc.wait, timeout_s)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def close(self) -> None:
        self.kill()
        if self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()


@dataclass
class LocalCluster:
    """NATS plus ``gateways`` gateway processes sharing one subject prefix."""

    gateways: int = 3
    nats_nodes: int = 1
    prefix: str = "frys"
    gateway_env: dict[str, str] = field(default_factory=dict)
    nats: list[NatsProcess] = field(default_factory=list)
    nodes: list[GatewayProcess] = field(default_factory=list)

    @property
    def nats_url(self) -> str:
        return ",".join(n.url for n in self.nats)

    @property
    def urls(self) -> list[str]:
        return [g.url for g in self.nodes]

    async def start(self) -> LocalCluster:
        try:
            return await self._start()
        except BaseException:
            self.close()  # __aexit__ does not run when __aenter__ fails
            raise

    async def _start(self) -> LocalCluster:
        if self.nats_nodes == 1:
            self.nats = [NatsProcess(name=f"{self.prefix}-nats").start()]
        else:
            # Started from this thread: a server dies with the thread that started it.
            self.nats = start_cluster_retrying(self.nats_nodes, self.prefix)
        # Replicas are the gateways' choice: three on a cluster of three NATS nodes.
        env = dict(self.gateway_env)
        for i in range(self.gateways):
            node = GatewayProcess(self.nats_url, self.prefix, f"{self.prefix}-gw{i}", env=env)
            node.start()
            self.nodes.append(node)
        # Start one first so that it creates the streams; the others find them.
        await self.nodes[0].wait_ready()
        await asyncio.gather(*(n.wait_ready() for n in self.nodes[1:]))
        return self

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        for server in self.nats:
            server.close()

    async def __aenter__(self) -> LocalCluster:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.close()
