"""The gateway's one NATS connection: core pub/sub, JetStream streams, KV buckets.

Everything that must survive a gateway lives behind this module in NATS: events and state in
JetStream streams that republish each stored message (with its sequence) to a live subject
the gateways subscribe to, control outcomes and presence in KV buckets. Subjects come from
:class:`~frys.shared.protocol.subjects.Subjects`; this module never spells one itself.
It uses nats-py's public API only: what needs its private parts (direct dispatch from the
read loop, the read buffer size) is in :mod:`frys.gateway.nats_adapter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RePublish,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue

from frys.gateway.config import GatewayConfig
from frys.gateway.nats_adapter import DirectHandler, FanoutClient, unsubscribe_direct
from frys.runtime.nats_auth import NatsAuth
from frys.shared.protocol.channels import ChannelKind
from frys.shared.protocol.subjects import Subjects

log = logging.getLogger("frys.gateway.bus")

# nats-py warns on every filtered key listing for servers older than 2.10; ours are newer.
logging.getLogger("nats.js.kv").setLevel(logging.ERROR)

MsgHandler = Callable[[Msg], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class StoredMsg:
    """A message read back from a stream."""

    seq: int
    data: bytes
    headers: dict[str, str]


SINGLE_REPLICA_ANSWERS = frozenset({10005, 10023, 10074})
"""JetStream's refusals of a stream of three replicas that mean one replica is all it can
hold: no suitable peers for placement, insufficient resources, not clustered."""


class BusUnavailable(Exception):
    """NATS cannot be reached right now."""


# JetStream refusals that no retry can cure: storage or account limits, a NATS without
# JetStream, replicas a single server cannot hold, subjects another stream owns. Each needs
# an operator to change NATS or the gateway's settings, so the gateway says so and stops
# instead of retrying for ever behind a "nats: false" on /readyz.
PERMANENT_JETSTREAM_ERRORS = {
    10002: "account resource limits exceeded",
    10023: "insufficient resources",
    10027: "maximum number of streams reached",
    10028: "insufficient memory resources",
    10039: "JetStream not enabled for this account",
    10047: "insufficient storage resources",
    10065: "subjects overlap with an existing stream",
    10074: "stream replicas > 1 on a NATS that is not clustered",
    10076: "JetStream not enabled",
}


class JetStreamRefused(Exception):
    """JetStream refused the gateway's streams or buckets for good (see
    :data:`PERMANENT_JETSTREAM_ERRORS`); the message names the resource and the reason."""

    exit_code = 1


def permanent_jetstream_error(exc: BaseException) -> bool:
    return isinstance(exc, nats.js.errors.APIError) and exc.err_code in PERMANENT_JETSTREAM_ERRORS


WARN_EVERY_S = 10.0
"""Fewest seconds between two warnings about one kind of start-up or connection problem."""


class Bus:
    """Owns the NATS connection and the JetStream resources Frys needs."""

    def __init__(self, config: GatewayConfig):
        self.config = config
        self.subjects: Subjects = config.subjects
        self.nc: FanoutClient = FanoutClient()
        self.bulk_nc: FanoutClient = FanoutClient()
        """A second connection for tensor frames, so bulk never delays small messages."""
        self._js: JetStreamContext | None = None
        self.kv_control: KeyValue | None = None
        self.kv_presence: KeyValue | None = None
        self.kv_placement: KeyValue | None = None
        self.epochs: dict[ChannelKind, str] = {}
        self.replicas = 0
        """Replicas this gateway gives the streams and buckets it creates (0: not chosen
        yet); see :meth:`_choose_replicas`."""
        self.replicas_reason = ""
        self.replication: dict[str, int] = {}
        """Replicas in force per stream and bucket: existing ones keep theirs."""
        self.reconnects = 0
        self._auth = NatsAuth.from_settings(config)
        """Credentials and TLS for both connections (``nats_*`` settings)."""
        self.on_reconnect: list[Callable[[], Awaitable[None]]] = []
        self._connected = asyncio.Event()
        self.problem = ""
        """Why the bus is not ready, for /readyz (empty while ready)."""
        self.lost = False
        """The client closed its connection for good (it will not reconnect): the process
        must be restarted (``/healthz`` fails)."""
        self._closing = False
        self._warned: dict[str, tuple[float, int]] = {}

    # --- lifecycle -----------------------------------------------------------------------
    async def connect(self, retry_s: float = 0.5) -> None:
        """Connect, retrying until NATS answers (the gateway serves /healthz meanwhile)."""
        while True:
            try:
                await self.nc.connect(
                    servers=[u.strip() for u in self.config.nats_url.split(",")],
                    name=f"frys-gateway:{self.config.gateway_id}",
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.25,
                    connect_timeout=2,
                    ping_interval=5,
                    max_outstanding_pings=3,
                    pending_size=64 * 1024 * 1024,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    error_cb=self._on_error,
                    closed_cb=self._on_closed,
                    **self._auth.connect_options(),
                )
                break
            except (TimeoutError, OSError, nats.errors.Error) as exc:
                self._unreachable(exc)
                await asyncio.sleep(retry_s)
        await self._connect_bulk()
        self._js = self.nc.jetstream(timeout=5)
        # A JetStream cluster may still be electing its leaders: retry until it answers,
        # unless it refuses for a reason no retry cures.
        delay = retry_s
        while True:
            try:
                await self._ensure_resources()
                break
            except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
                if isinstance(exc, nats.js.errors.APIError) and permanent_jetstream_error(exc):
                    self.problem = self._refusal(exc)
                    raise JetStreamRefused(self.problem) from None
                self.problem = f"jetstream: not ready ({_reason(exc)})"
                self._warn("jetstream", "JetStream at %s not ready (%s); retrying", _reason(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.problem = ""
        self._warned.clear()
        self._connected.set()

    async def _connect_bulk(self) -> None:
        await self.bulk_nc.connect(
            servers=[u.strip() for u in self.config.nats_url.split(",")],
            name=f"frys-gateway-bulk:{self.config.gateway_id}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            connect_timeout=2,
            pending_size=64 * 1024 * 1024,
            error_cb=self._on_bulk_error,
            **self._auth.connect_options(),
        )

    async def ensure_resources(self) -> None:
        """Create whatever stream or bucket is missing (after one was deleted)."""
        await self._ensure_resources()

    async def _ensure_resources(self) -> None:
        """Create or update the streams and buckets (idempotent across gateways)."""
        cfg = self.config
        s = self.subjects
        replicas = await self._choose_replicas()
        events = StreamConfig(
            name=s.events_stream,
            subjects=[s.workflow_wildcard(ChannelKind.EVENTS)],
            storage=StorageType.FILE,
            max_age=cfg.events_max_age_s,
            max_bytes=cfg.events_max_bytes,
            duplicate_window=cfg.events_duplicate_window_s,
            num_replicas=replicas,
            allow_direct=True,
            discard=DiscardPolicy.OLD,
            republish=RePublish(
                src=s.workflow_wildcard(ChannelKind.EVENTS),
                dest=s.live_template(ChannelKind.EVENTS),
            ),
        )
        state = StreamConfig(
            name=s.state_stream,
            subjects=[s.workflow_wildcard(ChannelKind.STATE)],
            storage=StorageType.FILE,
            max_msgs_per_subject=1,
            num_replicas=replicas,
            allow_direct=True,
            discard=DiscardPolicy.OLD,
            republish=RePublish(
                src=s.workflow_wildcard(ChannelKind.STATE),
                dest=s.live_template(ChannelKind.STATE),
            ),
        )
        for kind, conf in ((ChannelKind.EVENTS, events), (ChannelKind.STATE, state)):
            info = await self._add_or_update_stream(conf)
            self.epochs[kind] = _epoch_of(info.created)
        self.kv_control = await self._bucket(s.control_bucket, cfg.control_outcome_ttl_s)
        self.kv_presence = await self._bucket(s.presence_bucket, cfg.presence_ttl_s)
        self.kv_placement = await self._bucket(s.placement_bucket, None)
        log.info(
            "replication: %d replica(s) for what this gateway creates (%s); in force: %s",
            replicas,
            self.replicas_reason,
            ", ".join(f"{name} R{n}" for name, n in self.replication.items()),
        )

    async def _choose_replicas(self) -> int:
        """Replicas for the streams and buckets this gateway creates: ``stream_replicas``
        when set, else 3 when the JetStream this gateway reaches can place three replicas
        (a cluster of at least three JetStream servers), else 1.

        The question is put to JetStream itself, with a stream of three replicas created
        and deleted at once: it knows its peers, including one that is down for the moment,
        which neither the server's ``INFO`` nor the account information tell."""
        configured = self.config.stream_replicas
        if configured:
            self.replicas, self.replicas_reason = configured, "stream_replicas"
            return configured
        if self.replicas:
            return self.replicas  # chosen once per process: a recreated stream gets the same
        js = self.js
        probe = StreamConfig(
            name=self.subjects.replicas_probe_stream,  # one name: NATS permissions list it
            num_replicas=3,
            storage=StorageType.FILE,
            max_msgs=1,
        )
        assert probe.name is not None
        try:
            await js.add_stream(probe)
        except nats.js.errors.APIError as exc:
            if exc.err_code not in SINGLE_REPLICA_ANSWERS:
                raise
            self.replicas = 1
            self.replicas_reason = f"chosen: JetStream cannot place 3 replicas ({exc.description})"
        else:
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await js.delete_stream(probe.name)
            self.replicas = 3
            self.replicas_reason = "chosen: JetStream cluster of 3 or more servers"
        return self.replicas

    async def _add_or_update_stream(self, conf: StreamConfig) -> Any:
        info = await self._put_stream(conf)
        assert conf.name is not None
        self.replication[conf.name] = int(info.config.num_replicas or 1)
        return info

    async def _put_stream(self, conf: StreamConfig) -> Any:
        js = self.js
        assert conf.name is not None
        try:
            existing = await js.stream_info(conf.name)
        except nats.js.errors.NotFoundError:
            try:
                return await js.add_stream(conf)
            except nats.js.errors.BadRequestError as exc:
                if permanent_jetstream_error(exc):
                    raise
                # another gateway created it first
                existing = await js.stream_info(conf.name)
        name = conf.name
        conf = self._keep_replicas(name, conf, existing.config.num_replicas)
        try:
            return await js.update_stream(conf)
        except nats.js.errors.BadRequestError as exc:
            log.warning("stream %s kept its existing configuration: %s", name, exc)
            return await js.stream_info(name)

    def _keep_replicas(self, name: str, conf: StreamConfig, have: int | None) -> StreamConfig:
        """A stream or bucket that exists keeps its replicas (changing them moves its data
        between servers: an operator's decision, not a gateway start's)."""
        have = int(have or 1)
        if have != conf.num_replicas:
            log.warning(
                "%s keeps its %d replica(s); this gateway creates with %d (%s)",
                name,
                have,
                conf.num_replicas,
                self.replicas_reason,
            )
        return conf.evolve(num_replicas=have)

    async def _bucket(self, name: str, ttl_s: float | None) -> KeyValue:
        kv = await self._open_bucket(name, ttl_s)
        status = await kv.status()
        have = int(status.stream_info.config.num_replicas or 1)
        self._keep_replicas(name, StreamConfig(num_replicas=self.replicas), have)
        self.replication[name] = have
        return kv

    async def _open_bucket(self, name: str, ttl_s: float | None) -> KeyValue:
        js = self.js
        try:
            return await js.key_value(name)
        except nats.js.errors.BucketNotFoundError:
            pass
        try:
            await js.create_key_value(
                KeyValueConfig(
                    bucket=name,
                    history=1,
                    ttl=ttl_s,
                    storage=StorageType.FILE,
                    replicas=self.replicas,
                )
            )
        except nats.js.errors.BadRequestError as exc:
            if permanent_jetstream_error(exc):
                raise
            # another gateway created it first
        return await js.key_value(name)

    async def close(self, timeout_s: float = 2.0) -> None:
        """Drain (flush what was published, let handlers finish), within ``timeout_s``."""
        self._closing = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.bulk_nc.close(), timeout_s)
        if self.nc.is_connected or self.nc.is_reconnecting:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), timeout_s)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.nc.close(), timeout_s)

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise BusUnavailable("not connected to NATS")
        return self._js

    @property
    def max_payload(self) -> int:
        """Largest message the NATS server accepts (1 MiB until connected)."""
        return int(self.nc.max_payload or 1024 * 1024) if self.nc.is_connected else 1024 * 1024

    @property
    def ready(self) -> bool:
        return self._connected.is_set() and self.nc.is_connected

    async def _on_disconnected(self) -> None:
        if self._connected.is_set() and not self._closing:
            log.warning("disconnected from NATS")

    async def _on_reconnected(self) -> None:
        self.reconnects += 1
        log.info("reconnected to NATS at %s", self.nc.connected_url)
        for hook in list(self.on_reconnect):
            try:
                await hook()
            except Exception:
                log.exception("reconnect hook failed")

    async def _on_error(self, exc: Exception) -> None:
        # nats-py retries the first connection (and every reconnection) itself and reports
        # each failed attempt here: while not connected, that is the operator's news.
        if self.nc.is_connected:
            log.debug("NATS error: %s", exc)
            return
        self._unreachable(exc)

    async def _on_bulk_error(self, exc: Exception) -> None:
        # The bulk connection fails and recovers with the main one, which reports it.
        log.debug("NATS error (bulk connection): %s", exc)

    async def _on_closed(self) -> None:
        if not self._closing:
            self.lost = True
            self.problem = "nats: connection closed by the client and not reopened"
            log.error(
                "NATS connection to %s closed for good (%s): restart needed",
                self.config.nats_url,
                _reason(self.nc.last_error) if self.nc.last_error else "no reason given",
            )

    def _refusal(self, exc: nats.js.errors.APIError) -> str:
        """The refusal with what to change: the operator reads this line and nothing else."""
        code = exc.err_code or 0
        known = PERMANENT_JETSTREAM_ERRORS.get(code, "")
        said = exc.description or ""
        detail = said if not known or known.lower() in said.lower() else f"{known}: {said}"
        cfg = self.config
        if code in (10002, 10023, 10028, 10047):
            hint = (
                f"the events stream reserves events_max_bytes={cfg.events_max_bytes} bytes "
                "on each NATS server that holds a replica: give JetStream more storage "
                "(max_file_store, the account's limits) or lower events_max_bytes"
            )
        elif code == 10074:
            hint = f"stream_replicas={cfg.stream_replicas} needs a clustered NATS: set it to 1"
        elif code in (10039, 10076):
            hint = "enable JetStream on the NATS server and for the gateway's account"
        elif code == 10065:
            hint = f"another stream already takes the subjects under {cfg.subject_prefix!r}"
        elif code == 10027:
            hint = "the account's stream limit is reached: raise it or remove unused streams"
        else:
            hint = "change the NATS server or the gateway's settings"
        return f"JetStream refused the gateway's streams: {detail} (err_code {code}); {hint}"

    def _unreachable(self, exc: BaseException) -> None:
        self.problem = f"nats: not reachable at {self.config.nats_url} ({_reason(exc)})"
        self._warn("nats", "NATS not reachable at %s (%s); retrying", _reason(exc))

    def _warn(self, kind: str, message: str, reason: str) -> None:
        """Log ``message`` at most every :data:`WARN_EVERY_S` seconds per ``kind``, with
        the number of attempts since the last warning."""
        now = time.monotonic()
        last, attempts = self._warned.get(kind, (-WARN_EVERY_S, 0))
        if now - last < WARN_EVERY_S:
            self._warned[kind] = (last, attempts + 1)
            return
        self._warned[kind] = (now, 0)
        if attempts:
            message += f" ({attempts} more failed attempts since the last warning)"
        log.warning(message, self.config.nats_url, reason)

    # --- messaging ----------------------------------------------------------------------
    async def subscribe(self, subject: str, handler: MsgHandler) -> Subscription:
        return await self.nc.subscribe(
            subject, cb=handler, pending_msgs_limit=1 << 20, pending_bytes_limit=1 << 30
        )

    async def subscribe_direct(
        self, subject: str, handler: DirectHandler, bulk: bool = False
    ) -> Subscription:
        """Subscribe with a synchronous handler called from the read loop (see
        :mod:`frys.gateway.nats_adapter`); the subscription survives reconnects like any
        other. ``bulk`` subscriptions use the tensor connection."""
        nc = self.bulk_nc if bulk else self.nc
        return await nc.subscribe_direct(subject, handler)

    async def unsubscribe_direct(self, sub: Subscription) -> None:
        """Unsubscribe a direct subscription; its handler is not called again."""
        await unsubscribe_direct(sub)

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> None:
        await self.nc.publish(subject, payload, headers=headers)

    async def publish_stored(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[Any]:
        """Publish into a stream; the future resolves to the PubAck (seq, duplicate)."""
        return await self.js.publish_async(subject, payload, headers=headers, wait_stall=5)

    async def request(
        self,
        subject: str,
        payload: bytes,
        timeout_s: float,
        headers: dict[str, str] | None = None,
    ) -> Msg:
        return await self.nc.request(subject, payload, timeout=timeout_s, headers=headers)

    async def last_stored(
        self, stream: str, subject: str, leader: bool = False
    ) -> StoredMsg | None:
        """The newest stored message on ``subject`` (the state snapshot), if any.

        A direct get may be served by a replica that lags the leader; ``leader`` reads from
        the stream leader (``STREAM.MSG.GET``), which holds every acknowledged message."""
        try:
            raw = await self.js.get_last_msg(stream, subject, direct=not leader)
        except nats.js.errors.NotFoundError:
            return None
        return StoredMsg(seq=int(raw.seq or 0), data=raw.data or b"", headers=raw.headers or {})

    async def stored_after(
        self,
        stream: str,
        subject: str,
        after_seq: int,
        batch: int = 256,
        timeout_s: float = 5.0,
        through: int | None = None,
    ) -> list[StoredMsg]:
        """Every stored message on ``subject`` with a sequence above ``after_seq`` (and not
        above ``through`` when given), in order.

        Uses batched direct gets (no consumer is created), looping until nothing is pending.
        On a replicated stream the answer may end early (a lagging replica served it): the
        caller that needs a complete range checks where it ends.
        """
        out: list[StoredMsg] = []
        queue: asyncio.Queue[Msg] = asyncio.Queue()
        inbox = self.nc.new_inbox()

        async def collect(msg: Msg) -> None:
            queue.put_nowait(msg)

        sub = await self.nc.subscribe(inbox, cb=collect)
        try:
            start = after_seq + 1
            while True:
                request = {"seq": start, "next_by_subj": subject, "batch": batch}
                await self.nc.publish(
                    self.subjects.direct_get(stream), json.dumps(request).encode(), reply=inbox
                )
                pending = 0
                while True:
                    msg = await asyncio.wait_for(queue.get(), timeout_s)
                    headers = msg.headers or {}
                    status = headers.get("Status")
                    if status == "404":
                        return out
                    if status is not None:
                        pending = int(headers.get("Nats-Num-Pending", "0"))
                        break
                    seq = int(headers["Nats-Sequence"])
                    if through is not None and seq > through:
                        return out
                    out.append(StoredMsg(seq=seq, data=msg.data, headers=headers))
                    start = seq + 1
                if pending == 0 or (through is not None and start > through):
                    return out
        finally:
            await sub.unsubscribe()

    async def stream_bounds(self, stream: str) -> tuple[int, int, str]:
        """First and last sequence of ``stream`` and its epoch."""
        info = await self.js.stream_info(stream)
        assert info.state is not None
        return int(info.state.first_seq), int(info.state.last_seq), _epoch_of(info.created)


def _reason(exc: BaseException) -> str:
    """A failed attempt in a few words: nats-py's timeouts carry no message of their own."""
    text = str(exc).strip()
    if isinstance(exc, TimeoutError | nats.errors.TimeoutError) or not text:
        return text or f"{type(exc).__name__}: no answer in time"
    return text


def _epoch_of(created: Any) -> str:
    """Epoch of a stream: its creation time, which changes whenever it is recreated."""
    if created is None:
        return "0"
    stamp = getattr(created, "timestamp", None)
    if callable(stamp):
        return format(int(stamp() * 1_000_000), "x")
    return str(created)
