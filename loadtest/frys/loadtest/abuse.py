"""``frys-ws loadtest abuse``: resource attacks replayed at scale against a real gateway.

A gateway process (``frys-ws gateway``) and a nats-server run on this machine. A bystander
publishes a small message every 20 ms on a channel it also subscribes to, through the same
gateway, and its round trips are measured for the whole run. Each attack runs in turn:

- the gateway's resident memory is sampled every 50 ms during the attack (peak above the
  baseline taken just before it) and after the attacker has left (how long until it is back
  within 10 % of the baseline, 30 s at most);
- the bystander's p99 round trip during the attack;
- afterwards a new client must get a stored publish acknowledged within 2 s (shared
  capacity intact: publish slots, the NATS connection).

    frys-ws loadtest abuse
    frys-ws loadtest abuse --only resync-flood,keyframe-bombs --scale 0.2

Attacks (as found by an independent attack run, at the same scale by default):
header-mid, header-traceparent, snapshot-flood, presence-names, resync-flood,
keyframe-bombs, half-chunk-sets, slowloris, many-subscriptions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import numpy as np

from frys.gateway.auth import mint_token
from frys.loadtest.procinfo import rss_kb
from frys.runtime.cluster import SECRET, GatewayProcess
from frys.runtime.eventloop import install_uvloop
from frys.runtime.nats_process import NatsProcess
from frys.shared.tensor import TensorEncoder

GRANTS = {"wf:*:*": ["subscribe", "publish", "control"], "agent:*": ["subscribe", "publish"]}
MIB = 1024 * 1024


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def token(sub: str) -> str:
    return mint_token(SECRET, sub, GRANTS, ttl_s=3600)


@dataclass
class Outcome:
    name: str
    summary: str = ""
    baseline_mb: float = 0.0
    peak_delta_mb: float = 0.0
    after_delta_mb: float = 0.0
    back_within_s: float | None = None
    bystander_p99_ms: float = 0.0
    bystander_max_ms: float = 0.0
    capacity_ok: bool = False
    answers: dict[str, int] = field(default_factory=dict)

    def met(self) -> bool:
        return (
            self.peak_delta_mb <= 64
            and self.back_within_s is not None
            and self.bystander_p99_ms < 50
            and self.capacity_ok
        )


class Client:
    """A raw ``frys.v1.msgpack`` client that reads in the background (or not)."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.answers: dict[str, int] = {}

    async def open(self, sub: str, **connect: Any) -> Client:
        self.ws = await self.http.ws_connect(self.url, protocols=("frys.v1.msgpack",))
        await self.ws.send_bytes(pack({"op": "connect", "id": 0, "token": token(sub), **connect}))
        msg = await self.ws.receive(timeout=10)
        if msg.type is not aiohttp.WSMsgType.BINARY:
            self.answers[f"close {self.ws.close_code}"] = 1
        return self

    async def send(self, obj: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(pack(obj))

    async def drain(self, seconds: float) -> None:
        """Read and count answers for ``seconds``."""
        assert self.ws is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                msg = await self.ws.receive(timeout=max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                return
            if msg.type is not aiohttp.WSMsgType.BINARY:
                key = f"close {self.ws.close_code}"
                self.answers[key] = self.answers.get(key, 0) + 1
                return
            frame = msgpack.unpackb(msg.data, raw=False)
            key = f"{frame.get('op')} {frame.get('code', '')}".strip()
            self.answers[key] = self.answers.get(key, 0) + 1

    def pause(self) -> None:
        assert self.ws is not None
        transport = self.ws._response.connection.transport  # type: ignore[union-attr]
        if transport is not None:
            transport.pause_reading()

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 2)


class Bystander:
    """Publishes a timestamp every 20 ms on a channel it subscribes to and keeps the round
    trips, in a process of its own: the attacker's work must not delay its clock."""

    def __init__(self, url: str) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_bystander_main, args=(url, child), daemon=True)

    async def start(self) -> None:
        self._proc.start()
        await asyncio.to_thread(self._conn.recv)  # "ready"

    async def take(self) -> list[float]:
        """Round trips (ms) since the last call."""
        self._conn.send("take")
        samples: list[float] = await asyncio.to_thread(self._conn.recv)
        return samples

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.send("stop")
        await asyncio.to_thread(self._proc.join, 5)
        if self._proc.is_alive():
            self._proc.kill()


