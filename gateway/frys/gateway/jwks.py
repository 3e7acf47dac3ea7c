"""Keys from an identity provider's JWKS URL, kept current without a restart.

Identity providers publish their signing keys as a JWKS document and rotate them: a new
key (new ``kid``) appears, tokens start naming it, the old key is withdrawn later. The
gateway fetches the set at start, then

- every ``jwt_jwks_refresh_s`` (withdrawn keys stop admitting tokens within that time);
- when a token names a key id it does not know, since that is how a rotation first
  shows. Any number of such tokens cause at most one fetch per ``jwt_jwks_min_refresh_s``,
  so a flood of made-up key ids cannot make the gateway hammer the provider.

Verification never waits for the network: it stays synchronous on the hot path against
the keys in memory. A token with an unknown key id is refused at once, with a reason that
says a refresh was asked for; the same token verifies once the fetch has brought its key.
A failed fetch (network, status, a document that is not a usable JWKS) keeps the keys
already held and is logged; the next periodic or requested refresh tries again.

The fetch is HTTPS only, verified against the system's CA store or ``jwt_jwks_ca_file``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable

import aiohttp

from frys.gateway.auth import TokenVerifier, _load_jwks
from frys.gateway.config import GatewayConfig

log = logging.getLogger("frys.gateway.jwks")

MAX_JWKS_BYTES = 1024 * 1024
"""Largest key set read (real ones are a few kilobytes)."""


class RemoteKeySet:
    """Fetches ``url`` into ``verifier`` at start, periodically and on unknown key ids."""

    def __init__(
        self,
        url: str,
        verifier: TokenVerifier,
        *,
        ca_file: str = "",
        refresh_s: float = 300.0,
        min_refresh_s: float = 30.0,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.url = url
        self.verifier = verifier
        self.refresh_s = refresh_s
        self.min_refresh_s = min_refresh_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._ssl = ssl.create_default_context(cafile=ca_file or None)
        self._ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        self.fetches = 0
        """Fetch attempts so far (successful or not)."""
        self.loaded = asyncio.Event()
        """Set once a fetch has brought a usable key set."""
        self._last_attempt = -float("inf")
        self._wanted = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        verifier.on_unknown_kid = self.request_refresh

    @classmethod
    def from_config(cls, config: GatewayConfig, verifier: TokenVerifier) -> RemoteKeySet | None:
        if not config.jwt_jwks_url:
            return None
        return cls(
            config.jwt_jwks_url,
            verifier,
            ca_file=config.jwt_jwks_ca_file,
            refresh_s=config.jwt_jwks_refresh_s,
            min_refresh_s=config.jwt_jwks_min_refresh_s,
        )

    async def start(self, first_fetch_s: float = 10.0) -> None:
        """Fetch the set (waiting at most ``first_fetch_s`` for it), then keep it current in
        the background. A gateway whose provider is unreachable at start still starts: it
        refuses tokens until a later fetch succeeds."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._ssl, limit=2),
            timeout=aiohttp.ClientTimeout(total=self.timeout_s),
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.refresh(), first_fetch_s)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def request_refresh(self, kid: str = "") -> None:
        """Ask for a fetch (from the verification path: returns at once). Requests that
        arrive before the fetch they asked for has started share it."""
        self._wanted.set()

    async def _run(self) -> None:
        while True:
            due = self._last_attempt + self.refresh_s - self._clock()
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
            # cancellation that arrives as the event is set, and close() would wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(due, 0.0)):
                    await self._wanted.wait()
            pause = self._last_attempt + self.min_refresh_s - self._clock()
            if pause > 0:
                await asyncio.sleep(pause)
            self._wanted.clear()
            await self.refresh()

    async def refresh(self) -> bool:
        """Fetch the set now and install it; ``False`` (keys unchanged) if that failed."""
        session = self._session
        if session is None:
            raise RuntimeError("RemoteKeySet.start() not called")
        self._last_attempt = self._clock()
        self.fetches += 1
        try:
            async with session.get(self.url, headers={"Accept": "application/json"}) as resp:
                if resp.status != 200:
                    raise ValueError(f"HTTP {resp.status}")
                body = await resp.content.read(MAX_JWKS_BYTES + 1)
            if len(body) > MAX_JWKS_BYTES:
                raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
            keys = _load_jwks(body.decode("utf-8"), lenient=True)
            if not keys:
                raise ValueError("no usable signing key")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("JWKS %s not refreshed (%s); keeping the keys held", self.url, exc)
            return False
        before = self.verifier.key_ids
        self.verifier.set_remote_keys(keys)
        if self.verifier.key_ids != before:
            log.info("JWKS %s: key ids now %s", self.url, ", ".join(sorted(keys)))
        self.loaded.set()
        return True
