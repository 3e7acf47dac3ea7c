"""TLS on the gateway's own port: ``wss://`` without a proxy in front.

The context is built once, with Python's defaults for a server (``Purpose.CLIENT_AUTH``:
OpenSSL's modern cipher list, no compression, no renegotiation) and TLS 1.2 at least. The
listening socket keeps this one context for its lifetime; when the certificate or key
files change on disk (cert-manager renews them, the kubelet swaps the Secret volume's
files), :meth:`ServerTLS.reload` loads the new pair *into the same context*. OpenSSL
copies a context's certificate into each connection when the connection starts, so new
connections get the new certificate and open ones keep theirs.

A change is noticed by polling the files' modification time, size and inode every
``tls_reload_s``: cheap, and it works on every filesystem, the Secret volume's symlink
swap included. A pair that does not load (a key written before its certificate, say) is
logged and retried at the next poll, and the gateway keeps serving with the pair it had.

With ``tls_client_ca_file`` the gateway asks every client for a certificate but does not
require one (``CERT_OPTIONAL``): browsers connect as before, and a backend that presents
a certificate the CA verifies may call ``POST /api/publish`` without the API key
(:func:`verified_client`). A certificate that fails verification fails the handshake.
The CA file is read at start only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from frys.gateway.config import GatewayConfig

log = logging.getLogger("frys.gateway.tls")

_Stamp = tuple[tuple[int, int, int] | None, ...]


def _stamp(*paths: str) -> _Stamp:
    """What identifies the files' current contents without reading them."""
    stamps: list[tuple[int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            stamps.append(None)
        else:
            stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(stamps)


class ServerTLS:
    """The gateway's server-side TLS context and the watch that keeps it current."""

    def __init__(
        self, cert_file: str, key_file: str, client_ca_file: str = "", reload_s: float = 5.0
    ):
        self.cert_file = cert_file
        self.key_file = key_file
        self.reload_s = reload_s
        self.reloads = 0
        """Certificates loaded since start (the first one not counted)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if client_ca_file:
            context.load_verify_locations(cafile=client_ca_file)
            context.verify_mode = ssl.CERT_OPTIONAL
        self._stamp = _stamp(cert_file, key_file)
        context.load_cert_chain(cert_file, key_file)
        self.context = context

    @classmethod
    def from_config(cls, config: GatewayConfig) -> ServerTLS | None:
        """The gateway's TLS, or ``None`` when ``tls_cert_file`` is not set."""
        if not config.tls_cert_file:
            return None
        return cls(
            config.tls_cert_file,
            config.tls_key_file,
            config.tls_client_ca_file,
            config.tls_reload_s,
        )

    def reload(self) -> bool:
        """Load the certificate and key again if either file changed; ``True`` if it did."""
        stamp = _stamp(self.cert_file, self.key_file)
        if stamp == self._stamp or None in stamp:
            return False
        try:
            self.context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            # Half-written, or a key that does not match the certificate yet: keep the old
            # pair and look again at the next poll.
            log.warning("TLS certificate %s not reloaded (%s); retrying", self.cert_file, exc)
            return False
        self._stamp = stamp
        self.reloads += 1
        log.info("TLS certificate %s reloaded", self.cert_file)
        return True

    async def watch(self) -> None:
        """Poll the files every ``reload_s`` until cancelled."""
        while True:
            await asyncio.sleep(self.reload_s)
            self.reload()

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """An aiohttp cleanup context that runs :meth:`watch` while the app runs."""
        task = asyncio.get_running_loop().create_task(self.watch())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def verified_client(request: web.Request) -> dict[str, Any] | None:
    """The client certificate of this request's connection, if it presented one and the
    configured client CA verified it (``None`` otherwise, and always without TLS).

    The ``ssl`` module reports a peer certificate only once it has been verified, and
    with ``CERT_OPTIONAL`` an unverifiable one already failed the handshake, so a
    non-empty answer is a verified certificate."""
    transport = request.transport
    if transport is None:
        return None
    cert = transport.get_extra_info("peercert")
    return cert if isinstance(cert, dict) and cert else None


def client_name(cert: dict[str, Any]) -> str:
    """The certificate's common name, for logs and the publish source."""
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return "client-certificate"
