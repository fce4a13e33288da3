"""Who presents which paper: a fair, reproducible solver for presentation assignments.

Pure computation: no database, no chat, no clock other than timing the solve. The caller
builds an :class:`Instance` from the course, calls :func:`solve`, and shows the result
(with :func:`stats`, :func:`head_to_head` and :func:`histogram_png` for the comparison).

The problem
-----------
Students rank the course's *standard* papers (30- or 45-minute slots) and its *battle*
papers, best first. Every student presents exactly one standard paper and sits on exactly
one side of one battle. Instructor papers are never part of an :class:`Instance`.

*Ranks.* A student's rank for a paper is its 1-based position in their list (the first
occurrence, if listed twice); a paper not on the list has rank ``len(list) + 1``
("unranked"), so unranked papers are used only when needed, and a student who ranked
nothing (or is missing from the preferences) is indifferent. Ranks are taken from the list
as given: if it names papers outside the instance, those still take up positions.

*Standard kind.* A paper gets ``0..cap`` presenters, where ``cap = 1`` while there are no
more students than papers ("prefer solo") and ``cap = max_presenters`` otherwise.

*Battle kind.* Battles come in pairs of papers (side A, side B). A battle either runs, with
``lo..hi`` students on *each* side, or does not run, with nobody on either side; the solver
chooses which battles run.

The objective (per kind, lexicographic)
---------------------------------------
1. Minimise the worst rank ``W`` any student gets (egalitarian: nobody is left far
   behind).
2. Among those assignments (worst rank ``W*``), minimise the number of students who get
   rank ``W*``: the leximin refinement at the worst level, so the fewest possible students
   are left at the bottom, even if the others then fare a little worse on the total. (With
   ``W* = 2`` this is the same as step 3; it matters when ``W*`` is 3 or more, e.g. when
   ``W*`` is "none of my choices".)
3. Among those, minimise the total of the ranks (utilitarian).
4. Among those, pick by a seeded random tie-break, so that ties are not always broken in
   favour of, say, students early in the roster, and the same input and seed always give
   the same assignment.

Each later criterion is only allowed to choose among optima of the earlier ones: the
tie-break weights are integers in ``[0, T)`` and the rank total is scaled by
``M > n * (T - 1)`` (``n`` students), so the whole tie-break term of any assignment is
smaller than one unit of rank total and can never trade against it. In the standard kind
step 2 is a weight too: each student at rank ``W*`` costs an extra ``K``, larger than the
whole rank-total-and-tie-break cost of any assignment with worst rank ``W*``, so no saving
there can buy one more student at ``W*`` (see Methods). The battle kind fixes each optimum
as a constraint instead. :class:`Stats` reports steps 1 and 2 as ``worst_rank`` and
``at_worst``.

Methods
-------
*Standard kind: network flow (OR-Tools).* ``source -> student (cap 1) -> paper (cap 1)
-> sink (cap cap)``. The smallest worst rank ``k*`` is the smallest ``k`` for which a
maximum flow (:class:`~ortools.graph.python.max_flow.SimpleMaxFlow`) that uses only
student-paper arcs of rank ``<= k`` seats everyone (binary search, since seating is
monotone in ``k``). Then one min-cost flow
(:class:`~ortools.graph.python.min_cost_flow.SimpleMinCostFlow`) on the arcs of rank
``<= k*`` with cost ``[rank == k*] * K + rank * M + tie_break`` gives the lexicographic
optimum of steps 2-4 at once; min-cost flow is exact, so the result is always proven
optimal. Unranked papers are reached through one shared *hub* node (``student -> hub``
costs ``len(list) + 1``, plus ``K`` if that equals ``k*``; ``hub -> paper`` only a
tie-break, so ``M = 2 * T * n`` and ``K = n * (k* * M + 2 * T)`` here) instead of one arc
per student and unranked paper, which keeps the graph small for large classes. In an
optimal flow no student is routed through the hub to a paper they ranked (the direct arc
would be strictly cheaper: its rank is below ``len(list) + 1 <= k*``, so it never carries
``K``), so any pairing of hub students with hub papers is a correct assignment; the
pairing is made in a seeded order. OR-Tools keeps costs in int64, multiplies them by the
number of nodes plus one, and refuses (``BAD_COST_RANGE``) costs above
``2**63 / (2 * (nodes + 1))``. The largest cost is about ``K ~ 2 * T * n**2 * k*``
(``T = 1000``): at ``n = 5000`` with 3333 papers that is about ``5e10 * k*`` against a
limit (halved, for margin) of about ``2.8e14``, so any ``k*`` up to about 5000 fits; a
larger instance is refused with a message, never solved wrongly.

*Battle kind: CP-SAT.* Booleans ``x[s, side]`` (student on side) and ``run[b]`` (battle
runs), with ``lo * run[b] <= |side| <= hi * run[b]`` for both sides of every battle. The
solver runs in phases, each fixing the optimum of the one before: (1) minimise the worst
rank ``W``; (2) with ``W <= W*`` (which also drops all variables of rank above ``W*``),
minimise the number of students at rank ``W*``; (3) with ``W <= W*`` and at most ``C*``
(phase 2's optimum) students at rank ``W*``, minimise ``M * total + tie_break``; and, for
reporting, (4) the pure minimum total with no worst-rank bound. Before CP-SAT starts, a
feasible solution is built with min-cost flow (heuristic running set, lower bounds as
negative-cost arcs) and given as a hint to phase 1; each later phase is hinted with the
best solution so far, which satisfies its constraints, so a time limit never leaves us
without an answer. All phases share one deadline, ``time_limit_s`` from the start.
``proven_optimal`` says whether every phase (all four) ended ``OPTIMAL``. CP-SAT's
parallel portfolio (8 workers) is not deterministic in *which* optimum it returns, so
phase 3 carries the seeded tie-break with weights up to ``10**6``: with generic weights
the optimum is unique (ties have negligible probability), and with phases 1-3 proven
optimal (their optimal values ``W*`` and ``C*`` do not depend on which optimum was found)
the same input and seed give the same assignment on every run. (CP-SAT's deterministic
``interleave_search`` was measured 10-60x slower on these models.)

Random serial dictatorship (RSD), the usual baseline: students in a seeded random order
each take their best paper that still has room. See :func:`random_serial_dictatorship` for
what "room" means for battles.
"""

