"""The scenarios' results as the Markdown tables docs/placement.md shows."""

from __future__ import annotations

from frys.loadtest.placement_sim.scenarios import Dynamic, Static, median, quantile


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds > 0 else "–"


def format_static(report: Static, title: str = "") -> str:
    """Placement, one gateway joining, each gateway leaving."""
    spec = report.spec
    head = title or (
        f"{spec.agents} agents in {spec.workflows} workflows (largest {spec.largest}), "
        f"K = {report.gateways} gateways, seed {spec.seed}"
    )
    lines = [
        head,
        "",
        "| strategy | fan-out | copies/msg | local | busiest/mean | worst busiest "
        "| moved on join | joiner share after 1/2/3 rounds | moved on leave "
        "| leave over share (worst) | full placement |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.rows:
        c = r.cost
        shares = "/".join(f"{x:.3f}" for x in r.joiner_share)
        lines.append(
            f"| {r.name} | {c.fan_out:.2f} | {c.copies:.2f} | {c.local:.1%} | {c.busiest:.2f} "
            f"| {r.worst_busiest:.2f} | {r.join_moved:.3f} | {shares} | {r.leave_moved:.3f} "
            f"| {r.leave_over_share:+.3f} | {_ms(r.seconds)} |"
        )
    frys = report.row("frys")
    per_leaver = ", ".join(
        f"{x.gateway} {x.moved:.3f}/{x.share:.3f}"
        + (f" (≥{x.forced_extra:.3f} forced)" if x.forced_extra > 0 else "")
        for x in frys.leaves
    )
    lines += [
        "",
        f"fan-out floor (workflows over the fill cap): {report.floor:.3f}; "
        f"fair share of a joining gateway 1/(K+1) = {report.join_share:.3f}",
        f"frys per leaver, moved/share: {per_leaver}",
        f"frys moved {report.steady_moved:.4f} of connections over the steady rounds",
    ]
    return "\n".join(lines)


def format_multi(reports: list[Static]) -> str:
    """Agents in several workflows: placement quality only."""
    first = reports[0]
    spec = first.spec
    lines = [
        f"{spec.agents} agents in {spec.workflows} workflows (largest {spec.largest}), a share "
        f"of them in 2–3 workflows ({spec.multi_local:.0%} of extra memberships in their "
        f"project), K = {first.gateways}, seed {spec.seed}",
        "",
        "| in 2–3 workflows | strategy | fan-out | copies/msg | local | busiest/mean "
        "| full placement |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for report in reports:
        for r in report.rows:
            c = r.cost
            lines.append(
                f"| {report.spec.multi_share:.0%} | {r.name} | {c.fan_out:.2f} | {c.copies:.3f} "
                f"| {c.local:.1%} | {c.busiest:.2f} | {_ms(r.seconds)} |"
            )
    return "\n".join(lines)


def format_growth(report: Dynamic, start: int, grow_to: int) -> str:
    spec = report.spec
    lines = [
        f"{report.title}: {spec.agents} agents in {spec.workflows} workflows (largest "
        f"{spec.largest}) and one workflow growing from {start} to {grow_to} over "
        f"{report.seconds:.0f} s, K = {report.gateways}, seed {spec.seed}",
        "",
        "| strategy | worst busiest/mean | longest above 1.25 | final busiest/mean "
        "| copies/msg at end | migrations |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for t in report.traces:
        assert t.end_cost is not None
        final = t.busiest[-1][1] if t.busiest else 0.0
        lines.append(
            f"| {t.name} | {t.worst:.2f} | {t.longest_above(1.25):.0f} s | {final:.2f} "
            f"| {t.end_cost.copies:.3f} | {t.migrations} |"
        )
    frys = report.trace("frys")
    if frys.forecast is not None:
        f = frys.forecast
        lines += [
            "",
            f"frys: {frys.plans} plans in {report.seconds:.0f} s (every 5 s, sooner when the "
            f"forecast asked); forecast error (weighted MAPE) of changing workflow sizes "
            f"{f.size_next:.1%} one plan ahead, {f.size_horizon:.1%} 60 s ahead; of message "
            f"rates {f.rate_next:.1%} one plan ahead (5 s counts: mostly noise), "
            f"{f.rate_horizon:.1%} over the next 60 s",
        ]
    return "\n".join(lines)


def format_switch(report: Dynamic) -> str:
    spec = report.spec
    lines = [
        f"{report.title}: {spec.agents} agents, {report.changed} switches in "
        f"{report.seconds:.0f} s, K = {report.gateways}, seed {spec.seed}",
        "",
        "| strategy | migrations | per switch | re-homed p50 | p95 | max | never "
        "| worst busiest/mean | copies/msg at end |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for t in report.traces:
        assert t.end_cost is not None
        per = t.migrations / max(1, t.switches)
        lines.append(
            f"| {t.name} | {t.migrations} | {per:.2f} | {median(t.rehome):.0f} s "
            f"| {quantile(t.rehome, 0.95):.0f} s | {max(t.rehome, default=0.0):.0f} s "
            f"| {t.unsettled} | {t.worst:.2f} | {t.end_cost.copies:.3f} |"
        )
    return "\n".join(lines)


def format_churn(report: Dynamic) -> str:
    spec = report.spec
    lines = [
        f"{report.title}: {spec.agents} agents, {report.changed} arrivals and as many "
        f"departures in {report.seconds:.0f} s, K = {report.gateways}, seed {spec.seed}",
        "",
        "| strategy | migrations | per arrival | worst busiest/mean | copies/msg at end |",
        "|---|---:|---:|---:|---:|",
    ]
    for t in report.traces:
        assert t.end_cost is not None
        lines.append(
            f"| {t.name} | {t.migrations} | {t.migrations / max(1, report.changed):.2f} "
            f"| {t.worst:.2f} | {t.end_cost.copies:.3f} |"
        )
    frys = report.trace("frys")
    lines += [
        "",
        f"frys: departed agents counted as connections for {median(frys.ghost_life):.0f} s "
        f"(median), {max(frys.ghost_life, default=0.0):.0f} s at most; "
        f"{frys.ghosts_left} still counted at the end",
    ]
    return "\n".join(lines)


def format_membership(reports: list[Static]) -> str:
    """Joins and leaves at several K."""
    spec = reports[0].spec
    lines = [
        f"{spec.agents} agents in {spec.workflows} workflows (largest {spec.largest}), "
        f"rounds of 5 s, seed {spec.seed}",
        "",
        "| K | strategy | moved on join | fair share | joiner share after 1/2/3 rounds "
        "| moved on leave | leave over share (worst) | busiest after leave |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for report in reports:
        for r in report.rows:
            shares = "/".join(f"{x:.3f}" for x in r.joiner_share)
            lines.append(
                f"| {report.gateways} | {r.name} | {r.join_moved:.3f} | {report.join_share:.3f} "
                f"| {shares} | {r.leave_moved:.3f} | {r.leave_over_share:+.3f} "
                f"| {r.leave_busiest:.2f} |"
            )
    return "\n".join(lines)
