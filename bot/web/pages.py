"""The staff pages: the week, rankings, the assignment, critiques, gradebook, the GPU
queue and the audit log (discussions and battles are in :mod:`bot.web.classes`).

Each page shows commands' answers (run as the visitor, so the command's own access rule
applies) and the desk's own read-only tables; its forms run commands.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import select

from bot.web import classes, queries
from bot.web.actions import PageContext, file_response, page_route
from bot.web.auth import Refused, require
from bot.web.view import Cell, Field, FormView, Page, ReplyView, TableView, chat_markup
from commands.critiques import critique_paper, critique_rules, is_late, rules_text
from commands.registry import Access
from db.models import Course, GpuJob, Person, Slot

REASON = Field("reason", "Reason (kept in the audit log)", "text")


# ------------------------------------------------------------------------ the week


async def week_page(ctx: PageContext) -> Page:
    v = ctx.visitor
    now = ctx.app.clock.now()
    today = now.astimezone(ZoneInfo(v.course.timezone)).date()
    async with ctx.db.session() as s:
        w = await queries.week(s, v.course, today, now)
    page = Page("This week", intro=f"From {today:%A %B %-d} for seven days.")
    return page.add(
        TableView.of(["Date", "Paper", "Slot", "Presenters", "Critique"], w["classes"], "Classes"),
        TableView.of(
            ["Paper", "Due", "Submitted", "Late", "Still owed by"], w["critiques"], "Critiques due"
        ),
        TableView.of(["Battle", "Opened", "Closes"], w["polls"], "Battle polls open"),
        TableView.of(["Paper", "State", "Started"], w["discussions"], "Discussions open"),
        TableView.of(["State", "Jobs"], w["gpu"], "GPU jobs waiting or running"),
    )


# ------------------------------------------------------------------------ rankings


async def rankings_page(ctx: PageContext) -> Page:
    async with ctx.db.session() as s:
        rows = await queries.ranking_rows(s, ctx.visitor.course)
    both = sum(1 for r in rows if r[2] != "missing" and r[4] != "missing")
    page = Page("Rankings", intro=f"{both} of {len(rows)} students have submitted both lists.")
    return page.add(
        TableView.of(
            [
                "Student",
                "Email",
                "Standard submitted",
                "Standard list",
                "Battle submitted",
                "Battle list",
            ],
            rows,
            "Each student's ranked lists",
        )
    )


# ---------------------------------------------------------------------- assignment

ASSIGN_COMMANDS = ("assign", "assign swap", "assign set", "assign publish", "assign discard")


async def assignment_page(ctx: PageContext) -> Page:
    page = Page(
        "Assignment",
        intro="The proposal when there is one, else the published assignment, by date, "
        "with each presenter's rank; the changes from the published one; empty papers "
        "and warnings. Changes here run the same `assign` commands as in chat.",
    )
    page.add_reply(await ctx.run_assignment_read("assign show", per_person=False))
    if not ctx.visitor.allows(Access.INSTRUCTOR):
        return page
    async with ctx.db.session() as s:
        people = await queries.people_options(s, ctx.visitor.course.id)
        papers = await queries.paper_options(
            s, ctx.visitor.course.id, where=queries.Paper.slot != Slot.INSTRUCTOR
        )
    return page.add(
        FormView(
            "Swap two students' papers",
            "assign swap",
            [
                Field("first", "First student", "select", people, required=True),
                Field("second", "Second student", "select", people, required=True),
                Field(
                    "kind",
                    "Which papers",
                    "select",
                    (("standard", "standard"), ("battle", "battle")),
                    True,
                ),
                REASON,
            ],
            submit="Swap",
        ),
        FormView(
            "Give a student a paper",
            "assign set",
            [
                Field("student", "Student", "select", people, required=True),
                Field("paper", "Paper", "select", papers, required=True),
                REASON,
            ],
            submit="Set",
        ),
        FormView(
            "Publish the proposal",
            "assign publish",
            [REASON],
            submit="Publish",
            note="Each student whose papers it sets or changes gets a private message.",
        ),
        FormView(
            "Compute a new proposal",
            "assign",
            [
                Field("seed", "Tie-break seed", "number", value="0"),
                Field(
                    "changes", "Changes", "select", (("any", "any"), ("minimal", "minimal")), True
                ),
            ],
            submit="Compute",
        ),
        FormView("Discard the proposal", "assign discard", [], submit="Discard", danger=True),
    )


# ----------------------------------------------------------------------- critiques


def mark_cell(mark: queries.Mark) -> Cell:
    """A critique's mark as a table cell: its words, its style, its detail on hover."""
    return Cell(mark.label, kind=mark.kind, note=mark.note)


