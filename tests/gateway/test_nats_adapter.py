"""Contract of the nats-py private API that ``frys.gateway.nats_adapter`` relies on.

The first tests inspect nats-py itself: when an upgrade renames or reshapes one of the
private names the adapter uses, they fail here, naming it, instead of the gateway silently
losing messages. The others run the adapter against a real nats-server.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import tomllib
import uuid
from collections.abc import AsyncIterator
from importlib.metadata import version
from pathlib import Path
from typing import Protocol

import nats
import nats.aio.client
import nats.protocol.parser
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from frys.gateway import nats_adapter
from frys.gateway.nats_adapter import FanoutClient, parse_headers, unsubscribe_direct


class _Server(Protocol):
    url: str


# --- the private names, as nats-py spells them -----------------------------------------------


def _release(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


def test_installed_nats_py_is_in_the_tested_range() -> None:
    low, high = (spec.lstrip("<>=") for spec in nats_adapter.TESTED_NATS_PY.split(","))
    installed = _release(version("nats-py"))
    assert _release(low) <= installed < _release(high), (
        f"nats-py {version('nats-py')} is outside {nats_adapter.TESTED_NATS_PY}: check "
        "frys.gateway.nats_adapter against it, then widen the pin in pyproject.toml"
    )


def test_the_pin_in_pyproject_is_the_tested_range() -> None:
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    pins = [re.sub(r"\[[^\]]*\]", "", d) for d in dependencies if d.startswith("nats-py")]
    assert pins == [f"nats-py{nats_adapter.TESTED_NATS_PY}"]  # extras such as [nkeys] aside


def test_process_msg_is_the_per_message_hook_with_the_expected_signature() -> None:
    params = list(inspect.signature(Client._process_msg).parameters)
    assert params == ["self", "sid", "subject", "reply", "data", "headers"]
    assert inspect.iscoroutinefunction(Client._process_msg)
    # The parser hands every MSG/HMSG to it, positionally, in this order.
    parser_source = inspect.getsource(nats.protocol.parser.Parser.parse)
    assert "self.nc._process_msg(sid, subject, reply, payload, hdr)" in parser_source


def test_subscription_ids_come_from_the_client_counter() -> None:
    client = Client()
    assert isinstance(client._sid, int)
    assert "self._sid += 1" in inspect.getsource(Client.subscribe)
    assert isinstance(client.stats["in_msgs"], int)
    assert isinstance(client.stats["in_bytes"], int)
    sub = Subscription(client, 7, "a.b")
    assert sub._id == 7
    assert sub._conn is client


async def test_commands_queue_ahead_of_the_socket_and_ping_skips_the_queue() -> None:
    """What :meth:`FanoutClient.flush` works around and relies on: commands wait in
    ``_pending`` (sized in ``_pending_data_size``) for the flusher, which writes a snapshot
    of them to ``_transport``; the flush's PING is written to the transport directly."""
    client = Client()
    assert client._pending == []
    assert client._pending_data_size == 0
    assert client._transport is None
    assert "self._pending.append(cmd)" in inspect.getsource(Client._send_command)
    flusher = inspect.getsource(Client._flusher)
    assert "self._transport.writelines(self._pending[:])" in flusher
    assert "self._pending = []" in flusher
    assert "self._transport.write(PING_PROTO)" in inspect.getsource(Client._send_ping)
    assert list(inspect.signature(Client.flush).parameters) == ["self", "timeout"]


def test_read_buffer_is_a_module_global_read_at_connect_and_at_every_read() -> None:
    assert isinstance(nats.aio.client.DEFAULT_BUFFER_SIZE, int)
    assert "DEFAULT_BUFFER_SIZE" in inspect.getsource(Client._read_loop)
    assert "DEFAULT_BUFFER_SIZE" in inspect.getsource(Client._connect_to_server)
    # Once nats-py offers a connect option for it, the adapter should use that instead.
    options = inspect.signature(Client.connect).parameters
    assert not [name for name in options if "buffer" in name or "read_size" in name]


def test_parse_headers() -> None:
    assert parse_headers(b"NATS/1.0\r\nA: 1\r\nB: x:y\r\n\r\n") == {"A": "1", "B": "x:y"}
    assert parse_headers(b"NATS/1.0\r\n\r\n") is None


# --- against a real server -------------------------------------------------------------------


@pytest.fixture
async def pair(nats_server: _Server) -> AsyncIterator[tuple[FanoutClient, Client]]:
    """A connected adapter client and a plain nats-py client that publishes to it."""
    fanout = FanoutClient()
    await fanout.connect(nats_server.url, connect_timeout=5)
    publisher = await nats.connect(nats_server.url, connect_timeout=5)
    try:
        yield fanout, publisher
    finally:
        await publisher.close()
        await fanout.close()


def _subject() -> str:
    return f"adapter.{uuid.uuid4().hex[:12]}"


async def _settled(fanout: FanoutClient, publisher: Client) -> None:
    """Every message ``publisher`` sent so far has reached ``fanout``: the server delivers
    in order, so a marker published last arriving proves the rest arrived (or never will)."""
    marker = _subject()
    got = asyncio.get_running_loop().create_future()

    async def on_marker(msg: Msg) -> None:
        if not got.done():
            got.set_result(None)

    sub = await fanout.subscribe(marker, cb=on_marker)
    await fanout.flush()
    await publisher.publish(marker, b"")
    await publisher.flush()
    await asyncio.wait_for(got, 5)
    await sub.unsubscribe()


