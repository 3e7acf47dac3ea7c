"""The one module that touches nats-py's private API.

A gateway needs two things nats-py offers no public way to do, and both matter for its CPU
and latency budget:

- **Direct dispatch.** Every message of a subscribed channel reaches the fan-out through
  nats-py's read loop. Its public path builds a ``Msg`` object per message, puts it on the
  subscription's queue and wakes the subscription's task: for channels with few subscribers,
  that ingest is a third of a gateway's CPU. :class:`FanoutClient` hands the messages of
  chosen subscriptions straight to a synchronous handler from the read loop instead, with no
  message object, no queue and no task switch. That means overriding ``Client._process_msg``
  (the parser calls it for every ``MSG``/``HMSG``), knowing the subscription id nats-py
  assigns (``Client._sid`` before subscribing, ``Subscription._id`` after) and the client a
  subscription belongs to (``Subscription._conn``).
- **A larger read buffer.** nats-py reads its socket ``DEFAULT_BUFFER_SIZE`` (32 KiB) at a
  time and bounds its stream reader at that size: a 1 MiB tensor chunk takes 32 reads, and
  small messages queue behind megabytes of them. The size is not a ``connect`` option but a
  module global of ``nats.aio.client``, read when connecting and at every read.

One more private detail is needed to keep a public promise: ``flush()`` is meant to return once
the server has processed everything sent before it (a gateway flushes after subscribing a
channel, then tells its client the subscription is active). nats-py writes the flush's PING
straight to the socket while commands queued before it (the ``SUB`` just made) wait for its
flusher task, so the ``PONG`` can come back before the server has seen the ``SUB``, and a
message published right after is missed. :meth:`FanoutClient.flush` writes the queued
commands (``Client._pending``) out first.

Everything else in the gateway uses nats-py's public API. The versions of nats-py this module
has been checked against are pinned in ``pyproject.toml`` (:data:`TESTED_NATS_PY`), and
``tests/gateway/test_nats_adapter.py`` asserts that every private name used here still exists
with the expected shape, so a nats-py upgrade that breaks one fails there, loudly, rather
than in production.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import nats.aio.client
from nats.aio.client import DEFAULT_FLUSH_TIMEOUT
from nats.aio.client import Client as NatsClient
from nats.aio.subscription import Subscription

TESTED_NATS_PY = ">=2.9,<2.17"
"""The nats-py versions whose private API this module was checked against (the pin in
``pyproject.toml``)."""

READ_BUFFER_SIZE = 1 << 20
"""Bytes read from the socket at a time: a whole 1 MiB tensor chunk in one read."""

DirectHandler = Callable[[bytes, dict[str, str] | None], None]
"""Called synchronously from the NATS read loop with (payload, headers)."""


def parse_headers(raw: bytes) -> dict[str, str] | None:
    """NATS message headers (``NATS/1.0\\r\\nKey: value\\r\\n...\\r\\n\\r\\n``) as a dict."""
    lines = raw.split(b"\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, sep, value = line.partition(b":")
        if sep:
            headers[key.strip().decode()] = value.strip().decode()
    return headers or None


def raise_read_buffer(size: int = READ_BUFFER_SIZE) -> None:
    """Make nats-py read up to ``size`` bytes at a time.

    nats-py has no per-connection option for this: it reads the module global
    ``nats.aio.client.DEFAULT_BUFFER_SIZE`` when it opens a socket and at every read, for
    every client in the process. It is therefore set here, when a gateway connection
    connects (not when some module is imported), and only ever raised, so that a client
    that asked for more is never shrunk by one that asked for less.
    """
    if size > nats.aio.client.DEFAULT_BUFFER_SIZE:
        nats.aio.client.DEFAULT_BUFFER_SIZE = size


class FanoutClient(NatsClient):
    """A NATS client whose chosen subscriptions are dispatched synchronously.

    Subscriptions made with :meth:`subscribe_direct` call their handler from the read loop
    with the raw payload and parsed headers; all other subscriptions, requests and JetStream
    calls behave exactly as in nats-py. Direct subscriptions survive reconnects like any
    other: nats-py resubscribes them under the same id.
    """

    def __init__(self, read_buffer_size: int = READ_BUFFER_SIZE) -> None:
        super().__init__()
        self._read_buffer_size = read_buffer_size
        self._direct: dict[int, DirectHandler] = {}

    async def connect(self, *args: Any, **kwargs: Any) -> None:
        """``nats.aio.client.Client.connect``, with the read buffer raised first."""
        raise_read_buffer(self._read_buffer_size)
        await super().connect(*args, **kwargs)

    async def subscribe_direct(self, subject: str, handler: DirectHandler) -> Subscription:
        """Subscribe to ``subject`` with a synchronous ``handler`` (payload, headers).

        The handler is registered under the id nats-py is about to assign, before the
        subscription is sent to the server, so that no message can arrive ahead of it and
        end up on the subscription's (never read) queue instead.
        """
        sid = self._sid + 1  # nats-py numbers subscriptions from this counter
        self._direct[sid] = handler
        try:
            sub = await self.subscribe(subject)
        except BaseException:
            self._direct.pop(sid, None)
            raise
        if sub._id != sid:  # nats-py changed its numbering: follow it
            self._direct.pop(sid, None)
            self._direct[sub._id] = handler
        return sub

    async def flush(self, timeout: int = DEFAULT_FLUSH_TIMEOUT) -> None:
        """``Client.flush``, in order: when it returns, the server has processed every
        command sent before it, so a subscription made before it is active.

        The queued commands are written to the socket ahead of the PING, synchronously, the
        way nats-py's flusher task writes them (one snapshot, then an empty queue), so the
        order of everything written stays the order of the calls.
        """
        transport = self._transport
        if self.is_connected and transport is not None and self._pending_data_size > 0:
            transport.writelines(self._pending[:])
            self._pending = []
            self._pending_data_size = 0
        await super().flush(timeout)

    def forget_direct(self, sub: Subscription) -> None:
        """Stop dispatching ``sub`` directly (its later messages take nats-py's path)."""
        self._direct.pop(sub._id, None)

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes
    ) -> None:
        handler = self._direct.get(sid)
        if handler is None:
            await super()._process_msg(sid, subject, reply, data, headers)
            return
        stats = self.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        handler(data, parse_headers(headers) if headers else None)


async def unsubscribe_direct(sub: Subscription) -> None:
    """Unsubscribe a subscription made by :meth:`FanoutClient.subscribe_direct` (or any
    other): its handler is not called again once this returns."""
    conn = sub._conn
    if isinstance(conn, FanoutClient):
        conn.forget_direct(sub)
    await sub.unsubscribe()
