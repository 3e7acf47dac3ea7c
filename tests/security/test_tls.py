"""Encrypted and authenticated end to end, with real parts only.

A CA made here signs every certificate; a real nats-server requires TLS with client
certificates and knows each Frys process as a user of its own (password, nkey, token),
confined by :func:`~frys.runtime.nats_auth.frys_permissions`; a real gateway serves
``wss://`` through the same code path as ``frys-ws gateway``; the router and the backend
helper connect like the gateway does. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import nats
import nats.errors
import nkeys  # type: ignore[import-untyped]
import pytest

import frys.cli.run_gateway as run_gateway
from frys.client import Client, connect
from frys.client.backend import Backend, Command
from frys.gateway.config import ConfigError, GatewayConfig
from frys.gateway.node import Gateway
from frys.gateway.tls import ServerTLS
from frys.router.config import RouterConfig, RouterConfigError, load_router_config
from frys.router.service import RouterService
from frys.runtime.nats_auth import NatsAuth, frys_permissions, frys_streams
from frys.runtime.nats_process import NatsProcess, NatsTLS
from frys.shared.protocol.subjects import Subjects
from tests.conftest import API_KEY, SECRET, token
from tests.security.natsjwt import Operator
from tests.security.pki import Issued, TestCA, peer_serial

PREFIX = "tsec"
"""The subject prefix the secured NATS grants its Frys users."""


@dataclass
class Pki:
    ca: TestCA
    nats_server: Issued
    nats_client: Issued
    """The certificate Frys processes present to NATS (it verifies clients)."""
    backend: Issued
    """A backend's certificate for ``POST /api/publish``."""
    router_seed: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca = TestCA(folder)
    seed = nkeys.encode_seed(nkeys.nacl.utils.random(32), nkeys.PREFIX_BYTE_USER)
    (folder / "router.nk").write_bytes(seed)
    return Pki(
        ca=ca,
        nats_server=ca.issue("nats", "nats", server=True),
        nats_client=ca.issue("frys-client", "frys", server=False),
        backend=ca.issue("backend", "engine-1", server=False),
        router_seed=folder / "router.nk",
    )


def _nkey_public(seed_file: Path) -> str:
    return str(nkeys.from_seed(seed_file.read_bytes()).public_key.decode())


@pytest.fixture(scope="module")
def secure_nats(pki: Pki) -> Iterator[NatsProcess]:
    """TLS required, client certificates verified, one account for Frys with a user per
    process (gateway: password, router: nkey, engine: password), all confined to PREFIX."""
    permissions = frys_permissions(PREFIX)
    users: list[dict[str, Any]] = [
        {"user": "gateway", "password": "gw-pass", "permissions": permissions},
        {"user": "engine", "password": "engine-pass", "permissions": permissions},
        {"nkey": _nkey_public(pki.router_seed), "permissions": permissions},
    ]
    server = NatsProcess(
        name=f"frys-tls-{uuid.uuid4().hex[:6]}",
        tls=NatsTLS(
            str(pki.nats_server.cert_file),
            str(pki.nats_server.key_file),
            str(pki.ca.cert_file),
            verify=True,
        ),
        accounts={"FRYS": {"jetstream": "enabled", "users": users}},
    ).start()
    yield server
    server.close()


def nats_settings(pki: Pki, user: str = "gateway", password: str = "gw-pass") -> dict[str, str]:
    """The ``nats_*`` settings of a gateway on the secured NATS."""
    return {
        "nats_user": user,
        "nats_password": password,
        "nats_tls_ca_file": str(pki.ca.cert_file),
        "nats_tls_cert_file": str(pki.nats_client.cert_file),
        "nats_tls_key_file": str(pki.nats_client.key_file),
    }


