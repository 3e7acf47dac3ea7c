"""Fast encoding of ``message`` frames, the one frame on the fan-out hot path.

A gateway receives each message from NATS once and writes it to every local subscriber; it
encodes it once per subprotocol with a per-channel template, splicing the msgpack payload
bytes without decoding them. ``tests/protocol/test_golden.py`` checks the bytes equal the generic
codec's, so there is still one wire format.
"""

from __future__ import annotations

from typing import Final

import msgpack

from frys.shared.protocol import codec
from frys.shared.protocol.frames import Message, Raw, TraceContext

_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
_SEQ: Final = _pack("seq")
_FROM: Final = _pack("from")
_ENC: Final = _pack("enc")
_TC: Final = _pack("tc")
_DATA: Final = _pack("data")


class MessageTemplate:
    """Encodes ``message`` frames for one channel."""

    __slots__ = ("_json_head", "_mp_body", "channel")

    def __init__(self, channel: str):
        self.channel = channel
        self._mp_body = _pack("op") + _pack("message") + _pack("ch") + _pack(channel)
        self._json_head = '{"op":"message","ch":' + codec.dumps_json(channel)

    def msgpack(
        self,
        packed_data: bytes,
        seq: int | None = None,
        from_: str | None = None,
        tc: TraceContext | None = None,
        enc: str | None = None,
    ) -> bytes:
        """The msgpack frame; ``packed_data`` is the msgpack-encoded application data."""
        if seq is None and from_ is None and tc is None and enc is None:
            return b"\x83" + self._mp_body + _DATA + packed_data
        n = 3
        parts = [self._mp_body]
        if seq is not None:
            n += 1
            parts.append(_SEQ + _pack(seq))
        if from_ is not None:
            n += 1
            parts.append(_FROM + _pack(from_))
        if enc is not None:
            n += 1
            parts.append(_ENC + _pack(enc))
        if tc is not None:
            n += 1
            parts.append(_TC + _pack(codec.to_object_value(tc)))
        parts.append(_DATA)
        parts.append(packed_data)
        return bytes((0x80 | n,)) + b"".join(parts)

    def json(
        self,
        packed_data: bytes,
        seq: int | None = None,
        from_: str | None = None,
        tc: TraceContext | None = None,
        enc: str | None = None,
    ) -> str:
        """The JSON frame (decodes the payload: JSON subscribers pay for their format)."""
        parts = [self._json_head]
        if seq is not None:
            parts.append(f',"seq":{seq}')
        if from_ is not None:
            parts.append(',"from":' + codec.dumps_json(from_))
        if enc is not None:
            parts.append(',"enc":' + codec.dumps_json(enc))
        if tc is not None:
            parts.append(',"tc":' + codec.dumps_json(codec.to_object_value(tc)))
        parts.append(',"data":')
        parts.append(codec.dumps_json(codec.unpack_for_json(packed_data)))
        parts.append("}")
        return "".join(parts)

    def frame(
        self,
        packed_data: bytes,
        seq: int | None = None,
        from_: str | None = None,
        tc: TraceContext | None = None,
        enc: str | None = None,
    ) -> Message:
        """The same delivery as a typed frame (for tests and slow paths)."""
        return Message(ch=self.channel, data=Raw(packed_data), seq=seq, from_=from_, enc=enc, tc=tc)
