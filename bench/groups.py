"""Breakout groups: repeat meetings over a term, the bot's planner against random groups
and against planning the whole term at once.

Run from the repository root::

    python -m bench.groups                 # the issue's three cases, 5 seeds each
    python -m bench.groups --seeds 2 --cases 30x6

A *repeat meeting* is a pair sharing a group beyond their first time; a row sums them over
the term's sessions (10 by default). The *bound* is the number of pair meetings the
sessions create minus the number of pairs (every meeting beyond one per pair is a
repeat). Every number is reproducible: seed ``i`` drives the random groups
(``numpy.random.default_rng(i)``), the planner's seeds and, in the second table, who is
absent (``default_rng(1000 + i)``). Repeats: mean (range) over the seeds; max: the largest
pair count (range); time: mean / max.

*Planned ahead* (everyone attends). ``bot``: :func:`commands.grouping.plan_sessions` with
the bot's defaults, one session after the other, each given the ones before (what the bot
does at each session). ``joint``: all sessions annealed together (``method="joint"``, the
issue's suggestion) with 8000 steps, about the same time. ``squares``: the bot's method on
the plain sum of squared pair counts (``objective="squares"``).

*With absences.* Each student is absent from each session with probability 0.1. Before
each session the groups come from :func:`commands.grouping.next_groups` with who is
present and the pair history so far, which is then updated with the groups held. ``bot``:
the default, planning the session at hand; ``joint re-plan``: planning the rest of the
term for the full roster (``lookahead``) and keeping the first session, re-planned each
time. The bound is that of the sessions as held; time is per call.

Reference figures from the issue (10 sessions): 30 students in 6 groups: random ≈ 265,
bound 165, a good planner ≤ 170 with no pair meeting more than twice; 20 students in 6
groups: bound 50, reachable; 60 students in 8 groups: random ≈ 743, a good planner ≤ 370.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Sequence

import numpy as np

from commands.grouping import (
    Session,
    lower_bound,
    max_pair_count,
    next_groups,
    pair_counts,
    plan_sessions,
    random_groups,
    repeat_meetings,
)

CASES = ((30, 6), (20, 6), (60, 8))
JOINT_STEPS = 8000  # about the time the bot's session-by-session plan takes for 60 x 10
SESSIONS = 10
ABSENCE = 0.1


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def span(values: Sequence[float]) -> str:
    """ "5" if all equal, else "min–max"."""
    lo, hi = min(values), max(values)
    return f"{lo:.0f}" if lo == hi else f"{lo:.0f}–{hi:.0f}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in lines
    )


def held_bound(sessions: Sequence[Session], n_people: int) -> int:
    """Repeats that no grouping of these attendances could avoid."""
    meetings = sum(len(g) * (len(g) - 1) // 2 for s in sessions for g in s)
    return max(0, meetings - n_people * (n_people - 1) // 2)


def random_term(people: Sequence[int], k: int, n_sessions: int, seed: int) -> list[Session]:
    rng = np.random.default_rng(seed)
    return [random_groups(people, k, rng) for _ in range(n_sessions)]


def timed_plan(people: list[int], k: int, n_sessions: int, **kw: object) -> tuple[int, int, float]:
    t0 = time.perf_counter()
    plan = plan_sessions(people, k, n_sessions, **kw)  # type: ignore[arg-type]
    secs = time.perf_counter() - t0
    return repeat_meetings(plan), max_pair_count(plan), secs


def ahead_row(n: int, k: int, n_sessions: int, seeds: Sequence[int]) -> list[str]:
    people = list(range(n))
    rand = [repeat_meetings(random_term(people, k, n_sessions, s)) for s in seeds]
    runs = {
        "bot": [timed_plan(people, k, n_sessions, seed=s) for s in seeds],
        "joint": [
            timed_plan(people, k, n_sessions, seed=s, method="joint", steps=JOINT_STEPS)
            for s in seeds
        ],
        "squares": [timed_plan(people, k, n_sessions, seed=s, objective="squares") for s in seeds],
    }
    row = [str(n), str(k), str(n_sessions), f"{mean(rand):.1f}", str(lower_bound(n, k, n_sessions))]
    for name, results in runs.items():
        reps = [r for r, _, _ in results]
        row += [f"{mean(reps):.1f} ({span(reps)})", span([m for _, m, _ in results])]
        if name != "squares":
            secs = [t for _, _, t in results]
            row.append(f"{mean(secs):.2f} / {max(secs):.2f}")
    return row


def attendance(n: int, n_sessions: int, k: int, seed: int) -> list[list[int]]:
    rng = np.random.default_rng(1000 + seed)
    out = []
    for _ in range(n_sessions):
        present = [p for p in range(n) if rng.random() >= ABSENCE]
        while len(present) < k:  # never fewer students than groups
            present = sorted({*present, int(rng.integers(n))})
        out.append(present)
    return out


def replanned_term(
    days: Sequence[Sequence[int]], roster: Sequence[int], k: int, seed: int, joint: bool
) -> tuple[list[Session], list[float]]:
    """The term as the bot runs it: before each session, groups for who is present from
    the history so far (``joint``: planning the rest of the term for the full roster and
    keeping the first session); then the history is updated with the groups held."""
    history: Counter[frozenset[int]] = Counter()
    held: list[Session] = []
    secs = []
    for i, present in enumerate(days):
        t0 = time.perf_counter()
        left = len(days) - i  # sessions left, this one included
        groups = next_groups(
            present,
            k,
            history,
            left,
            seed=seed * 100 + i,
            lookahead=left if joint else 1,
            roster=roster,
        )
        secs.append(time.perf_counter() - t0)
        held.append(groups)
        history = pair_counts([groups], history)
    return held, secs


def replanned_row(n: int, k: int, n_sessions: int, seeds: Sequence[int]) -> list[str]:
    roster = list(range(n))
    present, rand, bounds = [], [], []
    runs: dict[str, list[tuple[int, int, list[float]]]] = {"bot": [], "joint": []}
    for seed in seeds:
        days = attendance(n, n_sessions, k, seed)
        present += [len(d) for d in days]
        rng = np.random.default_rng(seed)
        rand.append(repeat_meetings([random_groups(d, k, rng) for d in days]))
        for name in runs:
            held, times = replanned_term(days, roster, k, seed, joint=name == "joint")
            runs[name].append((repeat_meetings(held), max_pair_count(held), times))
            if name == "bot":
                bounds.append(held_bound(held, n))
    row = [
        str(n),
        str(k),
        str(n_sessions),
        f"{mean(present):.1f}",
        f"{mean(rand):.1f}",
        f"{mean(bounds):.1f}",
    ]
    for results in runs.values():
        reps = [r for r, _, _ in results]
        secs = [t for _, _, times in results for t in times]
        row += [
            f"{mean(reps):.1f} ({span(reps)})",
            span([m for _, m, _ in results]),
            f"{mean(secs):.2f} / {max(secs):.2f}",
        ]
    return row


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.groups", description=__doc__.split("\n")[0])
    p.add_argument(
        "--cases",
        nargs="*",
        default=[f"{n}x{k}" for n, k in CASES],
        help="STUDENTSxGROUPS, e.g. 30x6",
    )
    p.add_argument("--sessions", type=int, default=SESSIONS)
    p.add_argument("--seeds", type=int, default=5, help="runs per row: seeds 0..SEEDS-1")
    p.add_argument("--no-absences", action="store_true", help="skip the re-planning table")
    args = p.parse_args(argv)
    cases = [tuple(int(x) for x in c.lower().split("x")) for c in args.cases]
    seeds = list(range(args.seeds))

    print(
        f"Planned ahead: {args.sessions} sessions, everyone present. Repeat meetings: "
        f"mean (range) over seeds {seeds[0]}..{seeds[-1]}; max: largest pair count.\n"
    )
    headers = [
        "students",
        "groups",
        "sessions",
        "random",
        "bound",
        "bot",
        "max",
        "time s",
        "joint",
        "max",
        "time s",
        "squares",
        "max",
    ]
    rows = [ahead_row(n, k, args.sessions, seeds) for n, k in cases]
    print(format_table(headers, rows))

    if not args.no_absences:
        print(
            f"\nWith absences: each student absent with probability {ABSENCE} per session; "
            f"groups from who came and the history so far.\n"
        )
        headers = [
            "students",
            "groups",
            "sessions",
            "present",
            "random",
            "bound",
            "bot",
            "max",
            "s / call",
            "joint re-plan",
            "max",
            "s / call",
        ]
        rows = [replanned_row(n, k, args.sessions, seeds) for n, k in cases]
        print(format_table(headers, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
