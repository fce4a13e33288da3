"""Tests of the presentation-assignment solver (commands/solver/): hand-checked tiny
instances, the schedule's rules (coverage, per-paper limits, notice, minimal changes,
partners, conflicts, unavailable days, kept papers, balance, spread), reproducibility,
properties against a brute-force enumeration of every level of the objective, and the
reporting helpers."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from commands.solver import (
    Infeasible,
    Instance,
    KindResult,
    head_to_head,
    histogram_png,
    min_sum_standard,
    ordinal,
    oversubscribed,
    presenter_cap,
    random_serial_dictatorship,
    rank_of,
    solve,
    solve_battles,
    solve_standard,
    standard_limits,
    stats,
)

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DAY0 = date(2023, 9, 4)


def standard_only(
    prefs: Mapping[str, Sequence[int]],
    papers: Sequence[int],
    *,
    students: Sequence[str] | None = None,
    max_presenters: int = 2,
    seed: int = 0,
    **rules: object,
) -> Instance:
    return Instance(
        students=tuple(students if students is not None else prefs),
        standard_papers=tuple(papers),
        battle_pairs=(),
        standard_prefs=prefs,
        battle_prefs={},
        max_presenters=max_presenters,
        seed=seed,
        **rules,  # type: ignore[arg-type]
    )


def battles_only(
    students: Sequence[str],
    pairs: Sequence[tuple[int, int]],
    prefs: Mapping[str, Sequence[int]],
    *,
    group: tuple[int, int] = (3, 4),
    seed: int = 0,
    **rules: object,
) -> Instance:
    return Instance(
        students=tuple(students),
        standard_papers=(),
        battle_pairs=tuple(pairs),
        standard_prefs={},
        battle_prefs=prefs,
        battle_group=group,
        seed=seed,
        time_limit_s=20.0,
        **rules,  # type: ignore[arg-type]
    )


def side_sizes(inst: Instance, assignment: Mapping[str, int]) -> dict[int, int]:
    counts = Counter(assignment.values())
    return {p: counts.get(p, 0) for pair in inst.battle_pairs for p in pair}


def battle_ok(inst: Instance, assignment: Mapping[str, int]) -> bool:
    """Every battle runs with lo..hi on both sides, or not at all."""
    lo, hi = inst.battle_group
    sizes = side_sizes(inst, assignment)
    return all(
        (sizes[a] == sizes[b] == 0) or (lo <= sizes[a] <= hi and lo <= sizes[b] <= hi)
        for a, b in inst.battle_pairs
    )


def check_result(res: KindResult, inst: Instance, prefs: Mapping[str, Sequence[int]]) -> None:
    """The fields of a result agree with its assignment."""
    assert set(res.assignment) == set(inst.students)
    assert res.ranks == {s: rank_of(prefs, s, p) for s, p in res.assignment.items()}
    assert res.worst_rank == max(res.ranks.values(), default=0)
    assert res.total_rank == sum(res.ranks.values())
    assert res.unranked == {s for s, p in res.assignment.items() if p not in prefs.get(s, ())}
    assert res.min_sum_total <= res.total_rank


def lex_key(ranks: Iterable[int]) -> tuple[int, int, int]:
    """The rank part of the objective (level 4): (worst rank, students at it, total)."""
    r = list(ranks)
    worst = max(r, default=0)
    return worst, r.count(worst), sum(r)


def result_key(res: KindResult) -> tuple[int, int, int, int]:
    """(worst rank, students at it, total rank, pure minimum total) of a result."""
    worst, at_worst, total = lex_key(res.ranks.values())
    assert (worst, total) == (res.worst_rank, res.total_rank)
    return worst, at_worst, total, res.min_sum_total


# ----------------------------------------------------------------------------- brute force


def _limits(inst: Instance) -> tuple[list[int], list[int]]:
    """(min, max) per standard paper as the package docstring defines them."""
    lo = [
        max(0, inst.paper_limits.get(p, (1, inst.max_presenters))[0]) for p in inst.standard_papers
    ]
    hi = [inst.paper_limits.get(p, (1, inst.max_presenters))[1] for p in inst.standard_papers]
    if not inst.coverage:
        solo = len(inst.students) <= sum(h >= 1 for h in hi)
        lo = [0] * len(hi)
        hi = [min(h, 1) if solo else h for h in hi]
    return lo, hi


def _early(inst: Instance, papers: Sequence[int]) -> list[int]:
    """Coverage preference: the latest-dated paper (then the highest id) is left empty
    first; undated papers count as latest."""
    days = inst.paper_days
    order = sorted(
        range(len(papers)),
        key=lambda j: (papers[j] not in days, days.get(papers[j], date.min), papers[j]),
    )
    early = [0] * len(papers)
    for pos, j in enumerate(order):
        early[j] = len(papers) - pos
    return early


def brute(inst: Instance, kind: str = "standard") -> tuple[tuple[int, ...], int] | None:
    """By enumeration of every assignment that keeps the hard rules: the lexicographic
    minimum of the level key (see :func:`level_keys`) and the minimum rank total among the
    assignments best on levels 1-3; None if no assignment keeps the hard rules."""
    battle = kind == "battle"
    papers = (
        [p for pair in inst.battle_pairs for p in pair] if battle else list(inst.standard_papers)
    )
    n, n_p = len(inst.students), len(papers)
    combos = np.array(list(itertools.product(range(n_p), repeat=n)), dtype=np.int64).reshape(-1, n)
    ok = feasible_mask(inst, kind, combos)
    if not ok.any():
        return None
    keys = level_keys(inst, kind, combos[ok])
    best = min(map(tuple, keys.tolist()))
    upper = keys[:, :-3]
    same = (
        (upper == np.array(best[:-3])).all(axis=1) if upper.shape[1] else np.ones(len(keys), bool)
    )
    return best, int(keys[same, -1].min())


def feasible_mask(inst: Instance, kind: str, combos: np.ndarray) -> np.ndarray:
    battle = kind == "battle"
    papers = (
        [p for pair in inst.battle_pairs for p in pair] if battle else list(inst.standard_papers)
    )
    at = {p: j for j, p in enumerate(papers)}
    idx = {s: i for i, s in enumerate(inst.students)}
    counts = np.stack([(combos == j).sum(axis=1) for j in range(len(papers))], axis=1)
    ok = np.ones(len(combos), dtype=bool)
    if battle:
        lo, hi = inst.battle_group
        a, b = counts[:, 0::2], counts[:, 1::2]
        fits = ((a == 0) & (b == 0)) | ((a >= lo) & (a <= hi) & (b >= lo) & (b <= hi))
        ok &= fits.all(axis=1)
    else:
        _lo, hi = _limits(inst)
        ok &= (counts <= np.array(hi)).all(axis=1)
    keeps = inst.keep_battle if battle else inst.keep_standard
    for s, p in keeps.items():
        ok &= combos[:, idx[s]] == at[p]
    for s, days in inst.unavailable.items():
        for j, p in enumerate(papers):
            if inst.paper_days.get(p) in days:
                ok &= combos[:, idx[s]] != j
    for a, b in inst.conflicts:
        ok &= combos[:, idx[a]] != combos[:, idx[b]]
    if not battle:
        for a, b, paper in inst.partners:
            ia, ib = idx[a], idx[b]
            ok &= combos[:, ia] == combos[:, ib]
            kept = {inst.keep_standard[x] for x in (a, b) if x in inst.keep_standard}
            if paper is not None or kept:
                # A kept paper counts as the named one (both must agree).
                allowed = [at[p] for p in {paper, *kept} - {None}]
                if len(allowed) > 1:
                    allowed = []
            else:
                common = set(inst.standard_prefs.get(a, ())) & set(inst.standard_prefs.get(b, ()))
                allowed = [at[p] for p in common if p in at]
            ok &= np.isin(combos[:, ia], allowed)
    return ok


def level_keys(inst: Instance, kind: str, combos: np.ndarray) -> np.ndarray:
    """Per assignment: (-covered, -early [standard], short notice, changes, worst rank,
    students at it, total rank); the levels that are off are left out."""
    battle = kind == "battle"
    papers = (
        [p for pair in inst.battle_pairs for p in pair] if battle else list(inst.standard_papers)
    )
    prefs = inst.battle_prefs if battle else inst.standard_prefs
    n = len(inst.students)
    counts = np.stack([(combos == j).sum(axis=1) for j in range(len(papers))], axis=1)
    cols = []
    if inst.coverage:
        if battle:
            cols.append(-(counts[:, 0::2] > 0).sum(axis=1))
        else:
            lo, _hi = _limits(inst)
            need = np.array(lo)
            covered = (counts >= need) & (need >= 1)
            cols.append(-covered.sum(axis=1))
            cols.append(-(covered * np.array(_early(inst, papers))).sum(axis=1))
    prev = inst.previous_battle if battle else inst.previous_standard
    prev_j = np.array(
        [papers.index(prev[s]) if prev.get(s) in papers else -1 for s in inst.students]
    )
    if inst.notice_from is not None:
        cutoff = inst.notice_from + timedelta(days=inst.min_notice_days)
        window = np.array([p in inst.paper_days and inst.paper_days[p] < cutoff for p in papers])
        cols.append((window[combos] & (combos != prev_j)).sum(axis=1))
    if inst.minimal_changes and (prev_j >= 0).any():
        cols.append(((prev_j >= 0) & (combos != prev_j)).sum(axis=1))
    ranks = np.array([[rank_of(prefs, s, p) for p in papers] for s in inst.students]).reshape(
        n, len(papers)
    )
    r = ranks[np.arange(n), combos]
    worst = r.max(axis=1)
    cols += [worst, (r == worst[:, None]).sum(axis=1), r.sum(axis=1)]
    return np.stack(cols, axis=1)


def solver_key(inst: Instance, kind: str, res: KindResult) -> tuple[int, ...]:
    papers = (
        [p for pair in inst.battle_pairs for p in pair]
        if kind == "battle"
        else list(inst.standard_papers)
    )
    row = np.array([[papers.index(res.assignment[s]) for s in inst.students]], dtype=np.int64)
    assert feasible_mask(inst, kind, row).all(), "the solver broke a hard rule"
    return tuple(level_keys(inst, kind, row)[0].tolist())


def brute_standard(inst: Instance) -> tuple[int, int, int, int]:
    """(worst, at worst, total, minimum total) of the brute-force optimum."""
    found = brute(inst)
    assert found is not None
    key, min_sum = found
    return (*key[-3:], min_sum)  # type: ignore[return-value]


def brute_battles(inst: Instance) -> tuple[int, int, int, int] | None:
    found = brute(inst, "battle")
    if found is None:
        return None
    key, min_sum = found
    return (*key[-3:], min_sum)  # type: ignore[return-value]


def fast_brute(
    ranks: np.ndarray, combos: np.ndarray, feasible: np.ndarray
) -> tuple[tuple[int, int, int], tuple[int, int]]:
    """Vectorised enumeration over the feasible rows of ``combos`` (one column per student,
    entries index the columns of ``ranks``): (the minimum of (worst, at worst, total), the
    minimum of the old objective (worst, total)), to find where step 2 matters."""
    r = ranks[np.arange(ranks.shape[0]), combos[feasible]]
    worst = r.max(axis=1)
    at_worst = (r == worst[:, None]).sum(axis=1)
    total = r.sum(axis=1)
    new = min(zip(worst.tolist(), at_worst.tolist(), total.tolist(), strict=True))
    old = min(zip(worst.tolist(), total.tolist(), strict=True))
    return new, old


# ----------------------------------------------------------------------------- hand-checked


def test_egalitarian_beats_serial_dictatorship_on_three_students() -> None:
    # Serial dictatorship in roster order: ana takes 1, ben takes 2, cal is left with 3,
    # their 3rd choice (total 5). The lexicographic optimum gives everyone at most their
    # 2nd choice: ana 1 (1st), ben 3 (2nd), cal 2 (1st); total 4, and it is unique.
    prefs = {"ana": [1, 2, 3], "ben": [2, 3, 1], "cal": [2, 1, 3]}
    res = solve_standard(standard_only(prefs, [1, 2, 3]))
    assert res.assignment == {"ana": 1, "ben": 3, "cal": 2}
    assert res.ranks == {"ana": 1, "ben": 2, "cal": 1}
    assert (res.worst_rank, res.total_rank, res.min_sum_total) == (2, 4, 4)
    assert res.unranked == set()
    assert res.proven_optimal and res.method == "min-cost flow"


def test_min_sum_gives_a_third_choice_that_egalitarian_avoids() -> None:
    # Five students, five papers, full rankings. The unique minimum-sum assignment gives
    # four 1st choices and one 3rd (total 7); the unique egalitarian optimum gives everyone
    # a 1st or 2nd choice at total 8: the cost of fairness is 1.
    prefs = {
        "a": [1, 4, 3, 2, 5],
        "b": [2, 5, 1, 3, 4],
        "c": [4, 2, 1, 3, 5],
        "d": [3, 4, 1, 2, 5],
        "e": [1, 3, 5, 4, 2],
    }
    inst = standard_only(prefs, [1, 2, 3, 4, 5])
    utilitarian = min_sum_standard(inst)
    assert utilitarian.assignment == {"a": 1, "b": 2, "c": 4, "d": 3, "e": 5}
    assert (utilitarian.worst_rank, utilitarian.total_rank) == (3, 7)
    fair = solve_standard(inst)
    assert fair.assignment == {"a": 4, "b": 5, "c": 2, "d": 3, "e": 1}
    assert (fair.worst_rank, fair.total_rank, fair.min_sum_total) == (2, 8, 7)
    # brute_standard now also reports the students at the worst rank (step 2 of the
    # objective): here a, b and c get their 2nd choice. With a worst rank of 2, every
    # student at it adds 1 to the total, so step 2 and the total agree and nothing else
    # changes.
    assert brute_standard(inst) == (2, 3, 8, 7)


def test_fewest_at_the_worst_rank_before_the_total() -> None:
    # Step 2 of the objective: fewer students at the worst rank beats a smaller total.
    # 99 and 98 are papers outside the instance (instructor papers, say); they take up
    # list positions, so a's best possible rank is 2 and d's is 3. Unranked papers are
    # rank 4 for a and d and rank 3 for b and c (lists of two).
    # d must take paper 4 (rank 3): anything else is rank 4. So the worst rank is 3, and
    # the other three share papers 1-3, each at rank <= 3:
    #   a 1 (3rd), b 2 (1st), c 3 (1st): ranks 3, 3 (d), 1, 1 -> 2 at rank 3, total 8
    #   a 2 (2nd), b 3 (2nd), c 1 (2nd): ranks 2, 2, 2, 3 (d) -> 1 at rank 3, total 9
    #   a 2 (2nd), b 1 (3rd, unranked), c 3 (1st): 2 at rank 3, total 9
    #   a 1 (3rd), b 3 (2nd), c 2 (3rd, unranked): 3 at rank 3, total 11
    # (a cannot take 3: rank 4.) The old objective (worst, then total) chose the first;
    # the new one takes the second: one student fewer at the worst rank, for total 9.
    prefs = {"a": [99, 2, 1], "b": [2, 3], "c": [3, 1], "d": [99, 98, 4]}
    inst = standard_only(prefs, [1, 2, 3, 4])
    assert presenter_cap(inst) == 2  # allowed, but coverage makes everyone present alone
    for seed in range(4):  # the optimum is unique: no seed changes it
        res = solve_standard(standard_only(prefs, [1, 2, 3, 4], seed=seed))
        assert res.assignment == {"a": 2, "b": 3, "c": 1, "d": 4}
        assert res.ranks == {"a": 2, "b": 2, "c": 2, "d": 3}
        assert result_key(res) == (3, 1, 9, 8) and res.proven_optimal
        assert stats(res.assignment, prefs).at_worst == 1
    # The pure minimum sum is the first assignment (total 8): the fairness costs 1.
    assert min_sum_standard(inst).assignment == {"a": 1, "b": 2, "c": 3, "d": 4}
    assert brute_standard(inst) == (3, 1, 9, 8)


def test_unranked_papers_only_when_needed() -> None:
    # Three students all rank only paper 1; papers 2 and 3 are unranked for everyone
    # (rank 2). Only one can have paper 1.
    prefs = {"a": [1], "b": [1], "c": [1]}
    res = solve_standard(standard_only(prefs, [1, 2, 3]))
    assert sorted(res.assignment.values()) == [1, 2, 3]
    assert res.worst_rank == 2 and res.total_rank == 5
    assert len(res.unranked) == 2
    # A student missing from the preferences ranks nothing: every paper is rank 1 to them.
    prefs2 = {"a": [1, 2]}
    res2 = solve_standard(standard_only(prefs2, [1, 2], students=["a", "zed"]))
    assert res2.assignment == {"a": 1, "zed": 2}
    assert res2.ranks == {"a": 1, "zed": 1} and res2.unranked == {"zed"}


def test_papers_outside_the_instance_are_never_assigned() -> None:
    prefs = {"a": [99, 1, 2], "b": [99, 2, 1]}  # 99 is, say, an instructor paper
    res = solve_standard(standard_only(prefs, [1, 2]))
    assert res.assignment == {"a": 1, "b": 2}
    assert res.ranks == {"a": 2, "b": 2}  # ranks are positions in the list as given


# ----------------------------------------------------------------------------- capacities


def test_solo_while_students_do_not_outnumber_papers() -> None:
    prefs = {s: [1, 2] for s in "abcd"}  # everyone wants the same two papers
    inst = standard_only(prefs, [1, 2, 3, 4])
    res = solve_standard(inst)
    # Coverage: every paper gets its one presenter, so nobody pairs up.
    assert sorted(res.assignment.values()) == [1, 2, 3, 4] and res.empty == []
    # The old rule with coverage off: at most 1 per paper while n <= papers.
    old = standard_only(prefs, [1, 2, 3, 4], coverage=False)
    assert presenter_cap(old) == 1
    assert sorted(solve_standard(old).assignment.values()) == [1, 2, 3, 4]


def test_pairs_only_when_students_outnumber_papers() -> None:
    prefs = {s: [1, 2, 3] for s in "abcde"}
    # Coverage off (the old behaviour): pairs on the favourite papers beat anyone taking
    # the unranked paper 4, which stays empty.
    old = standard_only(prefs, [1, 2, 3, 4], coverage=False)
    assert presenter_cap(old) == 2
    res = solve_standard(old)
    counts = Counter(res.assignment.values())
    assert max(counts.values()) == 2 and sum(counts.values()) == 5
    assert res.worst_rank == 3 and 4 not in counts
    assert res.empty == [4] and res.empty_reason.startswith("Coverage is off")
    assert max(Counter(min_sum_standard(old).assignment.values()).values()) <= 2
    # Coverage on (the default): paper 4 gets a presenter although nobody ranked it; one
    # pair shares a favourite.
    new = solve_standard(standard_only(prefs, [1, 2, 3, 4]))
    counts = Counter(new.assignment.values())
    assert counts[4] == 1 and sorted(counts.values()) == [1, 1, 1, 2]
    assert new.worst_rank == 4 and len(new.unranked) == 1 and new.empty == []


def test_max_presenters_is_configurable() -> None:
    prefs = {s: [1] for s in "abcdef"}
    res = solve_standard(standard_only(prefs, [1, 2], max_presenters=3))
    assert Counter(res.assignment.values()) == {1: 3, 2: 3}


def test_too_many_students_is_infeasible_with_a_clear_message() -> None:
    prefs = {s: [1] for s in "abcdefg"}
    with pytest.raises(Infeasible) as err:
        solve_standard(standard_only(prefs, [1, 2, 3]))
    msg = str(err.value)
    assert msg.startswith("7 students cannot each present a standard paper")
    assert "3 papers" in msg and "seat only 6" in msg
    assert "Add at least 1 standard paper" in msg and "allow 3 presenters" in msg
    with pytest.raises(Infeasible, match="no standard papers"):
        solve_standard(standard_only(prefs, []))
    with pytest.raises(Infeasible, match="at least 1"):
        solve_standard(standard_only(prefs, [1], max_presenters=0))
    with pytest.raises(Infeasible, match="with their presenter limits seat only 4"):
        solve_standard(standard_only(prefs, [1, 2, 3], paper_limits={1: (1, 1), 2: (1, 1)}))


def test_per_paper_limits() -> None:
    # 30-minute papers take 1-2 presenters, 45-minute ones 1-3 (the course).
    papers = [1, 2, 3, 4]
    minutes = {1: 30, 2: 30, 3: 45, 4: 45}
    limits = {p: (1, 2) if minutes[p] == 30 else (1, 3) for p in papers}
    prefs = {f"s{i}": [1, 2] for i in range(9)}  # everyone wants the 30-minute papers
    inst = standard_only(prefs, papers, paper_limits=limits, paper_minutes=minutes)
    assert standard_limits(inst) == limits and presenter_cap(inst) == 3
    res = solve_standard(inst)
    counts = Counter(res.assignment.values())
    assert counts == {1: 2, 2: 2, 3: 3, 4: 2} or counts == {1: 2, 2: 2, 3: 2, 4: 3}
    with pytest.raises(
        Infeasible, match="Paper 3 needs at least 4 presenters but allows at most 3"
    ):
        solve_standard(standard_only(prefs, papers, paper_limits={3: (4, 3)}))


def test_step_two_survives_staged_flows(monkeypatch: pytest.MonkeyPatch) -> None:
    # The levels of the flow objective are combined into one cost where int64 allows and
    # solved in stages (each narrowing the optimal face by reduced costs) where it does not.
    # With a tiny cost limit every level is its own stage: the answers must not change.
    from commands.solver import _flow

    rng = random.Random(5)
    papers = list(range(1, 6))
    insts = []
    for t in range(12):
        prefs = {f"s{i}": rng.sample([*papers, 99], rng.choice([1, 2, 3])) for i in range(6)}
        days = {p: DAY0 + timedelta(days=3 * rng.randrange(4)) for p in papers}
        insts.append(
            standard_only(
                prefs,
                papers,
                seed=t,
                paper_days=days,
                notice_from=DAY0,
                paper_limits={1: (2, 3)} if t % 3 == 0 else {},
            )
        )
    wide = [solve_standard(i).assignment for i in insts]
    monkeypatch.setattr(_flow, "COST_MARGIN", 2**40)
    for inst, before in zip(insts, wide, strict=True):
        res = solve_standard(inst)
        assert solver_key(inst, "standard", res) == brute(inst)[0]  # type: ignore[index]
        assert res.assignment == before


# ----------------------------------------------------------------------------- battles


def skewed_battle_prefs(students: Sequence[str], sides: Sequence[int], k: int) -> dict:
    """Deterministic preferences crowded on the first sides: student i ranks k sides
    starting at side i % 3, in steps of 1 or 2."""
    return {
        s: [sides[(i % 3 + j * (i % 2 + 1)) % len(sides)] for j in range(k)]
        for i, s in enumerate(students)
    }


def test_battle_selection_25_students_5_pairs() -> None:
    students = [f"s{i:02d}" for i in range(25)]
    pairs = [(100 + 2 * b, 101 + 2 * b) for b in range(5)]
    sides = [p for pair in pairs for p in pair]
    inst = battles_only(students, pairs, skewed_battle_prefs(students, sides, 3))
    res, running = solve_battles(inst)
    assert len(running) == 4  # 6r <= 25 <= 8r only for r = 4
    sizes = side_sizes(inst, res.assignment)
    for a, b in inst.battle_pairs:
        if (a, b) in running:
            assert 3 <= sizes[a] <= 4 and 3 <= sizes[b] <= 4
        else:
            assert sizes[a] == sizes[b] == 0
            assert res.empty == [a]
    assert "25 students fill at most 4 battles of 3–4 per side" in res.empty_reason
    check_result(res, inst, inst.battle_prefs)
    assert res.method == "CP-SAT + min-cost flow" and res.proven_optimal


def test_battles_choose_which_run_from_preferences() -> None:
    # 6 students, 3 pairs, groups of exactly 3: one battle runs, and it is the one
    # everyone ranked (sides 5 and 6), with the split that fits their first choices.
    students = list("abcdef")
    prefs = {s: [5, 6] if i < 3 else [6, 5] for i, s in enumerate(students)}
    inst = battles_only(students, [(1, 2), (3, 4), (5, 6)], prefs, group=(3, 3))
    res, running = solve_battles(inst)
    assert running == [(5, 6)]
    assert res.assignment == {"a": 5, "b": 5, "c": 5, "d": 6, "e": 6, "f": 6}
    assert (res.worst_rank, res.total_rank) == (1, 6)
    assert res.empty == [1, 3]


def test_battles_fewest_with_none_of_their_choices() -> None:
    # Step 2 for battles, in the case: the worst rank is "none of my choices", and
    # the solver leaves as few students there as possible, even at a higher total.
    # 4 students, groups of exactly 2: one battle runs, two students per side. Everyone
    # ranks two sides, so a side off the list is rank 3. Per battle, the best splits:
    #   (1, 2): b and c on 2 (1st each), a and d on 1 (3rd each): 2 with none, total 8
    #   (3, 4): c and d on 4 (2nd, 1st), a and b on 3 (3rd each): 2 with none, total 9
    #   (5, 6): c is rank 3 on both sides. b and d on 5 (2nd each), a and c on 6 (2nd,
    #           3rd): only c with none, total 9. The other splits of (5, 6) leave 2 or 3
    #           with none (e.g. a and b on 5, c and d on 6: total 9, c and d with none).
    # The old objective (worst, then total) ran (1, 2); the new one runs (5, 6).
    students = list("abcd")
    prefs = {"a": [5, 6], "b": [2, 5], "c": [2, 4], "d": [4, 5]}
    pairs = [(1, 2), (3, 4), (5, 6)]
    for seed in range(3):  # the optimum is unique: no seed changes it
        inst = battles_only(students, pairs, prefs, group=(2, 2), seed=seed)
        res, running = solve_battles(inst)
        assert running == [(5, 6)]
        assert res.assignment == {"a": 6, "b": 5, "c": 6, "d": 5}
        assert res.unranked == {"c"}
        # The cost of fairness is measured with the same battles running: the least total
        # on (5, 6) is 9 (any two of a, b and d on 5), so none here; over all battles it
        # would be 8, on (1, 2).
        assert result_key(res) == (3, 1, 9, 9) and res.proven_optimal
    assert brute_battles(inst) == (3, 1, 9, 8)


def test_impossible_battle_sizes_are_infeasible() -> None:
    students = [f"s{i:02d}" for i in range(25)]
    inst = battles_only(students, [(1, 2), (3, 4)], {})
    with pytest.raises(Infeasible) as err:
        solve_battles(inst)
    msg = str(err.value)
    assert msg.startswith("25 students cannot fill battles of 3–4 per side with 2 pairs")
    assert "at least 4" in msg
    # Too few: 5 students cannot make one battle of 3 per side.
    with pytest.raises(Infeasible, match="1 battle needs at least 6 students"):
        solve_battles(battles_only(list("abcde"), [(1, 2), (3, 4)], {}))
    # A gap: 17 students fit neither 2 battles (at most 16) nor 3 (at least 18).
    with pytest.raises(Infeasible, match="2 battles seat at most 16 and 3 battles need"):
        solve_battles(
            battles_only(
                [f"s{i}" for i in range(17)],
                [(2 * b, 2 * b + 1) for b in range(5)],
                {},
            )
        )
    with pytest.raises(Infeasible, match="group size"):
        solve_battles(battles_only(list("abcdef"), [(1, 2)], {}, group=(4, 3)))


def test_solve_both_kinds_and_empty_class() -> None:
    students = tuple(f"s{i:02d}" for i in range(14))
    papers = tuple(range(1, 11))
    std_prefs = {s: [papers[(i * 3 + j) % 10] for j in range(7)] for i, s in enumerate(students)}
    pairs = ((101, 102), (103, 104), (105, 106))
    bat_prefs = skewed_battle_prefs(students, [p for pair in pairs for p in pair], 3)
    inst = Instance(students, papers, pairs, std_prefs, bat_prefs, seed=3)
    sol = solve(inst)
    check_result(sol.standard, inst, std_prefs)
    check_result(sol.battle, inst, bat_prefs)
    assert set(sol.running_battles) <= set(pairs) and len(sol.running_battles) == 2
    assert battle_ok(inst, sol.battle.assignment)
    assert sol.standard.empty == []  # 14 students cover all 10 papers
    empty = solve(Instance((), papers, pairs, {}, {}))
    assert empty.standard.assignment == {} and empty.battle.assignment == {}
    assert empty.running_battles == [] and empty.standard.worst_rank == 0


def test_a_course_without_battles_solves() -> None:
    students = tuple(f"s{i}" for i in range(5))
    inst = Instance(students, (1, 2, 3), (), {s: [1, 2] for s in students}, {})
    sol = solve(inst)
    assert set(sol.standard.assignment) == set(students)
    assert sol.battle.assignment == {} and sol.running_battles == []
    assert sol.battle.empty == [] and sol.battle.proven_optimal


# ----------------------------------------------------------------------------- the rules


def sample_course(seed: int = 0, **rules: object) -> Instance:
    """The sample course's shape: 25 students, 18 standard papers (6 of 30 minutes, 12 of
    45, on Mondays and Wednesdays), 5 battles with groups of 3-4 per side (25 students fill
    only 4), 7 standard and 3 battle choices crowded on a few favourites, as in the issue's
    report (where 3 papers were left with no presenter)."""
    rng = random.Random(seed)
    papers = list(range(5, 23))
    minutes = {p: 30 if p % 3 == 0 else 45 for p in papers}
    days = {p: DAY0 + timedelta(days=7 * (k // 2) + 2 * (k % 2)) for k, p in enumerate(papers)}
    pairs = [(100 + 2 * b, 101 + 2 * b) for b in range(5)]
    for b, (a, c) in enumerate(pairs):
        days[a] = days[c] = DAY0 + timedelta(days=9 + 14 * b)
    students = [f"s{i:02d}" for i in range(25)]
    weights = [1 / (k + 1) for k in range(len(papers))]
    std: dict[str, list[int]] = {}
    for s in students:
        mine: list[int] = []
        while len(mine) < 7:
            p = rng.choices(papers, weights)[0]
            if p not in mine:
                mine.append(p)
        std[s] = mine
    sides = [p for pair in pairs for p in pair]
    bat = {s: rng.sample(sides[:6], 3) for s in students}
    return Instance(
        students=tuple(students),
        standard_papers=tuple(papers),
        battle_pairs=tuple(pairs),
        standard_prefs=std,
        battle_prefs=bat,
        max_presenters=2,
        battle_group=(3, 4),
        seed=seed,
        time_limit_s=10.0,
        paper_limits={p: (1, 2) if minutes[p] == 30 else (1, 3) for p in papers},
        paper_minutes=minutes,
        paper_days=days,
        **rules,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_sample_course_covers_every_paper(seed: int) -> None:
    inst = sample_course(seed)
    sol = solve(inst)
    counts = Counter(sol.standard.assignment.values())
    assert set(counts) == set(inst.standard_papers) and sol.standard.empty == []
    assert sol.standard.empty_reason == ""
    for p, c in counts.items():
        assert 1 <= c <= inst.paper_limits[p][1]
    assert sum(c == 1 for c in counts.values()) >= 11  # 25 students on 18 papers
    # 4 of the 5 battles run (25 students fill at most 4 battles of 3-4 per side).
    assert len(sol.running_battles) == 4 and battle_ok(inst, sol.battle.assignment)
    assert len(sol.battle.empty) == 1 and "do not run" in sol.battle.empty_reason
    # Balance: with everyone's ranks settled, the presenters who share a paper share the
    # 45-minute ones first, whenever the ranks leave that open (never worse than
    # coverage-off's pairs, which ignore the minutes).
    assert sol.standard.balance_cost > 0
    # The old behaviour (coverage off) leaves papers empty on the same rankings.
    old = solve_standard(sample_course(seed, coverage=False))
    assert len(old.empty) >= 1 and old.empty_reason.startswith("Coverage is off")


def test_coverage_when_there_are_too_few_students() -> None:
    # 16 students, 18 papers: 2 stay empty, the latest-dated ones, whatever the ranks.
    papers = list(range(1, 19))
    days = {p: DAY0 + timedelta(days=p) for p in papers}
    prefs = {f"s{i}": [17, 18, 1] for i in range(16)}
    res = solve_standard(standard_only(prefs, papers, paper_days=days))
    assert res.empty == [17, 18]
    assert res.empty_reason.startswith(
        "16 students cannot fill 18 papers that need at least 1 presenter each: 2 stay empty"
    )
    assert sorted(Counter(res.assignment.values()).values()) == [1] * 16
    # Without days, the highest ids stay empty.
    res = solve_standard(standard_only(prefs, papers))
    assert res.empty == [17, 18]


def test_balance_pairs_on_the_longer_paper() -> None:
    # Three students who rank nothing, a 30- and a 45-minute paper: the pair takes the
    # 45-minute one (a solo 45-minute talk is more work than a pair on a 30-minute one).
    inst = standard_only({}, [1, 2], students=["a", "b", "c"], paper_minutes={1: 30, 2: 45})
    for seed in range(4):
        res = solve_standard(
            standard_only(
                {}, [1, 2], students=["a", "b", "c"], seed=seed, paper_minutes={1: 30, 2: 45}
            )
        )
        assert Counter(res.assignment.values()) == {1: 1, 2: 2}
        assert res.balance_cost == round(30**2 + 45**2 / 2)
    off = solve_standard(
        Instance(
            inst.students,
            (1, 2),
            (),
            {},
            {},
            paper_minutes={1: 30, 2: 45},
            balance=False,
            spread_nonrankers=False,
        )
    )
    assert sorted(Counter(off.assignment.values()).values()) == [1, 2]
    # Balance never trades against ranks: a and b want the 30-minute paper.
    prefs = {"a": [1], "b": [1], "c": []}
    res = solve_standard(
        standard_only(prefs, [1, 2], students=["a", "b", "c"], paper_minutes={1: 30, 2: 45})
    )
    assert res.assignment == {"a": 1, "b": 1, "c": 2}


def test_spread_nonrankers() -> None:
    # 8 students on 2 battles of exactly 2 per side. The 4 who ranked something each get
    # their first choice, one per side; the 4 who ranked nothing fill the other seat of
    # each side, one non-ranker per side (never two together where avoidable).
    students = [f"s{i}" for i in range(8)]
    pairs = [(1, 2), (3, 4)]
    prefs = {s: [1 + i // 2] if i % 2 else [] for i, s in enumerate(students)}
    for seed in range(5):
        res, _ = solve_battles(battles_only(students, pairs, prefs, group=(2, 2), seed=seed))
        nonrankers = [res.assignment[s] for s in students if not prefs[s]]
        assert sorted(Counter(nonrankers).values()) == [1, 1, 1, 1]
        assert any("ranked nothing" in note for note in res.notes)
    # Standard: 4 non-rankers and 2 rankers on 3 papers of up to 2: no pair of non-rankers
    # where a ranker could take the seat.
    prefs = {"r1": [1], "r2": [2]}
    res = solve_standard(
        standard_only(prefs, [1, 2, 3], students=["r1", "r2", "n1", "n2", "n3", "n4"])
    )
    per = Counter(res.assignment[s] for s in ("n1", "n2", "n3", "n4"))
    assert sorted(per.values()) == [1, 1, 2]


def test_notice_avoids_papers_in_the_next_week() -> None:
    # Paper 1 is in 3 days; with notice from today, a student goes there only if nobody
    # can avoid it (coverage comes first), and students who already had it stay.
    papers = [1, 2, 3]
    days = {1: DAY0 + timedelta(days=3), 2: DAY0 + timedelta(days=10), 3: DAY0 + timedelta(days=12)}
    prefs = {"a": [1, 2, 3], "b": [1, 2, 3], "c": [1, 2, 3], "d": [1, 2, 3]}
    inst = standard_only(prefs, papers, paper_days=days, notice_from=DAY0)
    res = solve_standard(inst)
    # Coverage puts someone on paper 1: exactly one short-notice presenter.
    assert len(res.short_notice) == 1 and Counter(res.assignment.values())[1] == 1
    assert any("less than 7 days' notice (" in note for note in res.notes)
    # With a previous assignment that had a on paper 1, a stays and nobody is short.
    again = standard_only(
        prefs, papers, paper_days=days, notice_from=DAY0, previous_standard={"a": 1}
    )
    res = solve_standard(again)
    assert res.assignment["a"] == 1 and res.short_notice == set()
    # Coverage off: nobody lands on paper 1 at all.
    res = solve_standard(
        standard_only(prefs, papers, paper_days=days, notice_from=DAY0, coverage=False)
    )
    assert 1 not in res.assignment.values() and res.short_notice == set()
    # Battles too: the battle in 5 days does not run when another can.
    students = [f"s{i}" for i in range(6)]
    pairs = [(10, 11), (12, 13)]
    bdays = {
        10: DAY0 + timedelta(days=5),
        11: DAY0 + timedelta(days=5),
        12: DAY0 + timedelta(days=20),
        13: DAY0 + timedelta(days=20),
    }
    bat = {s: [10, 11] for s in students}
    res, running = solve_battles(
        battles_only(students, pairs, bat, group=(3, 3), paper_days=bdays, notice_from=DAY0)
    )
    assert running == [(12, 13)] and res.short_notice == set() and res.empty == [10]


def test_unavailable_keep_conflicts_partners() -> None:
    papers = [1, 2, 3, 4]
    days = {p: DAY0 + timedelta(days=7 * p) for p in papers}
    prefs = {"a": [1, 2], "b": [1, 2], "c": [1, 3], "d": [3, 1], "e": [4, 1]}
    inst = standard_only(
        prefs,
        papers,
        paper_days=days,
        unavailable={"a": frozenset({days[1]})},
        keep_standard={"e": 4},
        conflicts=(("c", "d"),),
        partners=(("a", "b", None),),
        time_limit_s=5.0,
    )
    res = solve_standard(inst)
    got = res.assignment
    assert got["a"] == got["b"] == 2  # together on a paper both ranked, a is away on 1's day
    assert got["e"] == 4 and got["c"] != got["d"]
    assert res.method == "branch and bound on min-cost flows" and res.proven_optimal
    assert any("Partners a and b present paper 2 together" in note for note in res.notes)
    assert solver_key(inst, "standard", res) == brute(inst)[0]  # type: ignore[index]


def test_battles_run_as_many_as_the_rules_allow() -> None:
    # 8 students fill 1 or 2 battles of 2-4 per side; coverage runs 2 when it can. With 5
    # of them away on battle (3, 4)'s day, only 3 could sit there: 1 battle runs.
    students = [f"s{i}" for i in range(8)]
    pairs = [(1, 2), (3, 4)]
    prefs = {s: [1, 2] for s in students}
    res, running = solve_battles(battles_only(students, pairs, prefs, group=(2, 4)))
    assert running == pairs and res.empty == []
    days = {1: DAY0, 2: DAY0, 3: DAY0 + timedelta(days=7), 4: DAY0 + timedelta(days=7)}
    away = {s: frozenset({days[3]}) for s in students[:5]}
    inst = battles_only(students, pairs, prefs, group=(2, 4), paper_days=days, unavailable=away)
    res, running = solve_battles(inst)
    assert running == [(1, 2)] and res.empty == [3]
    assert "unavailable days" in res.empty_reason
    check_rules(inst, res, "battle")


def test_contradictions_name_the_rule() -> None:
    prefs = {"a": [1, 2], "b": [3], "c": [1]}
    papers = [1, 2, 3]
    cases = [
        (
            {"partners": (("a", "b", None),)},
            "The partners a and b rank no standard paper in common",
        ),
        (
            {"partners": (("a", "c", None),), "conflicts": (("a", "c"),)},
            "are partners but must not present together",
        ),
        (
            {"partners": (("a", "c", None),), "paper_limits": {1: (1, 1)}},
            "allow at most 1 presenter",
        ),
        ({"partners": (("a", "c", 7),)}, "which is not a standard paper"),
        ({"keep_standard": {"a": 1, "b": 1, "c": 1}}, "are to keep paper 1, which takes at most 2"),
        (
            {"keep_standard": {"a": 1, "c": 1}, "conflicts": (("a", "c"),)},
            "both are to keep paper 1",
        ),
        ({"keep_standard": {"a": 9}}, "keep paper 9, which is not a standard paper"),
        (
            {"unavailable": {"a": frozenset({DAY0})}, "paper_days": dict.fromkeys(papers, DAY0)},
            "a is unavailable on every day with a standard paper",
        ),
        (
            {
                "keep_standard": {"a": 2},
                "unavailable": {"a": frozenset({DAY0})},
                "paper_days": {2: DAY0},
            },
            "is unavailable that day",
        ),
        ({"partners": (("a", "c", 1),), "keep_standard": {"a": 2}}, "are held to different papers"),
        (
            {"partners": (("a", "c", 1),), "keep_standard": {"b": 1}, "paper_limits": {1: (1, 2)}},
            "a, c and b must all present paper 1",
        ),
    ]
    for rules, text in cases:
        with pytest.raises(Infeasible, match=text):
            solve_standard(standard_only(prefs, papers, **rules))
    # Entries naming students outside the roster are ignored, with a note.
    res = solve_standard(standard_only(prefs, papers, conflicts=(("a", "zed"),)))
    assert any("zed is not on the roster" in note for note in res.notes)
    # Battles: a kept side that is not a battle paper; a conflict kept on one side.
    students = [f"s{i}" for i in range(6)]
    with pytest.raises(Infeasible, match="not a battle paper"):
        solve_battles(battles_only(students, [(1, 2)], {}, group=(3, 3), keep_battle={"s0": 5}))
    with pytest.raises(Infeasible, match="both are to keep paper 1"):
        solve_battles(
            battles_only(
                students,
                [(1, 2)],
                {},
                group=(3, 3),
                keep_battle={"s0": 1, "s1": 1},
                conflicts=(("s0", "s1"),),
            )
        )


def test_minimal_changes_keeps_the_published_assignment() -> None:
    inst = sample_course(4)
    first = solve(inst)
    # Re-solving with another seed and the published assignment moves nobody.
    again = sample_course(
        9,
        previous_standard=first.standard.assignment,
        previous_battle=first.battle.assignment,
        minimal_changes=True,
    )
    sol = solve(again)
    assert sol.standard.changed == set() and sol.battle.changed == set()
    assert sol.standard.assignment == first.standard.assignment
    # One student leaves: the others keep their papers as far as the rules allow.
    gone = first.standard.assignment
    leaver = min(gone)
    fewer = sample_course(9, previous_standard=gone, minimal_changes=True)
    fewer = Instance(
        **{
            **fewer.__dict__,
            "students": tuple(s for s in fewer.students if s != leaver),
            "battle_pairs": (),
        }
    )
    res = solve_standard(fewer)
    assert len(res.changed) <= 1 and res.empty == []
    # Without minimal changes, `changed` is still reported.
    plain = solve_standard(sample_course(9, previous_standard=gone))
    assert plain.changed == {s for s in gone if plain.assignment[s] != gone[s]}


# ----------------------------------------------------------------------------- reproducibility


def test_same_seed_same_assignment() -> None:
    students = [f"s{i:02d}" for i in range(30)]
    papers = list(range(1, 21))
    # Heavy ties: everyone has the same list, so the tie-break decides almost everything.
    std_prefs = {s: [1, 2, 3, 4, 5, 6, 7] for s in students}
    pairs = [(100 + 2 * b, 101 + 2 * b) for b in range(5)]
    bat_prefs = {s: [100, 101, 102] for s in students}
    runs = [
        solve(Instance(tuple(students), tuple(papers), tuple(pairs), std_prefs, bat_prefs, seed=s))
        for s in (7, 7, 8)
    ]
    a, b, c = runs
    assert a.standard.assignment == b.standard.assignment
    assert a.battle.assignment == b.battle.assignment
    assert a.running_battles == b.running_battles
    # Another seed may pick another assignment, but never a worse one.
    assert result_key(c.standard) == result_key(a.standard)
    assert result_key(c.battle) == result_key(a.battle)
    inst = standard_only(std_prefs, papers, seed=7)
    assert random_serial_dictatorship(inst, "standard", 5) == random_serial_dictatorship(
        inst, "standard", 5
    )


def test_same_seed_same_assignment_with_cp_sat() -> None:
    # The CP-SAT path (battles chosen from many, partners, conflicts) is deterministic too:
    # one worker and deterministic time limits.
    rng = random.Random(3)
    students = [f"s{i:03d}" for i in range(90)]
    pairs = [(1000 + 2 * b, 1001 + 2 * b) for b in range(18)]
    sides = [p for pair in pairs for p in pair]
    weights = [1 / (k + 1) for k in range(len(sides))]
    bat = {s: list(dict.fromkeys(rng.choices(sides, weights, k=5)))[:3] for s in students}
    papers = list(range(1, 61))
    std = {s: rng.sample(papers[:20], 5) for s in students}
    rules = {
        "partners": (("s000", "s001", None), ("s002", "s003", None)),
        "conflicts": (("s004", "s005"), ("s006", "s007")),
        "time_limit_s": 5.0,
    }
    std = {**std, "s001": std["s000"], "s003": std["s002"]}
    insts = [
        Instance(tuple(students), tuple(papers), tuple(pairs), std, bat, seed=11, **rules)
        for _ in range(2)
    ]  # type: ignore[arg-type]
    a, b = (solve(i) for i in insts)
    assert a.standard.assignment == b.standard.assignment
    assert a.battle.assignment == b.battle.assignment
    assert a.standard.method == "branch and bound on min-cost flows"
    assert a.battle.method == "CP-SAT + min-cost flow"
    assert a.standard.proven_optimal and a.battle.proven_optimal


# ----------------------------------------------------------------------------- properties


@st.composite
def standard_instances(draw: st.DrawFn, rules: bool = True) -> Instance:
    """Small standard instances, with every rule drawn at random when ``rules``."""
    n_papers = draw(st.integers(1, 4))
    papers = list(range(1, n_papers + 1))
    most = draw(st.integers(1, 3))
    n = draw(st.integers(1, min(6, n_papers * most)))
    students = [f"s{i}" for i in range(n)]
    prefs: dict[str, list[int]] = {}
    for s in students:
        if draw(st.integers(0, 9)) == 0:
            continue  # missing from the preferences: ranks nothing
        pool = [*papers, 99]  # 99 is not in the instance
        k = draw(st.integers(0, min(len(pool), 4)))
        prefs[s] = draw(st.permutations(pool))[:k]
    extra: dict[str, object] = {}
    if rules:
        limits = {}
        for p in papers:
            if draw(st.booleans()):
                hi = draw(st.integers(1, 3))
                limits[p] = (draw(st.integers(0, min(hi, 2))), hi)
        if sum(limits.get(p, (1, most))[1] for p in papers) < n:
            limits = {}
        days = {p: DAY0 + timedelta(days=draw(st.sampled_from([2, 5, 9, 14]))) for p in papers}
        pick = st.sampled_from(students)
        extra = {
            "paper_limits": limits,
            "paper_minutes": {p: draw(st.sampled_from([30, 45])) for p in papers},
            "paper_days": days,
            "notice_from": draw(st.sampled_from([None, DAY0])),
            "coverage": draw(st.sampled_from([True, True, True, False])),
        }
        if draw(st.booleans()):
            s = draw(pick)
            extra["unavailable"] = {s: frozenset({days[draw(st.sampled_from(papers))]})}
        if draw(st.integers(0, 3)) == 0:
            extra["keep_standard"] = {draw(pick): draw(st.sampled_from(papers))}
        if n >= 2 and draw(st.integers(0, 2)) == 0:
            a, b = draw(st.permutations(students))[:2]
            extra["conflicts"] = ((a, b),)
        if n >= 2 and draw(st.integers(0, 2)) == 0:
            a, b = draw(st.permutations(students))[:2]
            named = draw(st.sampled_from([None, None, papers[0]]))
            if named is None:
                common = draw(st.sampled_from(papers))
                prefs[a] = [common, *[p for p in prefs.get(a, []) if p != common]]
                prefs[b] = [*[p for p in prefs.get(b, []) if p != common], common]
            extra["partners"] = ((a, b, named),)
        if draw(st.booleans()):
            extra["previous_standard"] = {
                s: draw(st.sampled_from(papers)) for s in students[: n // 2 + 1]
            }
            extra["minimal_changes"] = draw(st.booleans())
    return standard_only(
        prefs,
        papers,
        students=students,
        max_presenters=most,
        seed=draw(st.integers(0, 99)),
        **extra,
    )


def check_min_sum(res: KindResult, least: int) -> None:
    """``min_sum_total`` is the least total under levels 1-3: over all assignments when
    flow alone solved the kind, else with the same battles running, papers covered and
    partners and conflicting students placed (so never below the overall least)."""
    if res.method == "min-cost flow":
        assert res.min_sum_total == least
    else:
        assert least <= res.min_sum_total <= res.total_rank


def check_rules(inst: Instance, res: KindResult, kind: str) -> None:
    """The hard rules, checked one by one on a result."""
    got = res.assignment
    counts = Counter(got.values())
    if kind == "standard":
        _lo, hi = _limits(inst)
        for j, p in enumerate(inst.standard_papers):
            assert counts.get(p, 0) <= hi[j], "a paper over its limit"
        assert set(res.empty) == {
            p
            for p in inst.standard_papers
            if counts.get(p, 0) < inst.paper_limits.get(p, (1, inst.max_presenters))[0]
        }
        for a, b, paper in inst.partners:
            assert got[a] == got[b]
            named = {paper, inst.keep_standard.get(a), inst.keep_standard.get(b)} - {None}
            both = set(inst.standard_prefs.get(a, ())) & set(inst.standard_prefs.get(b, ()))
            assert got[a] in (named or both)
    else:
        assert battle_ok(inst, got)
    keeps = inst.keep_standard if kind == "standard" else inst.keep_battle
    assert all(got[s] == p for s, p in keeps.items())
    for s, days in inst.unavailable.items():
        assert inst.paper_days.get(got[s]) not in days
    for a, b in inst.conflicts:
        assert got[a] != got[b]


@PROPS
@given(standard_instances())
def test_standard_rules_against_enumeration(inst: Instance) -> None:
    found = brute(inst)
    if found is None:
        with pytest.raises(Infeasible):
            solve_standard(inst)
        return
    res = solve_standard(inst)
    check_result(res, inst, inst.standard_prefs)
    check_rules(inst, res, "standard")
    assert res.proven_optimal
    key, min_sum = found
    assert solver_key(inst, "standard", res) == key  # every level, by enumeration
    check_min_sum(res, min_sum)
    assert res.changed == {s for s, p in inst.previous_standard.items() if res.assignment[s] != p}
    if inst.notice_from is not None:
        cutoff = inst.notice_from + timedelta(days=inst.min_notice_days)
        short = {
            s
            for s, p in res.assignment.items()
            if inst.paper_days[p] < cutoff and inst.previous_standard.get(s) != p
        }
        assert res.short_notice == short


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(standard_instances())
def test_standard_rules_by_cp_sat(inst: Instance) -> None:
    # The same with the branch and bound switched off: CP-SAT (then flow) decides the
    # partners, conflicts and papers with a minimum of 2 or more, as it does when the branch
    # and bound reaches its work limit.
    from commands.solver import _solve

    with mock.patch.object(_solve, "_bnb_nodes", lambda prob, inst: 0):
        found = brute(inst)
        if found is None:
            with pytest.raises(Infeasible):
                solve_standard(inst)
            return
        res = solve_standard(inst)
    check_rules(inst, res, "standard")
    assert res.proven_optimal
    key, min_sum = found
    assert solver_key(inst, "standard", res) == key
    check_min_sum(res, min_sum)


@PROPS
@given(standard_instances(rules=False))
def test_standard_properties(inst: Instance) -> None:
    res = solve_standard(inst)
    prefs = inst.standard_prefs
    check_result(res, inst, prefs)
    assert set(res.assignment.values()) <= set(inst.standard_papers)
    counts = Counter(res.assignment.values())
    assert max(counts.values()) <= presenter_cap(inst) == inst.max_presenters
    # Coverage: every paper reaches its minimum (1) when there are enough students.
    n, n_papers = len(inst.students), len(inst.standard_papers)
    assert len(counts) == min(n, n_papers) and len(res.empty) == max(0, n_papers - n)
    ms = min_sum_standard(inst)
    assert ms.total_rank == res.min_sum_total
    for seed in (0, 1):
        rsd = random_serial_dictatorship(inst, "standard", seed)
        assert set(rsd) == set(inst.students)
        assert max(Counter(rsd.values()).values()) <= inst.max_presenters
        rsd_key = lex_key(rank_of(prefs, s, p) for s, p in rsd.items())
        # RSD ignores coverage; where it happens to cover the same papers (those that
        # coverage chose: with fewer students than papers, the latest stay empty) it is a
        # feasible alternative, and we are never worse in the rank order.
        if set(rsd.values()) == set(counts):
            assert result_key(res)[:3] <= rsd_key
    assert brute_standard(inst)[:3] == result_key(res)[:3]


@st.composite
def battle_instances(draw: st.DrawFn) -> Instance:
    n_pairs = draw(st.integers(1, 3))
    pairs = [(10 + 2 * b, 11 + 2 * b) for b in range(n_pairs)]
    sides = [p for pair in pairs for p in pair]
    lo = draw(st.integers(1, 2))
    hi = draw(st.integers(lo, 3))
    n = draw(st.integers(1, 6 if n_pairs <= 2 else 5))
    students = [f"s{i}" for i in range(n)]
    prefs: dict[str, list[int]] = {}
    for s in students:
        k = draw(st.integers(0, min(len(sides), 3)))
        prefs[s] = draw(st.permutations(sides))[:k]
    days = {}
    for b, (a, c) in enumerate(pairs):
        days[a] = days[c] = DAY0 + timedelta(days=draw(st.sampled_from([3, 10, 17])) + b)
    pick = st.sampled_from(students)
    extra: dict[str, object] = {
        "paper_days": days,
        "notice_from": draw(st.sampled_from([None, DAY0])),
        "coverage": draw(st.sampled_from([True, True, False])),
    }
    if draw(st.booleans()):
        extra["unavailable"] = {draw(pick): frozenset({days[draw(st.sampled_from(sides))]})}
    if draw(st.integers(0, 3)) == 0:
        extra["keep_battle"] = {draw(pick): draw(st.sampled_from(sides))}
    if n >= 2 and draw(st.integers(0, 2)) == 0:
        a, b = draw(st.permutations(students))[:2]
        extra["conflicts"] = ((a, b),)
    if draw(st.booleans()):
        extra["previous_battle"] = {s: draw(st.sampled_from(sides)) for s in students[: n // 2 + 1]}
        extra["minimal_changes"] = draw(st.booleans())
    return battles_only(
        students, pairs, prefs, group=(lo, hi), seed=draw(st.integers(0, 99)), **extra
    )


@PROPS
@given(battle_instances())
def test_battle_properties(inst: Instance) -> None:
    found = brute(inst, "battle")
    if found is None:
        with pytest.raises(Infeasible):
            solve_battles(inst)
        return
    res, running = solve_battles(inst)
    check_result(res, inst, inst.battle_prefs)
    check_rules(inst, res, "battle")
    assert res.proven_optimal
    key, min_sum = found
    assert solver_key(inst, "battle", res) == key  # every level, by enumeration
    check_min_sum(res, min_sum)
    sizes = side_sizes(inst, res.assignment)
    assert running == [(a, b) for a, b in inst.battle_pairs if sizes[a] > 0]
    assert res.empty == [a for a, b in inst.battle_pairs if sizes[a] == 0]
    if len(inst.students) <= inst.battle_group[1] * 2 * len(inst.battle_pairs):
        rsd = random_serial_dictatorship(inst, "battle", 0)
        assert max(Counter(rsd.values()).values()) <= inst.battle_group[1]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(standard_instances(), st.integers(0, 50))
def test_minimal_changes_moves_nobody_when_the_previous_is_still_best(
    inst: Instance, seed: int
) -> None:
    # Solve, then solve again with that as the published assignment and another seed: the
    # published one is optimal on coverage and notice, so minimal changes keeps it whole.
    if brute(inst) is None:
        return
    first = solve_standard(inst)
    again = Instance(
        **{
            **inst.__dict__,
            "seed": seed,
            "previous_standard": first.assignment,
            "minimal_changes": True,
        }
    )
    res = solve_standard(again)
    assert res.changed == set() and res.assignment == first.assignment


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 5), st.integers(1, 3), st.data())
def test_coverage_when_seats_allow(n_papers: int, most: int, data: st.DataObject) -> None:
    # With n >= the sum of the minimums and the maximums seating everyone, every paper
    # reaches its minimum, whatever the ranks.
    papers = list(range(1, n_papers + 1))
    limits = {p: (data.draw(st.integers(0, most)), most) for p in papers}
    need = sum(lo for lo, _hi in limits.values())
    n = data.draw(st.integers(max(need, 1), n_papers * most))
    students = [f"s{i}" for i in range(n)]
    prefs = {
        s: data.draw(st.permutations(papers))[: data.draw(st.integers(0, n_papers))]
        for s in students
    }
    res = solve_standard(standard_only(prefs, papers, paper_limits=limits, time_limit_s=5.0))
    counts = Counter(res.assignment.values())
    assert res.empty == [] and all(counts.get(p, 0) >= lo for p, (lo, _hi) in limits.items())
    assert all(counts.get(p, 0) <= hi for p, (_lo, hi) in limits.items())


def test_step_two_against_enumeration_standard() -> None:
    # Seeded random instances of the kind where step 2 matters (6 students, 6 papers, lists
    # of 2-4 that may name a paper outside the instance, so unranked is rank 3-5 and often
    # the worst: the hub arcs then count for step 2 too), each checked against all 720
    # assignments: the solver's (worst, at worst, total) must be the lexicographic minimum,
    # and min_sum_total the minimum total.
    rng = random.Random(20240607)
    papers = list(range(1, 7))
    students = [f"s{i}" for i in range(6)]
    combos = np.array(list(itertools.permutations(range(6))))
    feasible = np.ones(len(combos), dtype=bool)
    differs = 0
    for _ in range(250):
        prefs = {s: rng.sample([*papers, 99], rng.choice([2, 3, 4])) for s in students}
        inst = standard_only(prefs, papers, seed=rng.randrange(100))
        ranks = np.array([[rank_of(prefs, s, p) for p in papers] for s in students])
        new, old = fast_brute(ranks, combos, feasible)
        differs += (new[0], new[2]) != old
        res = solve_standard(inst)
        min_total = int(ranks[np.arange(6), combos].sum(axis=1).min())
        assert result_key(res) == (*new, min_total)
    assert differs >= 5  # the old objective (worst, then total) is wrong on these


def test_step_two_against_enumeration_battles() -> None:
    # The same for battles: 5 or 6 students, 3 pairs, groups of 2-3, lists of 2 (unranked
    # is rank 3, "none of my choices"). Every instance is enumerated; CP-SAT solves all
    # where step 2 changes the optimum and every fourth of the others.
    rng = random.Random(7)
    pairs = [(10, 11), (12, 13), (14, 15)]
    sides = [p for pair in pairs for p in pair]
    combos: dict[int, np.ndarray] = {}
    feasible: dict[int, np.ndarray] = {}
    for n in (5, 6):  # every side per student, and which of those satisfy the group sizes
        combos[n] = np.array(list(itertools.product(range(6), repeat=n)))
        size = np.stack([(combos[n] == j).sum(axis=1) for j in range(6)], axis=1)
        a, b = size[:, 0::2], size[:, 1::2]
        fits = ((a == 0) & (b == 0)) | ((a >= 2) & (a <= 3) & (b >= 2) & (b <= 3))
        feasible[n] = fits.all(axis=1)
    differs = solved = 0
    for trial in range(120):
        n = 5 + trial % 2
        students = [f"s{i}" for i in range(n)]
        prefs = {s: rng.sample(sides, 2) for s in students}
        inst = battles_only(students, pairs, prefs, group=(2, 3), seed=trial)
        ranks = np.array([[rank_of(prefs, s, p) for p in sides] for s in students])
        new, old = fast_brute(ranks, combos[n], feasible[n])
        step_two = (new[0], new[2]) != old
        differs += step_two
        if step_two or trial % 4 == 0:
            res, running = solve_battles(inst)
            assert battle_ok(inst, res.assignment) and res.proven_optimal
            # min_sum_total: the least total with the same battle running.
            (b,) = [pairs.index(pair) for pair in running]
            same = feasible[n] & (combos[n] // 2 == b).all(axis=1)
            min_total = int(ranks[np.arange(n), combos[n][same]].sum(axis=1).min())
            assert result_key(res) == (*new, min_total)
            solved += 1
    assert differs >= 4 and solved >= 30


# ----------------------------------------------------------------------------- reporting


def test_rank_of() -> None:
    prefs = {"a": [5, 7, 9, 7]}
    assert [rank_of(prefs, "a", p) for p in (5, 7, 9, 1)] == [1, 2, 3, 5]
    assert rank_of(prefs, "nobody", 5) == 1


def test_stats_and_head_to_head() -> None:
    prefs = {"a": [1, 2, 3], "b": [2, 1], "c": [3, 1, 2], "d": []}
    assignment = {"a": 1, "b": 3, "c": 2, "d": 4}
    st_ = stats(assignment, prefs)
    # ranks: a 1, b 3 (unranked, list of 2), c 3, d 1 (unranked, empty list)
    assert st_.n == 4 and st_.profile == {1: 2, 3: 2}
    assert st_.unranked == 2 and st_.mean_rank == 2.0
    assert st_.pct_first == 25.0 and st_.pct_top3 == 50.0  # only listed papers count
    assert st_.worst_rank == 3 and st_.at_worst == 2
    assert list(st_.profile) == sorted(st_.profile)
    empty = stats({}, prefs)
    assert (empty.n, empty.mean_rank, empty.worst_rank, empty.at_worst) == (0, 0.0, 0, 0)
    other = {"a": 2, "b": 2, "c": 2, "d": 1}
    assert head_to_head(assignment, other, prefs) == (1, 1, 2)
    assert head_to_head(other, assignment, prefs) == (1, 1, 2)


def test_oversubscribed() -> None:
    prefs = {"a": [1, 2], "b": [1], "c": [1, 3], "d": [2], "e": [2], "f": [9], "g": []}
    assert oversubscribed(prefs, {1: 1, 2: 1, 3: 1}) == [(1, 3), (2, 2)]
    assert oversubscribed(prefs, {1: 2, 2: 2}) == [(1, 3)]
    assert oversubscribed(prefs, {1: 3, 2: 2}) == []


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (1, "1st"),
        (2, "2nd"),
        (3, "3rd"),
        (4, "4th"),
        (11, "11th"),
        (12, "12th"),
        (13, "13th"),
        (21, "21st"),
        (22, "22nd"),
        (23, "23rd"),
        (101, "101st"),
        (111, "111th"),
        (112, "112th"),
        (0, "0th"),
    ],
)
def test_ordinal(n: int, text: str) -> None:
    assert ordinal(n) == text


def test_histogram_png() -> None:
    png = histogram_png({1: 12, 2: 7, 4: 1, 8: 2}, "Standard papers: choice received")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 5_000
    assert histogram_png({}, "empty").startswith(b"\x89PNG")


def test_rsd_battle_and_bad_kind() -> None:
    students = [f"s{i}" for i in range(9)]
    inst = battles_only(students, [(1, 2)], {s: [1] for s in students})
    with pytest.raises(Infeasible, match="9 students cannot sit on 2 battle sides of at most 4"):
        random_serial_dictatorship(inst, "battle", 0)
    with pytest.raises(ValueError, match="kind"):
        random_serial_dictatorship(inst, "critique", 0)
    small = battles_only(students[:7], [(1, 2)], {s: [1] for s in students})
    rsd = random_serial_dictatorship(small, "battle", 0)
    assert Counter(rsd.values()) == {1: 4, 2: 3}
    assert math.isclose(stats(rsd, small.battle_prefs).pct_first, 400 / 7)


def test_battle_time_limit_still_returns_a_valid_assignment() -> None:
    # A limit far too short to prove anything (coverage off, so CP-SAT chooses how many
    # battles run): the min-cost-flow warm start (or whatever CP-SAT found) is returned, and
    # it satisfies the group sizes.
    students = [f"s{i:03d}" for i in range(100)]
    pairs = [(1000 + 2 * b, 1001 + 2 * b) for b in range(15)]
    prefs = skewed_battle_prefs(students, [p for pair in pairs for p in pair], 3)
    inst = Instance(tuple(students), (), tuple(pairs), {}, prefs, time_limit_s=0.01, coverage=False)
    res, running = solve_battles(inst)
    check_result(res, inst, prefs)
    assert battle_ok(inst, res.assignment) and 13 <= len(running) <= 15
    if not res.proven_optimal:
        assert any("time limit" in note for note in res.notes)
