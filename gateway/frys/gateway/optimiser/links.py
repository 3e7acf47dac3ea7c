"""Per-connection link estimation from what the gateway already sees.

The gateway writes to a transport whose buffer it can read, and pings every connection.
When a write leaves bytes in the buffer, the time the buffer takes to drain tells the
link's throughput (``bytes / seconds``); a ping's round trip tells its latency. A writer that
never backs up only shows a lower bound: the link took everything offered. The estimator
keeps winsorised means of both and maps them to a :class:`~.cost.LinkClass`, with a margin
so that a connection near a boundary does not hop between classes at every sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from frys.gateway.optimiser.cost import LinkClass
from frys.gateway.optimiser.estimate import WinsorisedEwma

LOCAL_RTT_S = 0.001
"""Round trips below this are same-host or same-rack."""
SLOW_BPS = 100e6
"""Measured throughput below this is a slow link."""
MARGIN = 1.5
"""A class changes only when the estimate is past the boundary by this factor."""
MIN_DRAIN_BYTES = 64 * 1024
"""Drains of fewer bytes are too short to time."""


@dataclass(slots=True)
class LinkEstimator:
    """Bandwidth and round-trip estimates of one connection, and its class."""

    loopback: bool = False
    """The peer address is a loopback address: same host, whatever the samples say."""
    bps: WinsorisedEwma = field(default_factory=lambda: WinsorisedEwma(alpha=0.3, band=4.0))
    rtt: WinsorisedEwma = field(default_factory=lambda: WinsorisedEwma(alpha=0.3, band=4.0))
    link: LinkClass = LinkClass.FAST

    def __post_init__(self) -> None:
        if self.loopback:
            self.link = LinkClass.LOCAL

    def drained(self, nbytes: int, seconds: float) -> LinkClass:
        """``nbytes`` left the transport's buffer in ``seconds``."""
        if nbytes >= MIN_DRAIN_BYTES and seconds > 0:
            self.bps.add(nbytes * 8 / seconds)
        return self._classify()

    def round_trip(self, seconds: float) -> LinkClass:
        if seconds > 0:
            self.rtt.add(seconds)
        return self._classify()

    def _classify(self) -> LinkClass:
        if self.loopback:
            return self.link
        rtt, bps = self.rtt.value, self.bps.value
        current = self.link
        if bps is not None and bps * (MARGIN if current is not LinkClass.SLOW else 1) < SLOW_BPS:
            self.link = LinkClass.SLOW
        elif bps is not None and current is LinkClass.SLOW and bps < SLOW_BPS * MARGIN:
            pass  # stays slow until clearly past the boundary
        elif rtt is not None and rtt * (MARGIN if current is not LinkClass.LOCAL else 1) < (
            LOCAL_RTT_S
        ):
            self.link = LinkClass.LOCAL
        elif rtt is not None and current is LinkClass.LOCAL and rtt < LOCAL_RTT_S * MARGIN:
            pass
        else:
            self.link = LinkClass.FAST
        return self.link

    def describe(self) -> dict[str, object]:
        return {
            "link": self.link.value,
            "bandwidth_mbps": None if self.bps.value is None else round(self.bps.value / 1e6, 1),
            "rtt_ms": None if self.rtt.value is None else round(self.rtt.value * 1e3, 3),
            "loopback": self.loopback,
        }
