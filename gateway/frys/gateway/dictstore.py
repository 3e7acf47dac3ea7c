"""The optimiser's cluster state in NATS: dictionaries and what was learnt per schema.

Two KV buckets (names from :class:`~frys.shared.protocol.subjects.Subjects`):

- ``{prefix}_dicts``: dictionary bytes by id (8 hex digits). Content-addressed, so two
  gateways that store the same dictionary store the same entry. Entries expire
  ``dict_retention_s`` after their last write; the gateway writes the dictionaries it
  still uses again well before that (:meth:`NatsDictionaryStore.keep`), so a dictionary
  disappears only once nobody has compressed with it for that long.
- ``{prefix}_optimiser``: per message schema (key: a digest of its name) a MessagePack map
  ``{schema, dict, trained_ratio, retired, messages, bytes_raw, bytes_wire}``: the
  dictionary every gateway compresses that schema with. Gateways watch it, so one
  gateway's dictionary is every gateway's, and a restarted gateway starts warm from it.
  Per tensor stream and link class (key ``t-`` and a digest) ``{stream, arm, why, costs}``:
  the arm it last chose, which a gateway starting to relay the stream starts from.

Everything read back is checked by the caller (a dictionary's bytes against its id).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
import nats.js.errors
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from frys.gateway.bus import Bus
from frys.gateway.optimiser.schema import storage_key
from frys.shared.protocol import zdict

log = logging.getLogger("frys.gateway.dictstore")

STREAM_KEY = "t-"
"""Keys of tensor streams' choices in the optimiser bucket (schemas' keys are bare digests)."""
MAX_STATE_BYTES = 64 * 1024
"""A schema entry larger than this is ignored (it is written by gateways, a few hundred bytes)."""


class NatsDictionaryStore:
    """:class:`~frys.gateway.optimise.DictionaryStore` on the gateway's NATS connection."""

    def __init__(self, bus: Bus, retention_s: float) -> None:
        self.bus = bus
        self.retention_s = retention_s
        self._dicts: KeyValue | None = None
        self._schemas: KeyValue | None = None
        self._watch: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None

    async def _bucket(self, name: str, ttl_s: float | None) -> KeyValue:
        js = self.bus.js
        try:
            return await js.key_value(name)
        except nats.js.errors.BucketNotFoundError:
            pass
        with contextlib.suppress(nats.js.errors.BadRequestError):
            await js.create_key_value(
                KeyValueConfig(
                    bucket=name,
                    history=1,
                    ttl=ttl_s,
                    storage=StorageType.FILE,
                    replicas=max(1, self.bus.replicas),
                    max_value_size=zdict.DEFAULT_MAX_DICT_BYTES,
                )
            )
        return await js.key_value(name)

    async def dicts(self) -> KeyValue:
        if self._dicts is None:
            self._dicts = await self._bucket(self.bus.subjects.dict_bucket, self.retention_s)
        return self._dicts

    async def schema_bucket(self) -> KeyValue:
        if self._schemas is None:
            self._schemas = await self._bucket(self.bus.subjects.optimiser_bucket, None)
        return self._schemas

    # --- DictionaryStore -----------------------------------------------------------------
    async def put_dictionary(self, dictionary: zdict.Dictionary) -> None:
        kv = await self.dicts()
        await kv.put(dictionary.name, dictionary.content)

    async def get_dictionary(self, dict_id: int) -> bytes | None:
        kv = await self.dicts()
        try:
            entry = await kv.get(zdict.format_id(dict_id))
        except nats.js.errors.KeyNotFoundError:
            return None
        return entry.value

    async def put_schema(self, schema: str, state: dict[str, Any]) -> None:
        kv = await self.schema_bucket()
        await kv.put(storage_key(schema), msgpack.packb(state, use_bin_type=True))

    async def put_stream(self, name: str, state: dict[str, Any]) -> None:
        kv = await self.schema_bucket()
        await kv.put(STREAM_KEY + storage_key(name), msgpack.packb(state, use_bin_type=True))

    async def streams(self) -> dict[str, dict[str, Any]]:
        """Every tensor stream's last choice: ``{name: {stream, arm, why, costs}}``."""
        out: dict[str, dict[str, Any]] = {}
        for key, value in await self._entries():
            if not key.startswith(STREAM_KEY):
                continue
            state = _unpack(value)
            if (
                state is not None
                and isinstance(state.get("stream"), str)
                and isinstance(state.get("arm"), str)
            ):
                out[state["stream"]] = state
        return out

    async def _entries(self) -> list[tuple[str, bytes | None]]:
        kv = await self.schema_bucket()
        try:
            keys = await kv.keys()
        except nats.js.errors.NoKeysError:
            return []
        out = []
        for key in keys:
            with contextlib.suppress(nats.js.errors.KeyNotFoundError):
                out.append((key, (await kv.get(key)).value))
        return out

    async def schemas(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for key, value in await self._entries():
            state = None if key.startswith(STREAM_KEY) else _state(value)
            if state is not None:
                out[state["schema"]] = state
        return out

    async def watch(self, on_schema: Callable[[str, dict[str, Any]], Awaitable[None]]) -> None:
        """Call ``on_schema`` for every schema entry written from now on (by any gateway)."""
        kv = await self.schema_bucket()
        watcher = await kv.watchall(include_history=False)

        async def follow() -> None:
            async for entry in watcher:
                if entry is None or entry.value is None:
                    continue
                state = _state(entry.value)
                if state is None:
                    continue
                try:
                    await on_schema(state["schema"], state)
                except Exception:
                    log.exception("adopting a shared dictionary failed")

        self._watch = asyncio.get_running_loop().create_task(follow())

    def keep(self, in_use: Callable[[], list[zdict.Dictionary]]) -> None:
        """Write the dictionaries in use again every quarter of the retention, so that they
        outlive it while they are used (and for the retention after)."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(max(1.0, self.retention_s / 4))
                for dictionary in in_use():
                    try:
                        await self.put_dictionary(dictionary)
                    except Exception as exc:
                        log.warning("could not refresh dictionary %s: %s", dictionary.name, exc)

        self._keeper = asyncio.get_running_loop().create_task(loop())

    async def close(self) -> None:
        for task in (self._watch, self._keeper):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


def _unpack(value: bytes | None) -> dict[str, Any] | None:
    if not value or len(value) > MAX_STATE_BYTES:
        return None
    try:
        state = msgpack.unpackb(value, raw=False)
    except Exception:
        return None
    return state if isinstance(state, dict) else None


def _state(value: bytes | None) -> dict[str, Any] | None:
    state = _unpack(value)
    if state is None or not isinstance(state.get("schema"), str):
        return None
    return state