from __future__ import annotations

import io
import math
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from ortools.graph.python import max_flow, min_cost_flow
from ortools.sat.python import cp_model

__all__ = [
    "Infeasible",
    "Instance",
    "KindResult",
    "Solution",
    "Stats",
    "head_to_head",
    "histogram_png",
    "min_sum_standard",
    "ordinal",
    "oversubscribed",
    "presenter_cap",
    "random_serial_dictatorship",
    "rank_of",
    "solve",
    "solve_battles",
    "solve_standard",
    "stats",
]

#: Tie-break weights of the min-cost flows are integers in ``[0, TIE_RANGE)``; see the
#: module docstring. The flow is deterministic, so these only need to break ties fairly.
TIE_RANGE = 1000
#: Tie-break weights of CP-SAT: large, so that the optimum is unique (see the docstring).
BATTLE_TIE_RANGE = 1_000_000
#: CP-SAT workers.
NUM_WORKERS = 8


class Infeasible(Exception):
    """No assignment satisfies the instance. ``str(err)`` is a message for the instructor:
    it names the numbers that clash and what to change."""


@dataclass(frozen=True)
class Instance:
    """One assignment problem. Preferences list paper ids best first; a student missing
    from a preference mapping ranks nothing."""

    students: tuple[str, ...]
    standard_papers: tuple[int, ...]
    battle_pairs: tuple[tuple[int, int], ...]
    standard_prefs: Mapping[str, Sequence[int]]
    battle_prefs: Mapping[str, Sequence[int]]
    max_presenters: int = 2
    battle_group: tuple[int, int] = (3, 4)
    seed: int = 0
    time_limit_s: float = 30.0


@dataclass
class KindResult:
    """The assignment for one kind (standard or battle) and how good it is."""

    assignment: dict[str, int]
    ranks: dict[str, int]
    unranked: set[str]
    worst_rank: int
    total_rank: int
    #: The total of the pure minimum-sum optimum on the same input (no worst-rank bound):
    #: ``total_rank - min_sum_total`` is the cost of fairness.
    min_sum_total: int
    proven_optimal: bool
    method: str
    solve_seconds: float


@dataclass
class Solution:
    standard: KindResult
    battle: KindResult
    running_battles: list[tuple[int, int]]


@dataclass
class Stats:
    """Summary of an assignment against the students' preferences."""

    n: int
    profile: dict[int, int]
    unranked: int
    mean_rank: float
    pct_first: float
    pct_top3: float
    worst_rank: int
    at_worst: int


# ----------------------------------------------------------------------------- ranks


def rank_of(prefs: Mapping[str, Sequence[int]], student: str, paper: int) -> int:
    """1-based position of ``paper`` in the student's list, or ``len(list) + 1`` if absent."""
    lst = prefs.get(student, ())
    for i, p in enumerate(lst):
        if p == paper:
            return i + 1
    return len(lst) + 1


def _listed(prefs: Mapping[str, Sequence[int]], student: str) -> dict[int, int]:
    """paper -> rank for the papers on the student's list (first occurrence wins)."""
    out: dict[int, int] = {}
    for i, p in enumerate(prefs.get(student, ())):
        out.setdefault(p, i + 1)
    return out


def _unranked_rank(prefs: Mapping[str, Sequence[int]], student: str) -> int:
    return len(prefs.get(student, ())) + 1


def _result(
    assignment: dict[str, int],
    prefs: Mapping[str, Sequence[int]],
    *,
    min_sum_total: int | None,
    proven_optimal: bool,
    method: str,
    solve_seconds: float,
) -> KindResult:
    ranks = {s: rank_of(prefs, s, p) for s, p in assignment.items()}
    unranked = {s for s, r in ranks.items() if r == _unranked_rank(prefs, s)}
    total = sum(ranks.values())
    return KindResult(
        assignment=assignment,
        ranks=ranks,
        unranked=unranked,
        worst_rank=max(ranks.values(), default=0),
        total_rank=total,
        min_sum_total=total if min_sum_total is None else min_sum_total,
        proven_optimal=proven_optimal,
        method=method,
        solve_seconds=solve_seconds,
    )


def _rng(seed: int, purpose: str) -> random.Random:
    # String seeds are hashed with SHA-512 by `random`, not with the per-process str hash:
    # reproducible across runs and machines.
    return random.Random(f"coursebot-solver/{purpose}/{seed}")


