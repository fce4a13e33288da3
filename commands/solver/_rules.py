"""From an :class:`Instance` to one kind's problem: the hard rules checked (contradictions
raise :class:`Infeasible` with a message for the instructor) and every student's domain
worked out. Kind-agnostic from here on: a *slot* is a standard paper or a battle side."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from ._core import Infeasible, Instance, listed, names, plural, unranked_rank

STANDARD = "standard"
BATTLE = "battle"
#: Slot minutes when ``paper_minutes`` does not say.
DEFAULT_MINUTES = 30


@dataclass
class Problem:
    """One kind of one instance, ready for the network (see :mod:`._net`)."""

    kind: str
    students: tuple[str, ...]
    prefs: Mapping[str, Sequence[int]]
    slots: list[int]  # paper ids; battle side j belongs to battle j // 2
    lo: list[int]  # standard: minimum presenters (coverage); battle: smallest group
    hi: list[int]  # most presenters on the slot
    day: list[date | None]
    window: list[bool]  # dated less than min_notice_days after notice_from
    minutes: list[int]
    early: list[int]  # standard coverage preference: higher is covered first
    forbid: list[frozenset[int]]  # per student: slots on days they are unavailable
    ranked: list[dict[int, int]]  # per student: slot -> rank, listed slots they may take
    ur: list[int]  # per student: the rank of an unlisted slot
    nonranker: list[bool]
    prev: list[int | None]  # per student: the previous slot, if still in the instance
    keep: list[int | None]
    explicit: list[bool]  # in a conflict: an arc to every slot they may take
    groups: list[tuple[tuple[int, ...], tuple[int, ...]]]  # partners: members, slots
    conflicts: list[tuple[int, int]]
    coverage: bool
    balance: bool
    spread: bool
    notice: bool
    changes: bool
    previous: dict[str, int]  # the previous paper of every listed student (reporting)
    battles: tuple[tuple[int, int], ...] = ()
    run_range: tuple[int, int] = (0, 0)  # battles: fewest and most that may run
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.students)

    @property
    def n_slots(self) -> int:
        return len(self.slots)

    def group_of(self) -> dict[int, int]:
        """student -> index of their partner group."""
        return {i: g for g, (members, _slots) in enumerate(self.groups) for i in members}


# ----------------------------------------------------------------------------- validation


def validate(inst: Instance) -> None:
    """Malformed instances are programming errors (ValueError). Bad course settings and
    contradictory rules are :class:`Infeasible`, checked by the kind that uses them."""
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
    if inst.min_notice_days < 0:
        raise ValueError("min_notice_days must not be negative")


def standard_limits(inst: Instance) -> dict[int, tuple[int, int]]:
    """paper -> (min, max) presenters as the solver applies them. With ``coverage`` off,
    the old rule: at most 1 while there are no more students than papers that take
    presenters, else the paper's max (and no minimum)."""
    out = {
        p: tuple(inst.paper_limits.get(p, (1, inst.max_presenters))) for p in inst.standard_papers
    }
    for p, (lo, hi) in out.items():
        if lo > hi or hi < 0:
            if p in inst.paper_limits:
                raise Infeasible(
                    f"Paper {p} needs at least {lo} presenters but allows at most {hi}: "
                    f"lower its minimum or raise its maximum."
                )
            raise Infeasible(
                f"The presenter limit must be at least 1 per paper (it is {inst.max_presenters})."
            )
    limits = {p: (max(lo, 0), hi) for p, (lo, hi) in out.items()}
    if not inst.coverage:
        open_papers = sum(hi >= 1 for _lo, hi in limits.values())
        solo = len(inst.students) <= open_papers
        limits = {p: (0, min(hi, 1) if solo else hi) for p, (_lo, hi) in limits.items()}
    return limits


def presenter_cap(inst: Instance) -> int:
    """The most presenters any standard paper may get (``max_presenters`` unless
    ``paper_limits`` say otherwise; 1 with ``coverage`` off while everyone can present
    alone). Raises :class:`Infeasible` if the limits cannot seat everyone."""
    validate(inst)
    limits = standard_limits(inst)
    _check_seats(inst, limits)
    return max((hi for _lo, hi in limits.values()), default=0)


