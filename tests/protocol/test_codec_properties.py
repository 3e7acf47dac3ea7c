"""Properties of the v1 codec: round trips, canonical form, and decoding of hostile input.

Decoding must only ever raise :class:`DecodeError`, with the code the gateway answers with
(400 malformed, 406 unknown op) and the request id as ``ref`` whenever it could be read.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from frys.shared.protocol import codec
from frys.shared.protocol import frames as f
from frys.shared.protocol.delivery import MessageTemplate
from frys.shared.protocol.errors import DecodeError, ErrorCode
from tests.protocol.strategies import (
    FUZZ,
    FUZZ_CHEAP,
    QUICK,
    VALID,
    WRONG,
    attribute,
    frames,
    json_data,
    msgpack_data,
    required,
    traces,
    uints,
    wrong_values,
)

OPS = list(f.ALL_OPS.values())
OP_IDS = [cls.OP for cls in OPS]


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def decode_object(obj: Any, json_safe: bool) -> f.Frame:
    """Encode a plain map in one subprotocol's syntax and decode it as a frame."""
    if json_safe:
        return codec.decode_json(codec.dumps_json(obj))
    return codec.decode_msgpack(pack(obj))


def test_field_tables_cover_every_wire_field() -> None:
    fields = {name for cls in OPS for name in cls.FIELDS}
    assert fields == set(VALID) == set(WRONG), "field tables out of date; see strategies.py"
    assert set(codec._VALIDATORS) == fields


def test_client_and_server_ops_are_disjoint() -> None:
    assert not f.CLIENT_OPS.keys() & f.SERVER_OPS.keys()
    assert len(f.ALL_OPS) == len(f.CLIENT_OPS) + len(f.SERVER_OPS)


# --- round trips ---------------------------------------------------------------------------


def default_of(cls: type[f.Frame], name: str) -> object:
    for fld in dataclasses.fields(cls):
        if fld.name == attribute(name):
            return fld.default
    raise AssertionError(name)


@pytest.mark.parametrize("cls", OPS, ids=OP_IDS)
@QUICK
@given(data=st.data())
def test_msgpack_round_trip_and_canonical_form(cls: type[f.Frame], data: st.DataObject) -> None:
    frame = data.draw(frames(cls))
    wire = codec.encode_msgpack(frame)
    assert isinstance(wire, bytes)
    assert codec.decode_msgpack(wire) == frame
    assert codec.MSGPACK.decode(wire) == frame
    assert codec.encode_msgpack(codec.decode_msgpack(wire)) == wire

    # Canonical form: op first, present fields in FIELDS order, absent optionals omitted
    # (never null), required fields always present.
    obj = msgpack.unpackb(wire, raw=False, strict_map_key=False)
    keys = list(obj)
    assert keys[0] == "op" and obj["op"] == cls.OP
    assert keys[1:] == [name for name in cls.FIELDS if name in obj]
    for name in cls.FIELDS:
        value = getattr(frame, attribute(name))
        if required(cls, name):
            assert name in obj
        elif value is None or value == default_of(cls, name):
            assert name not in obj
        if name in obj and name != "data":
            assert obj[name] is not None

    # Decoders accept any key order, ignore unknown keys and read null optionals as absent.
    extra = data.draw(
        st.dictionaries(
            st.text(max_size=8).filter(lambda k: k not in cls.FIELDS and k != "op"),
            msgpack_data(4),
            max_size=3,
        ),
        label="unknown keys",
    )
    nulls = {n: None for n in cls.FIELDS if not required(cls, n) and n not in obj}
    items = list({**obj, **extra, **nulls}.items())
    shuffled = data.draw(st.permutations(items), label="key order")
    assert codec.decode_msgpack(pack(dict(shuffled))) == frame


@pytest.mark.parametrize("cls", OPS, ids=OP_IDS)
@QUICK
@given(data=st.data())
def test_json_round_trip(cls: type[f.Frame], data: st.DataObject) -> None:
    frame = data.draw(frames(cls, json=True))
    text = codec.encode_json(frame)
    assert isinstance(text, str)
    assert codec.decode_json(text) == frame
    assert codec.decode_json(text.encode("utf-8")) == frame
    assert codec.JSON.decode(text) == frame
    assert codec.encode_json(codec.decode_json(text)) == text
    obj = json.loads(text)
    assert next(iter(obj)) == "op"
    assert list(obj)[1:] == [name for name in cls.FIELDS if name in obj]


# --- Raw splicing and the delivery fast path -------------------------------------------------