# ----------------------------------------------------------------------------- validation


def _validate(inst: Instance) -> None:
    """Malformed instances are programming errors (ValueError). Bad course settings (the
    presenter limit, the battle group size) are :class:`Infeasible`, whose message the
    instructor reads; they are checked by the kind that uses them."""
    if len(set(inst.students)) != len(inst.students):
        raise ValueError("duplicate student keys in the instance")
    if len(set(inst.standard_papers)) != len(inst.standard_papers):
        raise ValueError("duplicate standard paper ids in the instance")
    sides = [p for pair in inst.battle_pairs for p in pair]
    if any(len(pair) != 2 for pair in inst.battle_pairs) or len(set(sides)) != len(sides):
        raise ValueError("battle pairs must be pairs of distinct papers, each in one pair")
    if set(sides) & set(inst.standard_papers):
        raise ValueError("a paper cannot be both a standard and a battle paper")
    if inst.time_limit_s <= 0:
        raise ValueError("time_limit_s must be positive")


# ----------------------------------------------------------------------------- standard kind


def presenter_cap(inst: Instance) -> int:
    """Presenters allowed per standard paper: 1 while everyone can present alone, else
    ``max_presenters``. Raises :class:`Infeasible` if even that cannot seat everyone."""
    n, n_papers, most = len(inst.students), len(inst.standard_papers), inst.max_presenters
    if most < 1:
        raise Infeasible(f"The presenter limit must be at least 1 per paper (it is {most}).")
    if n <= n_papers:
        return 1
    if n_papers == 0:
        raise Infeasible(
            f"There are no standard papers for {n} students to present; add standard papers."
        )
    if n > n_papers * most:
        more = math.ceil(n / most) - n_papers
        raise Infeasible(
            f"{n} students cannot each present a standard paper: {n_papers} papers with at "
            f"most {most} presenters each seat only {n_papers * most}. Add at least {more} "
            f"standard paper{'s' if more != 1 else ''}, or allow "
            f"{math.ceil(n / n_papers)} presenters per paper."
        )
    return most


@dataclass
class _StdGraph:
    """The student-paper arcs of the standard kind, as arrays (see the module docstring).

    Nodes: 0 source, ``1..n`` students, ``n+1..n+P`` papers, ``n+P+1`` hub, ``n+P+2`` sink.
    """

    n: int
    n_papers: int
    cap: int
    arc_student: np.ndarray  # ranked arcs: student index
    arc_paper: np.ndarray  # ranked arcs: paper index
    arc_rank: np.ndarray
    arc_tie: np.ndarray
    hub_rank: np.ndarray  # per student: len(list) + 1
    hub_tie: np.ndarray  # per student: tie-break on student -> hub
    paper_tie: np.ndarray  # per paper: tie-break on hub -> paper
    pair_order: list[int]  # seeded order in which hub students take hub papers

    @property
    def hub(self) -> int:
        return self.n + self.n_papers + 1

    @property
    def sink(self) -> int:
        return self.n + self.n_papers + 2


def _std_graph(inst: Instance, cap: int) -> _StdGraph:
    rng = _rng(inst.seed, "standard")
    index = {p: j for j, p in enumerate(inst.standard_papers)}
    a_s: list[int] = []
    a_p: list[int] = []
    a_r: list[int] = []
    for i, s in enumerate(inst.students):
        for p, r in _listed(inst.standard_prefs, s).items():
            if p in index:
                a_s.append(i)
                a_p.append(index[p])
                a_r.append(r)
    n, n_papers = len(inst.students), len(inst.standard_papers)
    order = list(range(n))
    rng.shuffle(order)
    return _StdGraph(
        n=n,
        n_papers=n_papers,
        cap=cap,
        arc_student=np.array(a_s, dtype=np.int64),
        arc_paper=np.array(a_p, dtype=np.int64),
        arc_rank=np.array(a_r, dtype=np.int64),
        arc_tie=np.array([rng.randrange(TIE_RANGE) for _ in a_s], dtype=np.int64),
        hub_rank=np.array(
            [_unranked_rank(inst.standard_prefs, s) for s in inst.students], dtype=np.int64
        ),
        hub_tie=np.array([rng.randrange(TIE_RANGE) for _ in range(n)], dtype=np.int64),
        paper_tie=np.array([rng.randrange(TIE_RANGE) for _ in range(n_papers)], dtype=np.int64),
        pair_order=order,
    )


def _rank_weight(n: int) -> int:
    """``M`` of the standard kind: one unit of rank total outweighs all tie-break costs
    (each student pays at most two tie-breaks below ``TIE_RANGE``: own arc and hub arc)."""
    return 2 * TIE_RANGE * max(n, 1)


def _count_weight(n: int, k: int) -> int:
    """``K`` of the standard kind at threshold ``k``: one more student at rank ``k``
    outweighs any difference in rank total and tie-breaks. With every rank ``<= k``, a
    student's other costs are below ``k * M + 2 * TIE_RANGE``, so ``n`` of them are below
    ``K``."""
    return max(n, 1) * (k * _rank_weight(n) + 2 * TIE_RANGE)


