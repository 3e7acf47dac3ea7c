"""The servers a benchmark runs against: Frys (NATS + one gateway process) and its peers.

Every target starts on free ports on 127.0.0.1, pins its server process(es) to the server
cores (``os.sched_setaffinity`` on every thread), names the processes whose memory and CPU
count as "the server", and hands out a publisher that feeds it the benchmark messages in
its natural way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import nats

from frys.gateway.auth import mint_token
from frys.loadtest.dialects import FRYS_SEQ_EXAMPLE, Dialect
from frys.loadtest.loadgen import Endpoint
from frys.loadtest.procinfo import pin_self, pin_tree, tree
from frys.loadtest.publisher import NatsPublisher, Publisher, WsPublisher
from frys.runtime.cluster import SECRET, LocalCluster
from frys.runtime.nats_process import free_port, nats_server_binary
from frys.shared.protocol.subjects import Subjects

PREFIX = "bench"
NODE_DIR = Path(__file__).resolve().parents[2] / "peers" / "node"

PEERS = ("aiohttp", "aiohttp-once", "python-socketio", "ws", "socket.io", "nats-ws")
ALL_TARGETS = ("frys", *PEERS)


class TargetUnavailable(RuntimeError):
    """The target cannot run on this machine (a missing binary or package)."""


@dataclass
class Target:
    """Base: a server on ``port`` speaking ``dialect``; subclasses start it."""

    name: str
    server_cpus: Sequence[int] = ()
    aux_cpus: Sequence[int] = ()
    port: int = field(default_factory=free_port)
    dialect: Dialect = field(default_factory=lambda: Dialect("plain"))
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.port, self.dialect)

    def server_pids(self) -> list[int]:
        """Processes counted as the server (memory, CPU)."""
        return tree(self.proc.pid) if self.proc is not None else []

    def aux_pids(self) -> list[int]:
        """Processes the server needs besides itself (NATS for Frys)."""
        return []

    async def start(self) -> None:
        raise NotImplementedError

    async def publisher(self) -> Publisher:
        return await WsPublisher.connect(self.endpoint)

    async def metrics(self) -> dict[str, float]:
        """The server's own counters, where it has any."""
        return {}

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait, 5)
        if self.log_path is not None:
            with contextlib.suppress(OSError):
                self.log_path.unlink()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path else ""

    # --- helpers for subprocess servers ------------------------------------------------------
    def _spawn(self, argv: list[str], cwd: Path | None = None) -> None:
        fd, name = tempfile.mkstemp(prefix=f"frys-bench-{self.name}-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)
        cpus = list(self.server_cpus)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=lambda: pin_self(cpus),
            )

    async def _wait_port(self, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_text()}")
            try:
                _r, w = await asyncio.open_connection("127.0.0.1", self.port)
                w.close()
                return
            except OSError:
                await asyncio.sleep(0.05)
        raise TimeoutError(f"{self.name} did not listen on {self.port}:\n{self.log_text()}")


@dataclass
class FrysTarget(Target):
    """NATS plus one gateway process (``workers`` > 1: that many SO_REUSEPORT workers)."""

    stored: bool = False
    workers: int = 1
    env: dict[str, str] = field(default_factory=dict)
    cluster: LocalCluster | None = None

    async def start(self) -> None:
        env = {"FRYS_WORKERS": str(self.workers), **self.env}
        self.cluster = LocalCluster(gateways=1, prefix=PREFIX, gateway_env=env)
        await self.cluster.start()
        node = self.cluster.nodes[0]
        self.port = node.port
        token = mint_token(SECRET, "bench", {"wf:*:*": ["subscribe", "publish"]}, ttl_s=86400)
        self.dialect = Dialect("frys", token=token, stored=self.stored, nats_prefix=PREFIX)
        if node.proc is not None:
            pin_tree(node.proc.pid, self.server_cpus)
        for pid in self.aux_pids():
            pin_tree(pid, self.aux_cpus)
        if self.stored:
            await self._start_state_stream_high()

    async def _start_state_stream_high(self) -> None:
        """Every stored frame carries its sequence: start the stream past 65,535 so all
        sequences have one msgpack width and every message one wire size."""
        assert self.cluster is not None
        nc = await nats.connect(self.cluster.nats_url)
        try:
            await nc.jetstream().purge_stream(Subjects(PREFIX).state_stream, seq=FRYS_SEQ_EXAMPLE)
        finally:
            await nc.close()

    def server_pids(self) -> list[int]:
        if self.cluster is None or not self.cluster.nodes:
            return []
        proc = self.cluster.nodes[0].proc
        return tree(proc.pid) if proc is not None else []

    def aux_pids(self) -> list[int]:
        if self.cluster is None:
            return []
        pids = []
        for server in self.cluster.nats:
            proc = getattr(server, "_proc", None)
            if proc is not None:
                pids.append(proc.pid)
        return pids

    @property
    def http(self) -> str:
        assert self.cluster is not None
        return self.cluster.nodes[0].http

    async def publisher(self) -> Publisher:
        assert self.cluster is not None
        return await NatsPublisher.connect(self.cluster.nats_url, self.dialect, True)

    async def metrics(self) -> dict[str, float]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.http}/metrics", timeout=aiohttp.ClientTimeout(total=10)) as r,
        ):
            return parse_prometheus(await r.text())

    def log_text(self) -> str:
        if self.cluster is None or not self.cluster.nodes:
            return ""
        return self.cluster.nodes[0].log_text()[-4000:]

    async def stop(self) -> None:
        if self.cluster is not None:
            # Gateway workers are forked children of the process the cluster knows:
            # stop them too, or they would outlive the benchmark.
            pids = self.server_pids()
            self.cluster.close()
            self.cluster = None
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


