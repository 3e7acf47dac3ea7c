"""Message schemas: which messages share a dictionary.

Messages of one shape — the same keys in a payload on the same kind of channel — repeat the
same bytes (key names, enumerated values, the envelope), so a dictionary learnt from some
of them compresses the others well, and one learnt from a different shape would not. The
schema of a message is its channel kind and the sorted set of its payload's top-level keys
(``events:kind,run,step,ts``); a payload that is not a map is named by its type.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack

MAX_SCHEMA_CHARS = 160
"""Longer key lists are replaced by a digest (a schema name is also a NATS KV key)."""
_KEY_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def schema_of(kind: str, packed: bytes) -> str | None:
    """The schema of a payload (msgpack bytes) on a channel of ``kind``; ``None`` when the
    payload does not decode (such a message is sent as it is, uncompressed)."""
    try:
        value: Any = msgpack.unpackb(packed, raw=False, strict_map_key=False)
    except Exception:
        return None
    if isinstance(value, dict):
        keys = sorted(_key_text(k) for k in value)
        text = ",".join(keys)
    else:
        text = "~" + type(value).__name__
    name = f"{kind}:{text}"
    if len(name) > MAX_SCHEMA_CHARS or not _safe(text):
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        name = f"{kind}:#{digest}"
    return name


def _key_text(key: Any) -> str:
    return key if isinstance(key, str) else f"~{key!r}"


def _safe(text: str) -> bool:
    return all(c in _KEY_SAFE or c in ",~" for c in text)


def storage_key(schema: str) -> str:
    """The schema as a NATS KV key (letters, digits, ``-``, ``_``, ``=``, ``.``)."""
    return hashlib.sha256(schema.encode("utf-8", "surrogatepass")).hexdigest()[:24]
