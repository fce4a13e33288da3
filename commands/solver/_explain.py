"""The result of a solve and the sentences that explain it to the instructor."""

from __future__ import annotations

import numpy as np

from ._core import Infeasible, Instance, KindResult, names, plural, rank_of
from ._net import balance_cost
from ._rules import BATTLE, STANDARD, Problem


def not_found(prob: Problem, inst: Instance) -> Infeasible:
    return Infeasible(
        f"No {prob.kind} assignment was found within the time limit "
        f"({inst.time_limit_s:g} s): raise the time limit, or drop some partner requests "
        f"or conflicts."
    )


def diagnose(prob: Problem, inst: Instance) -> Infeasible:
    """Which rule makes the problem infeasible (for the message)."""
    parts = []
    if prob.groups:
        pairs = "; ".join(names([prob.students[i] for i in g]) for g, _s in prob.groups)
        parts.append(f"the partner requests ({pairs})")
    if prob.conflicts:
        parts.append(f"{plural(len(prob.conflicts), 'conflict')}")
    if any(k is not None for k in prob.keep):
        parts.append("the kept papers")
    if any(prob.forbid):
        parts.append("the unavailable days")
    rules = names(parts) if parts else "the presenter limits"
    what = "battle sides" if prob.kind == BATTLE else "standard papers"
    return Infeasible(
        f"No assignment of {what} satisfies {rules} together: drop a partner request or "
        f"conflict, release a kept paper, or remove some unavailable days."
    )


# ----------------------------------------------------------------------------- the result


def empty_result(method: str) -> KindResult:
    return KindResult(
        assignment={},
        ranks={},
        unranked=set(),
        worst_rank=0,
        total_rank=0,
        min_sum_total=0,
        proven_optimal=True,
        method=method,
        solve_seconds=0.0,
    )


def _empty_papers(prob: Problem, inst: Instance, choice: np.ndarray) -> tuple[list[int], str]:
    counts = np.bincount(choice, minlength=prob.n_slots) if len(choice) else np.zeros(0)
    if prob.kind == BATTLE:
        m = len(prob.battles)
        off = [a for b, (a, _b) in enumerate(prob.battles) if counts[2 * b] == 0]
        if not off:
            return [], ""
        r = m - len(off)
        lo, hi = prob.lo[0], prob.hi[0]
        if not prob.coverage:
            return off, f"Coverage is off: the ranks chose to run {r} of {m} battles."
        if r == prob.run_range[1]:
            size = f"{lo}" if lo == hi else f"{lo}–{hi}"
            return off, (
                f"{plural(prob.n, 'student')} fill at most {plural(r, 'battle')} of {size} "
                f"per side (each needs at least {2 * lo}): {len(off)} of {m} do not run."
            )
        return off, (
            f"{plural(len(off), 'battle')} of {m} do not run: the unavailable days, kept "
            f"sides or conflicts leave too few students for them."
        )
    need = _need(prob, inst)
    empty = [prob.slots[j] for j in range(prob.n_slots) if counts[j] < need[j]]
    if not empty:
        return [], ""
    listed = names(sorted(empty))
    if not prob.coverage:
        return (
            empty,
            f"Coverage is off: {plural(len(empty), 'paper')} ({listed}) may stay below their minimum.",
        )
    wanting = [x for x in need if x >= 1]
    total = sum(wanting)
    k = len(empty)
    if prob.n < total:
        if len(set(wanting)) == 1:
            each = f"at least {wanting[0]} presenter{'s' if wanting[0] != 1 else ''} each"
        else:
            each = f"{total} presenters in all"
        return empty, (
            f"{plural(prob.n, 'student')} cannot fill {plural(len(wanting), 'paper')} that "
            f"need {each}: {k} stay{'s' if k == 1 else ''} empty ({listed}, the latest)."
        )
    return empty, (
        f"{plural(k, 'paper')} ({listed}) stay{'s' if k == 1 else ''} below the minimum "
        f"although there are enough students: the unavailable days, kept papers, partner "
        f"requests or presenter limits leave nobody free for "
        f"{'it' if k == 1 else 'them'}."
    )