@dataclass
class WssGateway:
    gateway: Gateway
    port: int
    stop: asyncio.Event
    task: asyncio.Task[None]

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}/ws"

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def wss_gateway(
    monkeypatch: pytest.MonkeyPatch, nats_url: str, **settings: Any
) -> AsyncIterator[WssGateway]:
    """A gateway served exactly as ``frys-ws gateway`` serves it (cli.run_gateway)."""
    # The command freezes the garbage collector's start-up objects; not in a test process.
    monkeypatch.setattr(run_gateway, "tune_gc", lambda: None)
    config = GatewayConfig(
        nats_url=nats_url,
        host="127.0.0.1",
        port=0,
        gateway_id=f"gw-{uuid.uuid4().hex[:6]}",
        subject_prefix=settings.pop("subject_prefix", PREFIX),
        jwt_secret=SECRET,
        api_key=API_KEY,
        drain_s=1.0,
        reconnect_spread_ms=100,
        **settings,
    ).validate()
    stop = asyncio.Event()
    ready: asyncio.Future[tuple[Gateway, int]] = asyncio.get_running_loop().create_future()

    async def on_ready(gateway: Gateway, port: int) -> None:
        ready.set_result((gateway, port))

    task = asyncio.get_running_loop().create_task(run_gateway.serve_gateway(config, stop, on_ready))
    try:
        gateway, port = await asyncio.wait_for(asyncio.shield(ready), 20)
    except BaseException:
        stop.set()
        task.cancel()
        raise
    try:
        yield WssGateway(gateway, port, stop, task)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def open_client(gw: WssGateway, pki: Pki, **kwargs: Any) -> Client:
    return await connect(gw.url, token=token(), ssl_context=pki.ca.client_context(), **kwargs)


async def served_serial(port: int, ca: TestCA) -> int:
    """The serial of the certificate a new TLS connection to ``port`` is shown."""
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ca.client_context())
    try:
        return peer_serial(writer.get_extra_info("ssl_object").getpeercert(binary_form=True))
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def client_peer_serial(client: Client) -> int:
    """The serial of the certificate an open SDK connection was shown at its handshake."""
    ws = client._ws
    assert ws is not None
    transport = ws._response.connection.transport  # type: ignore[union-attr]
    assert transport is not None
    der = transport.get_extra_info("ssl_object").getpeercert(binary_form=True)
    return peer_serial(der)


# --- NATS: TLS required, credentials required ------------------------------------------------


def test_plain_text_client_is_refused(secure_nats: NatsProcess) -> None:
    """A client that does not start TLS gets the INFO (which says TLS is required), and
    whatever it sends in the clear is never answered: the server drops it."""
    with socket.create_connection(("127.0.0.1", secure_nats.port), timeout=5) as sock:
        info = sock.recv(4096)
        assert info.startswith(b"INFO ")
        assert b'"tls_required":true' in info
        sock.sendall(b'CONNECT {"user":"gateway","pass":"gw-pass"}\r\nPING\r\n')
        received = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(4096):
                received += chunk
    assert b"PONG" not in received


async def test_tls_without_credentials_or_client_certificate_is_refused(
    secure_nats: NatsProcess, pki: Pki
) -> None:
    anonymous = NatsAuth(
        tls_ca_file=str(pki.ca.cert_file),
        tls_cert_file=str(pki.nats_client.cert_file),
        tls_key_file=str(pki.nats_client.key_file),
    )
    with pytest.raises((nats.errors.Error, OSError, TimeoutError)) as refused:
        await nats.connect(
            secure_nats.url, allow_reconnect=False, connect_timeout=3, **anonymous.connect_options()
        )
    assert "authorization" in str(refused.value).lower()
    no_client_cert = NatsAuth(user="gateway", password="gw-pass", tls_ca_file=str(pki.ca.cert_file))
    with pytest.raises((nats.errors.Error, OSError, TimeoutError, ssl.SSLError)):
        await nats.connect(
            secure_nats.url,
            allow_reconnect=False,
            connect_timeout=3,
            **no_client_cert.connect_options(),
        )


async def test_a_frys_user_is_confined_to_its_prefix(secure_nats: NatsProcess, pki: Pki) -> None:
    """The permissions let a Frys process use its own subjects and streams only."""
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    auth = NatsAuth.from_settings(_Settings(nats_settings(pki)))
    nc = await nats.connect(secure_nats.url, error_cb=on_error, **auth.connect_options())
    try:
        await nc.publish(f"{PREFIX}.wf.1.collab", b"mine")
        await nc.publish("other.wf.1.collab", b"not mine")
        await nc.flush()
        with pytest.raises((nats.errors.Error, TimeoutError)):
            await nc.request("$JS.API.STREAM.INFO.OTHER_EVENTS", b"", timeout=1)
        await asyncio.sleep(0.2)
    finally:
        await nc.close()
    violations = [str(e) for e in errors if "permissions violation" in str(e).lower()]
    assert any("other.wf.1.collab" in v for v in violations), errors
    assert not any(f"{PREFIX}.wf.1.collab" in v for v in violations)