def marks_note(course: Course) -> str:
    """What the marks mean and the course's rules, said once on the pages showing them."""
    return (
        "Each critique is Pass or Fail once graded; Submitted or Late while it waits for a "
        "grade; Excused (presenting the paper, or by staff) and not counted; Missing, "
        "recorded as 0 by staff; Missing (overdue) when nothing came by the deadline. "
        f"{rules_text(critique_rules(course))} Hover over a mark for its details (when it "
        "came, the reason for an excuse). As `critique status`, `critique list` and "
        "`grades` count them."
    )


async def critiques_page(ctx: PageContext) -> Page:
    course = ctx.visitor.course
    now = ctx.app.clock.now()
    async with ctx.db.session() as s:
        rows = await queries.critique_index(s, course, now)
        papers, grid = await queries.critique_grid(s, course, now)
    table = TableView.of(
        ["Paper", "Title", "Due", "Submitted", "Late", "Graded", "Excused", "Missing"],
        [[Cell(f"#{r[0]}", href=f"/critiques/{r[0]}"), *r[1:]] for r in rows],
        "Papers that take critiques",
    )
    marks = TableView.of(
        ["Student", *(f"#{p.number}" for p in papers)],
        [[person.name, *(mark_cell(m) for m in row)] for person, row in grid],
        "Each student's critiques",
    )
    return Page("Critiques", intro=marks_note(course)).add(table, marks)


async def critique_paper_page(ctx: PageContext) -> Page:
    number = ctx.number("paper")
    course = ctx.visitor.course
    tz = ZoneInfo(course.timezone)
    async with ctx.db.session() as s:
        paper = await critique_paper(s, course.id, number)
        done, absent = await queries.critiques_of(s, course, paper, ctx.app.clock.now())
    rows = [
        [
            Cell(f"Select {p.name}", check=("students", p.email)),
            p.name,
            queries.when(c.submitted_at, tz),
            "late" if is_late(course, paper, c) else "on time",
            mark_cell(m),
            Cell(c.question, long=len(c.question) > 70),
            Cell(c.answer, long=len(c.answer) > 70),
            Cell(f"PDF of {p.name}", href=f"/critiques/{number}/pdf/{p.id}", new_tab=True),
        ]
        for p, c, m in done
    ]
    table = TableView.of(
        ["Select", "Student", "Submitted", "Timing", "Status", "Question", "Answer", "PDF"],
        rows,
        f"Critiques of #{paper.number} ({len(done)} submitted)",
    )
    tally = queries.PaperTally.of([m for _, _, m in done] + [m for _, m in absent])
    excused = f"; {tally.excused} excused" if tally.excused else ""
    page = Page(
        f"Critiques: #{paper.number} {paper.title}",
        intro=f"{tally.submitted} of {tally.owing} students submitted{excused}. {marks_note(course)}",
    )
    page.add(
        FormView(
            "Grade the selected critiques",
            "critique grade",
            [Field("paper", "", "hidden", value=str(number)), REASON],
            buttons=[("grade", "pass", "Pass selected"), ("grade", "fail", "Fail selected")],
            table=table,
        ),
        FormView(
            "Grade every on-time, ungraded critique",
            "critique grade-all",
            [
                Field("paper", "", "hidden", value=str(number)),
                Field("grade", "Grade", "select", (("pass", "Pass"), ("fail", "Fail")), True),
            ],
            submit="Grade all on time",
        ),
        TableView.of(
            ["Student", "Email", "Status"],
            [[p.name, p.email, mark_cell(m)] for p, m in absent],
            f"Not submitted ({len(absent)}): missing, excused or not due yet",
        ),
    )
    return page


async def critique_pdf(request: web.Request) -> web.StreamResponse:
    """A critique's PDF, opened in the browser: ``critique file`` run as the visitor (a
    student gets only their own, as in chat)."""
    v = await require(request, Access.MEMBER)
    ctx = PageContext(request, v)
    number = ctx.number("paper")
    async with ctx.db.session() as s:
        person = await queries.staff_person(s, v.course.id, ctx.number("person"))
    if person is None:
        raise Refused(404, "Not found", "There is no such critique.")
    reply = await ctx.run("critique file", {"paper": number, "student": person.email})
    pdf = next((f for f in reply.files if f.mime == "application/pdf"), None)
    if reply.is_error or pdf is None:
        status = 403 if "only your own" in reply.text else 404
        raise Refused(status, "Not available", reply.text)
    return file_response(pdf.data, pdf.name, "application/pdf", inline=True)


# ------------------------------------------------------------------------ gradebook


async def grades_page(ctx: PageContext) -> Page:
    page = Page(
        "Gradebook",
        intro="Every student by component. The CSV files are the Canvas imports (Grades → Import).",
    )
    page.add_reply(await ctx.run("grade export"))
    page.add(
        ReplyView(
            "Canvas imports",
            chat_markup("Made when you download them, from the grades as they are then."),
            "info",
            [],
            [],
            [(f"{ctx.visitor.course.key}-{what}.csv", f"/export/{what}") for what in EXPORTS],
            [],
        )
    )
    async with ctx.db.session() as s:
        people = await queries.people_options(s, ctx.visitor.course.id)
    components = tuple((k, k) for k in (ctx.visitor.course.grading or {}))
    return page.add(
        FormView(
            "Set a grade",
            "grade set",
            [
                Field("student", "Student", "select", people, required=True),
                Field("component", "Component", "select", components, required=True),
                Field("points", "Points (out of 100)", "number", required=True),
                REASON,
            ],
            submit="Set grade",
        )
    )


