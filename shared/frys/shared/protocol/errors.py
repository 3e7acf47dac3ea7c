"""Error codes, close codes and the reconnect policy attached to each.

Error codes travel in ``error`` frames and leave the session open. Close codes end the
WebSocket; each says whether a client should reconnect, so that every SDK (Python, browser)
makes the same decision from the same table. ``docs/protocol.md`` renders these tables.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ErrorCode(enum.IntEnum):
    """Codes carried by ``error`` frames. The session stays open."""

    BAD_REQUEST = 400
    UNAUTHORIZED = 401
    FORBIDDEN = 403
    NOT_FOUND = 404
    NOT_ALLOWED = 405
    UNKNOWN_OP = 406
    ALREADY_SUBSCRIBED = 409
    TOO_LARGE = 413
    INVALID_CHANNEL = 422
    LIMIT_EXCEEDED = 429
    INTERNAL = 500
    UNAVAILABLE = 503
    TIMEOUT = 504


class Reconnect(enum.Enum):
    """What a client does after a close code."""

    YES = "yes"
    """Reconnect with backoff and resume every subscription from its last position."""
    WITH_NEW_TOKEN = "with_new_token"
    """Reconnect only once the application has supplied a fresh token."""
    NO = "no"
    """Do not reconnect: the same attempt would fail the same way."""


class CloseCode(enum.IntEnum):
    """WebSocket close codes sent by a gateway."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    SLOW_CONSUMER = 4000
    CONNECT_TIMEOUT = 4001
    MIGRATED = 4002
    TOKEN_EXPIRED = 4003
    BAD_CONNECT = 4400
    UNAUTHORIZED = 4401
    ORIGIN_REFUSED = 4403


@dataclass(frozen=True, slots=True)
class CloseInfo:
    """The meaning of one close code, as documented."""

    code: CloseCode
    reconnect: Reconnect
    meaning: str


CLOSE_TABLE: dict[CloseCode, CloseInfo] = {
    info.code: info
    for info in (
        CloseInfo(CloseCode.NORMAL, Reconnect.NO, "the client closed, or the session ended"),
        CloseInfo(CloseCode.GOING_AWAY, Reconnect.YES, "the gateway is stopping"),
        CloseInfo(CloseCode.PROTOCOL_ERROR, Reconnect.NO, "invalid WebSocket framing"),
        CloseInfo(CloseCode.INVALID_PAYLOAD, Reconnect.NO, "text frame is not valid UTF-8"),
        CloseInfo(CloseCode.POLICY_VIOLATION, Reconnect.NO, "too many invalid frames"),
        CloseInfo(
            CloseCode.MESSAGE_TOO_BIG, Reconnect.NO, "frame larger than limits.max_frame_bytes"
        ),
        CloseInfo(CloseCode.INTERNAL_ERROR, Reconnect.YES, "unexpected gateway failure"),
        CloseInfo(
            CloseCode.SERVICE_RESTART,
            Reconnect.YES,
            "gateway draining; wait the delay given in the reason, then reconnect",
        ),
        CloseInfo(CloseCode.TRY_AGAIN_LATER, Reconnect.YES, "gateway overloaded or not ready"),
        CloseInfo(
            CloseCode.SLOW_CONSUMER,
            Reconnect.YES,
            "outbound queue overflowed on a channel that cannot be conflated (not state); "
            "resume events from the last position",
        ),
        CloseInfo(CloseCode.CONNECT_TIMEOUT, Reconnect.YES, "no connect frame within the deadline"),
        CloseInfo(CloseCode.MIGRATED, Reconnect.YES, "moved by the router; reconnect to the URL"),
        CloseInfo(
            CloseCode.TOKEN_EXPIRED,
            Reconnect.WITH_NEW_TOKEN,
            "token expired without a refresh",
        ),
        CloseInfo(CloseCode.BAD_CONNECT, Reconnect.NO, "first frame was not a valid connect"),
        CloseInfo(CloseCode.UNAUTHORIZED, Reconnect.WITH_NEW_TOKEN, "token rejected at connect"),
        CloseInfo(
            CloseCode.ORIGIN_REFUSED,
            Reconnect.NO,
            "the page's Origin is not allowed; sent right after the upgrade, before any frame",
        ),
    )
}


def reconnect_policy(code: int) -> Reconnect:
    """Reconnect policy for any close code, including ones this version does not know.

    Unknown codes in 4000-4399 and standard transient codes are treated as reconnectable;
    everything else is final. This keeps old clients safe when new codes appear.
    """
    try:
        return CLOSE_TABLE[CloseCode(code)].reconnect
    except ValueError:
        pass
    if 4000 <= code < 4400 or code in (1006, 1014):
        return Reconnect.YES
    return Reconnect.NO


class FrysError(Exception):
    """Base class of every error raised by Frys code."""


class DecodeError(FrysError):
    """Bytes that are not a valid frame. ``code`` is the error code to answer with."""

    def __init__(
        self, reason: str, code: ErrorCode = ErrorCode.BAD_REQUEST, ref: int | None = None
    ):
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.ref = ref


class ChannelError(FrysError):
    """A channel name that does not follow the channel grammar."""