def _check_seats(inst: Instance, limits: Mapping[int, tuple[int, int]]) -> None:
    n, n_papers, most = len(inst.students), len(inst.standard_papers), inst.max_presenters
    if n == 0:
        return
    if inst.max_presenters < 1 and any(p not in inst.paper_limits for p in inst.standard_papers):
        raise Infeasible(f"The presenter limit must be at least 1 per paper (it is {most}).")
    if n_papers == 0:
        raise Infeasible(
            f"There are no standard papers for {n} students to present; add standard papers."
        )
    seats = sum(hi for _lo, hi in limits.values())
    if n <= seats:
        return
    uniform = not inst.paper_limits
    if uniform:
        more = math.ceil(n / most) - n_papers
        raise Infeasible(
            f"{n} students cannot each present a standard paper: {n_papers} papers with at "
            f"most {most} presenters each seat only {n_papers * most}. Add at least {more} "
            f"standard paper{'s' if more != 1 else ''}, or allow "
            f"{math.ceil(n / n_papers)} presenters per paper."
        )
    raise Infeasible(
        f"{n} students cannot each present a standard paper: {n_papers} papers with their "
        f"presenter limits seat only {seats}. Add standard papers or raise the most "
        f"presenters per paper (by {n - seats} seat{'s' if n - seats != 1 else ''} in all)."
    )


# ----------------------------------------------------------------------------- battles


def _battles(r: int, verb: str) -> str:
    """ "1 battle seats", "2 battles seat"."""
    return f"{r} battles {verb}" if r != 1 else f"1 battle {verb}s"


def battle_counts(n: int, m: int, lo: int, hi: int) -> list[int]:
    """The numbers of running battles that can seat exactly ``n`` students."""
    return [r for r in range(m + 1) if 2 * lo * r <= n <= 2 * hi * r]


def battle_infeasible(n: int, m: int, lo: int, hi: int) -> Infeasible:
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


def check_group(inst: Instance) -> tuple[int, int]:
    lo, hi = inst.battle_group
    if not 1 <= lo <= hi:
        raise Infeasible(
            f"The battle group size must be a range like 3–4 with 1 ≤ minimum ≤ maximum "
            f"(it is {lo}–{hi})."
        )
    return lo, hi


# ----------------------------------------------------------------------------- the problem


def _day_text(d: date | None) -> str:
    return d.isoformat() if d is not None else "undated"


def _known_pairs(
    inst: Instance, pairs: Sequence[tuple[str, str]], what: str, notes: list[str]
) -> list[tuple[str, str]]:
    known = set(inst.students)
    out = []
    for a, b in pairs:
        if a == b:
            notes.append(f"The {what} of {a} with themselves was ignored.")
        elif a not in known or b not in known:
            gone = names([x for x in (a, b) if x not in known])
            notes.append(f"The {what} of {a} and {b} was ignored: {gone} is not on the roster.")
        else:
            out.append((a, b))
    return out


