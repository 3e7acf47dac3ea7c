"""Presence: who is connected to each workflow, with join and leave notices.

A session is a member of workflow W while it is subscribed to any ``wf:W:*`` channel.
Each gateway stores its members of W under the KV key ``{W}.{gateway}`` (a bucket with a
TTL, refreshed while the gateway lives) and publishes ``join``/``leave`` notices on W's
presence subject. When a gateway dies its keys expire, and every gateway that serves W's
presence channel notices the missing heartbeats (see :mod:`frys.gateway.peers`) and tells
its own subscribers that the dead gateway's members left, within ``presence_ttl_s``: no
ghosts, and no duplicate notices, since each gateway only informs its local subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgpack

from frys.shared.protocol import frames as f
from frys.shared.protocol.channels import Channel, ChannelKind, parse_channel, workflow_channel
from frys.shared.protocol.codec import pack_data
from frys.shared.protocol.errors import ChannelError, ErrorCode
from frys.shared.protocol.grants import Right

if TYPE_CHECKING:
    from frys.gateway.bus import Bus
    from frys.gateway.config import GatewayConfig
    from frys.gateway.hub import Fanout, Hub
    from frys.gateway.session import Session

log = logging.getLogger("frys.gateway.presence")


def member_of(session: Session, gateway_id: str) -> dict[str, Any]:
    assert session.identity is not None
    return {
        "sid": session.sid,
        "sub": session.identity.sub,
        "kind": session.identity.kind,
        "name": session.name,
        "caps": list(session.caps),
        "gw": gateway_id,
    }


class Presence:
    def __init__(self, config: GatewayConfig, bus: Bus, hub: Hub):
        self.config = config
        self.bus = bus
        self.hub = hub
        self.gateway_id = config.gateway_id
        self.local: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        """workflow → sid → member, for this gateway's sessions."""
        self._refs: dict[tuple[str, str], int] = defaultdict(int)
        self._dirty: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # --- membership of local sessions --------------------------------------------------
    async def joined(self, session: Session, channel: Channel) -> None:
        wf = channel.workflow
        assert wf is not None
        key = (wf, session.sid)
        self._refs[key] += 1
        if self._refs[key] > 1:
            return
        member = member_of(session, self.gateway_id)
        self.local[wf][session.sid] = member
        self._mark(wf)
        await self._notice(wf, {"type": "join", "member": member})

    async def left(self, session: Session, channel: Channel) -> None:
        wf = channel.workflow
        assert wf is not None
        key = (wf, session.sid)
        if key not in self._refs:
            return
        self._refs[key] -= 1
        if self._refs[key] > 0:
            return
        del self._refs[key]
        member = self.local[wf].pop(session.sid, None)
        if not self.local[wf]:
            del self.local[wf]
        self._mark(wf)
        if member is not None:
            await self._notice(wf, {"type": "leave", "member": member, "reason": "left"})

    async def _notice(self, wf: str, notice: dict[str, Any]) -> None:
        if not self.bus.ready:
            return
        channel = workflow_channel(wf, ChannelKind.PRESENCE)
        with contextlib.suppress(Exception):
            await self.bus.publish(self.bus.subjects.channel(channel), pack_data(notice))

    def _mark(self, wf: str) -> None:
        self._dirty.add(wf)
        self._wake.set()

    # --- KV records ----------------------------------------------------------------------
    def start(self) -> None:
        self.started_at = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._keeper())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # Remove our records so members disappear at once on a clean shutdown.
        kv = self.bus.kv_presence
        if kv is not None and self.bus.ready:
            for wf in list(self.local):
                with contextlib.suppress(Exception):
                    await kv.delete(self._key(wf))

    def _key(self, wf: str) -> str:
        return f"{wf}.{self.gateway_id}"

    async def _keeper(self) -> None:
        """Write changed records promptly and refresh all of them before the TTL ends."""
        refresh_s = self.config.presence_ttl_s / 3
        last_refresh = time.monotonic()
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), refresh_s)
            self._wake.clear()
            await asyncio.sleep(0.05)  # gather a burst of joins into one write
            now = time.monotonic()
            if now - last_refresh >= refresh_s:
                self._dirty.update(self.local)
                last_refresh = now
                self.sweep()
            dirty, self._dirty = self._dirty, set()
            kv = self.bus.kv_presence
            if kv is None or not self.bus.ready:
                self._dirty |= dirty
                continue
            for wf in dirty:
                members = list(self.local.get(wf, {}).values())
                try:
                    if members:
                        await kv.put(self._key(wf), msgpack.packb(members, use_bin_type=True))
                    else:
                        await kv.delete(self._key(wf))
                except Exception as exc:
                    log.debug("presence record for %s not written: %s", wf, exc)
                    self._dirty.add(wf)

    async def members(self, wf: str) -> list[dict[str, Any]]:
        """Every member of ``wf`` across all live gateways (from the KV records)."""
        kv = self.bus.kv_presence
        if kv is None:
            return list(self.local.get(wf, {}).values())
        out: dict[str, dict[str, Any]] = {}
        try:
            keys = await kv.keys(filters=[f"{wf}.*"])
        except Exception:
            keys = []
        for key in keys:
            with contextlib.suppress(Exception):
                entry = await kv.get(key)
                if entry.value:
                    for member in msgpack.unpackb(entry.value, raw=False):
                        if isinstance(member, dict) and isinstance(member.get("sid"), str):
                            if self._known_dead(str(member.get("gw"))):
                                continue  # its record outlives it by at most the TTL
                            out[member["sid"]] = member
        for sid, member in self.local.get(wf, {}).items():
            out[sid] = member
        return sorted(out.values(), key=lambda m: str(m.get("sid")))

    async def query(self, session: Session, frame: f.PresenceQuery) -> None:
        try:
            channel = parse_channel(frame.ch)
        except ChannelError as exc:
            session.error(ErrorCode.INVALID_CHANNEL, str(exc), frame.id)
            return
        if channel.kind is not ChannelKind.PRESENCE:
            session.error(
                ErrorCode.NOT_ALLOWED, "presence is queried on wf:{id}:presence", frame.id
            )
            return
        assert session.identity is not None
        if not session.identity.grants.allows(channel, Right.SUBSCRIBE):
            session.error(ErrorCode.FORBIDDEN, f"no subscribe right on {channel}", frame.id)
            return
        assert channel.workflow is not None
        members = await self.members(channel.workflow)
        session.send(f.Ack(id=frame.id, members=tuple(members)))

    # --- dead gateways -----------------------------------------------------------------
    alive: Callable[[str], bool] | None = None
    """Set by the gateway: whether a gateway id is this one or a peer heard recently."""
    started_at: float = 0.0

    def _known_dead(self, gateway_id: str) -> bool:
        listening = time.monotonic() - self.started_at >= self.config.presence_ttl_s
        return listening and self.alive is not None and not self.alive(gateway_id)

    def sweep(self) -> None:
        """Members of gateways not heard from (they died before this gateway met them)
        leave once this gateway has listened to heartbeats for a whole TTL."""
        if self.alive is None or time.monotonic() - self.started_at < self.config.presence_ttl_s:
            return
        alive = self.alive
        for fan in list(self.hub.fanouts.values()):
            if fan.kind is not ChannelKind.PRESENCE:
                continue
            for member in list(fan.members.values()):
                gw = str(member.get("gw"))
                if not alive(gw):
                    fan.inject(pack_data({"type": "leave", "member": member, "reason": "timeout"}))

    def gateway_lost(self, gateway_id: str, fanouts: list[Fanout]) -> None:
        """Tell local presence subscribers that a dead gateway's members left."""
        for fan in fanouts:
            if fan.kind is not ChannelKind.PRESENCE:
                continue
            for member in fan.presence_members_of(gateway_id):
                fan.inject(pack_data({"type": "leave", "member": member, "reason": "timeout"}))
