"""Lexicographic min-cost flow: the levels of the objective one after another, each only
allowed to choose among the optima of the levels before it.

Several levels are solved at once where their weighted sum fits OR-Tools' int64 costs
(each level's weight exceeds the largest possible spread of all lower levels' costs, so no
saving below can buy a unit above). Between two such *stages*, the set of optimal flows
(a face of the flow polytope) is fixed exactly by complementary slackness: with node
potentials ``d`` from a shortest-path computation on the residual graph of an optimal
flow, every optimal flow keeps each arc of positive reduced cost at its lower bound and
each arc of negative reduced cost at its capacity, and any flow that does is optimal. So
the next stage runs on the same network with those arcs' bounds pinned.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ortools.graph.python import min_cost_flow

from ._net import Net

#: OR-Tools' min-cost flow multiplies every cost by the number of nodes plus one and
#: refuses (``BAD_COST_RANGE``) costs above ``2**63 / (2 * (nodes + 1))``; stages keep
#: every combined arc cost at half of that.
COST_MARGIN = 4


class Face:
    """The feasible flows of a network with every arc held in ``[low, cap]``, narrowed level
    by level."""

    def __init__(self, net: Net) -> None:
        self.tail, self.head, self.supply = net.tail, net.head, net.supply
        self.n_nodes = net.n_nodes
        self.low = net.low.copy()
        self.cap = net.cap.copy()

    def copy(self) -> Face:
        out = Face.__new__(Face)
        out.__dict__.update(self.__dict__)
        out.low, out.cap = self.low.copy(), self.cap.copy()
        return out

    @property
    def limit(self) -> int:
        return (2**63 - 1) // (COST_MARGIN * (self.n_nodes + 1))

    def solve(self, cost: np.ndarray) -> np.ndarray | None:
        """A min-cost flow within the face, or None if the face is empty."""
        if (self.low > self.cap).any():
            return None
        span = self.cap - self.low
        supply = self.supply.copy()
        np.subtract.at(supply, self.tail, self.low)
        np.add.at(supply, self.head, self.low)
        keep = np.flatnonzero(span > 0)
        flow = self.low.copy()
        if not len(keep):
            return flow if not supply.any() else None
        if int(np.abs(cost[keep]).max(initial=0)) > self.limit:  # pragma: no cover
            raise RuntimeError("min-cost flow costs too large for int64")
        mcf = min_cost_flow.SimpleMinCostFlow()
        arcs = mcf.add_arcs_with_capacity_and_unit_cost(
            self.tail[keep], self.head[keep], span[keep], cost[keep]
        )
        nz = np.flatnonzero(supply)
        if len(nz):
            if nz.max() >= mcf.num_nodes():
                return None  # a node with supply and no free arc
            mcf.set_nodes_supplies(nz, supply[nz])
        status = mcf.solve()
        if status == mcf.INFEASIBLE:
            return None
        if status != mcf.OPTIMAL:  # pragma: no cover - OR-Tools failure
            raise RuntimeError(f"min-cost flow failed: {status}")
        flow[keep] += mcf.flows(arcs)
        return flow

    def feasible(self) -> bool:
        return self.solve(np.zeros(len(self.tail), dtype=np.int64)) is not None

    def forbid(self, mask: np.ndarray) -> None:
        """Arcs in ``mask`` carry nothing (the face is empty if one must carry flow)."""
        self.cap = np.where(mask, 0, self.cap)

    def narrow(self, flow: np.ndarray, cost: np.ndarray) -> None:
        """Keep only the flows as cheap as ``flow`` (which must be optimal for ``cost``)."""
        fwd = flow < self.cap
        bwd = flow > self.low
        rt = np.concatenate([self.tail[fwd], self.head[bwd]])
        rh = np.concatenate([self.head[fwd], self.tail[bwd]])
        rc = np.concatenate([cost[fwd], -cost[bwd]])
        d = np.zeros(self.n_nodes, dtype=np.int64)
        for _ in range(self.n_nodes + 1):
            nd = d.copy()
            np.minimum.at(nd, rh, d[rt] + rc)
            if np.array_equal(nd, d):
                break
            d = nd
        else:  # pragma: no cover - an optimal flow has no negative cycle
            raise RuntimeError("flow not optimal: negative residual cycle")
        reduced = cost + d[self.tail] - d[self.head]
        low, cap = self.low, self.cap
        self.cap = np.where(reduced > 0, low, cap)
        self.low = np.where(reduced < 0, cap, low)

    def spread(self, cost: np.ndarray) -> int:
        """An upper bound on how much the cost of two flows of the face can differ: per node,
        its throughput times its largest outgoing arc cost (twice, for two flows), or the
        sum over its arcs, whichever is smaller."""
        span = self.cap - self.low
        c = np.abs(cost) * (span > 0)
        total = int(self.supply[self.supply > 0].sum())
        by_sum = np.bincount(
            self.tail, weights=(c * span).astype(np.float64), minlength=self.n_nodes
        )
        most = np.zeros(self.n_nodes, dtype=np.int64)
        np.maximum.at(most, self.tail, c)
        thr = np.minimum(np.bincount(self.tail, weights=span, minlength=self.n_nodes), total)
        return int(np.minimum(by_sum, 2.0 * thr * most).sum()) + 1

    def minimize(self, levels: Sequence[np.ndarray], *, narrow: bool) -> np.ndarray | None:
        """The lexicographic minimum of ``levels`` (best first) over the face, or None if
        the face is empty. With ``narrow``, the face keeps only those optima."""
        levels = [lv for lv in levels if lv is not None]
        flow: np.ndarray | None = None
        s = 0
        if not levels:
            flow = self.solve(np.zeros(len(self.tail), dtype=np.int64))
        while s < len(levels):
            spreads = [self.spread(lv) for lv in levels]
            maxes = [int(np.abs(lv).max(initial=0)) for lv in levels]
            e = s
            while e + 1 < len(levels) and _weights(spreads, maxes, s, e + 1, self.limit):
                e += 1
            w = _weights(spreads, maxes, s, e, self.limit)
            if w is None:  # pragma: no cover - one level alone is far below the limit
                raise RuntimeError("min-cost flow costs too large for int64")
            cost = np.zeros(len(self.tail), dtype=np.int64)
            for k, lv in zip(w, levels[s : e + 1], strict=True):
                if k:
                    cost += k * lv
            flow = self.solve(cost)
            if flow is None:
                return None
            if e + 1 < len(levels) or narrow:
                self.narrow(flow, cost)
            s = e + 1
        return flow


def _weights(
    spreads: Sequence[int], maxes: Sequence[int], s: int, e: int, limit: int
) -> list[int] | None:
    """Weights of levels ``s..e`` (each above the whole spread of those below it), or None
    if an arc cost could pass ``limit``."""
    w = [0] * (e - s + 1)
    below = 0
    for k in range(e, s - 1, -1):
        if maxes[k] == 0:
            continue
        w[k - s] = below + 1
        below += w[k - s] * spreads[k]
    if sum(wk * maxes[k] for k, wk in zip(range(s, e + 1), w, strict=True)) > limit:
        return None
    return w
