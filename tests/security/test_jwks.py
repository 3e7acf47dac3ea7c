"""Keys from a JWKS URL: an identity provider served over HTTPS by the test (a real aiohttp
server with a certificate from the test CA) rotates its keys; gateways follow without a
restart, and floods of unknown key ids cannot turn into floods of fetches."""

from __future__ import annotations

import asyncio
import math
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from frys.client import connect
from frys.client.errors import ConnectionClosed
from frys.gateway.auth import AuthError, TokenVerifier
from frys.gateway.config import GatewayConfig
from frys.gateway.jwks import RemoteKeySet
from tests.conftest import EVERYTHING, SECRET, GatewayFactory
from tests.security.pki import TestCA


@dataclass
class Provider:
    """An identity provider: signing keys by id, published at ``url``."""

    url: str = ""
    ca_file: str = ""
    keys: dict[str, ec.EllipticCurvePrivateKey] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)
    """Key ids in the JWKS document now."""
    requests: list[float] = field(default_factory=list)
    """Monotonic time of every JWKS request served."""
    failing: bool = False

    def add_key(self, kid: str) -> None:
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())

    def publish(self, *kids: str) -> None:
        self.published = list(kids)

    def document(self) -> dict[str, Any]:
        keys = []
        for kid in self.published:
            jwk = ECAlgorithm.to_jwk(self.keys[kid].public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "ES256"})
        # Providers also publish keys Frys has no use for: they are skipped, not fatal.
        keys.append({"kty": "RSA", "kid": "enc-1", "use": "enc", "n": "AQAB", "e": "AQAB"})
        keys.append({"kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7T"})
        return {"keys": keys}

    def token(self, kid: str, sub: str = "alice", signer: str | None = None) -> str:
        payload = {
            "sub": sub,
            "exp": int(time.time()) + 600,
            "frys": {"kind": "user", "grants": EVERYTHING},
        }
        key = self.keys[signer or kid]
        return jwt.encode(payload, key, algorithm="ES256", headers={"kid": kid})


@pytest.fixture
async def provider(tmp_path: Path) -> AsyncIterator[Provider]:
    ca = TestCA(tmp_path / "pki")
    server_cert = ca.issue("idp", "idp", server=True)
    state = Provider(ca_file=str(ca.cert_file))

    async def jwks(request: web.Request) -> web.Response:
        state.requests.append(time.monotonic())
        if state.failing:
            return web.Response(status=503, text="down for maintenance")
        return web.json_response(state.document())

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", jwks)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server_cert.cert_file, server_cert.key_file)
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.url = f"https://127.0.0.1:{port}/.well-known/jwks.json"
    yield state
    await runner.cleanup()


def verifier_for(provider: Provider, **settings: Any) -> tuple[TokenVerifier, RemoteKeySet]:
    config = GatewayConfig(
        jwt_jwks_url=provider.url, jwt_jwks_ca_file=provider.ca_file, **settings
    ).validate()
    verifier = TokenVerifier(config)
    keyset = RemoteKeySet.from_config(config, verifier)
    assert keyset is not None
    return verifier, keyset


async def eventually_verifies(verifier: TokenVerifier, token: str, within_s: float) -> float:
    """Seconds until ``token`` verifies (fails the test after ``within_s``)."""
    started = time.monotonic()
    while True:
        try:
            verifier.verify(token)
            return time.monotonic() - started
        except AuthError:
            assert time.monotonic() - started < within_s, "the rotated key never arrived"
            await asyncio.sleep(0.02)


async def test_rotated_key_is_accepted_without_restart(provider: Provider) -> None:
    provider.add_key("2026-01")
    provider.publish("2026-01")
    verifier, keyset = verifier_for(provider, jwt_jwks_min_refresh_s=0.5)
    await keyset.start()
    try:
        assert provider.requests and keyset.loaded.is_set()
        assert verifier.verify(provider.token("2026-01")).sub == "alice"
        assert verifier.key_ids == {"2026-01"}  # the encryption and Ed25519 keys skipped

        # The provider rotates: a new key, tokens signed with it. The first such token
        # fails at once (verification does not wait for the network), saying why...
        provider.add_key("2026-02")
        provider.publish("2026-01", "2026-02")
        rotated = provider.token("2026-02", sub="bob")
        with pytest.raises(AuthError) as refused:
            verifier.verify(rotated)
        assert refused.value.reason.startswith("unknown key id")
        assert "refresh requested" in refused.value.reason
        # ...and once the rate limit lets the fetch through, the same token verifies.
        await eventually_verifies(verifier, rotated, within_s=3.0)
        assert verifier.verify(rotated).sub == "bob"
        assert len(provider.requests) == 2
        assert provider.requests[1] - provider.requests[0] >= 0.45
        # A token signed by the wrong key under a known id is still refused.
        forged = provider.token("2026-02", signer="2026-01")
        with pytest.raises(AuthError, match="bad signature"):
            verifier.verify(forged)
    finally:
        await keyset.close()


