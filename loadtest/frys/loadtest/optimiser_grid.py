"""The optimiser's benchmark grid: data patterns × link classes, optimiser vs fixed choices.

For every tensor pattern each fixed arm is run over the whole stream (bytes, encode and
decode time of every frame, measured, the fastest of ``repeats`` passes per frame), and the
optimiser once per link class; the cost of a run on a link class is
``Σ w_cpu·(t_enc + t_dec) + bytes·8/bandwidth`` over its frames. Every arm is lossless, so a
frame's XOR delta is the same whatever arms sent the frames before it: the optimiser's frames
are priced from the same per-frame table as the fixed arms (the arm it chose for each frame),
which keeps the comparison free of timing noise between runs, and the CPU of its probes and
of its own bookkeeping, measured in its run, is added. Side by side per cell: the optimiser, the
hindsight-best fixed arm of that cell, today's codec (the encoder's own smallest-form
choice) and zstd level 3 on every whole value. Patterns with a change of regime in the
middle also report how many frames the optimiser took to settle on a good arm again.

Pure computation (no I/O); :mod:`frys.loadtest.optimiser_bench` renders and runs it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import zstandard

from frys.gateway.optimiser.cost import CostWeights, LinkClass
from frys.gateway.optimiser.tensor import TensorStreamOptimiser
from frys.shared.tensor import TensorDecoder, TensorEncoder, TensorLimits
from frys.shared.tensor.arms import ARMS

Array = npt.NDArray[Any]
LIMITS = TensorLimits(max_bytes=1 << 30, max_elements=1 << 30, max_frame_bytes=(1 << 30) + 4096)
CHUNK = 1 << 30
LINKS = (LinkClass.LOCAL, LinkClass.FAST, LinkClass.SLOW)
SETTLE_WITHIN = 1.10
"""After a change of regime the optimiser has settled once its arm costs at most this much
more than the best arm of the new regime."""


@dataclass(frozen=True, slots=True)
class Pattern:
    name: str
    description: str
    ticks: list[Array]
    stream: bool = True
    """Successive values of one stream (deltas); otherwise each value is sent whole."""
    change_at: int | None = None
    """Tick at which the data changes regime, if it does."""


def _smooth_image(rng: np.random.Generator, h: int = 256, w: int = 256) -> Array:
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    phase = rng.uniform(0, 6.28)
    base = np.stack(
        [
            128 + 100 * np.sin(x / 53.0 + phase) * np.cos(y / 71.0),
            x * 255.0 / w,
            255 - (x + y) * 255.0 / (h + w),
        ],
        axis=-1,
    )
    return np.clip(np.rint(base + rng.normal(0, 2.0, base.shape)), 0, 255).astype(np.uint8)


def _sparse_steps(rng: np.random.Generator, state: Array, n: int, share: float) -> list[Array]:
    out = []
    changed = max(1, int(state.size * share))
    for _ in range(n):
        state = state.copy()
        where = rng.choice(state.size, changed, replace=False)
        state.flat[where] += (0.1 * rng.standard_normal(changed)).astype(state.dtype)
        out.append(state)
    return out


def _dense_steps(rng: np.random.Generator, state: Array, n: int, sigma: float) -> list[Array]:
    out = []
    for _ in range(n):
        state = state + (sigma * rng.standard_normal(state.shape)).astype(state.dtype)
        out.append(state)
    return out


def patterns(seed: int = 1, ticks: int = 100, names: Sequence[str] | None = None) -> list[Pattern]:
    """The grid's data patterns, generated deterministically from ``seed``."""
    rng = np.random.default_rng(seed)
    half = ticks // 2

    def sparse() -> Pattern:
        s = rng.standard_normal((256, 256)).astype(np.float32)
        return Pattern(
            "sparse",
            "float32 256x256, 5 % change per tick",
            [s, *_sparse_steps(rng, s, ticks, 0.05)],
        )

    def dense() -> Pattern:
        s = rng.standard_normal((256, 256)).astype(np.float32)
        return Pattern(
            "dense", "float32 256x256, all drift N(0,1e-4)", [s, *_dense_steps(rng, s, ticks, 1e-4)]
        )

    def sparse_to_dense() -> Pattern:
        s = rng.standard_normal((256, 256)).astype(np.float32)
        first = _sparse_steps(rng, s, half, 0.02)
        second = _dense_steps(rng, first[-1], ticks - half, 1e-4)
        return Pattern(
            "sparse->dense",
            f"2 % sparse, then all drift (tick {half + 1})",
            [s, *first, *second],
            change_at=half + 1,
        )

    def dense_to_sparse() -> Pattern:
        s = rng.standard_normal((256, 256)).astype(np.float32)
        first = _dense_steps(rng, s, half, 1e-4)
        second = _sparse_steps(rng, first[-1], ticks - half, 0.01)
        return Pattern(
            "dense->sparse",
            f"all drift, then 1 % sparse (tick {half + 1})",
            [s, *first, *second],
            change_at=half + 1,
        )

    def image() -> Pattern:
        frames = [_smooth_image(rng) for _ in range(max(8, ticks))]
        return Pattern("image", "uint8 256x256x3 smooth, new per tick", frames, stream=False)

    def embeddings() -> Pattern:
        frames = [rng.standard_normal((256, 384)).astype(np.float32) for _ in range(max(8, ticks))]
        return Pattern("embeddings", "float32 256x384 normal, new per tick", frames, stream=False)

    def counters() -> Pattern:
        s = rng.integers(0, 1000, (256, 256), dtype=np.int32)
        out = [s]
        for _ in range(ticks):
            s = s + (rng.random(s.shape) < 0.3).astype(np.int32)
            out.append(s)
        return Pattern("counters", "int32 256x256, 30 % increment per tick", out)

    def noise() -> Pattern:
        frames = [rng.integers(0, 2**32, (128, 128), dtype=np.uint32) for _ in range(max(8, ticks))]
        return Pattern("incompressible", "uint32 128x128 random, new per tick", frames)

    makers: dict[str, Callable[[], Pattern]] = {
        "sparse": sparse,
        "dense": dense,
        "sparse->dense": sparse_to_dense,
        "dense->sparse": dense_to_sparse,
        "counters": counters,
        "image": image,
        "embeddings": embeddings,
        "incompressible": noise,
    }
    unknown = set(names or ()) - makers.keys()
    if unknown:
        raise ValueError(f"unknown patterns: {', '.join(sorted(unknown))}")
    return [make() for name, make in makers.items() if names is None or name in names]