def _need(prob: Problem, inst: Instance) -> list[int]:
    """The instance's minimum per slot (also with coverage off, for reporting)."""
    if prob.kind == BATTLE:
        return [prob.lo[0]] * prob.n_slots
    return [
        max(0, inst.paper_limits.get(p, (1, inst.max_presenters))[0])
        if inst.paper_limits.get(p, (1, inst.max_presenters))[1] >= 1
        else 0
        for p in prob.slots
    ]


def result(
    prob: Problem,
    inst: Instance,
    choice: np.ndarray,
    *,
    min_sum: int,
    proven: bool,
    method: str,
    seconds: float,
    notes: list[str],
) -> KindResult:
    students, slots, prefs = prob.students, prob.slots, prob.prefs
    assignment = {s: slots[int(choice[i])] for i, s in enumerate(students)}
    ranks = {s: rank_of(prefs, s, p) for s, p in assignment.items()}
    unranked = {s for s, r in ranks.items() if r == len(prefs.get(s, ())) + 1}
    empty, reason = _empty_papers(prob, inst, choice)
    short = (
        {
            s
            for i, s in enumerate(students)
            if prob.window[int(choice[i])] and prob.prev[i] != int(choice[i])
        }
        if inst.notice_from is not None
        else set()
    )
    changed = {s for s, p in prob.previous.items() if assignment.get(s) != p}
    notes = list(prob.notes) + notes
    counts = np.bincount(choice, minlength=prob.n_slots)
    if prob.balance and (counts >= 2).any():
        notes.append(
            "Workload balance (presenting minutes per student as even as possible: a solo "
            "45-minute talk weighs more than a pair on a 30-minute one) chose only among "
            "assignments that are equally good for everyone's ranks."
        )
    if prob.spread:
        nr = [i for i in range(prob.n) if prob.nonranker[i]]
        most = int(np.bincount(choice[nr], minlength=prob.n_slots).max(initial=0))
        what = "side" if prob.kind == BATTLE else "paper"
        notes.append(
            f"{plural(len(nr), 'student')} ranked nothing for this kind and were spread "
            f"out (at most {most} on one {what}) after everyone's ranks were settled."
        )
    for members, _slots in prob.groups:
        js = {int(choice[i]) for i in members}
        who = names([students[i] for i in members])
        if len(js) == 1:
            notes.append(f"Partners {who} present paper {slots[js.pop()]} together.")
        else:  # pragma: no cover - partners are a hard rule
            notes.append(f"The partner request of {who} could not be honoured.")
    fewest = ": the fewest possible" if proven else ""
    if short:
        first = " once every paper that can be covered is" if prob.coverage else ""
        notes.append(
            f"{plural(len(short), 'student')} present with less than "
            f"{inst.min_notice_days} days' notice ({names(sorted(short))}){fewest}{first}."
        )
    if prob.changes:
        notes.append(
            f"{plural(len(changed), 'student')} changed papers from the published "
            f"assignment{fewest}."
        )
    return KindResult(
        assignment=assignment,
        ranks=ranks,
        unranked=unranked,
        worst_rank=max(ranks.values(), default=0),
        total_rank=sum(ranks.values()),
        min_sum_total=min_sum,
        proven_optimal=proven,
        method=method,
        solve_seconds=seconds,
        empty=empty,
        empty_reason=reason,
        short_notice=short,
        changed=changed,
        notes=notes,
        balance_cost=balance_cost(prob, choice),
    )


def flow_infeasible(prob: Problem) -> Infeasible:
    what = "battle sides" if prob.kind == BATTLE else "standard papers"
    parts = []
    if any(k is not None for k in prob.keep):
        parts.append("the kept papers")
    if any(prob.forbid):
        parts.append("the unavailable days")
    parts.append("the presenter limits" if prob.kind == STANDARD else "the group sizes")
    return Infeasible(
        f"No assignment of {what} satisfies {names(parts)} together: release a kept paper "
        f"or remove some unavailable days."
    )
