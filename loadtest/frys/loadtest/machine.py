"""Facts about the machine a benchmark ran on, for its report."""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from frys.runtime.nats_process import nats_server_binary


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def memory_mb() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 0


def load_average() -> list[float]:
    with contextlib.suppress(OSError):
        return [round(x, 2) for x in os.getloadavg()]
    return []


def package_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return ""


def source_state() -> dict[str, Any]:
    """The commit measured, and whether the gateway's or shared code had local changes."""
    root = Path(__file__).resolve().parents[3]
    head = _first_line(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--", "gateway", "shared"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout.split("\n")
    return {"commit": head, "uncommitted_gateway_or_shared_files": [d[3:] for d in dirty if d]}


def facts() -> dict[str, Any]:
    """CPU, cores, memory, kernel, load and the versions of everything benchmarked."""
    node = shutil.which("node")
    try:
        nats = _first_line([nats_server_binary(), "--version"])
    except FileNotFoundError:
        nats = ""
    affinity = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": affinity,
        "memory_mb": memory_mb(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "load_average_at_start": load_average(),
        "python": sys.version.split()[0],
        "node": _first_line([node, "--version"]) if node else "",
        "nats_server": nats,
        "source": source_state(),
        "packages": {
            p: package_version(p)
            for p in ("aiohttp", "uvloop", "nats-py", "msgpack", "python-socketio")
        },
    }
