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
from collections import defaultdict
from typing import TYPE_CHECKING

from nats.aio.msg import Msg

from frys.gateway.auth import ResumeTokens, TokenVerifier
from frys.gateway.bus import Bus
from frys.gateway.config import GatewayConfig
from frys.gateway.control import Control
from frys.gateway.hub import Hub
from frys.gateway.metrics import Metrics
from frys.gateway.peers import Peers
from frys.gateway.placement import GatewayPlacement
from frys.gateway.presence import Presence
from frys.gateway.telemetry import GatewayTelemetry
from frys.shared import telemetry as otel
from frys.shared.protocol.channels import Channel
from frys.shared.protocol.codec import unpack_data
from frys.shared.protocol.errors import CloseCode
from frys.shared.protocol.frames import KeyframeWanted

if TYPE_CHECKING:
    from frys.gateway.session import Session

log = logging.getLogger("frys.gateway")


class Phase(enum.Enum):
    STARTING = "starting"
    SERVING = "serving"
    DRAINING = "draining"
    STOPPED = "stopped"


class Gateway:
    def __init__(self, config: GatewayConfig, telemetry: otel.Telemetry | None = None):
        self.config = config
        self.subjects = config.subjects
        self.metrics = Metrics()
        self.bus = Bus(config)
        self.hub = Hub(self.bus, self.metrics)
        self.verifier = TokenVerifier(config)
        secret = (config.resume_secret or config.jwt_secret or secrets.token_hex(16)).encode()
        self.resume_tokens = ResumeTokens(secret)
        self.control = Control(config, self.bus)
        self.presence = Presence(config, self.bus, self.hub)
        self.hub.presence_members = self.presence.members
        self.peers = Peers(self)
        self.placement = GatewayPlacement(
            self, config.interaction_report_s, config.migrate_rate_per_s
        )
        self.peers.on_lost.append(self._gateway_lost)
        self.presence.alive = lambda gw: gw == config.gateway_id or gw in self.peers.peers
        self.sessions: set[Session] = set()
        self.tensor_publishers: defaultdict[tuple[Channel, int], set[Session]] = defaultdict(set)
        """Local sessions publishing each (channel, tensor stream): keyframe requests go to them."""
        self.phase = Phase.STARTING
        self.pending_acks = 0
        self.started_at = time.monotonic()
        self.started = asyncio.Event()
        self.publish_count = 0
        self.telemetry = GatewayTelemetry(
            self, telemetry or otel.telemetry_from_env("frys-gateway")
        )
        self.hub.telemetry = self.telemetry
        self.interaction_hooks: list[object] = []

    @property
    def draining(self) -> bool:
        return self.phase in (Phase.DRAINING, Phase.STOPPED)

    @property
    def accepting(self) -> bool:
        return self.phase is Phase.SERVING

    @property
    def ready(self) -> bool:
        return self.phase is Phase.SERVING and self.bus.ready

    async def start(self) -> None:
        try:
            await self._start()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("gateway %s failed to start", self.config.gateway_id)
            raise

    async def _start(self) -> None:
        await self.bus.connect()
        self.presence.start()
        await self.peers.start()
        await self.bus.subscribe(self.subjects.keyframe_requests_all, self._on_keyframe_request)
        await self.placement.start()
        self.phase = Phase.SERVING
        self.started.set()
        log.info("gateway %s serving at %s", self.config.gateway_id, self.config.advertised_url)

    # --- session registry ----------------------------------------------------------------
    def on_open(self, session: Session) -> None:
        self.sessions.add(session)
        self.metrics.connections = len(self.sessions)
        self.metrics.connections_total += 1

    def on_connected(self, session: Session) -> None:
        self.placement.on_connected(session)

    def on_publish(self, session: Session, channel: Channel) -> None:
        self.placement.on_publish(session, channel)

    def on_closed(self, session: Session) -> None:
        self.sessions.discard(session)
        self.metrics.connections = len(self.sessions)

    async def _on_keyframe_request(self, msg: Msg) -> None:
        try:
            channel = self.subjects.channel_of_keyframe_request(msg.subject)
            wanted = unpack_data(msg.data).get("stream")
        except Exception:
            return
        for (ch, stream), sessions in list(self.tensor_publishers.items()):
            if ch == channel and (wanted is None or wanted == stream):
                for session in list(sessions):
                    session.send(KeyframeWanted(ch=channel.name, stream=stream))

    def _gateway_lost(self, gateway_id: str) -> None:
        self.presence.gateway_lost(gateway_id, list(self.hub.fanouts.values()))

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
        while (self.sessions or self.pending_acks) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        if self.sessions:
            log.warning("drain time over with %d sessions open", len(self.sessions))

    async def stop(self) -> None:
        """Drain, then release everything; each step is bounded so the process exits."""
        await self.drain()
        self.phase = Phase.STOPPED
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
        with contextlib.suppress(Exception):
            await self.bus.close()
        self.telemetry.tel.shutdown()
