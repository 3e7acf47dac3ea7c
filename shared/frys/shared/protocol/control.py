"""Control command records: the command id grammar, the record key, and the stored
outcome format.

The backend helper records each command under :func:`command_key` in the control KV
bucket, first as *pending* (claimed, executing) and then as *done* with the packed reply,
so a retried command id is answered from the record instead of executing twice, on any
gateway and after any reconnect. A command id belongs to whoever sent it: the key holds a
tag of the sender, so another user reusing the id neither gets this reply nor suppresses
their own command, and ``outcome`` shows each user only their own records.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import msgpack

from frys.shared.protocol.channels import valid_id

_CID_RE = re.compile(r"[A-Za-z0-9_=-]{1,128}")


def valid_cid(cid: str) -> bool:
    return _CID_RE.fullmatch(cid) is not None


def outcome_key(workflow_id: str, cid: str) -> str | None:
    """``{workflow}.{cid}``, or ``None`` for ids outside the grammar: the key of records
    written before they were scoped by sender (:func:`command_key` is the key in use)."""
    if not valid_id(workflow_id) or not valid_cid(cid):
        return None
    return f"{workflow_id}.{cid}"


def record_location(bucket: str, key: str) -> tuple[str, str]:
    """The stream and subject that hold ``key`` of KV bucket ``bucket`` (NATS's KV layout),
    for reading a record from the stream leader rather than from any replica."""
    return f"KV_{bucket}", f"$KV.{bucket}.{key}"


def sender_tag(sender: str) -> str:
    """A short tag of an identity that fits a KV key token whatever the identity holds: the
    first 16 hexadecimal digits of the SHA-256 of its UTF-8 encoding."""
    return hashlib.sha256(sender.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def command_key(workflow_id: str, sender: str, cid: str) -> str | None:
    """KV key of the record of command ``cid`` sent by ``sender`` (the ``Frys-From`` of the
    request: a token's ``sub``) on workflow ``workflow_id``: ``{workflow}.{tag}.{cid}``;
    ``None`` for ids outside the grammar."""
    if not valid_id(workflow_id) or not valid_cid(cid):
        return None
    return f"{workflow_id}.{sender_tag(sender)}.{cid}"


@dataclass(frozen=True, slots=True)
class Outcome:
    pending: bool
    packed_reply: bytes = b""
    at_ms: int = 0
    owner: str = ""
    """Who claimed the command (one claim, one execution): an engine recognises its own
    claim after a write whose answer it never saw, and tells apart a record it wrote from
    one another party wrote meanwhile. Empty on records that predate it."""

    def encode(self) -> bytes:
        record: dict[str, object] = {
            "state": "pending" if self.pending else "done",
            "reply": self.packed_reply,
            "at": self.at_ms,
        }
        if self.owner:
            record["owner"] = self.owner
        return msgpack.packb(record, use_bin_type=True)


def parse_outcome(value: bytes) -> Outcome | None:
    """Decode a record; ``None`` when it is not one (never raises)."""
    try:
        obj = msgpack.unpackb(value, raw=False)
    except Exception:
        return None
    if not isinstance(obj, dict) or obj.get("state") not in ("pending", "done"):
        return None
    reply = obj.get("reply", b"")
    at = obj.get("at", 0)
    owner = obj.get("owner", "")
    if not isinstance(reply, bytes) or not isinstance(at, int) or not isinstance(owner, str):
        return None
    return Outcome(pending=obj["state"] == "pending", packed_reply=reply, at_ms=at, owner=owner)