def test_permissions_cover_every_stream_and_bucket() -> None:
    """A bucket or stream added to Subjects is in the permission set (else a secured NATS
    refuses it): every ``*_bucket`` and ``*_stream`` name Subjects spells is granted."""
    subjects = Subjects(PREFIX)
    granted = frys_permissions(PREFIX)
    publish = set(granted["publish"]["allow"])
    names = [n for n in dir(Subjects) if n.endswith(("_bucket", "_stream"))]
    assert len(names) >= 6
    for name in names:
        value = getattr(subjects, name)
        stream = value if name.endswith("_stream") else f"KV_{value}"
        assert f"$JS.API.STREAM.INFO.{stream}" in publish, name
        if name.endswith("_bucket"):
            assert f"$KV.{value}.>" in publish, name
            assert stream in frys_streams(PREFIX)


class _Settings:
    def __init__(self, values: dict[str, str]):
        self.__dict__.update(values)


async def test_token_credential(pki: Pki) -> None:
    """A token-authorized NATS (``authorization { token }``): the backend helper connects
    with the token over TLS; a wrong token is refused."""
    server = NatsProcess(
        name=f"frys-token-{uuid.uuid4().hex[:6]}",
        tls=NatsTLS(str(pki.nats_server.cert_file), str(pki.nats_server.key_file)),
        authorization={"token": "a-long-random-token"},
    ).start()
    try:
        ca = str(pki.ca.cert_file)
        backend = await Backend.connect(
            server.url, prefix=PREFIX, token="a-long-random-token", tls_ca_file=ca
        )
        try:
            assert backend.nc.is_connected
            assert backend.nc.connected_url is not None
            assert backend.nc.connected_url.scheme == "tls"
        finally:
            await backend.close()
        wrong = NatsAuth(token="guessed", tls_ca_file=ca).connect_options()
        with pytest.raises((nats.errors.Error, OSError)):
            await nats.connect(server.url, allow_reconnect=False, connect_timeout=3, **wrong)
    finally:
        server.close()


