"""The solve of one kind: min-cost flow where the rules allow it, branch and bound on flows
for partners, conflicts and coverage minimums of 2 or more, CP-SAT (then flow) for the
battles that run, and the result. See the package docstring."""

from __future__ import annotations

import time

import numpy as np

from ._core import Instance, KindResult
from ._cp import Budget, CpNet, ideal, worst_of
from ._explain import diagnose, empty_result, flow_infeasible, not_found, result
from ._flow import Face
from ._net import UNIT, UPPER, Net, build_net
from ._rules import BATTLE, STANDARD, Problem, build, validate
from ._search import (
    Flowed,
    branch_and_bound,
    fewest_worst,
    flow_lex,
    heuristic,
    keeps_rules,
    student_arcs,
    value,
)

FLOW = "min-cost flow"
CP_FLOW = "CP-SAT + min-cost flow"
BNB = "branch and bound on min-cost flows"
#: Branch-and-bound nodes per second of ``time_limit_s`` and student (see _bnb_nodes).
BNB_WORK = 10_000


def _cover_bound(prob: Problem) -> int:
    """The most papers (battles) that could be covered (run), counting seats only."""
    if prob.kind == BATTLE:
        return prob.run_range[1]
    left, count = prob.n, 0
    for need in sorted(x for j, x in enumerate(prob.lo) if x >= 1 and prob.hi[j] >= x):
        if need <= left:
            left -= need
            count += 1
    return count


def _decisions(prob: Problem, net: Net, flow: np.ndarray) -> tuple[dict, dict]:
    count = np.zeros(prob.n_slots, dtype=np.int64)
    units = net.kind == UNIT
    np.add.at(count, net.slot[units], flow[units])
    counts: dict[int, tuple[int, int]] = {}
    if prob.kind == BATTLE:
        for b in range(len(prob.battles)):
            on = count[2 * b] > 0
            for j in (2 * b, 2 * b + 1):
                counts[j] = (prob.lo[j], prob.hi[j]) if on else (0, 0)
    elif prob.coverage:
        for j in range(prob.n_slots):
            if prob.lo[j] >= 1:
                covered = count[j] >= prob.lo[j]
                counts[j] = (prob.lo[j], prob.hi[j]) if covered else (0, prob.lo[j] - 1)
    choice = net.decode(flow)
    placed = {i: int(choice[i]) for i in range(prob.n) if prob.explicit[i]}
    placed.update({i: int(choice[i]) for i in prob.group_of()})
    return counts, placed


def cp_lex(
    prob: Problem, net: Net, inst: Instance, *, egalitarian: bool = True
) -> tuple[np.ndarray, bool, list[str]]:
    """CP-SAT through the levels down to the rank total: (the best flow, proven, notes)."""
    notes: list[str] = []
    choice = heuristic(prob, net, inst.seed)
    hint = net.encode(choice) if choice is not None else None
    # Only a hint that keeps every rule may stand for an answer (and end a phase early).
    best = hint if hint is not None and keeps_rules(prob, choice) else None  # type: ignore[arg-type]
    cp = CpNet(net, inst.seed)
    budget = Budget(inst.time_limit_s)
    proven = True
    # The flow relaxation (the same network without the side constraints) bounds every
    # level from below as long as the answer so far matches it level by level: a phase
    # whose answer already meets the bound needs no CP-SAT run.
    relaxed = flow_lex(net, egalitarian=egalitarian)
    matching = relaxed is not None

    def run(cost: np.ndarray) -> str:
        nonlocal best
        flow, status = cp.minimize(cost, budget, best if best is not None else hint)
        if flow is not None:
            best = flow
        elif status == "infeasible":
            raise diagnose(prob, inst)
        elif best is None:
            raise not_found(prob, inst)
        return status

    def step(cost: np.ndarray, known: int | None = None) -> None:
        nonlocal proven, matching
        bound = value(cost, relaxed.flow) if matching and relaxed is not None else None
        if best is None or not (ideal(net, cost, best) or value(cost, best) in (known, bound)):
            status = run(cost)
            assert best is not None
            # A phase stopped by the limit is still optimal if it meets a bound.
            met = ideal(net, cost, best) or value(cost, best) in (known, bound)
            proven = proven and (status == "optimal" or met)
        assert best is not None
        matching = matching and value(cost, best) == bound
        cp.bound(cost, value(cost, best))

    for name in UPPER:
        cost = net.cost.get(name)
        if cost is not None:
            step(cost, -_cover_bound(prob) if name == "cover" else None)
    rank = net.cost["rank"]
    studs = student_arcs(net)
    if egalitarian:
        need = fewest_worst(net, net.cap)
        if matching and relaxed is not None:
            need = max(need, relaxed.worst)
        top = worst_of(net, best) if best is not None else int(net.rank.max(initial=1))
        if best is None or top > need:
            flow, status = cp.minimize_worst(budget, best if best is not None else hint, top)
            if flow is not None:
                best = flow
            elif status == "infeasible":
                raise diagnose(prob, inst)
            elif best is None:
                raise not_found(prob, inst)
            proven = proven and status == "optimal"
        assert best is not None
        worst = worst_of(net, best)
        matching = matching and relaxed is not None and worst == relaxed.worst
        cp.forbid(studs & (net.rank > worst))
        step((studs & (net.rank == worst)).astype(np.int64))
    step(rank)
    if not proven:
        notes.append(
            f"The {prob.kind} solver stopped at its time limit ({inst.time_limit_s:g} s) "
            f"before proving this is the best assignment; a longer limit may find a better one."
        )
    assert best is not None
    return best, proven, notes