# --- runs ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    """Per-frame measurements of one way of sending a pattern."""

    bytes: list[int] = field(default_factory=list)
    enc: list[float] = field(default_factory=list)
    dec: list[float] = field(default_factory=list)
    arms: list[str] = field(default_factory=list)
    probe_s: float = 0.0

    def frame_costs(self, weights: CostWeights, link: LinkClass) -> list[float]:
        return [
            weights.cost(b, e, d, link)
            for b, e, d in zip(self.bytes, self.enc, self.dec, strict=True)
        ]

    def cost(self, weights: CostWeights, link: LinkClass) -> float:
        return sum(self.frame_costs(weights, link)) + weights.w_cpu * self.probe_s


def _timed_decode(dec: TensorDecoder, frame: bytes) -> float:
    start = time.perf_counter()
    dec.apply(frame)
    return time.perf_counter() - start


def run_fixed(pattern: Pattern, arm_name: str | None, repeats: int = 2) -> Run:
    """Every frame with one arm (``None``: the encoder's own smallest-form choice); times
    are the fastest of ``repeats`` passes, frame by frame."""
    arm = None if arm_name is None else next(a for a in ARMS if a.name == arm_name)
    best: Run | None = None
    for _ in range(repeats):
        enc = TensorEncoder(1, arm=arm, chunk_size=CHUNK, limits=LIMITS)
        dec = TensorDecoder(1, limits=LIMITS)
        run = Run()
        for array in pattern.ticks:
            start = time.perf_counter()
            frame = enc.encode(array, keyframe=not pattern.stream)[0]
            run.enc.append(time.perf_counter() - start)
            run.dec.append(_timed_decode(dec, frame))
            run.bytes.append(len(frame))
            run.arms.append(arm_name or "auto")
        if best is None:
            best = run
        else:
            best.enc = [min(a, b) for a, b in zip(best.enc, run.enc, strict=True)]
            best.dec = [min(a, b) for a, b in zip(best.dec, run.dec, strict=True)]
    assert best is not None
    return best


