"""Typed exceptions of the Python SDK; each carries the protocol code it came from."""

from __future__ import annotations

from frys.shared.protocol.errors import ErrorCode, FrysError


class ClientError(FrysError):
    """The gateway answered an operation with an ``error`` frame."""

    def __init__(self, code: int, reason: str):
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


class BadRequest(ClientError):
    pass


class Unauthorized(ClientError):
    pass


class Forbidden(ClientError):
    pass


class NotFound(ClientError):
    pass


class NotAllowed(ClientError):
    pass


class InvalidChannel(ClientError):
    pass


class AlreadySubscribed(ClientError):
    pass


class LimitExceeded(ClientError):
    pass


class Unavailable(ClientError):
    pass


class RequestTimeout(ClientError):
    pass


class ConnectionClosed(FrysError):
    """The connection ended and will not be re-established (final close code or ``close()``)."""

    def __init__(self, code: int | None, reason: str):
        super().__init__(f"connection closed ({code}): {reason}")
        self.code = code
        self.reason = reason


class ConnectionLost(FrysError):
    """An operation was in flight when the connection dropped and cannot be retried safely."""


_BY_CODE: dict[int, type[ClientError]] = {
    ErrorCode.BAD_REQUEST: BadRequest,
    ErrorCode.UNKNOWN_OP: BadRequest,
    ErrorCode.TOO_LARGE: BadRequest,
    ErrorCode.UNAUTHORIZED: Unauthorized,
    ErrorCode.FORBIDDEN: Forbidden,
    ErrorCode.NOT_FOUND: NotFound,
    ErrorCode.NOT_ALLOWED: NotAllowed,
    ErrorCode.INVALID_CHANNEL: InvalidChannel,
    ErrorCode.ALREADY_SUBSCRIBED: AlreadySubscribed,
    ErrorCode.LIMIT_EXCEEDED: LimitExceeded,
    ErrorCode.UNAVAILABLE: Unavailable,
    ErrorCode.INTERNAL: Unavailable,
    ErrorCode.TIMEOUT: RequestTimeout,
}


def error_for(code: int, reason: str) -> ClientError:
    return _BY_CODE.get(code, ClientError)(code, reason)
