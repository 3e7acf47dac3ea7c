"""Sans-I/O codec of wire protocol v1: frames ↔ bytes, for both subprotocols.

Nothing here touches a socket or an event loop. Decoding never raises anything but
:class:`DecodeError` (carrying the error code to answer with and, when it could be read, the
request id), whatever bytes it is given; ``tests/protocol/test_codec_properties.py`` checks
that with hypothesis.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from typing import Any, Final

import msgpack

from frys.shared.protocol import frames as f
from frys.shared.protocol.errors import DecodeError, ErrorCode

SUBPROTOCOL_MSGPACK: Final = "frys.v1.msgpack"
SUBPROTOCOL_JSON: Final = "frys.v1.json"
BYTES_KEY: Final = "$bytes"
"""In ``frys.v1.json``, a binary value inside ``data`` is the object ``{"$bytes": base64}``."""

_ATTR = {"from": "from_"}
"""Wire field names that are Python keywords map to attribute names."""


# --- field validation ----------------------------------------------------------------------


def _uint(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= f.MAX_ID:
        raise ValueError("must be an unsigned integer below 2**53")
    return value


def _str(value: Any) -> str:
    if type(value) is not str:
        raise ValueError("must be a string")
    return value


def _bool(value: Any) -> bool:
    if type(value) is not bool:
        raise ValueError("must be a boolean")
    return value


def _str_tuple(value: Any) -> tuple[str, ...]:
    if type(value) is not list or not all(type(v) is str for v in value):
        raise ValueError("must be a list of strings")
    return tuple(value)


def _limits(value: Any) -> dict[str, int]:
    if not isinstance(value, dict) or not all(
        type(k) is str and type(v) is int for k, v in value.items()
    ):
        raise ValueError("must map strings to integers")
    return dict(value)


def _members(value: Any) -> tuple[dict[str, Any], ...]:
    if type(value) is not list or not all(isinstance(m, dict) for m in value):
        raise ValueError("must be a list of objects")
    return tuple(value)


def _position(value: Any) -> f.Position:
    if not isinstance(value, dict):
        raise ValueError("must be an object {seq, epoch}")
    return f.Position(seq=_uint(value.get("seq")), epoch=_str(value.get("epoch")))


def _trace(value: Any) -> f.TraceContext:
    if not isinstance(value, dict):
        raise ValueError("must be an object {traceparent, tracestate?}")
    state = value.get("tracestate")
    return f.TraceContext(
        traceparent=_str(value.get("traceparent")),
        tracestate=None if state is None else _str(state),
    )


def _any(value: Any) -> Any:
    return value


_VALIDATORS: dict[str, Callable[[Any], Any]] = {
    "id": _uint,
    "ch": _str,
    "token": _str,
    "name": _str,
    "codecs": _str_tuple,
    "resume": _str,
    "caps": _str_tuple,
    "tc": _trace,
    "since": _position,
    "data": _any,
    "mid": _str,
    "cid": _str,
    "timeout_ms": _uint,
    "sid": _str,
    "gw": _str,
    "limits": _limits,
    "exp": _uint,
    "seq": _uint,
    "epoch": _str,
    "recovered": _bool,
    "dup": _bool,
    "members": _members,
    "from": _str,
    "code": _uint,
    "reason": _str,
    "ref": _uint,
    "url": _str,
    "delay_ms": _uint,
    "enc": _str,
    "stream": _uint,
}


def _required(cls: type[f.Frame]) -> frozenset[str]:
    names = set()
    for fld in dataclasses.fields(cls):
        if fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
            names.add("from" if fld.name == "from_" else fld.name)
    return frozenset(names)


_REQUIRED: dict[type[f.Frame], frozenset[str]] = {cls: _required(cls) for cls in f.ALL_OPS.values()}


# --- frame ↔ plain object ------------------------------------------------------------------


def to_object_value(value: Any) -> Any:
    if isinstance(value, f.Position):
        return {"seq": value.seq, "epoch": value.epoch}
    if isinstance(value, f.TraceContext):
        out = {"traceparent": value.traceparent}
        if value.tracestate is not None:
            out["tracestate"] = value.tracestate
        return out
    if isinstance(value, tuple):
        return [to_object_value(v) for v in value]
    if isinstance(value, Mapping) and not isinstance(value, dict):
        return dict(value)
    return value


def _defaults(cls: type[f.Frame]) -> dict[str, Any]:
    return {
        ("from" if fld.name == "from_" else fld.name): fld.default
        for fld in dataclasses.fields(cls)
        if fld.default is not dataclasses.MISSING
    }


_DEFAULTS: dict[type[f.Frame], dict[str, Any]] = {cls: _defaults(cls) for cls in f.ALL_OPS.values()}
_ABSENT = object()


def to_object(frame: f.Frame) -> dict[str, Any]:
    """The frame as a plain map in canonical key order (``op`` first); an optional field is
    omitted when absent (``None``) or equal to its default."""
    required = _REQUIRED[type(frame)]
    defaults = _DEFAULTS[type(frame)]
    out: dict[str, Any] = {"op": frame.OP}
    for name in frame.FIELDS:
        value = getattr(frame, _ATTR.get(name, name))
        if name not in required and (value is None or value == defaults.get(name, _ABSENT)):
            continue
        out[name] = to_object_value(value)
    return out


def from_object(obj: Any, ops: Mapping[str, type[f.Frame]] = f.ALL_OPS) -> f.Frame:
    """Validate a decoded map and build its frame; raises :class:`DecodeError`."""
    if not isinstance(obj, dict):
        raise DecodeError("frame must be a map")
    ref = obj.get("id")
    ref = ref if type(ref) is int and 0 <= ref <= f.MAX_ID else None
    op = obj.get("op")
    if type(op) is not str:
        raise DecodeError("frame has no op string", ref=ref)
    cls = ops.get(op)
    if cls is None:
        raise DecodeError(f"unknown op {op[:32]!r}", ErrorCode.UNKNOWN_OP, ref=ref)
    kwargs: dict[str, Any] = {}
    for name in cls.FIELDS:
        if name not in obj:
            continue
        value = obj[name]
        if value is None and name not in _REQUIRED[cls]:
            continue
        try:
            kwargs[_ATTR.get(name, name)] = _VALIDATORS[name](value)
        except ValueError as exc:
            raise DecodeError(f"{op}.{name} {exc}", ref=ref) from None
    missing = _REQUIRED[cls] - obj.keys()
    if missing:
        raise DecodeError(f"{op} is missing {', '.join(sorted(missing))}", ref=ref)
    return cls(**kwargs)


# --- msgpack -------------------------------------------------------------------------------

_packb = msgpack.Packer(use_bin_type=True, autoreset=True).pack


class _KeysCollide(ValueError):
    """Two keys of one map are one key once decoded: ``1``, ``1.0`` and ``true`` (or ``0``,
    ``0.0`` and ``false``) are equal values, and a map holds each key once."""


def _distinct_keys(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """Build a decoded map, refusing one whose keys are not distinct.

    MessagePack can carry ``{1: a, true: b}`` or a repeated key, but a decoded map (in
    Python, JavaScript and most languages) keeps one of the entries and silently loses the
    other, so re-encoding the data for a subscriber would drop it. Such data is refused
    instead: the publisher gets a 400 and nothing is lost unnoticed.
    """
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _KeysCollide(_collision(pairs))
    return obj


def _collision(pairs: list[tuple[Any, Any]]) -> str:
    seen: dict[Any, Any] = {}
    for key, _ in pairs:
        if key in seen:
            return f"map keys {_show_key(seen[key])} and {_show_key(key)} collide"
        seen[key] = key
    return "map keys collide"


def _show_key(key: Any) -> str:
    try:
        text = json.dumps(key) if isinstance(key, str) else _json_key_text(key)
    except (TypeError, ValueError):
        text = type(key).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _unpackb(data: bytes) -> Any:
    return msgpack.unpackb(
        data, raw=False, strict_map_key=False, use_list=True, object_pairs_hook=_distinct_keys
    )


def pack_data(value: Any) -> bytes:
    """Encode application data as msgpack (the payload format on NATS)."""
    if isinstance(value, f.Raw):
        return value.packed or _NIL
    return _packb(value)


_NIL: Final = b"\xc0"
"""msgpack nil: what an empty payload stands for."""


def unpack_data(packed: bytes) -> Any:
    """Decode application data from msgpack; raises :class:`DecodeError`, also for a map
    whose keys collide (see :func:`_distinct_keys`)."""
    try:
        return _unpackb(packed)
    except _KeysCollide as exc:
        raise DecodeError(f"data: {exc}") from None
    except Exception as exc:
        raise DecodeError(f"data is not valid msgpack: {type(exc).__name__}") from None


def encode_msgpack(frame: f.Frame) -> bytes:
    obj = to_object(frame)
    data = obj.get("data")
    if not isinstance(data, f.Raw):
        return _packb(obj)
    # Splice pre-encoded data: "data" is always the last field, and frames have fewer than
    # 15 fields, so the map header is one fixmap byte that grows by one.
    del obj["data"]
    head = _packb(obj)
    return bytes((head[0] + 1,)) + head[1:] + _DATA_KEY + (data.packed or _NIL)


_DATA_KEY: Final = _packb("data")


def decode_msgpack(data: bytes, ops: Mapping[str, type[f.Frame]] = f.ALL_OPS) -> f.Frame:
    """Decode and validate a frame. This is where a client's published data is checked: a
    map whose keys collide (see :func:`_distinct_keys`) is refused, with the frame's id so
    that the publish it belongs to fails."""
    try:
        obj = _unpackb(data)
    except _KeysCollide as exc:
        raise _collision_error(data, exc) from None
    except Exception as exc:
        raise DecodeError(f"not valid msgpack: {type(exc).__name__}") from None
    return from_object(obj, ops)


def _collision_error(data: bytes, exc: _KeysCollide) -> DecodeError:
    """The 400 for a frame with colliding map keys, naming its op and id when they can be
    read (the frame is decoded again, keeping one entry per key, to find them)."""
    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:
        obj = None
    op = obj.get("op") if isinstance(obj, dict) else None
    ref = obj.get("id") if isinstance(obj, dict) else None
    ref = ref if type(ref) is int and 0 <= ref <= f.MAX_ID else None
    where = f"{op[:32]}: " if type(op) is str else ""
    return DecodeError(f"{where}{exc}", ref=ref)


# --- JSON ----------------------------------------------------------------------------------


def _ext_as_json(code: int, data: bytes) -> dict[str, Any]:
    return {BYTES_KEY: base64.b64encode(data).decode("ascii"), "$ext": code}


def unpack_for_json(packed: bytes) -> Any:
    """Decode payload data for a JSON subscriber: extension values become
    ``{"$bytes": ..., "$ext": code}``, timestamps become Unix seconds.

    Data published through a gateway was checked on publish; data a backend put on NATS
    itself may hold a map whose keys collide, which raises :class:`DecodeError` here rather
    than reaching the subscriber with an entry missing. Maps with only string (or binary)
    keys, nearly all of them, cannot collide that way and take msgpack's fast path; any
    other key sends the payload through the checking decoder. (On the fast path a key
    repeated byte for byte keeps its last value, as MessagePack subscribers' decoders
    commonly do.)
    """
    try:
        return msgpack.unpackb(
            packed or _NIL, raw=False, strict_map_key=True, ext_hook=_ext_as_json, timestamp=1
        )
    except Exception:
        pass
    try:
        return msgpack.unpackb(
            packed or _NIL,
            raw=False,
            strict_map_key=False,
            object_pairs_hook=_distinct_keys,
            ext_hook=_ext_as_json,
            timestamp=1,
        )
    except _KeysCollide as exc:
        raise DecodeError(f"data: {exc}") from None
    except Exception as exc:
        raise DecodeError(f"data is not valid msgpack: {type(exc).__name__}") from None


def _json_default(value: Any) -> Any:
    if isinstance(value, f.Raw):
        return unpack_for_json(value.packed)
    if isinstance(value, bytes | bytearray | memoryview):
        return {BYTES_KEY: base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, msgpack.ExtType):
        return {BYTES_KEY: base64.b64encode(value.data).decode("ascii"), "$ext": value.code}
    if isinstance(value, msgpack.Timestamp):
        return value.to_unix()
    raise TypeError(f"{type(value).__name__} is not representable in JSON")


def _json_key(key: Any) -> Any:
    """A map key as JSON carries it. Strings, integers, booleans, nil and finite floats stay
    as they are: ``json`` writes them as their JSON text itself, so ``{1: a, "1": b}`` keeps
    both entries (as two members named ``"1"``). Any other key becomes its JSON text."""
    if isinstance(key, str | int | None) or (isinstance(key, float) and math.isfinite(key)):
        return key
    return _json_key_text(key)


def _json_key_text(key: Any) -> str:
    return json.dumps(_json_safe(key), default=_json_default, separators=(",", ":"))


def _json_safe(value: Any) -> Any:
    """Slow path for values JSON cannot carry: non-finite floats and non-string keys.

    A key turned into text could equal another key of its map (``b"k"`` and the string
    ``{"$bytes":"aw=="}``); that raises :class:`DecodeError` rather than dropping an entry.
    """
    if isinstance(value, f.Raw):
        return _json_safe(unpack_for_json(value.packed))
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        out = {_json_key(k): _json_safe(v) for k, v in value.items()}
        if len(out) != len(value):
            raise DecodeError("data: map keys collide once written as JSON")
        return out
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _json_object_hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and BYTES_KEY in obj and isinstance(obj[BYTES_KEY], str):
        try:
            return base64.b64decode(obj[BYTES_KEY], validate=True)
        except binascii.Error:
            raise ValueError("invalid base64 in $bytes") from None
    return obj


json_object_hook = _json_object_hook
"""The ``$bytes`` mapping for JSON read outside frames (``POST /api/publish`` bodies)."""


def dumps_json(obj: Any) -> str:
    try:
        return json.dumps(
            obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
        )
    except (ValueError, TypeError):
        return json.dumps(
            _json_safe(obj), separators=(",", ":"), ensure_ascii=False, default=_json_default
        )


def encode_json(frame: f.Frame) -> str:
    return dumps_json(to_object(frame))


def decode_json(data: str | bytes, ops: Mapping[str, type[f.Frame]] = f.ALL_OPS) -> f.Frame:
    try:
        obj = json.loads(data, object_hook=_json_object_hook)
    except Exception as exc:
        raise DecodeError(f"not valid JSON: {type(exc).__name__}", ref=_json_ref(data)) from None
    return from_object(obj, ops)


def _json_ref(data: str | bytes) -> int | None:
    """The ``id`` of a JSON frame whose content failed (a bad ``$bytes``, say), so the
    error names the request; ``None`` when even plain JSON does not parse."""
    try:
        obj = json.loads(data)
    except Exception:
        return None
    ref = obj.get("id") if isinstance(obj, dict) else None
    return ref if isinstance(ref, int) and not isinstance(ref, bool) and ref >= 0 else None


# --- one object per subprotocol ------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class WireCodec:
    """The codec a session speaks, chosen by WebSocket subprotocol."""

    subprotocol: str
    binary: bool
    encode: Callable[[f.Frame], bytes | str]
    decode: Callable[[str | bytes], f.Frame]
    """Any frame (what a client reads)."""
    decode_client: Callable[[str | bytes], f.Frame]
    """Client frames only (what a gateway reads): a gateway op from a client is unknown."""


def _decode_msgpack_any(data: str | bytes, ops: Mapping[str, type[f.Frame]] = f.ALL_OPS) -> f.Frame:
    if isinstance(data, str):
        raise DecodeError("frys.v1.msgpack expects binary frames")
    return decode_msgpack(data, ops)


def _decode_json_any(data: str | bytes, ops: Mapping[str, type[f.Frame]] = f.ALL_OPS) -> f.Frame:
    if not isinstance(data, str):
        raise DecodeError("frys.v1.json expects text frames")
    return decode_json(data, ops)


MSGPACK = WireCodec(
    SUBPROTOCOL_MSGPACK,
    True,
    encode_msgpack,
    _decode_msgpack_any,
    lambda data: _decode_msgpack_any(data, f.CLIENT_OPS),
)
JSON = WireCodec(
    SUBPROTOCOL_JSON,
    False,
    encode_json,
    _decode_json_any,
    lambda data: _decode_json_any(data, f.CLIENT_OPS),
)
CODECS: dict[str, WireCodec] = {c.subprotocol: c for c in (MSGPACK, JSON)}
DEFAULT_CODEC = MSGPACK
