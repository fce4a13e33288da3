"""Searches on flows: the lexicographic flow optimum of every level, branch and bound for the
side constraints a flow cannot carry (partners, conflicts, coverage minimums of 2 or
more), and the hints CP-SAT starts from. See the package docstring."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

import numpy as np

from ._core import rng_for
from ._cp import worst_of
from ._flow import Face
from ._net import DIRECT, HUB, LOWER, POOL, UPPER, Net
from ._rules import BATTLE, Problem


@dataclass
class Flowed:
    flow: np.ndarray
    worst: int
    min_sum: int


def student_arcs(net: Net) -> np.ndarray:
    return net.student >= 0


def fewest_worst(net: Net, cap: np.ndarray) -> int:
    """The largest over students of their best open arc's rank: no threshold below it can
    seat everyone."""
    studs = np.flatnonzero((net.student >= 0) & (cap > 0))
    best = np.full(net.prob.n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(best, net.student[studs], net.rank[studs])
    return max(1, int(best.max(initial=1)))


def flow_lex(net: Net, *, egalitarian: bool = True, quick: bool = False) -> Flowed | None:
    """The lexicographic optimum of every level by min-cost flow alone (the network must
    carry every rule: no partners or conflicts, coverage minimums of at most 1 unless
    fixed), or None if no flow satisfies the arc bounds. ``quick``: only down to the rank
    total, and no minimum total (``min_sum`` is then 0)."""
    face = Face(net)
    upper = [net.cost.get(k) for k in UPPER]
    if face.minimize(upper, narrow=True) is None:
        return None
    lower = [net.cost.get(k) for k in LOWER] if not quick else [net.cost["rank"]]
    rank = net.cost["rank"]
    min_sum = 0
    if not quick:
        best = face.copy().minimize([rank], narrow=False)
        assert best is not None
        min_sum = int((rank * best).sum())
    if not egalitarian:
        flow = face.minimize(lower, narrow=False)
        assert flow is not None
        return Flowed(flow, worst_of(net, flow), min_sum)
    studs = student_arcs(net)
    values = np.unique(net.rank[studs & (face.cap > 0)])
    values = values[values >= fewest_worst(net, face.cap)]
    lo, hi = 0, len(values) - 1
    while lo < hi:  # seating everyone is monotone in the threshold
        mid = (lo + hi) // 2
        trial = face.copy()
        trial.forbid(studs & (net.rank > values[mid]))
        if trial.feasible():
            hi = mid
        else:
            lo = mid + 1
    worst = int(values[lo]) if len(values) else 0
    face.forbid(studs & (net.rank > worst))
    at_worst = (studs & (net.rank == worst)).astype(np.int64)
    flow = face.minimize([at_worst, *lower], narrow=False)
    assert flow is not None
    return Flowed(flow, worst, min_sum)


def level_key(net: Net, found: Flowed, egalitarian: bool = True) -> tuple[int, ...]:
    """Levels 1-4 of a flow's answer, for comparing answers lexicographically (without
    ``egalitarian``: levels 1-3 and the rank total)."""
    flow = found.flow
    upper = [value(net.cost[k], flow) for k in UPPER if k in net.cost]
    studs = student_arcs(net) & (flow > 0)
    ranks = net.rank[studs]
    worst = int(ranks.max(initial=0))
    if not egalitarian:
        return (*upper, int(ranks.sum()))
    return (*upper, worst, int((ranks == worst).sum()), int(ranks.sum()))


# ----------------------------------------------------------------------------- hints


def _can_take(net: Net) -> set[tuple[int, int]]:
    """(student, slot) pairs the network can carry."""
    out = {
        (int(net.student[a]), int(net.slot[a]))
        for a in np.flatnonzero((net.kind == DIRECT) & (net.cap > 0))
    }
    hub_slots: dict[int, list[int]] = {}
    for a in np.flatnonzero((net.kind == HUB) & (net.cap > 0)):
        hub_slots.setdefault(int(net.cls[a]), []).append(int(net.slot[a]))
    for a in np.flatnonzero((net.kind == POOL) & (net.cap > 0)):
        i = int(net.student[a])
        out.update((i, j) for j in hub_slots.get(int(net.cls[a]), ()))
    return out


def _repair(prob: Problem, net: Net, choice: np.ndarray, seed: int) -> np.ndarray | None:
    """Move or swap students until no two in conflict share a slot: a move only into a
    slot with room (and, for battles, out of a side above its minimum, into a running
    battle), a swap keeps every size."""
    if not prob.conflicts:
        return choice
    choice = choice.copy()
    foes: dict[int, set[int]] = {}
    for a, b in prob.conflicts:
        foes.setdefault(a, set()).add(b)
        foes.setdefault(b, set()).add(a)
    fixed = {i for i, k in enumerate(prob.keep) if k is not None}
    fixed |= set(prob.group_of())
    can = _can_take(net)
    order = list(range(prob.n))
    rng_for(seed, "repair").shuffle(order)
    slots = sorted(range(prob.n_slots), key=lambda j: rng_for(seed, f"slot{j}").random())

    def clash(i: int, k: int, besides: int) -> bool:
        return any(choice[x] == k and x != besides for x in foes.get(i, ()))

    def move(mover: int) -> bool:
        j = int(choice[mover])
        count = np.bincount(choice, minlength=prob.n_slots)
        for k in slots:
            if k == j or (mover, k) not in can or count[k] >= prob.hi[k] or clash(mover, k, -1):
                continue
            if prob.kind == BATTLE:
                other = k + 1 if k % 2 == 0 else k - 1
                if count[j] <= prob.lo[j] or count[k] + count[other] == 0:
                    continue
            choice[mover] = k
            return True
        for c in order:
            k = int(choice[c])
            if k == j or c in fixed or c == mover:
                continue
            if (mover, k) not in can or (c, j) not in can:
                continue
            if clash(mover, k, c) or clash(c, j, mover):
                continue
            choice[mover], choice[c] = k, j
            return True
        return False

    for _ in range(4 * len(prob.conflicts) + 4):
        bad = [(a, b) for a, b in prob.conflicts if choice[a] == choice[b]]
        if not bad:
            return choice
        a, b = bad[0]
        if not any(move(x) for x in (b, a) if x not in fixed):
            return None
    return None


def keeps_rules(prob: Problem, choice: np.ndarray) -> bool:
    """Whether an assignment keeps the side constraints that the flow does not carry
    (partners, conflicts, battle structure); limits, keeps and days are in the network."""
    for members, slots in prob.groups:
        if len({int(choice[i]) for i in members}) != 1 or int(choice[members[0]]) not in slots:
            return False
    if any(choice[a] == choice[b] for a, b in prob.conflicts):
        return False
    if prob.kind == BATTLE:
        count = np.bincount(choice, minlength=prob.n_slots)
        lo, hi = prob.lo[0], prob.hi[0]
        running = 0
        for b in range(len(prob.battles)):
            x, y = count[2 * b], count[2 * b + 1]
            if x == y == 0:
                continue
            if not (lo <= x <= hi and lo <= y <= hi):
                return False
            running += 1
        if not prob.run_range[0] <= running <= prob.run_range[1]:
            return False
    return True


def _battle_score(prob: Problem) -> np.ndarray:
    score = np.zeros(prob.n_slots)
    for i in range(prob.n):
        for j, r in prob.ranked[i].items():
            score[j] += 1.0 / r
    return score[0::2] + score[1::2]


def _violation(
    prob: Problem, choice: np.ndarray, net: Net | None = None, flow: np.ndarray | None = None
) -> tuple[str, int, int] | None:
    """The first broken side constraint: ("group", g, -1) for partners apart, ("conflict",
    a, b) for two students in conflict on one slot, ("cover", j, -1) for a paper whose
    coverage bonus the relaxation took with fewer than its minimum (given the flow), or
    None."""
    for g, (members, _slots) in enumerate(prob.groups):
        if len({int(choice[i]) for i in members}) != 1:
            return ("group", g, -1)
    for a, b in prob.conflicts:
        if choice[a] == choice[b]:
            return ("conflict", a, b)
    if net is not None and flow is not None and "cover" in net.cost:
        count = np.bincount(choice, minlength=prob.n_slots)
        bonus = np.flatnonzero((net.cost["cover"] < 0) & (flow > 0))
        for a in bonus.tolist():
            j = int(net.slot[a])
            if count[j] < prob.lo[j]:
                return ("cover", j, -1)
    return None


@dataclass(order=True)
class _Node:
    key: tuple[int, ...]
    order: int
    counts: dict[int, tuple[int, int]] = field(compare=False)
    placed: dict[int, int] = field(compare=False)
    banned: frozenset[tuple[int, int]] = field(compare=False)
    found: Flowed = field(compare=False)


def branch_and_bound(
    prob: Problem,
    net: Net,
    counts: dict[int, tuple[int, int]],
    nodes: int,
    *,
    egalitarian: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None, bool] | None:
    """The lexicographic optimum of levels 1-4 under the side constraints the flow cannot
    carry, by best-first branch and bound on flows: every node's flow optimum without those
    constraints bounds all assignments below it; a broken constraint is branched on (the
    partners' paper; which of two conflicting students leaves the shared slot; a paper
    covered or not). Returns (assignment, flow, proven) after at most ``nodes`` nodes;
    (None, None, True) if no assignment exists; None if none was found within the limit."""
    tick = itertools.count()

    def make(c: dict, p: dict, b: frozenset) -> _Node | None:
        found = flow_lex(net.fix(c, p, b), egalitarian=egalitarian, quick=True)
        if found is None:
            return None
        return _Node(level_key(net, found, egalitarian), next(tick), c, p, b, found)

    root = make(counts, {}, frozenset())
    heap = [root] if root is not None else []
    best: tuple[tuple[int, ...], np.ndarray, np.ndarray] | None = None
    seen = 0
    while heap and seen < nodes:
        node = heapq.heappop(heap)
        if best is not None and node.key >= best[0]:
            heap = []
            break
        seen += 1
        choice = net.decode(node.found.flow)
        broken = _violation(prob, choice, net, node.found.flow)
        if broken is None:
            best = (node.key, choice, node.found.flow)
            continue
        what, x, y = broken
        c, p, b = node.counts, node.placed, node.banned
        if what == "group":
            members, slots = prob.groups[x]
            kids = [(c, {**p, **dict.fromkeys(members, j)}, b) for j in slots]
        elif what == "conflict":
            j = int(choice[x])
            kids = [(c, p, b | {(x, j)}), (c, {**p, x: j}, b | {(y, j)})]
        else:
            lo, hi = prob.lo[x], prob.hi[x]
            kids = [({**c, x: (lo, hi)}, p, b), ({**c, x: (0, lo - 1)}, p, b)]
        for kid in kids:
            made = make(*kid)
            if made is not None and (best is None or made.key < best[0]):
                heapq.heappush(heap, made)
    if best is None:
        return None if heap else (None, None, True)
    proven = not heap or heap[0].key >= best[0]
    return best[1], best[2], proven


def _dive(prob: Problem, net: Net, counts: dict[int, tuple[int, int]]) -> np.ndarray | None:
    """Mend the flow relaxation one broken partner request or conflict at a time, each time
    taking the branch (a paper for the partners; which of the two leaves the shared slot)
    whose flow optimum is lexicographically best. None if a step leaves no feasible branch."""
    placed: dict[int, int] = {}
    banned: frozenset[tuple[int, int]] = frozenset()
    found = flow_lex(net.fix(counts, placed, banned), quick=True)
    for _ in range(2 * (len(prob.groups) + len(prob.conflicts)) + 2):
        if found is None:
            return None
        choice = net.decode(found.flow)
        broken = _violation(prob, choice)
        if broken is None:
            return choice
        what, x, y = broken
        options: list[tuple[dict[int, int], frozenset[tuple[int, int]]]] = []
        if what == "group":
            members, slots = prob.groups[x]
            options = [({**placed, **dict.fromkeys(members, j)}, banned) for j in slots]
        else:
            j = int(choice[x])
            options = [(placed, banned | {(x, j)}), (placed, banned | {(y, j)})]
        best: tuple[tuple[int, ...], Flowed, dict, frozenset] | None = None
        for p, b in options:
            trial = flow_lex(net.fix(counts, p, b), quick=True)
            if trial is not None:
                key = level_key(net, trial)
                if best is None or key < best[0]:
                    best = (key, trial, p, b)
        if best is None:
            return None
        _key, found, placed, banned = best
    return None


def heuristic(prob: Problem, net: Net, seed: int) -> np.ndarray | None:
    """A good assignment for the CP-SAT hint, built by flows (it may break a side
    constraint when the quick construction fails: CP-SAT then repairs it)."""
    counts: dict[int, tuple[int, int]] = {}
    if prob.kind == BATTLE:
        m = len(prob.battles)
        lo, hi = prob.lo[0], prob.hi[0]
        forced = sorted({j // 2 for j in prob.keep if j is not None})
        score = _battle_score(prob)
        others = sorted(set(range(m)) - set(forced), key=lambda b: (-score[b], b))
        for r in range(prob.run_range[1], max(prob.run_range[0], len(forced)) - 1, -1):
            running = set(forced) | set(others[: r - len(forced)])
            counts = {j: (lo, hi) if j // 2 in running else (0, 0) for j in range(prob.n_slots)}
            if Face(net.fix(counts, {})).feasible():
                break
    elif prob.coverage and any(x >= 2 for x in prob.lo):
        left = prob.n
        by = sorted(range(prob.n_slots), key=lambda j: (prob.lo[j], -prob.early[j]))
        for j in by:
            if prob.lo[j] >= 1 and prob.hi[j] >= prob.lo[j] and prob.lo[j] <= left:
                counts[j] = (prob.lo[j], prob.hi[j])
                left -= prob.lo[j]
            elif prob.lo[j] >= 1:
                counts[j] = (0, prob.lo[j] - 1)
    choice = _dive(prob, net, counts)
    if choice is None and counts and prob.kind != BATTLE:
        choice = _dive(prob, net, {})
    if choice is not None:
        return choice
    found = flow_lex(net.fix(counts, {}), quick=True) or flow_lex(net, quick=True)
    if found is None:
        return None
    choice = net.decode(found.flow)
    repaired = _repair(prob, net, choice, seed)
    return repaired if repaired is not None else choice


# ----------------------------------------------------------------------------- CP-SAT


def value(cost: np.ndarray, flow: np.ndarray) -> int:
    return int((cost * flow).sum())
