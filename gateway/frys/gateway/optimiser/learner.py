"""The dictionary learner: per message schema, learn a zstd dictionary from live traffic,
measure what it achieves, and rotate it when the traffic drifts.

A schema starts plain. Its frames (as they would be sent) are sampled until
``min_samples`` are held; then a training job is handed out (the gateway runs it off the
event loop) and its result adopted: from then on every frame of the schema is compressed
with the dictionary, once per message, whatever the number of readers. The learner keeps
the ratio each frame achieves (a winsorised mean) and the ratio the dictionary showed on
held-out samples when it was learnt; when the live ratio falls below that by more than
``drift`` (new values, a new field), it samples afresh and trains a candidate, which
replaces the dictionary only if it does better on the same fresh samples by ``margin``.
Dictionaries are immutable; a replaced one stays known (``retired``) so that readers that
still hold frames compressed with it, or fetch it later, are served.

Nothing here does I/O or reads a clock of its own: the caller passes timings in.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from frys.gateway.optimiser.estimate import WinsorisedEwma
from frys.gateway.optimiser.messages import DEFAULT_ENCODE_S
from frys.shared.protocol import zdict


@dataclass(frozen=True, slots=True)
class LearnerConfig:
    min_samples: int = 500
    """Frames of a schema sampled before a dictionary is learnt."""
    holdout: int = 100
    """Of the samples, this many are kept out of training to measure the result."""
    dict_bytes: int = 8192
    level: int = 3
    """zstd level of the compressing contexts (and of training)."""
    drift: float = 0.2
    """Retrain when the live ratio falls this far below the ratio at training."""
    margin: float = 0.08
    """A candidate replaces the dictionary only when it does this much better (readers
    fetch every new dictionary: a rotation must be worth it)."""
    min_gain: float = 1.25
    """A dictionary is used only when it compresses at least this well on held-out frames."""
    settle_messages: int = 2000
    """Messages after an adoption (or a retraining that kept the dictionary) before drift
    is judged again."""
    max_schemas: int = 512
    """Schemas tracked at once (the least used beyond that are forgotten)."""
    max_retired: int = 16
    """Replaced dictionaries remembered per schema."""


@dataclass(slots=True)
class TrainJob:
    """Samples to learn a dictionary from; run :func:`run_job` off the event loop."""

    schema: str
    train: list[bytes]
    holdout: list[bytes]
    current: zdict.Dictionary | None
    level: int
    dict_bytes: int


@dataclass(frozen=True, slots=True)
class TrainResult:
    schema: str
    dictionary: zdict.Dictionary | None
    ratio: float
    """Mean raw/compressed size of the held-out frames with the new dictionary."""
    current_ratio: float | None
    """The same with the dictionary in use (None when there was none)."""
    error: str | None = None


def _ratio(compressor: zdict.FrameCompressor, frames: list[bytes]) -> float:
    raw = sum(len(f) for f in frames)
    packed = sum(len(compressor.compress(f)) for f in frames)
    return raw / packed if packed else 1.0


def run_job(job: TrainJob) -> TrainResult:
    """Learn and measure (pure computation; takes tens of milliseconds)."""
    try:
        dictionary = zdict.train(job.train, job.dict_bytes, job.level)
    except zdict.DictionaryError as exc:
        return TrainResult(job.schema, None, 1.0, None, exc.reason)
    ratio = _ratio(zdict.FrameCompressor(dictionary, job.level), job.holdout)
    current = None
    if job.current is not None:
        current = _ratio(zdict.FrameCompressor(job.current, job.level), job.holdout)
    return TrainResult(job.schema, dictionary, ratio, current)


def _timing(prior: float) -> WinsorisedEwma:
    return WinsorisedEwma(alpha=0.1, band=1.6, restart_after=16, value=prior)


@dataclass(slots=True)
class SchemaState:
    """One schema's dictionary, samples and figures."""

    schema: str
    compressor: zdict.FrameCompressor | None = None
    trained_ratio: float | None = None
    retired: list[int] = field(default_factory=list)
    samples: list[bytes] = field(default_factory=list)
    sampled: int = 0
    """Frames offered to the current sample (reservoir sampling over them)."""
    collecting: bool = True
    training: bool = False
    messages: int = 0
    compressed: int = 0
    bytes_raw: int = 0
    bytes_wire: int = 0
    since_adopt: int = 0
    ratio: WinsorisedEwma = field(default_factory=lambda: WinsorisedEwma(alpha=0.02, band=3.0))
    enc_s: WinsorisedEwma = field(default_factory=lambda: _timing(DEFAULT_ENCODE_S))
    """Seconds to compress one frame: starts from a prior, and a timing only ever gets
    noise added (a cold cache right after a dictionary arrives, a busy core), so samples
    move it within a narrow band; only a long run of slower ones restarts it."""
    rotations: int = 0
    last_error: str | None = None

    @property
    def dictionary(self) -> zdict.Dictionary | None:
        return None if self.compressor is None else self.compressor.dictionary

    def describe(self) -> dict[str, Any]:
        d = self.dictionary
        return {
            "schema": self.schema,
            "dictionary": None if d is None else d.name,
            "messages": self.messages,
            "compressed": self.compressed,
            "bytes_raw": self.bytes_raw,
            "bytes_wire": self.bytes_wire,
            "ratio": round(self.bytes_raw / self.bytes_wire, 3) if self.bytes_wire else None,
            "live_ratio": None if self.ratio.value is None else round(self.ratio.value, 3),
            "trained_ratio": None if self.trained_ratio is None else round(self.trained_ratio, 3),
            "encode_us": None if self.enc_s.value is None else round(self.enc_s.value * 1e6, 3),
            "rotations": self.rotations,
            "retired": [zdict.format_id(i) for i in self.retired],
            "state": (
                "training"
                if self.training
                else "learning"
                if self.compressor is None
                else "resampling"
                if self.collecting
                else "compressing"
            ),
            "why": self._why(),
            "error": self.last_error,
        }

    def _why(self) -> str:
        if self.compressor is None:
            return f"plain until a dictionary is learnt ({len(self.samples)} samples held)"
        return (
            f"dictionary {self.compressor.dictionary.name} compresses held-out frames "
            f"{self.trained_ratio or 0:.2f}:1"
        )


