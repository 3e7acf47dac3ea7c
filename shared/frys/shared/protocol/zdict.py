"""Dictionary-compressed frames (payload codec ``zstd-dict``), sans I/O.

Small messages (a workflow event is a couple of hundred bytes) compress poorly on their own:
zstd has nothing to refer back to. A dictionary learnt from earlier messages of the same
shape gives it the keys, the channel names, the recurring values, so a 200-byte frame shrinks
to a third or less. A gateway sends a frame compressed this way only to clients that listed
``zstd-dict`` in ``connect.codecs``.

**On the wire** (docs/protocol.md §15) a compressed frame is one binary WebSocket message
holding one zstd frame (RFC 8878) whose content is the canonical MessagePack frame that would
otherwise have been sent. Its header names the dictionary (``Dictionary_ID``, 4 bytes) and
declares the content size. A MessagePack frame is a map, so its first byte is never 0x28, the
first byte of the zstd magic number: a client tells the two apart from the first byte.

**Dictionaries** are zstd dictionaries (magic ``37 A4 30 EC``) and content-addressed: the
id of a dictionary is derived from its bytes (:func:`content_id`) and stored in its own
``Dictionary_ID`` field, so whoever holds the bytes can check that they are the dictionary a
frame names, and two gateways that learnt the same bytes name them alike. Ids are written as
8 lower-case hexadecimal digits where a string is needed (``dict`` op, ``GET /dict/{id}``).

**Limits** are checked before anything is allocated: a dictionary larger than
``max_dict_bytes`` is refused before it is parsed, and a frame's declared content size (and
its window) before it is decompressed; exactly the declared size is asked for.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any, Final

import zstandard

from frys.shared.protocol.errors import FrysError

CODEC_ZSTD_DICT: Final = "zstd-dict"
"""The name a client lists in ``connect.codecs`` to receive dictionary-compressed frames."""
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
DICT_MAGIC: Final = b"\x37\xa4\x30\xec"
MIN_DICT_ID: Final = 32768
"""zstd reserves ids below 2^15 for registered dictionaries."""
MAX_DICT_ID: Final = (1 << 31) - 1
"""…and ids of 2^31 and above."""
DEFAULT_MAX_DICT_BYTES: Final = 128 * 1024
DEFAULT_MAX_FRAME_BYTES: Final = 64 * 1024 * 1024
MAX_WINDOW_BYTES: Final = 1 << 23
_U32 = struct.Struct("<I")
TRAIN_K: Final = 200
TRAIN_D: Final = 8
"""COVER parameters of training, fixed rather than searched: on workflow events they give
within 1 % of the searched ratio in a sixth of the time (about 10 ms for 400 frames), and
the search's long stretches holding the interpreter would stall a gateway's event loop."""


class DictionaryError(FrysError):
    """A dictionary or a compressed frame that cannot be used; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownDictionary(DictionaryError):
    """A frame names a dictionary the decoder does not hold (fetch it, then decode)."""

    def __init__(self, dict_id: int) -> None:
        super().__init__(f"unknown dictionary {format_id(dict_id)}")
        self.dict_id = dict_id


class DictionaryLimitError(DictionaryError):
    """A dictionary or a frame over the limits, refused before any allocation."""


def format_id(dict_id: int) -> str:
    return f"{dict_id:08x}"


def parse_id(text: str) -> int:
    """The id written as 8 hexadecimal digits; raises :class:`DictionaryError`."""
    if len(text) != 8 or not all(c in "0123456789abcdef" for c in text):
        raise DictionaryError(f"dictionary id {text[:16]!r} is not 8 lower-case hex digits")
    value = int(text, 16)
    if not MIN_DICT_ID <= value <= MAX_DICT_ID:
        raise DictionaryError(f"dictionary id {text} is outside the range zstd allows")
    return value


def content_id(content: bytes) -> int:
    """The id of a dictionary: SHA-256 of its bytes with the id field (bytes 4-7) zeroed,
    first 4 bytes little-endian, mapped into zstd's unreserved range."""
    h = hashlib.sha256(content[:4] + b"\0\0\0\0" + content[8:]).digest()
    value = int.from_bytes(h[:4], "little")
    return MIN_DICT_ID + value % (MAX_DICT_ID - MIN_DICT_ID + 1)


def seal(trained: bytes) -> bytes:
    """A trained zstd dictionary with its content-derived id written into it."""
    if len(trained) < 8 or trained[:4] != DICT_MAGIC:
        raise DictionaryError("not a zstd dictionary")
    return trained[:4] + _U32.pack(content_id(trained)) + trained[8:]


@dataclass(frozen=True, slots=True)
class Dictionary:
    """A checked dictionary: its id is the one its bytes name and derive to."""

    id: int
    content: bytes

    @property
    def name(self) -> str:
        return format_id(self.id)


def check_dictionary(
    content: bytes, expected: int | None = None, max_bytes: int = DEFAULT_MAX_DICT_BYTES
) -> Dictionary:
    """Check fetched dictionary bytes before use: size first, then magic, the id field
    against the content, and against ``expected`` (the id asked for)."""
    if len(content) > max_bytes:
        raise DictionaryLimitError(f"dictionary of {len(content)} bytes exceeds {max_bytes}")
    if len(content) < 8 or content[:4] != DICT_MAGIC:
        raise DictionaryError("not a zstd dictionary")
    stated = _U32.unpack_from(content, 4)[0]
    derived = content_id(content)
    if stated != derived:
        raise DictionaryError(
            f"dictionary names itself {format_id(stated)} but its bytes are {format_id(derived)}"
        )
    if expected is not None and derived != expected:
        raise DictionaryError(f"asked for {format_id(expected)}, got {format_id(derived)}")
    return Dictionary(derived, content)


