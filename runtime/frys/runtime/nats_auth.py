"""How a Frys process authenticates to NATS and encrypts its connection.

Gateways and the router read the same ``nats_*`` settings (``FRYS_NATS_*`` variables) and
turn them into nats-py ``connect`` options here, so both speak to a secured NATS in exactly
the same way. The backend helper in ``frys.client`` may not use this module (the client
installs without the runtime): it takes the same options as keyword arguments.

One credential at most: a ``.creds`` file (user JWT and nkey seed, for NATS operator
mode), an nkey seed file, a user and password, or a token. TLS is on when the URL says
``tls://`` or any ``nats_tls_*`` file is set; a CA file replaces the system trust store,
and a certificate with its key authenticates this process to a server that verifies
clients (``tls { verify: true }``).

:func:`frys_permissions` is the least a Frys process needs on NATS under one subject
prefix; the Helm chart grants the same set to its NATS users (tests/deploy checks that).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from frys.shared.protocol.subjects import Subjects


@dataclass(frozen=True, slots=True)
class NatsAuth:
    """Credentials and TLS files for one NATS connection (empty strings: not used)."""

    creds_file: str = ""
    nkey_seed_file: str = ""
    user: str = ""
    password: str = ""
    token: str = ""
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""

    @classmethod
    def from_settings(cls, settings: object) -> NatsAuth:
        """From a configuration object's ``nats_creds_file``, ``nats_user``, … attributes
        (the gateway's and the router's configurations both carry them)."""
        return cls(**{f.name: str(getattr(settings, f"nats_{f.name}", "")) for f in fields(cls)})

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca_file or self.tls_cert_file or self.tls_key_file)

    def problems(self) -> list[str]:
        """What is wrong with these settings, as ``nats_*`` setting names (empty: fine)."""
        problems: list[str] = []
        methods = [
            name
            for name, value in (
                ("nats_creds_file", self.creds_file),
                ("nats_nkey_seed_file", self.nkey_seed_file),
                ("nats_user", self.user),
                ("nats_token", self.token),
            )
            if value
        ]
        if len(methods) > 1:
            problems.append(f"set one NATS credential, not {' and '.join(methods)}")
        if self.password and not self.user:
            problems.append("nats_password needs nats_user")
        if self.user and not self.password:
            problems.append("nats_user needs nats_password")
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            problems.append("nats_tls_cert_file and nats_tls_key_file go together")
        for name in ("creds_file", "nkey_seed_file", "tls_ca_file", "tls_cert_file"):
            value = getattr(self, name)
            if value and not Path(value).is_file():
                problems.append(f"nats_{name}: no such file {value!r}")
        if self.tls_key_file and not Path(self.tls_key_file).is_file():
            problems.append(f"nats_tls_key_file: no such file {self.tls_key_file!r}")
        return problems

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for nats-py's ``connect`` (nothing when nothing is set)."""
        options: dict[str, Any] = {}
        if self.creds_file:
            options["user_credentials"] = self.creds_file
        if self.nkey_seed_file:
            options["nkeys_seed"] = self.nkey_seed_file
        if self.user:
            options["user"] = self.user
            options["password"] = self.password
        if self.token:
            options["token"] = self.token
        if self.tls:
            options["tls"] = client_tls_context(
                self.tls_ca_file, self.tls_cert_file, self.tls_key_file
            )
        return options


def client_tls_context(
    ca_file: str = "", cert_file: str = "", key_file: str = ""
) -> ssl.SSLContext:
    """A client context that verifies the server (against ``ca_file``, else the system
    store), TLS 1.2 at least, presenting ``cert_file`` when the server asks for one."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        context.load_cert_chain(cert_file, key_file or None)
    return context


def frys_streams(prefix: str) -> list[str]:
    """The JetStream streams of one Frys installation: events, state and the KV buckets'."""
    s = Subjects(prefix)
    return [s.events_stream, s.state_stream, *(f"KV_{b}" for b in s.buckets)]


def frys_permissions(prefix: str) -> dict[str, dict[str, list[str]]]:
    """NATS permissions that let a gateway, the router or a backend do its work under
    ``prefix`` and nothing else: its own subjects, replies on ``_INBOX.>``, the JetStream
    API of its own streams only (never another application's; none of them deleted, bar
    the replicas probe), its streams' lifecycle advisories and its KV buckets.

    ``$JS.API.INFO`` (account limits) is the one JetStream call not tied to a stream.
    """
    s = Subjects(prefix)
    publish = [f"{prefix}.>", "_INBOX.>", "$JS.API.INFO"]
    subscribe = [f"{prefix}.>", "_INBOX.>"]
    for stream in frys_streams(prefix):
        publish += [
            f"$JS.API.STREAM.INFO.{stream}",
            f"$JS.API.STREAM.CREATE.{stream}",
            f"$JS.API.STREAM.UPDATE.{stream}",
            f"$JS.API.STREAM.MSG.GET.{stream}",
            f"$JS.API.DIRECT.GET.{stream}",
            f"$JS.API.DIRECT.GET.{stream}.>",
            f"$JS.API.CONSUMER.CREATE.{stream}",
            f"$JS.API.CONSUMER.CREATE.{stream}.>",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.*",
            f"$JS.API.CONSUMER.INFO.{stream}.*",
            f"$JS.API.CONSUMER.DELETE.{stream}.*",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.*",
            f"$JS.ACK.{stream}.>",
            f"$JS.FC.{stream}.>",
        ]
        subscribe.append(f"$JS.EVENT.ADVISORY.STREAM.*.{stream}")
    # The stream a gateway creates and deletes to learn how many replicas JetStream places.
    probe = s.replicas_probe_stream
    publish += [f"$JS.API.STREAM.{api}.{probe}" for api in ("CREATE", "INFO", "DELETE")]
    for bucket in s.buckets:
        publish.append(f"$KV.{bucket}.>")
        subscribe.append(f"$KV.{bucket}.>")
    return {"publish": {"allow": publish}, "subscribe": {"allow": subscribe}}