@QUICK
@given(
    ch=st.text(max_size=20),
    value=msgpack_data(),
    seq=st.none() | uints,
    from_=st.none() | st.text(max_size=10),
    tc=st.none() | traces,
)
def test_raw_data_encodes_like_the_plain_value(
    ch: str, value: Any, seq: int | None, from_: str | None, tc: f.TraceContext | None
) -> None:
    plain = f.Message(ch=ch, data=value, seq=seq, from_=from_, tc=tc)
    spliced = f.Message(ch=ch, data=f.Raw(pack(value)), seq=seq, from_=from_, tc=tc)
    assert codec.encode_msgpack(spliced) == codec.encode_msgpack(plain)
    assert codec.decode_msgpack(codec.encode_msgpack(spliced)) == plain
    assert codec.encode_json(spliced) == codec.encode_json(plain)


@QUICK
@given(
    ch=st.text(max_size=20),
    value=msgpack_data(),
    seq=st.none() | uints,
    from_=st.none() | st.text(max_size=10),
    tc=st.none() | traces,
)
def test_message_template_equals_the_generic_encoder(
    ch: str, value: Any, seq: int | None, from_: str | None, tc: f.TraceContext | None
) -> None:
    packed = pack(value)
    template = MessageTemplate(ch)
    generic = f.Message(ch=ch, data=f.Raw(packed), seq=seq, from_=from_, tc=tc)
    assert template.msgpack(packed, seq, from_, tc) == codec.encode_msgpack(generic)
    assert template.json(packed, seq, from_, tc) == codec.encode_json(generic)
    assert template.frame(packed, seq, from_, tc) == generic


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (b"\x00\xff", '{"$bytes":"AP8="}'),
        ([float("nan"), float("inf"), -float("inf"), 0.5], "[null,null,null,0.5]"),
        ({1: "a", "b": 2}, '{"1":"a","b":2}'),
        ({None: 1, True: 2}, '{"null":1,"true":2}'),
        ({"k": {2: b"\x01"}}, '{"k":{"2":{"$bytes":"AQ=="}}}'),
    ],
)
def test_json_mapping_of_data(value: Any, text: str) -> None:
    """Binary as ``{"$bytes": base64}``, non-finite floats as null, keys as their JSON text;
    the same through the template (decoded from msgpack) and through the generic encoder."""
    message = f.Message(ch="wf:1:collab", data=value)
    expected = '{"op":"message","ch":"wf:1:collab","data":' + text + "}"
    assert codec.encode_json(message) == expected
    assert MessageTemplate("wf:1:collab").json(pack(value)) == expected


def test_json_bytes_object_decodes_to_binary_only_in_its_exact_shape() -> None:
    frame = codec.decode_json(
        '{"op":"publish","id":1,"ch":"c","data":[{"$bytes":"AP8="},'
        '{"$bytes":"AP8=","x":1},{"$bytes":5}]}'
    )
    assert isinstance(frame, f.Publish)
    assert frame.data == [b"\x00\xff", {"$bytes": "AP8=", "x": 1}, {"$bytes": 5}]
    with pytest.raises(DecodeError) as info:
        codec.decode_json('{"op":"publish","id":1,"ch":"c","data":{"$bytes":"A*=="}}')
    assert info.value.code == ErrorCode.BAD_REQUEST


# --- hostile input -------------------------------------------------------------------------


def _decodes_or_decode_error(decode: Callable[[Any], f.Frame], wire: Any) -> f.Frame | None:
    """Decode ``wire``: a frame, or ``None`` after a well-formed :class:`DecodeError`; any
    other exception propagates and fails the test."""
    error: DecodeError | None = None
    try:
        frame = decode(wire)
    except DecodeError as exc:
        error = exc
    if error is not None:
        assert error.code in (ErrorCode.BAD_REQUEST, ErrorCode.UNKNOWN_OP)
        assert error.ref is None or (type(error.ref) is int and 0 <= error.ref <= f.MAX_ID)
        assert isinstance(error.reason, str) and error.reason
        return None
    assert type(frame) in OPS
    return frame


@FUZZ_CHEAP
@given(st.binary(max_size=512))
@example(b"")
@example(b"\xc1")  # never used
@example(b"\xdd\xff\xff\xff\xff")  # array of 2**32-1 elements, no elements
@example(b"\xdf\xff\xff\xff\xff")  # map of 2**32-1 entries
@example(b"\x91" * 5000)  # nesting far beyond any limit
@example(b"\x81\xa2op\xa4ping\x00")  # a valid frame followed by extra data
@example(b"\x81\x92\x01\x02\x03")  # an array as a map key
@example(b"\x82\xa2op\xa4ping\xa2id\xcf\xff\xff\xff\xff\xff\xff\xff\xff")
def test_arbitrary_bytes_to_msgpack_raise_only_decode_error(wire: bytes) -> None:
    _decodes_or_decode_error(codec.decode_msgpack, wire)
    _decodes_or_decode_error(codec.MSGPACK.decode, wire)
    _decodes_or_decode_error(codec.decode_json, wire)
    with pytest.raises(DecodeError):
        codec.JSON.decode(wire)  # frys.v1.json takes text frames only


