"""The gateway's side of the protocol optimiser for small messages.

The pure parts (:mod:`frys.gateway.optimiser`) decide; this module feeds them and does the
I/O: the hub asks it, once per message per tick, for the compressed frame of a message
(:meth:`MessageOptimiser.compress`) and whether sending it pays on a wire class's link
(:meth:`MessageOptimiser.pays`); training jobs run in a worker thread; dictionaries and
per-schema figures go to the cluster state (:class:`DictionaryStore`, NATS in production)
so that every gateway compresses with the same dictionaries, a restarted one starts warm,
and any gateway serves any dictionary (``GET /dict/{id}``). What it has learnt and why is
described by :meth:`MessageOptimiser.describe` (``GET /optimiser``, ``stats``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from frys.gateway.optimiser.cost import CostWeights, LinkClass
from frys.gateway.optimiser.estimate import WinsorisedEwma
from frys.gateway.optimiser.learner import (
    DictionaryLearner,
    LearnerConfig,
    TrainJob,
    TrainResult,
    run_job,
)
from frys.gateway.optimiser.links import LinkEstimator
from frys.gateway.optimiser.messages import DEFAULT_DECODE_S, compression_pays
from frys.gateway.optimiser.schema import schema_of
from frys.gateway.optimiser.transcode import FrameTranscoder
from frys.gateway.wire import WireClass
from frys.shared.protocol import zdict
from frys.shared.protocol.channels import Channel, ChannelKind
from frys.shared.tensor import TensorError, read_header

log = logging.getLogger("frys.gateway.optimise")

HINT_AFTER_FRAMES = 32
"""A stream's choice is shared once it has settled this far (and at every switch)."""
MAX_TRANSCODERS = 4096
"""(channel, stream, link class) re-encoded at once; beyond, frames pass as they came."""
PAYS_MARGIN = 0.1
"""Hysteresis of the compress-or-not decision of a link class."""
TIME_EVERY = 64
"""One compression in this many is timed (a clock read costs as much as a tenth of one)."""
COMPRESSED_KINDS = frozenset(
    {ChannelKind.EVENTS, ChannelKind.STATE, ChannelKind.COLLAB, ChannelKind.AGENT}
)
"""Channels whose messages are compressed (presence notices are few and small)."""


class DictionaryStore(Protocol):
    """Where learnt dictionaries and figures live so every gateway shares them."""

    async def put_dictionary(self, dictionary: zdict.Dictionary) -> None: ...

    async def get_dictionary(self, dict_id: int) -> bytes | None: ...

    async def put_schema(self, schema: str, state: dict[str, Any]) -> None: ...

    async def schemas(self) -> dict[str, dict[str, Any]]: ...

    async def watch(self, on_schema: Callable[[str, dict[str, Any]], Awaitable[None]]) -> None: ...

    async def put_stream(self, name: str, state: dict[str, Any]) -> None: ...

    async def streams(self) -> dict[str, dict[str, Any]]: ...

    def keep(self, in_use: Callable[[], list[zdict.Dictionary]]) -> None: ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class ClassFigures:
    """Bytes and messages of one transmission class (link class of compressed readers)."""

    messages: int = 0
    compressed: int = 0
    bytes_raw: int = 0
    bytes_wire: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "compressed": self.compressed,
            "bytes_raw": self.bytes_raw,
            "bytes_wire": self.bytes_wire,
            "ratio": round(self.bytes_raw / self.bytes_wire, 3) if self.bytes_wire else None,
        }


@dataclass(slots=True)
class OptimiserSettings:
    w_cpu: float = 1.0
    min_samples: int = 500
    dict_bytes: int = 8192
    level: int = 3