async def test_connect_raises_the_read_buffer(
    nats_server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nats.aio.client, "DEFAULT_BUFFER_SIZE", 32 * 1024)
    fanout = FanoutClient()
    assert nats.aio.client.DEFAULT_BUFFER_SIZE == 32 * 1024  # nothing changes before connect
    await fanout.connect(nats_server.url, connect_timeout=5)
    try:
        assert nats.aio.client.DEFAULT_BUFFER_SIZE == nats_adapter.READ_BUFFER_SIZE
        nats_adapter.raise_read_buffer(1024)  # never lowered
        assert nats.aio.client.DEFAULT_BUFFER_SIZE == nats_adapter.READ_BUFFER_SIZE
    finally:
        await fanout.close()


async def test_direct_handler_receives_payload_and_headers(
    pair: tuple[FanoutClient, Client],
) -> None:
    fanout, publisher = pair
    subject = _subject()
    received: list[tuple[bytes, dict[str, str] | None]] = []
    sub = await fanout.subscribe_direct(
        subject, lambda data, headers: received.append((data, headers))
    )
    await fanout.flush()
    in_msgs = fanout.stats["in_msgs"]

    big = bytes(range(256)) * 3000  # larger than nats-py's default 32 KiB read
    await publisher.publish(subject, b"plain")
    await publisher.publish(subject, b"with headers", headers={"Frys-From": "a", "X": "1:2"})
    await publisher.publish(subject, big)
    await publisher.flush()
    await _settled(fanout, publisher)

    assert received == [
        (b"plain", None),
        (b"with headers", {"Frys-From": "a", "X": "1:2"}),
        (big, None),
    ]
    assert fanout.stats["in_msgs"] - in_msgs >= 3
    await unsubscribe_direct(sub)


async def test_unsubscribed_direct_subscription_receives_nothing_more(
    pair: tuple[FanoutClient, Client],
) -> None:
    fanout, publisher = pair
    subject = _subject()
    received: list[bytes] = []
    sub = await fanout.subscribe_direct(subject, lambda data, headers: received.append(data))
    await fanout.flush()
    await publisher.publish(subject, b"before")
    await publisher.flush()
    await _settled(fanout, publisher)
    assert received == [b"before"]

    await unsubscribe_direct(sub)
    await fanout.flush()
    await publisher.publish(subject, b"after")
    await publisher.flush()
    await _settled(fanout, publisher)
    assert received == [b"before"]
    assert sub._id not in fanout._direct


async def test_flush_after_subscribing_proves_the_subscription(
    pair: tuple[FanoutClient, Client],
) -> None:
    """A message published (from another connection) right after ``subscribe`` + ``flush``
    is delivered, every time."""
    fanout, publisher = pair
    missed = 0
    for round_ in range(200):
        subject = _subject()
        got = asyncio.Event()

        def on_data(data: bytes, headers: dict[str, str] | None, got: asyncio.Event = got) -> None:
            got.set()

        async def on_msg(msg: Msg, got: asyncio.Event = got) -> None:
            got.set()

        if round_ % 2:
            sub = await fanout.subscribe_direct(subject, on_data)
        else:
            sub = await fanout.subscribe(subject, cb=on_msg)
        await fanout.flush()
        await publisher.publish(subject, b"x")
        await publisher.flush()
        try:
            await asyncio.wait_for(got.wait(), 2)
        except TimeoutError:
            missed += 1
        await unsubscribe_direct(sub)
    assert missed == 0


async def test_ordinary_subscriptions_keep_working_beside_direct_ones(
    pair: tuple[FanoutClient, Client],
) -> None:
    fanout, publisher = pair
    subject = _subject()
    direct: list[bytes] = []
    ordinary: asyncio.Queue[Msg] = asyncio.Queue()

    async def on_msg(msg: Msg) -> None:
        ordinary.put_nowait(msg)

    direct_sub = await fanout.subscribe_direct(subject, lambda data, headers: direct.append(data))
    ordinary_sub = await fanout.subscribe(subject, cb=on_msg)
    await fanout.flush()
    await publisher.publish(subject, b"both", headers={"K": "v"})
    await publisher.flush()

    msg = await asyncio.wait_for(ordinary.get(), 5)
    assert (msg.subject, msg.data, msg.headers) == (subject, b"both", {"K": "v"})
    await _settled(fanout, publisher)
    assert direct == [b"both"]

    # Requests (an inbox subscription of nats-py's own) are untouched as well.
    async def echo(msg: Msg) -> None:
        await msg.respond(b"echo:" + msg.data)

    responder = await publisher.subscribe(f"{subject}.rpc", cb=echo)
    await publisher.flush()
    reply = await fanout.request(f"{subject}.rpc", b"ping", timeout=5)
    assert reply.data == b"echo:ping"

    await responder.unsubscribe()
    await ordinary_sub.unsubscribe()
    await unsubscribe_direct(direct_sub)
