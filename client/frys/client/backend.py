"""The backend helper: a workflow engine's side of Frys, straight over NATS.

The engine publishes state and events into the same streams the gateways read, sends
messages to agent inboxes, and serves control commands. Commands execute at most once per
command id: before running a handler the helper claims ``{workflow}.{cid}`` in the control
KV bucket; a retry of a claimed id waits for, and returns, the recorded outcome instead of
running again, whichever engine replica or gateway it arrives through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.kv import KeyValue
from opentelemetry import trace
from opentelemetry.propagate import extract as otel_extract
from opentelemetry.propagate import inject as otel_inject
from opentelemetry.trace import SpanKind, TracerProvider

from frys.shared.protocol import headers as hdr
from frys.shared.protocol.channels import Channel, ChannelKind, parse_channel, workflow_channel
from frys.shared.protocol.codec import pack_data, unpack_data
from frys.shared.protocol.control import Outcome, outcome_key, parse_outcome
from frys.shared.protocol.frames import ENC_TENSOR
from frys.shared.protocol.publish import route
from frys.shared.protocol.subjects import DEFAULT_PREFIX, Subjects
from frys.shared.tensor import Precision, TensorEncoder

log = logging.getLogger("frys.client.backend")

ENGINE_QUEUE = "frys-engine"


@dataclass(frozen=True, slots=True)
class Command:
    """A control command as the engine's handler sees it."""

    workflow: str
    data: Any
    cid: str
    sender: str | None


Handler = Callable[[Command], Awaitable[Any]]


