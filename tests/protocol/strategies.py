"""Hypothesis strategies for wire protocol v1: field values, frames, and wrong field values.

The field tables here are written out by hand, on purpose: ``test_codec_properties`` checks
that they name exactly the fields the frames declare, so a new field cannot be added without
saying what its valid and invalid values are.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from frys.shared.protocol import frames as f

MAX_ID = f.MAX_ID

_SCALE = float(os.environ.get("FRYS_PROTOCOL_EXAMPLES_SCALE", "1"))
"""Multiplies every ``max_examples`` here: set it to 20 for a deep run before a release."""

QUICK = settings(
    max_examples=max(1, int(20 * _SCALE)),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""Per-frame-type properties (parametrized over every op, so they run many times)."""

FUZZ = settings(
    max_examples=max(1, int(100 * _SCALE)),
    deadline=timedelta(seconds=2),
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
"""Garbage-in properties: a generous per-example deadline stands for "never hangs"."""

FUZZ_CHEAP = settings(FUZZ, max_examples=max(1, int(500 * _SCALE)))
"""Garbage-in properties whose examples cost next to nothing (raw bytes and text)."""

# --- application data ----------------------------------------------------------------------

_INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
_TEXT = st.text(max_size=12)


def msgpack_data(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """Values msgpack carries and gives back equal (no NaN, arrays as lists)."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        _INT64,
        st.floats(allow_nan=False),
        _TEXT,
        st.binary(max_size=16),
    )
    keys = st.one_of(_TEXT, st.integers(min_value=-(2**31), max_value=2**31))
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(keys, inner, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def json_data(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    """Values ``frys.v1.json`` carries and gives back equal: string keys, finite floats,
    binary as ``{"$bytes": ...}`` (so no application map may be exactly that shape)."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        _INT64,
        st.floats(allow_nan=False, allow_infinity=False),
        _TEXT,
        st.binary(max_size=16),
    )
    keys = _TEXT.filter(lambda k: k != "$bytes")
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(keys, inner, max_size=4),
        ),
        max_leaves=max_leaves,
    )


def data_values(json: bool, max_leaves: int = 8) -> st.SearchStrategy[Any]:
    return json_data(max_leaves) if json else msgpack_data(max_leaves)


# --- valid field values --------------------------------------------------------------------

uints = st.integers(min_value=0, max_value=MAX_ID)
positions = st.builds(f.Position, seq=uints, epoch=_TEXT)
traces = st.builds(f.TraceContext, traceparent=_TEXT, tracestate=st.none() | _TEXT)


def _members(json: bool) -> st.SearchStrategy[tuple[dict[str, Any], ...]]:
    member = st.dictionaries(_TEXT.filter(lambda k: k != "$bytes"), data_values(json), max_size=6)
    return st.lists(member, max_size=3).map(tuple)


FieldStrategy = Callable[[bool], st.SearchStrategy[Any]]

VALID: dict[str, FieldStrategy] = {
    "id": lambda j: uints,
    "ch": lambda j: _TEXT,
    "token": lambda j: _TEXT,
    "name": lambda j: _TEXT,
    "codecs": lambda j: st.lists(_TEXT, max_size=3).map(tuple),
    "resume": lambda j: _TEXT,
    "caps": lambda j: st.lists(_TEXT, max_size=3).map(tuple),
    "tc": lambda j: traces,
    "since": lambda j: positions,
    "data": data_values,
    "mid": lambda j: _TEXT,
    "cid": lambda j: _TEXT,
    "timeout_ms": lambda j: uints,
    "sid": lambda j: _TEXT,
    "gw": lambda j: _TEXT,
    "limits": lambda j: st.dictionaries(_TEXT, _INT64, max_size=4),
    "exp": lambda j: uints,
    "seq": lambda j: uints,
    "epoch": lambda j: _TEXT,
    "recovered": lambda j: st.booleans(),
    "dup": lambda j: st.booleans(),
    "members": _members,
    "from": lambda j: _TEXT,
    "code": lambda j: uints,
    "reason": lambda j: _TEXT,
    "ref": lambda j: uints,
    "url": lambda j: _TEXT,
    "delay_ms": lambda j: uints,
    "enc": lambda j: _TEXT,
    "stream": lambda j: uints,
}
"""Valid values per wire field name (``json`` restricts data to JSON-representable values)."""


NEW_FIELD = (
    "wire field {name!r} is new: give it valid and wrong values here (VALID, WRONG in "
    "tests/protocol/strategies.py), pin it in a golden vector (tests/protocol/vectors.py) "
    "and document it in docs/protocol.md"
)


def valid_values(name: str, json: bool) -> st.SearchStrategy[Any]:
    if name not in VALID:
        raise AssertionError(NEW_FIELD.format(name=name))
    return VALID[name](json)


def wrong_values(name: str) -> FieldStrategy | None:
    if name not in WRONG:
        raise AssertionError(NEW_FIELD.format(name=name))
    return WRONG[name]


