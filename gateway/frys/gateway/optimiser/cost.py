"""What a choice of encoding costs, and the link classes it is priced for.

The cost of sending a frame with one encoding is the CPU it takes to encode and to decode
plus the time its bytes occupy the link::

    cost = w_cpu · (t_enc + t_dec) + bytes · 8 / bandwidth      (seconds)

so on a same-host link (gigabytes per second) the cheapest choice is the one that spends
the least CPU, and on a slow one the one that sends the fewest bytes. ``w_cpu`` weighs a
second of CPU against a second of link time (default 1). Connections are grouped into a
few link classes so a stream is encoded once per class, not once per connection.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class LinkClass(enum.Enum):
    """Where a reader sits, as far as the cost of bytes goes."""

    LOCAL = "local"
    """Same host or same rack: loopback-like bandwidth, sub-millisecond round trips."""
    FAST = "fast"
    """A LAN, broadband or a good WAN link (priced at 200 Mb/s per reader)."""
    SLOW = "slow"
    """A constrained link (mobile, a congested VPN): bytes dominate."""


NOMINAL_BPS: dict[LinkClass, float] = {
    LinkClass.LOCAL: 20e9,
    LinkClass.FAST: 200e6,
    LinkClass.SLOW: 20e6,
}
"""Bandwidth each class is priced at (bits per second) when nothing better is known."""


@dataclass(frozen=True, slots=True)
class CostWeights:
    """The knobs of the cost: CPU weight, and the bandwidth each link class is priced at."""

    w_cpu: float = 1.0
    local_bps: float = NOMINAL_BPS[LinkClass.LOCAL]
    fast_bps: float = NOMINAL_BPS[LinkClass.FAST]
    slow_bps: float = NOMINAL_BPS[LinkClass.SLOW]

    def bandwidth(self, link: LinkClass) -> float:
        if link is LinkClass.LOCAL:
            return self.local_bps
        if link is LinkClass.FAST:
            return self.fast_bps
        return self.slow_bps

    def cost(self, wire_bytes: float, enc_s: float, dec_s: float, link: LinkClass) -> float:
        """Seconds of CPU and link time for one frame of ``wire_bytes``."""
        return self.w_cpu * (enc_s + dec_s) + wire_bytes * 8.0 / self.bandwidth(link)