def _bnb_nodes(prob: Problem, inst: Instance) -> int:
    """The node limit of the branch and bound: about ``time_limit_s`` of work (a node costs
    about 0.1 ms per student), as a count so that the search is deterministic."""
    return max(20, int(BNB_WORK * inst.time_limit_s / max(prob.n, 50)))


def _by_branching(
    prob: Problem, net: Net, inst: Instance, counts: dict[int, tuple[int, int]], egalitarian: bool
) -> tuple[Flowed, bool, list[str]] | None:
    """Levels 1-4 by branch and bound, the rest by one flow on its decisions: (the flow,
    proven, notes), or None to leave it to CP-SAT."""
    nodes = _bnb_nodes(prob, inst)
    found = branch_and_bound(prob, net, counts, nodes, egalitarian=egalitarian)
    if found is None:
        return None
    _choice, flow, proven = found
    if flow is None:  # no assignment keeps every rule
        if prob.kind == BATTLE:
            return None  # with every battle running; CP-SAT may run fewer
        raise diagnose(prob, inst)
    fixed, placed = _decisions(prob, net, flow)
    done = flow_lex(net.fix({**counts, **fixed}, placed), egalitarian=egalitarian)
    if done is None:  # pragma: no cover - the search's answer satisfies the fixes
        return None
    notes = []
    if not proven:
        notes.append(
            f"The {prob.kind} solver stopped at its work limit (about {inst.time_limit_s:g} s) "
            f"before proving this is the best assignment; a longer limit may find a better one."
        )
    return done, proven, notes


def solve_kind(
    inst: Instance, kind: str, *, egalitarian: bool = True
) -> tuple[KindResult, list[tuple[int, int]]]:
    """Solve one kind; for battles also the battle pairs that run."""
    validate(inst)
    if not inst.students or (kind == BATTLE and not inst.battle_pairs):
        if kind == STANDARD and inst.students:
            build(inst, kind)  # raises: no standard papers
        return empty_result(FLOW), []
    t0 = time.perf_counter()
    prob = build(inst, kind)
    net = build_net(prob, inst.seed)
    notes: list[str] = []
    proven = True
    method = FLOW
    done: Flowed | None = None
    side = bool(prob.groups or prob.conflicts)
    counts: dict[int, tuple[int, int]] = {}
    if kind == STANDARD:
        branching = side or (prob.coverage and any(x >= 2 for x in prob.lo))
    else:
        m = len(prob.battles)
        all_run = prob.run_range[1] == m and (prob.coverage or prob.run_range[0] == m)
        branching = all_run and side
        if all_run:
            counts = {j: (prob.lo[j], prob.hi[j]) for j in range(prob.n_slots)}
            if not Face(net.fix(counts, {})).feasible():
                all_run = branching = False
                counts = {}
    if branching:
        out = _by_branching(prob, net, inst, counts, egalitarian)
        if out is not None:
            done, proven, notes = out
            method = BNB
    elif kind == STANDARD or all_run:
        done = flow_lex(net.fix(counts, {}), egalitarian=egalitarian)
        if done is None:
            raise flow_infeasible(prob)
    if done is None:
        method = CP_FLOW
        best, proven, notes = cp_lex(prob, net, inst, egalitarian=egalitarian)
        fixed, placed = _decisions(prob, net, best)
        done = flow_lex(net.fix(fixed, placed), egalitarian=egalitarian)
        if done is None:  # pragma: no cover - the CP-SAT solution satisfies the fixes
            done = Flowed(best, worst_of(net, best), value(net.cost["rank"], best))
    choice = net.decode(done.flow)
    res = result(
        prob,
        inst,
        choice,
        min_sum=done.min_sum,
        proven=proven,
        method=method,
        seconds=time.perf_counter() - t0,
        notes=notes,
    )
    running = []
    if kind == BATTLE:
        per = np.bincount(choice, minlength=prob.n_slots)
        running = [pair for b, pair in enumerate(prob.battles) if per[2 * b] > 0]
    return res, running