def _std_arcs(
    g: _StdGraph, k: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]:
    """All arcs for threshold ``k`` (``None``: no threshold) as (tails, heads, capacities,
    costs, index of the first ranked arc, student index of each student -> hub arc).

    Arc order: source->student, ranked student->paper, student->hub, hub->paper, paper->sink.
    Costs are ``rank * M + tie`` on student arcs, ``tie`` on hub->paper arcs, 0 elsewhere;
    a student's arc costs plus a hub->paper cost stay below ``M`` apart from the rank part.
    With a threshold, the student arcs of rank exactly ``k`` (ranked or to the hub) also
    cost ``K`` (:func:`_count_weight`), so the flow first minimises how many students get
    rank ``k``.
    """
    n, n_papers = g.n, g.n_papers
    big_m = _rank_weight(n)
    keep = np.ones(len(g.arc_rank), dtype=bool) if k is None else g.arc_rank <= k
    hub_students = np.arange(n) if k is None else np.flatnonzero(g.hub_rank <= k)
    big_k = 0 if k is None else _count_weight(n, k)
    students = np.arange(n, dtype=np.int64)
    papers = np.arange(n_papers, dtype=np.int64)
    tails = np.concatenate(
        [
            np.zeros(n, dtype=np.int64),
            g.arc_student[keep] + 1,
            hub_students + 1,
            np.full(n_papers, g.hub, dtype=np.int64),
            papers + n + 1,
        ]
    )
    heads = np.concatenate(
        [
            students + 1,
            g.arc_paper[keep] + n + 1,
            np.full(len(hub_students), g.hub, dtype=np.int64),
            papers + n + 1,
            np.full(n_papers, g.sink, dtype=np.int64),
        ]
    )
    caps = np.concatenate(
        [
            np.ones(n + int(keep.sum()) + len(hub_students), dtype=np.int64),
            np.full(n_papers, g.cap, dtype=np.int64),
            np.full(n_papers, g.cap, dtype=np.int64),
        ]
    )
    costs = np.concatenate(
        [
            np.zeros(n, dtype=np.int64),
            g.arc_rank[keep] * big_m + g.arc_tie[keep] + big_k * (g.arc_rank[keep] == k),
            g.hub_rank[hub_students] * big_m
            + g.hub_tie[hub_students]
            + big_k * (g.hub_rank[hub_students] == k),
            g.paper_tie,
            np.zeros(n_papers, dtype=np.int64),
        ]
    )
    return tails, heads, caps, costs, n, hub_students


def _max_seated(g: _StdGraph, k: int) -> int:
    """How many students can be seated using only arcs of rank ``<= k`` (maximum flow)."""
    tails, heads, caps, _costs, _first, _hub = _std_arcs(g, k)
    mf = max_flow.SimpleMaxFlow()
    mf.add_arcs_with_capacity(tails, heads, caps)
    status = mf.solve(0, g.sink)
    if status != mf.OPTIMAL:  # pragma: no cover - OR-Tools failure
        raise RuntimeError(f"max flow failed: {status}")
    return int(mf.optimal_flow())


def _check_cost_range(costs: np.ndarray, n_nodes: int) -> None:
    """OR-Tools' min-cost flow multiplies every cost by ``n_nodes + 1`` and refuses
    (``BAD_COST_RANGE``) costs above ``2**63 / (2 * (n_nodes + 1))``; we stop at half of
    that, with a message. The largest cost is about ``K ~ 2 * TIE_RANGE * n**2 * k*``: at
    5000 students (8336 nodes with 3333 papers) ``K ~ 5e10 * k*`` against a limit of about
    ``2.8e14``, so any worst rank ``k*`` up to about 5000 fits, far beyond real lists (the
    benchmark's ``k*`` is 8 at most: 7 ranked papers, then unranked). Measured: the
    N = 5000 benchmark instance still solves exactly with ``K`` inflated 650-fold, to just
    under this limit."""
    limit = np.iinfo(np.int64).max // (4 * (n_nodes + 1))
    top = int(np.abs(costs).max(initial=0))
    if top > limit:
        raise RuntimeError(
            f"min-cost flow costs too large for int64 ({top} > {limit}): too many students "
            "or too long preference lists"
        )


def _min_cost_assignment(inst: Instance, g: _StdGraph, k: int | None) -> dict[str, int]:
    """The min-cost flow on arcs of rank ``<= k``, decoded into student -> paper id. With a
    threshold ``k`` it minimises the count at rank ``k``, then the total, then the tie-break
    (see :func:`_std_arcs`); without, the total, then the tie-break."""
    tails, heads, caps, costs, first, hub_students = _std_arcs(g, k)
    _check_cost_range(costs, g.sink + 1)
    mcf = min_cost_flow.SimpleMinCostFlow()
    arcs = mcf.add_arcs_with_capacity_and_unit_cost(tails, heads, caps, costs)
    mcf.set_nodes_supplies(np.array([0, g.sink]), np.array([g.n, -g.n]))
    status = mcf.solve()
    if status != mcf.OPTIMAL:  # pragma: no cover - seating was checked before
        raise RuntimeError(f"min-cost flow failed: {status}")
    flows = mcf.flows(arcs)
    n_ranked = len(tails) - g.n - len(hub_students) - 2 * g.n_papers
    assignment: dict[str, int] = {}
    for a in range(first, first + n_ranked):
        if flows[a]:
            assignment[inst.students[tails[a] - 1]] = inst.standard_papers[heads[a] - g.n - 1]
    hub_start = first + n_ranked
    via_hub = {
        int(tails[a]) - 1 for a in range(hub_start, hub_start + len(hub_students)) if flows[a]
    }
    hub_papers: list[int] = []
    out_start = hub_start + len(hub_students)
    for j in range(g.n_papers):
        hub_papers += [inst.standard_papers[j]] * int(flows[out_start + j])
    takers = [i for i in g.pair_order if i in via_hub]
    for i, p in zip(takers, hub_papers, strict=True):
        assignment[inst.students[i]] = p
    return assignment