def _bystander_main(url: str, conn: Any) -> None:
    asyncio.run(_bystander(url, conn))


async def _bystander(url: str, conn: Any) -> None:
    samples: list[float] = []
    async with aiohttp.ClientSession() as http:
        client = await Client(http, url).open("bystander")
        await client.send({"op": "subscribe", "id": 1, "ch": "wf:calm:collab"})
        ws = client.ws
        assert ws is not None

        async def read() -> None:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.BINARY:
                    frame = msgpack.unpackb(msg.data, raw=False)
                    if frame.get("op") == "message" and isinstance(frame.get("data"), float):
                        samples.append((time.perf_counter() - frame["data"]) * 1000)

        async def publish() -> None:
            n = 10
            while True:
                n += 1
                data = time.perf_counter()
                msg = {"op": "publish", "id": n, "ch": "wf:calm:collab", "data": data}
                with contextlib.suppress(Exception):
                    await client.send(msg)
                await asyncio.sleep(0.02)

        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(read()), loop.create_task(publish())]
        conn.send("ready")
        while True:
            command = await asyncio.to_thread(conn.recv)
            if command == "take":
                conn.send(list(samples))
                samples.clear()
            else:
                break
        for task in tasks:
            task.cancel()
        await client.close()


# --- attacks -------------------------------------------------------------------------------
Attack = Callable[[aiohttp.ClientSession, str, float, Outcome], Awaitable[None]]


async def header_mid(http: aiohttp.ClientSession, url: str, scale: float, out: Outcome) -> None:
    c = await Client(http, url).open("attacker")
    for n in range(int(4010 * scale)):
        mid = "m" * 66_000
        await c.send({"op": "publish", "id": n, "ch": "wf:a:events", "data": n, "mid": mid})
    await c.drain(3)
    out.answers = c.answers
    await c.close()


async def header_traceparent(
    http: aiohttp.ClientSession, url: str, scale: float, out: Outcome
) -> None:
    c = await Client(http, url).open("attacker")
    tc = {"traceparent": "x" * 70_000}
    for n in range(int(4010 * scale)):
        await c.send({"op": "publish", "id": n, "ch": "wf:a:state", "data": n, "tc": tc})
    await c.drain(3)
    out.answers = c.answers
    await c.close()


async def snapshot_flood(http: aiohttp.ClientSession, url: str, scale: float, out: Outcome) -> None:
    w = await Client(http, url).open("writer")
    await w.send({"op": "publish", "id": 1, "ch": "wf:big:state", "data": "v" * 1_900_000})
    await w.drain(1)
    c = await Client(http, url).open("greedy")
    c.pause()
    for n in range(int(150 * scale)):
        await c.send({"op": "subscribe", "id": 2 * n, "ch": "wf:big:state"})
        await c.send({"op": "unsubscribe", "id": 2 * n + 1, "ch": "wf:big:state"})
        await asyncio.sleep(0.03)
    await asyncio.sleep(1)
    out.answers = {"writer " + k: v for k, v in w.answers.items()}
    await c.close()
    await w.close()


async def presence_names(http: aiohttp.ClientSession, url: str, scale: float, out: Outcome) -> None:
    clients = []
    for n in range(max(1, int(30 * scale))):
        c = await Client(http, url).open(f"named{n}", name="n" * 1_900_000)
        with contextlib.suppress(Exception):
            await c.send({"op": "subscribe", "id": 1, "ch": "wf:p:state"})
            await c.send({"op": "presence", "id": 2, "ch": "wf:p:presence"})
        clients.append(c)
    for c in clients:
        with contextlib.suppress(Exception):
            await c.drain(0.2)
        for k, v in c.answers.items():
            out.answers[k] = out.answers.get(k, 0) + v
        await c.close()


async def resync_flood(http: aiohttp.ClientSession, url: str, scale: float, out: Outcome) -> None:
    c = await Client(http, url).open("attacker")
    await c.send({"op": "subscribe", "id": 1, "ch": "wf:r:state"})
    await c.drain(0.5)  # the subscription is active once acked
    for n in range(int(50_000 * scale)):
        await c.send({"op": "resync", "id": 10 + n, "ch": "wf:r:state", "stream": n})
    await c.drain(3)
    out.answers = c.answers
    await c.close()