@FUZZ_CHEAP
@given(st.text(max_size=256))
@example("")
@example("[" * 100_000)
@example('{"op":"ping","id":' + "9" * 5000 + "}")
@example('{"op":"ping","id":1e400}')
@example('{"op":"ping"} {"op":"ping"}')
@example('{"op":"ping","id":NaN}')
@example('{"op":"publish","id":1,"ch":"c","data":{"$bytes":"%%%"}}')
@example('{"op":"ping","id":1,"id":-1}')
def test_arbitrary_text_to_json_raises_only_decode_error(text: str) -> None:
    _decodes_or_decode_error(codec.decode_json, text)
    _decodes_or_decode_error(codec.JSON.decode, text)
    with pytest.raises(DecodeError):
        codec.MSGPACK.decode(text)  # frys.v1.msgpack takes binary frames only


def _maybe_frame_objects(json_safe: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Maps that look like frames: a known (or unknown) op and fields of any value."""
    names = sorted({n for cls in OPS for n in cls.FIELDS})
    values = json_data(3) if json_safe else msgpack_data(3)
    return st.fixed_dictionaries(
        {"op": st.sampled_from(OP_IDS) | st.text(max_size=8) | values},
        optional={"id": uints | values, **{n: values for n in names if n != "id"}},
    )


@FUZZ
@given(_maybe_frame_objects(json_safe=False))
def test_frame_shaped_msgpack_decodes_canonically_or_raises_decode_error(
    obj: dict[str, Any],
) -> None:
    frame = _decodes_or_decode_error(codec.decode_msgpack, pack(obj))
    if frame is not None:
        wire = codec.encode_msgpack(frame)
        assert codec.encode_msgpack(codec.decode_msgpack(wire)) == wire


@FUZZ
@given(_maybe_frame_objects(json_safe=True))
def test_frame_shaped_json_decodes_canonically_or_raises_decode_error(
    obj: dict[str, Any],
) -> None:
    frame = _decodes_or_decode_error(codec.decode_json, codec.dumps_json(obj))
    if frame is not None:
        text = codec.encode_json(frame)
        assert codec.encode_json(codec.decode_json(text)) == text


def test_pathological_input_is_rejected_quickly() -> None:
    """Large declared lengths and deep nesting fail fast instead of allocating or hanging."""
    cases: list[tuple[Any, Any]] = [
        (codec.decode_msgpack, b"\xdd\xff\xff\xff\xff"),
        (codec.decode_msgpack, b"\xdb\xff\xff\xff\xff"),
        (codec.decode_msgpack, b"\xc6\xff\xff\xff\xff"),
        (codec.decode_msgpack, b"\x91" * 1_000_000),
        (codec.decode_json, "[" * 1_000_000),
        (codec.decode_json, '{"a":' * 200_000),
    ]
    for decode, wire in cases:
        start = time.monotonic()
        with pytest.raises(DecodeError) as info:
            decode(wire)
        assert info.value.code == ErrorCode.BAD_REQUEST
        assert time.monotonic() - start < 5.0


# --- wrong field types, unknown ops, missing fields ----------------------------------------


def _with_wrong_field(
    data: st.DataObject, cls: type[f.Frame], json_safe: bool
) -> tuple[dict[str, Any], str]:
    frame = data.draw(frames(cls, json=json_safe, small=True), label="frame")
    obj = codec.to_object(frame)
    name = data.draw(st.sampled_from([n for n in cls.FIELDS if wrong_values(n) is not None]))
    wrong = wrong_values(name)
    assert wrong is not None
    obj[name] = data.draw(wrong(json_safe), label=f"wrong {name}")
    return obj, name


_NEW = object()


def _expected_ref(obj: dict[str, Any], cls: type[f.Frame], name: str) -> int | None:
    if "id" not in cls.FIELDS or name == "id":
        return None
    ident = obj.get("id")
    return ident if type(ident) is int else None


WRONG_OPS = [cls for cls in OPS if any(WRONG.get(n, _NEW) is not None for n in cls.FIELDS)]


@pytest.mark.parametrize("cls", WRONG_OPS, ids=[c.OP for c in WRONG_OPS])
@QUICK
@given(data=st.data())
def test_wrong_field_type_is_400_with_ref(cls: type[f.Frame], data: st.DataObject) -> None:
    """A well-formed map with one field of the wrong type (or out of range): 400, the field
    named in the reason, and ``ref`` set whenever the request id itself was valid."""
    for json_safe in (False, True):
        obj, name = _with_wrong_field(data, cls, json_safe)
        with pytest.raises(DecodeError) as info:
            decode_object(obj, json_safe)
        assert info.value.code == ErrorCode.BAD_REQUEST
        assert info.value.ref == _expected_ref(obj, cls, name)
        assert f"{cls.OP}.{name}" in info.value.reason


@pytest.mark.parametrize("cls", OPS, ids=OP_IDS)
@QUICK
@given(data=st.data())
def test_missing_required_field_is_400_with_ref(cls: type[f.Frame], data: st.DataObject) -> None:
    needed = [n for n in cls.FIELDS if required(cls, n)]
    if not needed:
        return  # ping and pong have no required field
    obj = codec.to_object(data.draw(frames(cls, small=True)))
    name = data.draw(st.sampled_from(needed))
    del obj[name]
    with pytest.raises(DecodeError) as info:
        codec.decode_msgpack(pack(obj))
    assert info.value.code == ErrorCode.BAD_REQUEST
    assert info.value.ref == _expected_ref(obj, cls, name)
    assert name in info.value.reason


@pytest.mark.parametrize("cls", OPS, ids=OP_IDS)
def test_null_required_field_is_400(cls: type[f.Frame]) -> None:
    for name in cls.FIELDS:
        if not required(cls, name) or name == "data":
            continue
        obj = {"op": cls.OP, "id": 5, name: None}
        with pytest.raises(DecodeError) as info:
            codec.decode_msgpack(pack(obj))
        assert info.value.code == ErrorCode.BAD_REQUEST


@FUZZ
@given(
    op=st.text(max_size=16).filter(lambda op: op not in f.ALL_OPS),
    ident=st.none() | uints | st.integers(min_value=-(2**63), max_value=-1),
    rest=st.dictionaries(st.sampled_from(["ch", "data", "seq", "token"]), msgpack_data(4)),
)
@example(op="PING", ident=3, rest={})
@example(op="ping ", ident=3, rest={})
@example(op="", ident=None, rest={})
def test_unknown_op_is_406_with_ref(op: str, ident: int | None, rest: dict[str, Any]) -> None:
    obj: dict[str, Any] = {"op": op, **rest}
    if ident is not None:
        obj["id"] = ident
    expected_ref = ident if ident is not None and ident >= 0 else None
    with pytest.raises(DecodeError) as info:
        codec.decode_msgpack(pack(obj))
    assert (info.value.code, info.value.ref) == (ErrorCode.UNKNOWN_OP, expected_ref)
    with pytest.raises(DecodeError) as info:
        codec.decode_json(codec.dumps_json(obj))
    assert (info.value.code, info.value.ref) == (ErrorCode.UNKNOWN_OP, expected_ref)


@FUZZ
@given(op=msgpack_data(4).filter(lambda v: not isinstance(v, str)), ident=uints)
def test_op_that_is_not_a_string_is_400_with_ref(op: Any, ident: int) -> None:
    with pytest.raises(DecodeError) as info:
        codec.decode_msgpack(pack({"id": ident, "op": op}))
    assert info.value.code == ErrorCode.BAD_REQUEST
    assert info.value.ref == ident


@FUZZ
@given(msgpack_data().filter(lambda v: not isinstance(v, dict)))
def test_a_frame_that_is_not_a_map_is_400(value: Any) -> None:
    with pytest.raises(DecodeError) as info:
        codec.decode_msgpack(pack(value))
    assert info.value.code == ErrorCode.BAD_REQUEST
    assert info.value.ref is None


def test_ops_can_be_restricted_to_one_direction() -> None:
    """A decoder given only the client ops treats a gateway op as unknown (406)."""
    wire = codec.encode_msgpack(f.Ack(id=4))
    with pytest.raises(DecodeError) as info:
        codec.decode_msgpack(wire, f.CLIENT_OPS)
    assert (info.value.code, info.value.ref) == (ErrorCode.UNKNOWN_OP, 4)
    assert codec.decode_msgpack(codec.encode_msgpack(f.Ping(id=1)), f.CLIENT_OPS) == f.Ping(id=1)


def test_frames_are_immutable_values() -> None:
    frame = f.Ping(id=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        frame.id = 2  # type: ignore[misc]


# --- fixed discrepancies ------------------------------------------------------------------


def test_empty_member_list_survives_a_round_trip() -> None:
    """An empty presence list is "nobody there", not a plain ack."""
    frame = f.Ack(id=7, members=())
    assert codec.decode_msgpack(codec.encode_msgpack(frame)) == frame