def _empty(method: str) -> KindResult:
    return _result({}, {}, min_sum_total=0, proven_optimal=True, method=method, solve_seconds=0.0)


def min_sum_standard(inst: Instance) -> KindResult:
    """The pure utilitarian optimum of the standard kind (minimum total rank, no bound on
    the worst rank), with the same seeded tie-break. For comparison ("cost of fairness")."""
    _validate(inst)
    if not inst.students:
        return _empty("min-cost flow")
    t0 = time.perf_counter()
    g = _std_graph(inst, presenter_cap(inst))
    assignment = _min_cost_assignment(inst, g, None)
    return _result(
        assignment,
        inst.standard_prefs,
        min_sum_total=None,
        proven_optimal=True,
        method="min-cost flow",
        solve_seconds=time.perf_counter() - t0,
    )


def solve_standard(inst: Instance) -> KindResult:
    """The lexicographic optimum of the standard kind: minimum worst rank ``k*`` (max-flow
    binary search), then (one min-cost flow) fewest students at rank ``k*``, then minimum
    total, then the seeded tie-break.

    ``solve_seconds`` times this solve only; ``min_sum_total`` comes from a separate
    :func:`min_sum_standard` solve.
    """
    _validate(inst)
    if not inst.students:
        return _empty("min-cost flow")
    t0 = time.perf_counter()
    g = _std_graph(inst, presenter_cap(inst))
    low, high = 1, int(g.hub_rank.max())  # at `high` anyone can take any paper: all seated
    while low < high:
        mid = (low + high) // 2
        if _max_seated(g, mid) == g.n:
            high = mid
        else:
            low = mid + 1
    assignment = _min_cost_assignment(inst, g, low)
    seconds = time.perf_counter() - t0
    best_sum = min_sum_standard(inst).total_rank
    return _result(
        assignment,
        inst.standard_prefs,
        min_sum_total=best_sum,
        proven_optimal=True,
        method="min-cost flow",
        solve_seconds=seconds,
    )


# ----------------------------------------------------------------------------- battle kind


def _battle_counts(n: int, m: int, lo: int, hi: int) -> list[int]:
    """The numbers of running battles that can seat exactly ``n`` students."""
    return [r for r in range(m + 1) if 2 * lo * r <= n <= 2 * hi * r]


def _battles(r: int, verb: str) -> str:
    """ "1 battle seats", "2 battles seat"."""
    return f"{r} battles {verb}" if r != 1 else f"1 battle {verb}s"


def _battle_infeasible(n: int, m: int, lo: int, hi: int) -> Infeasible:
    """The message for a student count that no number of running battles can seat."""
    who = f"{n} student{'s' if n != 1 else ''}"
    head = f"{who} cannot fill battles of {lo}–{hi} per side with {m} pair{'s' if m != 1 else ''}"
    if n > 2 * hi * m:
        fixes = []
        need = next((r for r in range(m + 1, n + 1) if 2 * lo * r <= n <= 2 * hi * r), None)
        if need is not None:
            fixes.append(f"add battle pairs (at least {need} in all)")
        if m:
            fixes.append(f"raise the maximum group size to {math.ceil(n / (2 * m))}")
        seat = f"{_battles(m, 'seat')} at most {2 * hi * m}" if m else "there are no battles"
        return Infeasible(f"{head}; {seat}. To seat everyone, {' or '.join(fixes)}.")
    # A gap: r0 - 1 battles have too few seats, r0 battles need more students than there are.
    r0 = max(1, math.ceil(n / (2 * hi)))
    if n < 2:
        return Infeasible(f"{head}: a battle needs at least one student on each side.")
    few = f"{_battles(r0 - 1, 'seat')} at most {2 * hi * (r0 - 1)} and " if r0 > 1 else ""
    fixes = [f"lower the minimum group size to {n // (2 * r0)}"]
    if r0 > 1:
        fixes.append(f"raise the maximum to {math.ceil(n / (2 * (r0 - 1)))}")
    return Infeasible(
        f"{head}: {few}{_battles(r0, 'need')} at least {2 * lo * r0} students. "
        f"To seat everyone, {' or '.join(fixes)}."
    )


def _check_group(inst: Instance) -> tuple[int, int]:
    lo, hi = inst.battle_group
    if not 1 <= lo <= hi:
        raise Infeasible(
            f"The battle group size must be a range like 3–4 with 1 ≤ minimum ≤ maximum "
            f"(it is {lo}–{hi})."
        )
    return lo, hi


def _check_battles(inst: Instance) -> list[int]:
    """The numbers of running battles that seat everyone, or :class:`Infeasible`."""
    n, m = len(inst.students), len(inst.battle_pairs)
    lo, hi = _check_group(inst)
    counts = _battle_counts(n, m, lo, hi)
    if not counts:
        raise _battle_infeasible(n, m, lo, hi)
    return counts


