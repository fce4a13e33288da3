"""The staff pages about class sessions: discussions (questions, groups) and paper
battles (progress while open; after close, the result and every justification)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from aiohttp import web
from sqlalchemy import func, select

from bot.web import queries
from bot.web.actions import PageContext, page_route
from bot.web.view import Cell, Field, FormView, Page, TableView
from commands.battles import battle_name, load_battle, read_battle_ref
from commands.discussions import discussion_paper, submitted_questions
from commands.registry import Access
from commands.replies import Table
from db.models import Battle, BattlePoll, Discussion, DiscussionGroup, DiscussionQuestion, Paper

DISCUSSION_COMMANDS = (
    "discussion propose",
    "discussion accept",
    "discussion add",
    "discussion remove",
)
DISCUSSION_ACTIONS = ("discussion.accept", "discussion.propose")
BATTLE_COMMANDS = ("battle open", "battle close")


async def discussions_page(ctx: PageContext) -> Page:
    course = ctx.visitor.course
    async with ctx.db.session() as s:
        papers = list(
            await s.scalars(
                select(Paper)
                .where(Paper.course_id == course.id, Paper.discussion.is_(True))
                .order_by(Paper.class_date, Paper.number)
            )
        )
        found = {
            d.paper_id: d
            for d in await s.scalars(select(Discussion).where(Discussion.course_id == course.id))
        }
        counts = dict(
            (
                await s.execute(
                    select(DiscussionQuestion.discussion_id, func.count()).group_by(
                        DiscussionQuestion.discussion_id
                    )
                )
            ).all()
        )
        groups = dict(
            (
                await s.execute(
                    select(DiscussionGroup.discussion_id, func.count()).group_by(
                        DiscussionGroup.discussion_id
                    )
                )
            ).all()
        )
    rows = []
    for p in papers:
        d = found.get(p.id)
        rows.append(
            [
                Cell(f"#{p.number}", href=f"/discussions/{p.number}"),
                p.title,
                queries.day(p.class_date),
                d.state if d else "not prepared",
                str(counts.get(d.id, 0)) if d else "0",
                str(groups.get(d.id, 0)) if d else "0",
            ]
        )
    return Page("Discussions").add(
        TableView.of(
            ["Paper", "Title", "Date", "State", "Questions", "Groups"],
            rows,
            "Papers with an in-class discussion",
        )
    )


async def discussion_page(ctx: PageContext) -> Page:
    number = ctx.number("paper")
    async with ctx.db.session() as s:
        paper = await discussion_paper(s, ctx.visitor.course.id, number)
        asked = await submitted_questions(s, paper)
    page = Page(f"Discussion: #{paper.number} {paper.title}")
    shown = await ctx.run("discussion show", {"paper": number})
    shown.tables = [Table(t.columns, t.rows, t.title or "Breakout groups") for t in shown.tables]
    page.add_reply(shown)
    fixed = Field("paper", "", "hidden", value=str(number))
    page.add(
        FormView(
            "Propose questions from the critiques",
            "discussion propose",
            [fixed, Field("count", "How many", "number", value="")],
            submit="Propose",
        ),
        FormView(
            "Add a question",
            "discussion add",
            [fixed, Field("text", "Question", "textarea", required=True)],
            submit="Add",
        ),
        FormView(
            "Remove a question",
            "discussion remove",
            [fixed, Field("number", "Question number", "number", required=True)],
            submit="Remove",
            danger=True,
        ),
        TableView.of(
            ["Student", "Question"],
            [[p.name, Cell(c.question, long=len(c.question) > 70)] for c, p in asked],
            "Questions submitted with the critiques",
        ),
    )
    return page


async def battles_page(ctx: PageContext) -> Page:
    course = ctx.visitor.course
    tz = ZoneInfo(course.timezone)
    async with ctx.db.session() as s:
        battles = list(
            await s.execute(
                select(Battle, BattlePoll)
                .outerjoin(BattlePoll, BattlePoll.battle_id == Battle.id)
                .where(Battle.course_id == course.id)
                .order_by(Battle.number)
            )
        )
        titles = {
            p.id: f"#{p.number} {p.title}"
            for p in await s.scalars(select(Paper).where(Paper.course_id == course.id))
        }
    rows = []
    for b, poll in battles:
        if poll is None:
            state = "not opened"
        elif poll.closed_at is None:
            state = f"open (opened {queries.when(poll.opened_at, tz)})"
        else:
            state = f"closed {queries.when(poll.closed_at, tz)}"
        rows.append(
            [
                Cell(f"Battle {battle_name(b)}", href=f"/battles/{battle_name(b)}"),
                queries.day(b.class_date),
                titles.get(b.paper_a_id, "?"),
                titles.get(b.paper_b_id, "?"),
                state,
            ]
        )
    return Page("Battles").add(
        TableView.of(["Battle", "Date", "Side A", "Side B", "Poll"], rows, "Paper battles")
    )


async def battle_page(ctx: PageContext) -> Page:
    """One battle, named in the URL as the bot prints it (``/battles/B4``, ``/battles/4``)."""
    ref = read_battle_ref(ctx.param("battle")[:64])  # refused: not found
    async with ctx.db.session() as s:
        view = await load_battle(s, ctx.visitor.course, ref)  # not this course's: not found
    battle = view.battle
    name = str(battle.number)  # what the forms send: the number, as posted polls do
    page = Page(f"Battle {view.name}")
    page.add_reply(await ctx.run("battle show", {"battle": name}))
    async with ctx.db.session() as s:
        poll = await s.scalar(select(BattlePoll).where(BattlePoll.battle_id == battle.id))
    fixed = Field("battle", "", "hidden", value=name)
    if poll is None:
        page.add(
            FormView(
                "Open the poll",
                "battle open",
                [fixed, Field("minutes", "Minutes (blank: the course's rule)", "number")],
                submit="Open poll",
            )
        )
    elif poll.closed_at is None:
        page.add_reply(await ctx.run("battle status", {"battle": name}))
        page.add(
            FormView("Close the poll", "battle close", [fixed], submit="Close poll", danger=True)
        )
    else:
        page.add_reply(await ctx.run("battle export", {"battle": name}))
    return page


def add_routes(r: web.UrlDispatcher) -> None:
    staff = Access.STAFF
    r.add_get("/discussions", page_route(discussions_page, staff))
    one = page_route(
        discussion_page, staff, commands=DISCUSSION_COMMANDS, actions=DISCUSSION_ACTIONS
    )
    r.add_get("/discussions/{paper}", one)
    r.add_post("/discussions/{paper}", one)
    r.add_get("/battles", page_route(battles_page, staff))
    battle = page_route(battle_page, staff, commands=BATTLE_COMMANDS)
    r.add_get("/battles/{battle}", battle)
    r.add_post("/battles/{battle}", battle)
