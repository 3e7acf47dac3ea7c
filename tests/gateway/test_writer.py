"""The client writer without sockets: nothing after Close, bounded, conflating, paced."""

from __future__ import annotations

import asyncio
from typing import Any

from frys.gateway.metrics import Metrics
from frys.gateway.writer import BULK_WATERMARK, ClientWriter
from frys.shared.protocol import frames as f
from frys.shared.protocol.channels import ChannelKind
from frys.shared.protocol.codec import DEFAULT_CODEC


class Transport:
    """A transport whose buffer drains only when the test says so."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.buffered = 0
        self.closing = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        assert not self.closing, "write after the transport closed"
        self.written.append(bytes(data))
        self.buffered += len(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.aborted = True
        self.closing = True


class Source:
    def __init__(self, kind: ChannelKind, snapshot: bytes | None = None) -> None:
        self.kind = kind
        self.snapshot = snapshot
        self.subscribed: set[object] = set()
        self.resynced = 0

    def snapshot_frame(self, binary: bool) -> bytes | None:
        return self.snapshot

    def has_subscriber(self, sub: object) -> bool:
        return sub in self.subscribed

    def tensor_stale_for(self, sub: object) -> bool:
        return False

    def tensor_resync(self, sub: object) -> bool:
        self.resynced += 1
        return True


async def until(predicate: Any) -> None:
    """Let the writer's tasks run until ``predicate()`` holds (bounded)."""
    for _ in range(200):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition not reached")


def make(queue_bytes: int = 1000) -> tuple[ClientWriter, Transport, list[ClientWriter], list[str]]:
    transport = Transport()
    scheduled: list[ClientWriter] = []
    slow: list[str] = []
    writer = ClientWriter(
        transport,  # type: ignore[arg-type]
        DEFAULT_CODEC,
        Metrics(),
        scheduled.append,
        queue_bytes,
        lambda: slow.append("slow"),
    )
    return writer, transport, scheduled, slow


async def test_deliveries_of_a_tick_go_out_in_one_write() -> None:
    writer, transport, scheduled, _ = make()
    src = Source(ChannelKind.COLLAB)
    writer.deliver(b"a", src)
    writer.deliver(b"b", src)
    assert scheduled == [writer]  # scheduled once for the tick
    writer.flush_out()
    assert transport.written == [b"ab"]


async def test_nothing_is_written_after_close() -> None:
    writer, transport, _, _ = make(queue_bytes=10 * BULK_WATERMARK)
    src = Source(ChannelKind.STATE)
    writer.deliver(b"pending", src)
    transport.buffered = BULK_WATERMARK + 1  # the paced queue must wait
    for _ in range(3):
        writer.deliver_tensor(b"x" * 100, src)
    assert transport.written == []
    assert writer.close()
    transport.buffered = 0  # the socket drains while the close frame goes out
    await asyncio.sleep(0.05)  # let the paced pump run
    writer.flush_out()
    writer.send(f.Pong(id=1))
    writer.write(b"late")
    writer.deliver(b"late", src)
    writer.deliver_tensor(b"late", src)
    assert transport.written == []
    assert not writer.close()  # once only
    writer.release()


async def test_paced_tensor_frames_follow_the_buffer() -> None:
    writer, transport, _, _ = make(queue_bytes=10 * BULK_WATERMARK)
    src = Source(ChannelKind.STATE)
    transport.buffered = BULK_WATERMARK + 1
    writer.deliver_tensor(b"1", src)
    writer.deliver_tensor(b"2", src)
    await asyncio.sleep(0.01)
    assert transport.written == []
    transport.buffered = 0
    await until(lambda: len(transport.written) == 2)
    assert transport.written == [b"1", b"2"]
    writer.release()


async def test_a_backlogged_writer_conflates_state_and_cuts_other_kinds() -> None:
    writer, transport, _, slow = make(queue_bytes=100)
    state = Source(ChannelKind.STATE, snapshot=b"newest")
    state.subscribed.add(writer)
    events = Source(ChannelKind.EVENTS)
    writer.write(b"x" * 200)  # over queue_bytes: backlogged
    assert writer.backlogged
    writer.deliver(b"old", state)
    assert writer._out is None and slow == []
    writer.deliver(b"event", events)
    assert slow == ["slow"]
    transport.buffered = 0  # the reader caught up
    await until(lambda: not writer.backlogged)
    assert transport.written[-1] == b"newest"  # the newest state value, once
    writer.release()


async def test_an_unsubscribed_channel_owes_no_conflated_value() -> None:
    writer, transport, _, _ = make(queue_bytes=100)
    state = Source(ChannelKind.STATE, snapshot=b"newest")
    writer.write(b"x" * 200)
    writer.deliver(b"old", state)
    writer.forget(state)
    transport.buffered = 0
    await until(lambda: not writer.backlogged)
    assert transport.written == [b"x" * 200]
    writer.release()
