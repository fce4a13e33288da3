"""The flow network of one kind, shared by the min-cost-flow and the CP-SAT engines.

Nodes: students (supply 1 each), slots, per-slot collectors of non-rankers (only when the
spread rule is on), one *hub* per pool class, and the sink (demand ``n``). Arcs:

* *direct*: student -> slot, for the slots the student ranked (and may take), their
  previous slot, a kept slot, a partner group's slots, or every slot they may take when
  they are in a conflict;
* *pool*: student -> hub of their class, standing for "some slot not on my list"; a class
  is the students with the same unavailable slots (and, with the spread rule, whether they
  ranked nothing): any of them may take any seat the hub sends out;
* *hub*: hub -> slot, the pooled seats of that class on that slot;
* *nr unit*: non-ranker collector -> slot, one arc per seat, the k-th costs ``k - 1`` at
  the spread level (convex: stacking non-rankers costs more and more);
* *unit*: slot -> sink, one arc per seat ``k = 1..max``, carrying the coverage bonus (on
  seat ``min``) and the balance cost (marginal, convex).

Every level of the objective is a cost vector on these arcs (:attr:`Net.cost`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np

from ._core import rng_for
from ._rules import BATTLE, STANDARD, Problem

DIRECT, POOL, HUB, NR, UNIT = range(5)
#: Tie-break weights are integers in ``[0, TIE_RANGE)``.
TIE_RANGE = 1000
#: The levels of the objective, best first, that are cost vectors (the worst rank is a
#: threshold, not a cost, and "students at the worst rank" is made when it is known).
UPPER = ("cover", "early", "notice", "change")
LOWER = ("rank", "balance", "spread", "tie")


@dataclass
class Net:
    prob: Problem
    n_nodes: int
    tail: np.ndarray
    head: np.ndarray
    low: np.ndarray
    cap: np.ndarray
    supply: np.ndarray
    kind: np.ndarray  # DIRECT, POOL, HUB, NR or UNIT
    student: np.ndarray  # DIRECT and POOL arcs, else -1
    slot: np.ndarray  # DIRECT, HUB, NR and UNIT arcs, else -1
    cls: np.ndarray  # POOL and HUB arcs, else -1
    rank: np.ndarray  # DIRECT and POOL arcs, else 0
    unit: np.ndarray  # NR and UNIT arcs: seat number k (1-based), else 0
    classes: list[list[int]]
    pair_order: list[int]
    balance_scale: tuple[int, int]  # (gcd of minutes, L): balance arcs are in these units
    cost: dict[str, np.ndarray] = field(default_factory=dict)

    def units_of(self, j: int) -> np.ndarray:
        return np.flatnonzero((self.kind == UNIT) & (self.slot == j))

    def student_arcs(self) -> list[np.ndarray]:
        mask = self.student >= 0
        arcs = np.flatnonzero(mask)
        order = np.argsort(self.student[arcs], kind="stable")
        arcs = arcs[order]
        bounds = np.searchsorted(self.student[arcs], np.arange(self.prob.n + 1))
        return [arcs[bounds[i] : bounds[i + 1]] for i in range(self.prob.n)]

    # ------------------------------------------------------------------- decisions

    def fix(
        self,
        counts: dict[int, tuple[int, int]],
        placed: dict[int, int],
        banned: frozenset[tuple[int, int]] = frozenset(),
    ) -> Net:
        """A copy with slot ``j`` taking ``counts[j] = (at least, at most)`` students,
        student ``i`` on slot ``placed[i]`` (its direct arc must exist) and never student
        ``i`` on slot ``j`` for ``(i, j)`` in ``banned``."""
        low, cap = self.low.copy(), self.cap.copy()
        units = np.flatnonzero(self.kind == UNIT)
        for j, (least, most) in counts.items():
            mine = units[self.slot[units] == j]
            k = self.unit[mine]
            low[mine[k <= least]] = 1
            cap[mine[k > most]] = 0
        if placed:
            target = np.full(self.prob.n + 1, -2, dtype=np.int64)
            for i, j in placed.items():
                target[i] = j
            who = target[self.student]  # student -1 reads the sentinel at index n
            mine = (self.student >= 0) & (who != -2)
            cap[mine] = 0
            hit = mine & (self.kind == DIRECT) & (self.slot == who)
            cap[hit] = 1
            low[hit] = 1
        if banned:
            direct = np.flatnonzero(self.kind == DIRECT)
            pairs = set(banned)
            off = [a for a in direct.tolist() if (int(self.student[a]), int(self.slot[a])) in pairs]
            cap[off] = 0
        return Net(**{**self.__dict__, "low": low, "cap": cap})

    # ------------------------------------------------------------------- conversions

    def decode(self, flow: np.ndarray) -> np.ndarray:
        """Slot index per student from an integral flow; pooled students take their class's
        seats in the seeded pairing order (any pairing is equally good: see the package
        docstring)."""
        choice = np.full(self.prob.n, -1, dtype=np.int64)
        used = np.flatnonzero((flow > 0) & (self.kind == DIRECT))
        choice[self.student[used]] = self.slot[used]
        pooled: dict[int, set[int]] = {}
        for a in np.flatnonzero((flow > 0) & (self.kind == POOL)):
            pooled.setdefault(int(self.cls[a]), set()).add(int(self.student[a]))
        seats: dict[int, list[int]] = {}
        for a in np.flatnonzero((flow > 0) & (self.kind == HUB)):
            seats.setdefault(int(self.cls[a]), []).extend([int(self.slot[a])] * int(flow[a]))
        for c, who in pooled.items():
            takers = [i for i in self.pair_order if i in who]
            mine = sorted(seats.get(c, []))
            if len(takers) != len(mine):  # pragma: no cover - flow conservation
                raise RuntimeError("pooled students and seats do not match")
            for i, j in zip(takers, mine, strict=True):
                choice[i] = j
        if (choice < 0).any():  # pragma: no cover - flow conservation
            raise RuntimeError("a student without a slot")
        return choice

    def encode(self, choice: np.ndarray) -> np.ndarray | None:
        """The flow of an assignment (slot per student), or None if the network cannot
        carry it (a student on a slot with no arc for them)."""
        flow = np.zeros(len(self.tail), dtype=np.int64)
        direct = {
            (int(self.student[a]), int(self.slot[a])): a
            for a in np.flatnonzero(self.kind == DIRECT)
        }
        pool = {int(self.student[a]): a for a in np.flatnonzero(self.kind == POOL)}
        hub = {(int(self.cls[a]), int(self.slot[a])): a for a in np.flatnonzero(self.kind == HUB)}
        nr_in = np.zeros(self.prob.n_slots, dtype=np.int64)
        count = np.zeros(self.prob.n_slots, dtype=np.int64)
        spread_node = self.prob.n + self.prob.n_slots
        for i, j in enumerate(choice.tolist()):
            a = direct.get((i, j))
            if a is None:
                p = pool.get(i)
                if p is None:
                    return None
                h = hub.get((int(self.cls[p]), j))
                if h is None:
                    return None
                flow[p] += 1
                flow[h] += 1
                a = h
            else:
                flow[a] += 1
            count[j] += 1
            if self.head[a] >= spread_node and self.head[a] < spread_node + self.prob.n_slots:
                nr_in[j] += 1
        for kind, per in ((UNIT, count), (NR, nr_in)):
            arcs = np.flatnonzero(self.kind == kind)
            flow[arcs] = (self.unit[arcs] <= per[self.slot[arcs]]).astype(np.int64)
            over = np.zeros(self.prob.n_slots, dtype=np.int64)
            np.add.at(over, self.slot[arcs], 1)
            if (per > over).any():
                return None
        if ((flow < self.low) | (flow > self.cap)).any():
            return None
        return flow


def _lcm_upto(k: int) -> int:
    out = 1
    for x in range(2, k + 1):
        out = out * x // math.gcd(out, x)
    return out


def build_net(prob: Problem, seed: int) -> Net:
    """The network and the cost of every level (see the module docstring)."""
    n, n_slots = prob.n, prob.n_slots
    rng = rng_for(seed, prob.kind)
    spread_node = n + n_slots  # + j: the non-ranker collector of slot j
    tails: list[int] = []
    heads: list[int] = []
    caps: list[int] = []
    kinds: list[int] = []
    studs: list[int] = []
    slots: list[int] = []
    clss: list[int] = []
    ranks: list[int] = []
    units: list[int] = []

    def arc(t: int, h: int, c: int, k: int, i: int, j: int, cl: int, r: int, u: int) -> None:
        tails.append(t)
        heads.append(h)
        caps.append(c)
        kinds.append(k)
        studs.append(i)
        slots.append(j)
        clss.append(cl)
        ranks.append(r)
        units.append(u)

    allowed = [j for j in range(n_slots) if prob.hi[j] > 0]
    group_of = prob.group_of()
    class_key: dict[tuple[bool, frozenset[int]], int] = {}
    members: list[list[int]] = []
    pool_of: dict[int, int] = {}
    for i in range(n):
        nr = prob.spread and prob.nonranker[i]
        target = (lambda j: spread_node + j) if nr else (lambda j: n + j)
        forbid = prob.forbid[i]
        if prob.keep[i] is not None:
            direct = [prob.keep[i]]
        elif i in group_of:
            direct = list(prob.groups[group_of[i]][1])
        elif prob.explicit[i]:
            direct = [j for j in allowed if j not in forbid]
        else:
            direct = sorted(prob.ranked[i])
            p = prob.prev[i]
            if p is not None and prob.hi[p] > 0 and p not in forbid and p not in prob.ranked[i]:
                direct.append(p)
            n_open = len(allowed) - sum(prob.hi[j] > 0 for j in forbid)
            if n_open > len(prob.ranked[i]):  # some slot they may take is not on their list
                key = (nr, prob.forbid[i])
                if key not in class_key:
                    class_key[key] = len(members)
                    members.append([])
                pool_of[i] = class_key[key]
                members[class_key[key]].append(i)
        for j in direct:
            arc(i, target(j), 1, DIRECT, i, j, -1, prob.ranked[i].get(j, prob.ur[i]), 0)
    hub0 = spread_node + (n_slots if prob.spread else 0)
    sink = hub0 + len(members)
    for i, c in sorted(pool_of.items()):
        arc(i, hub0 + c, 1, POOL, i, -1, c, prob.ur[i], 0)
    for c, who in enumerate(members):
        nr = prob.spread and prob.nonranker[who[0]]
        forbid = prob.forbid[who[0]]
        for j in allowed:
            if j not in forbid:
                to = spread_node + j if nr else n + j
                arc(hub0 + c, to, min(prob.hi[j], len(who)), HUB, -1, j, c, 0, 0)
    if prob.spread:
        for j in allowed:
            for k in range(1, prob.hi[j] + 1):
                arc(spread_node + j, n + j, 1, NR, -1, j, -1, 0, k)
    for j in allowed:
        for k in range(1, prob.hi[j] + 1):
            arc(n + j, sink, 1, UNIT, -1, j, -1, 0, k)

    def arr(x: list[int]) -> np.ndarray:
        return np.array(x, dtype=np.int64)

    tail, head, cap = arr(tails), arr(heads), arr(caps)
    kind, student, slot, cls, rank, unit = (
        arr(kinds),
        arr(studs),
        arr(slots),
        arr(clss),
        arr(ranks),
        arr(units),
    )
    supply = np.zeros(sink + 1, dtype=np.int64)
    supply[:n] = 1
    supply[sink] = -n
    order = list(range(n))
    rng.shuffle(order)
    minutes = [prob.minutes[j] for j in allowed] or [1]
    g = math.gcd(*minutes) or 1
    top = max((prob.hi[j] for j in allowed), default=1)
    scale = _lcm_upto(max(2, min(top, 12)))
    net = Net(
        prob=prob,
        n_nodes=sink + 1,
        tail=tail,
        head=head,
        low=np.zeros(len(tail), dtype=np.int64),
        cap=cap,
        supply=supply,
        kind=kind,
        student=student,
        slot=slot,
        cls=cls,
        rank=rank,
        unit=unit,
        classes=members,
        pair_order=order,
        balance_scale=(g, scale),
    )
    net.cost = _costs(net, rng)
    return net


def _costs(net: Net, rng: random.Random) -> dict[str, np.ndarray]:
    prob = net.prob
    m = len(net.tail)
    kind, slot, student, unit = net.kind, net.slot, net.student, net.unit
    lo = np.array(prob.lo, dtype=np.int64)
    out: dict[str, np.ndarray] = {}
    units = kind == UNIT
    if prob.coverage and prob.kind == STANDARD:
        seat = units & (lo[np.maximum(slot, 0)] >= 1) & (unit == lo[np.maximum(slot, 0)])
        out["cover"] = -seat.astype(np.int64)
        early = np.array(prob.early, dtype=np.int64)
        out["early"] = np.where(seat, -early[np.maximum(slot, 0)], 0)
    elif prob.coverage and prob.kind == BATTLE:
        out["cover"] = -(units & (slot % 2 == 0) & (unit == 1)).astype(np.int64)
    if prob.notice:
        window = np.array(prob.window, dtype=bool)
        prev = np.array([-1 if p is None else p for p in prob.prev], dtype=np.int64)
        on_window = (slot >= 0) & window[np.maximum(slot, 0)]
        direct = (kind == DIRECT) & on_window & (prev[np.maximum(student, 0)] != slot)
        out["notice"] = (direct | ((kind == HUB) & on_window)).astype(np.int64)
    if prob.changes:
        prev = np.array([-1 if p is None else p for p in prob.prev], dtype=np.int64)
        had = (student >= 0) & (prev[np.maximum(student, 0)] >= 0)
        moved = had & ((kind == POOL) | ((kind == DIRECT) & (prev[np.maximum(student, 0)] != slot)))
        out["change"] = moved.astype(np.int64)
    out["rank"] = net.rank.copy()
    if prob.balance:
        g, scale = net.balance_scale
        mins = np.array(prob.minutes, dtype=np.int64) // g
        sq = mins[np.maximum(slot, 0)] ** 2 * scale
        k = np.maximum(unit, 1)
        # g(c) = sq / c; the k-th seat costs g(k) - g(k - 1), the first the same as the
        # second (an empty paper counts as 1.5 solo talks: convex from 0).
        first = -(sq // 2)
        marg = np.where(k >= 2, _div_round(sq, k) - _div_round(sq, np.maximum(k - 1, 1)), first)
        out["balance"] = np.where(units, marg, 0)
    if prob.spread:
        out["spread"] = np.where(kind == NR, unit - 1, 0)
    tie = np.zeros(m, dtype=np.int64)
    for a in np.flatnonzero((kind == DIRECT) | (kind == POOL) | (kind == HUB)).tolist():
        tie[a] = rng.randrange(TIE_RANGE)
    out["tie"] = tie
    return out


def _div_round(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (2 * a + b) // (2 * b)


def balance_cost(prob: Problem, choice: np.ndarray) -> int:
    """Sum over presenters of (slot minutes / presenters on the paper)², in minutes²."""
    if prob.kind != STANDARD or not len(choice):
        return 0
    counts = np.bincount(choice, minlength=prob.n_slots)
    mins = np.array(prob.minutes, dtype=np.float64)
    used = counts > 0
    return round(float((mins[used] ** 2 / counts[used]).sum()))
