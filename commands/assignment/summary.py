"""The instructor's report on an assignment: rank profile, comparison with random serial
dictatorship, empty days, students who did not rank, short notice, and the solver's
proof status. JSON-ready (stored with each run) and rendered as sections."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from commands import solver
from commands.assignment.instance import CourseInstance
from commands.replies import FileOut, Section
from commands.solver import plural
from commands.timefmt import fmt_day
from db.models import RankKind


def running_pairs(ci: CourseInstance, battle: Mapping[str, int]) -> list[tuple[int, int]]:
    """The battles that run in this battle assignment: both sides at the group's minimum."""
    count = Counter(battle.values())
    lo = max(ci.inst.battle_group[0], 1)
    return [(a, b) for a, b in ci.inst.battle_pairs if count[a] >= lo and count[b] >= lo]


def empty_papers(ci: CourseInstance, kind: RankKind, assignment: Mapping[str, int]) -> list[int]:
    """Standard papers below their minimum presenters; for battles, the first paper of
    each battle that does not run (a side below the group's minimum)."""
    if kind is RankKind.STANDARD:
        count = Counter(assignment.values())
        return [p for p in ci.inst.standard_papers if count[p] < max(ci.limits(p)[0], 1)]
    running = set(running_pairs(ci, assignment))
    return [a for a, b in ci.inst.battle_pairs if (a, b) not in running]


def short_notice(
    ci: CourseInstance,
    assignment: Mapping[str, int],
    previous: Mapping[str, int],
    today: date | None,
) -> list[str]:
    """Students placed on a paper dated less than the notice rule's days from ``today``
    (the publish day), unless they already had that paper in the published assignment."""
    days = ci.inst.min_notice_days
    if today is None or not days:
        return []
    limit = today + timedelta(days=days)
    out = []
    for key, number in assignment.items():
        day = ci.inst.paper_days.get(number)
        if day is not None and day < limit and previous.get(key) != number:
            out.append(key)
    return sorted(out, key=lambda k: ci.people[k].name if k in ci.people else k)


def _day_label(ci: CourseInstance, number: int) -> str:
    day = ci.inst.paper_days.get(number)
    return f"#{number} ({fmt_day(day)})" if day else f"#{number} (no date)"


def _ranked_stats(
    ci: CourseInstance, kind: RankKind, assignment: Mapping[str, int]
) -> tuple[Mapping[str, Any], dict[str, int], solver.Stats]:
    prefs = ci.ranked_prefs(kind)
    mine = {k: v for k, v in assignment.items() if k in prefs}
    return prefs, mine, solver.stats(mine, prefs)


def chart_inputs(ci: CourseInstance, sol: solver.Solution) -> dict[str, dict[str, Any]]:
    """What :func:`histograms` reads of a summary (each kind's ``choices``, ``ranked``
    and ``profile``), from a solution before it is stored: the charts can then be drawn
    outside the write transaction."""
    out: dict[str, dict[str, Any]] = {}
    for kind, result in ((RankKind.STANDARD, sol.standard), (RankKind.BATTLE, sol.battle)):
        prefs, _, st = _ranked_stats(ci, kind, dict(result.assignment))
        out[kind.value] = {
            "choices": max((len(v) for v in prefs.values()), default=0),
            "ranked": st.n,
            "profile": {str(k): v for k, v in sorted(st.profile.items())},
        }
    return out


def kind_summary(
    ci: CourseInstance,
    kind: RankKind,
    assignment: Mapping[str, int],
    result: solver.KindResult | None,
    capacity: Mapping[int, int],
    *,
    previous: Mapping[str, int] | None = None,
    today: date | None = None,
) -> dict[str, Any]:
    """Everything the instructor's report says about one kind, JSON-ready."""
    prefs, mine, st = _ranked_stats(ci, kind, assignment)
    rsd = solver.random_serial_dictatorship(ci.inst, kind.value, ci.inst.seed)
    better, worse, same = solver.head_to_head(mine, {k: rsd[k] for k in mine if k in rsd}, prefs)
    rsd_stats = solver.stats({k: rsd[k] for k in mine if k in rsd}, prefs)
    papers = ci.kind_papers(kind)
    used = set(assignment.values())
    empty = empty_papers(ci, kind, assignment)
    late = short_notice(ci, assignment, previous or {}, today)
    out: dict[str, Any] = {
        "choices": max((len(v) for v in prefs.values()), default=0),
        "ranked": st.n,
        "not_ranked": len(ci.inst.students) - st.n,
        "not_ranked_names": sorted(
            ci.people[k].name for k in ci.inst.students if kind not in ci.submitted.get(k, set())
        ),
        "profile": {str(k): v for k, v in sorted(st.profile.items())},
        "unranked": st.unranked,
        "mean_rank": round(st.mean_rank, 3),
        "pct_first": round(st.pct_first, 1),
        "pct_top3": round(st.pct_top3, 1),
        "worst_rank": st.worst_rank,
        "at_worst": st.at_worst,
        "rsd": {
            "prefer_ours": better,
            "prefer_rsd": worse,
            "same": same,
            "mean_rank": round(rsd_stats.mean_rank, 3),
            "worst_rank": rsd_stats.worst_rank,
            "unranked": rsd_stats.unranked,
        },
        "oversubscribed": [list(x) for x in solver.oversubscribed(prefs, capacity)[:5]],
        "unused": sorted(p for p in papers if p not in used),
        "empty": [_day_label(ci, p) for p in empty],
        "short_notice": [ci.people[k].name for k in late if k in ci.people],
    }
    if result is not None:
        out.update(
            total_rank=result.total_rank,
            min_sum_total=result.min_sum_total,
            fairness_cost=result.total_rank - result.min_sum_total,
            proven_optimal=result.proven_optimal,
            method=result.method,
            solve_seconds=round(result.solve_seconds, 4),
            empty_reason=result.empty_reason,
            notes=list(result.notes),
        )
    return out


