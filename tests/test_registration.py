"""Registration that cannot be stolen (issue #15): proof by the platform's email, by a
mailed one-time code (against a real local SMTP server) or by staff approval; staff
entries never claimed; TA limits; resets that tell the previous holder; the audit log;
and every bad input refused with nothing linked. Both databases."""

from __future__ import annotations

import asyncio
import email
import re
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from bot.app import App, start_app
from bot.settings import Settings, SmtpSettings
from commands.context import Caller, Context, Request, Where
from commands.coursefile import parse_canvas_roster
from commands.mail import MailConfig
from commands.people import find_person
from commands.replies import Reply, render_text
from db.models import (
    AuditEntry,
    Course,
    CourseBinding,
    Identity,
    Person,
    Platform,
    RegistrationCode,
)

SLACK_TEAM, GUILD = "T1", "G1"
WORKSPACE = {Platform.TERMINAL: "default", Platform.SLACK: SLACK_TEAM, Platform.DISCORD: GUILD}


def req(platform: Platform, user: str, email: str | None = None) -> Request:
    return Request(
        platform=platform,
        workspace=WORKSPACE[platform],
        caller=Caller(platform, user, user, email),
        where=Where(channel="general"),
    )


def term(user: str) -> Request:
    return req(Platform.TERMINAL, user)


async def say(app: App, request: Request, line: str) -> Reply:
    return await app.core.handle_text(request, line)


async def bind(app: App) -> None:
    """Bind the sample course to a Slack team and a Discord guild as well."""
    async with app.db.transaction() as s:
        course = await s.scalar(select(Course))
        assert course is not None
        for platform in (Platform.SLACK, Platform.DISCORD):
            s.add(
                CourseBinding(
                    course_id=course.id, platform=platform, external_id=WORKSPACE[platform]
                )
            )


async def links(app: App) -> set[tuple[str, str, str]]:
    async with app.db.session() as s:
        rows = await s.execute(
            select(Identity.platform, Identity.user_id, Person.email).join(Person)
        )
        return {(p.value, u, e) for p, u, e in rows}