@dataclass
class _BattleData:
    sides: list[int]  # paper ids, side j belongs to battle j // 2
    rank: np.ndarray  # n x sides
    tie: np.ndarray  # n x sides, in [0, BATTLE_TIE_RANGE)


def _battle_data(inst: Instance) -> _BattleData:
    sides = [p for pair in inst.battle_pairs for p in pair]
    rank = np.array(
        [[rank_of(inst.battle_prefs, s, p) for p in sides] for s in inst.students],
        dtype=np.int64,
    ).reshape(len(inst.students), len(sides))
    rng = _rng(inst.seed, "battle")
    tie = np.array(
        [[rng.randrange(BATTLE_TIE_RANGE) for _ in sides] for _ in inst.students],
        dtype=np.int64,
    ).reshape(rank.shape)
    return _BattleData(sides=sides, rank=rank, tie=tie)


def _heuristic_battles(inst: Instance, d: _BattleData, counts: list[int]) -> np.ndarray:
    """A feasible battle assignment (side index per student), for the CP-SAT hint.

    Runs the most popular battles (score: sum of 1/rank over both sides), as many as can
    seat everyone, then a min-cost flow on those sides where each side's first ``lo`` seats
    carry a large negative cost (so lower bounds are met: the count makes that possible).
    """
    n = len(d.rank)
    lo, hi = inst.battle_group
    r = max(counts)
    score = (1.0 / d.rank).sum(axis=0)
    by_battle = score[0::2] + score[1::2]
    running = sorted(np.argsort(-by_battle, kind="stable")[:r].tolist())
    sides = [2 * b + t for b in running for t in (0, 1)]
    big = int(d.rank.max()) * max(n, 1) + 1
    src, sink = 0, n + len(sides) + 1
    tails: list[int] = []
    heads: list[int] = []
    caps: list[int] = []
    costs: list[int] = []

    def arc(t: int, h: int, c: int, w: int) -> None:
        tails.append(t)
        heads.append(h)
        caps.append(c)
        costs.append(w)

    for i in range(n):
        arc(src, i + 1, 1, 0)
    first = len(tails)
    for i in range(n):
        for q, j in enumerate(sides):
            arc(i + 1, n + 1 + q, 1, int(d.rank[i, j]))
    for q in range(len(sides)):
        arc(n + 1 + q, sink, lo, -big)
        arc(n + 1 + q, sink, hi - lo, 0)
    mcf = min_cost_flow.SimpleMinCostFlow()
    arcs = mcf.add_arcs_with_capacity_and_unit_cost(
        np.array(tails), np.array(heads), np.array(caps), np.array(costs)
    )
    mcf.set_nodes_supplies(np.array([src, sink]), np.array([n, -n]))
    if mcf.solve() != mcf.OPTIMAL:  # pragma: no cover - counts guarantee feasibility
        raise RuntimeError("battle warm start failed")
    flows = mcf.flows(arcs)
    choice = np.zeros(n, dtype=np.int64)
    for a in range(first, first + n * len(sides)):
        if flows[a]:
            i, q = divmod(a - first, len(sides))
            choice[i] = sides[q]
    return choice


