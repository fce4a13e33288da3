"""The solver's data types and small helpers (see the package docstring for the rules)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date


class Infeasible(Exception):
    """No assignment satisfies the instance. ``str(err)`` is a message for the instructor:
    it names the rule, the numbers, students or papers that clash, and what to change."""


@dataclass(frozen=True)
class Instance:
    """One assignment problem. Preferences list paper ids best first; a student missing
    from a preference mapping ranks nothing. Every field after ``time_limit_s`` has a
    default that keeps a plain instance valid (see the package docstring). Entries naming
    students outside the roster are ignored with a note; limits, minutes and days of papers
    outside the instance are ignored; a kept or named paper outside it is
    :class:`Infeasible`."""

    students: tuple[str, ...]
    standard_papers: tuple[int, ...]
    battle_pairs: tuple[tuple[int, int], ...]
    standard_prefs: Mapping[str, Sequence[int]]
    battle_prefs: Mapping[str, Sequence[int]]
    max_presenters: int = 2
    battle_group: tuple[int, int] = (3, 4)
    seed: int = 0
    time_limit_s: float = 30.0
    #: Presenters per standard paper: paper -> (min, max). Papers not listed:
    #: ``(1, max_presenters)``. A paper is *covered* when it has at least ``min``.
    paper_limits: Mapping[int, tuple[int, int]] = field(default_factory=dict)
    #: Minutes of each standard paper's slot (30 or 45), for the workload balance;
    #: papers not listed: 30.
    paper_minutes: Mapping[int, int] = field(default_factory=dict)
    #: Class day of every paper (standard and battle), for notice and unavailability.
    paper_days: Mapping[int, date] = field(default_factory=dict)
    #: The publish day; None: no notice rule.
    notice_from: date | None = None
    min_notice_days: int = 7
    #: student -> days they cannot present.
    unavailable: Mapping[str, frozenset[date]] = field(default_factory=dict)
    #: Confirmed pairs presenting one standard paper together; the paper is optional.
    partners: tuple[tuple[str, str, int | None], ...] = ()
    #: Never on the same standard paper, never on the same battle side.
    conflicts: tuple[tuple[str, str], ...] = ()
    #: Hard: this student keeps this standard paper / battle side (paper id).
    keep_standard: Mapping[str, int] = field(default_factory=dict)
    keep_battle: Mapping[str, int] = field(default_factory=dict)
    #: The published assignment (for minimal changes and notice).
    previous_standard: Mapping[str, int] = field(default_factory=dict)
    previous_battle: Mapping[str, int] = field(default_factory=dict)
    minimal_changes: bool = False
    #: False: the old behaviour (papers may stay empty freely, battles run as the ranks
    #: choose).
    coverage: bool = True
    balance: bool = True
    spread_nonrankers: bool = True


@dataclass
class KindResult:
    """The assignment for one kind (standard or battle) and how good it is."""

    assignment: dict[str, int]
    ranks: dict[str, int]
    unranked: set[str]
    worst_rank: int
    total_rank: int
    #: The smallest rank total of any assignment that satisfies the hard rules and is as
    #: good on coverage, notice and minimal changes, with no worst-rank bound (battles:
    #: with the same battles running). ``total_rank - min_sum_total`` is the cost of
    #: fairness.
    min_sum_total: int
    #: Coverage, notice, minimal changes and the rank order (levels 1-4) are proven
    #: optimal. Balance, spread and the tie-break are then exact given the battles that
    #: run, the covered papers and the places of partners and conflicting students.
    proven_optimal: bool
    method: str
    solve_seconds: float
    #: Standard papers left below their minimum; for battles, the first paper of each
    #: battle pair that does not run.
    empty: list[int] = field(default_factory=list)
    #: "" or a sentence for the instructor saying why ``empty`` is not empty.
    empty_reason: str = ""
    #: Students placed on a paper dated less than ``min_notice_days`` after
    #: ``notice_from`` whose placement is not unchanged from ``previous_*``.
    short_notice: set[str] = field(default_factory=set)
    #: Students whose paper differs from ``previous_*`` (only students listed there).
    changed: set[str] = field(default_factory=set)
    #: Plain sentences for the instructor.
    notes: list[str] = field(default_factory=list)
    #: The workload measure minimised at level 5 (standard kind; 0 for battles): the sum
    #: over presenters of (slot minutes / presenters on the paper)², in minutes².
    balance_cost: int = 0


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


def rank_of(prefs: Mapping[str, Sequence[int]], student: str, paper: int) -> int:
    """1-based position of ``paper`` in the student's list, or ``len(list) + 1`` if absent."""
    lst = prefs.get(student, ())
    for i, p in enumerate(lst):
        if p == paper:
            return i + 1
    return len(lst) + 1


def listed(prefs: Mapping[str, Sequence[int]], student: str) -> dict[int, int]:
    """paper -> rank for the papers on the student's list (first occurrence wins)."""
    out: dict[int, int] = {}
    for i, p in enumerate(prefs.get(student, ())):
        out.setdefault(p, i + 1)
    return out


def unranked_rank(prefs: Mapping[str, Sequence[int]], student: str) -> int:
    return len(prefs.get(student, ())) + 1


def rng_for(seed: int, purpose: str) -> random.Random:
    # String seeds are hashed with SHA-512 by `random`, not with the per-process str hash:
    # reproducible across runs and machines.
    return random.Random(f"coursebot-solver/{purpose}/{seed}")


def plural(k: int, word: str, many: str | None = None) -> str:
    """ "1 paper", "2 papers"."""
    return f"{k} {word if k == 1 else (many or word + 's')}"


def names(items: Sequence[object], limit: int = 6) -> str:
    """ "a, b and c" (at most ``limit`` shown, then "and N more")."""
    shown = [str(x) for x in items[:limit]]
    rest = len(items) - len(shown)
    if rest > 0:
        return ", ".join(shown) + f" and {rest} more"
    if len(shown) <= 1:
        return "".join(shown)
    return ", ".join(shown[:-1]) + " and " + shown[-1]
