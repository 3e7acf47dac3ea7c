"""Nodes in blocks, and what their arrangement costs in broker copies.

The broker sends a workflow broadcast once to every gateway with a subscriber, so a
workflow whose members sit on λ gateways costs λ copies per broadcast where one would do:
the cost of an arrangement is Σ weight(w) × (λ(w) − 1) over workflows (the "connectivity
minus one" of hypergraph partitioning), plus ``direct_weight`` × the direct-message rate
between nodes in different blocks. Nodes are groups of agents; blocks are gateways, or
clusters while the partitioner coarsens. Keeping, per workflow, the connections it has in
each block makes the gain of any move exact and cheap: a move saves a workflow's weight
when it takes the last member out of a block and costs it when it brings the first one in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

Node = int
Block = int
Workflow = int

NOWHERE: Block = -1


class Blocks:
    """A mutable assignment of weighted nodes to blocks, with per-workflow pin counts."""

    __slots__ = ("adj", "block", "counts", "direct_weight", "load", "on", "phi", "size", "weight")

    def __init__(self, weight: Sequence[float], direct_weight: float) -> None:
        self.weight = weight
        """Broadcast weight of each workflow: messages per second plus a prior."""
        self.direct_weight = direct_weight
        self.size: list[int] = []
        self.counts: list[Mapping[Workflow, int]] = []
        """Connections each node brings to each of its workflows."""
        self.adj: list[Mapping[Node, float]] = []
        """Direct-message rate between nodes (symmetric)."""
        self.block: list[Block] = []
        self.load: dict[Block, int] = {}
        self.on: dict[Block, set[Node]] = {}
        """Nodes in each block."""
        self.phi: list[dict[Block, int]] = [{} for _ in weight]
        """Connections of each workflow in each block (blocks without any are absent)."""

    def add(
        self,
        size: int,
        counts: Mapping[Workflow, int],
        adj: Mapping[Node, float],
        block: Block = NOWHERE,
    ) -> Node:
        node = len(self.size)
        self.size.append(size)
        self.counts.append(counts)
        self.adj.append(adj)
        self.block.append(NOWHERE)
        if block != NOWHERE:
            self.put(node, block)
        return node

    def __len__(self) -> int:
        return len(self.size)

    # --- changing ---------------------------------------------------------------------------
    def put(self, node: Node, block: Block) -> None:
        """Move ``node`` to ``block`` (``NOWHERE`` takes it out)."""
        old = self.block[node]
        if old == block:
            return
        size = self.size[node]
        if old != NOWHERE:
            self.load[old] -= size
            self.on[old].discard(node)
            for w, c in self.counts[node].items():
                row = self.phi[w]
                left = row[old] - c
                if left:
                    row[old] = left
                else:
                    del row[old]
        self.block[node] = block
        if block != NOWHERE:
            self.load[block] = self.load.get(block, 0) + size
            self.on.setdefault(block, set()).add(node)
            for w, c in self.counts[node].items():
                row = self.phi[w]
                row[block] = row.get(block, 0) + c

    # --- reading ----------------------------------------------------------------------------
    def gain(self, node: Node, target: Block) -> float:
        """Cost saved (per second) by moving ``node`` to ``target``; negative: it costs."""
        source = self.block[node]
        if source == target:
            return 0.0
        weight = self.weight
        phi = self.phi
        saved = 0.0
        for w, c in self.counts[node].items():
            row = phi[w]
            if source != NOWHERE and row[source] == c:
                saved += weight[w]
            if target not in row:
                saved -= weight[w]
        adj = self.adj[node]
        if adj:
            block = self.block
            near = 0.0
            for other, rate in adj.items():
                b = block[other]
                if b == target:
                    near += rate
                elif b == source and source != NOWHERE:
                    near -= rate
            saved += self.direct_weight * near
        return saved

    def gains(self, node: Node, targets: Iterable[Block]) -> dict[Block, float]:
        """:meth:`gain` for each of ``targets`` (the node's own block excluded)."""
        source = self.block[node]
        weight = self.weight
        phi = self.phi
        leaving = 0.0
        rows = []
        for w, c in self.counts[node].items():
            row = phi[w]
            if source != NOWHERE and row[source] == c:
                leaving += weight[w]
            rows.append((row, weight[w]))
        near: dict[Block, float] = {}
        adj = self.adj[node]
        if adj:
            block = self.block
            for other, rate in adj.items():
                b = block[other]
                if b != NOWHERE:
                    near[b] = near.get(b, 0.0) + rate
        here = near.get(source, 0.0) if source != NOWHERE else 0.0
        dw = self.direct_weight
        out: dict[Block, float] = {}
        for target in targets:
            if target == source:
                continue
            saved = leaving
            for row, wt in rows:
                if target not in row:
                    saved -= wt
            out[target] = saved + dw * (near.get(target, 0.0) - here)
        return out

    def spread(self, workflow: Workflow) -> int:
        """Blocks the workflow's members are in (λ)."""
        return len(self.phi[workflow])

    def cost(self) -> float:
        """Cost of the whole arrangement, per second."""
        total = sum(
            wt * (len(row) - 1) for wt, row in zip(self.weight, self.phi, strict=True) if row
        )
        cut = 0.0
        for node, adj in enumerate(self.adj):
            b = self.block[node]
            for other, rate in adj.items():
                if other > node and self.block[other] != b:
                    cut += rate
        return total + self.direct_weight * cut

    def neighbours(self, node: Node) -> set[Block]:
        """Blocks holding any workflow or direct partner of ``node``: the only targets that
        can gain anything."""
        out: set[Block] = set()
        for w in self.counts[node]:
            out.update(self.phi[w])
        block = self.block
        for other in self.adj[node]:
            b = block[other]
            if b != NOWHERE:
                out.add(b)
        out.discard(self.block[node])
        return out
