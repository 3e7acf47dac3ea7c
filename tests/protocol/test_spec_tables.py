"""``docs/protocol.md`` and the code say the same thing: op field tables, error and close
codes, the reconnect rule, limits. A failure names the table to update."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from frys.gateway.config import GatewayConfig
from frys.shared.protocol import codec
from frys.shared.protocol import frames as f
from frys.shared.protocol.errors import (
    CLOSE_TABLE,
    CloseCode,
    ErrorCode,
    Reconnect,
    reconnect_policy,
)
from tests.protocol.strategies import FUZZ_CHEAP, required

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """The text of the section whose heading starts with ``title``, up to the next heading
    of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(title)}.*$", DOC, re.MULTILINE)
    assert match is not None, f"docs/protocol.md has no section {title!r}"
    level = len(match.group(1))
    rest = DOC[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"^\|[-| ]+\|$", line):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows[1:]  # without the header row


@pytest.mark.parametrize("cls", list(f.ALL_OPS.values()), ids=list(f.ALL_OPS))
def test_each_op_has_a_field_table_in_canonical_order(cls: type[f.Frame]) -> None:
    rows = table_rows(section(f"`{cls.OP}`"))
    assert [r[0] for r in rows] == [f"`{name}`" for name in cls.FIELDS]
    for row, name in zip(rows, cls.FIELDS, strict=True):
        assert (row[2] == "req") == required(cls, name), f"{cls.OP}.{name}: req column"


def test_ops_are_listed_under_their_direction() -> None:
    client = section("4.1 Client → gateway")
    gateway = section("4.2 Gateway → client")
    for op in f.CLIENT_OPS:
        assert f"#### `{op}`" in client and f"#### `{op}`" not in gateway
    for op in f.SERVER_OPS:
        assert f"#### `{op}`" in gateway and f"#### `{op}`" not in client


def test_error_code_table_is_error_code() -> None:
    rows = table_rows(section("8.1 Error codes"))
    assert [(int(r[0]), r[1]) for r in rows] == [(int(c), f"`{c.name}`") for c in ErrorCode]


def test_close_code_table_is_close_table() -> None:
    rows = table_rows(section("8.2 Close codes"))
    expected = [
        [str(int(i.code)), f"`{i.code.name}`", i.reconnect.value, i.meaning]
        for i in CLOSE_TABLE.values()
    ]
    assert rows == expected
    assert set(CLOSE_TABLE) == set(CloseCode)


def documented_rule(code: int) -> Reconnect:
    """§8.3, written from the document."""
    if code in {int(c) for c in CloseCode}:
        return CLOSE_TABLE[CloseCode(code)].reconnect
    if 4000 <= code <= 4399 or code in (1006, 1014):
        return Reconnect.YES
    return Reconnect.NO


@FUZZ_CHEAP
@given(st.integers(min_value=0, max_value=70000))
def test_reconnect_policy_follows_the_documented_rule(code: int) -> None:
    assert reconnect_policy(code) is documented_rule(code)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (1006, Reconnect.YES),
        (1014, Reconnect.YES),
        (4004, Reconnect.YES),
        (4399, Reconnect.YES),
        (4400, Reconnect.NO),
        (4402, Reconnect.NO),
        (4999, Reconnect.NO),
        (1005, Reconnect.NO),
        (3000, Reconnect.NO),
        (4003, Reconnect.WITH_NEW_TOKEN),
    ],
)
def test_reconnect_policy_examples(code: int, expected: Reconnect) -> None:
    assert reconnect_policy(code) is expected


def test_limits_table_matches_the_gateway_defaults() -> None:
    cfg = GatewayConfig()
    defaults = {
        "max_frame_bytes": cfg.max_frame_bytes,
        "queue_bytes": cfg.queue_bytes,
        "max_subscriptions": cfg.max_subscriptions,
        "publish_rate_per_s": int(cfg.publish_rate_per_s),
        "ping_interval_ms": int(cfg.ping_interval_s * 1000),
        "request_timeout_ms": cfg.request_timeout_ms,
        "max_request_timeout_ms": cfg.max_request_timeout_ms,
    }
    rows = table_rows(section("9. Limits").split("### 9.1")[0])
    assert {r[0].strip("`"): int(r[1]) for r in rows} == defaults


def test_subprotocol_names_carry_the_major_version() -> None:
    assert codec.SUBPROTOCOL_MSGPACK == "frys.v1.msgpack"
    assert codec.SUBPROTOCOL_JSON == "frys.v1.json"
    assert codec.DEFAULT_CODEC is codec.MSGPACK
    assert codec.MSGPACK.binary and not codec.JSON.binary
    assert "# Frys wire protocol v1" in DOC
