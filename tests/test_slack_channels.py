"""The course's Slack channels, bound by id when the bot starts (commands/channels.py):
an ambiguous name or an unknown id is logged and nothing is posted to a guessed channel;
a renamed channel keeps its messages. Also the Slack settings the adapter starts with
(``SLACK_HOST``) and its one ``auth.test`` per process. Runs the production adapter
against the fake Web API (tests/slack_fakes.py), on SQLite and on Postgres."""

from __future__ import annotations

import dataclasses
import logging

import aiohttp
import pytest
from sqlalchemy import select

from bot.app import App
from bot.settings import Settings, SlackSettings
from bot.slack import SlackBot
from commands.context import Caller, Request, Where
from commands.outbox import Gone
from commands.replies import Reply, render_text
from db.models import Course, CourseBinding, OutboxMessage, Platform
from tests.helpers import QUIET_GROUPS, publish_groups
from tests.slack_fakes import FORM, FakeSlack, Signer, command_body
from tests.test_slack import (  # noqa: F401 (fixtures: fake, slack)
    SECRET,
    TEAM,
    Harness,
    bind_workspace,
    fake,
    slack,
    slack_settings,
)


def staff_request(channel: str | None = None) -> Request:
    """gedas, the instructor, on Slack (a command typed nowhere in particular)."""
    return Request(Platform.SLACK, TEAM, Caller(Platform.SLACK, "UGEDAS", "gedas"), Where(channel))


async def course_id(app: App) -> int:
    async with app.db.session() as s:
        found = await s.scalar(select(Course.id))
    assert found is not None
    return found


async def bound(app: App) -> dict[str, object]:
    async with app.db.session() as s:
        binding = await s.scalar(
            select(CourseBinding).where(CourseBinding.platform == Platform.SLACK)
        )
    assert binding is not None
    return dict(binding.channels or {})


def errors(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and "Slack" in r.getMessage()
    )


async def test_channels_are_bound_by_id_at_start(slack: Harness, app: App) -> None:  # noqa: F811
    """The course file names its channels; the bot resolved them once, at start, to the
    ids the workspace lists (paged), and keeps the ids on the course's binding."""
    channels = await bound(app)
    assert channels["announcements"] == {"id": "CANNOUNCE", "from": "announcements"}
    assert channels["general"] == {"id": "CGENERAL", "from": "general"}
    assert "battles" not in channels  # the workspace has no #battles: not guessed
    listed = len(slack.fake.of("conversations.list"))
    assert listed == 1

    # Many pages: every one is read.
    slack.fake.page_size = 1
    slack.fake.channels["battles"] = "CBATTLES"
    await slack.bot.bind_channels()
    assert len(slack.fake.of("conversations.list")) == listed + 3
    assert (await bound(app))["battles"] == {"id": "CBATTLES", "from": "battles"}