def test_settings_are_checked_together(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(ConfigError) as bad:
        GatewayConfig(
            jwt_secret=SECRET,
            nats_user="gw",
            nats_token="t",
            nats_tls_cert_file=missing,
            tls_key_file=missing,
            tls_client_ca_file=missing,
        ).validate()
    text = str(bad.value)
    for expected in (
        "set one NATS credential, not nats_user and nats_token",
        "nats_user needs nats_password",
        "nats_tls_cert_file and nats_tls_key_file go together",
        "tls_cert_file and tls_key_file go together",
        "tls_client_ca_file needs tls_cert_file",
        "nats_tls_cert_file: no such file",
    ):
        assert expected in text
    with pytest.raises(RouterConfigError, match="nats_nkey_seed_file: no such file"):
        load_router_config(env={"FRYS_NATS_NKEY_SEED_FILE": missing})
    config = load_router_config(env={"FRYS_NATS_TOKEN": "t", "FRYS_NATS_TLS_CA_FILE": ""})
    assert NatsAuth.from_settings(config).connect_options() == {"token": "t"}
    assert GatewayConfig(tls_cert_file="c", port=8443).advertised_url == "wss://127.0.0.1:8443/ws"
    assert GatewayConfig(port=8080).advertised_url == "ws://127.0.0.1:8080/ws"


# --- end to end: wss gateway, router and backend on the secured NATS ----------------------------


async def test_end_to_end_over_tls_with_credentials(
    secure_nats: NatsProcess, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Gateway (password), router (nkey) and backend (password), each over TLS with a client
    certificate; a browser-like client over wss://. Events, control and HTTP publish flow,
    and NATS logs no permission violation for anything Frys did."""
    ca = str(pki.ca.cert_file)
    log_before = len(secure_nats.log_text())
    async with wss_gateway(
        monkeypatch,
        secure_nats.url,
        tls_cert_file=str(pki.nats_server.cert_file),
        tls_key_file=str(pki.nats_server.key_file),
        tls_client_ca_file=ca,
        **nats_settings(pki),
    ) as gw:
        assert gw.gateway.config.advertised_url.startswith("wss://")
        router = RouterService(
            RouterConfig(
                nats_url=secure_nats.url,
                subject_prefix=PREFIX,
                k8s="off",
                plan_interval_s=0.2,
                nats_nkey_seed_file=str(pki.router_seed),
                nats_tls_ca_file=ca,
                nats_tls_cert_file=str(pki.nats_client.cert_file),
                nats_tls_key_file=str(pki.nats_client.key_file),
            ).validate()
        )
        await asyncio.wait_for(router.start(), 15)
        backend = await Backend.connect(
            secure_nats.url,
            prefix=PREFIX,
            user="engine",
            password="engine-pass",
            tls_ca_file=ca,
            tls_cert_file=str(pki.nats_client.cert_file),
            tls_key_file=str(pki.nats_client.key_file),
        )
        client: Client | None = None
        try:

            async def on_command(command: Command) -> Any:
                return {"done": command.data["action"], "workflow": command.workflow}

            await backend.serve_control(on_command)
            client = await open_client(gw, pki)
            events = await client.subscribe("wf:7:events")
            seq = await backend.publish_event("7", {"step": "from-engine"})
            got = await events.next(5)
            assert got.data == {"step": "from-engine"} and got.seq == seq
            await client.publish("wf:7:events", {"step": "from-client"})
            assert (await events.next(5)).data == {"step": "from-client"}
            reply = await client.request("wf:7:control", {"action": "pause"})
            assert reply == {"done": "pause", "workflow": "7"}

            # POST /api/publish: a verified client certificate instead of the API key...
            body = {"channel": "wf:7:events", "data": {"step": "by-certificate"}}
            with_cert = pki.ca.client_context(pki.backend)
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{gw.https}/api/publish", json=body, ssl=with_cert) as r:
                    assert r.status == 200, await r.text()
                    assert (await r.json())["ok"] is True
                assert (await events.next(5)).data == {"step": "by-certificate"}
                # ...the API key still works without a certificate...
                plain = pki.ca.client_context()
                headers = {"Authorization": f"Bearer {API_KEY}"}
                body["data"] = {"step": "by-key"}
                async with http.post(
                    f"{gw.https}/api/publish", json=body, ssl=plain, headers=headers
                ) as r:
                    assert r.status == 200
                assert (await events.next(5)).data == {"step": "by-key"}
                # ...and neither is refused.
                async with http.post(f"{gw.https}/api/publish", json=body, ssl=plain) as r:
                    assert r.status == 401
                    assert "client certificate" in await r.text()

            # The router hears the gateway through the same NATS.
            deadline = time.monotonic() + 10
            while gw.gateway.config.gateway_id not in router.membership.health(time.monotonic()):
                assert time.monotonic() < deadline, "the router never heard the gateway"
                await asyncio.sleep(0.1)
        finally:
            if client is not None:
                await client.close()
            await backend.close()
            await router.stop()
    log = secure_nats.log_text()[log_before:]
    # Violations are logged as errors (test_a_frys_user_is_confined_to_its_prefix makes some).
    assert "Violation" not in log, [line for line in log.splitlines() if "Violation" in line]


async def test_a_client_certificate_from_another_ca_fails_the_handshake(
    secure_nats: NatsProcess, pki: Pki, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stranger = TestCA(tmp_path / "other", name="Other CA").issue("intruder", "x", server=False)
    async with wss_gateway(
        monkeypatch,
        secure_nats.url,
        tls_cert_file=str(pki.nats_server.cert_file),
        tls_key_file=str(pki.nats_server.key_file),
        tls_client_ca_file=str(pki.ca.cert_file),
        **nats_settings(pki),
    ) as gw:
        context = pki.ca.client_context()
        context.load_cert_chain(stranger.cert_file, stranger.key_file)
        body = {"channel": "wf:1:events", "data": 1}
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.ClientError):
                async with http.post(f"{gw.https}/api/publish", json=body, ssl=context) as r:
                    await r.read()


def test_server_context_policy(pki: Pki) -> None:
    """TLS 1.2 at least, Python's server defaults, client certificates asked for (not
    required) only with a client CA, and a pair that does not load kept out."""
    cert, key = str(pki.nats_server.cert_file), str(pki.nats_server.key_file)
    plain = ServerTLS(cert, key)
    assert plain.context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert plain.context.verify_mode == ssl.CERT_NONE
    assert plain.context.options & ssl.OP_NO_COMPRESSION
    mutual = ServerTLS(cert, key, str(pki.ca.cert_file))
    assert mutual.context.verify_mode == ssl.CERT_OPTIONAL
    assert not mutual.reload()  # nothing changed


# --- certificate rotation ---------------------------------------------------------------------


async def test_certificate_rotation_on_disk(
    secure_nats: NatsProcess, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The files are replaced (as cert-manager and the kubelet do): new connections get the
    new certificate within a poll, the connection opened before keeps its own and works."""
    first = pki.ca.issue("gateway-rotating", "gateway", server=True)
    async with wss_gateway(
        monkeypatch,
        secure_nats.url,
        tls_cert_file=str(first.cert_file),
        tls_key_file=str(first.key_file),
        tls_reload_s=0.1,
        **nats_settings(pki),
    ) as gw:
        old = await open_client(gw, pki)
        try:
            assert client_peer_serial(old) == first.serial
            assert await served_serial(gw.port, pki.ca) == first.serial
            events = await old.subscribe("wf:9:events")

            second = pki.ca.issue("gateway-rotating", "gateway", server=True)
            assert second.serial != first.serial
            deadline = time.monotonic() + 5
            while await served_serial(gw.port, pki.ca) != second.serial:
                assert time.monotonic() < deadline, "the new certificate was never served"
                await asyncio.sleep(0.05)

            # The connection made before the rotation goes on, with its certificate.
            assert client_peer_serial(old) == first.serial
            await old.publish("wf:9:events", {"after": "rotation"})
            assert (await events.next(5)).data == {"after": "rotation"}
            # And a new SDK connection works with the new one.
            new = await open_client(gw, pki)
            try:
                assert client_peer_serial(new) == second.serial
                await new.publish("wf:9:events", {"from": "new"})
                assert (await events.next(5)).data == {"from": "new"}
            finally:
                await new.close()
        finally:
            await old.close()


async def test_creds_file_in_operator_mode(
    pki: Pki, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """NATS in operator mode (JWT accounts): gateway and backend authenticate with ``.creds``
    files whose user JWTs carry the Frys permissions, over TLS."""
    operator = Operator()
    server = NatsProcess(
        name=f"frys-op-{uuid.uuid4().hex[:6]}",
        tls=NatsTLS(str(pki.nats_server.cert_file), str(pki.nats_server.key_file)),
        # A user JWT carrying the Frys permissions is some 5 KB, over the 4 KB default for
        # a CONNECT line (docs/deploy.md says so too).
        settings={**operator.server_config(), "max_control_line": 16384},
    ).start()
    try:
        permissions = frys_permissions(PREFIX)
        gateway_creds = operator.creds(tmp_path / "gateway.creds", "gateway", permissions)
        engine_creds = operator.creds(tmp_path / "engine.creds", "engine", permissions)
        ca = str(pki.ca.cert_file)
        async with wss_gateway(
            monkeypatch,
            server.url,
            tls_cert_file=str(pki.nats_server.cert_file),
            tls_key_file=str(pki.nats_server.key_file),
            nats_creds_file=str(gateway_creds),
            nats_tls_ca_file=ca,
        ) as gw:
            backend = await Backend.connect(
                server.url, prefix=PREFIX, creds_file=str(engine_creds), tls_ca_file=ca
            )
            client = await open_client(gw, pki)
            try:
                events = await client.subscribe("wf:3:events")
                await backend.publish_event("3", {"signed": "by-jwt"})
                assert (await events.next(5)).data == {"signed": "by-jwt"}
            finally:
                await client.close()
                await backend.close()
        # A user the account never signed is refused.
        stranger = Operator().creds(tmp_path / "stranger.creds", "x", permissions)
        refused = NatsAuth(creds_file=str(stranger), tls_ca_file=ca).connect_options()
        with pytest.raises((nats.errors.Error, OSError)):
            await nats.connect(server.url, allow_reconnect=False, connect_timeout=3, **refused)
        assert "Violation" not in server.log_text()
    finally:
        server.close()