def run_zstd3(pattern: Pattern) -> Run:
    """zstd level 3 on every whole value, no delta: what a generic compressor sends."""
    cctx = zstandard.ZstdCompressor(level=3)
    dctx = zstandard.ZstdDecompressor()
    run = Run()
    for array in pattern.ticks:
        start = time.perf_counter()
        packed = cctx.compress(np.ascontiguousarray(array).data)
        run.enc.append(time.perf_counter() - start)
        start = time.perf_counter()
        dctx.decompress(packed)
        run.dec.append(time.perf_counter() - start)
        run.bytes.append(len(packed) + 24)
        run.arms.append("zstd-3")
    return run


def run_optimiser(
    pattern: Pattern,
    link: LinkClass,
    weights: CostWeights,
    table: dict[str, Run],
    seed: int = 1,
) -> tuple[Run, TensorStreamOptimiser]:
    """The optimiser over ``pattern``; its frames priced from ``table`` (see the module
    docstring), its probes and bookkeeping as measured. Every frame is decoded, to check."""
    opt = TensorStreamOptimiser(1, link, weights, chunk_size=CHUNK, limits=LIMITS, seed=seed)
    dec = TensorDecoder(1, limits=LIMITS)
    run = Run()
    apply_s = 0.0
    for i, array in enumerate(pattern.ticks):
        arm = opt.arm
        frame = opt.encode(array, keyframe=not pattern.stream, other_seconds=apply_s)[0]
        started = time.perf_counter()
        dec.apply(frame)
        apply_s = time.perf_counter() - started  # what a relay's replica spends per frame
        value = dec.current()
        assert value is not None
        if value.tobytes() != np.ascontiguousarray(array).tobytes():
            raise AssertionError(f"{pattern.name}: the optimiser's frame did not round-trip")
        priced = table[arm]
        run.enc.append(priced.enc[i])
        run.dec.append(priced.dec[i])
        run.bytes.append(len(frame))
        run.arms.append(arm)
    run.probe_s = opt.probe_seconds + opt.overhead_seconds
    return run, opt


def _settle_frames(
    pattern: Pattern, opt_run: Run, fixed: dict[str, Run], weights: CostWeights, link: LinkClass
) -> int | None:
    """Frames after the change of regime until the optimiser's arm stays within
    :data:`SETTLE_WITHIN` of the new regime's best arm (``None``: it never did)."""
    start = pattern.change_at
    if start is None:
        return None
    segment = {name: sum(run.frame_costs(weights, link)[start:]) for name, run in fixed.items()}
    best = min(segment.values())
    good = {name for name, cost in segment.items() if cost <= best * SETTLE_WITHIN}
    arms = opt_run.arms[start:]
    for i in range(len(arms)):
        if all(a in good for a in arms[i:]):
            return i
    return None


