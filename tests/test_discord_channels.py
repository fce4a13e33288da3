"""Discord channels bound by id (issue #20, point 4): when the bot connects it lists the
server's text channels and binds the course file's channels to their ids once
(commands/channels.py); posts then go by id, never by a name looked up at send time.

Against simcord's in-memory Discord with the real discord.py client: two channels named
``battles`` (the problem is logged with both ids; the poll goes to neither and its
outbox row fails saying what to do), a renamed channel (it keeps its posts, and a new
channel of the old name gets none), an id in the course file that is not in the server,
and ``coursebot course channel`` (the real executable): a post then goes to the channel
bound by hand; bad input changes nothing."""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from simcord import ChannelHandle
from sqlalchemy import select

from bot.app import App
from bot.discord.outbox import OutboxError
from commands.channels import BY_HAND
from commands.context import Caller, Request, Where
from commands.outbox import FAILED, SENT
from commands.replies import Reply
from db.models import Course, CourseBinding, OutboxMessage, Platform
from tests.discord_fakes import GUILD_ID, World, discord_world
from tests.helpers import QUIET_GROUPS, publish_groups
from tests.test_cli import Workdir, _ok, coursebot, imported_template, sample  # noqa: F401
from tests.test_discord import course_id, message_text

#: An id no channel of the test server has.
NOWHERE = "1180000000000000999"


def from_dm(w: World, who: str) -> Request:
    """A command from a direct message (no channel of its own): a poll goes to the
    course's ``battles`` channel."""
    member = w.members[who]
    return Request(
        Platform.DISCORD,
        str(GUILD_ID),
        Caller(Platform.DISCORD, str(member.id), who),
        Where(is_dm=True),
    )


async def bound_channels(app: App) -> dict[str, dict[str, str]]:
    async with app.db.session() as s:
        binding = await s.scalar(
            select(CourseBinding).where(CourseBinding.platform == Platform.DISCORD)
        )
        assert binding is not None
        return dict(binding.channels or {})


async def poll_rows(app: App) -> list[OutboxMessage]:
    async with app.db.session() as s:
        rows = await s.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.remember.is_not(None))
            .order_by(OutboxMessage.id)
        )
        return list(rows)


def posts(channel: ChannelHandle) -> list[str]:
    """What the bot posted in a channel (Discord's own notices, a rename, left out)."""
    return [message_text(m) for m in channel.history() if m.author.bot]


async def test_two_channels_of_one_name_bind_neither_and_the_poll_fails_saying_why(
    app: App,
) -> None:
    second: list[ChannelHandle] = []

    def another_battles(w: World) -> None:  # before the bot connects
        second.append(w.guild.create_text_channel("battles"))

    async with discord_world(app, prepare=another_battles) as w:
        first, other = w.channels["battles"], second[0]
        logged = [f for f in w.failures if "#battles" in f]
        assert len(logged) == 1, w.failures
        assert "2 channels are named #battles" in logged[0]
        assert str(first.id) in logged[0] and str(other.id) in logged[0]
        assert "coursebot course channel" in logged[0]
        w.failures.clear()  # expected: the adapter said it
        assert "battles" not in await bound_channels(app)
        assert (await bound_channels(app))["general"]["id"] == str(w.general.id)

        await publish_groups(app, QUIET_GROUPS)
        r = await app.core.handle_text(from_dm(w, "gedas"), "battle open 1")
        assert not r.is_error and "open in #battles" in r.text, r.text
        (row,) = await poll_rows(app)
        assert row.channel == "battles" and row.status == FAILED
        error = row.last_error or ""
        assert "`battles` is not bound to a Discord channel" in error
        assert "coursebot course channel comp790-23f discord battles <channel-id>" in error
        assert "outbox retry" in error
        assert posts(first) == [] and posts(other) == []

        # A post to a channel by its id (where a command was typed) is not ambiguous.
        cid = await course_id(app)
        await w.bot.outbox.post(cid, str(other.id), Reply(text="Typed in the second one."))
        assert posts(other) == ["Typed in the second one."] and posts(first) == []


async def test_a_renamed_channel_keeps_its_posts_and_its_old_name_gets_none(app: App) -> None:
    async with discord_world(app) as w:
        battles = w.channels["battles"]
        assert (await bound_channels(app))["battles"] == {"id": str(battles.id), "from": "battles"}
        w.env.backend.edit_channel(battles.id, {"name": "battles-fall-2023"})
        await w.env.settle()
        newcomer = w.guild.create_text_channel("battles")  # the old name, a new channel
        await w.env.settle()
        assert w.bot.get_channel(battles.id).name == "battles-fall-2023"  # type: ignore[union-attr]

        await publish_groups(app, QUIET_GROUPS)
        r = await app.core.handle_text(from_dm(w, "gedas"), "battle open 1")
        assert not r.is_error, r.text
        (row,) = await poll_rows(app)
        assert row.status == SENT and row.ref is not None
        assert row.ref.startswith(f"{battles.id}:")
        assert posts(newcomer) == []
        assert any("Battle 1" in p or "battle 1" in p for p in posts(battles)), posts(battles)
        # Resolved once: the binding still names the first channel, and nothing was logged.
        assert (await bound_channels(app))["battles"]["id"] == str(battles.id)


