"""Who presents which paper: a fair, reproducible solver for presentation assignments.

Pure computation: no database, no chat, no clock other than timing the solve. The caller
builds an :class:`Instance` from the course, calls :func:`solve`, and shows the result
(with :func:`stats`, :func:`head_to_head` and :func:`histogram_png` for the comparison,
and each kind's ``empty``, ``empty_reason``, ``short_notice``, ``changed`` and ``notes``).

The problem
-----------
Students rank the course's *standard* papers (30- or 45-minute slots) and its *battle*
papers, best first. Every student presents exactly one standard paper and, when the course
has battles, sits on exactly one side of one battle (a course without battles solves: its
battle result is empty). Instructor papers are never part of an :class:`Instance`.

*Ranks.* A student's rank for a paper is its 1-based position in their list (the first
occurrence, if listed twice); a paper not on the list has rank ``len(list) + 1``
("unranked"), so unranked papers are used only when needed, and a student who ranked
nothing (or is missing from the preferences) is indifferent: a *non-ranker*. Ranks are
taken from the list as given: papers outside the instance still take up positions.

*Standard papers* take ``min..max`` presenters each: ``paper_limits[p]``, else
``(1, max_presenters)``. ``max`` is hard; a paper with fewer than ``min`` is *below its
minimum* (in ``empty``; with ``min >= 2`` it may still get ``1..min-1`` presenters, when
the other levels prefer it). ``paper_minutes`` (default 30) only feed the balance.

*Battles* come in pairs of papers (side A, side B). A battle either runs, with ``lo..hi``
students on *each* side (``battle_group``), or does not run, with nobody on either side.

The rules (defaults: every field's default keeps a plain instance valid)
-----------------------------------------------------------------------
Lexicographic: each level only chooses among the optima of the levels before it.

0. *Hard rules* (a contradiction raises :class:`Infeasible`, whose message names the
   rule, the students or papers, and what to change): one standard paper per student and
   (with battles) one battle side; per-paper ``max``; battle sides ``lo..hi`` or empty;
   ``keep_standard`` / ``keep_battle`` (the student keeps that paper / side); no student on
   a paper dated on one of their ``unavailable`` days; ``conflicts`` (never on the same
   standard paper, never on the same battle side); ``partners`` (the two present the same
   standard paper, one both ranked, or the named paper; a paper one of them keeps counts
   as named; it must allow the pair). A student in two requests joins all three on one
   paper. Contradictions checked up front: ``min > max``, more students than seats, a
   partner pair in conflict or with no commonly ranked paper (that allows them and that
   they can both attend), partners held to two papers, a kept paper that is not in the
   instance, over its limit, on an unavailable day or shared by a conflict, a student
   unavailable on every day with a paper, battle sizes that no number of running battles
   fits. Anything else that cannot be met together is reported by the solve that finds
   it. Entries naming students outside the roster are ignored with a note.
1. *Coverage* (``coverage=True``, the default): maximise the number of standard papers
   that reach their minimum, and the number of battles that run. When the seats allow
   all, all are covered. If not, the papers left below their minimum are the
   *latest-dated* (then the highest ids; undated papers count as latest): among maximum
   coverages the solver maximises the sum over covered papers of their position in date
   order, which leaves exactly the latest ones empty when only the count matters. This is
   part of level 1, so it outranks the students' ranks: with 16 students and 18 papers,
   the two latest stay empty whatever was ranked. *Which* battles run (when not all can)
   is left to the levels below, so the students' battle ranks choose them (the number
   that run is ``min(pairs, n // (2 lo))`` when nothing else stands in the way).
   ``coverage=False`` is the old behaviour: papers may stay empty freely (then at most 1
   presenter per paper while there are no more students than papers, else ``max``) and
   any number of battles that seats everyone may run.
2. *Notice* (when ``notice_from`` is set): minimise the short-notice presenters: those on
   a paper dated before ``notice_from + min_notice_days`` (default 7) whose placement is
   not unchanged from ``previous_*``. Usually 0; coverage comes first, so a paper in the
   window that must be covered gets someone (papers already presented should be left out
   of the instance, or their presenters kept).
3. *Minimal changes* (``minimal_changes=True``, with ``previous_*``): minimise the students
   whose paper or side differs from the previous one. ``changed`` is reported whenever
   ``previous_*`` is given.
4. *Ranks*, egalitarian: minimise the worst rank ``W`` any student gets; then the number
   of students at rank ``W`` (so the fewest are left at the bottom, even at a higher
   total; with ``W`` "none of my choices" this is the fewest possible with none); then the
   total of the ranks.
5. *Balance* (``balance=True``, standard only): minimise the sum over presenters of
   (slot minutes / presenters on the paper)², i.e. ``sum(minutes² / presenters)`` over
   papers with presenters (``balance_cost``, in minutes²). With the covered papers fixed
   the total presenting minutes are fixed, so this minimises the spread of minutes per
   student: a solo 45-minute talk (2025) weighs more than a pair on a 30-minute one (2 ×
   225), and shared papers go to the longer slots first. It is convex in the presenters
   (the flow charges an empty paper as 1.5 solo talks to keep it convex from 0, which only
   matters where papers may stay empty). Used only among equally ranked assignments.
6. *Spread non-rankers* (``spread_nonrankers=True``): minimise the pairs of non-rankers on
   the same paper or side, ``sum k(k-1)/2`` over slots with ``k`` non-rankers (convex: the
   k-th costs ``k - 1``).
7. *Seeded tie-break*: integer weights in ``[0, TIE_RANGE)`` per student-paper choice,
   drawn from ``seed``, so ties are not always broken for, say, students early in the
   roster. Same input and seed, same assignment, every time (see Determinism).

Methods
-------
*The network.* Each kind is a flow network: students (supply 1 each) -> papers or sides
-> sink, with one arc per *seat* (slot -> sink, the k-th seat of a paper carrying the
coverage bonus at ``k = min`` and the balance cost at ``k``), and every level a cost vector
on the arcs. Direct student -> slot arcs exist only for the slots a student ranked (and
their previous, kept or partner slot; a student in a conflict gets an arc to every slot
they may take). All other seats are *pooled*: each student has one arc to the *hub* of
their class (students with the same unavailable days; non-rankers in their own classes
when the spread rule is on), standing for "a slot I did not rank", and the hub has one arc
per slot it may serve. At ``N = 1000`` that is about 8,000 arcs instead of one per
student and slot. In an optimal solution no pooled student can do better on a seat of
their class (their direct arc would be strictly cheaper on some level), so the pooled
students take the hub's seats in a seeded order and every pairing is equally good.

*Min-cost flow (OR-Tools), lexicographic.* Where the network carries every rule (the
standard kind without partners, conflicts or minimums above 1; battles when every battle
runs, without conflicts) the answer is exact by flow alone: levels 1-3, then the smallest
worst rank ``W`` (binary search for the smallest threshold whose arcs still seat
everyone), then levels 4-7 with the arcs above ``W`` removed. Consecutive levels are
combined into one cost where int64 allows (each level weighted above the largest possible
spread of the levels below, so no saving below buys a unit above; OR-Tools refuses costs
above ``2**63 / (2 * (nodes + 1))``, we stop at half), otherwise solved in stages: after a
stage, node potentials from a shortest-path pass on the residual graph pin every arc of
positive reduced cost to its lower bound and every arc of negative reduced cost to its
capacity; by complementary slackness exactly the optimal flows remain, and the next stage
optimises over them. ``N = 10,000`` standard students solve in about a second.

*Branch and bound on flows* (partners, conflicts, minimums of 2 or more; battles that all
run but have conflicts). Each node solves the flow without those side constraints, which
bounds levels 1-4 of everything below it; a broken constraint is branched on (the
partners' paper; which of the two conflicting students leaves the shared slot; a paper
covered or not), best bound first, until no node can beat the best answer: then it is
proven optimal (usually in a handful of nodes; ``N = 1000`` with 20 partner pairs and 20
conflicts takes about half a second). Levels 5-7 are then one flow with those decisions
fixed. The node limit is a count (about ``time_limit_s`` of work), so the search is
deterministic; past it, the best answer is kept unproven, or, if none was found, CP-SAT
takes over.

*CP-SAT* (which battles run when not all can; also the fall-back above). One variable per
arc of the same pooled network (so ~1,400 at ``N = 300`` battles, not one per student and
side), flow conservation, seats filling in order (which makes "seat ``lo`` of both sides
is used" mean "the battle runs", and proves much faster than ``lo * run <= size``),
partners equal, conflicts apart. Phases: levels 1-3, then the worst rank, the number at
it, the total, each fixed as a constraint before the next. A phase is skipped when the
best answer so far already meets a bound: the flow relaxation's value (valid while every
earlier level matched it), a seat count, or each arc at its cheapest bound. Every phase
is hinted with the best answer so far (first from flows: the most popular battles, then
mending broken partner requests and conflicts one at a time), so a limit never leaves us
without an answer. The decisions (battles that run, covered papers, where partners and
conflicting students go) are then fixed and one flow gives levels 4-7 exactly.

*Determinism.* Flows are deterministic; the branch and bound counts nodes; CP-SAT runs
with one worker and a limit in deterministic time (``time_limit_s`` units, about a second
of work each), so the same input and seed give the same search and the same answer on
any machine and under any load (a wall-clock limit of three times the budget is only a
safety net). ``seed`` also seeds CP-SAT's own search.

*What the results say.* ``proven_optimal``: levels 1-4 are proven optimal (always with
flow alone; with branch and bound or CP-SAT when they finished within their limit, else a
note says so); levels 5-7 are then exact given the decisions. ``min_sum_total``: the
smallest rank total of any assignment as good on levels 1-3, with no worst-rank bound
(the cost of fairness is ``total_rank - min_sum_total``); when branch and bound or CP-SAT
was used, among assignments with the same decisions (battles that run, covered papers,
places of partners and conflicting students), which is exact for that and costs one flow
instead of a second search. ``method`` names the path taken.

Random serial dictatorship (RSD), the usual baseline: students in a seeded random order
each take their best paper that still has room. See :func:`random_serial_dictatorship` for
what "room" means for battles.
"""

