"""Control commands: ``request`` → the workflow engine over NATS → ``reply``.

The gateway forwards a command with its id (``Frys-Cid``) and its sender (``Frys-From``,
the token's ``sub``) to the workflow's control subject and relays the engine's answer.
At-most-once execution is enforced where commands execute, by the backend helper
(:mod:`frys.client.backend`), which records each outcome under the workflow, the sender and
the command id in a KV bucket; a retried id gets the recorded outcome, and ``outcome`` reads
it back after a reconnect, for the asking session's own ``sub`` only.
"""

from __future__ import annotations

import uuid

import nats.errors

from frys.gateway.bus import Bus
from frys.gateway.config import GatewayConfig
from frys.gateway.telemetry import GatewayTelemetry
from frys.shared.protocol import frames as f
from frys.shared.protocol import headers as hdr
from frys.shared.protocol.channels import Channel
from frys.shared.protocol.codec import pack_data
from frys.shared.protocol.control import command_key, parse_outcome, record_location
from frys.shared.protocol.errors import ErrorCode


def _error(code: ErrorCode, reason: str, ref: int) -> f.Error:
    return f.Error(code=int(code), reason=reason, ref=ref)


class Control:
    """Forwards commands and reads outcomes; answers with the frame to send."""

    def __init__(self, config: GatewayConfig, bus: Bus, telemetry: GatewayTelemetry):
        self.config = config
        self.bus = bus
        self.telemetry = telemetry

    async def request(
        self, channel: Channel, frame: f.Request, headers: dict[str, str], sid: str
    ) -> f.Frame:
        cfg = self.config
        cid = frame.cid or uuid.uuid4().hex
        headers[hdr.CID] = cid
        timeout_ms = min(frame.timeout_ms or cfg.request_timeout_ms, cfg.max_request_timeout_ms)
        subject = self.bus.subjects.channel(channel)
        tel = self.telemetry
        span = (
            tel.client_span(
                f"request {channel.kind.value}",
                frame.tc,
                headers,
                {
                    "frys.channel": channel.name,
                    "frys.cid": cid,
                    "frys.session": sid,
                    "rpc.system": "frys",
                    "rpc.service": "frys.control",
                    "rpc.method": "request",
                    "messaging.system": "nats",
                    "messaging.destination.name": subject,
                    "messaging.operation.type": "send",
                    "messaging.operation.name": "request",
                    "messaging.message.conversation_id": cid,
                },
            )
            if tel.tracing
            else None
        )
        try:
            msg = await self.bus.request(subject, pack_data(frame.data), timeout_ms / 1000, headers)
        except nats.errors.NoRespondersError:
            return _error(ErrorCode.UNAVAILABLE, "no engine serves this workflow", frame.id)
        except (TimeoutError, nats.errors.TimeoutError):
            return _error(ErrorCode.TIMEOUT, f"no reply within {timeout_ms} ms", frame.id)
        except nats.errors.Error as exc:
            return _error(ErrorCode.UNAVAILABLE, f"broker error: {type(exc).__name__}", frame.id)
        finally:
            if span is not None:
                span.end()
        return f.Reply(id=frame.id, cid=cid, data=f.Raw(msg.data))

    async def outcome(self, channel: Channel, frame: f.Outcome, sender: str) -> f.Frame:
        """The recorded outcome of command ``cid`` sent by ``sender`` (the session's
        ``sub``) as ``ack.data``, or 404 if none yet. Another user's command of the same id
        is another record: never shown here."""
        key = command_key(channel.id, sender, frame.cid)
        raw = None
        if key is not None:
            # Read from the bucket's leader: a replica may not have the outcome yet that
            # the engine has just recorded (and a retry has just been answered from).
            stream, subject = record_location(self.bus.subjects.control_bucket, key)
            try:
                raw = await self.bus.js.get_last_msg(stream, subject)
            except Exception:
                raw = None
        deleted = raw is not None and (raw.headers or {}).get("KV-Operation") in ("DEL", "PURGE")
        outcome = parse_outcome(raw.data) if raw is not None and raw.data and not deleted else None
        if outcome is None or outcome.pending:
            return _error(ErrorCode.NOT_FOUND, "no recorded outcome for this command", frame.id)
        return f.Ack(id=frame.id, data=f.Raw(outcome.packed_reply))
