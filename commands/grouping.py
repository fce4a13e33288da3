"""Breakout groups for discussion sessions: balanced groups that mix the students who
have been together least.

Pure computation: no database, no chat. The caller keeps the *pair history* (for each pair
of students, how many times they have shared a group) and, at ``discussion start``, calls
:func:`next_groups` with the students present and that history. After the session it adds
the groups to the history (:func:`pair_counts`), so the next call starts from what
actually happened, absences included.

The problem
-----------
Each session splits the students present into ``n_groups`` groups whose sizes differ by at
most one. A pair's *count* is how often the two have shared a group, history included. A
*repeat meeting* is a shared group beyond a pair's first: the quality measure is the sum
over pairs of ``max(0, count - 1)`` (:func:`repeat_meetings`), and no pair should meet more
often than necessary (:func:`max_pair_count`). A session of ``n`` students in groups of
sizes ``s_1..s_k`` creates ``sum(s_i * (s_i - 1) / 2)`` pair meetings, so over a term at
least ``meetings - n * (n - 1) / 2`` of them are repeats (:func:`lower_bound`).

Objective
---------
Minimise ``sum over pairs of f(count)``, counts including the history, where::

    f(c) = max(0, c - 1) + 0.2 * max(0, c - 2)**2 + lam * max(0, c - 2)

the repeat meetings plus a convex penalty on meeting a third time or more. Like the sum of
squared counts that the issue suggests (the number of meetings being fixed, that is the
same as ``sum c(c-1)/2``, in which a third meeting costs as much as one more pair that
never meets), it spreads meetings evenly. ``lam`` grows from 0 to 4 during a run: early on
the search is free to pair up people who have never met (a nearly linear objective has a
much easier landscape), and by the end a pair meeting a third time costs more than five
repeats elsewhere, so it is avoided whenever that is cheap. ``objective="squares"``
anneals the plain sum of squares instead, for comparison: over 10 sessions it gets a few
fewer repeats (60 students in 8 groups: about 322 against 328) but leaves some pair
meeting three times, where this objective keeps every pair to at most two meetings on
all three reference cases (``python -m bench.groups``).

One session at a time, not the whole term at once
-------------------------------------------------
The issue suggests planning all remaining sessions together and re-planning from the
actual attendance each time. Both are implemented (:func:`plan_sessions` with
``method="joint"``, :func:`next_groups` with ``lookahead``), but with this annealer,
planning only the session at hand given the full history does better on every reference
case, with and without absences, in about the same total time (``python -m bench.groups``):
over 10 sessions it reaches the lower bound for 20 students in 6 groups (50), 165-166 for
30 in 6 (bound 165), and about 328 for 60 in 8 (bound 190), where the joint plan gets
about 356; with 10% absences it repeats 20-35% fewer meetings than the joint re-plan.
Each session's search is small enough to be solved almost exactly, and the history
already says whom to keep apart; a joint plan must also get the later sessions right,
which a re-plan then throws away. So :func:`next_groups` plans one session by default, and
:func:`plan_sessions` plans a term session after session.

Method: simulated annealing, all swaps evaluated at once
--------------------------------------------------------
A move swaps two students in different groups of one session (sizes never change). The
change of the objective for *every* such swap in *every* session being planned is computed
in one go with numpy: with ``M`` the pair-count matrix (``H + O @ O.T`` from the history
``H`` and the one-hot group matrix ``O``), ``SD = dec[M] @ O`` and ``SI = inc[M] @ O``
give, for each student and group, the cost of leaving and of joining it, and the swap of
``a`` (group ``A``) with ``b`` (group ``B``) changes the objective by
``SD[a,A] + SI[a,B] + SD[b,B] + SI[b,A] - 2 * inc[M[a,b]]``. Each step accepts swaps by
the Metropolis rule (``delta <= -T log u``) in a random order and applies those that do
not interact with one already applied, so one step does the work of thousands of single
proposals. The temperature falls geometrically from 0.5 to 0.05 over ``steps`` steps
(:data:`DEFAULT_STEPS` = 3000 for 40 students or more, proportionally fewer for smaller
classes, and fewer for very large plans so that none takes much longer than 60 students x
10 sessions). A run stops as soon as nothing can be better: when the objective has risen
by no more than the new meetings minus the pairs that have never met. The start is a
seeded random balanced grouping; everything is seeded (``numpy.random.default_rng``), so
the same input and seed give the same groups, whatever the order of the input.

Time on one slow core: 0.2-0.4 s per session for 60 students in 8 groups, so about 2.3 s
for a 10-session term (``plan_sessions``); about 0.1 s per session for 30 students.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import numpy as np

from commands.errors import InvalidInput

__all__ = [
    "DEFAULT_STEPS",
    "GroupingError",
    "History",
    "Method",
    "Objective",
    "Session",
    "check_groups",
    "group_sizes",
    "lower_bound",
    "max_pair_count",
    "next_groups",
    "pair_counts",
    "plan_sessions",
    "random_groups",
    "repeat_meetings",
]

Session = list[list[int]]
"""One session: its groups, each a list of student ids."""
History = Mapping[frozenset[int] | tuple[int, int], int]
Objective = Literal["repeats", "squares"]
Method = Literal["sequential", "joint"]
"""How many times each pair has shared a group; keys ``frozenset({a, b})`` or ``(a, b)``."""

#: Annealing steps for a plan of 40 or more students (each step looks at every swap of
#: every session). Smaller classes get proportionally fewer (they need fewer moves); so do
#: plans larger than 60 students x 10 sessions, so that none takes much longer than that.
DEFAULT_STEPS = 3000
_REFERENCE_PEOPLE = 40
_FULL_WORK = 10 * 60 * 60  # sessions x students², the size that gets DEFAULT_STEPS
_MIN_STEPS = 1000
_T_START, _T_END = 0.5, 0.05
_SQUARE_WEIGHT = 0.2
_THIRD_MEETING_PENALTY = 4.0
_BIG = np.float32(1e6)


class GroupingError(InvalidInput, ValueError):
    """Groups can't be made as asked; ``str(err)`` says why and what to do instead."""