def run_tensor_grid(
    ticks: int = 100,
    seed: int = 1,
    weights: CostWeights | None = None,
    names: Sequence[str] | None = None,
    links: Sequence[LinkClass] = LINKS,
    repeats: int = 3,
) -> list[dict[str, Any]]:
    """Every pattern on every link class: one row per cell. The optimiser runs ``repeats``
    times per cell (its probes sample blocks at random, and its timings see a busy machine)
    and the median run is reported, with the worst alongside."""
    weights = weights or CostWeights()
    rows: list[dict[str, Any]] = []
    for pattern in patterns(seed, ticks, names):
        fixed = {arm.name: run_fixed(pattern, arm.name) for arm in ARMS}
        today = run_fixed(pattern, None)
        zstd3 = run_zstd3(pattern)
        for link in links:
            costs = {name: run.cost(weights, link) for name, run in fixed.items()}
            best = min(costs, key=costs.__getitem__)
            runs = [run_optimiser(pattern, link, weights, fixed, seed + r) for r in range(repeats)]
            runs.sort(key=lambda pair: pair[0].cost(weights, link))
            opt_run, opt = runs[len(runs) // 2]  # the median of the repeated runs
            mine = opt_run.cost(weights, link)
            chosen = statistics.mode(opt_run.arms[len(opt_run.arms) // 2 :])
            rows.append(
                {
                    "pattern": pattern.name,
                    "link": link.value,
                    "optimiser_cost_ms": mine * 1e3,
                    "best_arm": best,
                    "best_cost_ms": costs[best] * 1e3,
                    "vs_best": mine / costs[best],
                    "worst_vs_best": runs[-1][0].cost(weights, link) / costs[best],
                    "today_cost_ms": today.cost(weights, link) * 1e3,
                    "zstd3_cost_ms": zstd3.cost(weights, link) * 1e3,
                    "vs_zstd3": mine / zstd3.cost(weights, link),
                    "arm": chosen,
                    "switches": opt.selector.switches,
                    "settle_frames": _settle_frames(pattern, opt_run, fixed, weights, link),
                    "probe_share": opt.probe_seconds
                    / max(opt.encode_seconds + opt.other_seconds, 1e-12),
                    "overhead_ms": opt.overhead_seconds * 1e3,
                    "ratio": sum(a.nbytes for a in pattern.ticks) / sum(opt_run.bytes),
                    "frames": len(pattern.ticks),
                    "change_at": pattern.change_at,
                }
            )
    return rows


# --- small messages -----------------------------------------------------------------------

STEPS = ("fetch", "parse", "embed", "rank", "review", "publish", "notify", "archive")
AGENTS = tuple(f"agent-{name}" for name in ("planner", "coder", "critic", "router", "scribe"))
TEXTS = (
    "checking the ranking step before publishing",
    "retrying fetch with exponential backoff",
    "done, see the outputs of step 4",
    "need a review of the parse output",
    "looks good to me, merging",
    "the embed step is slow on large batches",
)


class EventMix:
    """A realistic stream of workflow events (msgpack 150-250 bytes each): steps started and
    finished, agent messages with ids, timestamps and nested fields, over many workflows
    and runs. ``new_schema_at`` makes a new event type appear from that message on."""

    def __init__(self, seed: int = 1, new_schema_at: int | None = None) -> None:
        import random

        self._rng = random.Random(seed)
        self._t = 1_764_000_000_000
        self._runs: list[tuple[str, str]] = []
        self.new_schema_at = new_schema_at
        self.count = 0

    def _id(self, n: int = 16) -> str:
        return f"{self._rng.getrandbits(4 * n):0{n}x}"

    def _run(self) -> tuple[str, str]:
        rng = self._rng
        if not self._runs or rng.random() < 0.1:
            self._runs.append((f"wf-{rng.randint(1000, 1200)}", self._id()))
            del self._runs[:-32]
        return rng.choice(self._runs)

    def next(self) -> tuple[str, Any]:
        """(channel, data) of the next event."""
        rng = self._rng
        self.count += 1
        self._t += rng.randint(1, 40)
        wf, run = self._run()
        step = rng.choice(STEPS)
        k = rng.random()
        if self.new_schema_at is not None and self.count >= self.new_schema_at and k < 0.5:
            data: dict[str, Any] = {
                "type": "approval.requested",
                "workflow": wf,
                "run": run,
                "approval": {"id": self._id(12), "step": step, "approvers": ["alice", "bob"]},
                "deadline": self._t + 3_600_000,
                "at": self._t,
                "policy": {"quorum": 2, "escalate_after_s": 900},
            }
        elif k < 0.35:
            data = {
                "type": "step.started",
                "workflow": wf,
                "run": run,
                "step": {"name": step, "attempt": rng.randint(1, 3), "index": STEPS.index(step)},
                "worker": {"id": f"w-{rng.randint(1, 64)}", "zone": rng.choice(("eu-1", "us-2"))},
                "at": self._t,
            }
        elif k < 0.7:
            data = {
                "type": "step.finished",
                "workflow": wf,
                "run": run,
                "step": {"name": step, "attempt": rng.randint(1, 3), "index": STEPS.index(step)},
                "status": rng.choice(("ok", "ok", "ok", "failed", "retrying")),
                "duration_ms": rng.randint(3, 9000),
                "outputs": {"rows": rng.randint(0, 50000), "bytes": rng.randint(0, 1 << 22)},
                "at": self._t,
            }
        else:
            data = {
                "type": "agent.message",
                "workflow": wf,
                "id": self._id(24),
                "from": rng.choice(AGENTS),
                "to": rng.choice(AGENTS),
                "text": rng.choice(TEXTS),
                "meta": {"model": "planner-v2", "tokens": rng.randint(10, 900)},
                "at": self._t,
            }
        return f"wf:{wf}:events", data


def event_frames(
    n: int, seed: int = 1, new_schema_at: int | None = None
) -> list[tuple[bytes, bytes]]:
    """(payload, frame) pairs of the event mix."""
    import msgpack

    from frys.shared.protocol.delivery import MessageTemplate

    mix = EventMix(seed, new_schema_at)
    out = []
    seq = 40_000
    for _ in range(n):
        channel, data = mix.next()
        seq += mix._rng.randint(1, 30)
        packed = msgpack.packb(data, use_bin_type=True)
        out.append((packed, MessageTemplate(channel).msgpack(packed, seq, "engine")))
    return out


def _per_message_seconds(run: Callable[[], object], n: int, repeats: int = 3) -> float:
    """Seconds per message of ``run`` (which handles ``n`` messages), fastest pass."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best / max(n, 1)


def run_event_grid(
    n: int = 6000,
    seed: int = 1,
    weights: CostWeights | None = None,
    links: Sequence[LinkClass] = LINKS,
) -> dict[str, Any]:
    """Small messages: the event mix (and a mix where a new event type appears half-way)
    sent plain, with zstd-3 and no dictionary, with a hindsight dictionary per schema
    (learnt from the whole stream), and through the online learner (plain until it has
    learnt, then its dictionaries), priced on each link class."""
    weights = weights or CostWeights()
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for name, new_at in (("event mix", None), ("new schema", n // 2)):
        cell_rows, summary[name] = _event_pattern(name, new_at, n, seed, weights, links)
        rows += cell_rows
    return {"rows": rows, "summary": summary}


def _event_pattern(
    name: str,
    new_at: int | None,
    n: int,
    seed: int,
    weights: CostWeights,
    links: Sequence[LinkClass],
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from frys.gateway.optimiser.learner import DictionaryLearner, LearnerConfig, run_job
    from frys.gateway.optimiser.messages import compression_pays
    from frys.gateway.optimiser.schema import schema_of
    from frys.shared.protocol import zdict

    rows: list[dict[str, Any]] = []
    pairs = event_frames(n, seed, new_at)
    frames = [f for _, f in pairs]
    schemas = [schema_of("events", p) or "" for p, _ in pairs]
    raw_total = sum(len(f) for f in frames)

    # zstd-3, no dictionary
    cctx = zstandard.ZstdCompressor(level=3, write_checksum=False)
    dctx = zstandard.ZstdDecompressor()
    z3 = [cctx.compress(f) for f in frames]
    z3_enc = _per_message_seconds(lambda: [cctx.compress(f) for f in frames], n)
    z3_dec = _per_message_seconds(lambda: [dctx.decompress(f) for f in z3], n)

    # hindsight: one dictionary per schema learnt from the whole stream
    by_schema: dict[str, list[bytes]] = {}
    for sch, f in zip(schemas, frames, strict=True):
        by_schema.setdefault(sch, []).append(f)
    comps = {sch: zdict.FrameCompressor(zdict.train(fs[:2000]), 3) for sch, fs in by_schema.items()}
    decoder = zdict.FrameDecoder()
    for comp in comps.values():
        decoder.add(comp.dictionary.content)
    hind = [comps[sch].compress(f) for sch, f in zip(schemas, frames, strict=True)]
    hind_enc = _per_message_seconds(
        lambda: [comps[sch].compress(f) for sch, f in zip(schemas, frames, strict=True)], n
    )
    hind_dec = _per_message_seconds(lambda: [decoder.decode(f) for f in hind], n)

    # the online learner
    learner = DictionaryLearner(LearnerConfig(), seed=seed)
    online: list[bytes | None] = []
    train_s = 0.0
    for sch, f in zip(schemas, frames, strict=True):
        online.append(learner.compress(sch, f))
        while learner.jobs:
            job = learner.jobs.pop()
            t0 = time.perf_counter()
            result = run_job(job)
            train_s += time.perf_counter() - t0
            learner.finished(result)
    online_decoder = zdict.FrameDecoder()
    for d in learner.known.values():
        online_decoder.add(d.content)
    packed = [c for c in online if c is not None]
    on_dec = _per_message_seconds(lambda: [online_decoder.decode(c) for c in packed], len(packed))
    on_enc = hind_enc  # same operation (a dictionary compression per frame)
    steady = [(len(f), len(c)) for f, c in zip(frames, online, strict=True) if c is not None]
    steady_raw = sum(r for r, _ in steady)
    steady_wire = sum(w for _, w in steady)
    plain_bytes = raw_total
    for link in links:
        plain_cost = raw_total * 8 / weights.bandwidth(link)
        z3_cost = sum(len(c) for c in z3) * 8 / weights.bandwidth(link) + n * weights.w_cpu * (
            z3_enc + z3_dec
        )
        hind_cost = sum(len(c) for c in hind) * 8 / weights.bandwidth(link) + n * (
            weights.w_cpu * (hind_enc + hind_dec)
        )
        # Online: per message the learner's frame when compressing pays on this link.
        cost = 0.0
        sent = 0
        for f, c in zip(frames, online, strict=True):
            if c is not None and compression_pays(weights, link, len(f), len(c), on_enc, on_dec):
                cost += weights.w_cpu * (on_enc + on_dec) + len(c) * 8 / weights.bandwidth(link)
                sent += len(c)
            else:
                cost += len(f) * 8 / weights.bandwidth(link)
                sent += len(f)
        fixed = {"plain": plain_cost, "zstd-3": z3_cost, "dictionary": hind_cost}
        best = min(fixed, key=fixed.__getitem__)
        rows.append(
            {
                "pattern": name,
                "link": link.value,
                "optimiser_cost_ms": cost * 1e3,
                "best_arm": best,
                "best_cost_ms": fixed[best] * 1e3,
                "vs_best": cost / fixed[best],
                "zstd3_cost_ms": z3_cost * 1e3,
                "vs_zstd3": cost / z3_cost,
                "bytes_share": sent / plain_bytes,
            }
        )
    summary = {
        "messages": n,
        "mean_msgpack_frame_bytes": raw_total / n,
        "mean_payload_bytes": sum(len(p) for p, _ in pairs) / n,
        "schemas": len(by_schema),
        "dictionaries_learnt": len(learner.known),
        "steady_ratio": steady_raw / steady_wire if steady_wire else None,
        "steady_mean_bytes": steady_wire / len(steady) if steady else None,
        "hindsight_ratio": raw_total / sum(len(c) for c in hind),
        "zstd3_ratio": raw_total / sum(len(c) for c in z3),
        "encode_us": on_enc * 1e6,
        "decode_us": on_dec * 1e6,
        "zstd3_encode_us": z3_enc * 1e6,
        "zstd3_decode_us": z3_dec * 1e6,
        "plain_until": next((i for i, c in enumerate(online) if c is not None), None),
        "training_ms": train_s * 1e3,
        "schema_table": learner.describe(),
    }
    return rows, summary