class _BattleModel:
    """CP-SAT model of the battle kind, keeping only student-side pairs of rank ``<= k``.

    With ``worst=True``, ``self.worst`` is constrained to be at least every student's rank
    (to minimise it); otherwise it is left free and unused. ``self.at_k`` counts the
    students at rank exactly ``k``; ``self.total`` and ``self.tie`` are the rank total and
    the tie-break.
    """

    def __init__(
        self, inst: Instance, d: _BattleData, counts: list[int], k: int, *, worst: bool = False
    ) -> None:
        n, n_sides = d.rank.shape
        lo, hi = inst.battle_group
        self.d = d
        self.model = md = cp_model.CpModel()
        self.x: dict[tuple[int, int], cp_model.IntVar] = {
            (i, j): md.new_bool_var(f"x{i}_{j}")
            for i in range(n)
            for j in range(n_sides)
            if d.rank[i, j] <= k
        }
        self.run = [md.new_bool_var(f"run{b}") for b in range(n_sides // 2)]
        per_student: list[list[tuple[int, cp_model.IntVar]]] = [[] for _ in range(n)]
        per_side: list[list[cp_model.IntVar]] = [[] for _ in range(n_sides)]
        for (i, j), v in self.x.items():
            per_student[i].append((j, v))
            per_side[j].append(v)
        for i in range(n):
            md.add_exactly_one(v for _, v in per_student[i])
        for j in range(n_sides):
            size = cp_model.LinearExpr.sum(per_side[j])
            md.add(size >= lo * self.run[j // 2])
            md.add(size <= hi * self.run[j // 2])
        # Redundant, helps the search: how many battles can run at all.
        md.add_linear_constraint(cp_model.LinearExpr.sum(self.run), min(counts), max(counts))
        keys = list(self.x)
        xs = [self.x[key] for key in keys]
        self.total = cp_model.LinearExpr.weighted_sum(xs, [int(d.rank[key]) for key in keys])
        self.tie = cp_model.LinearExpr.weighted_sum(xs, [int(d.tie[key]) for key in keys])
        self.at_k = cp_model.LinearExpr.sum([self.x[key] for key in keys if d.rank[key] == k])
        self.worst = md.new_int_var(1, max(k, 1), "worst")
        if worst:
            for i in range(n):
                own = [v for _, v in per_student[i]]
                ranks = [int(d.rank[i, j]) for j, _ in per_student[i]]
                md.add(cp_model.LinearExpr.weighted_sum(own, ranks) <= self.worst)

    def hint(self, choice: np.ndarray) -> None:
        self.model.clear_hints()
        for (i, j), v in self.x.items():
            self.model.add_hint(v, int(choice[i] == j))
        chosen = {int(j) // 2 for j in choice}
        for b, v in enumerate(self.run):
            self.model.add_hint(v, int(b in chosen))

    def solve(self, inst: Instance, deadline: float) -> tuple[np.ndarray | None, bool]:
        """Solve; return (side per student or None if nothing found, proven optimal)."""
        solver = cp_model.CpSolver()
        prm = solver.parameters
        prm.num_workers = NUM_WORKERS
        prm.max_time_in_seconds = max(deadline - time.perf_counter(), 0.05)
        status = solver.solve(self.model)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            if status == cp_model.INFEASIBLE:  # pragma: no cover - counts guarantee a solution
                raise RuntimeError("battle model unexpectedly infeasible")
            return None, False
        choice = np.full(len(self.d.rank), -1, dtype=np.int64)
        for (i, j), v in self.x.items():
            if solver.boolean_value(v):
                choice[i] = j
        return choice, status == cp_model.OPTIMAL


def _choice_cost(d: _BattleData, choice: np.ndarray) -> tuple[int, int]:
    r = d.rank[np.arange(len(choice)), choice]
    return int(r.max(initial=0)), int(r.sum())


def solve_battles(inst: Instance) -> tuple[KindResult, list[tuple[int, int]]]:
    """The lexicographic optimum of the battle kind (CP-SAT), and the battles that run.

    Phases (all with one deadline, ``time_limit_s`` from the start): minimise the worst
    rank ``W``; with ``W <= W*``, minimise the number of students at rank ``W*``; fix that
    number too and minimise ``M * total + tie_break``; then the pure minimum total for
    ``min_sum_total``. If a phase stops at the time limit, its best solution is kept and
    ``proven_optimal`` is False; the warm start guarantees there always is a solution.
    ``solve_seconds`` covers the three phases of our result (not the min-sum one).
    """
    _validate(inst)
    if not inst.students:
        return _empty("CP-SAT"), []
    counts = _check_battles(inst)
    t0 = time.perf_counter()
    deadline = t0 + inst.time_limit_s
    d = _battle_data(inst)
    n = len(inst.students)
    k_all = int(d.rank.max())
    warm = _heuristic_battles(inst, d, counts)

    # Phase 1: minimise the worst rank.
    m1 = _BattleModel(inst, d, counts, k_all, worst=True)
    m1.hint(warm)
    m1.model.add(m1.worst <= _choice_cost(d, warm)[0])
    m1.model.minimize(m1.worst)
    found, proven1 = m1.solve(inst, deadline)
    best = found if found is not None else warm
    worst = _choice_cost(d, best)[0]

    # Phase 2: with worst <= W*, minimise the number of students at rank W*.
    m2 = _BattleModel(inst, d, counts, worst)
    m2.hint(best)
    m2.model.minimize(m2.at_k)
    found, proven2 = m2.solve(inst, deadline)
    if found is not None:
        best = found
    # Students at rank W* (not at the worst rank of `best`, which an unproven phase 1 may
    # leave below W*: then none are at W*).
    at_worst = int((d.rank[np.arange(n), best] == worst).sum())

    # Phase 3: with worst <= W* and at most C* students at W*, minimise M * total + tie.
    m3 = _BattleModel(inst, d, counts, worst)
    m3.hint(best)
    m3.model.add(m3.at_k <= at_worst)
    m3.model.minimize((BATTLE_TIE_RANGE * n) * m3.total + m3.tie)
    found, proven3 = m3.solve(inst, deadline)
    if found is not None:
        best = found
    seconds = time.perf_counter() - t0

    # For reporting: the pure minimum total (no worst-rank bound).
    m4 = _BattleModel(inst, d, counts, k_all)
    m4.hint(best)
    m4.model.minimize(m4.total)
    found, proven4 = m4.solve(inst, deadline)
    total = _choice_cost(d, best)[1]
    min_sum = total if found is None else min(total, _choice_cost(d, found)[1])

    assignment = {s: d.sides[int(best[i])] for i, s in enumerate(inst.students)}
    running_idx = sorted({int(j) // 2 for j in best})
    result = _result(
        assignment,
        inst.battle_prefs,
        min_sum_total=min_sum,
        proven_optimal=proven1 and proven2 and proven3 and proven4,
        method="CP-SAT",
        solve_seconds=seconds,
    )
    return result, [inst.battle_pairs[b] for b in running_idx]


def solve(inst: Instance) -> Solution:
    """Both kinds: see :func:`solve_standard` and :func:`solve_battles`."""
    standard = solve_standard(inst)
    battle, running = solve_battles(inst)
    return Solution(standard=standard, battle=battle, running_battles=running)


# ----------------------------------------------------------------------------- baseline


def random_serial_dictatorship(inst: Instance, kind: str, seed: int) -> dict[str, int]:
    """Random serial dictatorship: students in a seeded random order each take their best
    paper that still has room; one whose listed papers are all full takes a paper with room
    chosen at random (seeded). Deterministic for a given instance, kind and seed.

    ``kind="standard"``: room is the same presenter cap as the solver's, so the result is
    always a feasible standard assignment; this is the main comparison.

    ``kind="battle"``: each battle side has room for ``hi`` students (the upper end of
    ``battle_group``), and nothing else is enforced: RSD has no honest way to choose which
    battles run, so its result may leave a side under ``lo`` or a battle with one empty side.
    It solves a relaxation of the battle problem, so its ranks are an optimistic baseline,
    not a feasible alternative; :class:`Infeasible` only if ``n`` exceeds all the seats.
    """
    _validate(inst)
    if kind == "standard":
        cap = presenter_cap(inst)
        papers = list(inst.standard_papers)
        room = dict.fromkeys(papers, cap)
        prefs = inst.standard_prefs
    elif kind == "battle":
        hi = _check_group(inst)[1]
        papers = [p for pair in inst.battle_pairs for p in pair]
        n, seats = len(inst.students), hi * len(papers)
        if n > seats:
            raise Infeasible(
                f"{n} students cannot sit on {len(papers)} battle sides of at most {hi}."
            )
        room = dict.fromkeys(papers, hi)
        prefs = inst.battle_prefs
    else:
        raise ValueError(f'kind must be "standard" or "battle", not {kind!r}')
    rng = _rng(seed, f"rsd-{kind}")
    order = list(inst.students)
    rng.shuffle(order)
    out: dict[str, int] = {}
    for s in order:
        pick = next((p for p in prefs.get(s, ()) if room.get(p, 0) > 0), None)
        if pick is None:
            pick = rng.choice([p for p in papers if room[p] > 0])
        room[pick] -= 1
        out[s] = pick
    return {s: out[s] for s in inst.students}


# ----------------------------------------------------------------------------- reporting


def stats(assignment: Mapping[str, int], prefs: Mapping[str, Sequence[int]]) -> Stats:
    """Rank profile and summary numbers. ``pct_first`` and ``pct_top3`` count only papers
    on the student's list (a student who ranked nothing, whose unranked rank is 1, does not
    count as getting a first choice); ``profile`` counts every student at their rank."""
    ranks = {s: rank_of(prefs, s, p) for s, p in assignment.items()}
    n = len(ranks)
    listed = {s: r for s, r in ranks.items() if r <= len(prefs.get(s, ()))}
    worst = max(ranks.values(), default=0)
    return Stats(
        n=n,
        profile=dict(sorted(Counter(ranks.values()).items())),
        unranked=n - len(listed),
        mean_rank=sum(ranks.values()) / n if n else 0.0,
        pct_first=100.0 * sum(r == 1 for r in listed.values()) / n if n else 0.0,
        pct_top3=100.0 * sum(r <= 3 for r in listed.values()) / n if n else 0.0,
        worst_rank=worst,
        at_worst=sum(r == worst for r in ranks.values()),
    )


def head_to_head(
    a: Mapping[str, int], b: Mapping[str, int], prefs: Mapping[str, Sequence[int]]
) -> tuple[int, int, int]:
    """(students who prefer ``a``, who prefer ``b``, indifferent), over students in both."""
    prefer_a = prefer_b = same = 0
    for s in a.keys() & b.keys():
        ra, rb = rank_of(prefs, s, a[s]), rank_of(prefs, s, b[s])
        if ra < rb:
            prefer_a += 1
        elif rb < ra:
            prefer_b += 1
        else:
            same += 1
    return prefer_a, prefer_b, same


def oversubscribed(
    prefs: Mapping[str, Sequence[int]], capacity: Mapping[int, int]
) -> list[tuple[int, int]]:
    """(paper, first-choice count) for papers named first by more students than they can
    take, most first (ties by paper id). Papers missing from ``capacity`` are ignored."""
    firsts = Counter(lst[0] for lst in prefs.values() if lst)
    over = [(p, c) for p, c in firsts.items() if p in capacity and c > capacity[p]]
    return sorted(over, key=lambda pc: (-pc[1], pc[0]))


def histogram_png(profile: Mapping[int, int], title: str) -> bytes:
    """A bar chart (PNG) of a rank profile: students per rank received, every rank from 1
    to the largest shown. Uses matplotlib's Agg canvas directly (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    top = max(profile, default=1)
    xs = list(range(1, top + 1))
    ys = [profile.get(x, 0) for x in xs]
    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bars = ax.bar(xs, ys, color="#4C72B0")
    ax.bar_label(bars, labels=[str(y) if y else "" for y in ys], padding=2, fontsize=9)
    ax.set_xticks(xs, [ordinal(x) for x in xs])
    ax.set_xlabel("Choice received (rank in the student's list)")
    ax.set_ylabel("Students")
    ax.set_title(title)
    ax.set_ylim(0, max(ys, default=0) * 1.15 + 1)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def ordinal(n: int) -> str:
    """1 -> "1st", 2 -> "2nd", 3 -> "3rd", 4 -> "4th", 11 -> "11th", 22 -> "22nd"."""
    if 10 <= abs(n) % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(abs(n) % 10, "th")
    return f"{n}{suffix}"