async def audit_kinds(app: App) -> list[tuple[str, str, str | None]]:
    async with app.db.session() as s:
        rows = await s.execute(
            select(AuditEntry.kind, AuditEntry.subject, AuditEntry.reason).order_by(AuditEntry.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


@pytest.fixture
def dms(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Every DM queued to a chat account: (platform, user id, text)."""
    sent: list[tuple[str, str, str]] = []
    original = Context.dm_account

    def record(
        self: Context, platform: Platform, user_id: str, reply: Reply, **kw: str | None
    ) -> None:
        sent.append((platform.value, user_id, reply.text))
        original(self, platform, user_id, reply, **kw)

    monkeypatch.setattr(Context, "dm_account", record)
    return sent


# ----------------------------------------------------------------------------- SMTP


class Inbox:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []
        self.rcpt: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.rcpt.append(list(envelope.rcpt_tos))
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"

    def code(self, index: int = -1) -> str:
        msg = self.messages[index]
        body = msg.get_payload(decode=True).decode()  # type: ignore[union-attr]
        found = re.search(r"^[ \t]+(\d{6})\s*$", body, re.M)
        assert found, body
        return found.group(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


@pytest.fixture
def mailing(app: App, smtp: tuple[Inbox, int]) -> Inbox:
    """The app in mailed-code mode, sending to the local SMTP server."""
    inbox, port = smtp
    app.core.config["mail"] = MailConfig(
        host="127.0.0.1", port=port, tls="none", sender="COMP 790 bot <bot@course.test>"
    )
    return inbox


# ------------------------------------------------------------------- nobody steals


async def test_strangers_on_slack_claim_nobody(app: App) -> None:
    """Slack vouches for the profile email: a stranger's does not match any entry, and a
    staff member's own verified email still does not let them claim a staff entry."""
    await bind(app)
    before = await links(app)
    stranger = req(Platform.SLACK, "USTRANGER", "stranger@example.edu")
    for target in ("alice.chen@unc.edu", "maya.johnson@unc.edu", "gedas@cs.unc.edu"):
        r = await say(app, stranger, f"register {target}")
        assert r.is_error and r.ephemeral, r.text
        assert f"Your Slack profile email is stranger@example.edu, not {target}" in r.text
    r = await say(app, stranger, "register")
    assert r.is_error and "stranger@example.edu is not on the roster" in r.text
    r = await say(app, stranger, "register 123456")  # no codes where Slack vouches
    assert r.is_error and "not on the roster" in r.text

    # The instructor's and the TA's verified emails: staff entries are never self-claimed.
    for who, mail in (("UGEDAS", "gedas@cs.unc.edu"), ("UMAYA", "MAYA.Johnson@unc.edu")):
        r = await say(app, req(Platform.SLACK, who, mail), "register")
        assert r.is_error and "staff accounts are linked by an instructor" in r.text
        assert "coursebot people link" in r.text
    assert await links(app) == before

    # A student's verified email links at once, no argument needed; the audit says how.
    r = await say(app, req(Platform.SLACK, "UALICE", "Alice.Chen@unc.edu"), "register")
    assert not r.is_error and "Welcome, Alice Chen!" in r.text
    assert await links(app) == before | {("slack", "UALICE", "alice.chen@unc.edu")}
    assert ("register.email", "Alice Chen", None) in await audit_kinds(app)
    # Twice: told, nothing changes; another verified account for her: refused.
    r = await say(app, req(Platform.SLACK, "UALICE", "alice.chen@unc.edu"), "register")
    assert not r.is_error and "already registered as Alice Chen" in r.text
    r = await say(app, req(Platform.SLACK, "UALICE2", "alice.chen@unc.edu"), "register")
    assert r.is_error and "already linked to another Slack account" in r.text
    assert await links(app) == before | {("slack", "UALICE", "alice.chen@unc.edu")}


async def test_an_alias_on_the_roster_entry_is_accepted(app: App) -> None:
    await bind(app)
    async with app.db.transaction() as s:
        zoe = await s.scalar(select(Person).where(Person.email == "zoe.williams@unc.edu"))
        assert zoe is not None
        zoe.email_aliases = ["zoe.w@gmail.com"]
    r = await say(app, req(Platform.SLACK, "UZOE", "Zoe.W@gmail.com"), "register")
    assert "Welcome, Zoe Williams!" in r.text
    r = await say(app, req(Platform.SLACK, "UZOE", "zoe.w@gmail.com"), "whoami")
    assert "Zoe Williams" in r.sections[0].fields[0][1]


async def test_discord_and_terminal_strangers_get_nothing_without_proof(app: App) -> None:
    """No verified email and no mail server: a claim is only a request, staff entries
    cannot even be requested, and a linked entry says so."""
    await bind(app)
    before = await links(app)
    for platform, user in ((Platform.DISCORD, "666"), (Platform.TERMINAL, "mallory")):
        stranger = req(platform, user)
        r = await say(app, stranger, "register")
        assert not r.is_error and "confirms who you are" in r.text
        assert "register <your email>" in r.text
        for staff in ("gedas@cs.unc.edu", "maya.johnson@unc.edu"):
            r = await say(app, stranger, f"register {staff}")
            assert r.is_error and "staff accounts are linked by an instructor" in r.text
        r = await say(app, stranger, "register zoe.williams@unc.edu")
        assert not r.is_error and "waiting for a TA or instructor" in r.text
        r = await say(app, stranger, "whoami")
        assert "not linked" in r.text
    # Alice is linked on the terminal: nobody else can even ask for her there.
    r = await say(app, term("mallory2"), "register alice.chen@unc.edu")
    assert r.is_error and "already linked to another terminal account" in r.text
    assert await links(app) == before


# ------------------------------------------------------------------------ mailed code


async def test_mailed_code_links_the_account_that_asked(app: App, mailing: Inbox) -> None:
    await bind(app)
    zoe = req(Platform.DISCORD, "4242")
    r = await say(app, zoe, "register")
    # The mailed-code mode (not approval): the answer names the code and the mail.
    assert "one-time code" in r.text and "mailed to the roster address" in r.text
    assert "confirms who you are" not in r.text
    r = await say(app, zoe, "register Zoe.Williams@unc.edu")
    assert not r.is_error and "We mailed a 6-digit code to z•••••••••••@unc.edu" in r.text
    assert mailing.rcpt == [["zoe.williams@unc.edu"]]
    msg = mailing.messages[0]
    assert msg["From"] == "COMP 790 bot <bot@course.test>"
    code = mailing.code()
    assert code in msg["Subject"]
    async with app.db.session() as s:
        row = await s.scalar(select(RegistrationCode))
        assert row is not None and code not in row.code_hash  # only a salted hash
    before = await links(app)

    # Someone else's code: a stranger who asked too cannot use the code mailed for Zoe.
    mallory = req(Platform.DISCORD, "666")
    r = await say(app, mallory, f"register {code}")
    assert r.is_error and "No code is waiting for this Discord account" in r.text
    r = await say(app, mallory, "register zoe.williams@unc.edu")
    assert not r.is_error and len(mailing.messages) == 2
    r = await say(app, mallory, f"register code {code}")
    if code != mailing.code():  # (one chance in a million that both codes are equal)
        assert r.is_error and "That code is not right; nothing was linked. 4 tries left" in r.text
    assert await links(app) == before

    # The right code, from the account that asked (quoted with a space, and the email).
    r = await say(app, zoe, f'register zoe.williams@unc.edu "{code[:3]} {code[3:]}"')
    assert not r.is_error and "Welcome, Zoe Williams!" in r.text, r.text
    assert await links(app) == before | {("discord", "4242", "zoe.williams@unc.edu")}
    assert ("register.code", "Zoe Williams", None) in await audit_kinds(app)

    # A code works once: after staff reset the link, the same code is refused.
    r = await say(app, term("gedas"), "register unlink zoe discord")
    assert not r.is_error
    r = await say(app, zoe, f"register {code}")
    assert r.is_error and "already used" in r.text
    assert await links(app) == before


async def test_code_mistakes_expiry_and_lockout(app: App, mailing: Inbox) -> None:
    await bind(app)
    before = await links(app)
    zoe = req(Platform.TERMINAL, "zoe")

    r = await say(app, zoe, "register 123456")
    assert r.is_error and "No code is waiting" in r.text and "register <your email>" in r.text
    r = await say(app, zoe, "register 12345")
    assert r.is_error and "is not a registration code" in r.text
    r = await say(app, zoe, "register nobody@unc.edu")
    assert r.is_error and "No one with the email nobody@unc.edu is on the roster" in r.text
    assert mailing.messages == []

    await say(app, zoe, "register zoe.williams@unc.edu")
    r = await say(app, zoe, "register zoe.williams@unc.edu")  # at once again: not re-sent
    assert r.is_error and "was mailed now" in render_text(r) and len(mailing.messages) == 1
    r = await say(app, zoe, f"register alice.chen@unc.edu {mailing.code()}")
    assert r.is_error and "mailed for another address" in r.text

    # Expired after 15 minutes; a new one can be asked for.
    app.clock.advance(timedelta(minutes=16))  # type: ignore[attr-defined]
    r = await say(app, zoe, f"register {mailing.code()}")
    assert r.is_error and "That code has expired" in r.text
    await say(app, zoe, "register zoe.williams@unc.edu")
    code = mailing.code()
    wrong = f"{(int(code) + 1) % 10**6:06d}"

    # Five wrong tries lock the account out for 30 minutes, the right code included.
    for left in (4, 3, 2, 1):
        r = await say(app, zoe, f"register {wrong}")
        assert r.is_error and f"{left} {'try' if left == 1 else 'tries'} left" in r.text
    r = await say(app, zoe, f"register {wrong}")
    assert r.is_error and "Too many wrong codes" in r.text
    assert "locked until Fri Aug 25, 2023, 10:46 AM EDT (in 30 minutes)" in render_text(r)
    for line in (f"register {code}", "register zoe.williams@unc.edu"):
        r = await say(app, zoe, line)
        assert r.is_error and "locked until" in r.text
    assert await links(app) == before
    assert len(mailing.messages) == 2

    # After the lock: a fresh code works.
    app.clock.advance(timedelta(minutes=31))  # type: ignore[attr-defined]
    r = await say(app, zoe, "register zoe.williams@unc.edu")
    assert not r.is_error
    r = await say(app, zoe, f"register {mailing.code()}")
    assert "Welcome, Zoe Williams!" in r.text
    r = await say(app, zoe, "register zoe.williams@unc.edu")  # registering twice
    assert not r.is_error and "already registered as Zoe Williams" in r.text
    assert await links(app) == before | {("terminal", "zoe", "zoe.williams@unc.edu")}


async def test_a_mail_server_that_fails_changes_nothing(app: App, smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp  # it offers no STARTTLS, so a starttls deployment cannot send
    app.core.config["mail"] = MailConfig(host="127.0.0.1", port=port, sender="bot@course.test")
    r = await say(app, term("zoe"), "register zoe.williams@unc.edu")
    assert r.is_error and "could not be sent just now, so nothing was changed" in r.text
    async with app.db.session() as s:
        assert await s.scalar(select(RegistrationCode)) is None
    assert inbox.messages == []


async def test_smtp_settings_reach_the_core(settings: Settings, clock: Any) -> None:
    settings.smtp = SmtpSettings(
        host="mail.example.edu",
        port=465,
        tls="tls",
        username="bot",
        password="s3cret",  # type: ignore[arg-type]
        sender="bot@example.edu",
        _env_file=None,  # type: ignore[call-arg]
    )
    app = await start_app(settings, clock=clock)
    try:
        mail = app.core.config["mail"]
        assert isinstance(mail, MailConfig) and mail.port == 465 and mail.tls == "tls"
        assert mail.password == "s3cret" and "s3cret" not in repr(mail)
    finally:
        await app.close()
    with pytest.raises(ValueError, match="SMTP_SENDER"):
        SmtpSettings(host="mail.example.edu", _env_file=None)  # type: ignore[call-arg]


# ----------------------------------------------------------------------- staff approve


async def test_staff_approve_and_deny_requests(app: App, dms: list[tuple[str, str, str]]) -> None:
    await bind(app)
    before = await links(app)
    zoe, mallory = req(Platform.DISCORD, "4242"), req(Platform.DISCORD, "666")
    assert not (await say(app, zoe, "register zoe.williams@unc.edu")).is_error
    r = await say(app, zoe, "register zoe.williams@unc.edu")
    assert r.is_error and "already waiting for staff" in r.text
    assert not (await say(app, mallory, "register zoe.williams@unc.edu")).is_error
    assert not (await say(app, term("ibrahim?"), "register ibrahim.diallo@unc.edu")).is_error

    r = await say(app, term("alice"), "register pending")
    assert r.is_error and "only for TAs and instructors" in r.text
    r = await say(app, term("alice"), "register approve zoe")
    assert r.is_error and "only for TAs and instructors" in r.text
    r = await say(app, term("maya"), "register pending")
    assert "3 waiting" in r.text and len(r.tables[0].rows) == 3
    assert [b.label for b in r.buttons][:2] == ["Approve Zoe", "Deny Zoe"]
    r = await say(app, term("maya"), "register approve zoe")
    assert r.is_error and "2 accounts ask to be Zoe Williams" in r.text
    assert await links(app) == before and dms == []

    # The TA presses Approve on Zoe's real account: linked; Zoe is told, Mallory denied.
    pending = await say(app, term("maya"), "register pending")
    approve = pending.buttons[0].custom_id
    r = await app.core.handle_action(term("maya"), approve)
    assert not r.is_error and "Approved: discord `4242`" in r.text
    assert "1 other request for Zoe Williams was denied" in r.text
    assert await links(app) == before | {("discord", "4242", "zoe.williams@unc.edu")}
    assert dms[0][:2] == ("discord", "4242") and "Welcome, Zoe Williams!" in dms[0][2]
    assert dms[1][:2] == ("discord", "666") and "not approved" in dms[1][2]
    r = await app.core.handle_action(term("maya"), approve)  # a stale button
    assert r.is_error and "already approved by Maya Johnson" in r.text

    r = await say(app, term("gedas"), 'register deny ibrahim "not Ibrahim\'s handle"')
    assert not r.is_error and "Denied" in r.text
    assert dms[-1][:2] == ("terminal", "ibrahim?")
    assert "not approved by Gedas Bertasius (not Ibrahim's handle)" in dms[-1][2]
    r = await say(app, term("gedas"), "register deny ibrahim")
    assert r.is_error and "No registration request from Ibrahim Diallo is waiting" in r.text
    assert (await say(app, term("maya"), "register pending")).text.startswith("No registration")
    kinds = await audit_kinds(app)
    assert [k for k, _, _ in kinds] == ["register.approve", "register.deny", "register.deny"]
    assert kinds[-1] == ("register.deny", "Ibrahim Diallo", "not Ibrahim's handle")


async def test_a_request_posts_to_the_staff_channel_when_there_is_one(app: App) -> None:
    async with app.db.transaction() as s:
        course = await s.scalar(select(Course))
        assert course is not None
        course.channels = {**course.channels, "staff": "staff-room"}
    posted: list[Any] = []
    original = Context.post

    def record(self: Context, key: str, reply: Reply) -> None:
        posted.append((key, reply))
        original(self, key, reply)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Context, "post", record)
        await say(app, term("zoe"), "register zoe.williams@unc.edu")
    ((key, reply),) = posted
    assert key == "staff" and "asks to be linked to Zoe Williams" in reply.text
    assert [b.action for b in reply.buttons] == ["register.approve", "register.deny"]


# ------------------------------------------------------------------------- staff links


async def test_ta_links_students_only_and_never_upward(
    app: App, dms: list[tuple[str, str, str]]
) -> None:
    before = await links(app)
    maya = term("maya")
    refused = {
        "register link gedas newgedas": "Only an instructor can link or unlink Gedas Bertasius",
        "register unlink gedas": "Only an instructor can link or unlink Gedas Bertasius",
        "register link maya.johnson@unc.edu maya2": "Maya Johnson is a TA",
        "register link alice gedas": "Only an instructor can link or unlink Gedas Bertasius",
        "register link alice maya": "Only an instructor can link or unlink Maya Johnson",
        "register unlink maya.johnson@unc.edu": "TAs manage students' links only",
    }
    for line, expected in refused.items():
        r = await say(app, maya, line)
        assert r.is_error and r.ephemeral and expected in r.text, (line, r.text)
    r = await say(app, term("alice"), "register link bob alice")
    assert r.is_error and "only for TAs and instructors" in r.text
    assert await links(app) == before and dms == []

    r = await say(app, maya, "register link zoe zoe-term")
    assert not r.is_error and "Linked terminal account `zoe-term` to Zoe Williams" in r.text
    r = await say(app, term("gedas"), "register link maya.johnson@unc.edu maya-discord discord")
    assert not r.is_error
    assert await links(app) == before | {
        ("terminal", "zoe-term", "zoe.williams@unc.edu"),
        ("discord", "maya-discord", "maya.johnson@unc.edu"),
    }
    assert [k for k, _, _ in await audit_kinds(app)] == ["people.link", "people.link"]


async def test_a_reset_tells_the_previous_holder(app: App, dms: list[tuple[str, str, str]]) -> None:
    """Mallory's request for Ibrahim was approved by mistake: the instructor removes the
    link (Mallory is told, truthfully) and links Ibrahim's real account."""
    await say(app, term("mallory"), "register ibrahim.diallo@unc.edu")
    await say(app, term("maya"), "register approve ibrahim")
    assert ("terminal", "mallory", "ibrahim.diallo@unc.edu") in await links(app)
    dms.clear()

    r = await say(app, term("gedas"), 'register unlink ibrahim reason="not Ibrahim"')
    assert not r.is_error and "Unlinked Ibrahim Diallo (terminal: mallory)" in r.text
    ((platform, user, text),) = dms
    assert (platform, user) == ("terminal", "mallory")
    assert text.startswith("Your terminal account is no longer linked to Ibrahim Diallo in ")
    assert "Gedas Bertasius removed the link. Reason given: not Ibrahim" in text
    r = await say(app, term("mallory"), "whoami")
    assert "not linked" in r.text

    # Linking over an existing link tells the account that loses it.
    await say(app, term("maya"), "register link ibrahim mallory")
    dms.clear()
    r = await say(app, term("maya"), "register link ibrahim ibrahim")
    # The reply counts the delivery instead of claiming it (no platform runs here, so
    # the message still waits in the outbox, and the reply says so).
    said = render_text(r)
    assert "0 of 1 messages to the previous holder delivered; 1 not sent yet" in said
    assert "told" not in said
    assert dms[0][:2] == ("terminal", "mallory") and "Ibrahim Diallo" in dms[0][2]
    # Moving an account from one student to another tells that account too.
    dms.clear()
    r = await say(app, term("maya"), "register link bob ibrahim")
    assert [d[:2] for d in dms] == [("terminal", "ibrahim"), ("terminal", "bob")]
    assert "linked it to Bob Okafor instead" in dms[0][2]
    audit = await audit_kinds(app)
    assert ("people.unlink", "Ibrahim Diallo", "not Ibrahim") in audit


async def test_a_reset_reaches_the_old_account_in_the_shell(transcript: Any) -> None:
    t = transcript
    await t.say(":as mallory")
    await t.say("register zoe.williams@unc.edu")
    await t.say(":as gedas")
    await t.say("register approve zoe")
    out = await t.say('register unlink zoe reason="that was not Zoe"')
    assert "Unlinked Zoe Williams (terminal: mallory)" in out
    assert "DM to mallory" in out and "Reason given: that was not Zoe" in out


# --------------------------------------------------------------------------- privacy


async def test_ambiguous_names_never_show_emails(app: App) -> None:
    async with app.db.session() as s:
        course = await s.scalar(select(Course))
        assert course is not None
        with pytest.raises(Exception) as quiet:
            await find_person(s, course.id, "a")
        assert "matches several people; be more specific" in str(quiet.value)
        assert "@" not in str(quiet.value) and "Alice" not in str(quiet.value)
        with pytest.raises(Exception) as named:
            await find_person(s, course.id, "a", list_matches=True)
        assert "Alice Chen" in str(named.value) and "@" not in str(named.value)
    r = await say(app, term("gedas"), "register approve a")
    assert r.is_error and "matches several people:" in r.text and "@" not in r.text


# -------------------------------------------------------------------- command line


def test_the_command_line_links_the_first_instructor(tmp_path: Path) -> None:
    from tests.test_cli import SAMPLE, coursebot

    url = f"sqlite+aiosqlite:///{tmp_path / 'cb.db'}"
    run = {"database_url": url, "data_dir": tmp_path / "data"}
    assert coursebot("course", "import", SAMPLE, **run).returncode == 0
    out = coursebot("people", "link", "gedas@cs.unc.edu", "discord", "1234", **run)
    assert out.returncode == 0, out.stderr
    assert "Linked discord account 1234 to Gedas Bertasius (instructor)." in out.stdout
    out = coursebot("people", "link", "gedas", "discord", "5678", "--reason", "new account", **run)
    assert "discord account 1234 lost its link to Gedas Bertasius" in out.stdout
    out = coursebot("people", "unlink", "gedas", "fax", **run)
    assert out.returncode == 1 and "Unknown platform 'fax'" in out.stderr
    out = coursebot("people", "unlink", "gedas", "discord", **run)
    assert out.returncode == 0 and "Unlinked Gedas Bertasius (discord:5678)." in out.stdout

    import sqlite3

    with sqlite3.connect(tmp_path / "cb.db") as db:
        kinds = db.execute("select kind, actor, reason from audit_log order by id").fetchall()
        queued = db.execute("select channel from outbox order by id").fetchall()
    assert [k for k, _, _ in kinds] == ["people.link", "people.link", "people.unlink"]
    assert kinds[1][1] == "the course administrator (command line)"
    assert kinds[1][2] == "new account"
    assert queued == [("@discord:1234",), ("@discord:5678",)]  # the holders are told


def test_canvas_rosters_keep_the_login_address_as_an_alias() -> None:
    csv = (
        "Student,ID,SIS User ID,SIS Login ID,Section,Email\n"
        '"Chen, Alice",11,730418265,achen,001,alice.chen@unc.edu\n'
    )
    (alice,) = parse_canvas_roster(csv, email_domain="unc.edu")
    assert alice.email == "alice.chen@unc.edu" and alice.email_aliases == ["achen@unc.edu"]


async def test_concurrent_code_requests_store_one_row(app: App, mailing: Inbox) -> None:
    replies = await asyncio.gather(
        *(say(app, term("zoe"), "register zoe.williams@unc.edu") for _ in range(3))
    )
    assert sum(not r.is_error for r in replies) == 1, [r.text for r in replies]
    async with app.db.session() as s:
        assert len(list(await s.scalars(select(RegistrationCode)))) == 1
