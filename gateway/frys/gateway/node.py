"""The gateway's composition root: builds the parts, owns the sessions and the lifecycle.

Lifecycle: ``start`` connects to NATS (retrying; ``/readyz`` stays false meanwhile),
``drain`` stops accepting, asks every client to reconnect elsewhere with close code 1012
and a spread-out delay, waits for in-flight acks, then ``stop`` releases everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import secrets
import time
from typing import Any

from nats.aio.msg import Msg

from frys.gateway.auth import ResumeTokens, TokenVerifier
from frys.gateway.broker import History
from frys.gateway.bus import Bus, JetStreamRefused
from frys.gateway.config import GatewayConfig
from frys.gateway.control import Control
from frys.gateway.core import CoreLimits
from frys.gateway.hub import Hub
from frys.gateway.jwks import RemoteKeySet
from frys.gateway.listener import Admission, Guard
from frys.gateway.metrics import Metrics
from frys.gateway.optimise import build_optimiser, optimiser_metrics, optimiser_report
from frys.gateway.peers import Peers
from frys.gateway.placement import GatewayPlacement
from frys.gateway.presence import Presence
from frys.gateway.publisher import Publisher
from frys.gateway.session import Services, Session
from frys.gateway.telemetry import GatewayTelemetry
from frys.gateway.tensors import RelayLimits, TensorPublishers
from frys.shared import telemetry as otel
from frys.shared.protocol.codec import unpack_data
from frys.shared.protocol.errors import CloseCode

log = logging.getLogger("frys.gateway")


class Phase(enum.Enum):
    STARTING = "starting"
    SERVING = "serving"
    DRAINING = "draining"
    STOPPED = "stopped"


class Gateway:
    """Builds every part and hands each the few others it uses; owns the sessions."""

    def __init__(self, config: GatewayConfig, telemetry: otel.Telemetry | None = None):
        self._config = config
        self.subjects = config.subjects
        self.metrics = Metrics()
        self.bus = Bus(config)
        self.sessions: set[Session] = set()
        self.phase = Phase.STARTING
        self.started_at = time.monotonic()
        self.started = asyncio.Event()
        self.failed = asyncio.Event()
        """Set when start-up failed for good; :attr:`failure` says why."""
        self.failure: BaseException | None = None
        self.telemetry = GatewayTelemetry(
            config.gateway_id,
            self.metrics,
            telemetry or otel.telemetry_from_env("frys-gateway"),
            ready=lambda: self.ready,
            nats_reconnects=lambda: self.bus.reconnects,
            tensor_totals=lambda: self.hub.tensor_totals(),
        )
        self.history = History(self.bus, self.subjects)
        self.hub = Hub(
            self.bus,
            self.history,
            self.metrics,
            self.telemetry,
            RelayLimits(
                max_streams_per_channel=config.relay_max_streams_per_channel,
                memory_bytes=config.relay_memory_bytes,
                idle_s=config.relay_idle_s,
            ),
        )
        self._sweeper: asyncio.Task[None] | None = None
        self.optimiser = build_optimiser(config, self.bus)
        """The protocol optimiser of small messages (``None`` when turned off)."""
        self.hub.optimiser = self.optimiser
        self.verifier = TokenVerifier(config)
        self.jwks = RemoteKeySet.from_config(config, self.verifier)
        """The identity provider's keys (``jwt_jwks_url``), kept current in the background."""
        secret = (config.resume_secret or config.jwt_secret or secrets.token_hex(16)).encode()
        self.resume_tokens = ResumeTokens(secret)
        self.control = Control(config, self.bus, self.telemetry)
        self.peers = Peers(config, self.bus, lambda: (len(self.sessions), self.draining))
        self.presence = Presence(
            config,
            self.bus,
            self.hub,
            alive=lambda gw: gw == config.gateway_id or gw in self.peers.peers,
        )
        self.peers.on_lost.append(self.presence.gateway_lost)
        self.placement = GatewayPlacement(config, self.bus, self.peers, lambda: self.sessions)
        self.publisher = Publisher(
            self.bus,
            self.subjects,
            self.metrics,
            self.telemetry,
            self.placement.on_publish,
            ack_timeout_s=config.publish_ack_timeout_s,
        )
        self.guard = Guard(
            Admission(
                max_connections=config.max_connections,
                max_connections_per_ip=config.max_connections_per_ip,
                handshake_timeout_s=config.handshake_timeout_s,
            )
        )
        """Connection admission and the handshake deadline, ahead of aiohttp."""
        self.tensor_publishers = TensorPublishers()
        """Local sessions publishing each (channel, tensor stream): keyframe requests go to them."""
        self.services = Services(
            limits=CoreLimits(
                gateway_id=config.gateway_id,
                max_frame_bytes=config.max_frame_bytes,
                queue_bytes=config.queue_bytes,
                max_subscriptions=config.max_subscriptions,
                publish_rate_per_s=config.publish_rate_per_s,
                publish_burst=config.publish_burst,
                ping_interval_s=config.ping_interval_s,
                request_timeout_ms=config.request_timeout_ms,
                max_request_timeout_ms=config.max_request_timeout_ms,
                max_invalid_frames=config.max_invalid_frames,
                jwt_leeway_s=config.jwt_leeway_s,
                max_tensor_streams=config.max_tensor_streams_per_session,
            ),
            verify=self.verifier.verify,
            resume=self.resume_tokens,
            metrics=self.metrics,
            hub=self.hub,
            history=self.history,
            publisher=self.publisher,
            control=self.control,
            presence=self.presence,
            placement=self.placement,
            tensor_publishers=self.tensor_publishers,
            connect_timeout_s=config.connect_timeout_s,
            on_closed=self.on_closed,
        )

    @property
    def config(self) -> GatewayConfig:
        return self._config

    @config.setter
    def config(self, config: GatewayConfig) -> None:
        """Known once listening (a port chosen by the system): the parts that announce
        this gateway's address learn it too."""
        self._config = config
        self.peers.config = config
        self.placement.config = config

    @property
    def draining(self) -> bool:
        return self.phase in (Phase.DRAINING, Phase.STOPPED)

    @property
    def accepting(self) -> bool:
        return self.phase is Phase.SERVING

    @property
    def ready(self) -> bool:
        return self.phase is Phase.SERVING and self.bus.ready

    @property
    def not_ready_reason(self) -> str:
        """Why ``/readyz`` is 503, in words an operator can act on (empty when ready)."""
        if self.draining:
            return "draining"
        if self.failure is not None:
            return str(self.failure)
        if self.bus.problem:
            return self.bus.problem
        if not self.bus.ready:
            return "nats: disconnected" if self.phase is Phase.SERVING else "starting"
        return "" if self.phase is Phase.SERVING else "starting"

    def optimiser_report(self) -> dict[str, Any]:
        """``GET /optimiser``: the optimiser's decisions here, and the evidence."""
        return optimiser_report(
            self.optimiser, [s.writer for s in self.sessions], self.hub, self.config.gateway_id
        )

    def optimiser_metrics(self) -> str:
        """The optimiser's figures for ``/metrics`` (Prometheus text)."""
        return optimiser_metrics(self.optimiser)

    async def start(self) -> None:
        """Connect and serve. A failure that retrying cannot cure (JetStream refusing the
        streams) is logged once, without a traceback, and sets :attr:`failed`."""
        try:
            await self._start()
        except asyncio.CancelledError:
            raise
        except JetStreamRefused as exc:
            self.failure = exc
            self.failed.set()
            raise
        except Exception as exc:
            log.exception("gateway %s failed to start", self.config.gateway_id)
            self.failure = exc
            self.failed.set()
            raise

    async def _start(self) -> None:
        if self.jwks is not None:
            await self.jwks.start()
        await self.bus.connect()
        self.presence.start()
        await self.peers.start()
        await self.bus.subscribe(self.subjects.keyframe_requests_all, self._on_keyframe_request)
        await self.history.watch(self.hub.epoch_seen)
        if self.optimiser is not None:
            await self.optimiser.start()
        await self.placement.start()
        self._sweeper = asyncio.get_running_loop().create_task(self.hub.sweep())
        self.phase = Phase.SERVING
        self.started.set()
        log.info("gateway %s serving at %s", self.config.gateway_id, self.config.advertised_url)

    # --- session registry ----------------------------------------------------------------
    def on_open(self, session: Session) -> None:
        self.sessions.add(session)
        self.metrics.connections = len(self.sessions)
        self.metrics.connections_total += 1

    def on_closed(self, session: Session) -> None:
        self.sessions.discard(session)
        self.metrics.connections = len(self.sessions)

    async def _on_keyframe_request(self, msg: Msg) -> None:
        try:
            channel = self.subjects.channel_of_keyframe_request(msg.subject)
            wanted = unpack_data(msg.data).get("stream")
        except Exception:
            return
        for session, stream in self.tensor_publishers.asked(channel, wanted):
            session.keyframe_wanted(channel, stream)

    # --- shutdown ------------------------------------------------------------------------
    async def drain(self) -> None:
        """Stop accepting, send clients elsewhere (1012, spread), finish in-flight acks."""
        if self.phase is not Phase.SERVING and self.phase is not Phase.STARTING:
            return
        self.phase = Phase.DRAINING
        deadline = time.monotonic() + self.config.drain_s
        spread = self.config.reconnect_spread_ms
        for session in list(self.sessions):
            delay_ms = random.randint(0, spread) if spread else 0
            session.close_soon(CloseCode.SERVICE_RESTART, f"delay_ms={delay_ms}")
        while (self.sessions or self.publisher.in_flight) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if self.sessions:
            log.warning("drain time over with %d sessions open", len(self.sessions))

    async def stop(self) -> None:
        """Drain, then release everything; each step is bounded so the process exits."""
        await self.drain()
        self.phase = Phase.STOPPED
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.jwks is not None:
            with contextlib.suppress(Exception):
                await self.jwks.close()
        for step in (
            self.placement.stop(),
            self.peers.stop(),
            self.presence.stop(),
            self.hub.close(),
        ):
            try:
                await asyncio.wait_for(step, 3.0)
            except Exception as exc:
                log.warning("shutdown step did not finish: %s", exc or type(exc).__name__)
        if self.optimiser is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.optimiser.close(), 3.0)
        with contextlib.suppress(Exception):
            await self.bus.close()
        self.telemetry.tel.shutdown()
