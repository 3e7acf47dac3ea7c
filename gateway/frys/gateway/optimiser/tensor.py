"""The optimiser of one tensor stream on one link class: encode, measure, probe, adapt.

It wraps a :class:`~frys.shared.tensor.TensorEncoder` whose arm it sets before every frame.
After each frame it shadow-probes other arms on a block of what that frame coded (a
keyframe's lanes or a delta's XOR lanes): encodes the block with the candidate, decodes it
again, and times both. Nothing probed is ever sent. Probing spends a budget that grows with
the CPU the stream's own encoding takes (``probe_share`` of it, 5 % by default) and may be
saved up to a cap, so a burst of probes after a change of regime stays within the average.
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from frys.gateway.optimiser.bandit import ArmSelector
from frys.gateway.optimiser.cost import CostWeights, LinkClass
from frys.gateway.optimiser.estimate import WinsorisedEwma
from frys.shared.tensor import TensorEncoder
from frys.shared.tensor.arms import ARMS, Arm, ArmCoder, Method, stride_for
from frys.shared.tensor.codecs import decode_dense, decode_sparse, decompressor
from frys.shared.tensor.encoder import LastInput
from frys.shared.tensor.frame import HEADER_SIZE, Codec
from frys.shared.tensor.limits import DEFAULT_CHUNK_SIZE, DEFAULT_LIMITS, TensorLimits

PROBE_SHARE = 0.04
"""Probing may take this fraction of the CPU the stream's own encoding takes (the opening
look at every arm comes on top, so a stream of a hundred frames stays under 5 %)."""
MIN_BLOCK_BYTES = 8 * 1024
BLOCK_FRACTION = 8
"""Probes code 1/8 of a frame (at least :data:`MIN_BLOCK_BYTES`)."""
BANK_FRAMES = 4.0
"""Probe budget can be saved up to this many frames' worth of encoding time (a burst after
a change of regime re-measures every arm at once, within the average)."""
OPENING_FRAMES = 1.0
"""Budget granted at the first frame of each kind (keyframe, delta), in frames' worth of
the gateway's CPU, for a first look at every arm; it counts against the share."""
MAX_PROBES_PER_FRAME = 3
DECIDE_EVERY = 8
"""Without news (a probe, a change of regime) the choice is reviewed every this many frames:
deciding costs as much as encoding a small frame."""
REPEATS = 2
SMALL_BLOCK_DIVISOR = 8
PROBE_WORK = REPEATS * (1 + 1 / SMALL_BLOCK_DIVISOR)
"""A probe codes its block and a small one, :data:`REPEATS` times each."""
INITIAL_ARM = {
    LinkClass.LOCAL: "raw",
    LinkClass.FAST: "smallest-z1",
    LinkClass.SLOW: "smallest-z1",
}
"""Where a stream starts before anything is measured: a prior per link class."""
PROBE_PRIOR = {
    LinkClass.LOCAL: ("raw", "lz4", "sparse-z1", "smallest-z1", "plain-z1", "bytedelta-z1"),
    LinkClass.FAST: ("smallest-z1", "lz4", "bytedelta-z1", "sparse-z1", "shuffle-z1", "raw"),
    LinkClass.SLOW: ("smallest-z1", "bytedelta-z1", "shuffle-z3", "sparse-z1", "shuffle-z1"),
}
"""The order arms get their first look in, per link class: likely winners first."""


