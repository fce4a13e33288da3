"""The baseline (random serial dictatorship) and the reporting helpers."""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Mapping, Sequence

from ._core import Infeasible, Instance, Stats, rank_of, rng_for
from ._rules import check_group, presenter_cap, standard_limits, validate


def random_serial_dictatorship(inst: Instance, kind: str, seed: int) -> dict[str, int]:
    """Random serial dictatorship: students in a seeded random order each take their best
    paper that still has room; one whose listed papers are all full takes a paper with room
    chosen at random (seeded). Deterministic for a given instance, kind and seed.

    ``kind="standard"``: room is each paper's presenter maximum as the solver applies it,
    so the result respects the limits (but not minimums, coverage or the other rules);
    this is the main comparison.

    ``kind="battle"``: each battle side has room for ``hi`` students (the upper end of
    ``battle_group``), and nothing else is enforced: RSD has no honest way to choose which
    battles run, so its result may leave a side under ``lo`` or a battle with one empty side.
    It solves a relaxation of the battle problem, so its ranks are an optimistic baseline,
    not a feasible alternative; :class:`Infeasible` only if ``n`` exceeds all the seats.
    """
    validate(inst)
    if kind == "standard":
        presenter_cap(inst)  # raises if the limits cannot seat everyone
        papers = [p for p, (_lo, hi) in standard_limits(inst).items() if hi > 0]
        room = {p: standard_limits(inst)[p][1] for p in papers}
        prefs = inst.standard_prefs
    elif kind == "battle":
        hi = check_group(inst)[1]
        papers = [p for pair in inst.battle_pairs for p in pair]
        n, seats = len(inst.students), hi * len(papers)
        if n > seats:
            raise Infeasible(
                f"{n} students cannot sit on {len(papers)} battle sides of at most {hi}."
            )
        room = dict.fromkeys(papers, hi)
        prefs = inst.battle_prefs
    else:
        raise ValueError(f'kind must be "standard" or "battle", not {kind!r}')
    rng = rng_for(seed, f"rsd-{kind}")
    order = list(inst.students)
    rng.shuffle(order)
    out: dict[str, int] = {}
    for s in order:
        pick = next((p for p in prefs.get(s, ()) if room.get(p, 0) > 0), None)
        if pick is None:
            pick = rng.choice([p for p in papers if room[p] > 0])
        room[pick] -= 1
        out[s] = pick
    return {s: out[s] for s in inst.students}


# ----------------------------------------------------------------------------- reporting


def stats(assignment: Mapping[str, int], prefs: Mapping[str, Sequence[int]]) -> Stats:
    """Rank profile and summary numbers. ``pct_first`` and ``pct_top3`` count only papers
    on the student's list (a student who ranked nothing, whose unranked rank is 1, does not
    count as getting a first choice); ``profile`` counts every student at their rank."""
    ranks = {s: rank_of(prefs, s, p) for s, p in assignment.items()}
    n = len(ranks)
    listed = {s: r for s, r in ranks.items() if r <= len(prefs.get(s, ()))}
    worst = max(ranks.values(), default=0)
    return Stats(
        n=n,
        profile=dict(sorted(Counter(ranks.values()).items())),
        unranked=n - len(listed),
        mean_rank=sum(ranks.values()) / n if n else 0.0,
        pct_first=100.0 * sum(r == 1 for r in listed.values()) / n if n else 0.0,
        pct_top3=100.0 * sum(r <= 3 for r in listed.values()) / n if n else 0.0,
        worst_rank=worst,
        at_worst=sum(r == worst for r in ranks.values()),
    )


def head_to_head(
    a: Mapping[str, int], b: Mapping[str, int], prefs: Mapping[str, Sequence[int]]
) -> tuple[int, int, int]:
    """(students who prefer ``a``, who prefer ``b``, indifferent), over students in both."""
    prefer_a = prefer_b = same = 0
    for s in a.keys() & b.keys():
        ra, rb = rank_of(prefs, s, a[s]), rank_of(prefs, s, b[s])
        if ra < rb:
            prefer_a += 1
        elif rb < ra:
            prefer_b += 1
        else:
            same += 1
    return prefer_a, prefer_b, same


def oversubscribed(
    prefs: Mapping[str, Sequence[int]], capacity: Mapping[int, int]
) -> list[tuple[int, int]]:
    """(paper, first-choice count) for papers named first by more students than they can
    take, most first (ties by paper id). Papers missing from ``capacity`` are ignored."""
    firsts = Counter(lst[0] for lst in prefs.values() if lst)
    over = [(p, c) for p, c in firsts.items() if p in capacity and c > capacity[p]]
    return sorted(over, key=lambda pc: (-pc[1], pc[0]))


def histogram_png(profile: Mapping[int, int], title: str) -> bytes:
    """A bar chart (PNG) of a rank profile: students per rank received, every rank from 1
    to the largest shown. Uses matplotlib's Agg canvas directly (no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    top = max(profile, default=1)
    xs = list(range(1, top + 1))
    ys = [profile.get(x, 0) for x in xs]
    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    bars = ax.bar(xs, ys, color="#4C72B0")
    ax.bar_label(bars, labels=[str(y) if y else "" for y in ys], padding=2, fontsize=9)
    ax.set_xticks(xs, [ordinal(x) for x in xs])
    ax.set_xlabel("Choice received (rank in the student's list)")
    ax.set_ylabel("Students")
    ax.set_title(title)
    ax.set_ylim(0, max(ys, default=0) * 1.15 + 1)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def ordinal(n: int) -> str:
    """1 -> "1st", 2 -> "2nd", 3 -> "3rd", 4 -> "4th", 11 -> "11th", 22 -> "22nd"."""
    if 10 <= abs(n) % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(abs(n) % 10, "th")
    return f"{n}{suffix}"
