"""Presence: who is connected to each workflow, with join and leave notices.

Everything about presence lives here: membership of this gateway's sessions, the KV records
other gateways read, the notices, and the member table each presence channel's subscribers
are served from.

- A session is a member of workflow W while it is subscribed to any ``wf:W:*`` channel.
  Each gateway stores its members of W under the KV key ``{W}.{gateway}`` (a bucket with a
  TTL, refreshed while the gateway lives) and publishes ``join``/``leave`` notices on W's
  presence subject.
- **Resume without flapping** (docs/protocol.md §5.3): a member whose connection ended
  without leaving (lost, drained, migrated, cut as a slow reader) stays for
  ``presence_resume_grace_s``; if its session comes back on this gateway meanwhile nothing
  is announced, and if it comes back on another gateway, that gateway's ``join`` is
  silenced by every member table that already lists the session, and this gateway's late
  ``leave`` is dropped because the table names the new gateway.
- **Dead gateways**: their keys expire, and every gateway serving W's presence channel
  notices the missing heartbeats (:mod:`frys.gateway.peers`) and tells its own subscribers
  that the dead gateway's members left, within ``presence_ttl_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import msgpack

from frys.gateway.auth import Identity
from frys.gateway.bus import Bus
from frys.gateway.config import GatewayConfig
from frys.gateway.hub import Hub
from frys.shared.protocol.channels import Channel, ChannelKind, workflow_channel
from frys.shared.protocol.codec import pack_data

log = logging.getLogger("frys.gateway.presence")

Member = dict[str, Any]

QUERY_TIMEOUT_S = 2.0


def member_record(
    sid: str, identity: Identity, name: str, caps: tuple[str, ...], gateway_id: str
) -> Member:
    return {
        "sid": sid,
        "sub": identity.sub,
        "kind": identity.kind,
        "name": name,
        "caps": list(caps),
        "gw": gateway_id,
    }


class Presence:
    def __init__(
        self,
        config: GatewayConfig,
        bus: Bus,
        hub: Hub,
        alive: Callable[[str], bool] | None = None,
    ):
        self.config = config
        self.bus = bus
        self.hub = hub
        self.gateway_id = config.gateway_id
        self.alive = alive
        """Whether a gateway id is this one or a peer heard recently."""
        self.local: dict[str, dict[str, Member]] = defaultdict(dict)
        """workflow → sid → member, for this gateway's sessions."""
        self.views: dict[str, dict[str, Member]] = {}
        """workflow → sid → member as this gateway's presence subscribers know them (for
        the presence channels with local subscribers)."""
        self._refs: dict[tuple[str, str], int] = defaultdict(int)
        self._leaving: dict[tuple[str, str], asyncio.TimerHandle] = {}
        """Members that disconnected and may still resume (see the module docstring)."""
        self._dirty: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self.started_at = 0.0
        hub.notice_filter = self._admit
        hub.presence_start = self._view_started

    # --- membership of local sessions --------------------------------------------------
    async def joined(self, member: Member, channel: Channel) -> None:
        wf = channel.workflow
        assert wf is not None
        sid = str(member["sid"])
        key = (wf, sid)
        self._refs[key] += 1
        if self._refs[key] > 1:
            return
        self.local[wf][sid] = member
        self._mark(wf)
        pending = self._leaving.pop(key, None)
        if pending is not None:
            pending.cancel()  # the session came back: nobody saw it leave
            return
        await self._notice(wf, {"type": "join", "member": member})

    async def left(self, sid: str, channel: Channel, final: bool = True) -> None:
        """``sid`` stopped using ``channel``. ``final`` when it left for good (unsubscribed,
        closed normally, refused); otherwise its leave waits for the resume grace."""
        wf = channel.workflow
        assert wf is not None
        key = (wf, sid)
        if key not in self._refs:
            return
        self._refs[key] -= 1
        if self._refs[key] > 0:
            return
        del self._refs[key]
        if not final:
            loop = asyncio.get_running_loop()
            self._leaving[key] = loop.call_later(
                self.config.presence_resume_grace_s, self._grace_over, key
            )
            return
        await self._leave(wf, sid)

    def _grace_over(self, key: tuple[str, str]) -> None:
        if self._leaving.pop(key, None) is None:
            return
        task = asyncio.get_running_loop().create_task(self._leave(*key))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _leave(self, wf: str, sid: str) -> None:
        members = self.local.get(wf)
        member = members.pop(sid, None) if members is not None else None
        if members is not None and not members:
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

    # --- member tables of presence channels -------------------------------------------
    async def _view_started(self, channel: Channel) -> None:
        """A presence channel got its first local subscriber: load who is there."""
        wf = channel.workflow
        assert wf is not None
        view = self.views.setdefault(wf, {})
        for member in await self.members(wf):
            view.setdefault(str(member.get("sid")), member)

    def _admit(self, channel: Channel, packed: bytes) -> bool:
        """Whether a notice reaches subscribers; keeps the member table current. A ``join``
        of a session already listed (it resumed elsewhere) and a ``leave`` from a gateway
        the session no longer uses are dropped."""
        wf = channel.workflow
        if wf is None:
            return True
        try:
            notice = msgpack.unpackb(packed, raw=False)
            member = notice["member"]
            sid, gw = str(member["sid"]), member.get("gw")
            kind = notice["type"]
        except Exception:
            return True
        view = self.views.setdefault(wf, {})
        known = view.get(sid)
        if kind == "join":
            view[sid] = member
            return known is None
        if kind == "leave":
            if known is not None and known.get("gw") != gw:
                return False
            view.pop(sid, None)
        return True

    # --- KV records ----------------------------------------------------------------------
    def start(self) -> None:
        self.started_at = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._keeper())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for handle in self._leaving.values():
            handle.cancel()
        self._leaving.clear()
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

    async def _records(self, wf: str) -> list[bytes]:
        """The KV records of ``wf`` from every gateway: a watch on ``{wf}.*`` that ends with
        the initial values (a key listing with filters is unreliable across client
        versions)."""
        kv = self.bus.kv_presence
        if kv is None:
            return []
        watcher = await kv.watch(f"{wf}.*", ignore_deletes=True)
        values: list[bytes] = []
        try:
            while True:
                entry = await watcher.updates(timeout=QUERY_TIMEOUT_S)  # type: ignore[no-untyped-call]
                if entry is None:
                    break
                if entry.value:
                    values.append(entry.value)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
        return values

    async def members(self, wf: str) -> list[Member]:
        """Every member of ``wf`` across all live gateways (from the KV records)."""
        out: dict[str, Member] = {}
        try:
            records = await self._records(wf)
        except Exception as exc:
            log.warning("presence records of %s unreadable: %s", wf, exc)
            records = []
        for value in records:
            with contextlib.suppress(Exception):
                for member in msgpack.unpackb(value, raw=False):
                    if isinstance(member, dict) and isinstance(member.get("sid"), str):
                        if self._known_dead(str(member.get("gw"))):
                            continue  # its record outlives it by at most the TTL
                        out[member["sid"]] = member
        for sid, member in self.local.get(wf, {}).items():
            out[sid] = member
        return sorted(out.values(), key=lambda m: str(m.get("sid")))

    # --- dead gateways -----------------------------------------------------------------
    def _known_dead(self, gateway_id: str) -> bool:
        listening = time.monotonic() - self.started_at >= self.config.presence_ttl_s
        return listening and self.alive is not None and not self.alive(gateway_id)

    def _announce_left(self, wf: str, member: Member) -> None:
        fan = self.hub.fanouts.get(workflow_channel(wf, ChannelKind.PRESENCE))
        if fan is not None:
            fan.inject(pack_data({"type": "leave", "member": member, "reason": "timeout"}))

    def sweep(self) -> None:
        """Members of gateways not heard from (they died before this gateway met them)
        leave once this gateway has listened to heartbeats for a whole TTL; tables of
        presence channels without local subscribers are dropped."""
        for wf in list(self.views):
            if workflow_channel(wf, ChannelKind.PRESENCE) not in self.hub.fanouts:
                del self.views[wf]
        if self.alive is None or time.monotonic() - self.started_at < self.config.presence_ttl_s:
            return
        alive = self.alive
        for wf, view in list(self.views.items()):
            for member in list(view.values()):
                if not alive(str(member.get("gw"))):
                    self._announce_left(wf, member)

    def gateway_lost(self, gateway_id: str) -> None:
        """Tell local presence subscribers that a dead gateway's members left."""
        for wf, view in list(self.views.items()):
            for member in [m for m in view.values() if m.get("gw") == gateway_id]:
                self._announce_left(wf, member)