# ----------------------------------------------------------------------------- checks


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def check_groups(n_people: int, n_groups: int) -> None:
    """Raise :class:`GroupingError` unless ``n_people`` students can form ``n_groups``
    non-empty groups."""
    if n_groups < 1:
        raise GroupingError(f"Can't make {n_groups} groups: ask for at least 1 group.")
    if n_people < 1:
        raise GroupingError("Nobody is present, so there is nobody to put into groups.")
    if n_groups > n_people:
        raise GroupingError(
            f"Can't make {_plural(n_groups, 'group')} from {_plural(n_people, 'student')}: "
            f"use at most {_plural(n_people, 'group')}."
        )


def group_sizes(n_people: int, n_groups: int) -> list[int]:
    """Balanced sizes, largest first: ``group_sizes(30, 4) == [8, 8, 7, 7]``."""
    check_groups(n_people, n_groups)
    q, r = divmod(n_people, n_groups)
    return [q + 1] * r + [q] * (n_groups - r)


def _distinct(people: Iterable[int], what: str) -> list[int]:
    items = list(people)
    out = sorted(set(items))
    if len(out) != len(items):
        raise ValueError(f"{what} lists someone twice")
    return out


# ----------------------------------------------------------------------------- measures


def _pair(key: frozenset[int] | tuple[int, int]) -> frozenset[int] | None:
    pair = frozenset(key)
    return pair if len(pair) == 2 else None


def pair_counts(
    sessions: Iterable[Session], history: History | None = None
) -> Counter[frozenset[int]]:
    """How many times each pair shared a group: ``history`` plus ``sessions``. Use it to
    update the stored history after a session: ``pair_counts([groups], history)``."""
    counts: Counter[frozenset[int]] = Counter()
    for key, c in (history or {}).items():
        pair = _pair(key)
        if pair is not None and c:
            counts[pair] += int(c)
    for session in sessions:
        for group in session:
            members = sorted(set(group))
            for i, a in enumerate(members):
                for b in members[i + 1 :]:
                    counts[frozenset((a, b))] += 1
    return counts


def repeat_meetings(sessions: Iterable[Session], history: History | None = None) -> int:
    """Meetings in ``sessions`` of pairs that had already met (in ``history`` or earlier in
    ``sessions``): for each pair, its shared groups beyond the first, summed."""
    before = pair_counts([], history)
    after = pair_counts(sessions, history)
    return sum(max(0, c - 1) - max(0, before[p] - 1) for p, c in after.items())


