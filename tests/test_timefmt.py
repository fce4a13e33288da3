"""Instants in each reader's zone: time markers (commands/timefmt.py) become Discord's
``<t:…>``, Slack's ``<!date^…>`` or the course-zone text, and never leak anywhere."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from bot.discord.render import render as discord_render
from bot.slack import blocks as bk
from bot.web.server import _jinja
from bot.web.view import Page, TableView, chat_markup, finalize
from commands.context import Caller, Request, Where
from commands.replies import FileOut, Reply, Section, Table, render_table, render_text
from commands.timefmt import (
    MARKER_CHARS,
    course_text,
    fmt_instant,
    localize,
    plain,
    relative,
)
from db.models import AuditEntry, Platform
from tests.slack_fakes import block_nodes

NY = ZoneInfo("America/New_York")
#: Rankings of the sample course: Sun Aug 27 2023, 11:59 PM EDT.
DUE = datetime(2023, 8, 28, 3, 59, tzinfo=UTC)
DUE_UNIX = 1693195140
NOW = datetime(2023, 8, 25, 14, 0, tzinfo=UTC)
#: After the DST change: Sun Nov 5 2023, 11:59 PM EST.
NOV = datetime(2023, 11, 6, 4, 59, tzinfo=UTC)

SLACK_DUE = f"<!date^{DUE_UNIX}^{{date_long_pretty}} {{time}}|Sun Aug 27, 2023, 11:59 PM EDT>"


def no_markers(text: str) -> bool:
    """No marker character, raw or written out (``\\uE000``: an escaped marker)."""
    return not any(c in text for c in MARKER_CHARS) and "\\ue00" not in text.lower()


def page_html(page: Page) -> str:
    """The web desk's page, as a signed-in instructor gets it."""
    visitor = SimpleNamespace(
        csrf="x",
        course=SimpleNamespace(name="COMP 790"),
        person=SimpleNamespace(name="Gedas", role=SimpleNamespace(value="instructor")),
    )
    return str(
        _jinja()
        .get_template("page.html")
        .render(visitor=visitor, nav=[], path="/x", query="", page=page)
    )


# ------------------------------------------------------------------------ localize


def test_plain_is_the_course_zone_text_with_dst() -> None:
    assert plain(fmt_instant(DUE, NY)) == "Sun Aug 27, 2023, 11:59 PM EDT"
    assert plain(fmt_instant(NOV, NY)) == "Sun Nov 5, 2023, 11:59 PM EST"
    assert plain(fmt_instant(NOV, NY)) == course_text(NOV, NY)
    assert plain(relative(DUE, NOW)) == "in 2 days"
    assert plain(relative(NOW, DUE)) == "2 days ago"
    assert plain(relative(NOW, NOW + timedelta(seconds=30))) == "now"
    assert localize(f"due {fmt_instant(DUE, NY)}.", "plain") == (
        "due Sun Aug 27, 2023, 11:59 PM EDT."
    )


def test_discord_timestamps() -> None:
    text = f"Due {fmt_instant(DUE, NY)} ({relative(DUE, NOW)})."
    assert localize(text, "discord") == f"Due <t:{DUE_UNIX}:F> (<t:{DUE_UNIX}:R>)."


def test_slack_dates_with_the_course_zone_as_fallback() -> None:
    text = f"Due {fmt_instant(DUE, NY)} ({relative(DUE, NOW)})."
    # A relative time stays text: Slack documents {ago} for past times only.
    assert localize(text, "slack") == f"Due {SLACK_DUE} (in 2 days)."
    nov = localize(fmt_instant(NOV, NY), "slack")
    assert nov.endswith("|Sun Nov 5, 2023, 11:59 PM EST>")


def test_code_shows_the_course_zone_text() -> None:
    when = fmt_instant(DUE, NY)
    text = f"Due {when}\n```\nrankings  {when}\n```\nor `{relative(DUE, NOW)}`"
    assert localize(text, "discord") == (
        f"Due <t:{DUE_UNIX}:F>\n```\nrankings  Sun Aug 27, 2023, 11:59 PM EDT\n```\nor `in 2 days`"
    )
    assert localize(text, "slack").startswith(f"Due {SLACK_DUE}\n```\nrankings  Sun Aug 27")


def test_a_marker_cut_short_leaves_nothing_behind() -> None:
    text = f"Due {fmt_instant(DUE, NY)}"
    for n in range(len(text)):
        for surface in ("plain", "discord", "slack"):
            assert no_markers(localize(text[:n] + "…", surface)), (n, surface)  # type: ignore[arg-type]
    assert plain(text[:10]) == "Due "


def test_plain_text_passes_through() -> None:
    for surface in ("plain", "discord", "slack"):
        assert localize("no time here `code`", surface) == "no time here `code`"  # type: ignore[arg-type]


# ------------------------------------------------------------------------ rendering


