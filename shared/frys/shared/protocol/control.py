"""Control command records: the command id grammar and the stored outcome format.

The backend helper records each command under ``{workflow}.{cid}`` in the control KV
bucket, first as *pending* (claimed, executing) and then as *done* with the packed reply,
so a retried command id is answered from the record instead of executing twice, on any
gateway and after any reconnect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgpack

from frys.shared.protocol.channels import valid_id

_CID_RE = re.compile(r"[A-Za-z0-9_=-]{1,128}")


def valid_cid(cid: str) -> bool:
    return _CID_RE.fullmatch(cid) is not None


def outcome_key(workflow_id: str, cid: str) -> str | None:
    """KV key of a command's record, or ``None`` for ids outside the grammar."""
    if not valid_id(workflow_id) or not valid_cid(cid):
        return None
    return f"{workflow_id}.{cid}"


@dataclass(frozen=True, slots=True)
class Outcome:
    pending: bool
    packed_reply: bytes = b""
    at_ms: int = 0

    def encode(self) -> bytes:
        return msgpack.packb(
            {
                "state": "pending" if self.pending else "done",
                "reply": self.packed_reply,
                "at": self.at_ms,
            },
            use_bin_type=True,
        )


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
    if not isinstance(reply, bytes) or not isinstance(at, int):
        return None
    return Outcome(pending=obj["state"] == "pending", packed_reply=reply, at_ms=at)