class ArmOptimiser:
    """What choosing an arm for one stream on one link class takes, whoever encodes: the
    selector, the probes and their budget, the figures (see the module docstring)."""

    def __init__(
        self,
        link: LinkClass,
        weights: CostWeights | None = None,
        *,
        arms: Sequence[Arm] = ARMS,
        probe_share: float = PROBE_SHARE,
        seed: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
        initial: str | None = None,
    ) -> None:
        self.arms = {a.name: a for a in arms}
        if initial is None:
            initial = INITIAL_ARM.get(link)
        order = [a for a in PROBE_PRIOR[link] if a in self.arms]
        order += [a for a in self.arms if a not in order]
        self.selector = ArmSelector(order, link, weights or CostWeights(), initial=initial)
        self.probe_share = probe_share
        self._coder = ArmCoder()
        self._coder.warm(list(arms))
        self._dctx = decompressor()
        self._rng = random.Random(seed)
        self._clock = clock
        self._frame_s = WinsorisedEwma(alpha=0.2, band=10.0)
        self._opening = 0.0
        self._probe_cost: dict[tuple[str, str], float] = {}
        """What the last probe of each arm took: the next one is expected to take as much."""
        self._opened: set[str] = set()
        self.encode_seconds = 0.0
        """CPU spent encoding the frames sent."""
        self.probe_seconds = 0.0
        """CPU spent probing (encoding and decoding off the wire)."""
        self.other_seconds = 0.0
        """The rest of the gateway's CPU on these frames, as reported by the caller."""
        self.overhead_seconds = 0.0
        """CPU of the optimiser's own bookkeeping (measuring, deciding), probes apart."""
        self.probes = 0
        self.frames = 0
        self.bytes_raw = 0
        self.bytes_wire = 0

    @property
    def arm(self) -> str:
        return self.selector.current

    def _after(
        self, last: LastInput, wire: int, spent: float, other_seconds: float, start: float
    ) -> None:
        """A frame of ``wire`` bytes coded ``last`` in ``spent`` seconds (from ``start``):
        measure it, probe, and review the choice."""
        kind = "key" if last.keyframe else "delta"
        raw = last.lanes.nbytes
        self.frames += 1
        self.bytes_raw += raw
        self.bytes_wire += wire
        self.encode_seconds += spent
        self.other_seconds += other_seconds
        self.selector.frame_sent(kind)
        self.selector.frame_size(raw)
        if not self.selector.frame_s_per_wire_byte:
            self.selector.frame_s_per_wire_byte = framing_seconds_per_byte()
        coding = max(spent - self.selector.frame_s_per_wire_byte * wire, spent * 0.05)
        regime = self.selector.observe(self.selector.current, kind, raw, wire, coding, None)
        self._frame_s.add(max(spent, 1e-7))
        if kind not in self._opened:
            self._opened.add(kind)
            self._opening += OPENING_FRAMES * (spent + other_seconds)
        probed = self.probe_seconds
        self._probe(last, kind)
        if regime or probed != self.probe_seconds or self.frames % DECIDE_EVERY == 0:
            self.selector.decide()
        self.overhead_seconds += self._clock() - start - spent - (self.probe_seconds - probed)

    @property
    def bank(self) -> float:
        """Probe seconds available now: the share of the encoding so far (plus the opening
        credit) not yet spent, at most :data:`BANK_FRAMES` frames' worth at once."""
        gateway = self.encode_seconds + self.other_seconds
        allowance = self.probe_share * gateway + self._opening - self.probe_seconds
        cap = BANK_FRAMES * (self._frame_s.value or 0.0)
        return min(allowance, cap)

    # --- probes --------------------------------------------------------------------------
    def _probe(self, last: Any, kind: str) -> None:
        """Probe a few arms on blocks of the last input. Each arm is timed on a block and
        on a block an eighth of its size: the two give its per-call and per-byte costs,
        and so what it would cost on a whole frame (a block pays the per-call cost on
        fewer bytes, which would make arms with more steps look worse than they are)."""
        bank = self.bank
        if bank <= 0:
            return
        selector = self.selector
        size = self._block_bytes(last)
        frame = int(last.lanes.nbytes)
        fallback = selector.predicted_seconds(selector.current, kind, size) or 0.0
        started = self._clock()
        done = 0
        for name in selector.probe_order(kind):
            if done >= MAX_PROBES_PER_FRAME:
                break
            cost = self._probe_cost.get((name, kind))
            if cost is None:
                predicted = selector.predicted_seconds(name, kind, size)
                cost = PROBE_WORK * (predicted if predicted is not None else 3 * fallback)
            if bank <= cost:
                break  # save up for the arm most needed rather than probe a cheaper one
            t0 = self._clock()
            timed = self._measure(self.arms[name], last, size, frame)
            took = self._clock() - t0
            bank -= took
            self._probe_cost[(name, kind)] = took
            done += 1
            if timed is not None:
                enc_s, dec_s, wire_share = timed
                own = name == selector.current
                selector.observe(
                    name,
                    kind,
                    frame,
                    None if own else int(wire_share * frame) + HEADER_SIZE,
                    None if own else enc_s,
                    dec_s,
                )
            if bank <= 0:
                break
        self.probe_seconds += self._clock() - started
        self.probes += done

    def _measure(
        self, arm: Arm, last: Any, size: int, frame: int
    ) -> tuple[float, float, float] | None:
        """Whole-frame encode and decode seconds of ``arm`` extrapolated from two block
        sizes, and its wire bytes per raw byte (from the larger block)."""
        start, n = self._block(last, size)
        big = self._code(self.arms[arm.name], last, start, n)
        small = self._code(self.arms[arm.name], last, start, max(1, n // SMALL_BLOCK_DIVISOR))
        if big is None or small is None:
            return None
        enc_big, dec_big, raw_big, wire_big = big
        enc_small, dec_small, raw_small, _ = small
        span = raw_big - raw_small
        if span <= 0:
            return enc_big * frame / raw_big, dec_big * frame / raw_big, wire_big / raw_big

        def whole(t_big: float, t_small: float) -> float:
            per_byte = max((t_big - t_small) / span, 0.0)
            fixed = max(t_small - per_byte * raw_small, 0.0)
            return max(fixed + per_byte * frame, t_big * frame / raw_big * 0.2)

        return whole(enc_big, enc_small), whole(dec_big, dec_small), wire_big / raw_big

    def _block_bytes(self, last: Any) -> int:
        total = int(last.lanes.nbytes)
        return min(total, max(MIN_BLOCK_BYTES, total // BLOCK_FRACTION))

    def _block(self, last: Any, size: int) -> tuple[int, int]:
        """Element range of a block of about ``size`` bytes, at a random place."""
        per = last.lanes_per_element
        count = last.lanes.size // max(per, 1)
        item = last.lanes.dtype.itemsize * per
        n = count if size >= count * item else max(1, size // item)
        start = 0 if n >= count else self._rng.randrange(0, count - n + 1)
        stride = stride_for(last.shape) if last.keyframe else 1
        if stride > 1:
            start -= start % stride
        return start, n

    def _code(
        self, arm: Arm, last: Any, start: int, n: int
    ) -> tuple[float, float, int, int] | None:
        """Encode and decode elements ``start:start+n`` of the last input with ``arm``:
        (encode s, decode s, raw bytes, payload bytes), ``None`` for an empty block. Each
        is timed :data:`REPEATS` times and the fastest kept: a busy machine only ever adds
        time, so the fastest run is the least disturbed one."""
        per = last.lanes_per_element
        lanes = last.lanes[start * per : (start + n) * per]
        raw = lanes.nbytes
        if raw == 0:
            return None
        clock = self._clock
        coder = self._coder
        if last.keyframe:
            method = Method.SHUFFLE_ZSTD if arm.keyframe is Method.SPARSE else arm.keyframe
            stride = stride_for(last.shape) * per

            def encode() -> tuple[Codec, bytes]:
                return coder.dense(method, lanes, arm.level, stride)

        else:
            changed = last.changed[start : start + n]
            changes = int(np.count_nonzero(changed))

            def encode() -> tuple[Codec, bytes]:
                if changes == 0:
                    return Codec.UNCHANGED, b""
                return coder.delta(arm, lanes, changed, changes, per)

        enc_s = dec_s = float("inf")
        codec, payload = Codec.UNCHANGED, b""
        for _ in range(REPEATS):
            t0 = clock()
            codec, payload = encode()
            t1 = clock()
            if codec in (Codec.SPARSE_BITMAP, Codec.SPARSE_GAPS):
                decode_sparse(codec, memoryview(payload), n, per, lanes.dtype, self._dctx)
            elif codec is not Codec.UNCHANGED:
                decode_dense(codec, memoryview(payload), lanes.size, lanes.dtype, self._dctx)
            t2 = clock()
            enc_s, dec_s = min(enc_s, t1 - t0), min(dec_s, t2 - t1)
        return enc_s, dec_s, raw, len(payload)

    def describe(self) -> dict[str, Any]:
        out = self.selector.describe()
        out.update(
            {
                "bytes_raw": self.bytes_raw,
                "bytes_wire": self.bytes_wire,
                "ratio": round(self.bytes_raw / self.bytes_wire, 3) if self.bytes_wire else None,
                "encode_ms": round(self.encode_seconds * 1e3, 3),
                "probe_ms": round(self.probe_seconds * 1e3, 3),
                "probe_share": (
                    round(self.probe_seconds / (self.encode_seconds + self.other_seconds), 4)
                    if self.encode_seconds
                    else None
                ),
            }
        )
        return out


class TensorStreamOptimiser(ArmOptimiser):
    """Encodes one stream for one link class with the arm its measurements favour."""

    def __init__(
        self,
        stream_id: int,
        link: LinkClass,
        weights: CostWeights | None = None,
        *,
        arms: Sequence[Arm] = ARMS,
        probe_share: float = PROBE_SHARE,
        epoch: int | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        limits: TensorLimits = DEFAULT_LIMITS,
        seed: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
        initial: str | None = None,
    ) -> None:
        super().__init__(
            link,
            weights,
            arms=arms,
            probe_share=probe_share,
            seed=seed,
            clock=clock,
            initial=initial,
        )
        self.encoder = TensorEncoder(
            stream_id,
            epoch=epoch,
            chunk_size=chunk_size,
            limits=limits,
            arm=self.arms[self.selector.current],
        )

    def encode(
        self, array: npt.ArrayLike, keyframe: bool = False, other_seconds: float = 0.0
    ) -> list[bytes]:
        """The stream's next frames, with the arm in use; then measure, probe, decide.

        ``other_seconds`` is the rest of the CPU the gateway spent on this frame (a relay
        applies the publisher's frame to its replica before encoding it again): the probe
        budget is a share of the gateway's CPU, not of the encoding alone."""
        self.encoder.arm = self.arms[self.selector.current]
        start = self._clock()
        frames = self.encoder.encode(array, keyframe=keyframe)
        spent = self._clock() - start
        last = self.encoder.last_input()
        assert last is not None
        self._after(last, sum(len(f) for f in frames), spent, other_seconds, start)
        return frames


_FRAMING_S_PER_BYTE: list[float] = []


def framing_seconds_per_byte() -> float:
    """What a frame costs per wire byte apart from its payload coding (CRC and one copy),
    measured once on this machine."""
    if not _FRAMING_S_PER_BYTE:
        buf = bytes(256 * 1024)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            zlib.crc32(buf)
            _ = b"\x00" + buf
            best = min(best, time.perf_counter() - t0)
        _FRAMING_S_PER_BYTE.append(best / len(buf))
    return _FRAMING_S_PER_BYTE[0]


def whole_arm(arm: Arm | str) -> Arm:
    """``arm`` by name or value (for configuration)."""
    if isinstance(arm, Arm):
        return arm
    for candidate in ARMS:
        if candidate.name == arm:
            return candidate
    raise ValueError(f"unknown arm {arm!r}")