class Backend:
    """Publish and serve a workflow engine's traffic over NATS."""

    def __init__(
        self,
        nc: NatsClient,
        prefix: str = DEFAULT_PREFIX,
        name: str = "engine",
        tracer_provider: TracerProvider | None = None,
    ):
        self.nc = nc
        provider = tracer_provider or trace.get_tracer_provider()
        self._tracer = provider.get_tracer("frys.backend")
        # Spans only when the application configured OpenTelemetry (not the default proxy).
        self._tracing = not isinstance(provider, trace.ProxyTracerProvider)
        self.js = nc.jetstream(timeout=5)
        self.subjects = Subjects(prefix)
        self.name = name
        self._subs: list[Subscription] = []
        self._kv: KeyValue | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._encoders: dict[tuple[Channel, int], TensorEncoder] = {}
        self._last_arrays: dict[tuple[Channel, int], Any] = {}
        self._keyframe_wanted: set[tuple[Channel, int]] = set()
        self._kf_channels: set[Channel] = set()
        self.executed = 0
        self.claim_lease_s = 120.0
        """A pending claim older than this is taken over (its engine died mid-command)."""
        """Commands whose handler ran (retries answered from the record do not count)."""

    @classmethod
    async def connect(
        cls,
        nats_url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        name: str = "engine",
        tracer_provider: TracerProvider | None = None,
    ) -> Backend:
        nc = await nats.connect(
            servers=[u.strip() for u in nats_url.split(",")],
            name=f"frys-backend:{name}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
        )
        return cls(nc, prefix, name, tracer_provider)

    async def close(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.nc.drain()

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- publishing ---------------------------------------------------------------------
    def _headers(self, mid: str | None) -> dict[str, str]:
        headers = {hdr.FROM: self.name}
        if mid is not None:
            headers[hdr.MSG_ID] = mid
        return headers

    async def publish(
        self, channel: str | Channel, data: Any, *, mid: str | None = None
    ) -> int | None:
        """Publish to any channel; returns the stored sequence on events and state."""
        ch = parse_channel(channel) if isinstance(channel, str) else channel
        target = route(self.subjects, ch)  # NotPublishable (a ValueError) on control, presence
        payload = pack_data(data)
        headers = self._headers(mid)
        span = None
        if self._tracing:
            span = self._tracer.start_span(
                f"publish {ch.kind.value}",
                kind=SpanKind.PRODUCER,
                attributes={"frys.channel": ch.name, "frys.source": self.name},
            )
            otel_inject(headers, context=trace.set_span_in_context(span))
        try:
            if target.stored:
                ack = await self.js.publish(target.subject, payload, headers=headers)
                return int(ack.seq)
            await self.nc.publish(target.subject, payload, headers=headers)
            return None
        finally:
            if span is not None:
                span.end()

    async def publish_event(self, workflow: str, data: Any, *, mid: str | None = None) -> int:
        seq = await self.publish(workflow_channel(workflow, ChannelKind.EVENTS), data, mid=mid)
        assert seq is not None
        return seq

    async def publish_state(self, workflow: str, data: Any) -> int:
        seq = await self.publish(workflow_channel(workflow, ChannelKind.STATE), data)
        assert seq is not None
        return seq

    async def send_to_agent(self, agent_id: str, data: Any) -> None:
        await self.publish(f"agent:{agent_id}", data)

    # --- tensors -------------------------------------------------------------------------
    async def publish_tensor(
        self,
        channel: str,
        array: Any,
        *,
        stream: int = 0,
        keyframe: bool = False,
        precision: Precision = Precision.EXACT,
        max_abs_error: float = 0.0,
    ) -> None:
        """Publish a numpy array as a tensor frame (keyframe, then deltas; chunked when
        large). Relays that need a keyframe ask for one and get it at once."""
        ch = parse_channel(channel)
        # Refuses control and presence before encoding. Stored tensor frames travel whole:
        # a replay of the stream must decode without the frames before it.
        stored = route(self.subjects, ch, tensor=True).stored
        key = (ch, stream)
        encoder = self._encoders.get(key)
        if encoder is None:
            encoder = self._encoders[key] = TensorEncoder(
                stream, precision=precision, max_abs_error=max_abs_error
            )
            await self._serve_keyframe_requests(ch)
        whole = keyframe or stored or key in self._keyframe_wanted
        self._keyframe_wanted.discard(key)
        self._last_arrays[key] = array
        for frame in encoder.encode(array, keyframe=whole):
            await self._publish_tensor_frame(ch, frame)

    async def _publish_tensor_frame(self, ch: Channel, frame: bytes) -> None:
        headers = self._headers(None)
        headers[hdr.ENC] = ENC_TENSOR
        headers[hdr.TS] = str(time.time_ns())  # relays report end-to-end latency per stream
        payload = pack_data(frame)
        target = route(self.subjects, ch, tensor=True)
        if target.stored:
            await self.js.publish(target.subject, payload, headers=headers)
        else:
            await self.nc.publish(target.subject, payload, headers=headers)

    async def _serve_keyframe_requests(self, ch: Channel) -> None:
        if ch in self._kf_channels:
            return
        self._kf_channels.add(ch)

        async def on_request(msg: Msg) -> None:
            try:
                wanted = unpack_data(msg.data).get("stream")
            except Exception:
                return
            for key in [k for k in self._encoders if k[0] == ch]:
                if wanted is not None and key[1] != wanted:
                    continue
                array = self._last_arrays.get(key)
                if array is None:
                    self._keyframe_wanted.add(key)
                    continue
                for frame in self._encoders[key].encode(array, keyframe=True):
                    await self._publish_tensor_frame(ch, frame)

        self._subs.append(
            await self.nc.subscribe(self.subjects.keyframe_requests(ch), cb=on_request)
        )

    # --- control ------------------------------------------------------------------------
    async def serve_control(self, handler: Handler, workflow: str = "*") -> None:
        """Serve control commands of one workflow, or of all (``*``), in the engine queue
        group so several engine replicas share the load."""
        if workflow != "*":
            workflow_channel(workflow, ChannelKind.CONTROL)  # validates the id
        self._kv = await self.js.key_value(self.subjects.control_bucket)
        subject = f"{self.subjects.prefix}.wf.{workflow}.control"

        async def on_request(msg: Msg) -> None:
            task = asyncio.get_running_loop().create_task(self._execute(handler, msg))
            self._tasks.add(task)
            task.add_done_callback(self._command_done)

        self._subs.append(await self.nc.subscribe(subject, queue=ENGINE_QUEUE, cb=on_request))

    def _command_done(self, task: asyncio.Task[None]) -> None:
        """Forget a finished command; a failure outside the handler (its errors are
        answered) is logged here, as nobody awaits the task."""
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("control command failed", exc_info=exc)

    async def _execute(self, handler: Handler, msg: Msg) -> None:
        headers = msg.headers or {}
        try:
            channel = self.subjects.to_channel(msg.subject)
        except Exception:
            return
        assert channel.workflow is not None
        cid = headers.get(hdr.CID, "")
        command = Command(channel.workflow, unpack_data(msg.data), cid, headers.get(hdr.FROM))
        if not self._tracing:
            await self._answer(handler, msg, command, channel.workflow, cid)
            return
        with self._tracer.start_as_current_span(
            f"control {channel.workflow}",
            context=otel_extract(headers),
            kind=SpanKind.SERVER,
            attributes={"frys.cid": cid, "frys.workflow": channel.workflow},
        ):
            await self._answer(handler, msg, command, channel.workflow, cid)

    async def _answer(
        self, handler: Handler, msg: Msg, command: Command, workflow: str, cid: str
    ) -> None:
        kv = self._kv
        if not cid or kv is None:
            # A command without an id (sent straight over NATS) has no record to guard it.
            await self._reply(msg, await self._run(handler, command))
            return
        key = outcome_key(workflow, cid)
        if key is None:
            await self._reply(msg, {"error": "invalid_cid", "message": "cid outside the grammar"})
            return
        now_ms = int(time.time() * 1000)
        try:
            await kv.create(key, Outcome(pending=True, at_ms=now_ms).encode())
        except nats.js.errors.KeyWrongLastSequenceError:
            if not await self._take_over_stale_claim(kv, key, now_ms):
                recorded = await self._await_outcome(kv, key)
                if recorded is not None:
                    await self._reply_packed(msg, recorded.packed_reply)
                return
        packed = pack_data(await self._run(handler, command))
        await kv.put(key, Outcome(pending=False, packed_reply=packed, at_ms=now_ms).encode())
        await self._reply_packed(msg, packed)

    async def _take_over_stale_claim(self, kv: KeyValue, key: str, now_ms: int) -> bool:
        """A claim older than the lease was left by an engine that died while executing:
        take it over (atomically, by revision) so the command is not blocked for the
        bucket's whole TTL. A live engine finishing later than the lease may then have
        executed it too; the lease is longer than the longest request timeout."""
        try:
            entry = await kv.get(key)
        except Exception:
            return False
        outcome = parse_outcome(entry.value or b"")
        if outcome is None or not outcome.pending:
            return False
        if now_ms - outcome.at_ms < self.claim_lease_s * 1000:
            return False
        try:
            await kv.update(key, Outcome(pending=True, at_ms=now_ms).encode(), last=entry.revision)
        except Exception:
            return False
        return True

    async def _run(self, handler: Handler, command: Command) -> Any:
        self.executed += 1
        try:
            return await handler(command)
        except Exception as exc:
            log.exception("control handler failed for %s", command.cid)
            return {"error": type(exc).__name__, "message": str(exc)}

    async def _await_outcome(
        self, kv: KeyValue, key: str, timeout_s: float = 60.0
    ) -> Outcome | None:
        deadline = time.monotonic() + timeout_s
        delay = 0.005
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                entry = await kv.get(key)
                outcome = parse_outcome(entry.value or b"")
                if outcome is not None and not outcome.pending:
                    return outcome
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)
        return None

    async def _reply(self, msg: Msg, data: Any) -> None:
        await self._reply_packed(msg, pack_data(data))

    async def _reply_packed(self, msg: Msg, packed: bytes) -> None:
        if msg.reply:
            await self.nc.publish(msg.reply, packed)
