"""The client load: several processes, each holding a share of the connections.

The parent (the scenario) drives the load processes over pipes with small commands —
``open`` connections (WebSocket handshake, connect, subscribe, then counting), ``snap`` the
message counters, ``result`` (counts and the latency histogram), ``close`` — so that one
Python process never has to receive everything. Each load process runs uvloop and can be
pinned to cores of its own (the server gets the others).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from frys.loadtest.dialects import Dialect
from frys.loadtest.wsraw import RawWs, open_ws

PROBE_MAX_S = 3600.0
"""A stall probe stops by itself after an hour."""
HIST_MAX_US = 3_600_000_000
"""Latencies are recorded in microseconds, up to an hour."""


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, HIST_MAX_US, 3)


@dataclass(frozen=True)
class Endpoint:
    """Where a server listens and how to talk to it."""

    host: str
    port: int
    dialect: Dialect


@dataclass(frozen=True)
class OpenSpec:
    """Connections for one load process to open."""

    endpoint: Endpoint
    channels: tuple[str, ...]
    """One entry per connection: the channel to subscribe to, or ``""`` for none."""
    payload_size: int = 100
    count: bool = True
    """Switch to counting after subscribing (fan-out); else keep parsing (idle)."""
    source_hosts: tuple[str, ...] = ()
    """Local addresses to spread the connections over (beyond one address's ports)."""
    concurrency: int = 256
    timeout_s: float = 20.0
    deadline_s: float = 300.0
    """Stop opening after this long, whatever is left."""


@dataclass
class _State:
    conns: list[RawWs] = field(default_factory=list)
    hist: HdrHistogram = field(default_factory=new_histogram)
    probe: asyncio.Task[None] | None = None
    probe_hist: HdrHistogram = field(default_factory=new_histogram)
    probe_max_us: int = 0
    probe_errors: int = 0
    probe_stop: bool = False


def pin(cpus: Sequence[int]) -> None:
    """Pin this process to ``cpus`` (ignored where affinity cannot be set)."""
    if cpus and hasattr(os, "sched_setaffinity"):
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, set(cpus))


# --- inside a load process -------------------------------------------------------------------


