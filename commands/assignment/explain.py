"""Why each student got what they got, and what changed between two assignments.

Pure functions over a :class:`~commands.assignment.instance.CourseInstance` and an
assignment (solver key -> paper number). A student's explanation counts the others
involved without naming them; the staff version (``assign why``) names them.

What the explanations may claim: a proposal computed by the solver is optimal for the
fairness order (worst rank first, then how many at it, then the total), subject to the
course's rules, so a student who did not get a better choice either lost it to someone
who ranked it at least as high, or could only have had it by breaking a rule or by
leaving the class worse off in that order. Nothing here says more than that.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from commands import solver
from commands.assignment.instance import CourseInstance
from db.models import RankKind


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def rank_text(ci: CourseInstance, kind: RankKind, key: str, number: int) -> str:
    """ "1st", "not ranked" or "did not rank"."""
    if kind not in ci.submitted.get(key, set()):
        return "did not rank"
    rank = solver.rank_of(ci.prefs(kind), key, number)
    listed = len(ci.prefs(kind).get(key, []))
    return "not ranked" if rank > listed else solver.ordinal(rank)


def holders(assignment: Mapping[str, int]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = defaultdict(list)
    for key, number in assignment.items():
        out[number].append(key)
    return out


def _who(ci: CourseInstance, keys: list[str], staff: bool, kind: RankKind, number: int) -> str:
    if not staff:
        return _count(len(keys), "student")
    names = [f"{ci.people[k].name} ({rank_text(ci, kind, k, number)})" for k in keys]
    return ", ".join(sorted(names))


def explain(
    ci: CourseInstance,
    kind: RankKind,
    assignment: Mapping[str, int],
    key: str,
    *,
    staff: bool = False,
    running: set[int] | None = None,
) -> str:
    """One or two sentences: what ``key`` got of this kind and why.

    ``running``: the battle papers whose battle runs (for battles)."""
    number = assignment.get(key)
    if number is None:
        return "No paper of this kind."
    you = "they" if staff else "you"
    your = "their" if staff else "your"
    if kind not in ci.submitted.get(key, set()):
        return (
            f"{your.capitalize()} ranking was not submitted, so {you} were placed where a "
            "presenter was needed."
        )
    prefs = ci.prefs(kind)
    mine = list(dict.fromkeys(prefs.get(key, [])))
    by_paper = holders(assignment)
    rank = solver.rank_of(prefs, key, number)
    ranked = {k for k in ci.people if kind in ci.submitted.get(k, set())}
    if rank == 1:
        others = sum(1 for k in ranked if k != key and list(prefs.get(k, []))[:1] == [number])
        also = (
            f"{_count(others, 'other')} ranked it 1st too"
            if others
            else "nobody else ranked it 1st"
        )
        return f"{your.capitalize()} 1st choice; {also}."
    head = (
        f"{your.capitalize()} {solver.ordinal(rank)} choice"
        if rank <= len(mine)
        else f"Not one {you} ranked: each of {your} choices went to others"
    )
    reasons = []
    for better in mine[: rank - 1]:
        if better not in ci.papers:
            continue
        got = [k for k in by_paper.get(better, []) if k != key]
        label = f"{your} {solver.ordinal(mine.index(better) + 1)} choice, #{better}"
        if kind is RankKind.BATTLE and running is not None and better not in running:
            reasons.append(f"{label}, is in a battle that does not run")
            continue
        if not got:
            reasons.append(
                f"{label}, had room, but the schedule's rules needed {you} where {you} are "
                "(every paper presented, notice, days people cannot present, limits)"
            )
            continue
        my_rank = mine.index(better) + 1
        higher = [k for k in got if solver.rank_of(prefs, k, better) < my_rank]
        same = [k for k in got if solver.rank_of(prefs, k, better) == my_rank]
        lower = [k for k in got if solver.rank_of(prefs, k, better) > my_rank]
        parts = []
        if higher:
            parts.append(f"{_who(ci, higher, staff, kind, better)} who ranked it higher")
        if same:
            parts.append(
                f"{_who(ci, same, staff, kind, better)} who ranked it as high as {you} did "
                f"(the fairness order, then the seeded draw, chose among {'them' if staff else 'you'})"
            )
        if lower:
            parts.append(
                f"{_who(ci, lower, staff, kind, better)} who ranked it lower: giving it to "
                f"{'them' if staff else 'you'} instead would break a rule of the schedule or "
                "leave the class worse off in the fairness order (worst rank first)"
            )
        reasons.append(f"{label}, went to " + "; ".join(parts))
    if not reasons:
        return head + "."
    return head + ". " + ". ".join(r[0].upper() + r[1:] for r in reasons) + "."


# ---------------------------------------------------------------------------- the diff


@dataclass(frozen=True)
class Change:
    key: str
    kind: RankKind
    before: int | None
    after: int | None


def diff(
    before: Mapping[RankKind, Mapping[str, int]], after: Mapping[RankKind, Mapping[str, int]]
) -> list[Change]:
    """Who changes paper or battle side between two assignments (per kind)."""
    out = []
    for kind in (RankKind.STANDARD, RankKind.BATTLE):
        b, a = before.get(kind, {}), after.get(kind, {})
        for key in sorted(set(b) | set(a)):
            if b.get(key) != a.get(key):
                out.append(Change(key, kind, b.get(key), a.get(key)))
    return out


def change_rows(ci: CourseInstance, changes: list[Change]) -> list[list[str]]:
    """Table rows: student, kind, before (rank), after (rank)."""

    def cell(key: str, kind: RankKind, number: int | None) -> str:
        if number is None:
            return "—"
        return f"#{number} ({rank_text(ci, kind, key, number)})"

    rows = []
    for c in changes:
        person = ci.people.get(c.key)
        if person is None:
            continue
        rows.append(
            [
                person.name,
                c.kind.value,
                cell(c.key, c.kind, c.before),
                cell(c.key, c.kind, c.after),
            ]
        )
    return sorted(rows)
