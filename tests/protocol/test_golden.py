"""Golden vectors: every op, both directions, pinned byte for byte in ``golden_v1.json``.

A failure here means the wire format changed. If that is intended, it is a protocol change:
regenerate with ``python -m tests.protocol.vectors --write`` and review the diff (see
``vectors.py``); never edit the fixture by hand.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import msgpack
import pytest

from frys.shared.protocol import codec
from frys.shared.protocol import frames as f
from frys.shared.protocol.delivery import MessageTemplate
from tests.protocol.strategies import attribute
from tests.protocol.vectors import BY_NAME, DOC_VECTORS, REGENERATE, VECTORS, Vector, load

GOLDEN: dict[str, Any] = load()
ENTRIES: dict[str, dict[str, str]] = {e["name"]: e for e in GOLDEN["vectors"]}
DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def assert_round_trip(
    wire_codec: codec.WireCodec, frame: f.Frame, wire: bytes | str, decoded: f.Frame
) -> None:
    """Encoding ``frame`` gives exactly ``wire``, and decoding ``wire`` gives ``decoded``."""
    encoded = wire_codec.encode(frame)
    assert encoded == wire, f"{frame.OP}: encoding changed; regenerate deliberately: {REGENERATE}"
    assert wire_codec.decode(wire) == decoded
    # The canonical form is a fixed point: re-encoding what was decoded gives the same wire.
    assert wire_codec.encode(wire_codec.decode(wire)) == wire_codec.encode(decoded)


def test_fixture_holds_exactly_the_defined_vectors() -> None:
    assert list(ENTRIES) == [v.name for v in VECTORS], f"out of date; run {REGENERATE}"
    for entry in GOLDEN["vectors"]:
        vector = BY_NAME[entry["name"]]
        assert entry["op"] == vector.frame.OP
        assert entry["direction"] == vector.direction


def test_every_op_has_vectors_in_its_direction() -> None:
    for op in f.CLIENT_OPS:
        assert any(op == v.frame.OP and v.direction == "client" for v in VECTORS), op
    for op in f.SERVER_OPS:
        assert any(op == v.frame.OP and v.direction == "gateway" for v in VECTORS), op


def test_every_field_is_pinned_present_and_absent() -> None:
    """Each field of each op appears in some vector; each omissible field is also left out
    of some vector of its op."""
    for cls in f.ALL_OPS.values():
        objs = [codec.to_object(v.frame) for v in VECTORS if type(v.frame) is cls]
        for name in cls.FIELDS:
            assert any(name in obj for obj in objs), f"{cls.OP}.{name} never present"
            fld = next(x for x in dataclasses.fields(cls) if x.name == attribute(name))
            if fld.default is None or fld.default == ():
                assert any(name not in obj for obj in objs), f"{cls.OP}.{name} never absent"


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_msgpack_vector(vector: Vector) -> None:
    wire = bytes.fromhex(ENTRIES[vector.name]["msgpack"])
    assert_round_trip(codec.MSGPACK, vector.frame, wire, vector.expected_msgpack)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_json_vector(vector: Vector) -> None:
    wire = ENTRIES[vector.name]["json"]
    assert_round_trip(codec.JSON, vector.frame, wire, vector.expected_json)


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_canonical_key_order(vector: Vector) -> None:
    """``op`` first, then the present fields in the frame's ``FIELDS`` order, in both forms."""
    cls = type(vector.frame)
    from_msgpack = msgpack.unpackb(
        bytes.fromhex(ENTRIES[vector.name]["msgpack"]), raw=False, strict_map_key=False
    )
    from_json = json.loads(ENTRIES[vector.name]["json"])
    for obj in (from_msgpack, from_json):
        keys = list(obj)
        assert keys[0] == "op" and obj["op"] == cls.OP
        assert keys[1:] == [name for name in cls.FIELDS if name in obj]


@pytest.mark.parametrize(
    "vector", [v for v in VECTORS if isinstance(v.frame, f.Message)], ids=lambda v: v.name
)
def test_message_template_matches_the_vectors(vector: Vector) -> None:
    """The fan-out fast path writes the very bytes the golden vectors pin."""
    frame = vector.expected_msgpack
    assert isinstance(frame, f.Message)
    packed = codec.pack_data(frame.data)
    template = MessageTemplate(frame.ch)
    assert (
        template.msgpack(packed, frame.seq, frame.from_, frame.tc, frame.enc).hex()
        == (ENTRIES[vector.name]["msgpack"])
    )
    text = template.json(packed, frame.seq, frame.from_, frame.tc, frame.enc)
    assert text == ENTRIES[vector.name]["json"]
    typed = template.frame(packed, frame.seq, frame.from_, frame.tc, frame.enc)
    assert codec.encode_msgpack(typed) == (bytes.fromhex(ENTRIES[vector.name]["msgpack"]))


_DOC_LINE = re.compile(r"^(vector|msgpack|json)\s+(.+)$")


def test_docs_show_the_fixture_vectors() -> None:
    """``docs/protocol.md`` reproduces some vectors; they must be the fixture's, verbatim."""
    text = DOC.read_text(encoding="utf-8")
    begin, end = "<!-- golden-vectors:begin -->", "<!-- golden-vectors:end -->"
    assert begin in text and end in text
    section = text.split(begin, 1)[1].split(end, 1)[0]
    shown: dict[str, dict[str, str]] = {}
    current = ""
    for line in section.splitlines():
        match = _DOC_LINE.match(line)
        if match is None:
            continue
        key, value = match.groups()
        if key == "vector":
            current = value.strip()
            shown[current] = {}
        else:
            shown[current][key] = value.strip() if key == "msgpack" else value
    assert list(shown) == list(DOC_VECTORS)
    for name, lines in shown.items():
        assert lines == {"msgpack": ENTRIES[name]["msgpack"], "json": ENTRIES[name]["json"]}, name