def build(inst: Instance, kind: str) -> Problem:
    """The problem of one kind, or :class:`Infeasible` if its hard rules contradict."""
    notes: list[str] = []
    students = inst.students
    n = len(students)
    index = {s: i for i, s in enumerate(students)}
    if kind == STANDARD:
        limits = standard_limits(inst)
        _check_seats(inst, limits)
        slots = list(inst.standard_papers)
        lo = [limits[p][0] for p in slots]
        hi = [limits[p][1] for p in slots]
        prefs = inst.standard_prefs
        keeps, previous = inst.keep_standard, inst.previous_standard
        what = "standard paper"
    else:
        glo, ghi = check_group(inst)
        slots = [p for pair in inst.battle_pairs for p in pair]
        lo = [glo] * len(slots)
        hi = [ghi] * len(slots)
        prefs = inst.battle_prefs
        keeps, previous = inst.keep_battle, inst.previous_battle
        what = "battle paper"
    at = {p: j for j, p in enumerate(slots)}
    day = [inst.paper_days.get(p) for p in slots]
    notice = inst.notice_from is not None
    cutoff = inst.notice_from + timedelta(days=inst.min_notice_days) if notice else None
    window = [cutoff is not None and d is not None and d < cutoff for d in day]
    minutes = [int(inst.paper_minutes.get(p, DEFAULT_MINUTES)) for p in slots]
    order = sorted(range(len(slots)), key=lambda j: (day[j] is None, day[j] or date.min, slots[j]))
    early = [0] * len(slots)
    for pos, j in enumerate(order):
        early[j] = len(slots) - pos

    # Unavailable days.
    by_day: dict[date, list[int]] = {}
    for j, d in enumerate(day):
        if d is not None:
            by_day.setdefault(d, []).append(j)
    forbid: list[frozenset[int]] = []
    usable = [j for j in range(len(slots)) if hi[j] > 0]
    for s in students:
        off = inst.unavailable.get(s, frozenset())
        bad = frozenset(j for d in off for j in by_day.get(d, ()))
        forbid.append(bad)
        if usable and all(j in bad for j in usable):
            days = sorted({day[j] for j in usable}, key=_day_text)
            raise Infeasible(
                f"{s} is unavailable on every day with a {what} "
                f"({names([_day_text(d) for d in days])}): remove some of their unavailable "
                f"days, or add a {what} on another day."
            )

    # Keeps.
    keep: list[int | None] = [None] * n
    for s, p in keeps.items():
        if s not in index:
            notes.append(f"{s} was to keep paper {p} but is not on the roster: ignored.")
            continue
        if p not in at:
            raise Infeasible(
                f"{s} is to keep paper {p}, which is not a {what} of this assignment: release "
                f"the kept paper or add it back."
            )
        j = at[p]
        if j in forbid[index[s]]:
            raise Infeasible(
                f"{s} is to keep paper {p} on {_day_text(day[j])} but is unavailable that "
                f"day: release the kept paper or their unavailable day."
            )
        keep[index[s]] = j
    kept_on: dict[int, list[str]] = {}
    for i, j in enumerate(keep):
        if j is not None:
            kept_on.setdefault(j, []).append(students[i])
    for j, who in kept_on.items():
        if len(who) > hi[j]:
            raise Infeasible(
                f"{plural(len(who), 'student')} ({names(who)}) are to keep paper {slots[j]}, "
                f"which takes at most {hi[j]}: release some of the kept papers or raise the "
                f"limit."
            )

    # Conflicts.
    conflicts: list[tuple[int, int]] = []
    seen: set[frozenset[int]] = set()
    for a, b in _known_pairs(inst, inst.conflicts, "conflict", notes):
        ia, ib = index[a], index[b]
        if frozenset((ia, ib)) in seen:
            continue
        seen.add(frozenset((ia, ib)))
        if keep[ia] is not None and keep[ia] == keep[ib]:
            raise Infeasible(
                f"{a} and {b} must not present together, but both are to keep paper "
                f"{slots[keep[ia]]}: release one of the kept papers or the conflict."
            )
        conflicts.append((ia, ib))
    explicit = [False] * n
    for ia, ib in conflicts:
        explicit[ia] = explicit[ib] = True

    # Ranks.
    ranked: list[dict[int, int]] = []
    ur = [unranked_rank(prefs, s) for s in students]
    nonranker = [not prefs.get(s) for s in students]
    for i, s in enumerate(students):
        mine = {at[p]: r for p, r in listed(prefs, s).items() if p in at}
        ranked.append({j: r for j, r in mine.items() if j not in forbid[i] and hi[j] > 0})

    # Partners (standard only).
    groups: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    if kind == STANDARD:
        groups = _partner_groups(inst, index, at, slots, hi, forbid, keep, conflicts, notes)

    prev: list[int | None] = [None] * n
    prev_map = {s: p for s, p in previous.items() if s in index}
    for s, p in prev_map.items():
        if p in at:
            prev[index[s]] = at[p]
    changes = inst.minimal_changes and any(p is not None for p in prev)
    run_range = (0, 0)
    if kind == BATTLE:
        m = len(inst.battle_pairs)
        glo, ghi = lo[0], hi[0]
        counts = battle_counts(n, m, glo, ghi)
        if not counts:
            raise battle_infeasible(n, m, glo, ghi)
        forced = {j // 2 for j in keep if j is not None}
        if len(forced) > max(counts):
            raise Infeasible(
                f"Kept battle sides need {len(forced)} battles to run, but {n} students fill "
                f"at most {max(counts)} battles of {glo}–{ghi} per side: release some kept "
                f"battle sides."
            )
        run_range = (min(counts), max(counts))  # coverage maximises within it (level 1)
    return Problem(
        kind=kind,
        students=students,
        prefs=prefs,
        slots=slots,
        lo=lo,
        hi=hi,
        day=day,
        window=window,
        minutes=minutes,
        early=early,
        forbid=forbid,
        ranked=ranked,
        ur=ur,
        nonranker=nonranker,
        prev=prev,
        keep=keep,
        explicit=explicit,
        groups=groups,
        conflicts=conflicts,
        coverage=inst.coverage,
        balance=inst.balance and kind == STANDARD,
        spread=inst.spread_nonrankers and sum(nonranker) >= 2,
        notice=notice and any(window),
        changes=changes,
        previous=prev_map,
        battles=tuple(inst.battle_pairs) if kind == BATTLE else (),
        run_range=run_range,
        notes=notes,
    )


def _partner_groups(
    inst: Instance,
    index: Mapping[str, int],
    at: Mapping[int, int],
    slots: Sequence[int],
    hi: Sequence[int],
    forbid: Sequence[frozenset[int]],
    keep: Sequence[int | None],
    conflicts: Sequence[tuple[int, int]],
    notes: list[str],
) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Partner requests as groups (a student in two requests joins both partners) with the
    papers each group may take; contradictions are :class:`Infeasible`."""
    students = inst.students
    parent = list(range(len(students)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    named: dict[int, set[int]] = {}  # student -> papers named for them
    requests = []
    for a, b, paper in inst.partners:
        kept = _known_pairs(inst, [(a, b)], "partner request", notes)
        if not kept:
            continue
        ia, ib = index[a], index[b]
        requests.append((ia, ib))
        parent[find(ia)] = find(ib)
        if paper is not None:
            if paper not in at:
                raise Infeasible(
                    f"{a} and {b} asked to present paper {paper} together, which is not a "
                    f"standard paper of this assignment: name another paper or drop the "
                    f"request."
                )
            named.setdefault(ia, set()).add(at[paper])
            named.setdefault(ib, set()).add(at[paper])
    if not requests:
        return []
    members: dict[int, list[int]] = {}
    for i in sorted({x for pair in requests for x in pair}):
        members.setdefault(find(i), []).append(i)
    conflict_set = {frozenset(c) for c in conflicts}
    out = []
    for group in members.values():
        who = [students[i] for i in group]
        label = names(who)
        for x, y in conflict_set:
            if x in group and y in group:
                raise Infeasible(
                    f"{students[x]} and {students[y]} are partners but must not present "
                    f"together (a conflict): drop the partner request or the conflict."
                )
        fixed = {keep[i] for i in group if keep[i] is not None} | {
            j for i in group for j in named.get(i, ())
        }
        if len(fixed) > 1:
            raise Infeasible(
                f"The partners {label} are held to different papers "
                f"({names(sorted(slots[j] for j in fixed))}, kept or named): keep one paper "
                f"for all of them."
            )
        if fixed:
            cands = sorted(fixed)
            why = f"paper {slots[cands[0]]}"
        else:
            common = set.intersection(
                *(
                    {at[p] for p in inst.standard_prefs.get(students[i], ()) if p in at}
                    for i in group
                )
            )
            if not common:
                raise Infeasible(
                    f"The partners {label} rank no standard paper in common: name a paper for "
                    f"them, or drop the partner request."
                )
            cands = sorted(common)
            why = f"their commonly ranked papers ({names([slots[j] for j in cands])})"
        roomy = [j for j in cands if hi[j] >= len(group)]
        if not roomy:
            raise Infeasible(
                f"The partners {label} cannot present together: {why} allow at most "
                f"{plural(max(hi[j] for j in cands), 'presenter')}. Raise the limit, name another "
                f"paper, or drop the request."
            )
        free = [j for j in roomy if not any(j in forbid[i] for i in group)]
        if not free:
            raise Infeasible(
                f"The partners {label} cannot present together: one of them is unavailable "
                f"on the day of {why}. Name another paper or drop the request."
            )
        out.append((tuple(group), tuple(free)))
    # Groups held to a single paper must fit on it together (with its kept students).
    held: dict[int, list[int]] = {}
    for members, slots_ in out:
        if len(slots_) == 1:
            held.setdefault(slots_[0], []).extend(members)
    for j, who in held.items():
        kept = [i for i, k in enumerate(keep) if k == j and i not in who]
        if len(who) + len(kept) > hi[j]:
            label = names([students[i] for i in who + kept])
            raise Infeasible(
                f"{label} must all present paper {slots[j]} (their only possible paper as "
                f"partners, or kept), which takes at most {hi[j]}: raise its limit, name "
                f"another paper for some partners, or drop a request."
            )
    return out
