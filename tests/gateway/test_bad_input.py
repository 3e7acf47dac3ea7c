"""Bad input gets its documented error or close code; nothing else is disturbed or leaked."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import msgpack
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm

from frys.client import Client
from frys.shared.protocol import frames as f
from frys.shared.protocol.codec import decode_json, decode_msgpack
from frys.shared.protocol.errors import CloseCode, ErrorCode
from tests.conftest import SECRET, GatewayFactory, RunningGateway, token

Raw = aiohttp.ClientWebSocketResponse


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition the gateway reaches asynchronously (after a close, say)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def raw(http: aiohttp.ClientSession) -> AsyncIterator[Callable[..., Awaitable[Raw]]]:
    opened: list[Raw] = []

    async def open_ws(url: str, protocol: str | None = "frys.v1.msgpack", **kw: Any) -> Raw:
        protocols = (protocol,) if protocol else ()
        ws: Raw = await http.ws_connect(url, protocols=protocols, **kw)
        opened.append(ws)
        return ws

    yield open_ws
    for ws in opened:
        await ws.close()


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


async def recv(ws: Raw, timeout: float = 5.0) -> f.Frame:
    msg = await ws.receive(timeout=timeout)
    if msg.type is aiohttp.WSMsgType.BINARY:
        return decode_msgpack(msg.data)
    if msg.type is aiohttp.WSMsgType.TEXT:
        return decode_json(msg.data)
    raise AssertionError(f"expected a frame, got {msg.type} {msg.data} {msg.extra}")


async def closed_with(ws: Raw, timeout: float = 5.0) -> tuple[int | None, str]:
    while True:
        msg = await ws.receive(timeout=timeout)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return ws.close_code, str(msg.extra or "")
        if msg.type is aiohttp.WSMsgType.ERROR:
            return ws.close_code, str(msg.data)


async def connected(raw: Callable[..., Awaitable[Raw]], url: str, tok: str | None = None) -> Raw:
    ws = await raw(url)
    await ws.send_bytes(pack({"op": "connect", "id": 1, "token": tok or token()}))
    frame = await recv(ws)
    assert isinstance(frame, f.Connected)
    return ws


def snapshot(gw: RunningGateway) -> tuple[int, int, int]:
    g = gw.gateway
    return len(g.sessions), g.metrics.subscriptions, len(g.hub.fanouts)


@pytest.fixture
async def bystander(
    gateway: RunningGateway, clients: Callable[..., Awaitable[Client]]
) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """A healthy client that must keep working whatever the others send."""
    other = await clients(gateway.url, token=token("bystander"))
    sub = await other.subscribe("wf:calm:collab")
    counter = 0

    async def still_served() -> None:
        nonlocal counter
        counter += 1
        await other.publish("wf:calm:collab", counter)
        msg = await sub.next(5)
        assert msg.data == counter

    yield still_served
    await still_served()


async def test_malformed_frames_get_errors_and_session_survives(
    gateway: RunningGateway, raw: Any, bystander: Callable[[], Awaitable[None]]
) -> None:
    ws = await connected(raw, gateway.url)
    cases: list[tuple[bytes, int, int | None]] = [
        (b"\xc1\xc1", ErrorCode.BAD_REQUEST, None),  # not msgpack
        (pack([1, 2, 3]), ErrorCode.BAD_REQUEST, None),  # not a map
        (pack({"id": 5}), ErrorCode.BAD_REQUEST, 5),  # no op
        (pack({"op": "explode", "id": 6}), ErrorCode.UNKNOWN_OP, 6),
        (pack({"op": "publish", "id": 7, "ch": "wf:1:collab"}), ErrorCode.BAD_REQUEST, 7),
        (pack({"op": "subscribe", "id": 8, "ch": 42}), ErrorCode.BAD_REQUEST, 8),
        (pack({"op": "subscribe", "id": -1, "ch": "wf:1:state"}), ErrorCode.BAD_REQUEST, None),
        (pack({"op": "subscribe", "id": 9, "ch": "wf:1:events", "since": {"seq": "x"}}), 400, 9),
        (pack({"op": "message", "ch": "wf:1:state", "data": 1}), ErrorCode.UNKNOWN_OP, None),
    ]
    for payload, code, ref in cases:
        await ws.send_bytes(payload)
        frame = await recv(ws)
        assert isinstance(frame, f.Error), payload
        assert (frame.code, frame.ref) == (code, ref), payload
    await ws.send_str('{"op":"ping","id":1}')  # text frame on the msgpack subprotocol
    frame = await recv(ws)
    assert isinstance(frame, f.Error) and frame.code == ErrorCode.BAD_REQUEST
    await ws.send_bytes(pack({"op": "ping", "id": 77}))
    assert await recv(ws) == f.Pong(id=77)
    await bystander()


async def test_malformed_json(
    gateway: RunningGateway, raw: Any, bystander: Callable[[], Awaitable[None]]
) -> None:
    ws = await raw(gateway.url, protocol="frys.v1.json")
    await ws.send_str(json.dumps({"op": "connect", "id": 1, "token": token()}))
    assert isinstance(await recv(ws), f.Connected)
    for text, code in (
        ("{not json", ErrorCode.BAD_REQUEST),
        ('{"op":"publish","id":3,"ch":"wf:1:collab","data":{"$bytes":"!!"}}', 400),
        ('{"op":"nope","id":4}', ErrorCode.UNKNOWN_OP),
        ("[" * 100000, ErrorCode.BAD_REQUEST),
    ):
        await ws.send_str(text)
        frame = await recv(ws)
        assert isinstance(frame, f.Error) and frame.code == code, text[:40]
    await ws.send_bytes(b"\x81\xa2op\xa4ping")  # binary frame on the JSON subprotocol
    frame = await recv(ws)
    assert isinstance(frame, f.Error) and frame.code == ErrorCode.BAD_REQUEST
    await bystander()


async def test_channel_and_permission_errors(
    gateway: RunningGateway, raw: Any, bystander: Callable[[], Awaitable[None]]
) -> None:
    limited = token("carol", {"wf:1:state": ["subscribe"], "wf:1:collab": ["subscribe"]})
    ws = await connected(raw, gateway.url, limited)
    ref = 10

    async def expect(op: dict[str, Any], code: int) -> None:
        nonlocal ref
        ref += 1
        await ws.send_bytes(pack({"id": ref, **op}))
        frame = await recv(ws)
        assert isinstance(frame, f.Error), op
        assert (frame.code, frame.ref) == (code, ref), (op, frame)

    for bad in (
        "wf:1.2:state",
        "wf:*:state",
        "wf:>:events",
        "wf: x:state",
        "wf::state",
        "agent:",
        "wf:1:nope",
        "foo",
        "wf:1:state:extra",
        "agent:a.b",
        "x" * 300,
    ):
        await expect({"op": "subscribe", "ch": bad}, ErrorCode.INVALID_CHANNEL)
    await expect({"op": "subscribe", "ch": "wf:2:state"}, ErrorCode.FORBIDDEN)
    await expect({"op": "publish", "ch": "wf:1:collab", "data": 1}, ErrorCode.FORBIDDEN)
    await expect({"op": "request", "ch": "wf:1:control", "data": 1}, ErrorCode.FORBIDDEN)
    await expect({"op": "unsubscribe", "ch": "wf:1:state"}, ErrorCode.NOT_FOUND)
    await ws.send_bytes(pack({"op": "subscribe", "id": 99, "ch": "wf:1:state"}))
    assert isinstance(await recv(ws), f.Ack)
    await expect({"op": "subscribe", "ch": "wf:1:state"}, ErrorCode.ALREADY_SUBSCRIBED)

    full = await connected(raw, gateway.url)
    ws, ref = full, 100
    await expect({"op": "publish", "ch": "wf:1:control", "data": 1}, ErrorCode.NOT_ALLOWED)
    await expect({"op": "publish", "ch": "wf:1:presence", "data": 1}, ErrorCode.NOT_ALLOWED)
    await expect({"op": "subscribe", "ch": "wf:1:control"}, ErrorCode.NOT_ALLOWED)
    await expect({"op": "request", "ch": "wf:1:state", "data": 1}, ErrorCode.NOT_ALLOWED)
    await expect({"op": "request", "ch": "wf:1:control", "data": 1}, ErrorCode.UNAVAILABLE)
    await expect({"op": "connect", "token": token()}, ErrorCode.BAD_REQUEST)
    await bystander()


async def test_limits(
    gateways: GatewayFactory, raw: Any, clients: Callable[..., Awaitable[Client]]
) -> None:
    gw = await gateways(
        max_subscriptions=2,
        publish_rate_per_s=1.0,
        publish_burst=3,
        max_frame_bytes=4096,
        max_invalid_frames=3,
    )
    ws = await connected(raw, gw.url)
    for i, ch in enumerate(("wf:1:collab", "wf:2:collab")):
        await ws.send_bytes(pack({"op": "subscribe", "id": i + 1, "ch": ch}))
        assert isinstance(await recv(ws), f.Ack)
    await ws.send_bytes(pack({"op": "subscribe", "id": 3, "ch": "wf:3:collab"}))
    frame = await recv(ws)
    assert isinstance(frame, f.Error) and frame.code == ErrorCode.LIMIT_EXCEEDED
    codes = []
    for i in range(5):
        await ws.send_bytes(pack({"op": "publish", "id": 10 + i, "ch": "wf:1:collab", "data": i}))
        while True:
            frame = await recv(ws)
            if isinstance(frame, f.Ack | f.Error):
                codes.append(frame.code if isinstance(frame, f.Error) else 0)
                break
    assert codes[:3] == [0, 0, 0] and ErrorCode.LIMIT_EXCEEDED in codes[3:]

    big = await connected(raw, gw.url)
    await big.send_bytes(pack({"op": "publish", "id": 1, "ch": "wf:1:collab", "data": b"x" * 5000}))
    code, _ = await closed_with(big)
    assert code == CloseCode.MESSAGE_TOO_BIG

    noisy = await connected(raw, gw.url)
    for _ in range(4):
        await noisy.send_bytes(b"\xc1")
    code, _ = await closed_with(noisy)
    assert code == CloseCode.POLICY_VIOLATION

    healthy = await clients(gw.url, token=token("healthy"))
    assert (await healthy.publish("wf:1:events", "still here")).seq is not None


async def test_connect_phase_failures(gateways: GatewayFactory, raw: Any) -> None:
    gw = await gateways(connect_timeout_s=0.3)
    silent = await raw(gw.url)
    assert (await closed_with(silent))[0] == CloseCode.CONNECT_TIMEOUT
    not_connect = await raw(gw.url)
    await not_connect.send_bytes(pack({"op": "ping", "id": 1}))
    assert (await closed_with(not_connect))[0] == CloseCode.BAD_CONNECT
    garbage = await raw(gw.url)
    await garbage.send_bytes(b"\x00\xff garbage")
    assert (await closed_with(garbage))[0] == CloseCode.BAD_CONNECT
    no_token = await raw(gw.url)
    await no_token.send_bytes(pack({"op": "connect", "id": 1}))
    assert await closed_with(no_token) == (CloseCode.UNAUTHORIZED, "token required")
    await eventually(lambda: not gw.gateway.sessions)


def _unsigned(claims: dict[str, Any]) -> str:
    """A token with ``alg: none`` (no signature at all)."""
    key: Any = None
    return jwt.encode(claims, key, algorithm="none")


def _expired() -> str:
    return jwt.encode({"sub": "a", "exp": int(time.time()) - 10}, SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_expired, "token expired"),
        (
            lambda: _unsigned({"sub": "a", "exp": int(time.time()) + 60}),
            "algorithm not allowed for this key",
        ),
        (
            lambda: jwt.encode(
                {"sub": "a", "exp": int(time.time()) + 60}, "x" * 40, algorithm="HS256"
            ),
            "bad signature",
        ),
        (
            lambda: jwt.encode(
                {"sub": "a", "exp": int(time.time()) + 60},
                SECRET,
                algorithm="HS256",
                headers={"kid": "nope"},
            ),
            "unknown key id",
        ),
        (lambda: jwt.encode({"sub": "a"}, SECRET, algorithm="HS256"), "missing claim exp"),
        (lambda: "not-a-jwt", "malformed token"),
        (lambda: token(issuer="someone-else"), "wrong issuer"),
        (lambda: token(issuer="frys-test", audience="other"), "wrong audience"),
    ],
)
async def test_token_refused(
    gateways: GatewayFactory, raw: Any, make: Callable[[], str], reason: str
) -> None:
    gw = await gateways(jwt_issuer="frys-test", jwt_audience="frys")
    ws = await raw(gw.url)
    await ws.send_bytes(pack({"op": "connect", "id": 1, "token": make()}))
    assert await closed_with(ws) == (CloseCode.UNAUTHORIZED, reason)
    good = await raw(gw.url)
    await good.send_bytes(
        pack({"op": "connect", "id": 1, "token": token(issuer="frys-test", audience="frys")})
    )
    assert isinstance(await recv(good), f.Connected)


async def test_public_keys_and_algorithm_confusion(
    gateways: GatewayFactory, raw: Any, tmp_path: Path
) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "rsa.pem").write_bytes(public_pem)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(ec_key.public_key()))
    jwk["kid"] = "ec-1"
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    gw = await gateways(
        jwt_secret="",
        jwt_public_key_file=str(tmp_path / "rsa.pem"),
        jwt_jwks_file=str(tmp_path / "jwks.json"),
    )
    claims = {"sub": "a", "exp": int(time.time()) + 60}

    async def attempt(tok: str) -> tuple[int | None, str] | None:
        ws = await raw(gw.url)
        await ws.send_bytes(pack({"op": "connect", "id": 1, "token": tok}))
        msg = await ws.receive(timeout=5)
        if msg.type is aiohttp.WSMsgType.BINARY:
            assert isinstance(decode_msgpack(msg.data), f.Connected)
            return None
        return ws.close_code, str(msg.extra)

    assert await attempt(jwt.encode(claims, rsa_key, algorithm="RS256")) is None
    assert (
        await attempt(jwt.encode(claims, ec_key, algorithm="ES256", headers={"kid": "ec-1"}))
        is None
    )
    # HS256 signed with the RSA public key as the HMAC secret must not pass.
    forged = _hmac_token(claims, public_pem)
    assert await attempt(forged) == (CloseCode.UNAUTHORIZED, "algorithm not allowed for this key")
    assert await attempt(
        jwt.encode(claims, ec_key, algorithm="ES256", headers={"kid": "ec-2"})
    ) == (CloseCode.UNAUTHORIZED, "unknown key id")


def _hmac_token(claims: dict[str, Any], secret: bytes) -> str:
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = b64(hmac.new(secret, head + b"." + body, hashlib.sha256).digest())
    return (head + b"." + body + b"." + sig).decode()


async def test_http_checks_before_upgrade(
    gateway: RunningGateway, http: aiohttp.ClientSession, raw: Any
) -> None:
    async def status(**kw: Any) -> int:
        try:
            ws = await http.ws_connect(gateway.url, **kw)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        await ws.close()
        return 101

    # A refused Origin is upgraded and closed with 4403 at once, a code a browser can read.
    refused = await http.ws_connect(
        gateway.url, origin="https://evil.example", protocols=("frys.v1.json",)
    )
    assert refused.protocol == "frys.v1.json"
    closing = await refused.receive(timeout=5)
    assert (closing.type, closing.data, closing.extra) == (
        aiohttp.WSMsgType.CLOSE,
        CloseCode.ORIGIN_REFUSED,
        "origin not allowed",
    )
    assert await status(origin="https://designer.example") == 101
    assert await status(protocols=("frys.v9.xml",)) == 400
    assert await status(headers={"Authorization": "Bearer garbage"}) == 401
    ws = await raw(gateway.url, headers={"Authorization": f"Bearer {token('hdr')}"})
    await ws.send_bytes(pack({"op": "connect", "id": 1}))
    assert isinstance(await recv(ws), f.Connected)
    async with http.post(f"{gateway.http}/api/publish", json={"channel": "wf:1:collab"}) as r:
        assert r.status == 401
    headers = {"Authorization": "Bearer test-api-key"}
    async with http.post(
        f"{gateway.http}/api/publish",
        json={"channel": "wf:1.2:collab", "data": 1},
        headers=headers,
    ) as r:
        assert r.status == 422
    async with http.post(
        f"{gateway.http}/api/publish",
        json={"channel": "wf:1:events", "data": 1},
        headers=headers,
    ) as r:
        assert r.status == 200 and (await r.json())["seq"] >= 1


async def test_token_expiry_and_refresh(gateway: RunningGateway, raw: Any) -> None:
    ws = await connected(raw, gateway.url, token("dave", ttl_s=2))
    await ws.send_bytes(pack({"op": "refresh", "id": 2, "token": token("mallory")}))
    frame = await recv(ws)
    assert isinstance(frame, f.Error) and frame.code == ErrorCode.UNAUTHORIZED
    await ws.send_bytes(pack({"op": "refresh", "id": 3, "token": token("dave", ttl_s=3)}))
    frame = await recv(ws)
    assert isinstance(frame, f.Ack) and frame.exp is not None
    started = time.monotonic()
    code, reason = await closed_with(ws, timeout=10)
    assert (code, reason) == (CloseCode.TOKEN_EXPIRED, "token expired")
    assert time.monotonic() - started > 1.5  # the refresh extended the session past 2 s


async def test_refresh_revoking_a_right_ends_that_subscription(
    gateway: RunningGateway, raw: Any
) -> None:
    ws = await connected(raw, gateway.url, token("erin", {"wf:1:*": ["subscribe"]}))
    await ws.send_bytes(pack({"op": "subscribe", "id": 2, "ch": "wf:1:collab"}))
    assert isinstance(await recv(ws), f.Ack)
    await ws.send_bytes(
        pack({"op": "refresh", "id": 3, "token": token("erin", {"wf:2:*": ["subscribe"]})})
    )
    frames = [await recv(ws), await recv(ws)]
    assert (
        f.Unsubscribed(ch="wf:1:collab", code=ErrorCode.FORBIDDEN, reason="right revoked") in frames
    )
    assert any(isinstance(x, f.Ack) and x.id == 3 for x in frames)
    await eventually(lambda: not gateway.gateway.hub.fanouts)


async def test_nothing_leaks_after_abuse(gateway: RunningGateway, raw: Any) -> None:
    def per_connection_tasks() -> list[str]:
        """Tasks that belong to a connection (the gateway's own long-lived ones excluded)."""
        names = []
        for task in asyncio.all_tasks():
            qualname = getattr(task.get_coro(), "__qualname__", "")
            if qualname.startswith(("Session.", "RequestHandler.", "ws_handler", "WebSocket")):
                names.append(qualname)
        return names

    for i in range(20):
        ws = await connected(raw, gateway.url)
        for j in range(3):
            await ws.send_bytes(pack({"op": "subscribe", "id": j + 2, "ch": f"wf:{i}-{j}:state"}))
        await ws.send_bytes(b"\xc1")
        if i % 2:
            await ws.close()
        else:
            await ws.send_bytes(pack({"op": "ping"}))  # then drop without a close handshake
            ws._response.connection.transport.abort()  # type: ignore[union-attr]
    await eventually(lambda: snapshot(gateway) == (0, 0, 0))
    await eventually(lambda: not per_connection_tasks())
    assert gateway.gateway.bus.nc._subs is not None
    # Only the gateway's own subscriptions remain on its NATS connection.
    own = {s.subject for s in gateway.gateway.bus.nc._subs.values()}
    assert all(
        "._sys." in s or s.startswith(("_INBOX", "$JS.EVENT.ADVISORY.STREAM.")) for s in own
    ), own