async def test_unknown_kid_flood_fetches_at_most_once_per_interval(provider: Provider) -> None:
    provider.add_key("k1")
    provider.publish("k1")
    interval = 0.4
    verifier, keyset = verifier_for(provider, jwt_jwks_min_refresh_s=interval)
    await keyset.start()
    try:
        flood = [_made_up(provider) for _ in range(200)]
        started = time.monotonic()
        attempts = 0
        while time.monotonic() - started < 3 * interval:
            for made_up in flood:
                attempts += 1
                with pytest.raises(AuthError, match="unknown key id"):
                    verifier.verify(made_up)
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.05)  # let a fetch that just started finish
        assert attempts > 1000
        fetches = len(provider.requests)
        # The start fetch, then at most one per interval however many tokens asked.
        assert 2 <= fetches <= 1 + math.ceil(elapsed / interval), provider.requests
        gaps = [b - a for a, b in zip(provider.requests, provider.requests[1:], strict=False)]
        assert min(gaps) >= interval * 0.9, gaps
        # Quiet again: no unknown key ids, no fetches (the periodic refresh is 300 s away).
        await asyncio.sleep(2 * interval)
        assert len(provider.requests) <= fetches + 1
    finally:
        await keyset.close()


def _made_up(provider: Provider) -> str:
    """A token naming a key id the provider never published."""
    kid = uuid.uuid4().hex
    provider.keys.setdefault("forger", ec.generate_private_key(ec.SECP256R1()))
    return provider.token(kid, signer="forger")


async def test_periodic_refresh_withdraws_keys_and_survives_outages(provider: Provider) -> None:
    provider.add_key("old")
    provider.add_key("new")
    provider.publish("old", "new")
    verifier, keyset = verifier_for(provider, jwt_jwks_refresh_s=0.2, jwt_jwks_min_refresh_s=0.05)
    await keyset.start()
    try:
        old_token = provider.token("old")
        verifier.verify(old_token)  # cached from now on
        # The provider is down for a while: the keys held keep working.
        provider.failing = True
        failed_from = len(provider.requests)
        while len(provider.requests) < failed_from + 2:  # noqa: ASYNC110 - polls a server's log
            await asyncio.sleep(0.05)
        assert verifier.verify(provider.token("new")).sub == "alice"
        # Back, without "old": the cached token is refused from the next refresh on.
        provider.failing = False
        provider.publish("new")
        deadline = time.monotonic() + 3
        while "old" in verifier.key_ids:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        with pytest.raises(AuthError, match="unknown key id"):
            verifier.verify(old_token)
    finally:
        await keyset.close()


async def test_gateway_follows_a_rotation(provider: Provider, gateways: GatewayFactory) -> None:
    """Through a gateway: a client whose token names the new key is refused with the
    reason, then connects once the gateway has fetched the key; no restart."""
    provider.add_key("a")
    provider.publish("a")
    gw = await gateways(
        jwt_jwks_url=provider.url,
        jwt_jwks_ca_file=provider.ca_file,
        jwt_jwks_min_refresh_s=0.5,
        jwt_secret=SECRET,
    )
    async with connect(gw.url, token=provider.token("a"), reconnect=False) as client:
        await client.publish("wf:1:collab", {"hello": 1})
    provider.add_key("b")
    provider.publish("a", "b")
    rotated = provider.token("b")
    with pytest.raises(ConnectionClosed) as refused:
        async with connect(gw.url, token=rotated, reconnect=False):
            pass
    assert "unknown key id" in str(refused.value)
    deadline = time.monotonic() + 5
    while True:
        try:
            async with connect(gw.url, token=rotated, reconnect=False) as client:
                await client.publish("wf:1:collab", {"hello": 2})
            break
        except ConnectionClosed:
            assert time.monotonic() < deadline, "the gateway never accepted the new key"
            await asyncio.sleep(0.1)
    assert len(provider.requests) == 2