class DictionaryLearner:
    """Every schema's dictionary (see the module docstring)."""

    def __init__(
        self,
        config: LearnerConfig | None = None,
        seed: int | None = None,
        on_job: Callable[[TrainJob], None] | None = None,
    ) -> None:
        self.config = config or LearnerConfig()
        self.schemas: dict[str, SchemaState] = {}
        self.known: dict[int, zdict.Dictionary] = {}
        """Every dictionary this learner made or adopted, retired ones included."""
        self._rng = random.Random(seed)
        self._on_job = on_job
        self.jobs: list[TrainJob] = []
        """Jobs not taken by ``on_job`` (tests and the benchmark run them inline)."""

    def state(self, schema: str) -> SchemaState:
        st = self.schemas.get(schema)
        if st is None:
            if len(self.schemas) >= self.config.max_schemas:
                self._forget_one()
            st = self.schemas[schema] = SchemaState(schema)
        return st

    def _forget_one(self) -> None:
        idle = min(
            (s for s in self.schemas.values() if not s.training),
            key=lambda s: s.messages,
            default=None,
        )
        if idle is not None:
            del self.schemas[idle.schema]

    # --- the hot path --------------------------------------------------------------------
    def compress(
        self, schema: str, frame: bytes, timed: Callable[[], float] | None = None
    ) -> bytes | None:
        """The compressed frame for the readers that decode ``zstd-dict``, or ``None``
        to send it plain (no dictionary yet, or compression would not pay). Samples the
        frame while the schema is learning. ``timed``, when given, is a clock read around
        the compression (the caller samples which frames are timed)."""
        st = self.schemas.get(schema)
        if st is None:
            st = self.state(schema)
        st.messages += 1
        st.bytes_raw += len(frame)
        if st.collecting:
            self._sample(st, frame)
        comp = st.compressor
        if comp is None:
            st.bytes_wire += len(frame)
            return None
        if timed is not None:
            t0 = timed()
            out = comp.compress(frame)
            st.enc_s.add(timed() - t0)
        else:
            out = comp.compress(frame)
        st.since_adopt += 1
        if len(out) >= len(frame):
            st.bytes_wire += len(frame)
            return None
        st.compressed += 1
        st.bytes_wire += len(out)
        st.ratio.add(len(frame) / len(out))
        if (
            not st.collecting
            and st.since_adopt >= self.config.settle_messages
            and st.trained_ratio is not None
            and st.ratio.value is not None
            and st.ratio.value < st.trained_ratio * (1.0 - self.config.drift)
        ):
            st.collecting = True  # drifted: sample afresh and train a candidate
            st.samples = []
            st.sampled = 0
        return out

    def _sample(self, st: SchemaState, frame: bytes) -> None:
        cap = self.config.min_samples
        st.sampled += 1
        if len(st.samples) < cap:
            st.samples.append(frame)
        else:
            j = self._rng.randrange(st.sampled)
            if j < cap:
                st.samples[j] = frame
        if len(st.samples) >= cap and not st.training and st.sampled >= cap:
            self._start_job(st)

    def _start_job(self, st: SchemaState) -> None:
        samples = list(st.samples)
        self._rng.shuffle(samples)
        hold = min(self.config.holdout, len(samples) // 4)
        job = TrainJob(
            st.schema,
            samples[hold:],
            samples[:hold],
            st.dictionary,
            self.config.level,
            self.config.dict_bytes,
        )
        st.training = True
        st.collecting = False
        if self._on_job is not None:
            self._on_job(job)
        else:
            self.jobs.append(job)

    # --- results -------------------------------------------------------------------------
    def finished(self, result: TrainResult) -> bool:
        """A job's result; True when its dictionary was adopted."""
        st = self.state(result.schema)
        st.training = False
        st.samples = []
        st.sampled = 0
        if result.dictionary is None:
            st.last_error = result.error
            return False
        if result.ratio < self.config.min_gain:
            st.last_error = f"a dictionary would give only {result.ratio:.2f}:1"
            return False
        if result.current_ratio is not None and result.ratio < result.current_ratio * (
            1.0 + self.config.margin
        ):
            # The dictionary in use still does as well on today's traffic: keep it, and
            # measure drift against what it does now.
            st.trained_ratio = result.current_ratio
            st.since_adopt = 0
            return False
        self.adopt(result.schema, result.dictionary, result.ratio)
        return True

    def adopt(self, schema: str, dictionary: zdict.Dictionary, ratio: float | None) -> None:
        """Use ``dictionary`` for ``schema`` from now on (learnt here, or by another
        gateway and read from the cluster state)."""
        st = self.state(schema)
        old = st.dictionary
        if old is not None and old.id == dictionary.id:
            return
        self.known[dictionary.id] = dictionary
        if old is not None:
            st.retired.append(old.id)
            del st.retired[: -self.config.max_retired]
            st.rotations += 1
        st.compressor = zdict.FrameCompressor(dictionary, self.config.level)
        st.enc_s = _timing(st.enc_s.value or DEFAULT_ENCODE_S)
        st.trained_ratio = ratio
        st.since_adopt = 0
        st.collecting = False
        st.ratio.reset()
        st.last_error = None

    def lookup(self, dict_id: int) -> zdict.Dictionary | None:
        return self.known.get(dict_id)

    def describe(self) -> list[dict[str, Any]]:
        return [s.describe() for s in sorted(self.schemas.values(), key=lambda s: -s.messages)]

    def snapshot(self, schema: str) -> dict[str, Any]:
        """What is persisted of a schema (cluster state): its dictionary and figures."""
        st = self.state(schema)
        d = st.dictionary
        return {
            "schema": schema,
            "dict": None if d is None else d.name,
            "trained_ratio": st.trained_ratio,
            "retired": [zdict.format_id(i) for i in st.retired],
            "messages": st.messages,
            "bytes_raw": st.bytes_raw,
            "bytes_wire": st.bytes_wire,
        }