async def _connect_one(
    spec: OpenSpec, channel: str, source: str | None, state: _State, record: bool
) -> int:
    """Open, say hello, subscribe; returns the setup time in ns."""
    ep = spec.endpoint
    d = ep.dialect
    t0 = time.monotonic_ns()
    ws = await open_ws(
        ep.host, ep.port, d.path, d.subprotocol, local_host=source, timeout_s=spec.timeout_s
    )
    try:
        d.prepare(ws)
        await d.hello(ws, spec.timeout_s)
        took = time.monotonic_ns() - t0
        if channel:
            await d.subscribe(ws, channel, spec.timeout_s)
            if spec.count:
                hist = state.hist
                ws.start_counting(
                    d.counting(channel, spec.payload_size),
                    lambda ns: hist.record_value(ns // 1000 or 1),
                )
    except BaseException:
        ws.close()
        raise
    state.conns.append(ws)
    return took


async def _open(state: _State, spec: OpenSpec, sequential: bool) -> dict[str, Any]:
    setup = new_histogram()
    errors: dict[str, int] = {}
    ok = failed = 0
    sem = asyncio.Semaphore(1 if sequential else spec.concurrency)
    sources = spec.source_hosts or (None,)
    per_source = -(-len(spec.channels) // len(sources))
    deadline = time.monotonic() + spec.deadline_s

    async def one(i: int, channel: str) -> None:
        nonlocal ok, failed
        async with sem:
            if time.monotonic() > deadline:
                failed += 1
                errors["deadline"] = errors.get("deadline", 0) + 1
                return
            try:
                took = await _connect_one(spec, channel, sources[i // per_source], state, True)
            except Exception as exc:
                failed += 1
                key = f"{type(exc).__name__}: {exc}"[:160]
                errors[key] = errors.get(key, 0) + 1
                return
            ok += 1
            setup.record_value(took // 1000 or 1)

    t0 = time.monotonic_ns()
    if sequential:
        for i, ch in enumerate(spec.channels):
            await one(i, ch)
    else:
        await asyncio.gather(*(one(i, ch) for i, ch in enumerate(spec.channels)))
    t1 = time.monotonic_ns()
    return {
        "ok": ok,
        "failed": failed,
        "errors": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:5]),
        "t0_ns": t0,
        "t1_ns": t1,
        "setup_hist": setup.encode(),
    }


def _snap(state: _State) -> dict[str, Any]:
    return {
        "t_ns": time.monotonic_ns(),
        "messages": sum(ws.messages for ws in state.conns),
        "bytes": sum(ws.nbytes for ws in state.conns),
        "open": sum(1 for ws in state.conns if not ws.closed),
    }


def _result(state: _State) -> dict[str, Any]:
    per = [ws.messages for ws in state.conns]
    return {
        **_snap(state),
        "per_conn_min": min(per, default=0),
        "per_conn_max": max(per, default=0),
        "misaligned": sum(
            1 for ws in state.conns if ws.counting is not None and ws.nbytes % ws.counting.unit
        ),
        "closed": [ws.close_reason for ws in state.conns if ws.closed][:5],
        "hist": state.hist.encode(),
    }


async def _probe_loop(state: _State, spec: OpenSpec, interval_s: float) -> None:
    ep = spec.endpoint
    ws = await open_ws(ep.host, ep.port, ep.dialect.path, ep.dialect.subprotocol)
    ep.dialect.prepare(ws)
    await ep.dialect.hello(ws)
    end = time.monotonic() + PROBE_MAX_S
    try:
        while time.monotonic() < end and not state.probe_stop:
            t0 = time.monotonic_ns()
            try:
                await ep.dialect.ping(ws, 30.0)
            except (TimeoutError, ConnectionError):
                state.probe_errors += 1
                if ws.closed:
                    return
            us = (time.monotonic_ns() - t0) // 1000 or 1
            state.probe_hist.record_value(us)
            state.probe_max_us = max(state.probe_max_us, us)
            await asyncio.sleep(interval_s)
    finally:
        ws.close()


async def _close(state: _State) -> int:
    n = len(state.conns)
    for ws in state.conns:
        ws.close()
    state.conns.clear()
    await asyncio.sleep(0.05)
    return n


async def _serve(pipe: multiprocessing.connection.Connection) -> None:
    state = _State()
    while True:
        op, args = await asyncio.to_thread(pipe.recv)
        try:
            result: Any
            if op == "open":
                result = await _open(state, args[0], sequential=False)
            elif op == "sequential":
                result = await _open(state, args[0], sequential=True)
            elif op == "snap":
                result = _snap(state)
            elif op == "reset_hist":
                state.hist.reset()
                result = True
            elif op == "result":
                result = _result(state)
            elif op == "close":
                result = await _close(state)
            elif op == "probe_start":
                state.probe_hist.reset()
                state.probe_max_us = 0
                state.probe_stop = False
                state.probe = asyncio.get_running_loop().create_task(
                    _probe_loop(state, args[0], args[1])
                )
                await asyncio.sleep(0.2)
                if state.probe.done():
                    state.probe.result()
                result = True
            elif op == "probe_stop":
                if state.probe is not None:
                    # A flag as well as a cancel: wait_for may swallow a cancellation
                    # that races with its result (Python 3.11).
                    state.probe_stop = True
                    state.probe.cancel()
                    await asyncio.wait({state.probe}, timeout=5.0)
                result = {
                    "max_us": state.probe_max_us,
                    "errors": state.probe_errors,
                    "hist": state.probe_hist.encode(),
                }
            elif op == "exit":
                await _close(state)
                pipe.send(("ok", True))
                return
            else:
                raise ValueError(f"unknown op {op!r}")
            pipe.send(("ok", result))
        except Exception as exc:
            pipe.send(("error", f"{type(exc).__name__}: {exc}"))


def _worker_main(
    pipe: multiprocessing.connection.Connection, cpus: list[int], nice: int, nofile: int
) -> None:
    pin(cpus)
    if nice:
        with contextlib.suppress(OSError):
            os.nice(nice)
    raise_nofile(nofile)
    if sys.platform != "win32":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(_serve(pipe))


def raise_nofile(wanted: int) -> int:
    """Raise the open-files limit towards ``wanted`` (as far as allowed); returns it."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = max(soft, wanted)
        if target > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(hard, target)))
            except (OSError, ValueError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (min(target, hard), hard))
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 0


# --- in the scenario process -------------------------------------------------------------------


class LoadGen:
    """``processes`` load processes pinned to ``cpus``."""

    def __init__(self, processes: int, cpus: Sequence[int] = (), *, nice: int = 0, nofile: int = 0):
        ctx = multiprocessing.get_context("spawn")
        self.pipes: list[multiprocessing.connection.Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        for _ in range(max(1, processes)):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker_main, args=(child, list(cpus), nice, nofile), daemon=True
            )
            proc.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(proc)

    @property
    def size(self) -> int:
        return len(self.pipes)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid is not None]

    async def _call(self, pipe: multiprocessing.connection.Connection, op: str, *args: Any) -> Any:
        pipe.send((op, args))
        status, value = await asyncio.to_thread(pipe.recv)
        if status != "ok":
            raise RuntimeError(f"load process failed on {op}: {value}")
        return value

    async def each(self, op: str, per_worker: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Send ``op`` with its own arguments to each process; all replies in order."""
        return list(
            await asyncio.gather(
                *(self._call(p, op, *a) for p, a in zip(self.pipes, per_worker, strict=True))
            )
        )

    async def all(self, op: str, *args: Any) -> list[Any]:
        return await self.each(op, [args] * self.size)

    async def open_idle(
        self,
        endpoint: Any,
        parts: Sequence[tuple[str, ...]],
        sources: tuple[str, ...],
        concurrency: int,
    ) -> list[Any]:
        """Open connections that only subscribe (one part of channels per process)."""
        return await self.each(
            "open",
            [
                (
                    OpenSpec(
                        endpoint,
                        part,
                        count=False,
                        source_hosts=sources,
                        concurrency=max(1, concurrency // self.size),
                        timeout_s=30.0,
                    ),
                )
                for part in parts
            ],
        )

    def close(self) -> None:
        for pipe, proc in zip(self.pipes, self.procs, strict=True):
            with contextlib.suppress(OSError, BrokenPipeError):
                pipe.send(("exit", ()))
            proc.join(3)
            if proc.is_alive():
                proc.terminate()
                proc.join(2)
        self.pipes.clear()
        self.procs.clear()


def split(items: Sequence[str], parts: int) -> list[tuple[str, ...]]:
    """Deal ``items`` round-robin into ``parts`` nearly equal tuples."""
    return [tuple(items[i::parts]) for i in range(parts)]


def source_hosts(connections: int, per_host: int = 25_000) -> tuple[str, ...]:
    """Loopback source addresses for ``connections`` (one address's ports run out past
    ~28k connections to one server port)."""
    n = -(-connections // per_host)
    if n <= 1:
        return ()
    return tuple(f"127.0.0.{i + 2}" for i in range(n))


def merge_hist(encoded: Sequence[bytes]) -> HdrHistogram:
    total = new_histogram()
    for blob in encoded:
        total.add(HdrHistogram.decode(blob))
    return total


def percentiles(hist: HdrHistogram) -> dict[str, float | int]:
    """p50/p99/p99.9/max in milliseconds (µs resolution) and the sample count."""
    if hist.get_total_count() == 0:
        return {"count": 0}
    return {
        "count": int(hist.get_total_count()),
        "p50_ms": hist.get_value_at_percentile(50) / 1000,
        "p99_ms": hist.get_value_at_percentile(99) / 1000,
        "p99_9_ms": hist.get_value_at_percentile(99.9) / 1000,
        "max_ms": hist.get_max_value() / 1000,
    }
