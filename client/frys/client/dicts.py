"""Compressed frames on the client side, without I/O (docs/protocol.md §15).

A gateway sends dictionary-compressed frames to a client that declared ``zstd-dict``. This
module turns the binary WebSocket messages of a connection into MessagePack frames, in the
order they came: a compressed frame whose dictionary is not held yet is *held*, with every
message after it, while the shell fetches the dictionary; once it is there the held
messages are released in order. When the dictionary cannot be had or used (the fetch fails,
it fails its checks, a frame is over the limits or corrupt) the inbox *fails*: it reports
why, releases nothing it cannot decode, and the shell reconnects declaring no codec, so the
stream never stalls on a dictionary (events then resume from their position).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from frys.shared.protocol import zdict


@dataclass(slots=True)
class Received:
    """What a message (or a dictionary) released."""

    frames: list[bytes] = field(default_factory=list)
    """MessagePack frames to process now, in order."""
    fetch: int | None = None
    """A dictionary to fetch (by id) before anything more is released."""
    failure: str | None = None
    """Why compressed delivery has to stop (reconnect without ``zstd-dict``)."""


class CompressedInbox:
    """One client's dictionaries and the messages waiting for one (see the module docstring)."""

    def __init__(
        self,
        max_frame_bytes: int = zdict.DEFAULT_MAX_FRAME_BYTES,
        max_dict_bytes: int = zdict.DEFAULT_MAX_DICT_BYTES,
    ) -> None:
        self.decoder = zdict.FrameDecoder(max_frame_bytes, max_dict_bytes)
        self.held: deque[bytes] = deque()
        self.wanted: int | None = None
        """The dictionary being fetched, while messages are held."""
        self.failed: str | None = None
        self.compressed = 0
        """Compressed frames decoded."""
        self.dropped = 0
        """Compressed frames that could not be decoded (after a failure)."""

    def receive(self, message: bytes) -> Received:
        """One binary WebSocket message of the connection."""
        if self.wanted is not None:
            self.held.append(message)
            return Received()
        if self.failed is not None:
            if zdict.is_compressed(message):
                self.dropped += 1
                return Received()
            return Received([message])
        if not zdict.is_compressed(message):
            return Received([message])
        out = Received()
        self._decode(message, out)
        return out

    def _decode(self, message: bytes, out: Received) -> bool:
        """Decode one compressed message into ``out``; False when it must wait or failed."""
        try:
            out.frames.append(self.decoder.decode(message))
        except zdict.UnknownDictionary as exc:
            self.wanted = exc.dict_id
            self.held.appendleft(message)
            out.fetch = exc.dict_id
            return False
        except zdict.DictionaryError as exc:
            self.dropped += 1
            out.failure = self._fail(exc.reason)
            return False
        self.compressed += 1
        return True

    def dictionary(self, content: bytes) -> Received:
        """The dictionary that was fetched: check it, then release what waited for it."""
        out = Received()
        wanted = self.wanted
        if wanted is None:
            return out
        try:
            self.decoder.add(content, wanted)
        except zdict.DictionaryError as exc:
            return self.fetch_failed(f"dictionary {zdict.format_id(wanted)}: {exc.reason}")
        self.wanted = None
        while self.held:
            message = self.held.popleft()
            if not zdict.is_compressed(message):
                out.frames.append(message)
                continue
            if self.failed is not None:
                self.dropped += 1
                continue
            if not self._decode(message, out) and out.fetch is not None:
                return out  # another dictionary: the rest stays held
        return out

    def fetch_failed(self, reason: str) -> Received:
        """The dictionary could not be had: stop compressed delivery, release the plain
        messages that waited, drop the compressed ones."""
        out = Received(failure=self._fail(reason))
        self.wanted = None
        while self.held:
            message = self.held.popleft()
            if zdict.is_compressed(message):
                self.dropped += 1
            else:
                out.frames.append(message)
        return out

    def _fail(self, reason: str) -> str:
        if self.failed is None:
            self.failed = reason
        return reason

    def reset(self) -> None:
        """A new connection: nothing is held any more (dictionaries stay cached)."""
        self.held.clear()
        self.wanted = None
        self.failed = None