def parse_prometheus(text: str) -> dict[str, float]:
    """Sum each metric over its label sets (one gateway: one set)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0]
        with contextlib.suppress(ValueError):
            out[name] = out.get(name, 0.0) + float(value)
    return out


@dataclass
class PythonPeer(Target):
    module: str = ""
    args: tuple[str, ...] = ()

    async def start(self) -> None:
        argv = [sys.executable, "-m", self.module, "--port", str(self.port), *self.args]
        self._spawn(argv)
        await self._wait_port()


@dataclass
class NodePeer(Target):
    script: str = ""

    async def start(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise TargetUnavailable("node not found (Node.js >= 18 is needed for this peer)")
        if not (NODE_DIR / "node_modules").is_dir():
            raise TargetUnavailable("Node peers not installed: run loadtest/peers/install.sh")
        self._spawn([node, str(NODE_DIR / self.script), str(self.port)], cwd=NODE_DIR)
        await self._wait_port()


@dataclass
class NatsWsTarget(Target):
    """nats-server with its own WebSocket listener; clients speak NATS over WebSocket."""

    nats_port: int = field(default_factory=free_port)
    workdir: tempfile.TemporaryDirectory[str] | None = None

    async def start(self) -> None:
        self.workdir = tempfile.TemporaryDirectory(prefix="frys-bench-natsws-")
        conf = Path(self.workdir.name) / "nats.conf"
        conf.write_text(
            f'listen: "127.0.0.1:{self.nats_port}"\n'
            "max_payload: 1048576\n"
            f'websocket {{\n  listen: "127.0.0.1:{self.port}"\n  no_tls: true\n}}\n'
        )
        self.dialect = Dialect("nats", nats_prefix=PREFIX)
        self._spawn([nats_server_binary(), "-c", str(conf)])
        await self._wait_port()

    async def publisher(self) -> Publisher:
        return await NatsPublisher.connect(
            f"nats://127.0.0.1:{self.nats_port}", self.dialect, engine_headers=False
        )

    async def stop(self) -> None:
        await super().stop()
        if self.workdir is not None:
            self.workdir.cleanup()
            self.workdir = None


def make_target(
    name: str,
    server_cpus: Sequence[int],
    aux_cpus: Sequence[int],
    *,
    stored: bool = False,
    workers: int = 1,
    frys_env: dict[str, str] | None = None,
) -> Target:
    """A target by its ``--vs`` name."""
    sc, ac = list(server_cpus), list(aux_cpus)
    if name == "frys":
        return FrysTarget(name, sc, ac, stored=stored, workers=workers, env=dict(frys_env or {}))
    if name == "aiohttp":
        return PythonPeer(name, sc, ac, module="frys.loadtest.peers.aiohttp_peer")
    if name == "aiohttp-once":
        return PythonPeer(
            name, sc, ac, module="frys.loadtest.peers.aiohttp_peer", args=("--mode", "once")
        )
    if name == "python-socketio":
        return PythonPeer(
            name,
            sc,
            ac,
            module="frys.loadtest.peers.socketio_peer",
            dialect=Dialect("socketio"),
        )
    if name == "ws":
        return NodePeer(name, sc, ac, script="ws_peer.js")
    if name == "socket.io":
        return NodePeer(name, sc, ac, script="socketio_peer.js", dialect=Dialect("socketio"))
    if name == "nats-ws":
        return NatsWsTarget(name, sc, ac)
    raise ValueError(f"unknown target {name!r}; choose from {', '.join(ALL_TARGETS)}")


def parse_targets(vs: str, include_frys: bool = True) -> list[str]:
    """``frys`` first, then the ``--vs`` comma list (``all`` for every peer)."""
    names = ["frys"] if include_frys else []
    for item in (s.strip() for s in vs.split(",")):
        if not item or item == "none":
            continue
        if item == "all":
            names += [p for p in PEERS if p not in names]
        elif item not in ALL_TARGETS:
            raise ValueError(f"unknown target {item!r}; choose from {', '.join(ALL_TARGETS)}")
        elif item not in names:
            names.append(item)
    return names
