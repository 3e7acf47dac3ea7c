"""Resume tokens: signed, bound to a subject, expiring, and accepted once per gateway."""

from __future__ import annotations

from frys.gateway.auth import ResumeTokens

SECRET = b"resume-secret-0123456789"
NOW = 1_764_000_000.0
SID = "9f1c2e4b7a3d4e5f8a9b0c1d2e3f4a5b"


def test_two_tokens_issued_within_one_second_differ() -> None:
    tokens = ResumeTokens(SECRET)
    first = tokens.issue(SID, "alice", now=NOW)
    second = tokens.issue(SID, "alice", now=NOW + 0.5)
    assert first != second
    assert tokens.check(first, "alice", now=NOW + 1) == SID
    assert tokens.check(second, "alice", now=NOW + 1) == SID


def test_a_token_is_accepted_once() -> None:
    tokens = ResumeTokens(SECRET)
    token = tokens.issue(SID, "alice", now=NOW)
    assert tokens.check(token, "alice", now=NOW + 10) == SID
    assert tokens.check(token, "alice", now=NOW + 11) is None
    assert tokens.check(token, "alice", now=NOW + 11) is None


def test_an_expired_token_is_refused() -> None:
    tokens = ResumeTokens(SECRET, ttl_s=300)
    token = tokens.issue(SID, "alice", now=NOW)
    assert tokens.check(token, "alice", now=NOW + 301) is None
    assert tokens.remembered == 0


def test_a_token_is_bound_to_its_subject() -> None:
    tokens = ResumeTokens(SECRET)
    token = tokens.issue(SID, "alice", now=NOW)
    assert tokens.check(token, "mallory", now=NOW) is None
    # A refused attempt does not use the token up.
    assert tokens.check(token, "alice", now=NOW) == SID


def test_tampered_or_malformed_tokens_are_refused() -> None:
    tokens = ResumeTokens(SECRET)
    token = tokens.issue(SID, "alice", now=NOW)
    sid, exp, nonce, mac = token.split(".")
    other_sid = "0" * len(sid)
    forged = [
        f"{other_sid}.{exp}.{nonce}.{mac}",
        f"{sid}.{int(exp) + 3600}.{nonce}.{mac}",
        f"{sid}.{exp}.{nonce[::-1]}.{mac}",
        f"{sid}.{exp}.{nonce}.{mac[::-1]}",
        f"{sid}.{exp}.{mac}",  # the earlier three-part shape
        f"{sid}.{exp}.{nonce}.{mac}.x",
        f"{sid}.²³.{nonce}.{mac}",
        f"{sid}.{exp}.{nonce}.é{mac[1:]}",
        "",
        "...",
    ]
    for bad in forged:
        assert tokens.check(bad, "alice", now=NOW) is None, bad
    assert ResumeTokens(b"another secret").check(token, "alice", now=NOW) is None
    assert tokens.check(token, "alice", now=NOW) == SID


def test_reuse_on_another_gateway_is_not_detected_but_stays_bounded() -> None:
    """Gateways share the secret, not their memory: a token is checked there statelessly,
    for its subject only and until it expires."""
    here, there = ResumeTokens(SECRET), ResumeTokens(SECRET)
    token = here.issue(SID, "alice", now=NOW)
    assert here.check(token, "alice", now=NOW) == SID
    assert there.check(token, "alice", now=NOW) == SID
    assert there.check(token, "alice", now=NOW) is None
    assert ResumeTokens(SECRET).check(token, "bob", now=NOW) is None
    assert ResumeTokens(SECRET).check(token, "alice", now=NOW + 301) is None


def test_the_memory_of_used_tokens_is_bounded() -> None:
    tokens = ResumeTokens(SECRET, ttl_s=300, memory_size=100)
    issued = [tokens.issue(f"s{i}", "alice", now=NOW + i) for i in range(250)]
    for i, token in enumerate(issued):
        assert tokens.check(token, "alice", now=NOW + i) == f"s{i}"
        assert tokens.remembered <= 100
    assert tokens.remembered == 100
    # The newest are still refused; the oldest were forgotten to keep the bound.
    assert tokens.check(issued[-1], "alice", now=NOW + 250) is None
    assert tokens.check(issued[0], "alice", now=NOW + 250) == "s0"


def test_expired_entries_are_pruned_as_tokens_are_used() -> None:
    tokens = ResumeTokens(SECRET, ttl_s=10)
    for i in range(50):
        assert tokens.check(tokens.issue(f"s{i}", "alice", now=NOW), "alice", now=NOW) == f"s{i}"
    assert tokens.remembered == 50
    later = tokens.issue("late", "alice", now=NOW + 20)
    assert tokens.check(later, "alice", now=NOW + 20) == "late"
    assert tokens.remembered == 1
