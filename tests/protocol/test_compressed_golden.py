"""Golden vectors of compressed frames (docs/protocol.md §15): the fixture's dictionary checks
out against its id, every compressed vector decodes to the plain frame of its §13 vector,
and the document shows the fixture's bytes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from frys.shared.protocol import codec, zdict
from frys.shared.protocol.errors import DecodeError
from tests.protocol.vectors import BY_NAME, COMPRESSED, load

GOLDEN: dict[str, Any] = load()["compressed"]
DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")


def test_the_dictionary_is_content_addressed() -> None:
    content = bytes.fromhex(GOLDEN["dictionary"])
    d = zdict.check_dictionary(content, zdict.parse_id(GOLDEN["dict_id"]))
    assert d.name == GOLDEN["dict_id"]


@pytest.mark.parametrize("entry", GOLDEN["frames"], ids=lambda e: e["name"])
def test_compressed_vectors_decode_to_their_frames(entry: dict[str, str]) -> None:
    decoder = zdict.FrameDecoder()
    decoder.add(bytes.fromhex(GOLDEN["dictionary"]))
    packed = bytes.fromhex(entry["compressed"])
    assert zdict.is_compressed(packed)
    assert zdict.read_header(packed).dict_id == zdict.parse_id(GOLDEN["dict_id"])
    plain = decoder.decode(packed)
    assert plain.hex() == entry["msgpack"]
    assert codec.decode_msgpack(plain) == BY_NAME[entry["name"]].expected_msgpack


def test_the_fixture_compresses_the_listed_vectors() -> None:
    assert [e["name"] for e in GOLDEN["frames"]] == list(COMPRESSED)


def test_the_document_shows_the_fixture() -> None:
    section = DOC.split("## 15. Compressed frames", 1)[1]
    assert GOLDEN["dict_id"] in section
    shown = re.findall(r"^([0-9a-f]{40,})$", section, re.MULTILINE)
    entries = {e["name"]: e["compressed"] for e in GOLDEN["frames"]}
    assert shown == [entries["message_state"]]


def test_a_compressed_frame_is_not_a_msgpack_frame() -> None:
    for entry in GOLDEN["frames"]:
        with pytest.raises(DecodeError):
            codec.decode_msgpack(bytes.fromhex(entry["compressed"]))
