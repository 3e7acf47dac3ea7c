"""Tensor streams over a client connection: numpy arrays in, numpy arrays out.

A :class:`TensorSender` turns the arrays of one outgoing stream into tensor frames (a
keyframe, then deltas, chunked when large) and answers a relay's keyframe request from the
last array. A :class:`TensorStream` reassembles and decodes the frames of a subscribed
channel and, on a gap, asks the gateway for a keyframe instead of showing a wrong array.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from frys.client.core import PublishAck
from frys.shared.protocol import frames as f
from frys.shared.protocol.channels import parse_channel
from frys.shared.protocol.publish import NO_PUBLISH, Storage, storage_of
from frys.shared.tensor import (
    ChunkAssembler,
    ChunkHeader,
    Precision,
    TensorDecoder,
    TensorEncoder,
    TensorError,
    TensorGapError,
    read_header,
)

if TYPE_CHECKING:
    from frys.client.connection import Client, Subscription

log = logging.getLogger("frys.client")


class TensorSender:
    """One outgoing tensor stream: its encoder and the last array (for keyframe requests)."""

    def __init__(
        self,
        client: Client,
        channel: str,
        stream: int,
        precision: Precision,
        max_abs_error: float,
    ):
        self.client = client
        self.channel = channel
        kind = parse_channel(channel).kind
        # Stored frames travel whole: a replay must decode without the frames before it.
        # Kinds that take no publish are left for the gateway to refuse, like any publish.
        self.stored = kind not in NO_PUBLISH and storage_of(kind, tensor=True) is Storage.STORED
        self.encoder = TensorEncoder(stream, precision=precision, max_abs_error=max_abs_error)
        self.last: Any = None
        self._want_keyframe = False
        self._lock = asyncio.Lock()

    def keyframe_wanted(self) -> None:
        """A relay asked for a keyframe: send one now from the last array (or with the
        next one, when a send is under way or nothing was sent yet)."""
        self._want_keyframe = True
        if self.last is not None and not self._lock.locked():
            self.client._spawn(self._send_quietly(), "tensor keyframe")

    async def _send_quietly(self) -> None:
        with contextlib.suppress(Exception):
            await self.send(self.last, True)

    async def send(self, array: Any, keyframe: bool) -> PublishAck:
        async with self._lock:
            whole = keyframe or self._want_keyframe or self.stored
            self._want_keyframe = False
            frames = self.encoder.encode(array, keyframe=whole)
            self.last = array
            acks = []
            for frame in frames:
                acks.append(
                    self.client._spawn(
                        self.client.publish(self.channel, frame, enc=f.ENC_TENSOR),
                        "tensor frame",
                        detached=False,
                    )
                )
                await asyncio.sleep(0)  # let other traffic interleave with large tensors
            done = await asyncio.gather(*acks, return_exceptions=True)
            for outcome in done:
                if isinstance(outcome, BaseException):
                    raise outcome
            last = done[-1]
            assert isinstance(last, PublishAck)
            return last


class TensorStream:
    """Decoded arrays of a channel's tensor streams."""

    def __init__(self, client: Client, channel: str, stream: int | None):
        self.client = client
        self.channel = channel
        self.stream = stream
        self.subscription: Subscription | None = None
        self.assembler = ChunkAssembler()
        self.decoders: dict[int, TensorDecoder] = {}
        self.gaps = 0

    def __aiter__(self) -> AsyncIterator[tuple[int, Any]]:
        return self._iterate()

    async def start(self) -> TensorStream:
        """Subscribe now (iterating subscribes too, on first use)."""
        if self.subscription is None:
            self.subscription = await self.client.subscribe(self.channel)
        return self

    async def _iterate(self) -> AsyncIterator[tuple[int, Any]]:
        await self.start()
        assert self.subscription is not None
        async for msg in self.subscription:
            if msg.enc != f.ENC_TENSOR or not isinstance(msg.data, bytes):
                continue
            decoded = self._decode(msg.data)
            if decoded is not None:
                yield decoded

    async def next(self, timeout: float | None = None) -> tuple[int, Any]:
        """The next ``(stream, array)``, waiting at most ``timeout`` seconds."""
        iterator = self._iterator
        if iterator is None:
            iterator = self._iterator = self._iterate()
        return await asyncio.wait_for(anext(iterator), timeout)

    _iterator: AsyncIterator[tuple[int, Any]] | None = None

    def _decode(self, data: bytes) -> tuple[int, Any] | None:
        try:
            header = read_header(data)
            frame: bytes | None = data
            if isinstance(header, ChunkHeader):
                frame = self.assembler.feed(data, time.monotonic())
            if frame is None:
                return None
            header = read_header(frame)
            stream_id = header.stream_id
            if self.stream is not None and stream_id != self.stream:
                return None
            decoder = self.decoders.get(stream_id)
            if decoder is None:
                decoder = self.decoders[stream_id] = TensorDecoder(stream_id)
            return stream_id, decoder.feed(frame)
        except TensorGapError as exc:
            self.gaps += 1
            log.debug("tensor gap on %s: %s; asking for a keyframe", self.channel, exc)
            self.client._spawn(
                self.client._resync(self.channel, read_header(data).stream_id), "tensor resync"
            )
            return None
        except TensorError as exc:
            log.warning("bad tensor frame on %s: %s", self.channel, exc)
            return None

    async def close(self) -> None:
        if self.subscription is not None:
            await self.subscription.unsubscribe()