async def test_an_id_in_the_course_file_that_is_not_in_the_server_is_logged(app: App) -> None:
    async with app.db.transaction() as s:
        course = await s.scalar(select(Course))
        assert course is not None
        course.channels = {**course.channels, "announcements": NOWHERE}
    async with discord_world(app) as w:
        logged = [f for f in w.failures if NOWHERE in f]
        assert len(logged) == 1, w.failures
        assert "the course file's `announcements` channel" in logged[0]
        assert "check the id, or invite the bot" in logged[0]
        w.failures.clear()
        assert "announcements" not in await bound_channels(app)
        # What `announce` posts (to the course file's value): refused, naming the key.
        r = await app.core.handle_text(from_dm(w, "gedas"), "announce Class is moved to SN011.")
        assert not r.is_error, r.text
        async with app.db.session() as s:
            row = await s.scalar(select(OutboxMessage).where(OutboxMessage.channel == NOWHERE))
        assert row is not None and row.status == FAILED
        assert f"the course channel `announcements` (channel {NOWHERE})" in (row.last_error or "")
        assert posts(w.announcements) == []
        cid = await course_id(app)
        with pytest.raises(OutboxError, match="`announcements` is not bound"):
            await w.bot.outbox.post(cid, "announcements", Reply(text="Class is moved."))


async def cli(app: App, *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``coursebot`` on the test's database."""
    return await asyncio.to_thread(
        coursebot,
        *args,
        database_url=app.settings.database_url,
        data_dir=app.settings.data_dir,
    )


async def test_course_channel_binds_by_hand_and_the_poll_goes_there(app: App) -> None:
    second: list[ChannelHandle] = []

    def another_battles(w: World) -> None:
        second.append(w.guild.create_text_channel("battles"))

    async with discord_world(app, prepare=another_battles) as w:
        w.failures.clear()  # two #battles: logged (the test above)
        chosen = second[0]
        out = _ok(
            await cli(app, "course", "channel", "comp790-23f", "discord", "battles", str(chosen.id))
        )
        assert f"its `battles` channel on discord {GUILD_ID} is channel {chosen.id}" in out
        assert (await bound_channels(app))["battles"] == {"id": str(chosen.id), "from": BY_HAND}

        await publish_groups(app, QUIET_GROUPS)
        r = await app.core.handle_text(from_dm(w, "gedas"), "battle open 1")
        assert not r.is_error, r.text
        (row,) = await poll_rows(app)
        assert row.status == SENT and (row.ref or "").startswith(f"{chosen.id}:")
        assert posts(chosen) and posts(w.channels["battles"]) == []

        # A channel event binds again: the key bound by hand stays so.
        w.guild.create_text_channel("lounge")
        await w.env.settle()
        assert (await bound_channels(app))["battles"] == {"id": str(chosen.id), "from": BY_HAND}
        assert not w.failures  # the ambiguity was settled by hand: not logged again


def test_bad_course_channel_input_is_refused_and_changes_nothing(sample: Workdir) -> None:  # noqa: F811
    guild = str(GUILD_ID)
    out = _ok(
        sample(
            "course", "bind", "comp790-23f", "discord", guild,
            "--channel", "battles=1180000000000000002",
            "--channel", "general=1180000000000000003",
        )
    )  # fmt: skip
    assert "Its `battles` channel is discord channel 1180000000000000002." in out
    before = sample.dump()
    assert any("1180000000000000002" in line and BY_HAND in line for line in before)
    cases = [
        (("course", "channel", "nosuch", "discord", "battles", "1180000000000000004"),
         ["No course 'nosuch' in the database", "coursebot course list"]),
        (("course", "channel", "comp790-23f", "discord", "battles", "12ab"),
         ["`12ab` is not a discord channel id", "15 to 21 digits", "Copy Channel ID"]),
        (("course", "channel", "comp790-23f", "discord", "polls", "1180000000000000004"),
         ["Course comp790-23f has no channel `polls`", "`battles`"]),
        (("course", "channel", "comp790-23f", "slack", "battles", "C0123ABCD"),
         ["Course comp790-23f is not bound to slack", "coursebot course bind comp790-23f slack"]),
        (("course", "channel", "comp790-23f", "terminal", "battles", "general"),
         ["The terminal has no channel ids"]),
        (("course", "channel", "comp790-23f", "mastodon", "battles", "1180000000000000004"),
         ["Unknown platform 'mastodon'"]),
        (("course", "bind", "comp790-23f", "discord", guild, "--channel", "battles"),
         ["`--channel battles` is not KEY=CHANNEL_ID"]),
        (("course", "bind", "comp790-23f", "discord", guild, "--channel", "battles=C0123ABCD"),
         ["`C0123ABCD` is not a discord channel id"]),
    ]  # fmt: skip
    for args, expected in cases:
        result = sample(*args)
        assert result.returncode != 0, (args, result.stdout)
        assert "Traceback" not in result.stderr, result.stderr
        for words in expected:
            assert words in result.stderr, (args, words, result.stderr)
    assert sample.dump() == before
