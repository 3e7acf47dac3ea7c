"""The backend helper: a workflow engine's side of Frys, straight over NATS.

The engine publishes state and events into the same streams the gateways read, sends
messages to agent inboxes, and serves control commands.

Commands execute at most once per command id and sender: before running a handler the
helper claims the command's record (:func:`~frys.shared.protocol.control.command_key`) in
the control KV bucket; a retry of a claimed id waits for, and returns, the recorded outcome
instead of running again, whichever engine replica or gateway it arrives through. The rule
holds through the loss of the bucket's leader, which makes any write fail for a few
seconds:

- a claim is written with an owner token, so a claim that landed without its answer being
  seen is recognised as this engine's own on the retry, not mistaken for another's;
- the caller is answered as soon as the command ran; the outcome is then written until it
  lands (bounded backoff, logged), never dropped;
- a claim whose execution may have happened is never released nor taken over. A claim
  still pending after :attr:`Backend.claim_lease_s` (its engine died mid-command) gets the
  outcome ``{"error": "outcome_unknown", ...}``, recorded once, by compare-and-set, and
  that is what every later retry receives: a definite answer, never a second execution;
- a claim that gets no answer in time is answered ``{"error": "unavailable", ...}``: the
  command did not run, and the same id may be sent again. The claim may still land later
  (a write waits in the bucket's log until it has a quorum again), so the engine settles
  it in the background and withdraws it if it did;
- records are read from the bucket's leader: a replica may lag a write just made.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
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
from frys.shared.protocol.control import Outcome, command_key, parse_outcome, record_location
from frys.shared.protocol.frames import ENC_TENSOR
from frys.shared.protocol.publish import message_id, route
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

TRANSIENT: tuple[type[Exception], ...] = (TimeoutError, nats.errors.Error)
"""Failures of a KV operation that say nothing about the record (no leader yet, no
answer in time, a reconnect): the operation is tried again. Refusals the record explains
(wrong last revision, no such key) are told apart before these are caught."""

OUTCOME_UNKNOWN = "outcome_unknown"
UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class _Claimed:
    revision: int
    owner: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class _Recorded:
    outcome: Outcome


class _Unanswered(Exception):
    """No definite answer in time (another engine is still executing the command): the
    caller gets no reply, a 504, and retries with the same id."""


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
        """Commands whose handler ran (retries answered from the record do not count)."""
        self.claim_lease_s = 120.0
        """A claim still pending this long after it was made belongs to an engine that died
        mid-command: its outcome is recorded as unknown. Longer than the longest request
        timeout, so a live engine's command never reaches it."""
        self.claim_timeout_s = 30.0
        """How long a claim is retried while the bucket cannot take writes; then the caller
        is told the command did not run."""
        self.outcome_wait_s = 60.0
        """How long a retry waits for the outcome of a command another engine executes."""
        self.retry_cap_s = 2.0
        """Longest pause between two attempts of a KV write."""
        self.close_wait_s = 5.0
        """How long :meth:`close` lets commands in flight finish and record their outcome."""

    @classmethod
    async def connect(
        cls,
        nats_url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        name: str = "engine",
        tracer_provider: TracerProvider | None = None,
        creds_file: str = "",
        nkey_seed_file: str = "",
        user: str = "",
        password: str = "",
        token: str = "",
        tls: ssl.SSLContext | None = None,
        tls_ca_file: str = "",
        tls_cert_file: str = "",
        tls_key_file: str = "",
        tls_hostname: str = "",
    ) -> Backend:
        """Connect to the NATS the gateways use, with the same credentials a gateway has
        there (the ``FRYS_NATS_*`` settings; one of ``creds_file``, ``nkey_seed_file``,
        ``user`` and ``password``, ``token``).

        TLS: pass a ready ``tls`` context, or the ``tls_*`` files (a CA in place of the
        system store; a certificate and key for servers that verify clients); a
        ``tls://`` URL alone uses the system store."""
        options: dict[str, Any] = {}
        if creds_file:
            options["user_credentials"] = creds_file
        if nkey_seed_file:
            options["nkeys_seed"] = nkey_seed_file
        if user:
            options.update(user=user, password=password)
        if token:
            options["token"] = token
        if tls is None and (tls_ca_file or tls_cert_file):
            tls = ssl.create_default_context(cafile=tls_ca_file or None)
            tls.minimum_version = ssl.TLSVersion.TLSv1_2
            if tls_cert_file:
                tls.load_cert_chain(tls_cert_file, tls_key_file or None)
        if tls is not None:
            options["tls"] = tls
        if tls_hostname:
            options["tls_hostname"] = tls_hostname
        nc = await nats.connect(
            servers=[u.strip() for u in nats_url.split(",")],
            name=f"frys-backend:{name}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            **options,
        )
        return cls(nc, prefix, name, tracer_provider)

    async def close(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        # Commands in flight finish and record their outcome: a record cut short stays
        # pending and its retries would end as outcome_unknown.
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.close_wait_s)
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.nc.drain()

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- publishing ---------------------------------------------------------------------
    def _headers(self, channel: Channel, mid: str | None) -> dict[str, str]:
        headers = {hdr.FROM: self.name}
        if mid is not None:
            headers[hdr.MSG_ID] = message_id(channel, self.name, mid)
        return headers

    async def publish(
        self, channel: str | Channel, data: Any, *, mid: str | None = None
    ) -> int | None:
        """Publish to any channel; returns the stored sequence on events and state."""
        ch = parse_channel(channel) if isinstance(channel, str) else channel
        target = route(self.subjects, ch)  # NotPublishable (a ValueError) on control, presence
        payload = pack_data(data)
        headers = self._headers(ch, mid)
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
        headers = self._headers(ch, None)
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
        key = command_key(workflow, command.sender or "", cid)
        if key is None:
            await self._reply(msg, {"error": "invalid_cid", "message": "cid outside the grammar"})
            return
        try:
            claim = await self._claim(kv, key)
        except _Unanswered as exc:
            log.warning("command %s: %s", key, exc)
            return
        if isinstance(claim, _Recorded):
            await self._reply_packed(msg, claim.outcome.packed_reply)
            return
        if claim is None:
            await self._reply(
                msg,
                {
                    "error": UNAVAILABLE,
                    "message": "control records unavailable; the command did not run: "
                    "send it again with the same cid",
                },
            )
            return
        packed = pack_data(await self._run(handler, command))
        # The caller learns the outcome now; the record follows, however long it takes.
        await self._reply_packed(msg, packed)
        done = Outcome(pending=False, packed_reply=packed, at_ms=claim.at_ms, owner=claim.owner)
        await self._record(kv, key, done, claim.revision)

    async def _claim(self, kv: KeyValue, key: str) -> _Claimed | _Recorded | None:
        """Claim ``key`` for one execution, or find its outcome.

        Returns the claim, the recorded outcome (another request claimed it and finished,
        or its engine died and the outcome is now unknown), or ``None`` when the claim got
        no definite answer within :attr:`claim_timeout_s`: the command must not run, and
        the claim is settled in the background (:meth:`_withdraw`). Raises
        :class:`_Unanswered` when another engine still executes it."""
        owner = uuid.uuid4().hex
        at_ms = int(time.time() * 1000)
        pending = Outcome(pending=True, at_ms=at_ms, owner=owner)
        failing_until = time.monotonic() + self.claim_timeout_s
        waiting_until = time.monotonic() + self.outcome_wait_s
        backoff = _Backoff(self.retry_cap_s)
        while True:
            try:
                return _Claimed(await kv.create(key, pending.encode()), owner, at_ms)
            except nats.js.errors.KeyWrongLastSequenceError:
                pass  # a record exists, possibly this very claim, written unseen
            except TRANSIENT as exc:
                if time.monotonic() > failing_until:
                    self._background(self._withdraw(kv, key, pending))
                    return None
                backoff.note(f"claim of {key}", exc)
                await backoff.wait()
                continue
            try:
                found = await self._read(key)
            except TRANSIENT as exc:
                # A record exists, perhaps of a command running elsewhere: only its
                # outcome may answer, so there is no "did not run" to give here.
                if time.monotonic() > waiting_until:
                    raise _Unanswered("the record cannot be read; the caller may retry") from exc
                backoff.note(f"read of {key}", exc)
                await backoff.wait()
                continue
            if found is None:
                await asyncio.sleep(backoff.poll())
                continue  # withdrawn (deleted) meanwhile: claim again
            revision, record = found
            if record is None:
                return _Recorded(_unknown_outcome("the record is unreadable", owner))
            if record.owner == owner:
                return _Claimed(revision, owner, record.at_ms)
            if not record.pending:
                return _Recorded(record)
            if time.time() * 1000 - record.at_ms >= self.claim_lease_s * 1000:
                unknown = _unknown_outcome(
                    "the engine that claimed this command stopped before recording its "
                    "outcome; it may or may not have run",
                    owner,
                    record.at_ms,
                )
                try:
                    await kv.update(key, unknown.encode(), last=revision)
                except nats.js.errors.KeyWrongLastSequenceError:
                    continue  # recorded meanwhile: read it
                except TRANSIENT as exc:
                    if time.monotonic() > waiting_until:
                        raise _Unanswered("the outcome cannot be written yet") from exc
                    backoff.note(f"outcome of {key}", exc)
                    await backoff.wait()
                    continue
                log.error("command %s: claimed and never recorded; outcome unknown", key)
                return _Recorded(unknown)
            if time.monotonic() > waiting_until:
                raise _Unanswered("still executing elsewhere; the caller may retry")
            await asyncio.sleep(backoff.poll())

    async def _read(self, key: str) -> tuple[int, Outcome | None] | None:
        """The record under ``key`` as the bucket's leader holds it: ``(revision, outcome)``
        (outcome ``None`` when unreadable), or ``None`` when there is none. A replica may
        lag a write this engine just made; the leader has every acknowledged one."""
        stream, subject = record_location(self.subjects.control_bucket, key)
        try:
            raw = await self.js.get_last_msg(stream, subject)
        except nats.js.errors.NotFoundError:
            return None
        if (raw.headers or {}).get("KV-Operation") in ("DEL", "PURGE"):
            return None
        return int(raw.seq or 0), parse_outcome(raw.data or b"")

    async def _record(self, kv: KeyValue, key: str, done: Outcome, revision: int) -> None:
        """Write the outcome over this engine's claim, retrying until it lands: a lost
        outcome would leave the command pending and its retries unanswered."""
        backoff = _Backoff(self.retry_cap_s)
        while True:
            try:
                await kv.update(key, done.encode(), last=revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                # An earlier attempt landed unseen, or the claim was declared unknown.
                try:
                    found = await self._read(key)
                except TRANSIENT as exc:
                    backoff.note(f"outcome of {key}", exc)
                    await backoff.wait()
                    continue
                now = found[1] if found is not None else None
                if now is None or now.pending or now.owner != done.owner:
                    log.error("command %s ran, but its record was settled otherwise", key)
                return
            except TRANSIENT as exc:
                backoff.note(f"outcome of {key}", exc)
                await backoff.wait()
                continue
            if backoff.failures:
                log.warning("command %s: outcome recorded after %d failures", key, backoff.failures)
            return

    async def _withdraw(self, kv: KeyValue, key: str, pending: Outcome) -> None:
        """Settle a claim given up on, for a command that did not run. An attempt whose
        answer was lost may still land, even long after (the bucket applies it once it has
        a quorum again), so this keeps claiming until one attempt gets a definite answer:
        then either this engine's claim exists, and is deleted so that a retry of the id
        can run the command, or another record does, and no attempt of this one can land
        any more. An engine that stops before that leaves a pending claim, whose retries
        end as ``outcome_unknown`` after the lease: never a second run."""
        backoff = _Backoff(self.retry_cap_s)
        deadline = time.monotonic() + self.claim_lease_s
        while time.monotonic() < deadline:
            try:
                try:
                    revision = await kv.create(key, pending.encode())
                except nats.js.errors.KeyWrongLastSequenceError:
                    found = await self._read(key)
                    if found is None:
                        await asyncio.sleep(backoff.poll())
                        continue
                    revision, record = found
                    if record is None or record.owner != pending.owner:
                        return
                await kv.delete(key, last=revision)
                log.info("command %s: claim withdrawn; the command did not run", key)
                return
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # changed between the read and the delete: look again
            except TRANSIENT as exc:
                backoff.note(f"withdrawal of {key}", exc)
                await backoff.wait()
        log.error("command %s: claim not withdrawn; its retries will end as unknown", key)

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._command_done)

    async def _run(self, handler: Handler, command: Command) -> Any:
        self.executed += 1
        try:
            return await handler(command)
        except Exception as exc:
            log.exception("control handler failed for %s", command.cid)
            return {"error": type(exc).__name__, "message": str(exc)}

    async def _reply(self, msg: Msg, data: Any) -> None:
        await self._reply_packed(msg, pack_data(data))

    async def _reply_packed(self, msg: Msg, packed: bytes) -> None:
        if not msg.reply:
            return
        try:
            await self.nc.publish(msg.reply, packed)
        except nats.errors.Error as exc:
            # The caller retries with the same id and gets the recorded outcome.
            log.warning("reply to a control command not sent: %s", exc)


def _unknown_outcome(why: str, owner: str, at_ms: int = 0) -> Outcome:
    reply = pack_data({"error": OUTCOME_UNKNOWN, "message": why})
    return Outcome(pending=False, packed_reply=reply, at_ms=at_ms, owner=owner)


class _Backoff:
    """Pauses between attempts of a KV operation: doubling up to ``cap_s``, with a warning
    on the first failure and every tenth."""

    def __init__(self, cap_s: float):
        self._cap_s = cap_s
        self._delay = 0.05
        self._poll = 0.005
        self.failures = 0

    def note(self, what: str, exc: BaseException) -> None:
        self.failures += 1
        if self.failures == 1 or self.failures % 10 == 0:
            log.warning(
                "%s failed (%s, attempt %d); retrying", what, type(exc).__name__, self.failures
            )

    async def wait(self) -> None:
        await asyncio.sleep(self._delay)
        self._delay = min(self._delay * 2, self._cap_s)

    def poll(self) -> float:
        """The next pause while waiting for another engine's outcome (5 ms to 250 ms)."""
        pause, self._poll = self._poll, min(self._poll * 2, 0.25)
        return pause