async def keyframe_bombs(http: aiohttp.ClientSession, url: str, scale: float, out: Outcome) -> None:
    watcher = await Client(http, url).open("watcher")
    await watcher.send({"op": "subscribe", "id": 1, "ch": "wf:k:state"})
    c = await Client(http, url).open("attacker")
    zeros = np.zeros(16 * MIB, np.float32)  # 64 MiB decoded, a few KB encoded
    for n in range(max(1, int(10 * scale))):
        frame = TensorEncoder(stream_id=100 + n).encode(zeros, keyframe=True)[0]
        await c.send({"op": "publish", "id": n, "ch": "wf:k:state", "enc": "tensor", "data": frame})
    await c.drain(3)
    out.answers = c.answers
    await c.close()
    await watcher.drain(1)
    await watcher.close()


async def half_chunk_sets(
    http: aiohttp.ClientSession, url: str, scale: float, out: Outcome
) -> None:
    watcher = await Client(http, url).open("watcher")
    await watcher.send({"op": "subscribe", "id": 1, "ch": "wf:h:state"})
    c = await Client(http, url).open("attacker")
    rng = np.random.default_rng(1)
    for n in range(int(150 * scale)):
        array = rng.random(500_000).astype(np.float32)  # 2 MB: two chunks or more
        chunks = TensorEncoder(stream_id=1000 + n, chunk_size=MIB).encode(array, keyframe=True)
        if len(chunks) < 2:
            continue
        msg = {"op": "publish", "id": n, "ch": "wf:h:state", "enc": "tensor", "data": chunks[0]}
        await c.send(msg)
    await c.drain(3)
    out.answers = c.answers
    await c.close()
    await watcher.close()


async def slowloris(http: aiohttp.ClientSession, url: str, scale: float, out: Outcome) -> None:
    host, port = "127.0.0.1", int(url.rsplit(":", 1)[1].split("/")[0])
    writers: list[asyncio.StreamWriter] = []
    for _ in range(int(1000 * scale)):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(host, port)
            writers.append(writer)
    request = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    closed = 0
    for i in range(15):  # one byte a second for 15 s
        for w in writers:
            if w.is_closing():
                continue
            with contextlib.suppress(Exception):
                w.write(request[i : i + 1])
        await asyncio.sleep(1.0)
    for w in writers:
        if w.is_closing() or w.transport.is_closing():
            closed += 1
        w.close()
    out.answers = {"connections": len(writers), "cut by the gateway": closed}


async def many_subscriptions(
    http: aiohttp.ClientSession, url: str, scale: float, out: Outcome
) -> None:
    clients = []
    for n in range(max(1, int(10 * scale))):
        c = await Client(http, url).open(f"subs{n}")
        for i in range(600):
            await c.send({"op": "subscribe", "id": i, "ch": f"wf:s{n}x{i}:collab"})
        clients.append(c)
    for c in clients:
        await c.drain(2)
        for k, v in c.answers.items():
            out.answers[k] = out.answers.get(k, 0) + v
        await c.close()


ATTACKS: dict[str, Attack] = {
    "header-mid": header_mid,
    "header-traceparent": header_traceparent,
    "snapshot-flood": snapshot_flood,
    "presence-names": presence_names,
    "resync-flood": resync_flood,
    "keyframe-bombs": keyframe_bombs,
    "half-chunk-sets": half_chunk_sets,
    "slowloris": slowloris,
    "many-subscriptions": many_subscriptions,
}


# --- the run -------------------------------------------------------------------------------
async def capacity_ok(http: aiohttp.ClientSession, url: str) -> bool:
    """A new client gets a stored publish acknowledged within 2 s."""
    c = Client(http, url)
    try:
        await asyncio.wait_for(c.open(f"probe-{uuid.uuid4().hex[:6]}"), 5)
        await c.send({"op": "publish", "id": 7, "ch": "wf:probe:events", "data": 1})
        assert c.ws is not None
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            msg = await c.ws.receive(timeout=max(0.01, deadline - time.monotonic()))
            frame = msgpack.unpackb(msg.data, raw=False)
            if frame.get("id") == 7:
                return bool(frame.get("op") == "ack" and frame.get("seq"))
        return False
    except Exception:
        return False
    finally:
        await c.close()


