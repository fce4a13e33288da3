"""CP-SAT on the flow network, for the rules a flow cannot express: which battles run, which
papers reach a minimum of 2 or more, partners on one paper, conflicting students apart.

One variable per arc of :class:`~._net.Net` (a Boolean for the student arcs and the seats,
an integer for a hub's pooled seats on a slot), flow conservation at every node, and side
constraints: the seats of a slot fill in order (seat ``k + 1`` only after seat ``k``, so
"seat ``min`` is used" means "the paper is covered"), both sides of a battle run together
with at least ``lo`` seats each, partners take the same paper, conflicting students never
share a slot. The pooling keeps the model small: one variable per *ranked* student-slot
pair, not per student and slot.

Deterministic: one worker, and limits in CP-SAT's deterministic time (about a second of
work per unit), so the same input gives the same search and the same answer on any
machine and under any load; a wall-clock limit of three times the budget is only a safety
net.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

import numpy as np
from ortools.sat.python import cp_model

from ._net import DIRECT, NR, UNIT, Net
from ._rules import BATTLE

#: CP-SAT's deterministic time per second of ``time_limit_s``.
DTIME_PER_SECOND = 1.0


class Budget:
    """A deterministic-time budget shared by the phases of one solve."""

    def __init__(self, seconds: float) -> None:
        self.left = seconds * DTIME_PER_SECOND
        self.wall_end = time.perf_counter() + 3 * seconds + 1.0

    def params(self, solver: cp_model.CpSolver) -> None:
        solver.parameters.max_deterministic_time = max(self.left, 0.01)
        solver.parameters.max_time_in_seconds = max(self.wall_end - time.perf_counter(), 0.05)

    def spend(self, solver: cp_model.CpSolver) -> None:
        self.left -= solver.deterministic_time


class CpNet:
    """The CP-SAT model of a network with the side constraints of its problem."""

    def __init__(self, net: Net, seed: int) -> None:
        self.net = net
        self.seed = seed
        prob = net.prob
        self.model = md = cp_model.CpModel()
        m = len(net.tail)
        self.var: list[cp_model.IntVar | int] = []
        for a in range(m):
            lo, hi = int(net.low[a]), int(net.cap[a])
            if lo == hi:
                self.var.append(lo)
            elif lo == 0 and hi == 1:
                self.var.append(md.new_bool_var(f"a{a}"))
            else:
                self.var.append(md.new_int_var(lo, hi, f"a{a}"))
        into: list[list[int]] = [[] for _ in range(net.n_nodes)]
        out: list[list[int]] = [[] for _ in range(net.n_nodes)]
        for a in range(m):
            into[int(net.head[a])].append(a)
            out[int(net.tail[a])].append(a)
        sink = net.n_nodes - 1
        for v in range(net.n_nodes - 1):
            if v == sink or not (into[v] or out[v]):
                continue
            md.add(self._sum(out[v]) - self._sum(into[v]) == int(net.supply[v]))
        # Seats fill in order.
        for kind in (UNIT, NR):
            arcs = np.flatnonzero(net.kind == kind)
            by_slot: dict[int, list[int]] = {}
            for a in arcs[np.lexsort((net.unit[arcs], net.slot[arcs]))].tolist():
                by_slot.setdefault(int(net.slot[a]), []).append(a)
            for seq in by_slot.values():
                for a, b in itertools.pairwise(seq):
                    md.add(self._expr(b) <= self._expr(a))
        self.seats = {j: [a for a in net.units_of(j).tolist()] for j in range(prob.n_slots)}
        if prob.kind == BATTLE:
            lo = prob.lo[0]
            runs = []
            for b in range(len(prob.battles)):
                a_units, b_units = self.seats.get(2 * b, []), self.seats.get(2 * b + 1, [])
                if len(a_units) < lo or len(b_units) < lo:
                    for a in a_units + b_units:
                        md.add(self._expr(a) == 0)
                    runs.append(0)
                    continue
                run = self._expr(a_units[0])
                runs.append(run)
                for a in a_units[1:lo] + b_units[:lo]:
                    md.add(self._expr(a) == run)
            least, most = prob.run_range
            md.add_linear_constraint(cp_model.LinearExpr.sum(runs), least, most)
        direct: dict[tuple[int, int], int] = {
            (int(net.student[a]), int(net.slot[a])): a for a in np.flatnonzero(net.kind == DIRECT)
        }
        for members, slots in prob.groups:
            for j in slots:
                first = self._expr(direct[members[0], j])
                for i in members[1:]:
                    md.add(self._expr(direct[i, j]) == first)
        for x, y in prob.conflicts:
            for j in range(prob.n_slots):
                if (x, j) in direct and (y, j) in direct:
                    md.add(self._expr(direct[x, j]) + self._expr(direct[y, j]) <= 1)
        self.students = net.student_arcs()

    # ------------------------------------------------------------------- expressions

    def _expr(self, a: int) -> cp_model.LinearExprT:
        return self.var[a]

    def _sum(self, arcs: Sequence[int]) -> cp_model.LinearExprT:
        return cp_model.LinearExpr.sum([self.var[a] for a in arcs])

    def linear(self, cost: np.ndarray) -> cp_model.LinearExprT:
        arcs = np.flatnonzero(cost).tolist()
        return cp_model.LinearExpr.weighted_sum(
            [self.var[a] for a in arcs], [int(cost[a]) for a in arcs]
        )

    # ------------------------------------------------------------------- solving

    def bound(self, cost: np.ndarray, value: int) -> None:
        self.model.add(self.linear(cost) <= value)

    def forbid(self, mask: np.ndarray) -> None:
        for a in np.flatnonzero(mask).tolist():
            v = self.var[a]
            if isinstance(v, int):
                if v:
                    self.model.add_bool_or([])  # infeasible: an arc that must carry flow
            else:
                self.model.add(v == 0)

    def _hint(self, flow: np.ndarray | None) -> None:
        self.model.clear_hints()
        if flow is None:
            return
        for a, v in enumerate(self.var):
            if not isinstance(v, int):
                self.model.add_hint(v, int(flow[a]))

    def _run(
        self, budget: Budget, hint: np.ndarray | None, extra: Sequence[tuple] = ()
    ) -> tuple[np.ndarray | None, str]:
        self._hint(hint)
        for var, val in extra:
            self.model.add_hint(var, val)
        solver = cp_model.CpSolver()
        prm = solver.parameters
        prm.num_workers = 1
        prm.random_seed = self.seed % (2**31)
        budget.params(solver)
        status = solver.solve(self.model)
        budget.spend(solver)
        if status == cp_model.INFEASIBLE:
            return None, "infeasible"
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return None, "unknown"
        flow = np.array(
            [v if isinstance(v, int) else solver.value(v) for v in self.var], dtype=np.int64
        )
        return flow, "optimal" if status == cp_model.OPTIMAL else "feasible"

    def minimize(
        self, cost: np.ndarray, budget: Budget, hint: np.ndarray | None
    ) -> tuple[np.ndarray | None, str]:
        """(best flow or None, "optimal" | "feasible" | "unknown" | "infeasible")."""
        self.model.minimize(self.linear(cost))
        return self._run(budget, hint)

    def minimize_worst(
        self, budget: Budget, hint: np.ndarray | None, top: int
    ) -> tuple[np.ndarray | None, str]:
        """Minimise the largest rank any student gets (at most ``top``)."""
        worst = self.model.new_int_var(0, top, "worst")
        rank = self.net.rank
        for arcs in self.students:
            own = arcs.tolist()
            self.model.add(
                cp_model.LinearExpr.weighted_sum(
                    [self.var[a] for a in own], [int(rank[a]) for a in own]
                )
                <= worst
            )
        self.model.minimize(worst)
        extra = [(worst, min(worst_of(self.net, hint), top))] if hint is not None else []
        return self._run(budget, hint, extra)


def worst_of(net: Net, flow: np.ndarray) -> int:
    used = (flow > 0) & (net.student >= 0)
    return int(net.rank[used].max(initial=0))


def ideal(net: Net, cost: np.ndarray, flow: np.ndarray) -> bool:
    """Whether ``flow`` has the smallest cost any flow within the arc bounds could have."""
    best = np.minimum(cost * net.low, cost * net.cap).sum()
    return int((cost * flow).sum()) == int(best)