def _reply() -> Reply:
    when, rel = fmt_instant(DUE, NY), relative(DUE, NOW)
    return Reply(
        title=f"Rankings due {when}",
        text=f"Rankings are due {when} ({rel}).",
        sections=[Section(f"Before {when}", f"Submit by {when}.", [("Due", when)])],
        tables=[Table(["What", "Due", "When"], [["Rankings", when, rel], ["X", "—", "—"]])],
    )


def test_render_text_and_table_widths_are_plain() -> None:
    text = render_text(_reply())
    assert no_markers(text)
    assert "== Rankings due Sun Aug 27, 2023, 11:59 PM EDT ==" in text
    assert "Rankings are due Sun Aug 27, 2023, 11:59 PM EDT (in 2 days)." in text
    table = render_table(_reply().tables[0]).splitlines()
    assert table[0] == "What      Due                             When"
    assert table[2] == "Rankings  Sun Aug 27, 2023, 11:59 PM EDT  in 2 days"


def test_discord_render() -> None:
    [message] = discord_render(_reply())
    embed = message.embeds[0]
    assert embed.title == "Rankings due Sun Aug 27, 2023, 11:59 PM EDT"
    assert embed.description is not None
    assert embed.description.startswith(f"Rankings are due <t:{DUE_UNIX}:F> (<t:{DUE_UNIX}:R>).")
    field = embed.fields[0]
    assert field.name == "Before Sun Aug 27, 2023, 11:59 PM EDT"
    assert field.value == f"Submit by <t:{DUE_UNIX}:F>.\n**Due:** <t:{DUE_UNIX}:F>"
    table = next(e.description for e in message.embeds if e.description and "```" in e.description)
    assert "Rankings  Sun Aug 27, 2023, 11:59 PM EDT  in 2 days" in table
    assert no_markers(json.dumps([e.to_dict() for e in message.embeds], ensure_ascii=False))


def test_slack_blocks() -> None:
    reply = _reply()
    blocks = bk.reply_blocks(reply)
    assert blocks[0]["text"]["text"] == "Rankings due Sun Aug 27, 2023, 11:59 PM EDT"
    assert blocks[1]["text"]["text"] == f"Rankings are due {SLACK_DUE} (in 2 days)."
    assert blocks[2]["text"]["text"] == f"*Before {SLACK_DUE}*\nSubmit by {SLACK_DUE}."
    assert blocks[3]["fields"][0]["text"] == f"*Due*\n{SLACK_DUE}"
    assert "Rankings  Sun Aug 27, 2023, 11:59 PM EDT  in 2 days" in blocks[4]["text"]["text"]
    assert bk.fallback_text(reply) == (
        "Rankings due Sun Aug 27, 2023, 11:59 PM EDT: Rankings are due Sun Aug 27, 2023, "
        "11:59 PM EDT (in 2 days)."
    )
    assert no_markers(json.dumps(blocks, ensure_ascii=False))


def test_slack_field_cut_to_its_limit_never_splits_a_date() -> None:
    when = fmt_instant(DUE, NY)
    field = bk._field("Due", f"{'x' * 1900} {when} {when}")
    assert len(field["text"]) <= bk.MAX_FIELD and no_markers(field["text"])
    assert "<!date" not in field["text"]


def test_web_and_files_show_the_course_zone() -> None:
    when = fmt_instant(DUE, NY)
    assert str(chat_markup(f"**Due** {when}")) == (
        "<strong>Due</strong> Sun Aug 27, 2023, 11:59 PM EDT"
    )
    assert finalize(when) == "Sun Aug 27, 2023, 11:59 PM EDT"
    assert TableView.of(["Due"], [[when]]).csv().splitlines()[1] == (
        '"Sun Aug 27, 2023, 11:59 PM EDT"'
    )
    html = page_html(Page(f"Due {when}").add_reply(_reply()))
    assert no_markers(html) and "Sun Aug 27, 2023, 11:59 PM EDT" in html
    f = FileOut("due.csv", f"due,{when}\n".encode(), "text/csv", description=f"as of {when}")
    assert f.data == b"due,Sun Aug 27, 2023, 11:59 PM EDT\n"
    assert f.description == "as of Sun Aug 27, 2023, 11:59 PM EDT"
    pdf = b"%PDF-1.4 \xee\x80\x80\xff binary"
    assert FileOut("a.pdf", pdf, "application/pdf").data == pdf


# ------------------------------------------------------------- real replies, every surface


def req(user: str) -> Request:
    return Request(
        Platform.TERMINAL, "default", Caller(Platform.TERMINAL, user, user), Where("general")
    )


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)


