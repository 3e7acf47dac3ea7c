"""Frys WebSocket Python SDK.

``connect`` opens a self-healing connection to a gateway; ``Backend`` lets a workflow
engine publish and serve control commands straight over NATS with the same codec.
"""

from frys.client.connection import Client, Subscription, connect
from frys.client.core import ConnState, Message, PublishAck
from frys.client.errors import (
    ClientError,
    ConnectionClosed,
    ConnectionLost,
    Forbidden,
    InvalidChannel,
    NotFound,
    RequestTimeout,
    Unauthorized,
    Unavailable,
)
from frys.shared.protocol.frames import Position

__all__ = [
    "Client",
    "ClientError",
    "ConnState",
    "ConnectionClosed",
    "ConnectionLost",
    "Forbidden",
    "InvalidChannel",
    "Message",
    "NotFound",
    "Position",
    "PublishAck",
    "RequestTimeout",
    "Subscription",
    "Unauthorized",
    "Unavailable",
    "connect",
]