from __future__ import annotations

from ._core import Infeasible, Instance, KindResult, Solution, Stats, names, plural, rank_of
from ._net import TIE_RANGE
from ._report import (
    head_to_head,
    histogram_png,
    ordinal,
    oversubscribed,
    random_serial_dictatorship,
    stats,
)
from ._rules import BATTLE, STANDARD, presenter_cap, standard_limits
from ._solve import solve_kind

__all__ = [
    "TIE_RANGE",
    "Infeasible",
    "Instance",
    "KindResult",
    "Solution",
    "Stats",
    "head_to_head",
    "histogram_png",
    "min_sum_standard",
    "names",
    "ordinal",
    "oversubscribed",
    "plural",
    "presenter_cap",
    "random_serial_dictatorship",
    "rank_of",
    "solve",
    "solve_battles",
    "solve_standard",
    "standard_limits",
    "stats",
]


def solve_standard(inst: Instance) -> KindResult:
    """The lexicographic optimum of the standard kind (levels 0-7 of the package
    docstring)."""
    return solve_kind(inst, STANDARD)[0]


def min_sum_standard(inst: Instance) -> KindResult:
    """The utilitarian optimum of the standard kind: the same hard rules and levels 1-3
    (coverage, notice, minimal changes), then the minimum total rank with no bound on the
    worst rank, then balance, spread and the tie-break. For the cost of fairness."""
    return solve_kind(inst, STANDARD, egalitarian=False)[0]


def solve_battles(inst: Instance) -> tuple[KindResult, list[tuple[int, int]]]:
    """The lexicographic optimum of the battle kind, and the battle pairs that run (none
    when the instance has no battles)."""
    return solve_kind(inst, BATTLE)


def solve(inst: Instance) -> Solution:
    """Both kinds: see :func:`solve_standard` and :func:`solve_battles`."""
    standard = solve_standard(inst)
    battle, running = solve_battles(inst)
    return Solution(standard=standard, battle=battle, running_battles=running)