def check_every_surface(reply: Reply, line: str) -> tuple[bool, bool]:
    """Render ``reply`` everywhere; no marker survives. Whether Discord showed a
    timestamp and Slack a date."""
    assert no_markers(render_text(reply)), line
    for f in reply.files:
        assert not re.search(b"\xee\x80[\x80-\x82]", f.data), (line, f.name)
    # Discord: embeds, content, button labels.
    discord_seen = False
    for message in discord_render(reply):
        dumped = json.dumps(
            [
                [e.to_dict() for e in message.embeds],
                message.content,
                [b.label for b in message.buttons],
            ],
            ensure_ascii=False,
        )
        assert no_markers(dumped), (line, dumped)
        for e in message.embeds:
            assert "<t:" not in (e.title or "") and "<t:" not in (e.footer.text or ""), line
            assert all("<t:" not in f.name for f in e.fields), line
            for code in _CODE.findall(e.description or ""):
                assert "<t:" not in code, (line, code)
        discord_seen = discord_seen or "<t:" in dumped
    # Slack: every block, the notification text; plain_text never has a date.
    blocks = bk.reply_blocks(reply)
    dumped = json.dumps(blocks, ensure_ascii=False)
    assert no_markers(dumped) and no_markers(bk.fallback_text(reply)), line
    assert "<!date" not in bk.fallback_text(reply), line

    for node in block_nodes(blocks):
        if node.get("type") == "plain_text":
            assert "<!date" not in node["text"], line
        if node.get("type") == "mrkdwn":
            for code in _CODE.findall(node["text"]):
                assert "<!date" not in code, (line, code)
    # The web desk: the page a reply makes, and its tables as CSV.
    page = Page("Result").add_reply(reply)
    html = page_html(page)
    assert no_markers(html), line
    for t in page.tables:
        assert no_markers(t.csv()), line
    return discord_seen, "<!date^" in dumped


#: Who runs what: every command's examples (or its bare name) by a student and by the
#: instructor, plus a few that show times.
EXTRA = [
    ("gedas", "rankings extend 2023-08-29T12:00 bob"),
    ("gedas", "rankings extend 2023-08-30T09:00"),
    ("gedas", 'announce "Rankings soon." at 2023-08-26T09:00'),
    ("alice", "rank standard 5 6 7 8 13 14 15"),
    ("alice", "rank show"),
    ("alice", "deadlines --all"),
    ("alice", "help"),
    ("gedas", "rankings status"),
    ("gedas", "announce list"),
    ("gedas", "audit"),
    ("gedas", "audit export"),
    ("gedas", "outbox"),
]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_no_marker_reaches_any_surface(app) -> None:  # type: ignore[no-untyped-def]
    from commands import load_registry
    from commands.outbox import reply_from_json
    from commands.reminders import due_reminders
    from db.models import Course, OutboxMessage

    lines = list(EXTRA)
    for cmd in sorted(load_registry(), key=lambda c: c.name):
        if cmd.name.startswith("gpu"):
            continue  # GPU jobs: rows only, nothing about time here
        for example in cmd.examples or (cmd.name,):
            lines += [("alice", example), ("gedas", example)]
    replies: list[tuple[str, Reply]] = []
    for who, line in lines:
        replies.append((line, await app.core.handle_text(req(who), line)))
    async with app.db.session() as s:
        rows = list(await s.scalars(select(OutboxMessage)))
        summaries = list(await s.scalars(select(AuditEntry.summary)))
        # Scheduled posts: the reminders a day before the rankings and the milestone.
        course = await s.scalar(select(Course))
        assert course is not None
        for at in (DUE - timedelta(hours=24), NOV - timedelta(hours=24)):
            posts = await due_reminders(s, course, at, [24])
            replies += [(f"reminder at {at}", p.reply) for p in posts]
    replies += [(f"outbox {r.id}", reply_from_json(r.reply)) for r in rows]

    marked = [line for line, r in replies if not no_markers("".join(_strings(asdict(r))))]
    assert len(marked) >= 10, marked  # the test sees many real instants
    seen = [check_every_surface(r, line) for line, r in replies]
    assert any(d for d, _ in seen) and any(s for _, s in seen)
    assert summaries and all(no_markers(s) for s in summaries)
    assert any("ranking deadline" in s and "EDT" in s for s in summaries)


def test_error_messages_keep_the_bots_markers_and_escape_typed_ones() -> None:
    from commands.text import safe_message, shown

    when = fmt_instant(DUE, NY)
    assert safe_message(f"Closed {when}.\u202e") == f"Closed {when}.\\u202E"
    # Someone typing marker characters gets them written out, never read as a time.
    forged = shown("\ue000F0\ue001x\ue002")
    assert forged == "\\uE000F0\\uE001x\\uE002"
    assert localize(safe_message(f"no user {forged}"), "discord") == f"no user {forged}"


async def test_mail_shows_the_course_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    import aiosmtplib

    from commands.mail import MailConfig, send_mail

    sent: list[object] = []

    async def fake_send(message: object, **_: object) -> None:
        sent.append(message)

    monkeypatch.setattr(aiosmtplib, "send", fake_send)
    when = fmt_instant(DUE, NY)
    await send_mail(MailConfig(host="mail", sender="bot@unc.edu"), "a@unc.edu", when, f"By {when}.")
    [message] = sent
    assert message["Subject"] == "Sun Aug 27, 2023, 11:59 PM EDT"  # type: ignore[index]
    assert message.get_content() == "By Sun Aug 27, 2023, 11:59 PM EDT.\n"  # type: ignore[attr-defined]