class FrameCompressor:
    """Compresses frames with one dictionary (no state kept between frames: any number of
    connections can read what it makes)."""

    __slots__ = ("_compress", "dictionary", "level")

    def __init__(self, dictionary: Dictionary, level: int = 3) -> None:
        self.dictionary = dictionary
        self.level = level
        zd = zstandard.ZstdCompressionDict(
            dictionary.content, dict_type=zstandard.DICT_TYPE_FULLDICT
        )
        zd.precompute_compress(level=level)
        cctx = zstandard.ZstdCompressor(
            dict_data=zd, write_checksum=False, write_content_size=True, write_dict_id=True
        )
        self._compress = cctx.compress

    def compress(self, frame: bytes) -> bytes:
        out: bytes = self._compress(frame)
        return out


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """What a compressed frame's zstd header declares."""

    dict_id: int
    content_size: int
    window_size: int


def is_compressed(message: bytes | bytearray | memoryview) -> bool:
    """Whether a binary WebSocket message is a compressed frame (rather than MessagePack)."""
    return len(message) >= 4 and bytes(message[:4]) == ZSTD_MAGIC


def read_header(message: bytes | bytearray | memoryview) -> FrameHeader:
    """Parse a compressed frame's header; raises :class:`DictionaryError`."""
    if not is_compressed(message):
        raise DictionaryError("not a compressed frame")
    try:
        params = zstandard.get_frame_parameters(message)
    except zstandard.ZstdError as exc:
        raise DictionaryError(f"corrupt compressed frame header ({exc})") from None
    if params.dict_id == 0:
        raise DictionaryError("compressed frame names no dictionary")
    if params.content_size == zstandard.CONTENTSIZE_UNKNOWN:
        raise DictionaryError("compressed frame does not declare its size")
    return FrameHeader(params.dict_id, params.content_size, params.window_size)


class FrameDecoder:
    """Decompresses frames with the dictionaries it holds (a client's cache)."""

    def __init__(
        self,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        max_dict_bytes: int = DEFAULT_MAX_DICT_BYTES,
    ) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.max_dict_bytes = max_dict_bytes
        self._decoders: dict[int, zstandard.ZstdDecompressor] = {}

    def __contains__(self, dict_id: int) -> bool:
        return dict_id in self._decoders

    def add(self, content: bytes, expected: int | None = None) -> Dictionary:
        """Check and hold a dictionary (see :func:`check_dictionary`)."""
        dictionary = check_dictionary(content, expected, self.max_dict_bytes)
        zd = zstandard.ZstdCompressionDict(content, dict_type=zstandard.DICT_TYPE_FULLDICT)
        self._decoders[dictionary.id] = zstandard.ZstdDecompressor(
            dict_data=zd, max_window_size=MAX_WINDOW_BYTES
        )
        return dictionary

    def held(self) -> list[int]:
        return list(self._decoders)

    def decode(self, message: bytes) -> bytes:
        """The MessagePack frame a compressed frame carries. Raises
        :class:`UnknownDictionary` when its dictionary is not held (nothing is lost: fetch
        it and decode again), :class:`DictionaryLimitError` for a declared size or window
        over the limits, :class:`DictionaryError` for anything corrupt.

        This is every compressed delivery's path, so it is lean: the header's declared
        size is checked against the limit, and since zstd then allocates exactly that
        size (and fails on a frame that does not produce it), no further output bound is
        needed. Bytes after the zstd frame are ignored (senders never write any)."""
        try:
            params = _frame_parameters(message)  # checks the magic number too
        except zstandard.ZstdError as exc:
            raise DictionaryError(f"not a compressed frame ({exc})") from None
        size = params.content_size
        if size > self.max_frame_bytes:
            if size == zstandard.CONTENTSIZE_UNKNOWN:
                raise DictionaryError("compressed frame does not declare its size")
            raise DictionaryLimitError(
                f"compressed frame declares {size} bytes, at most {self.max_frame_bytes} allowed"
            )
        dctx = self._decoders.get(params.dict_id)
        if dctx is None:
            if params.dict_id == 0:
                raise DictionaryError("compressed frame names no dictionary")
            raise UnknownDictionary(params.dict_id)
        if params.window_size > MAX_WINDOW_BYTES:
            raise DictionaryLimitError(f"compressed frame window of {params.window_size} bytes")
        try:
            out: bytes = dctx.decompress(message)
        except zstandard.ZstdError as exc:
            raise DictionaryError(f"corrupt compressed frame ({exc})") from None
        return out


_frame_parameters = zstandard.get_frame_parameters


def train(samples: list[bytes], dict_bytes: int = 8192, level: int = 3) -> Dictionary:
    """A sealed dictionary of at most ``dict_bytes`` learnt from ``samples`` (frames as
    they would be sent). Raises :class:`DictionaryError` when zstd cannot learn one (too
    few or too uniform samples)."""
    try:
        trained = zstandard.train_dictionary(
            dict_bytes, list[Any](samples), level=level, k=TRAIN_K, d=TRAIN_D
        )
    except zstandard.ZstdError as exc:
        raise DictionaryError(f"no dictionary could be learnt ({exc})") from None
    content = seal(trained.as_bytes())
    return Dictionary(content_id(content), content)