def capacities(ci: CourseInstance) -> tuple[dict[int, int], dict[int, int]]:
    std = {p: ci.limits(p)[1] for p in ci.inst.standard_papers}
    bat = {p: ci.inst.battle_group[1] for pair in ci.inst.battle_pairs for p in pair}
    return std, bat


def summary_sections(summary: Mapping[str, Any]) -> list[Section]:
    sections = []
    for kind in ("standard", "battle"):
        s = summary.get(kind)
        if not s:
            continue
        choices = s.get("choices", 0)

        def label(rank: int, choices: int = choices) -> str:
            return "unranked" if choices and rank > choices else solver.ordinal(rank)

        profile = ", ".join(f"{label(int(r))}: {n}" for r, n in s["profile"].items())
        fields = [
            ("Rank profile", profile),
            ("Mean rank", f"{s['mean_rank']:.2f}"),
            ("First choice", f"{s['pct_first']:.0f}%"),
            ("Top 3", f"{s['pct_top3']:.0f}%"),
            ("Worst rank", f"{label(s['worst_rank'])} ({plural(s['at_worst'], 'student')})"),
        ]
        if "fairness_cost" in s:
            fields.append(
                (
                    "Cost of fairness",
                    f"+{s['fairness_cost']} total rank vs. the pure minimum-sum optimum "
                    f"({s['min_sum_total']} → {s['total_rank']})",
                )
            )
        rsd = s["rsd"]
        relaxed = (
            "; for battles RSD ignores the minimum group size and which battles run, "
            "so it is an optimistic bound, not a valid alternative"
            if kind == "battle"
            else ""
        )
        fields.append(
            (
                "vs. random serial dictatorship",
                f"{rsd['prefer_ours']} prefer ours, {rsd['prefer_rsd']} prefer RSD, "
                f"{rsd['same']} same (RSD: mean {rsd['mean_rank']:.2f}, worst "
                f"{label(rsd['worst_rank'])}, {rsd['unranked']} unranked{relaxed})",
            )
        )
        if s["oversubscribed"]:
            fields.append(
                (
                    "Over-subscribed",
                    ", ".join(f"#{p} ({n} first choices)" for p, n in s["oversubscribed"]),
                )
            )
        if "empty" in s:
            what = "Battles that do not run" if kind == "battle" else "Empty papers"
            empty = ", ".join(s["empty"]) or "none"
            if s["empty"] and s.get("empty_reason"):
                empty += f" — {s['empty_reason']}"
            fields.append((what, empty))
        else:
            fields.append(("Unused papers", ", ".join(f"#{p}" for p in s["unused"]) or "none"))
        if s.get("short_notice"):
            fields.append(
                (
                    "Short notice",
                    ", ".join(s["short_notice"])
                    + " (less than the notice rule's days before their paper; nobody else "
                    "could take it)",
                )
            )
        for note in s.get("notes", []):
            fields.append(("Note", note))
        if "method" in s:
            proven = "proven optimal" if s["proven_optimal"] else "NOT proven optimal (time limit)"
            fields.append(
                ("Solver", f"{s['method']}, {s['solve_seconds'] * 1000:.0f} ms, {proven}")
            )
        if s["not_ranked"]:
            names = s.get("not_ranked_names") or []
            fields.append(
                (
                    "Did not rank",
                    f"{plural(s['not_ranked'], 'student')}, placed where seats remained"
                    + (f": {', '.join(names)}" if names else ""),
                )
            )
        sections.append(Section(f"{kind.title()} papers", "", fields))
    return sections


def histograms(summary: Mapping[str, Any]) -> list[FileOut]:
    """The rank profile charts of a summary (or of :func:`chart_inputs`): CPU work
    (matplotlib), so the caller runs it in the worker process (commands.offload)."""
    files = []
    for kind in ("standard", "battle"):
        s = summary.get(kind)
        if s and s["ranked"]:
            profile = {int(r): n for r, n in s["profile"].items()}
            png = solver.histogram_png(profile, f"{kind.title()} papers: rank profile")
            files.append(
                FileOut(
                    f"rank-profile-{kind}.png",
                    png,
                    "image/png",
                    f"Bar chart of the {kind} papers' rank profile: "
                    + ", ".join(
                        f"{n} got none of their choices"
                        if s.get("choices") and int(r) > s["choices"]
                        else f"{n} got their {solver.ordinal(int(r))} choice"
                        for r, n in s["profile"].items()
                    )
                    + ".",
                )
            )
    return files