def attribute(name: str) -> str:
    """Python attribute of a wire field (``from`` is a keyword)."""
    return "from_" if name == "from" else name


def required(cls: type[f.Frame], name: str) -> bool:
    fld = next(x for x in dataclasses.fields(cls) if x.name == attribute(name))
    return fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING


def frames(
    cls: type[f.Frame], json: bool = False, small: bool = False
) -> st.SearchStrategy[f.Frame]:
    """Frames of one type with generated values for every field (``small``: tiny data, for
    properties about the other fields)."""
    kwargs: dict[str, st.SearchStrategy[Any]] = {}
    for name in cls.FIELDS:
        value: st.SearchStrategy[Any]
        if small and name == "data":
            value = st.none() | st.integers(0, 9) | st.text(max_size=3)
        elif small and name == "members":
            value = st.just(({"sid": "s"},))
        else:
            value = valid_values(name, json)
        fld = next(x for x in dataclasses.fields(cls) if x.name == attribute(name))
        if fld.default is None:
            value = st.none() | value
        kwargs[attribute(name)] = value
    return st.builds(cls, **kwargs)


# --- invalid field values ------------------------------------------------------------------


def _not(kinds: str, json: bool) -> st.SearchStrategy[Any]:
    """Values of none of ``kinds`` (letters: i int, s str, b bool, l list, d map, y bytes,
    f float); never ``None`` (an absent optional field is valid)."""
    floats = st.floats(allow_nan=False, allow_infinity=not json)
    pool: dict[str, st.SearchStrategy[Any]] = {
        "i": _INT64,
        "s": _TEXT,
        "b": st.booleans(),
        "l": st.lists(st.integers(0, 9) | _TEXT, max_size=2),
        "d": st.dictionaries(_TEXT.filter(lambda k: k != "$bytes"), st.integers(0, 9), max_size=2),
        "y": st.binary(max_size=4),
        "f": floats,
    }
    return st.one_of(*(s for k, s in pool.items() if k not in kinds))


def _wrong_uint(json: bool) -> st.SearchStrategy[Any]:
    out_of_range = st.integers(min_value=-(2**63), max_value=-1) | st.integers(
        min_value=MAX_ID + 1, max_value=2**64 - 1
    )
    return out_of_range | _not("i", json)


def _wrong_str_list(json: bool) -> st.SearchStrategy[Any]:
    bad_item = _not("s", json)
    lists_with_bad_item = st.tuples(st.lists(_TEXT, max_size=2), bad_item).map(
        lambda t: [*t[0], t[1]]
    )
    return _not("l", json) | lists_with_bad_item


def _wrong_limits(json: bool) -> st.SearchStrategy[Any]:
    bad_value = st.dictionaries(_TEXT, _not("i", json), min_size=1, max_size=2)
    return _not("d", json) | bad_value


def _wrong_members(json: bool) -> st.SearchStrategy[Any]:
    return _not("l", json) | st.lists(_not("d", json), min_size=1, max_size=2)


def _wrong_position(json: bool) -> st.SearchStrategy[Any]:
    bad_seq = st.fixed_dictionaries({"seq": _wrong_uint(json), "epoch": _TEXT})
    bad_epoch = st.fixed_dictionaries({"seq": uints, "epoch": _not("s", json)})
    no_epoch = st.fixed_dictionaries({"seq": uints})
    return _not("d", json) | bad_seq | bad_epoch | no_epoch


def _wrong_trace(json: bool) -> st.SearchStrategy[Any]:
    bad_parent = st.fixed_dictionaries({"traceparent": _not("s", json)})
    no_parent = st.fixed_dictionaries({"tracestate": _TEXT})
    bad_state = st.fixed_dictionaries({"traceparent": _TEXT, "tracestate": _not("s", json)})
    return _not("d", json) | bad_parent | no_parent | bad_state


_STR: FieldStrategy = lambda j: _not("s", j)  # noqa: E731

WRONG: dict[str, FieldStrategy | None] = {
    "id": _wrong_uint,
    "ch": _STR,
    "token": _STR,
    "name": _STR,
    "codecs": _wrong_str_list,
    "resume": _STR,
    "caps": _wrong_str_list,
    "tc": _wrong_trace,
    "since": _wrong_position,
    "data": None,  # any value is valid application data
    "mid": _STR,
    "cid": _STR,
    "timeout_ms": _wrong_uint,
    "sid": _STR,
    "gw": _STR,
    "limits": _wrong_limits,
    "exp": _wrong_uint,
    "seq": _wrong_uint,
    "epoch": _STR,
    "recovered": lambda j: _not("b", j),
    "dup": lambda j: _not("b", j),
    "members": _wrong_members,
    "from": _STR,
    "code": _wrong_uint,
    "reason": _STR,
    "ref": _wrong_uint,
    "url": _STR,
    "delay_ms": _wrong_uint,
    "enc": _STR,
    "stream": _wrong_uint,
}
"""Values of the wrong type (or range) per wire field; ``None`` where every value is valid."""