# ------------------------------------------------------------------------ GPU queue


async def gpu_page(ctx: PageContext) -> Page:
    course = ctx.visitor.course
    tz = ZoneInfo(course.timezone)
    paused = bool((course.gpu_rules or {}).get("paused"))
    page = Page("GPU queue", intro="The queue is paused." if paused else "The queue is running.")
    page.add_reply(await ctx.run("gpu queue"))
    for table in page.tables:
        table.refresh = 15  # the places move as jobs run: kept current in place
    async with ctx.db.session() as s:
        active = list(
            await s.execute(
                select(GpuJob, Person.name)
                .join(Person, Person.id == GpuJob.person_id)
                .where(GpuJob.course_id == course.id, GpuJob.state.in_(("queued", "running")))
                .order_by(GpuJob.id)
            )
        )
    workers = [
        [
            j.worker or "—",
            f"#{j.id}",
            j.demo,
            name,
            queries.when(j.started_at, tz),
            queries.when(j.heartbeat_at, tz),
        ]
        for j, name in active
        if j.state == "running"
    ]
    page.add(
        TableView.of(
            ["Worker", "Job", "Demo", "Owner", "Started", "Last heartbeat"],
            workers,
            "Workers busy now",
        ),
        FormView(
            "Cancel a job",
            "gpu cancel",
            [
                Field(
                    "job",
                    "Job",
                    "select",
                    tuple(
                        (str(j.id), f"#{j.id} {j.demo} ({name}, {j.state})") for j, name in active
                    ),
                    required=True,
                ),
                REASON,
            ],
            submit="Cancel job",
            danger=True,
        ),
    )
    if ctx.visitor.allows(Access.INSTRUCTOR):
        which = "gpu resume" if paused else "gpu pause"
        page.add(
            FormView(
                "Resume the queue" if paused else "Pause the queue",
                which,
                [REASON],
                submit="Resume" if paused else "Pause",
            )
        )
    return page


# ------------------------------------------------------------------------ audit log


async def audit_page(ctx: PageContext) -> Page:
    q = ctx.request.query
    person, kind = q.get("person", "").strip(), q.get("kind", "").strip()
    page = Page("Audit log", intro="Staff changes to students' records, newest first.")
    page.add(
        FormView(
            "Filter",
            fields=[
                Field("person", "About or by (email, onyen or name)", value=person),
                Field("kind", "Kind starts with (grade, critique, assign…)", value=kind),
            ],
            submit="Show",
            method="get",
        )
    )
    page.add_reply(await ctx.run("audit export", {"person": person or None, "kind": kind or None}))
    return page


#: Downloads made on demand: what → the export command that makes the file.
EXPORTS = {"grades": "grade export", "critiques": "critique export", "assignment": "assign export"}


async def export_file(request: web.Request) -> web.StreamResponse:
    """A course export (a Canvas import, the assignment) as the chat command makes it."""
    v = await require(request, Access.STAFF)
    command = EXPORTS.get(request.match_info["what"])
    if command is None:
        raise Refused(404, "Not found", "There is no such export.")
    reply = await PageContext(request, v).run(command)
    csv_file = next((f for f in reply.files if f.mime == "text/csv"), None)
    if reply.is_error or csv_file is None:
        raise Refused(409 if not reply.is_error else 403, "Not available", reply.text)
    return file_response(csv_file.data, csv_file.name, csv_file.mime)


def add_routes(r: web.UrlDispatcher) -> None:
    staff = Access.STAFF
    for path, builder, access, commands in (
        ("/week", week_page, staff, ()),
        ("/rankings", rankings_page, staff, ()),
        ("/assignment", assignment_page, staff, ASSIGN_COMMANDS),
        ("/critiques", critiques_page, staff, ()),
        (
            "/critiques/{paper}",
            critique_paper_page,
            staff,
            ("critique grade", "critique grade-all"),
        ),
        ("/grades", grades_page, staff, ("grade set",)),
        ("/gpu", gpu_page, staff, ("gpu cancel", "gpu pause", "gpu resume")),
        ("/audit", audit_page, Access.INSTRUCTOR, ()),
    ):
        handler = page_route(builder, access, commands=commands)
        r.add_get(path, handler)
        if commands:
            r.add_post(path, handler)
    r.add_get("/critiques/{paper}/pdf/{person}", critique_pdf)
    r.add_get("/export/{what}", export_file)
    classes.add_routes(r)
