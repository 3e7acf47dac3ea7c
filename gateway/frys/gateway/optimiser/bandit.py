"""Choosing an arm per stream: estimates per arm, the cheapest wins, with hysteresis.

Each arm's cost is learnt from measurements: the arm in use is measured on every frame it
sends, the others by *shadow probes* (the same frame, or a block of it, encoded with a
candidate off the wire and decoded again, timed, never sent). Estimates are winsorised
means (:mod:`.estimate`) per arm and frame kind (keyframes and deltas cost differently),
mixed by the stream's recent share of each kind.

A switch needs the best candidate to beat the arm in use by ``hysteresis`` (a fraction of
its cost) and the arm in use to have been kept ``dwell`` frames, so decisions do not flap
on noise. When the arm in use shows a change of regime (its estimate restarted, say a
sparse stream turned dense), the dwell is lifted and every other estimate becomes stale,
so probes re-measure them first and the choice re-converges within a few dozen frames.
On a slow link a candidate that sends more bytes than the arm in use is never chosen on
the strength of a CPU saving alone: exploring never costs a slow reader bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from frys.gateway.optimiser.cost import CostWeights, LinkClass
from frys.gateway.optimiser.estimate import WinsorisedEwma

KINDS = ("key", "delta")
STALE_FRAMES = 200
"""An arm that does not look promising is probed again once its estimate is this old."""
UNSETTLED_HYSTERESIS = 0.05
"""The margin a switch needs while the choice re-converges after a change of regime."""
NOISE_MARGIN = 2.0
"""A switch must also win by this many times the relative noise of the costs compared."""
REFRESH_FRAMES = 24
"""A promising arm is measured again once its estimate is this many frames old."""
PROMISING = 1.5
"""Arms estimated within this factor of the best are kept measured."""


def _ratio_ewma() -> WinsorisedEwma:
    return WinsorisedEwma(alpha=0.3, band=3.0, restart_after=3)


def _time_ewma() -> WinsorisedEwma:
    """Timings only ever get noise added (a busy core, a collection): a tight band keeps
    the estimate near the undisturbed time; a real change still restarts it."""
    return WinsorisedEwma(alpha=0.2, band=1.6, restart_after=4)


@dataclass(slots=True)
class ArmStats:
    """What is known of one arm for one frame kind, per raw byte."""

    ratio: WinsorisedEwma = field(default_factory=_ratio_ewma)
    """Wire bytes per raw byte."""
    enc: WinsorisedEwma = field(default_factory=_time_ewma)
    """Encoding seconds per raw byte."""
    dec: WinsorisedEwma = field(default_factory=_time_ewma)
    """Decoding seconds per raw byte (from probes: decoding happens at the reader)."""
    updated: int = -(10**9)
    """Frame number of the last sample."""

    def known(self) -> bool:
        return self.ratio.value is not None and self.enc.value is not None


@dataclass(slots=True)
class Decision:
    """Why the arm in use is the one in use (for ``/optimiser`` and ``stats``)."""

    arm: str
    reason: str
    costs: dict[str, float | None]
    """Estimated cost of each arm, microseconds per raw kilobyte."""


class ArmSelector:
    """The arm a stream uses on one link class, and the evidence for it."""

    def __init__(
        self,
        arms: Sequence[str],
        link: LinkClass,
        weights: CostWeights,
        *,
        hysteresis: float = 0.15,
        dwell: int = 8,
        initial: str | None = None,
    ) -> None:
        if not arms:
            raise ValueError("at least one arm is needed")
        self.arms = tuple(arms)
        self.link = link
        self.weights = weights
        self.hysteresis = hysteresis
        self.dwell = dwell
        self.current = initial if initial in self.arms else self.arms[0]
        self.stats: dict[tuple[str, str], ArmStats] = {
            (a, k): ArmStats() for a in self.arms for k in KINDS
        }
        self.delta_share = WinsorisedEwma(alpha=0.05, band=1e9)
        self.frame = 0
        self.since_switch = 0
        self.switches = 0
        self.regime_changes = 0
        self.unsettled = False
        """A regime change was seen and the choice has not re-converged yet."""
        self.reason = "initial choice"
        self._costs: dict[str, float | None] = {}
        """Cost per arm, recomputed only for arms measured since (and on a new mix)."""
        self._share_seen: float | None = None
        self.frame_bytes: int | None = None
        self.frame_s_per_wire_byte = 0.0
        """Seconds per wire byte every frame costs whatever the arm: the CRC and the copies
        of framing at the sender, the CRC check at the reader. Probes code blocks without
        framing, so this is added to every arm's cost from its wire bytes."""

    # --- measurements --------------------------------------------------------------------
    def frame_sent(self, kind: str) -> None:
        """A frame of ``kind`` went out with the arm in use."""
        self.frame += 1
        self.since_switch += 1
        self.delta_share.add(1.0 if kind == "delta" else 0.0)

    def observe(
        self,
        arm: str,
        kind: str,
        raw_bytes: int,
        wire_bytes: int | None,
        enc_s: float | None,
        dec_s: float | None,
    ) -> bool:
        """A measurement of ``arm`` on a frame (or block) of ``raw_bytes`` (``None``: that
        part was not measured); True when it showed a change of regime of the arm in use."""
        if raw_bytes <= 0:
            return False
        st = self.stats[(arm, kind)]
        st.updated = self.frame
        self._costs.pop(arm, None)
        regime = False
        if wire_bytes is not None:
            regime = st.ratio.add(wire_bytes / raw_bytes)
        if enc_s is not None:
            st.enc.add(max(enc_s, 1e-9) / raw_bytes)  # noisy: only bytes tell a regime
        if dec_s is not None:
            st.dec.add(max(dec_s, 1e-9) / raw_bytes)
        if regime and arm == self.current:
            self.regime_changes += 1
            self.unsettled = True
            for (other, _), other_st in self.stats.items():
                if other != arm:
                    other_st.updated = -(10**9)
            return True
        return False

    # --- costs and the choice ------------------------------------------------------------
    def frame_size(self, raw_bytes: int) -> None:
        """The stream's frames carry about ``raw_bytes`` (per-call costs are spread on it)."""
        if self.frame_bytes is None or abs(raw_bytes - self.frame_bytes) > self.frame_bytes / 4:
            self.frame_bytes = raw_bytes
            self._costs.clear()

    def _kind_cost(self, arm: str, kind: str) -> float | None:
        st = self.stats[(arm, kind)]
        if not st.known():
            return None
        assert st.ratio.value is not None and st.enc.value is not None
        dec = st.dec.value if st.dec.value is not None else st.enc.value
        framing = 2.0 * self.frame_s_per_wire_byte * st.ratio.value
        return self.weights.cost(st.ratio.value, st.enc.value + framing, dec, self.link)

    def cost(self, arm: str) -> float | None:
        """Expected cost per raw byte of ``arm`` for this stream's mix of frame kinds."""
        share = self._share()
        if share != self._share_seen:
            self._share_seen = share
            self._costs.clear()
        if arm in self._costs:
            return self._costs[arm]
        cost = self._cost(arm, share)
        self._costs[arm] = cost
        return cost

    def _share(self) -> float:
        """The share of deltas among recent frames, in steps of 5 % (costs are cached
        per step, not recomputed for every small change)."""
        value = self.delta_share.value
        return 1.0 if value is None else round(value * 20) / 20

    def predicted_seconds(self, arm: str, kind: str, raw_bytes: int) -> float | None:
        """Encoding plus decoding time of ``raw_bytes`` with ``arm`` (for probe budgets)."""
        st = self.stats[(arm, kind)]
        if st.enc.value is None:
            return None
        dec = st.dec.value if st.dec.value is not None else st.enc.value
        return (st.enc.value + dec) * raw_bytes

    def _cost(self, arm: str, share: float) -> float | None:
        total = 0.0
        for kind, weight in (("delta", share), ("key", 1.0 - share)):
            if weight < 0.01:
                continue
            c = self._kind_cost(arm, kind)
            if c is None:
                return None
            total += weight * c
        return total

    def _ratio(self, arm: str) -> float | None:
        share = self.delta_share.value if self.delta_share.value is not None else 1.0
        kind = "delta" if share >= 0.5 else "key"
        return self.stats[(arm, kind)].ratio.value

    def decide(self) -> str:
        """The arm for the next frame (switching when the evidence is clear)."""
        current_cost = self.cost(self.current)
        best, best_cost = self.current, current_cost
        for arm in self.arms:
            c = self.cost(arm)
            if c is not None and (best_cost is None or c < best_cost):
                best, best_cost = arm, c
        if best == self.current or best_cost is None:
            if self.unsettled and self._all_fresh():
                self.unsettled = False
            return self.current
        if current_cost is not None:
            if not self.unsettled and self.since_switch < self.dwell:
                return self.current
            margin = UNSETTLED_HYSTERESIS if self.unsettled else self.hysteresis
            margin = max(margin, NOISE_MARGIN * max(self._noise(best), self._noise(self.current)))
            if best_cost > current_cost * (1.0 - min(margin, 0.5)):
                return self.current
            if self.link is LinkClass.SLOW:
                ours, theirs = self._ratio(self.current), self._ratio(best)
                if ours is not None and theirs is not None and theirs > ours * 1.02:
                    return self.current
        self.reason = (
            f"{best} costs {_per_kb(best_cost)} µs/kB vs {_per_kb(current_cost)} for "
            f"{self.current} on a {self.link.value} link"
            + (" after a change of regime" if self.unsettled else "")
        )
        self.current = best
        self.since_switch = 0
        self.switches += 1
        return best

    def _noise(self, arm: str) -> float:
        """Relative noise of ``arm``'s cost: its CPU part's noise, weighted by that part's
        share of the cost (bytes are counted exactly)."""
        st = self.stats[(arm, self._main_kind())]
        if not st.known():
            return 0.0
        assert st.ratio.value is not None and st.enc.value is not None
        cpu = st.enc.value + (st.dec.value or st.enc.value)
        cpu_cost = self.weights.w_cpu * cpu
        total = cpu_cost + st.ratio.value * 8.0 / self.weights.bandwidth(self.link)
        if total <= 0:
            return 0.0
        return (cpu_cost / total) * max(st.enc.noise, st.dec.noise)

    def _all_fresh(self) -> bool:
        return all(
            st.updated >= self.frame - STALE_FRAMES
            for (arm, kind), st in self.stats.items()
            if kind == self._main_kind()
        )

    def _main_kind(self) -> str:
        share = self.delta_share.value if self.delta_share.value is not None else 1.0
        return "delta" if share >= 0.5 else "key"

    def probe_order(self, kind: str) -> list[str]:
        """Arms worth probing on a frame of ``kind``, most needed first: never measured;
        then those whose cost is within :data:`PROMISING` of the best and not measured for
        :data:`REFRESH_FRAMES`, least recently measured first; then any other gone stale;
        the arm in use last (its own frames measure its encoding, a probe adds its
        decoding)."""
        stats = self.stats
        unknown = [a for a in self.arms if a != self.current and not stats[(a, kind)].known()]
        costs = {a: self.cost(a) for a in self.arms}
        known = [c for c in costs.values() if c is not None]
        best = min(known) if known else None
        promising: list[str] = []
        stale: list[str] = []
        for arm in self.arms:
            cost = costs[arm]
            if arm == self.current or arm in unknown:
                continue
            if cost is not None and best is not None and cost <= best * PROMISING:
                if stats[(arm, kind)].updated < self.frame - REFRESH_FRAMES:
                    promising.append(arm)
            elif stats[(arm, kind)].updated < self.frame - STALE_FRAMES:
                stale.append(arm)
        promising.sort(key=lambda a: stats[(a, kind)].updated)
        stale.sort(key=lambda a: stats[(a, kind)].updated)
        return [*unknown, *promising, *stale, self.current]

    def decision(self) -> Decision:
        return Decision(
            self.current,
            self.reason,
            {a: None if (c := self.cost(a)) is None else round(c * 1e9, 4) for a in self.arms},
        )

    def describe(self) -> dict[str, Any]:
        d = self.decision()
        return {
            "arm": d.arm,
            "link": self.link.value,
            "why": d.reason,
            "cost_us_per_kb": d.costs,
            "switches": self.switches,
            "regime_changes": self.regime_changes,
            "frames": self.frame,
        }


def _per_kb(cost: float | None) -> str:
    return "?" if cost is None else f"{cost * 1e9:.3g}"
