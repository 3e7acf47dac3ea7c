"""Tensor stream benchmark: what Frys tensor frames cost and save on representative workloads.

For each workload the benchmark reports the compression ratio (raw array bytes / encoded bytes;
for streams the steady state over a run of delta ticks, the opening keyframe left out) and the
encode and decode throughput in MB of raw array per second on one core, for the Frys codecs
side by side with plain zstd level 3 on the raw bytes and with blosc2 (shuffle + zstd, one
thread). Throughput is the best of repeated passes, so a briefly busy machine does not skew it.

Workloads:

* ``sparse_state``: float32 256x256 state; each tick 5 % of the elements, chosen at random,
  move by N(0, 0.1).
* ``dense_drift``: float32 256x256 state; each tick every element takes a random-walk step of
  N(0, 1e-4) (``drift_sigma``).
* ``embeddings``: float32 1024x384 standard-normal vectors, each tick a fresh batch (keyframes).
* ``image``: uint8 512x512x3 smooth colour gradients with N(0, 2) sensor noise (keyframes).
* ``incompressible``: uint32 256x256 of uniformly random bits, fresh every tick: frames must
  stay within raw size + header.

``run_tensor_benchmark`` is pure computation (no I/O); ``format_table`` renders its result and
``main`` is the command line (``python -m frys.loadtest.tensor_bench``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
import zstandard

from frys.shared.tensor import (
    Precision,
    TensorDecoder,
    TensorEncoder,
    TensorLimits,
)
from frys.shared.tensor.frame import HEADER_SIZE

Array = npt.NDArray[Any]
MB = 1e6
HEADER = HEADER_SIZE
"""Delta header size (the frame format's); a keyframe adds 4 bytes per dimension."""
QUANTIZE_BOUND = 1e-3
LIMITS = TensorLimits(max_bytes=1 << 30, max_elements=1 << 30, max_frame_bytes=(1 << 30) + 4096)
CHUNK = 1 << 30
"""The benchmark measures codecs, so frames are not chunked."""


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    description: str
    stream: bool
    """Ticks are successive values of one stream (deltas) rather than independent arrays."""
    ticks: list[Array]


def _sparse_state(rng: np.random.Generator, ticks: int) -> Workload:
    state = rng.standard_normal((256, 256)).astype(np.float32)
    out = [state]
    changed = state.size // 20
    for _ in range(ticks):
        state = state.copy()
        where = rng.choice(state.size, changed, replace=False)
        state.flat[where] += (0.1 * rng.standard_normal(changed)).astype(np.float32)
        out.append(state)
    return Workload("sparse_state", "float32 256x256, 5 % of elements change per tick", True, out)


def _dense_drift(rng: np.random.Generator, ticks: int, sigma: float) -> Workload:
    state = rng.standard_normal((256, 256)).astype(np.float32)
    out = [state]
    for _ in range(ticks):
        state = state + (sigma * rng.standard_normal(state.shape)).astype(np.float32)
        out.append(state)
    text = f"float32 256x256, every element drifts by N(0, {sigma:g}) per tick"
    return Workload("dense_drift", text, True, out)


def _embeddings(rng: np.random.Generator, count: int) -> Workload:
    out = [rng.standard_normal((1024, 384)).astype(np.float32) for _ in range(count)]
    return Workload("embeddings", "float32 1024x384 random normal, new batch per tick", False, out)


def _image(rng: np.random.Generator, count: int) -> Workload:
    y, x = np.mgrid[0:512, 0:512].astype(np.float64)
    base = np.stack(
        [
            128 + 100 * np.sin(x / 53.0) * np.cos(y / 71.0),
            x / 2.0,
            255 - (x + y) / 4.0,
        ],
        axis=-1,
    )
    out = [
        np.clip(np.rint(base + rng.normal(0, 2.0, base.shape)), 0, 255).astype(np.uint8)
        for _ in range(count)
    ]
    return Workload("image", "uint8 512x512x3 smooth gradients + noise", False, out)


def _incompressible(rng: np.random.Generator, ticks: int) -> Workload:
    out = [rng.integers(0, 2**32, (256, 256), dtype=np.uint32) for _ in range(ticks + 1)]
    return Workload("incompressible", "uint32 256x256 random bits, new every tick", True, out)


def workloads(
    seed: int = 1, ticks: int = 32, drift_sigma: float = 1e-4, names: Sequence[str] | None = None
) -> list[Workload]:
    """The benchmark's workloads, generated deterministically from ``seed``."""
    rng = np.random.default_rng(seed)
    makers: dict[str, Callable[[], Workload]] = {
        "sparse_state": lambda: _sparse_state(rng, ticks),
        "dense_drift": lambda: _dense_drift(rng, ticks, drift_sigma),
        "embeddings": lambda: _embeddings(rng, 4),
        "image": lambda: _image(rng, 4),
        "incompressible": lambda: _incompressible(rng, min(ticks, 8)),
    }
    unknown = set(names or ()) - makers.keys()
    if unknown:
        raise ValueError(f"unknown workloads: {', '.join(sorted(unknown))}")
    return [make() for name, make in makers.items() if names is None or name in names]


# --- one codec over one workload ----------------------------------------------------------


@dataclass(slots=True)
class _Measure:
    encoded: list[bytes]
    raw_bytes: int
    encode_seconds: float
    decode_seconds: float
    max_abs_error: float
    max_overhead: int


def _best_of(budget: float, run: Callable[[], float]) -> float:
    """Smallest duration returned by ``run`` over repeated calls within ``budget`` seconds."""
    best = run()
    deadline = time.perf_counter() + budget
    while time.perf_counter() < deadline:
        best = min(best, run())
    return best


def _measure_frys(
    work: Workload, budget: float, precision: Precision, bound: float = 0.0
) -> _Measure:
    ticks = work.ticks

    def encoder() -> TensorEncoder:
        return TensorEncoder(
            1, precision=precision, max_abs_error=bound, chunk_size=CHUNK, limits=LIMITS
        )

    if work.stream:
        enc = encoder()
        opening = enc.encode(ticks[0])[0]
        measured = ticks[1:]
        encoded = [enc.encode(t)[0] for t in measured]

        def run_encode() -> float:
            enc.encode(ticks[0], keyframe=True)
            start = time.perf_counter()
            for t in measured:
                enc.encode(t)
            return time.perf_counter() - start

    else:
        enc = encoder()
        opening = None
        measured = ticks
        encoded = [enc.encode(t, keyframe=True)[0] for t in measured]

        def run_encode() -> float:
            start = time.perf_counter()
            for t in measured:
                enc.encode(t, keyframe=True)
            return time.perf_counter() - start

    dec = TensorDecoder(1, limits=LIMITS)
    if opening is not None:
        dec.feed(opening)
    worst = 0.0
    for frame, source in zip(encoded, measured, strict=True):
        out = dec.feed(frame)
        if precision is Precision.EXACT:
            if out.tobytes() != source.tobytes():
                raise AssertionError(f"{work.name}: decoded value differs from the source")
        else:
            with np.errstate(invalid="ignore", over="ignore"):
                diff = np.abs(out.astype(np.float64) - source.astype(np.float64))
            worst = max(worst, float(np.nanmax(diff)) if diff.size else 0.0)

    def run_decode() -> float:
        if opening is not None:
            dec.feed(opening)
        start = time.perf_counter()
        for frame in encoded:
            dec.feed(frame)
        return time.perf_counter() - start

    overhead = max(
        len(f) - t.nbytes - (0 if opening is not None else 4 * t.ndim)
        for f, t in zip(encoded, measured, strict=True)
    )
    return _Measure(
        encoded,
        sum(t.nbytes for t in measured),
        _best_of(budget / 2, run_encode),
        _best_of(budget / 2, run_decode),
        worst,
        overhead,
    )


def _measure_bytes_codec(
    work: Workload,
    budget: float,
    compress: Callable[[Array], bytes],
    decompress: Callable[[bytes], Any],
) -> _Measure:
    measured = work.ticks[1:] if work.stream else work.ticks
    encoded = [compress(t) for t in measured]
    for frame, source in zip(encoded, measured, strict=True):
        if bytes(decompress(frame)) != source.tobytes():
            raise AssertionError(f"{work.name}: baseline round trip failed")

    def run_encode() -> float:
        start = time.perf_counter()
        for t in measured:
            compress(t)
        return time.perf_counter() - start

    def run_decode() -> float:
        start = time.perf_counter()
        for frame in encoded:
            decompress(frame)
        return time.perf_counter() - start

    return _Measure(
        encoded,
        sum(t.nbytes for t in measured),
        _best_of(budget / 2, run_encode),
        _best_of(budget / 2, run_decode),
        0.0,
        max(len(f) - t.nbytes for f, t in zip(encoded, measured, strict=True)),
    )


def _zstd3() -> tuple[Callable[[Array], bytes], Callable[[bytes], Any]]:
    cctx = zstandard.ZstdCompressor(level=3)
    dctx = zstandard.ZstdDecompressor()

    def compress(a: Array) -> bytes:
        packed: bytes = cctx.compress(a.data)
        return packed

    return compress, dctx.decompress


@contextmanager
def _blosc2_one_thread() -> Iterator[Any]:
    """blosc2 limited to one thread, or ``None`` when it is not installed."""
    try:
        import blosc2
    except ImportError:
        yield None
        return
    previous = blosc2.set_nthreads(1)
    try:
        yield blosc2
    finally:
        blosc2.set_nthreads(previous)


def _blosc2_codec(blosc2: Any) -> tuple[Callable[[Array], bytes], Callable[[bytes], Any]]:
    """blosc2's one-call API at its defaults: byte shuffle, zstd, compression level 1."""

    def compress(a: Array) -> bytes:
        typesize = a.dtype.itemsize // (2 if a.dtype.kind == "c" else 1)
        packed: bytes = blosc2.compress(a, typesize=typesize)
        return packed

    return compress, blosc2.decompress


# --- the benchmark --------------------------------------------------------------------------


def _row(codec: str, m: _Measure | None, note: str = "") -> dict[str, Any]:
    if m is None:
        return {"codec": codec, "ratio": None, "encode_mb_s": None, "decode_mb_s": None,
                "max_abs_error": None, "max_overhead_bytes": None, "note": note}  # fmt: skip
    size = sum(len(f) for f in m.encoded)
    return {
        "codec": codec,
        "ratio": m.raw_bytes / size if size else math.inf,
        "encode_mb_s": m.raw_bytes / m.encode_seconds / MB,
        "decode_mb_s": m.raw_bytes / m.decode_seconds / MB,
        "max_abs_error": m.max_abs_error,
        "max_overhead_bytes": m.max_overhead,
        "note": note,
    }


def run_tensor_benchmark(
    seconds_per_case: float = 2.0,
    *,
    ticks: int = 32,
    seed: int = 1,
    drift_sigma: float = 1e-4,
    cases: Sequence[str] | None = None,
    lossy: bool = True,
) -> dict[str, Any]:
    """Measure every codec on every workload; returns a JSON-ready result.

    ``seconds_per_case`` is shared by the codecs of a workload (half encoding, half decoding);
    ``ticks`` is the length of each stream after its keyframe. ``lossy`` adds the bfloat16 and
    quantised Frys modes on float workloads.
    """
    if seconds_per_case <= 0 or ticks < 1:
        raise ValueError("seconds_per_case and ticks must be positive")
    result: dict[str, Any] = {
        "seconds_per_case": seconds_per_case,
        "ticks": ticks,
        "seed": seed,
        "numpy": np.__version__,
        "zstandard": zstandard.__version__,
        "blosc2": None,
        "cases": [],
    }
    with _blosc2_one_thread() as blosc2:
        result["blosc2"] = None if blosc2 is None else blosc2.__version__
        for work in workloads(seed, ticks, drift_sigma, cases):
            float_case = work.ticks[0].dtype.kind == "f"
            codecs: list[tuple[str, Callable[[float], _Measure], str]] = [
                ("frys", partial(_measure_frys, work, precision=Precision.EXACT), "lossless"),
            ]
            if lossy and float_case:
                codecs.append(
                    ("frys bf16", partial(_measure_frys, work, precision=Precision.BFLOAT16), "")
                )
                codecs.append(
                    (
                        f"frys q{QUANTIZE_BOUND:g}",
                        partial(
                            _measure_frys,
                            work,
                            precision=Precision.QUANTIZED,
                            bound=QUANTIZE_BOUND,
                        ),
                        f"|error| <= {QUANTIZE_BOUND:g}",
                    )
                )
            zc, zd = _zstd3()
            codecs.append(
                (
                    "zstd-3",
                    partial(_measure_bytes_codec, work, compress=zc, decompress=zd),
                    "raw bytes",
                )
            )
            if blosc2 is not None:
                bc, bd = _blosc2_codec(blosc2)
                codecs.append(
                    (
                        "blosc2",
                        partial(_measure_bytes_codec, work, compress=bc, decompress=bd),
                        "shuffle+zstd clevel 1, 1 thread",
                    )
                )
            budget = seconds_per_case / (len(codecs) + (blosc2 is None))
            rows = [_row(name, measure(budget), note) for name, measure, note in codecs]
            if blosc2 is None:
                rows.append(_row("blosc2", None, "not installed"))
            result["cases"].append(
                {
                    "case": work.name,
                    "description": work.description,
                    "stream": work.stream,
                    "raw_bytes_per_tick": work.ticks[0].nbytes,
                    "rows": rows,
                }
            )
    result["targets"] = _targets(result)
    return result


def _find(result: dict[str, Any], case: str, codec: str) -> dict[str, Any] | None:
    for entry in result["cases"]:
        if entry["case"] == case:
            for row in entry["rows"]:
                if row["codec"] == codec:
                    return dict(row)
    return None


def _targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def check(name: str, case: str, key: str, target: float) -> None:
        row = _find(result, case, "frys")
        if row is not None:
            measured = row[key]
            out.append({"target": name, "goal": target, "measured": measured,
                        "met": measured >= target})  # fmt: skip

    check("sparse_state ratio (steady state)", "sparse_state", "ratio", 18.0)
    check("sparse_state encode MB/s", "sparse_state", "encode_mb_s", 1000.0)
    check("sparse_state decode MB/s", "sparse_state", "decode_mb_s", 1000.0)
    check("dense_drift ratio, lossless", "dense_drift", "ratio", 1.9)
    row = _find(result, "incompressible", "frys")
    if row is not None:
        overhead = row["max_overhead_bytes"]
        out.append({"target": "incompressible: frame <= raw + header", "goal": HEADER,
                    "measured": overhead, "met": overhead <= HEADER})  # fmt: skip
    return out


# --- output ---------------------------------------------------------------------------------


def _number(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:,.{digits}f}"


def format_table(result: dict[str, Any]) -> str:
    """The benchmark result as a plain-text table, targets last."""
    header = ("case", "codec", "ratio", "enc MB/s", "dec MB/s", "note")
    lines: list[tuple[str, ...]] = []
    for entry in result["cases"]:
        for i, row in enumerate(entry["rows"]):
            note = row["note"]
            if row["max_abs_error"]:
                note = f"{note}; max err {row['max_abs_error']:.2g}".lstrip("; ")
            if entry["case"] == "incompressible" and row["max_overhead_bytes"] is not None:
                note = f"{note}; +{row['max_overhead_bytes']} B/frame".lstrip("; ")
            lines.append(
                (
                    entry["case"] if i == 0 else "",
                    row["codec"],
                    _number(row["ratio"], 2),
                    _number(row["encode_mb_s"], 0),
                    _number(row["decode_mb_s"], 0),
                    note,
                )
            )
    widths = [max(len(r[c]) for r in [header, *lines]) for c in range(len(header))]
    right = {2, 3, 4}

    def render(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [render(header), render(tuple("-" * w for w in widths))]
    out += [render(line) for line in lines]
    blosc = result["blosc2"] or "not installed"
    out.append("")
    out.append(
        f"ratio: raw / encoded bytes (streams: steady state over {result['ticks']} delta ticks); "
        f"MB/s: raw array MB per second, one core, best pass. zstandard {result['zstandard']}, "
        f"blosc2 {blosc}, numpy {result['numpy']}."
    )
    if result.get("targets"):
        out.append("")
        for t in result["targets"]:
            mark = "met " if t["met"] else "MISSED"
            out.append(f"[{mark}] {t['target']}: {_number(t['measured'], 2)} (goal {t['goal']:g})")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Command line: run the benchmark and print the table (or JSON)."""
    parser = argparse.ArgumentParser(
        prog="python -m frys.loadtest.tensor_bench",
        description="Compression ratio and throughput of Frys tensor frames.",
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="time budget per workload")
    parser.add_argument("--ticks", type=int, default=32, help="stream ticks after the keyframe")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--drift-sigma", type=float, default=1e-4, help="dense_drift step size")
    parser.add_argument("--case", action="append", dest="cases", help="run only this workload")
    parser.add_argument("--no-lossy", action="store_true", help="skip the lossy Frys modes")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--check", action="store_true", help="exit with status 1 when a target is missed"
    )
    args = parser.parse_args(argv)
    try:
        result = run_tensor_benchmark(
            args.seconds,
            ticks=args.ticks,
            seed=args.seed,
            drift_sigma=args.drift_sigma,
            cases=args.cases,
            lossy=not args.no_lossy,
        )
    except ValueError as exc:
        parser.error(str(exc))
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    missed = any(not t["met"] for t in result["targets"])
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
