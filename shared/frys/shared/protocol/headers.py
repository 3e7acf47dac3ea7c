"""NATS message headers Frys reads and writes (the bus format beside the payload).

Payloads on NATS are the msgpack-encoded application data; these headers carry what the
gateways, the backend helper and the streams need around it.
"""

from typing import Final

FROM: Final = "Frys-From"
"""Authenticated publisher: the token subject, ``api`` or the backend's name."""
CID: Final = "Frys-Cid"
"""Control command id."""
MSG_ID: Final = "Nats-Msg-Id"
"""Publisher message id; JetStream drops a repeat within the duplicate window."""
SEQ: Final = "Nats-Sequence"
"""Stream sequence, added by the stream's republish."""
LAST_SEQ: Final = "Nats-Last-Sequence"
"""Sequence of the previous stored message on the same subject (gap detection)."""
ENC: Final = "Frys-Enc"
"""Encoding of the payload's data when it is not plain data: ``tensor``."""
TS: Final = "Frys-Ts"
"""Publish time (Unix nanoseconds) on a sample of messages, for the latency histogram."""
TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
