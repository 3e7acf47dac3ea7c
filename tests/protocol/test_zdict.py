"""Dictionary-compressed frames: exact round trips, content-addressed ids, limits checked
before any allocation, and a clear error for every way a frame or a dictionary can be bad."""

from __future__ import annotations

import functools
import struct

import msgpack
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from frys.shared.protocol import zdict


@functools.cache
def dictionary() -> zdict.Dictionary:
    samples = [
        msgpack.packb(
            {"op": "message", "ch": f"wf:{i % 7}:events", "seq": 1000 + i,
             "data": {"type": "step.started", "step": i % 5, "at": 1764000000000 + i}}
        )
        for i in range(400)
    ]  # fmt: skip
    return zdict.train(samples, 4096)


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=4096))
def test_any_frame_round_trips(frame: bytes) -> None:
    d = dictionary()
    packed = zdict.FrameCompressor(d).compress(frame)
    assert zdict.is_compressed(packed)
    assert zdict.read_header(packed).dict_id == d.id
    dec = zdict.FrameDecoder()
    dec.add(d.content, d.id)
    assert dec.decode(packed) == frame


def test_ids_are_derived_from_the_content_and_checked() -> None:
    d = dictionary()
    assert zdict.content_id(d.content) == d.id
    assert zdict.MIN_DICT_ID <= d.id <= zdict.MAX_DICT_ID
    assert zdict.parse_id(d.name) == d.id
    assert zdict.check_dictionary(d.content, d.id) == d
    forged = d.content[:100] + bytes([d.content[100] ^ 1]) + d.content[101:]
    with pytest.raises(zdict.DictionaryError, match="names itself"):
        zdict.check_dictionary(forged)
    with pytest.raises(zdict.DictionaryError, match="asked for"):
        zdict.check_dictionary(d.content, d.id ^ 1)
    with pytest.raises(zdict.DictionaryError):
        zdict.check_dictionary(b"\x00" * 64)


@pytest.mark.parametrize("text", ["", "1234567", "123456789", "ABCDEF12", "00000001", "ffffffff"])
def test_bad_id_strings_are_refused(text: str) -> None:
    with pytest.raises(zdict.DictionaryError):
        zdict.parse_id(text)


def test_an_oversized_dictionary_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(zdict.DictionaryLimitError):
        zdict.check_dictionary(zdict.DICT_MAGIC + bytes(200_000))
    dec = zdict.FrameDecoder(max_dict_bytes=1024)
    with pytest.raises(zdict.DictionaryLimitError):
        dec.add(dictionary().content)


def test_unknown_dictionary_names_the_id_to_fetch() -> None:
    d = dictionary()
    packed = zdict.FrameCompressor(d).compress(b"\x81\xa2op\xa4ping")
    with pytest.raises(zdict.UnknownDictionary) as err:
        zdict.FrameDecoder().decode(packed)
    assert err.value.dict_id == d.id


def _frame_declaring(size: int, dict_id: int) -> bytes:
    """A zstd frame header declaring ``size`` bytes of content and ``dict_id``, then junk."""
    fhd = 0b11_1_0_0_0_11  # 8-byte content size, single segment, 4-byte dictionary id
    return zdict.ZSTD_MAGIC + bytes([fhd]) + struct.pack("<IQ", dict_id, size) + b"\x01\x00\x00"


def test_a_bomb_is_refused_from_its_header() -> None:
    d = dictionary()
    dec = zdict.FrameDecoder(max_frame_bytes=1 << 20)
    dec.add(d.content)
    with pytest.raises(zdict.DictionaryLimitError, match="declares"):
        dec.decode(_frame_declaring(1 << 40, d.id))
    real = zstandard.ZstdCompressor(
        dict_data=zstandard.ZstdCompressionDict(d.content), write_content_size=True
    ).compress(bytes(2 << 20))
    with pytest.raises(zdict.DictionaryLimitError):
        dec.decode(real)


def test_corrupt_frames_are_dictionary_errors() -> None:
    d = dictionary()
    dec = zdict.FrameDecoder()
    dec.add(d.content)
    packed = bytearray(zdict.FrameCompressor(d).compress(b"x" * 300))
    packed[-3] ^= 0xFF
    with pytest.raises(zdict.DictionaryError):
        dec.decode(bytes(packed))
    with pytest.raises(zdict.DictionaryError, match="not a compressed frame"):
        dec.decode(b"\x81\xa2op")
    no_dict = zstandard.ZstdCompressor(write_content_size=True).compress(b"hello")
    with pytest.raises(zdict.DictionaryError, match="names no dictionary"):
        dec.decode(no_dict)


def test_a_msgpack_frame_is_never_taken_for_a_compressed_one() -> None:
    assert not zdict.is_compressed(msgpack.packb({"op": "ping"}))
    assert zdict.ZSTD_MAGIC[0] == 0x28  # a positive fixint: never the start of a map
