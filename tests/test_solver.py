"""Tests of the presentation-assignment solver (commands/solver.py): hand-checked tiny
instances, the capacity and battle-size rules, reproducibility, properties against
brute force and random serial dictatorship, and the reporting helpers."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence

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
    stats,
)

PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def standard_only(
    prefs: Mapping[str, Sequence[int]],
    papers: Sequence[int],
    *,
    students: Sequence[str] | None = None,
    max_presenters: int = 2,
    seed: int = 0,
) -> Instance:
    return Instance(
        students=tuple(students if students is not None else prefs),
        standard_papers=tuple(papers),
        battle_pairs=(),
        standard_prefs=prefs,
        battle_prefs={},
        max_presenters=max_presenters,
        seed=seed,
    )


def battles_only(
    students: Sequence[str],
    pairs: Sequence[tuple[int, int]],
    prefs: Mapping[str, Sequence[int]],
    *,
    group: tuple[int, int] = (3, 4),
    seed: int = 0,
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


# ----------------------------------------------------------------------------- brute force


def brute_standard(inst: Instance) -> tuple[int, int, int]:
    """(min worst rank, min total at that worst, min total overall) by enumeration."""
    cap = presenter_cap(inst)
    best: tuple[int, int] | None = None
    min_sum: int | None = None
    for combo in itertools.product(inst.standard_papers, repeat=len(inst.students)):
        if max(Counter(combo).values(), default=0) > cap:
            continue
        ranks = [
            rank_of(inst.standard_prefs, s, p) for s, p in zip(inst.students, combo, strict=True)
        ]
        key = (max(ranks), sum(ranks))
        best = key if best is None else min(best, key)
        min_sum = key[1] if min_sum is None else min(min_sum, key[1])
    assert best is not None and min_sum is not None
    return best[0], best[1], min_sum


def brute_battles(inst: Instance) -> tuple[int, int, int] | None:
    """Same for battles, or None if no assignment satisfies the group sizes."""
    sides = [p for pair in inst.battle_pairs for p in pair]
    best: tuple[int, int] | None = None
    min_sum: int | None = None
    for combo in itertools.product(sides, repeat=len(inst.students)):
        assignment = dict(zip(inst.students, combo, strict=True))
        if not battle_ok(inst, assignment):
            continue
        ranks = [rank_of(inst.battle_prefs, s, p) for s, p in assignment.items()]
        key = (max(ranks), sum(ranks))
        best = key if best is None else min(best, key)
        min_sum = key[1] if min_sum is None else min(min_sum, key[1])
    if best is None or min_sum is None:
        return None
    return best[0], best[1], min_sum


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
    assert brute_standard(inst) == (2, 8, 7)


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
    assert presenter_cap(inst) == 1
    res = solve_standard(inst)
    assert sorted(res.assignment.values()) == [1, 2, 3, 4]


def test_pairs_only_when_students_outnumber_papers() -> None:
    prefs = {s: [1, 2, 3] for s in "abcde"}
    inst = standard_only(prefs, [1, 2, 3, 4])
    assert presenter_cap(inst) == 2
    res = solve_standard(inst)
    counts = Counter(res.assignment.values())
    assert max(counts.values()) == 2 and sum(counts.values()) == 5
    # Pairs on the favourite papers beat anyone taking the unranked paper 4.
    assert res.worst_rank == 3 and 4 not in counts
    assert max(Counter(min_sum_standard(inst).assignment.values()).values()) <= 2


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
    check_result(res, inst, inst.battle_prefs)
    assert res.method == "CP-SAT" and res.proven_optimal


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
    empty = solve(Instance((), papers, pairs, {}, {}))
    assert empty.standard.assignment == {} and empty.battle.assignment == {}
    assert empty.running_battles == [] and empty.standard.worst_rank == 0


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
    assert (c.standard.worst_rank, c.standard.total_rank) == (
        a.standard.worst_rank,
        a.standard.total_rank,
    )
    assert (c.battle.worst_rank, c.battle.total_rank) == (a.battle.worst_rank, a.battle.total_rank)
    inst = standard_only(std_prefs, papers, seed=7)
    assert random_serial_dictatorship(inst, "standard", 5) == random_serial_dictatorship(
        inst, "standard", 5
    )


# ----------------------------------------------------------------------------- properties


@st.composite
def standard_instances(draw: st.DrawFn, max_students: int = 9, max_papers: int = 7) -> Instance:
    n_papers = draw(st.integers(1, max_papers))
    papers = list(range(1, n_papers + 1))
    most = draw(st.integers(1, 3))
    n = draw(st.integers(1, min(max_students, n_papers * most)))
    students = [f"s{i}" for i in range(n)]
    prefs: dict[str, list[int]] = {}
    for s in students:
        if draw(st.integers(0, 9)) == 0:
            continue  # missing from the preferences: ranks nothing
        pool = [*papers, 99]  # 99 is not in the instance
        k = draw(st.integers(0, min(len(pool), 5)))
        prefs[s] = draw(st.permutations(pool))[:k]
    return standard_only(
        prefs, papers, students=students, max_presenters=most, seed=draw(st.integers(0, 99))
    )


@PROPS
@given(standard_instances())
def test_standard_properties(inst: Instance) -> None:
    res = solve_standard(inst)
    prefs = inst.standard_prefs
    check_result(res, inst, prefs)
    assert set(res.assignment.values()) <= set(inst.standard_papers)
    cap = presenter_cap(inst)
    assert max(Counter(res.assignment.values()).values()) <= cap
    assert cap == (1 if len(inst.students) <= len(inst.standard_papers) else inst.max_presenters)
    ms = min_sum_standard(inst)
    assert ms.total_rank == res.min_sum_total
    assert max(Counter(ms.assignment.values()).values()) <= cap
    for seed in (0, 1):
        rsd = random_serial_dictatorship(inst, "standard", seed)
        assert set(rsd) == set(inst.students)
        assert max(Counter(rsd.values()).values()) <= cap  # RSD is feasible here ...
        r_st = stats(rsd, prefs)
        assert res.worst_rank <= r_st.worst_rank  # ... so it is never fairer
        rsd_total = sum(rank_of(prefs, s, p) for s, p in rsd.items())
        assert res.min_sum_total <= rsd_total
        if r_st.worst_rank == res.worst_rank:
            assert res.total_rank <= rsd_total
    if len(inst.students) <= 6 and len(inst.standard_papers) <= 5:
        assert brute_standard(inst) == (res.worst_rank, res.total_rank, res.min_sum_total)


@st.composite
def battle_instances(draw: st.DrawFn) -> Instance:
    n_pairs = draw(st.integers(1, 3))
    pairs = [(10 + 2 * b, 11 + 2 * b) for b in range(n_pairs)]
    sides = [p for pair in pairs for p in pair]
    lo = draw(st.integers(1, 2))
    hi = draw(st.integers(lo, 3))
    n = draw(st.integers(1, 8 if n_pairs <= 2 else 6))
    students = [f"s{i}" for i in range(n)]
    prefs: dict[str, list[int]] = {}
    for s in students:
        k = draw(st.integers(0, min(len(sides), 3)))
        prefs[s] = draw(st.permutations(sides))[:k]
    return battles_only(students, pairs, prefs, group=(lo, hi), seed=draw(st.integers(0, 99)))


@PROPS
@given(battle_instances())
def test_battle_properties(inst: Instance) -> None:
    truth = brute_battles(inst)
    if truth is None:
        with pytest.raises(Infeasible):
            solve_battles(inst)
        return
    res, running = solve_battles(inst)
    check_result(res, inst, inst.battle_prefs)
    assert res.proven_optimal
    assert (res.worst_rank, res.total_rank, res.min_sum_total) == truth
    assert battle_ok(inst, res.assignment)
    sizes = side_sizes(inst, res.assignment)
    assert running == [(a, b) for a, b in inst.battle_pairs if sizes[a] > 0]
    # RSD for battles only caps sides at hi: a relaxation. Where its result happens to be a
    # valid battle assignment it is a feasible alternative, and we are never worse.
    if len(inst.students) <= inst.battle_group[1] * 2 * len(inst.battle_pairs):
        rsd = random_serial_dictatorship(inst, "battle", 0)
        assert max(Counter(rsd.values()).values()) <= inst.battle_group[1]
        if battle_ok(inst, rsd):
            r_st = stats(rsd, inst.battle_prefs)
            assert res.worst_rank <= r_st.worst_rank
            if r_st.worst_rank == res.worst_rank:
                assert res.total_rank <= sum(
                    rank_of(inst.battle_prefs, s, p) for s, p in rsd.items()
                )


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
    # A limit far too short to prove anything: the min-cost-flow warm start (or whatever
    # CP-SAT found) is returned, and it satisfies the group sizes.
    students = [f"s{i:03d}" for i in range(100)]
    pairs = [(1000 + 2 * b, 1001 + 2 * b) for b in range(15)]
    prefs = skewed_battle_prefs(students, [p for pair in pairs for p in pair], 3)
    inst = Instance(tuple(students), (), tuple(pairs), {}, prefs, time_limit_s=0.01)
    res, running = solve_battles(inst)
    check_result(res, inst, prefs)
    assert battle_ok(inst, res.assignment) and 13 <= len(running) <= 15
