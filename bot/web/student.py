"""Everyone's own page: their assignment and why, their critiques with status and grades,
their GPU jobs with result images, and their calendar (a download, and a subscription
link that calendar apps can poll, served by :mod:`bot.web.calendar`). A student sees
only their own: each part is a command's answer for them, and the files are checked as
the commands check them."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import select

from bot.web import queries
from bot.web.actions import PageContext, file_response, page_route
from bot.web.auth import Refused, check_csrf, require
from bot.web.pages import mark_cell
from bot.web.view import Cell, FormView, Page, ReplyView, TableView, chat_markup
from commands.calendar import issue_token, live_since
from commands.calendar.commands import feed_url
from commands.registry import Access
from db.models import Critique, GpuJob, GpuJobFile, Paper, Role

OUTPUT = "output"


async def me_page(ctx: PageContext) -> Page:
    v = ctx.visitor
    page = Page(f"{v.person.name}: my page")
    page.add_reply(await ctx.run_assignment_read("assignment", per_person=True))
    if v.person.role is Role.STUDENT:
        page.add_reply(await ctx.run("critique status"))
        async with ctx.db.session() as s:
            mine = list(
                await s.execute(
                    select(Critique, Paper)
                    .join(Paper, Paper.id == Critique.paper_id)
                    .where(Critique.person_id == v.person.id, Paper.course_id == v.course.id)
                    .order_by(Paper.number)
                )
            )
            marks = await queries.critique_marks(
                s, v.course, ctx.app.clock.now(), [p for _, p in mine], [v.person]
            )
        page.add(
            TableView.of(
                ["Paper", "Question", "Status", "PDF"],
                [
                    [
                        f"#{p.number} {p.title}",
                        Cell(c.question, long=len(c.question) > 70),
                        mark_cell(marks[(p.id, v.person.id)]),
                        Cell(
                            f"My critique of #{p.number}",
                            href=f"/critiques/{p.number}/pdf/{v.person.id}",
                            new_tab=True,
                        ),
                    ]
                    for c, p in mine
                ],
                "My critiques",
            )
        )
    page.add_reply(await ctx.run("gpu status"))
    async with ctx.db.session() as s:
        images = list(
            await s.execute(
                select(GpuJobFile.id, GpuJobFile.name, GpuJob.id, GpuJob.demo)
                .join(GpuJob, GpuJob.id == GpuJobFile.job_id)
                .where(
                    GpuJob.person_id == v.person.id,
                    GpuJob.course_id == v.course.id,
                    GpuJobFile.role == OUTPUT,
                    GpuJobFile.content_type.like("image/%"),
                )
                .order_by(GpuJob.id.desc(), GpuJobFile.id)
                .limit(24)
            )
        )
        since = await live_since(s, v.person.id)
    page.add(
        ReplyView(
            "Result images of my GPU jobs",
            chat_markup("" if images else "None yet."),
            "info",
            [],
            [
                (f"/files/gpu/{fid}", f"Result of GPU job #{job} ({demo}): {name}")
                for fid, name, job, demo in images
            ],
            [],
            [],
        ),
        ReplyView(
            "My calendar",
            chat_markup("Deadlines, class sessions and my presentations, in the course's zone."),
            "info",
            [],
            [],
            [(f"{v.course.key}.ics", "/me/calendar.ics")],
            [],
        ),
    )
    note = "A subscription link lets a calendar app follow the course calendar. " + (
        f"You made one on {since:%b %-d, %Y}; a new one replaces it (the old one stops working)."
        if since
        else "You have none yet."
    )
    page.add(
        FormView(
            "Calendar subscription",
            fields=[],
            submit="Make a new subscription link",
            note=note,
            url="/me/calendar-link",
        )
    )
    return page


async def make_calendar_link(request: web.Request) -> web.StreamResponse:
    """A new calendar subscription link, shown once (only its hash is kept)."""
    from bot.web.server import URL_KEY, render_page

    v = await require(request, Access.MEMBER)
    form = await request.post()
    check_csrf(request, v, str(form.get("csrf", "")) or None)
    app = PageContext(request, v).app
    async with app.db.transaction() as s:
        token = await issue_token(s, v.course.id, v.person.id, app.clock.now())
    url = feed_url(request.app[URL_KEY] or f"{request.scheme}://{request.host}", token)
    page = await me_page(PageContext(request, v))
    page.result = ReplyView(
        "Your calendar subscription link",
        chat_markup(
            f'{url}\nAdd it in your calendar app ("subscribe to a calendar from a URL"). '
            "It is shown only now; keep it private. `calendar revoke` in chat turns it off."
        ),
        "success",
        [],
        [],
        [],
        [],
    )
    return render_page(request, v, page)


async def calendar_download(request: web.Request) -> web.StreamResponse:
    v = await require(request, Access.MEMBER)
    reply = await PageContext(request, v).run("deadlines ics")
    ics = next((f for f in reply.files if f.mime == "text/calendar"), None)
    if ics is None:
        raise Refused(404, "Not found", reply.text)
    return file_response(ics.data, ics.name, "text/calendar")


async def gpu_file(request: web.Request) -> web.StreamResponse:
    """A GPU job's result image: its owner's, or any for staff (as `gpu status` allows)."""
    v = await require(request, Access.MEMBER)
    ctx = PageContext(request, v)
    file_id = ctx.number("file")
    async with ctx.db.session() as s:
        row = (
            await s.execute(
                select(GpuJobFile, GpuJob)
                .join(GpuJob, GpuJob.id == GpuJobFile.job_id)
                .where(GpuJobFile.id == file_id, GpuJobFile.role == OUTPUT)
            )
        ).first()
    if row is None or row[1].course_id != v.course.id:
        raise Refused(404, "Not found", "There is no such file.")
    f, job = row
    if job.person_id != v.person.id and not v.person.is_staff:
        raise Refused(403, "Not yours", f"Job #{job.id} is not yours.")
    mime = f.content_type if f.content_type.startswith("image/") else "application/octet-stream"
    return file_response(f.data, f.name, mime, inline=True)


def add_routes(r: web.UrlDispatcher) -> None:
    me = page_route(me_page, Access.MEMBER)
    r.add_get("/me", me)
    r.add_post("/me/calendar-link", make_calendar_link)
    r.add_get("/me/calendar.ics", calendar_download)
    r.add_get("/files/gpu/{file}", gpu_file)


__all__ = ["add_routes", "queries"]
