"""Map keys in data: a map whose keys collide once decoded is refused, never thinned.

``1``, ``1.0`` and ``true`` are distinct in MessagePack but one key in a decoded map; so is a
key repeated in the encoding. A publish carrying such a map is answered with 400 (with the
frame's id), and a payload that reached NATS some other way is not delivered to a JSON
subscriber with an entry missing.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest

from frys.shared.protocol import codec
from frys.shared.protocol import frames as f
from frys.shared.protocol.delivery import MessageTemplate
from frys.shared.protocol.errors import DecodeError, ErrorCode


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _map(*items: tuple[Any, bytes]) -> bytes:
    """A msgpack map of keys (packed here) and already packed values, in this order, even
    where a Python dict could not hold them all."""
    out = bytearray()
    packer = msgpack.Packer(use_bin_type=True)
    out += packer.pack_map_header(len(items))
    for key, value in items:
        out += packer.pack(key) + value
    return bytes(out)


def _publish(data: bytes, ident: int = 7) -> bytes:
    """A publish frame whose data is the packed ``data``."""
    return _map(
        ("op", _pack("publish")),
        ("id", _pack(ident)),
        ("ch", _pack("wf:1:events")),
        ("data", data),
    )


COLLIDING = {
    "1 and true": _map((1, _pack("a")), (True, _pack("b"))),
    "1 and 1.0": _map((1, _pack("a")), (1.0, _pack("b"))),
    "0 and false": _map((0, _pack("a")), (False, _pack("b"))),
    "0.0 and -0.0": _map((0.0, _pack("a")), (-0.0, _pack("b"))),
    "repeated string": _map(("k", _pack(1)), ("k", _pack(2))),
    "repeated nil": _map((None, _pack(1)), (None, _pack(2))),
}
COLLIDING_IDS = list(COLLIDING)


@pytest.mark.parametrize("data", COLLIDING.values(), ids=COLLIDING_IDS)
def test_a_publish_with_colliding_keys_is_refused_with_its_id(data: bytes) -> None:
    with pytest.raises(DecodeError) as caught:
        codec.decode_msgpack(_publish(data, ident=42), f.CLIENT_OPS)
    assert caught.value.code is ErrorCode.BAD_REQUEST
    assert caught.value.ref == 42
    assert caught.value.reason.startswith("publish: map keys ")
    assert caught.value.reason.endswith(" collide")


@pytest.mark.parametrize("data", COLLIDING.values(), ids=COLLIDING_IDS)
def test_nested_colliding_keys_are_refused(data: bytes) -> None:
    in_list = b"\x92" + _pack("x") + data  # ["x", <map>]
    deep = _map(("outer", _map(("inner", in_list))))
    with pytest.raises(DecodeError) as caught:
        codec.decode_msgpack(_publish(deep))
    assert caught.value.ref == 7
    with pytest.raises(DecodeError):
        codec.unpack_data(deep)
    if data != COLLIDING["repeated string"]:  # see the JSON subscriber test below
        with pytest.raises(DecodeError):
            codec.unpack_for_json(deep)


def test_the_reason_names_the_colliding_keys() -> None:
    with pytest.raises(DecodeError) as caught:
        codec.decode_msgpack(_publish(COLLIDING["1 and true"]))
    assert caught.value.reason == "publish: map keys 1 and true collide"
    with pytest.raises(DecodeError) as caught:
        codec.unpack_data(COLLIDING["1 and 1.0"])
    assert caught.value.reason == "data: map keys 1 and 1.0 collide"


def test_colliding_keys_in_the_envelope_are_refused() -> None:
    frame = _map(
        ("op", _pack("publish")),
        ("id", _pack(3)),
        ("ch", _pack("wf:1:events")),
        ("ch", _pack("wf:2:events")),
        ("data", _pack(1)),
    )
    with pytest.raises(DecodeError) as caught:
        codec.decode_msgpack(frame)
    assert caught.value.reason == 'publish: map keys "ch" and "ch" collide'
    assert caught.value.ref == 3


@pytest.mark.parametrize("data", COLLIDING.values(), ids=COLLIDING_IDS)
def test_a_json_subscriber_is_not_sent_a_thinned_map(data: bytes) -> None:
    """Data that reached NATS without a gateway's check: the JSON conversion refuses it (a
    gateway then skips the message for JSON subscribers and counts it) instead of dropping
    one of the entries. Only a key repeated byte for byte, on msgpack's fast path for
    string keys, keeps its last value, as MessagePack decoders do."""
    if data == COLLIDING["repeated string"]:
        assert codec.unpack_for_json(data) == {"k": 2}
        return
    with pytest.raises(DecodeError):
        codec.unpack_for_json(data)
    with pytest.raises(DecodeError):
        MessageTemplate("wf:1:events").json(data, 1)


MIXED: list[Any] = [
    {1: "int", "x": "str", 2.5: "float", None: "nil", b"k": "bin"},
    {True: "bool", 0.5: "half", "true": "text"},
    {0: "zero", "0": "text zero", -1: "minus one", 1.5: "one and a half"},
    {"outer": [{1: "a", "1": "b"}, {None: {"null": 1, 2: [True, False]}}]},
    {2**63: "big", -(2**63): "small", "": "empty", 0.1: "tenth"},
]


@pytest.mark.parametrize("value", MIXED)
def test_distinct_keys_of_mixed_types_round_trip(value: Any) -> None:
    packed = _pack(value)
    frame = codec.decode_msgpack(_publish(packed), f.CLIENT_OPS)
    assert isinstance(frame, f.Publish)
    assert frame.data == value
    assert codec.pack_data(frame.data) == packed
    assert codec.unpack_data(codec.pack_data(frame.data)) == value
    # Re-encoded for a JSON subscriber, every entry is still there.
    text = MessageTemplate("wf:1:collab").json(packed)
    assert text == codec.encode_json(f.Message(ch="wf:1:collab", data=value))
    members = json.loads(text, object_pairs_hook=lambda pairs: pairs)
    data = dict(members)["data"]
    assert len(data) == len(value)


def test_json_text_of_keys_that_differ_in_type_keeps_both_entries() -> None:
    """``1`` and ``"1"`` are distinct keys; JSON can only name both ``"1"``, and does."""
    value = {1: "a", "1": "b", None: "c", "null": "d"}
    expected = '{"1":"a","1":"b","null":"c","null":"d"}'
    assert codec.dumps_json(codec.unpack_for_json(_pack(value))) == expected
    assert codec.dumps_json(value) == expected
    # The slow path (a non-finite float forces it) keeps them too.
    with_nan = {1: float("nan"), "1": "b"}
    assert codec.dumps_json(with_nan) == '{"1":null,"1":"b"}'


def test_keys_that_become_equal_text_in_json_are_refused_not_dropped() -> None:
    value = {b"k": 1, '{"$bytes":"aw=="}': 2}
    with pytest.raises(DecodeError):
        codec.dumps_json(value)
    with pytest.raises(DecodeError):
        MessageTemplate("wf:1:collab").json(_pack(value))
