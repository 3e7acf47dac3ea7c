"""Control commands: ``request`` → the workflow engine over NATS → ``reply``.

The gateway forwards a command with its id (``Frys-Cid``) to the workflow's control subject
and relays the engine's answer. At-most-once execution is enforced where commands execute,
by the backend helper (:mod:`frys.client.backend`), which records each outcome under its
command id in a KV bucket; a retried id gets the recorded outcome, and ``outcome`` reads it
back after a reconnect.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import nats.errors

from frys.shared.protocol import frames as f
from frys.shared.protocol import headers as hdr
from frys.shared.protocol.channels import Channel, ChannelKind, parse_channel
from frys.shared.protocol.codec import pack_data
from frys.shared.protocol.control import outcome_key, parse_outcome
from frys.shared.protocol.errors import ChannelError, ErrorCode
from frys.shared.protocol.grants import Right

if TYPE_CHECKING:
    from frys.gateway.bus import Bus
    from frys.gateway.config import GatewayConfig
    from frys.gateway.session import Session


class Control:
    def __init__(self, config: GatewayConfig, bus: Bus):
        self.config = config
        self.bus = bus

    async def request(
        self, session: Session, channel: Channel, frame: f.Request, headers: dict[str, str]
    ) -> None:
        cfg = self.config
        cid = frame.cid or uuid.uuid4().hex
        headers[hdr.CID] = cid
        timeout_ms = min(frame.timeout_ms or cfg.request_timeout_ms, cfg.max_request_timeout_ms)
        subject = self.bus.subjects.channel(channel)
        tel = session.gw.telemetry
        span = (
            tel.client_span(
                f"request {channel.kind.value}",
                frame.tc,
                headers,
                {"frys.channel": channel.name, "frys.cid": cid, "frys.session": session.sid},
            )
            if tel.tracing
            else None
        )
        try:
            msg = await self.bus.request(subject, pack_data(frame.data), timeout_ms / 1000, headers)
        except nats.errors.NoRespondersError:
            session.error(ErrorCode.UNAVAILABLE, "no engine serves this workflow", frame.id)
            return
        except (TimeoutError, nats.errors.TimeoutError):
            session.error(ErrorCode.TIMEOUT, f"no reply within {timeout_ms} ms", frame.id)
            return
        except nats.errors.Error as exc:
            session.error(ErrorCode.UNAVAILABLE, f"broker error: {type(exc).__name__}", frame.id)
            return
        finally:
            if span is not None:
                span.end()
        session.send(f.Reply(id=frame.id, cid=cid, data=f.Raw(msg.data)))

    async def outcome(self, session: Session, frame: f.Outcome) -> None:
        """The recorded outcome of command ``cid`` (``ack.data``), or 404 if none yet."""
        try:
            channel = parse_channel(frame.ch)
        except ChannelError as exc:
            session.error(ErrorCode.INVALID_CHANNEL, str(exc), frame.id)
            return
        if channel.kind is not ChannelKind.CONTROL:
            session.error(ErrorCode.NOT_ALLOWED, "outcomes belong to wf:{id}:control", frame.id)
            return
        assert session.identity is not None
        if not session.identity.grants.allows(channel, Right.CONTROL):
            session.error(ErrorCode.FORBIDDEN, f"no control right on {channel}", frame.id)
            return
        kv = self.bus.kv_control
        key = outcome_key(channel.id, frame.cid)
        entry = None
        if kv is not None and key is not None:
            try:
                entry = await kv.get(key)
            except Exception:
                entry = None
        outcome = parse_outcome(entry.value) if entry is not None and entry.value else None
        if outcome is None or outcome.pending:
            session.error(ErrorCode.NOT_FOUND, "no recorded outcome for this command", frame.id)
            return
        session.send(f.Ack(id=frame.id, data=f.Raw(outcome.packed_reply)))