async def test_two_channels_of_one_name_are_logged_and_get_no_poll(
    slack: Harness,  # noqa: F811
    app: App,
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = slack.fake
    api.extra_channels = [
        {"id": "CBATTLE1", "name": "battles"},
        {"id": "CBATTLE2", "name": "Battles"},
    ]
    with caplog.at_level(logging.ERROR, logger="coursebot.slack"):
        problems = await slack.bot.bind_channels()  # as the next start does
    logged = errors(caplog)
    assert "CBATTLE1" in logged and "CBATTLE2" in logged and "#battles" in logged
    assert "ambiguous" in logged and problems and "battles" not in await bound(app)

    # A poll for the battles channel goes to neither: it is kept as failed, saying why.
    await publish_groups(app, QUIET_GROUPS)
    n = len(api.calls)
    reply = await slack.bot.core.handle_text(staff_request(), "battle open 1")
    assert "Not delivered" in render_text(reply)
    posted = {c.args.get("channel") for c in api.calls[n:] if c.method == "chat.postMessage"}
    assert not posted & {"CBATTLE1", "CBATTLE2"}
    async with app.db.session() as s:
        row = await s.scalar(select(OutboxMessage).where(OutboxMessage.channel == "battles"))
    assert row is not None and row.status == "failed" and row.ref is None
    assert "`battles` is not bound to a Slack channel" in (row.last_error or "")
    assert "course file" in (row.last_error or "")  # and what to do


async def test_an_unknown_channel_id_is_logged_and_nothing_is_posted(
    slack: Harness,  # noqa: F811
    app: App,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with app.db.transaction() as s:
        course = await s.scalar(select(Course))
        assert course is not None
        course.channels = {**course.channels, "announcements": "C0NOTHERE"}
    with caplog.at_level(logging.ERROR, logger="coursebot.slack"):
        await slack.bot.bind_channels()
    logged = errors(caplog)
    assert "C0NOTHERE" in logged and "`announcements`" in logged
    assert "announcements" not in await bound(app)

    n = len(slack.fake.calls)
    with pytest.raises(Gone, match="`announcements` is not bound"):
        await slack.bot.sender.post(await course_id(app), "announcements", Reply(text="hi"))
    assert [c for c in slack.fake.calls[n:] if c.method == "chat.postMessage"] == []


async def test_a_renamed_channel_keeps_receiving_posts(slack: Harness, app: App) -> None:  # noqa: F811
    bot, api = slack.bot, slack.fake
    cid = await course_id(app)
    await bot.sender.post(cid, "announcements", Reply(text="before"))
    api.channels["news"] = api.channels.pop("announcements")  # renamed in Slack
    listed = len(api.of("conversations.list"))
    await bot.sender.post(cid, "announcements", Reply(text="after"))
    after = await api.wait_for("chat.postMessage", lambda a: "after" in str(a.get("text")))
    assert after["channel"] == "CANNOUNCE"
    assert len(api.of("conversations.list")) == listed  # resolved once, not per post
    # ...and after a restart too: a key bound from the same course-file value keeps its id.
    await bot.bind_channels()
    await bot.sender.post(cid, "announcements", Reply(text="restarted"))
    again = await api.wait_for("chat.postMessage", lambda a: "restarted" in str(a.get("text")))
    assert again["channel"] == "CANNOUNCE"

    # The channel a command was typed in is an id, and works as it is.
    await bot.sender.post(cid, "CSOMEWHERE", Reply(text="here"))
    here = await api.wait_for("chat.postMessage", lambda a: "here" in str(a.get("text")))
    assert here["channel"] == "CSOMEWHERE"


# ----------------------------------------------------------------------------- settings, auth
def test_slack_host_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SlackSettings(_env_file=None).host == "127.0.0.1"  # behind a reverse proxy
    monkeypatch.setenv("SLACK_HOST", "0.0.0.0")
    assert SlackSettings(_env_file=None).host == "0.0.0.0"


async def test_http_mode_binds_slack_host_and_asks_auth_test_once(
    app: App,
    fake: FakeSlack,  # noqa: F811
    settings: Settings,
) -> None:
    await bind_workspace(app)
    bot_app = dataclasses.replace(app, settings=slack_settings(settings, fake, port=0))
    bot = SlackBot(bot_app, post_interval=0.0)
    try:
        await bot.start(sweep=False)
        await bot.start_http()  # SLACK_HOST and SLACK_PORT
        assert bot._runner is not None and bot._runner.addresses[0][0] == "127.0.0.1"
        # Listeners restarted (a new server, as after Socket Mode reconnects): the kept
        # auth.test answers the start and bolt's authorization of every request.
        await bot.stop()
        await bot.start(sweep=False)
        port = await bot.start_http()
        body = command_body("whoami", response_url=fake.response_url(), trigger_id="t-auth")
        async with aiohttp.ClientSession() as http:
            resp = await http.post(
                f"http://127.0.0.1:{port}/slack/events",
                data=body.encode(),
                headers=Signer(SECRET).headers(body, FORM),
            )
            assert resp.status == 200
        reply = await fake.wait_response()
        assert "UALICE" in reply["text"]
        assert len(fake.of("auth.test")) == 1
    finally:
        await bot.stop()