def max_pair_count(sessions: Iterable[Session], history: History | None = None) -> int:
    """The most times any pair has shared a group (history included); 0 if none has."""
    return max(pair_counts(sessions, history).values(), default=0)


def _meetings(n_people: int, n_groups: int) -> int:
    return sum(s * (s - 1) // 2 for s in group_sizes(n_people, n_groups))


def lower_bound(n_people: int, n_groups: int, n_sessions: int) -> int:
    """The fewest repeat meetings possible: ``n_sessions`` sessions of ``n_people``
    students in ``n_groups`` balanced groups create that many pair meetings, and only
    ``n_people * (n_people - 1) / 2`` of them can be first meetings."""
    pairs = n_people * (n_people - 1) // 2
    return max(0, n_sessions * _meetings(n_people, n_groups) - pairs)


def random_groups(people: Sequence[int], n_groups: int, rng: np.random.Generator) -> Session:
    """Balanced groups in a random order (the baseline the planner is compared with)."""
    ids = _distinct(people, "the list of students")
    sizes = group_sizes(len(ids), n_groups)
    order = rng.permutation(len(ids))
    out, start = [], 0
    for size in sizes:
        out.append(sorted(ids[i] for i in order[start : start + size]))
        start += size
    return _ordered(out)


def _ordered(session: Session) -> Session:
    return sorted((sorted(g) for g in session), key=lambda g: g[0])


# ----------------------------------------------------------------------------- planner


def _values(c_max: int, objective: Objective, progress: float = 1.0) -> np.ndarray:
    """f(c) for c = 0..c_max+1 at this point of the run (``progress`` from 0 to 1)."""
    c = np.arange(c_max + 2, dtype=np.float64)
    if objective == "squares":
        return c * (c - 1) / 2
    lam = _THIRD_MEETING_PENALTY * progress
    f = np.maximum(0, c - 1) + _SQUARE_WEIGHT * np.maximum(0, c - 2) ** 2
    return f + lam * np.maximum(0, c - 2)


def _tables(progress: float, c_max: int, objective: Objective) -> tuple[np.ndarray, np.ndarray]:
    """inc[c] = f(c+1) - f(c) and dec[c] = f(c-1) - f(c) (dec[0] = 0) for c <= c_max."""
    inc = np.diff(_values(c_max, objective, progress))
    dec = np.concatenate([[0.0], -inc[:-1]])
    return inc.astype(np.float32), dec.astype(np.float32)


def _default_steps(n_people: int, n_sessions: int) -> int:
    work = n_sessions * n_people * n_people
    scale = min(1.0, n_people / _REFERENCE_PEOPLE) * min(1.0, _FULL_WORK / max(1, work))
    return max(_MIN_STEPS, round(DEFAULT_STEPS * scale))


def _plan(
    attendance: Sequence[Sequence[int]],
    n_groups: int,
    history: History | None,
    seed: Sequence[int],
    steps: int | None,
    time_limit_s: float | None,
    objective: Objective = "repeats",
) -> list[Session]:
    """Plan one session per entry of ``attendance`` (the students expected at it)."""
    sessions = [_distinct(a, "the list of students present") for a in attendance]
    for present in sessions:
        check_groups(len(present), n_groups)
    if not sessions:
        return []
    people = sorted(set().union(*sessions))
    index = {p: i for i, p in enumerate(people)}
    n, t = len(people), len(sessions)
    k = n_groups
    rng = np.random.default_rng(seed)

    h0 = np.zeros((n, n), dtype=np.int64)
    for key, c in (history or {}).items():
        pair = _pair(key)
        if pair is None or not c:
            continue
        a, b = sorted(pair)
        if a in index and b in index:
            h0[index[a], index[b]] += int(c)
            h0[index[b], index[a]] += int(c)

    # g[s, i]: group of student i in session s (absent students: group 0, masked out).
    g = np.zeros((t, n), dtype=np.int64)
    present = np.zeros((t, n), dtype=bool)
    for s, ids in enumerate(sessions):
        rows = np.array([index[p] for p in ids])
        sizes = group_sizes(len(ids), k)
        g[s, rows[rng.permutation(len(rows))]] = np.repeat(np.arange(k), sizes)
        present[s, rows] = True
    one_hot = np.zeros((n, t, k), dtype=np.float32)
    for s in range(t):
        one_hot[present[s], s, g[s, present[s]]] = 1.0
    flat = one_hot.reshape(n, t * k)  # a view: updates to one_hot show here
    col = g + (np.arange(t) * k)[:, None]  # column of flat for (session, student)
    absent_mask = None
    if not present.all():
        away = ~present
        absent_mask = _BIG * (away[:, :, None] | away[:, None, :]).astype(np.float32)

    # Stop rule: a new meeting costs nothing only for a pair that has never met (f(1) =
    # f(0)) and at least 1 otherwise (f convex, f(2) - f(1) = 1), so the objective can't
    # rise by less than the new meetings minus the pairs that have never met.
    upper = np.triu_indices(n, 1)
    new_meetings = sum(_meetings(len(ids), k) for ids in sessions)
    floor = max(0, new_meetings - int(np.count_nonzero(h0[upper] == 0)))
    c_max = int(h0.max(initial=0)) + t + 1
    f_final = _values(c_max, objective)
    f_history = float(f_final[h0[upper]].sum())
    steps = _default_steps(n, t) if steps is None else max(1, steps)
    deadline = None if time_limit_s is None else time.monotonic() + time_limit_s
    sessions_col = np.arange(t)[:, None]

    def counts() -> np.ndarray:
        m = (flat @ flat.T).astype(np.int64)
        m += h0
        np.fill_diagonal(m, 0)
        return m

    if k == 1 or all(len(ids) == k for ids in sessions):
        steps = 0  # one group, or groups of one: every grouping is the same

    for step in range(steps):
        progress = step / steps
        temp = _T_START * (_T_END / _T_START) ** progress
        if step % 20 == 0:
            inc, dec = _tables(progress, c_max, objective)
            if deadline is not None and time.monotonic() > deadline:
                break
        m = counts()
        if float(f_final[m[upper]].sum()) - f_history <= floor + 1e-6:
            break  # nothing can be better
        inc_m = inc[m]
        leave = dec[m] @ flat  # (n, t*k): cost of leaving each group
        join = inc_m @ flat  # (n, t*k): cost of joining each group
        own = leave[np.arange(n)[None, :], col]  # (t, n)
        h = join.reshape(n, t, k) + own.T[:, :, None]  # h[a, s, G]: a moves to G in s
        half = h[:, sessions_col, g].transpose(1, 0, 2)  # (t, n, n): [s, a, b]
        delta = half + half.transpose(0, 2, 1)
        delta -= 2 * inc_m
        if absent_mask is not None:
            delta += absent_mask
        hits = np.flatnonzero(delta.ravel() <= 8 * temp)
        if not len(hits):
            continue
        cs, rest = np.divmod(hits, n * n)
        ca, cb = np.divmod(rest, n)
        keep = (ca < cb) & (g[cs, ca] != g[cs, cb])
        cs, ca, cb = cs[keep], ca[keep], cb[keep]
        accept = np.flatnonzero(delta[cs, ca, cb] <= temp * rng.standard_exponential(len(cs)))
        if not len(accept):
            continue
        rng.shuffle(accept)
        applied: list[tuple[int, int, int, int, int]] = []
        for i in accept[: 4 * t].tolist():
            s, a, b = int(cs[i]), int(ca[i]), int(cb[i])
            gs = g[s]
            ga, gb = int(gs[a]), int(gs[b])
            if any(_interferes(g, s, a, b, ga, gb, other) for other in applied):
                continue
            gs[a], gs[b] = gb, ga
            one_hot[a, s, ga] = 0.0
            one_hot[a, s, gb] = 1.0
            one_hot[b, s, gb] = 0.0
            one_hot[b, s, ga] = 1.0
            col[s, a], col[s, b] = s * k + gb, s * k + ga
            applied.append((s, a, b, ga, gb))

    out = []
    for s in range(t):
        groups: list[list[int]] = [[] for _ in range(k)]
        for i in np.flatnonzero(present[s]):
            groups[g[s, i]].append(people[i])
        out.append(_ordered(groups))
    return out


def _interferes(
    g: np.ndarray, s: int, a: int, b: int, ga: int, gb: int, other: tuple[int, int, int, int, int]
) -> bool:
    """Whether swap (s, a, b) was evaluated on counts or groups that the applied swap
    ``other`` changed. A swap of a1 and b1 in session s1 changes the counts of the pairs
    {a1 or b1, x} with x in their two groups, and those two groups of s1."""
    s1, a1, b1, g1a, g1b = other
    if s1 == s and {ga, gb} & {g1a, g1b}:
        return True
    if a in (a1, b1) or b in (a1, b1):
        return True
    # Did (s, a, b) read a count {a or b, a1 or b1}: a1 or b1 in a's or b's group in s,
    # and a or b in a1's or b1's groups in s1 (before or after: the same two groups).
    touches_ours = int(g[s, a1]) in (ga, gb) or int(g[s, b1]) in (ga, gb)
    touches_theirs = int(g[s1, a]) in (g1a, g1b) or int(g[s1, b]) in (g1a, g1b)
    return touches_ours and touches_theirs


def plan_sessions(
    people: Sequence[int],
    n_groups: int,
    n_sessions: int,
    history: History | None = None,
    *,
    seed: int = 0,
    method: Method = "sequential",
    steps: int | None = None,
    time_limit_s: float | None = None,
    objective: Objective = "repeats",
) -> list[Session]:
    """Plan ``n_sessions`` sessions of ``people`` in ``n_groups`` balanced groups each, to
    minimise repeat meetings (history included; see the module docstring). Groups are
    sorted, and listed by their smallest id.

    ``method="sequential"`` (the default, and what the bot does at each session) plans
    one session after the other, each given the history and the sessions before it;
    ``method="joint"`` anneals all sessions at once. ``steps`` overrides the annealing
    length (per plan: per session when sequential); ``time_limit_s`` stops early when
    reached (per plan, like ``steps``; the result then depends on the machine's speed).
    ``objective="squares"`` anneals the plain sum of squared pair counts instead.

    Raises :class:`GroupingError` if the groups can't be made, and ``ValueError`` if
    ``people`` lists someone twice.
    """
    if n_sessions < 0:
        raise ValueError("n_sessions must be >= 0")
    check_groups(len(set(people)), n_groups)
    if method == "joint":
        return _plan(
            [people] * n_sessions, n_groups, history, [seed], steps, time_limit_s, objective
        )
    sessions: list[Session] = []
    counts = pair_counts([], history)
    for i in range(n_sessions):
        groups = _plan([people], n_groups, counts, [seed, i], steps, time_limit_s, objective)[0]
        sessions.append(groups)
        counts = pair_counts([groups], counts)
    return sessions


def next_groups(
    present: Sequence[int],
    n_groups: int,
    history: History | None = None,
    remaining_sessions: int = 1,
    *,
    seed: int = 0,
    lookahead: int = 1,
    roster: Sequence[int] | None = None,
    steps: int | None = None,
    time_limit_s: float | None = None,
) -> Session:
    """The groups for the session starting now, for the students ``present``, mixing
    those who have been together least according to ``history`` (the pair counts of all
    earlier sessions, as held). Call it at each session with the actual attendance and
    the updated history (:func:`pair_counts`).

    ``lookahead > 1`` plans this session together with up to ``lookahead - 1`` later ones
    (never more than ``remaining_sessions``, this one included; with ``roster``, the
    students expected then, default ``present``) and returns the first: the issue's
    "plan all remaining sessions together" is ``lookahead=remaining_sessions``. Measured
    over a term (bench/groups.py) that does worse than planning one session at a time
    with the same annealer, with or without absences, so the default is 1 and
    ``remaining_sessions`` then changes nothing. Vary ``seed`` between sessions (the
    session's id will do) for variety among equally good groupings.

    Raises :class:`GroupingError` if ``present`` can't form ``n_groups`` groups.
    """
    check_groups(len(set(present)), n_groups)
    later = sorted(set(present if roster is None else roster))
    attendance: list[Sequence[int]] = [present]
    if len(later) >= n_groups:  # else plan just this session
        attendance += [later] * max(0, min(lookahead, remaining_sessions) - 1)
    return _plan(attendance, n_groups, history, [seed], steps, time_limit_s)[0]
