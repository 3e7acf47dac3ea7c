"""The client's inbox of compressed frames: order kept while a dictionary is fetched, plain
delivery after any failure, nothing undecodable ever released."""

from __future__ import annotations

import functools

import msgpack

from frys.client.dicts import CompressedInbox
from frys.shared.protocol import zdict


@functools.cache
def dictionaries() -> tuple[zdict.Dictionary, zdict.Dictionary]:
    def samples(tag: str) -> list[bytes]:
        return [
            msgpack.packb({"op": "message", "ch": f"wf:{i % 3}:{tag}", "seq": i, "data": {tag: i}})
            for i in range(300)
        ]

    return zdict.train(samples("events"), 2048), zdict.train(samples("state"), 2048)


def frame(i: int) -> bytes:
    return msgpack.packb({"op": "message", "ch": "wf:1:events", "seq": i, "data": {"events": i}})


def test_plain_frames_pass_through() -> None:
    inbox = CompressedInbox()
    out = inbox.receive(frame(1))
    assert out.frames == [frame(1)] and out.fetch is None and out.failure is None


def test_frames_wait_in_order_for_their_dictionary() -> None:
    a, b = dictionaries()
    ca, cb = zdict.FrameCompressor(a), zdict.FrameCompressor(b)
    inbox = CompressedInbox()
    first = inbox.receive(ca.compress(frame(1)))
    assert first.fetch == a.id and not first.frames
    assert inbox.receive(frame(2)).frames == []  # held behind the compressed one
    assert inbox.receive(cb.compress(frame(3))).frames == []
    assert inbox.receive(ca.compress(frame(4))).frames == []
    out = inbox.dictionary(a.content)
    assert out.frames == [frame(1), frame(2)] and out.fetch == b.id
    out = inbox.dictionary(b.content)
    assert out.frames == [frame(3), frame(4)] and out.fetch is None
    assert inbox.compressed == 3
    assert inbox.receive(ca.compress(frame(5))).frames == [frame(5)]


def test_a_dictionary_that_fails_its_checks_stops_compressed_delivery() -> None:
    a, _ = dictionaries()
    inbox = CompressedInbox()
    inbox.receive(zdict.FrameCompressor(a).compress(frame(1)))
    inbox.receive(frame(2))
    forged = a.content[:200] + bytes([a.content[200] ^ 1]) + a.content[201:]
    out = inbox.dictionary(forged)
    assert out.failure is not None and "names itself" in out.failure
    assert out.frames == [frame(2)]
    assert inbox.dropped == 1
    later = inbox.receive(zdict.FrameCompressor(a).compress(frame(3)))
    assert later.frames == [] and inbox.dropped == 2


def test_a_failed_fetch_releases_the_plain_frames_only() -> None:
    a, _ = dictionaries()
    inbox = CompressedInbox()
    inbox.receive(zdict.FrameCompressor(a).compress(frame(1)))
    inbox.receive(frame(2))
    out = inbox.fetch_failed("HTTP 404: unknown dictionary")
    assert out.failure == "HTTP 404: unknown dictionary" and out.frames == [frame(2)]


def test_a_bomb_fails_without_decompressing() -> None:
    a, _ = dictionaries()
    inbox = CompressedInbox(max_frame_bytes=1024)
    inbox.receive(zdict.FrameCompressor(a).compress(frame(0)))
    inbox.dictionary(a.content)
    bomb = zdict.FrameCompressor(a).compress(bytes(4096))
    out = inbox.receive(bomb)
    assert out.failure is not None and "declares 4096 bytes" in out.failure


def test_a_new_connection_holds_nothing_and_keeps_the_cache() -> None:
    a, _ = dictionaries()
    inbox = CompressedInbox()
    inbox.receive(zdict.FrameCompressor(a).compress(frame(1)))
    inbox.dictionary(a.content)
    inbox.receive(zdict.FrameCompressor(a).compress(frame(2)))
    inbox.reset()
    assert inbox.receive(zdict.FrameCompressor(a).compress(frame(3))).frames == [frame(3)]
