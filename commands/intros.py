"""Introductions (issue #19 point 6): the first lecture asks every student for their
name, degree, year, what excites them in computer vision and AI, and why they take the
course.

``intro`` collects them (the two answers in a form on Discord and Slack, ``key=value``
in the terminal) and updates them when run again; with no options it shows your own.
Degree and year live on the roster entry (:class:`db.models.Person`), the rest on
:class:`db.models.Introduction`. A student's introduction is seen by that student and
the staff (``intros``, ``intros export``); other students see only the name and a short
"excites me" on the looking-for-group board (``project lfg``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from commands.context import Context
from commands.errors import Forbidden, InvalidInput
from commands.exports import csv_text
from commands.registry import Access, LongText, registry
from commands.replies import Button, FileOut, Reply, Section, Table, Tone
from commands.text import shown, visible_length
from commands.timefmt import fmt_instant
from db.models import Degree, Introduction, Person, Role

#: The longest answer (characters): a paragraph or two, which the class table and the
#: board shorten anyway.
ANSWER_MAX = 1000
NAME_MAX = 100
YEAR_MIN, YEAR_MAX = 1, 10
#: How much of an answer the staff's class table and the project board show.
EXCERPT = 60
#: What the reply says about who sees what (docs/student.md says the same).
VISIBILITY = (
    "Your interests are shown on the project board (`project lfg`) with your name; "
    "the rest of your introduction is seen only by you and the course staff."
)
#: The questions, as the first lecture asks them.
QUESTIONS = {
    "excites": "What excites you in computer vision and AI",
    "why": "Why you are taking this course",
}
EXAMPLE = (
    'intro degree=MS year=1 excites="robots that learn from video" '
    'why="my thesis needs video models"'
)

# ----------------------------------------------------------------------------- services


def excerpt(text: str, limit: int = EXCERPT) -> str:
    """``text`` on one line, cut at a word to about ``limit`` characters (with …), and
    safe to show (control and bidi characters escaped)."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        cut = flat[:limit].rsplit(" ", 1)[0] if " " in flat[:limit] else flat[:limit]
        flat = cut.rstrip(",;:.- ") + "…"
    return shown(flat, limit + 1)


async def intro_of(session: AsyncSession, person: Person) -> Introduction | None:
    return await session.scalar(select(Introduction).where(Introduction.person_id == person.id))


async def intros_by_person(session: AsyncSession, course_id: int) -> dict[int, Introduction]:
    rows = await session.scalars(select(Introduction).where(Introduction.course_id == course_id))
    return {i.person_id: i for i in rows}


async def interests_by_person(
    session: AsyncSession, course_id: int, person_ids: list[int]
) -> dict[int, str]:
    """What excites each of these students, shortened: what the project board shows."""
    if not person_ids:
        return {}
    rows = await session.execute(
        select(Introduction.person_id, Introduction.excites).where(
            Introduction.course_id == course_id, Introduction.person_id.in_(person_ids)
        )
    )
    return {pid: excerpt(text) for pid, text in rows}


def _student(ctx: Context) -> Person:
    me = ctx.me()
    if me.role is not Role.STUDENT:
        raise Forbidden(
            "Introductions are for students.", hint="`intros` shows the class at a glance."
        )
    return me


def _answer(value: str | None, key: str) -> str | None:
    """A typed answer, stripped; an empty one is refused (naming the question)."""
    if value is None:
        return None
    text = value.strip()
    if not visible_length(text):
        raise InvalidInput(
            f"Your answer to “{QUESTIONS[key]}?” is empty; nothing was saved.",
            hint=f'Write a sentence or two, for example `intro {key}="…"`.',
        )
    return text


def _shown_name(person: Person, intro: Introduction | None) -> str:
    if intro is not None and intro.name and intro.name != person.name:
        return f"{person.name} (goes by {intro.name})"
    return person.name


def _degree_year(person: Person) -> str:
    degree = person.degree.value if person.degree else "degree not given"
    year = f"year {person.year}" if person.year else "year not given"
    return f"{degree}, {year}"


def _form_button(ctx: Context, fixed: dict[str, str], label: str) -> Button:
    """The button that opens ``intro``'s form (the two answers), with ``fixed`` options."""
    safe = {k: v for k, v in fixed.items() if v and ":" not in v and len(v) <= 40}
    form = ctx.registry.get("intro").form_spec(safe)
    return Button(label, style="primary", form=form)


def _fixed(person: Person, opts: IntroOptions) -> dict[str, str]:
    """The options a form opened now keeps: what was typed, else the roster's."""
    degree = opts.degree or person.degree
    year = opts.year or person.year
    out = {"degree": degree.value if degree else "", "year": str(year) if year else ""}
    if opts.name:
        out["name"] = opts.name.strip()
    return out


