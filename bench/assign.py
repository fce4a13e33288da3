"""Quality and speed of the presentation-assignment solver on generated preferences.

Run from the repository root::

    python -m bench.assign                 # all tables, the sizes from the issues
    python -m bench.assign --quick         # one seed, sizes up to 300 (about half a minute)
    python -m bench.assign --sizes 30 300 --rule-sizes 300 --battle-sizes 30 --seeds 2

Every row aggregates ``--seeds`` instances (default 3: seeds 1..3): rates and means are
averaged, the worst rank and the number of battles run are shown as a range, the solve
time as mean / max. Instance ``seed`` draws all its randomness from
``numpy.random.default_rng`` seeded from ``seed`` and the sizes, and the solver and RSD get
the same ``seed``, so every number except the times is reproducible. The machine is
shared: times are wall clock, under whatever else runs.

*Standard table.* ``N`` students and ``P = round(2N/3)`` standard papers with 1-2
presenters each (the defaults: coverage on). Paper ``j`` (``j = 1..P``) has Zipf
popularity ``1/j``. Each student ranks 7 distinct papers, drawn one after another with
probability proportional to popularity among the papers not yet drawn (successive
sampling without replacement, via Efraimidis-Spirakis keys ``u^(1/w)``); the draw order
is the student's ranking, best first. A paper not on a list counts as rank 8. Rows: our
solver (coverage, then minimum worst rank, fewest students at it, minimum total), the
pure minimum-sum optimum (coverage, then the minimum total) and random serial
dictatorship (RSD, which ignores coverage). Columns: mean rank, % who got their first
choice, % in their top 3, worst rank, % unranked, empty papers, solve time, proven
optimal, and the cost of fairness (our total rank minus the minimum-sum total).

*Rules table.* The same students and rankings with the schedule's rules: a third of the
papers are 30-minute slots with 1-2 presenters, the rest 45-minute slots with 1-3; two
class days a week (Monday and Wednesday) with ``P/26`` papers each, notice from the first
Monday with 7 days' minimum, so the first two class days' papers are in the notice window
(coverage puts a presenter on each: those are the short-notice presenters there is no way
around). Variants: ``rules`` as said; ``+ pairs``: also ``N/50`` partner pairs (with a
shared favourite) and ``N/50`` conflicts; ``+ few``: ``P = round(1.1 N)`` papers, so about
a tenth stay empty (the latest). Columns as above plus empty papers (and the class days
they fall on), short-notice presenters and the method.

*Battle table.* ``N`` students, groups of 3-4 per side, each student ranks ``c`` sides
(``c = 3`` or ``5``, Zipf ``1/j`` as above), so "none of my choices" is rank ``c + 1``.
Settings: ``all run``: ``ceil(N/7)`` pairs and coverage on, so every battle runs (a flow
problem); ``choose``: ``ceil(N/5)`` pairs and coverage on, so ``floor(N/6)`` run and the
solver chooses which; ``old``: ``ceil(N/7)`` pairs with coverage off, the solver choosing
how many and which run (the old behaviour, the hardest case). Columns: battles run, % of
students with none of their choices (mean and range), the fewest possible such students
(a separate pooled CP-SAT model that minimises only that count under the same group and
coverage rules), mean and worst rank, solve time, proven optimal, and % with none under
RSD with 4 seats per side (a relaxation: it ignores the minimum group size and the
pairing of sides). Our objective (worst rank, then fewest students at it, ...) meets the
fewest possible exactly whenever it is proven optimal and the worst rank is "none".

Targets (issues #1 and #17): standard N = 300 under 1 s and N = 1000 under 10 s; with the
rules N = 300 under 2 s, N = 1000 under 20 s, N = 10,000 optimal in about a second without
partners; battles proven optimal at N <= 300 in under 10 s, at N = 1000 within 1
percentage point of the fewest possible with none of their choices.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from collections.abc import Sequence
from datetime import date, timedelta

import numpy as np
from ortools.sat.python import cp_model

from commands.solver import (
    Instance,
    KindResult,
    min_sum_standard,
    random_serial_dictatorship,
    solve_battles,
    solve_standard,
    stats,
)

STANDARD_SIZES = (30, 100, 300, 1000)
RULE_SIZES = (30, 100, 300, 1000, 10_000)
BATTLE_SIZES = (30, 100, 300, 1000)
BATTLE_CHOICES = (3, 5)
RULE_VARIANTS = ("rules", "+ pairs", "+ few")
BATTLE_SETTINGS = ("all run", "choose", "old")
RANKED = 7
ZIPF_S = 1.0
#: The first Monday of the generated term (the publish day of the notice rule).
TERM_START = date(2023, 8, 28)


def zipf_lists(
    rng: np.random.Generator, n_lists: int, items: Sequence[int], k: int, s: float = ZIPF_S
) -> list[list[int]]:
    """``n_lists`` rankings of ``k`` distinct items each: successive draws without
    replacement with probability ∝ ``1/j^s`` for the ``j``-th item (1-based)."""
    weights = 1.0 / np.arange(1, len(items) + 1) ** s
    # Efraimidis-Spirakis: sorting u^(1/w) descending is successive weighted sampling.
    keys = np.log(rng.random((n_lists, len(items)))) / weights
    order = np.argsort(-keys, axis=1, kind="stable")[:, :k]
    return [[items[j] for j in row] for row in order]


def standard_instance(n: int, seed: int) -> Instance:
    rng = np.random.default_rng(seed * 1_000_003 + n)
    papers = tuple(range(1, round(2 * n / 3) + 1))
    students = tuple(f"s{i:05d}" for i in range(n))
    lists = zipf_lists(rng, n, papers, RANKED)
    return Instance(
        students=students,
        standard_papers=papers,
        battle_pairs=(),
        standard_prefs=dict(zip(students, lists, strict=True)),
        battle_prefs={},
        max_presenters=2,
        seed=seed,
    )


def rules_instance(n: int, seed: int, variant: str = "rules") -> Instance:
    """The standard instance with the schedule's rules (see the module docstring)."""
    rng = np.random.default_rng(seed * 1_000_003 + n + 17)
    n_papers = round(1.1 * n) if variant == "+ few" else round(2 * n / 3)
    papers = tuple(range(1, n_papers + 1))
    minutes = {p: 30 if p % 3 == 0 else 45 for p in papers}
    limits = {p: (1, 2) if minutes[p] == 30 else (1, 3) for p in papers}
    per_day = max(1, n_papers // 26)
    days = {}
    for p in papers:
        k = (p - 1) // per_day  # the k-th class day: Mondays and Wednesdays
        days[p] = TERM_START + timedelta(days=7 * (k // 2) + 2 * (k % 2))
    students = tuple(f"s{i:05d}" for i in range(n))
    prefs = dict(zip(students, zipf_lists(rng, n, papers, RANKED), strict=True))
    extra: dict[str, object] = {}
    if variant == "+ pairs":
        k = max(1, n // 50)
        partners = []
        taken: set[int] = set()
        for t in range(k):
            a, b = students[2 * t], students[2 * t + 1]
            # b ranks first the best of a's choices that no other pair shares.
            shared = next((p for p in prefs[a] if p not in taken), prefs[a][0])
            taken.add(shared)
            prefs[b] = [shared, *[p for p in prefs[b] if p != shared][: RANKED - 1]]
            partners.append((a, b, None))
        conflicts = [(students[2 * k + 2 * t], students[2 * k + 2 * t + 1]) for t in range(k)]
        extra = {"partners": tuple(partners), "conflicts": tuple(conflicts)}
    return Instance(
        students=students,
        standard_papers=papers,
        battle_pairs=(),
        standard_prefs=prefs,
        battle_prefs={},
        max_presenters=2,
        seed=seed,
        paper_limits=limits,
        paper_minutes=minutes,
        paper_days=days,
        notice_from=TERM_START,
        min_notice_days=7,
        **extra,  # type: ignore[arg-type]
    )


def battle_instance(
    n: int, choices: int, seed: int, time_limit_s: float, setting: str = "old"
) -> Instance:
    rng = np.random.default_rng(seed * 1_000_003 + n + 7919 * choices)
    m = math.ceil(n / (5 if setting == "choose" else 7))
    pairs = tuple((10_000 + 2 * b, 10_001 + 2 * b) for b in range(m))
    sides = [p for pair in pairs for p in pair]
    students = tuple(f"s{i:05d}" for i in range(n))
    lists = zipf_lists(rng, n, sides, choices)
    return Instance(
        students=students,
        standard_papers=(),
        battle_pairs=pairs,
        standard_prefs={},
        battle_prefs=dict(zip(students, lists, strict=True)),
        battle_group=(3, 4),
        seed=seed,
        time_limit_s=time_limit_s,
        coverage=setting != "old",
    )


def fewest_unranked(
    inst: Instance, time_limit_s: float, hint: dict[str, int] | None = None
) -> int | None:
    """Reference for the battle table: the fewest students who can be left with none of
    their choices under the same group-size and coverage rules (CP-SAT, minimising only
    that count, from the ``hint`` assignment if given). Pooled: one variable per student
    and ranked side, one per student for "a side I did not rank", and a count of such
    seats per side; each side's size is a row of seat Booleans filled in order (the first
    ``lo`` of both sides equal to "the battle runs"), which CP-SAT proves far faster than
    ``lo * run <= size <= hi * run``. None if not proven within the limit."""
    lo, hi = inst.battle_group
    n, m = len(inst.students), len(inst.battle_pairs)
    sides = [p for pair in inst.battle_pairs for p in pair]
    at = {p: j for j, p in enumerate(sides)}
    counts = [r for r in range(m + 1) if 2 * lo * r <= n <= 2 * hi * r]
    md = cp_model.CpModel()
    seats = [md.new_int_var(0, hi, f"u{j}") for j in range(len(sides))]
    per_side: list[list[cp_model.IntVar]] = [[] for _ in sides]
    none = []
    for s in inst.students:
        mine = [at[p] for p in dict.fromkeys(inst.battle_prefs.get(s, ())) if p in at]
        xs = [md.new_bool_var(f"{s}@{j}") for j in mine]
        for j, x in zip(mine, xs, strict=True):
            per_side[j].append(x)
        u = md.new_bool_var(f"{s}@none")
        none.append(u)
        md.add_exactly_one([*xs, u])
        if hint is not None:
            for j, x in zip(mine, xs, strict=True):
                md.add_hint(x, int(at[hint[s]] == j))
            md.add_hint(u, int(at[hint[s]] not in mine))
    md.add(sum(seats) == sum(none))
    runs = []
    for b in range(m):
        rows = []
        for j in (2 * b, 2 * b + 1):
            row = [md.new_bool_var(f"seat{j}_{k}") for k in range(hi)]
            for first, second in itertools.pairwise(row):
                md.add(second <= first)
            md.add(sum(per_side[j]) + seats[j] == sum(row))
            rows.append(row)
        runs.append(rows[0][0])
        for v in rows[0][1:lo] + rows[1][:lo]:
            md.add(v == rows[0][0])
    if inst.coverage:
        md.add(sum(runs) == max(counts))
    else:
        md.add_linear_constraint(sum(runs), min(counts), max(counts))
    md.minimize(sum(none))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.max_time_in_seconds = time_limit_s
    if solver.solve(md) != cp_model.OPTIMAL:
        return None
    return round(solver.objective_value)


def span(values: Sequence[float], fmt: str = "{:.0f}") -> str:
    """ "5" if all equal, else "min–max"."""
    lo, hi = min(values), max(values)
    return fmt.format(lo) if lo == hi else f"{fmt.format(lo)}–{fmt.format(hi)}"


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def yes_if_all(flags: Sequence[bool]) -> str:
    return "yes" if all(flags) else f"{sum(flags)}/{len(flags)}"


def _empty_days(inst: Instance, res: KindResult) -> int:
    """The class days with a paper left below its minimum."""
    return len({inst.paper_days[p] for p in res.empty if p in inst.paper_days})


def standard_rows(n: int, seeds: Sequence[int]) -> list[list[str]]:
    """One row per method, aggregated over ``seeds`` (one instance per seed)."""
    cols: dict[str, dict[str, list[float]]] = {}
    proven: dict[str, list[bool]] = {}
    for seed in seeds:
        inst = standard_instance(n, seed)
        ours = solve_standard(inst)
        ms = min_sum_standard(inst)
        t0 = time.perf_counter()
        rsd = random_serial_dictatorship(inst, "standard", seed)
        rsd_secs = time.perf_counter() - t0
        for method, assignment, secs, opt, extra in (
            (
                "ours",
                ours.assignment,
                ours.solve_seconds,
                ours.proven_optimal,
                ours.total_rank - ours.min_sum_total,
            ),
            ("min-sum", ms.assignment, ms.solve_seconds, ms.proven_optimal, 0),
            ("RSD", rsd, rsd_secs, False, None),
        ):
            st = stats(assignment, inst.standard_prefs)
            c = cols.setdefault(method, {})
            for key, value in (
                ("mean", st.mean_rank),
                ("first", st.pct_first),
                ("top3", st.pct_top3),
                ("worst", st.worst_rank),
                ("unranked", 100.0 * st.unranked / st.n),
                ("empty", len(inst.standard_papers) - len(set(assignment.values()))),
                ("ms", secs * 1000),
                ("fair", extra if extra is not None else float("nan")),
            ):
                c.setdefault(key, []).append(value)
            proven.setdefault(method, []).append(opt)
    label = {
        "ours": "ours: coverage, min worst, # at worst, sum",
        "min-sum": "coverage, pure minimum sum",
        "RSD": "random serial dictatorship",
    }
    rows = []
    for method, c in cols.items():
        rows.append(
            [
                str(n),
                label[method],
                f"{mean(c['mean']):.2f}",
                f"{mean(c['first']):.1f}",
                f"{mean(c['top3']):.1f}",
                span(c["worst"]),
                f"{mean(c['unranked']):.1f}",
                f"{mean(c['empty']):.1f}",
                f"{mean(c['ms']):.0f} / {max(c['ms']):.0f}",
                "n/a" if method == "RSD" else yes_if_all(proven[method]),
                f"{mean(c['fair']):.1f}" if method == "ours" else "",
            ]
        )
    return rows


def rules_row(n: int, variant: str, seeds: Sequence[int]) -> list[str]:
    means, first, top3, worst, unr, empty, days, short, ms, proven = ([] for _ in range(10))
    methods: set[str] = set()
    for seed in seeds:
        inst = rules_instance(n, seed, variant)
        res = solve_standard(inst)
        st = stats(res.assignment, inst.standard_prefs)
        means.append(st.mean_rank)
        first.append(st.pct_first)
        top3.append(st.pct_top3)
        worst.append(st.worst_rank)
        unr.append(100.0 * st.unranked / n)
        empty.append(len(res.empty))
        days.append(_empty_days(inst, res))
        short.append(len(res.short_notice))
        ms.append(res.solve_seconds * 1000)
        proven.append(res.proven_optimal)
        methods.add(res.method)
    return [
        str(n),
        variant,
        f"{mean(means):.2f}",
        f"{mean(first):.1f}",
        f"{mean(top3):.1f}",
        span(worst),
        f"{mean(unr):.1f}",
        f"{mean(empty):.1f} ({mean(days):.1f})",
        f"{mean(short):.1f}",
        f"{mean(ms):.0f} / {max(ms):.0f}",
        yes_if_all(proven),
        ", ".join(sorted(methods)),
    ]


def battle_row(
    n: int, choices: int, setting: str, seeds: Sequence[int], time_limit_s: float
) -> list[str]:
    none, fewest, means, worsts, ms, proven, run, rsd_none = ([] for _ in range(8))
    pairs = 0
    for seed in seeds:
        inst = battle_instance(n, choices, seed, time_limit_s, setting)
        pairs = len(inst.battle_pairs)
        res, running = solve_battles(inst)
        st = stats(res.assignment, inst.battle_prefs)
        none.append(100.0 * st.unranked / n)
        low = fewest_unranked(inst, time_limit_s, res.assignment)
        fewest.append(float("nan") if low is None else 100.0 * low / n)
        means.append(st.mean_rank)
        worsts.append(st.worst_rank)
        ms.append(res.solve_seconds * 1000)
        proven.append(res.proven_optimal)
        run.append(len(running))
        rsd = stats(random_serial_dictatorship(inst, "battle", seed), inst.battle_prefs)
        rsd_none.append(100.0 * rsd.unranked / n)
    return [
        str(n),
        str(choices),
        setting,
        f"{span(run)}/{pairs}",
        f"{mean(none):.1f} ({span(none, '{:.1f}')})",
        f"{mean(fewest):.1f}",
        f"{mean(means):.2f}",
        span(worsts),
        f"{mean(ms):.0f} / {max(ms):.0f}",
        yes_if_all(proven),
        f"{mean(rsd_none):.1f}",
    ]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if 1 <= i <= left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.assign", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="*", default=None)
    p.add_argument("--rule-sizes", type=int, nargs="*", default=None)
    p.add_argument("--battle-sizes", type=int, nargs="*", default=None)
    p.add_argument("--seeds", type=int, default=None, help="instances per row: seeds 1..SEEDS")
    p.add_argument("--time-limit", type=float, default=30.0, help="solver limit per run")
    p.add_argument(
        "--quick", action="store_true", help="one seed and sizes up to 300 (defaults only)"
    )
    args = p.parse_args(argv)
    cap = 300 if args.quick else None

    def sizes(given: list[int] | None, default: Sequence[int]) -> list[int]:
        if given is not None:
            return given
        return [s for s in default if cap is None or s <= cap]

    seeds = list(range(1, (args.seeds or (1 if args.quick else 3)) + 1))
    seed_text = f"seeds {seeds[0]}..{seeds[-1]}" if len(seeds) > 1 else f"seed {seeds[0]}"

    std_sizes = sizes(args.sizes, STANDARD_SIZES)
    if std_sizes:
        print(
            f"Standard papers: N students rank 7 of round(2N/3) papers (Zipf s=1), 1-2 "
            f"presenters each, unranked = rank 8. Means over {seed_text}; worst: range; "
            f"time: mean / max.\n"
        )
        rows = [row for n in std_sizes for row in standard_rows(n, seeds)]
        headers = [
            "N",
            "method",
            "mean rank",
            "% 1st",
            "% top-3",
            "worst",
            "% unranked",
            "empty",
            "time ms",
            "optimal",
            "cost of fairness",
        ]
        print(format_table(headers, rows))
        print()

    rule_sizes = sizes(args.rule_sizes, RULE_SIZES)
    if rule_sizes:
        print(
            "With the rules: 30-minute papers 1-2 presenters, 45-minute 1-3, coverage, "
            "notice (7 days, the first two class days in the window); + pairs: N/50 partner "
            f"pairs and N/50 conflicts; + few: 1.1 N papers. {seed_text.capitalize()}.\n"
        )
        rows = [
            rules_row(n, v, seeds)
            for n in rule_sizes
            for v in RULE_VARIANTS
            if not (v == "+ pairs" and n > 1000)
        ]
        headers = [
            "N",
            "variant",
            "mean rank",
            "% 1st",
            "% top-3",
            "worst",
            "% unranked",
            "empty papers (days)",
            "short notice",
            "time ms",
            "optimal",
            "method",
        ]
        print(format_table(headers, rows))
        print()

    battle_sizes = sizes(args.battle_sizes, BATTLE_SIZES)
    if battle_sizes:
        print(
            "Battles: 3-4 per side, each student ranks 3 or 5 sides (Zipf s=1). all run: "
            "ceil(N/7) pairs, coverage on; choose: ceil(N/5) pairs, coverage on; old: "
            "ceil(N/7) pairs, coverage off. % none = students with none of their choices: "
            f"mean (range) over {seed_text}.\n"
        )
        rows = [
            battle_row(n, c, setting, seeds, args.time_limit)
            for n in battle_sizes
            for c in BATTLE_CHOICES
            for setting in BATTLE_SETTINGS
        ]
        headers = [
            "N",
            "choices",
            "setting",
            "battles run",
            "% none",
            "fewest possible % none",
            "mean rank",
            "worst",
            "time ms",
            "optimal",
            "RSD % none*",
        ]
        print(format_table(headers, rows, left=2))
        print(
            "\nfewest possible: CP-SAT minimising only the number with none of their choices"
            " (same group and coverage rules);\nour objective puts the worst rank first, then"
            " the number of students at it, so where the worst\nis 'none of their choices' it"
            " leaves exactly the fewest possible there.\n"
            "* RSD with 4 seats per side and no minimum or pairing: a relaxation, not a"
            " feasible assignment."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