@dataclass
class MessageOptimiser:
    """Small messages: dictionaries per schema, compressed once per message (see the
    module docstring)."""

    settings: OptimiserSettings = field(default_factory=OptimiserSettings)
    store: DictionaryStore | None = None
    loopback_local: bool = True
    """Readers on a loopback address are on this host (link class ``local``)."""

    def __post_init__(self) -> None:
        s = self.settings
        self.weights = CostWeights(w_cpu=s.w_cpu)
        self.learner = DictionaryLearner(
            LearnerConfig(
                min_samples=s.min_samples,
                holdout=max(10, min(100, s.min_samples // 5)),
                dict_bytes=s.dict_bytes,
                level=s.level,
            ),
            on_job=self._job,
        )
        self.classes: dict[str, ClassFigures] = {}
        self.decode_s = WinsorisedEwma(alpha=0.2, band=1.6, restart_after=8)
        """Measured decoding time of a compressed frame (sampled at each adoption)."""
        self.trainings = 0
        self.training_s = 0.0
        self.store_errors = 0
        self._count = 0
        self._compressing: dict[LinkClass, bool] = {}
        self.transcoders: dict[tuple[Channel, int, LinkClass], FrameTranscoder] = {}
        """Tensor streams re-encoded per link class for readers that declared tensor-ext."""
        self.stream_hints: dict[str, str] = {}
        """The arm each stream and link class last chose, here or on another gateway."""
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- the hub's hot path --------------------------------------------------------------
    def compress(self, kind: ChannelKind, packed: bytes, frame: bytes) -> bytes | None:
        """The compressed ``frame`` (a msgpack ``message`` frame whose data is ``packed``),
        or ``None`` to send it plain. Called once per message, whatever the readers."""
        if kind not in COMPRESSED_KINDS:
            return None
        schema = schema_of(kind.value, packed)
        if schema is None:
            return None
        self._count += 1
        timed = time.perf_counter if self._count % TIME_EVERY == 0 else None
        return self.learner.compress(schema, frame, timed)

    def pays(self, link: LinkClass | None, raw: int, wire: int, readers: int = 1) -> bool:
        """Whether a reader on ``link`` gets the compressed frame (else the plain one). The
        encoding is shared by the message's ``readers``; a class that compresses keeps
        doing so until plain is clearly cheaper, and the other way round (hysteresis), so
        readers do not flap between the two forms on noisy timings."""
        key = link or LinkClass.FAST
        enc = self._encode_estimate()
        dec = self.decode_s.value if self.decode_s.value is not None else DEFAULT_DECODE_S
        compressing = self._compressing.get(key, True)
        margin = 1.0 + PAYS_MARGIN if compressing else 1.0 - PAYS_MARGIN
        # compressed < plain · margin  ⇔  compressed / margin < plain
        pays = compression_pays(
            self.weights, key, raw * margin, wire, enc, dec, readers=max(readers, 1)
        )
        if pays is not compressing:
            self._compressing[key] = pays
        return pays

    def _encode_estimate(self) -> float | None:
        values = [s.enc_s.value for s in self.learner.schemas.values() if s.enc_s.value]
        return sum(values) / len(values) if values else None

    def account(self, link: LinkClass | None, raw: int, wire: int | None) -> None:
        """A message framed for the class of ``link`` (``wire`` None: sent plain)."""
        key = (link or LinkClass.FAST).value
        figures = self.classes.get(key)
        if figures is None:
            figures = self.classes[key] = ClassFigures()
        figures.messages += 1
        figures.bytes_raw += raw
        if wire is None:
            figures.bytes_wire += raw
        else:
            figures.compressed += 1
            figures.bytes_wire += wire

    # --- tensor streams ------------------------------------------------------------------
    def transcode(self, channel: Channel, frame: memoryview, link: LinkClass) -> bytes | None:
        """A relayed tensor frame re-encoded for readers on ``link`` (once per class), or
        ``None`` to send it as it came."""
        try:
            stream = read_header(frame).stream_id
        except TensorError:
            return None
        key = (channel, stream, link)
        transcoder = self.transcoders.get(key)
        if transcoder is None:
            if len(self.transcoders) >= MAX_TRANSCODERS:
                return None
            hint = self.stream_hints.get(_stream_name(channel, stream, link))
            transcoder = self.transcoders[key] = FrameTranscoder(link, self.weights, initial=hint)
        switches = transcoder.selector.switches
        out = transcoder.transcode(frame)
        if transcoder.selector.switches != switches or transcoder.frames == HINT_AFTER_FRAMES:
            self._share_stream(channel, stream, link, transcoder)
        return out

    def _share_stream(
        self, channel: Channel, stream: int, link: LinkClass, transcoder: FrameTranscoder
    ) -> None:
        """A stream's choice goes to the cluster state: a gateway that starts (or that this
        stream's readers move to) starts from it instead of the link class's prior."""
        name = _stream_name(channel, stream, link)
        self.stream_hints[name] = transcoder.arm
        if self.store is None:
            return
        d = transcoder.selector.decision()
        state = {"stream": name, "arm": d.arm, "why": d.reason, "costs": d.costs}
        self._spawn(self._put_stream(name, state))

    async def _put_stream(self, name: str, state: dict[str, Any]) -> None:
        assert self.store is not None
        try:
            await self.store.put_stream(name, state)
        except Exception as exc:
            self.store_errors += 1
            log.debug("could not store the choice of %s: %s", name, exc)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:
            work.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def forget_channel(self, channel: Channel) -> None:
        """The channel has no subscriber here any more: its transcoders go."""
        for key in [k for k in self.transcoders if k[0] == channel]:
            del self.transcoders[key]

    def describe_tensors(self, channel: Channel | None = None) -> dict[str, Any]:
        """Per stream and link class: the arm, the estimated cost of every arm, why."""
        out: dict[str, Any] = {}
        for (ch, stream, link), transcoder in sorted(
            self.transcoders.items(), key=lambda kv: (kv[0][0].name, kv[0][1], kv[0][2].value)
        ):
            if channel is None or ch == channel:
                name = f"{ch.name}#{stream}" if channel is None else str(stream)
                out.setdefault(name, {})[link.value] = transcoder.describe()
        return out

    # --- training and the cluster state --------------------------------------------------
    def _job(self, job: TrainJob) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.learner.jobs.append(job)
            return
        task = loop.create_task(self._train(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _train(self, job: TrainJob) -> None:
        started = time.perf_counter()
        try:
            result = await asyncio.to_thread(run_job, job)
        except Exception:
            log.exception("training a dictionary for %s failed", job.schema)
            result = TrainResult(job.schema, None, 1.0, None, "training failed")
        self.trainings += 1
        self.training_s += time.perf_counter() - started
        if self.learner.finished(result) and result.dictionary is not None:
            self._measure_decode(result.dictionary, job.holdout)
            await self._publish(job.schema, result.dictionary)

    def _measure_decode(self, dictionary: zdict.Dictionary, frames: list[bytes]) -> None:
        if not frames:
            return
        comp = zdict.FrameCompressor(dictionary, self.settings.level)
        packed = [comp.compress(f) for f in frames]
        dec = zdict.FrameDecoder()
        dec.add(dictionary.content)
        best = float("inf")
        for _ in range(3):  # the fastest pass: the least disturbed one
            started = time.perf_counter()
            for p in packed:
                dec.decode(p)
            best = min(best, time.perf_counter() - started)
        self.decode_s.add(best / len(packed))

    async def _publish(self, schema: str, dictionary: zdict.Dictionary) -> None:
        if self.store is None:
            return
        try:
            await self.store.put_dictionary(dictionary)
            await self.store.put_schema(schema, self.learner.snapshot(schema))
        except Exception as exc:
            self.store_errors += 1
            log.warning("could not store dictionary %s: %s", dictionary.name, exc)

    async def start(self) -> None:
        """Start warm from the cluster state, then follow what other gateways learn."""
        if self.store is None:
            return
        try:
            self.stream_hints.update(
                {name: s["arm"] for name, s in (await self.store.streams()).items()}
            )
            for schema, state in (await self.store.schemas()).items():
                await self.adopt_shared(schema, state)
            await self.store.watch(self.adopt_shared)
            self.store.keep(self.in_use)
        except Exception as exc:
            self.store_errors += 1
            log.warning("optimiser cluster state unavailable: %s", exc)

    async def adopt_shared(self, schema: str, state: dict[str, Any]) -> None:
        """A schema's dictionary as the cluster state has it (learnt here or elsewhere)."""
        name = state.get("dict")
        if not isinstance(name, str) or self.store is None:
            return
        try:
            dict_id = zdict.parse_id(name)
        except zdict.DictionaryError:
            return
        current = self.learner.state(schema).dictionary
        if current is not None and current.id == dict_id:
            return
        dictionary = await self.fetch(dict_id)
        if dictionary is None:
            return
        ratio = state.get("trained_ratio")
        self.learner.adopt(schema, dictionary, float(ratio) if ratio else None)
        for retired in state.get("retired") or ():
            if isinstance(retired, str):
                self._remember(retired)

    def _remember(self, name: str) -> None:
        try:
            dict_id = zdict.parse_id(name)
        except zdict.DictionaryError:
            return
        if dict_id not in self.learner.known and self.store is not None:
            task = asyncio.get_running_loop().create_task(self.fetch(dict_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def fetch(self, dict_id: int) -> zdict.Dictionary | None:
        """A dictionary by id: known here, or from the cluster state (checked: a stored
        entry whose bytes are not the id asked for is refused)."""
        known = self.learner.lookup(dict_id)
        if known is not None:
            return known
        if self.store is None:
            return None
        content = await self.store.get_dictionary(dict_id)
        if content is None:
            return None
        try:
            dictionary = zdict.check_dictionary(content, dict_id)
        except zdict.DictionaryError as exc:
            log.warning("stored dictionary %s refused: %s", zdict.format_id(dict_id), exc)
            return None
        self.learner.known[dictionary.id] = dictionary
        return dictionary

    def in_use(self) -> list[zdict.Dictionary]:
        """Dictionaries that frames may still name: every schema's current one and the
        ones it replaced (a reader may still hold frames compressed with those)."""
        out = []
        for st in self.learner.schemas.values():
            if st.dictionary is not None:
                out.append(st.dictionary)
            out += [d for i in st.retired if (d := self.learner.known.get(i)) is not None]
        return out

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.store is not None:
            await self.store.close()

    # --- what it reports -----------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        enc = self._encode_estimate()
        return {
            "messages": {
                "schemas": self.learner.describe(),
                "classes": {k: v.as_dict() for k, v in sorted(self.classes.items())},
                "encode_us": None if enc is None else round(enc * 1e6, 3),
                "decode_us": (
                    None if self.decode_s.value is None else round(self.decode_s.value * 1e6, 3)
                ),
                "compress_pays": {link.value: self.pays(link, 220, 70) for link in LinkClass},
                "dictionaries": sorted(d.name for d in self.learner.known.values()),
                "trainings": self.trainings,
                "training_ms": round(self.training_s * 1e3, 1),
                "store_errors": self.store_errors,
                "weights": {"w_cpu": self.weights.w_cpu},
            }
        }

    def describe_session(
        self, kind: ChannelKind, wire: WireClass, link: LinkEstimator | None
    ) -> dict[str, Any]:
        """A session's view (``stats``): its wire class, its link, and the schemas of the
        channel's kind with their dictionaries and figures."""
        prefix = f"{kind.value}:"
        return {
            "wire": {
                "dictionary": wire.dictionary,
                "tensor_ext": wire.tensor_ext,
                "link": None if wire.link is None else wire.link.value,
            },
            "link": None if link is None else link.describe(),
            "schemas": [s for s in self.learner.describe() if s["schema"].startswith(prefix)],
        }

    def describe_channel(
        self, channel: Channel, wire: WireClass, link: LinkEstimator | None
    ) -> dict[str, Any]:
        """``stats`` of a channel: the session's view and the channel's tensor streams."""
        out = self.describe_session(channel.kind, wire, link)
        out["tensors"] = self.describe_tensors(channel)
        return out

    def totals(self) -> dict[str, int]:
        """Figures summed over the transmission classes (for ``/metrics``)."""
        out = {"messages": 0, "compressed": 0, "bytes_raw": 0, "bytes_wire": 0}
        for figures in self.classes.values():
            out["messages"] += figures.messages
            out["compressed"] += figures.compressed
            out["bytes_raw"] += figures.bytes_raw
            out["bytes_wire"] += figures.bytes_wire
        out["dictionaries"] = len(self.learner.known)
        out["trainings"] = self.trainings
        return out


def _stream_name(channel: Channel, stream: int, link: LinkClass) -> str:
    return f"{channel.name}#{stream}@{link.value}"


# --- the gateway's entry points -------------------------------------------------------------


class _Config(Protocol):
    @property
    def optimiser(self) -> bool: ...
    @property
    def optimiser_w_cpu(self) -> float: ...
    @property
    def optimiser_min_samples(self) -> int: ...
    @property
    def optimiser_loopback_local(self) -> bool: ...
    @property
    def dict_retention_s(self) -> float: ...


class _Writer(Protocol):
    wire: WireClass
    link: LinkEstimator | None


class _Hub(Protocol):
    def tensor_totals(self) -> dict[str, int]: ...


def build_optimiser(config: _Config, bus: Any = None) -> MessageOptimiser | None:
    """The gateway's optimiser as configured (``None`` when ``optimiser`` is off); with a
    bus, its learnt state lives in the installation's NATS (:mod:`frys.gateway.dictstore`)."""
    if not config.optimiser:
        return None
    store: DictionaryStore | None = None
    if bus is not None:
        from frys.gateway.dictstore import NatsDictionaryStore

        store = NatsDictionaryStore(bus, config.dict_retention_s)
    return MessageOptimiser(
        OptimiserSettings(w_cpu=config.optimiser_w_cpu, min_samples=config.optimiser_min_samples),
        store,
        config.optimiser_loopback_local,
    )


def optimiser_report(
    optimiser: MessageOptimiser | None, writers: list[_Writer], hub: _Hub, gateway: str
) -> dict[str, Any]:
    """``GET /optimiser``: sessions per wire class, the small-message decisions and their
    evidence, and the tensor relays' figures."""
    classes: dict[str, int] = {}
    for writer in writers:
        w = writer.wire
        name = (
            ("msgpack" if w.binary else "json")
            + ("+zstd-dict" if w.dictionary else "")
            + ("+tensor-ext" if w.tensor_ext else "")
            + (f"@{w.link.value}" if w.link is not None else "")
        )
        classes[name] = classes.get(name, 0) + 1
    out: dict[str, Any] = {"gateway": gateway, "enabled": optimiser is not None}
    out["sessions_by_class"] = dict(sorted(classes.items()))
    if optimiser is not None:
        out.update(optimiser.describe())
    out["tensors"] = {
        "totals": hub.tensor_totals(),
        "streams": {} if optimiser is None else optimiser.describe_tensors(),
    }
    return out


def optimiser_metrics(optimiser: MessageOptimiser | None) -> str:
    """Prometheus text of the optimiser's totals (appended to ``/metrics``)."""
    if optimiser is None:
        return ""
    lines = [
        "# HELP frys_optimiser_total Protocol optimiser figures, small messages.",
        "# TYPE frys_optimiser_total counter",
    ]
    for key, value in optimiser.totals().items():
        lines.append(f'frys_optimiser_total{{figure="{key}"}} {value}')
    lines.append("# HELP frys_optimiser_class_bytes Bytes per transmission class.")
    lines.append("# TYPE frys_optimiser_class_bytes counter")
    for name, figures in sorted(optimiser.classes.items()):
        lines.append(f'frys_optimiser_class_bytes{{link="{name}",side="raw"}} {figures.bytes_raw}')
        lines.append(
            f'frys_optimiser_class_bytes{{link="{name}",side="wire"}} {figures.bytes_wire}'
        )
    return "\n".join(lines) + "\n"
