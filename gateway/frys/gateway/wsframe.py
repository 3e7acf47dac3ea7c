"""Server-to-client WebSocket frames built once and written to many sockets.

Server frames are never masked (RFC 6455 §5.1), so the bytes of a frame do not depend on the
connection: a delivery is framed once per subprotocol and the same bytes go to every
subscriber's transport.
"""

from __future__ import annotations

import struct
from typing import Final

OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2

_LEN2 = struct.Struct("!BBH").pack
_LEN8 = struct.Struct("!BBQ").pack


def ws_frame(payload: bytes, opcode: int) -> bytes:
    """One final (FIN) unmasked frame carrying ``payload``."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        return bytes((first, n)) + payload
    if n < 65536:
        return _LEN2(first, 126, n) + payload
    return _LEN8(first, 127, n) + payload


def binary_frame(payload: bytes) -> bytes:
    return ws_frame(payload, OP_BINARY)


def text_frame(payload: str) -> bytes:
    return ws_frame(payload.encode("utf-8"), OP_TEXT)