def _view(person: Person, intro: Introduction, ctx: Context) -> list[Section]:
    fields = [
        ("Name", _shown_name(person, intro)),
        ("Degree and year", _degree_year(person)),
        (QUESTIONS["excites"], shown(intro.excites, ANSWER_MAX)),
        (QUESTIONS["why"], shown(intro.why, ANSWER_MAX)),
        ("Last changed", fmt_instant(intro.updated_at, ctx.tz)),
    ]
    return [Section("", "", fields)]


# ----------------------------------------------------------------------------- commands


class IntroOptions(BaseModel):
    degree: Degree | None = Field(None, description="your degree: BA, BS, MS or PhD")
    year: int | None = Field(
        None, ge=YEAR_MIN, le=YEAR_MAX, description="your year in that degree (1-10)"
    )
    excites: Annotated[str | None, LongText()] = Field(
        None, max_length=ANSWER_MAX, description="what excites you in computer vision and AI"
    )
    why: Annotated[str | None, LongText()] = Field(
        None, max_length=ANSWER_MAX, description="why you are taking this course"
    )
    name: str | None = Field(
        None, max_length=NAME_MAX, description="the name you go by (default: the roster's)"
    )

    @field_validator("degree", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        """``phd``, ``Phd``, ``ms``: the degree whatever the case."""
        if isinstance(value, str):
            by_lower = {d.value.lower(): d.value for d in Degree}
            return by_lower.get(value.strip().lower(), value)
        return value


@registry.command(
    "intro",
    "Introduce yourself: degree, year, what excites you, why this course",
    topic="people",
    ephemeral=True,
    form=("excites", "why"),
    examples=(EXAMPLE, "intro", "intro year=2"),
)
async def intro(ctx: Context, opts: IntroOptions) -> Reply:
    me = _student(ctx)
    current = await intro_of(ctx.session, me)
    typed = {k for k in opts.model_fields_set if getattr(opts, k) is not None}
    if not typed:
        return _show(ctx, me, current)
    excites = _answer(opts.excites, "excites")
    why = _answer(opts.why, "why")
    name = " ".join(opts.name.split()) if opts.name is not None else None
    if name == "":
        raise InvalidInput(
            "The name you go by is empty; nothing was saved.",
            hint='Give it, for example `intro name="Sam"`, or leave it out for the roster name.',
        )
    if current is None:
        missing = [k for k, v in (("excites", excites), ("why", why)) if v is None]
        if missing and not ({"excites", "why"} & typed):
            # Degree and year typed, the answers still to come: the form asks for them.
            return Reply(
                text="Now the two questions: press the button to answer them"
                f" (or type `{EXAMPLE}`). Nothing is saved until both are answered.",
                buttons=[_form_button(ctx, _fixed(me, opts), "Answer the two questions")],
            )
        if missing:
            names = " and ".join(f"“{QUESTIONS[k]}?” (`{k}=`)" for k in missing)
            raise InvalidInput(
                f"Your first introduction needs both answers; {names} is missing. "
                "Nothing was saved.",
                hint=f"Type them together, for example `{EXAMPLE}`.",
            )
        needs = []
        if (opts.degree or me.degree) is None:
            needs.append("your degree (`degree=BA`, `BS`, `MS` or `PhD`)")
        if (opts.year or me.year) is None:
            needs.append(f"your year (`year=1` to `{YEAR_MAX}`)")
        if needs:
            raise InvalidInput(
                f"Your introduction also needs {' and '.join(needs)}; nothing was saved.",
                hint=f"For example `{EXAMPLE}`.",
            )
    changed = _apply(ctx, me, current, opts.degree, opts.year, name, excites, why)
    mine = current or await intro_of(ctx.session, me)
    assert mine is not None
    verb = "saved" if current is None else ("updated" if changed else "unchanged")
    return Reply(
        title="Your introduction",
        text=f"Thanks, {me.given_name or me.name.split()[0]}: your introduction is {verb}. "
        f"{VISIBILITY} Run `intro` again to change it.",
        sections=_view(me, mine, ctx),
        tone=Tone.SUCCESS,
    )


def _apply(
    ctx: Context,
    me: Person,
    current: Introduction | None,
    degree: Degree | None,
    year: int | None,
    name: str | None,
    excites: str | None,
    why: str | None,
) -> bool:
    """Store what was given (all of it is checked by now); True if anything changed."""
    before = (me.degree, me.year, current and (current.name, current.excites, current.why))
    if degree is not None:
        me.degree = degree
    if year is not None:
        me.year = year
    if current is None:
        assert excites is not None and why is not None
        ctx.session.add(
            Introduction(
                course_id=ctx.course.id,
                person_id=me.id,
                name=name if name and name != me.name else None,
                excites=excites,
                why=why,
                created_at=ctx.now,
                updated_at=ctx.now,
            )
        )
        return True
    if name is not None:
        current.name = name if name != me.name else None
    if excites is not None:
        current.excites = excites
    if why is not None:
        current.why = why
    after = (me.degree, me.year, (current.name, current.excites, current.why))
    if after != before:
        current.updated_at = ctx.now
        return True
    return False


def _show(ctx: Context, me: Person, current: Introduction | None) -> Reply:
    fixed = {
        "degree": me.degree.value if me.degree else "",
        "year": str(me.year) if me.year else "",
    }
    if current is None:
        text = (
            "You have not introduced yourself yet. The first lecture asks for your degree, "
            "your year, what excites you in computer vision and AI, and why you take the "
            f"course: type `{EXAMPLE}`"
        )
        if me.degree and me.year:
            text += (
                f", or press the button (the roster has you as {_degree_year(me)}; "
                "`intro degree=… year=…` changes that)."
            )
            buttons = [_form_button(ctx, fixed, "Introduce yourself")]
        else:
            text += "."
            buttons = []
        return Reply(title="Your introduction", text=f"{text} {VISIBILITY}", buttons=buttons)
    return Reply(
        title="Your introduction",
        text=f"{VISIBILITY} Change any part with `intro`, e.g. `intro year=2`, or press the button.",
        sections=_view(me, current, ctx),
        buttons=[_form_button(ctx, fixed, "Edit your answers")],
    )


async def _students(session: AsyncSession, course_id: int) -> list[Person]:
    return list(
        await session.scalars(
            select(Person)
            .where(Person.course_id == course_id, Person.role == Role.STUDENT)
            .order_by(Person.name)
        )
    )


class IntrosOptions(BaseModel):
    student: str | None = Field(
        None, description="one student (email, onyen or part of the name) to read in full"
    )


@registry.command(
    "intros",
    "The class at a glance: everyone's introduction, and who has not given one",
    access=Access.STAFF,
    topic="people",
    ephemeral=True,
    reads=True,
    examples=("intros", "intros alice"),
)
async def intros(ctx: Context, opts: IntrosOptions) -> Reply:
    if opts.student:
        from commands.people import find_person

        person = await find_person(ctx.session, ctx.course.id, opts.student, list_matches=True)
        mine = await intro_of(ctx.session, person)
        if mine is None:
            return Reply(
                title=person.name,
                text=f"{person.name} ({_degree_year(person)}) has not introduced themselves yet.",
            )
        return Reply(title=f"{person.name}: introduction", sections=_view(person, mine, ctx))
    students = await _students(ctx.session, ctx.course.id)
    given = await intros_by_person(ctx.session, ctx.course.id)
    rows, missing = [], []
    for p in students:
        i = given.get(p.id)
        if i is None:
            missing.append(p.name)
            continue
        rows.append(
            [
                _shown_name(p, i),
                p.degree.value if p.degree else "-",
                str(p.year) if p.year else "-",
                excerpt(i.excites, 40),
                excerpt(i.why, 40),
            ]
        )
    degrees: dict[str, int] = {}
    for p in students:
        key = p.degree.value if p.degree else "not given"
        degrees[key] = degrees.get(key, 0) + 1
    mix = ", ".join(f"{n} {d}" for d, n in sorted(degrees.items()))
    text = (
        f"{len(rows)} of {len(students)} students introduced themselves; "
        f"{len(missing)} have not. Degrees: {mix or 'none yet'}. "
        "`intros <student>` reads one in full; `intros export` gives them all as CSV."
    )
    sections = (
        [Section(f"Not introduced yet ({len(missing)})", ", ".join(missing))] if missing else []
    )
    return Reply(
        title="Introductions",
        text=text,
        tables=[Table(["Name", "Degree", "Year", "Excited about", "Why the course"], rows)],
        sections=sections,
    )


@registry.command(
    "intros export",
    "Every student's introduction as a CSV file (with who has not given one)",
    access=Access.STAFF,
    topic="people",
    ephemeral=True,
    reads=True,
)
async def intros_export(ctx: Context, _: BaseModel) -> Reply:
    students = await _students(ctx.session, ctx.course.id)
    given = await intros_by_person(ctx.session, ctx.course.id)
    header = [
        "name",
        "email",
        "goes_by",
        "degree",
        "year",
        "excites",
        "why",
        "introduced",
        "updated",
    ]
    rows = []
    for p in students:
        i = given.get(p.id)
        rows.append(
            [
                p.name,
                p.email,
                (i.name or "") if i else "",
                p.degree.value if p.degree else "",
                p.year or "",
                i.excites if i else "",
                i.why if i else "",
                fmt_instant(i.created_at, ctx.tz) if i else "",
                fmt_instant(i.updated_at, ctx.tz) if i else "",
            ]
        )
    done = len(given.keys() & {p.id for p in students})
    data = csv_text(header, rows).encode()
    return Reply(
        text=f"Introductions of {len(students)} students ({done} given, "
        f"{len(students) - done} not yet), as CSV.",
        files=[
            FileOut(
                f"{ctx.course.key}-intros.csv",
                data,
                "text/csv",
                description="Each student's introduction: name, degree, year and answers",
            )
        ],
    )