async def run_attack(
    name: str, attack: Attack, gw: GatewayProcess, bystander: Bystander, scale: float
) -> Outcome:
    assert gw.proc is not None
    pid = gw.proc.pid
    out = Outcome(name)
    await asyncio.sleep(1.0)
    baseline = rss_kb([pid]) / 1024
    out.baseline_mb = baseline
    peak = baseline
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            peak = max(peak, rss_kb([pid]) / 1024)
            await asyncio.sleep(0.05)

    sampler = asyncio.get_running_loop().create_task(sample())
    await bystander.take()
    async with aiohttp.ClientSession() as http:
        try:
            await attack(http, gw.url, scale, out)
        except Exception as exc:
            out.summary = f"attack failed: {type(exc).__name__}: {exc}"[:120]
        samples = await bystander.take()
        sampling = False
        await sampler
        out.peak_delta_mb = peak - baseline
        started = time.monotonic()
        while time.monotonic() - started < 30:
            now = rss_kb([pid]) / 1024
            if now <= baseline * 1.10:
                out.back_within_s = time.monotonic() - started
                break
            await asyncio.sleep(0.25)
        out.after_delta_mb = rss_kb([pid]) / 1024 - baseline
        out.capacity_ok = await capacity_ok(http, gw.url)
    if samples:
        ordered = sorted(samples)
        out.bystander_p99_ms = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        out.bystander_max_ms = ordered[-1]
    if not out.summary:
        out.summary = ", ".join(f"{k} ×{v}" for k, v in sorted(out.answers.items()))[:100]
    return out


def table(outcomes: list[Outcome]) -> str:
    head = (
        "| attack | peak RSS Δ MB | RSS after Δ MB | back within | bystander p99 / max ms "
        "| capacity after | outcome |\n|---|---:|---:|---:|---:|---|---|"
    )
    rows = [
        f"| {o.name} | {o.peak_delta_mb:.1f} | {o.after_delta_mb:.1f} | "
        f"{'—' if o.back_within_s is None else f'{o.back_within_s:.1f} s'} | "
        f"{o.bystander_p99_ms:.1f} / {o.bystander_max_ms:.1f} | "
        f"{'intact' if o.capacity_ok else 'IMPAIRED'} | {o.summary} |"
        for o in outcomes
    ]
    return "\n".join([head, *rows])


async def run(args: argparse.Namespace) -> list[Outcome]:
    names = [n for n in (args.only.split(",") if args.only else ATTACKS) if n]
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        raise SystemExit(f"unknown attacks: {', '.join(unknown)}")
    with NatsProcess(name="frys-abuse") as nats:
        gw = GatewayProcess(nats.url, f"abuse{uuid.uuid4().hex[:6]}", "abuse")
        gw.env.update({"FRYS_MAX_FRAME_BYTES": str(4 * MIB)})
        gw.start()
        try:
            await gw.wait_ready()
            bystander = Bystander(gw.url)
            await bystander.start()
            outcomes = []
            try:
                for name in names:
                    print(f"  {name} ...", flush=True)
                    outcome = await run_attack(name, ATTACKS[name], gw, bystander, args.scale)
                    outcomes.append(outcome)
            finally:
                await bystander.stop()
            return outcomes
        finally:
            gw.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="frys-ws loadtest abuse", description=__doc__)
    parser.add_argument("--only", default="", help="comma separated attack names (default all)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every attack's size")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    install_uvloop()
    outcomes = asyncio.run(run(args))
    print(table(outcomes))
    met = sum(o.met() for o in outcomes)
    print(
        f"\n{met}/{len(outcomes)} attacks within the targets (peak RSS Δ ≤ 64 MB, back within "
        f"30 s, bystander p99 < 50 ms, capacity intact); median bystander p99 "
        f"{statistics.median(o.bystander_p99_ms for o in outcomes):.1f} ms"
    )
    if args.out is not None:
        args.out.write_text(json.dumps([o.__dict__ for o in outcomes], indent=2, default=str))
    return 0 if met == len(outcomes) else 1
