"""Privacy scan: a student runs every command of the registry (its examples, and every
option that takes a person with other people's names, handles and an ambiguous letter)
and no reply, file, button or message the command sends shows another person's email.

The commands are found from the registry, not listed by hand: a new command, or a new
option that takes a person, is scanned without touching this file.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from commands.context import Attachment, Caller, Request, Where
from commands.errors import CourseBotError
from commands.outbox import reply_from_json
from commands.parsing import parse_tokens, split_line
from commands.registry import Command, OptionSpec, Registry
from commands.replies import Button, FileOut, Reply, Section, Table, render_text
from db.models import OutboxMessage, Person, Platform
from tests.helpers import running_battle

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
#: Words in an option's name or description that say it names a person.
PERSON_WORDS = ("person", "student", "who", "email", "onyen", "absent", "first", "second")
#: Ways a student may name someone else: a terminal handle, part of a name, an onyen-like
#: surname, a single letter that matches many people (an ambiguity), nobody at all.
OTHERS = ("bob", "Okafor", "carol martinez", "a", "e", "zz-nobody")
#: The student who runs everything.
ME = "alice"


def req(user: str, *files: Path) -> Request:
    return Request(
        Platform.TERMINAL,
        "default",
        Caller(Platform.TERMINAL, user, user),
        Where("general"),
        attachments=tuple(Attachment(f.name, path=f, size=f.stat().st_size) for f in files),
    )


# ----------------------------------------------------------------------------- the scanner


def reply_texts(reply: Reply) -> Iterable[str]:
    """Everything of a reply a reader can see: its text, sections, tables (as the
    terminal renders them), button labels, and the files' names and contents."""
    yield render_text(reply)
    for sec in reply.sections:  # render_text has these; fields again, unshortened
        yield from (f"{k} {v}" for k, v in sec.fields)
    for table in reply.tables:
        yield from (" ".join(map(str, row)) for row in table.rows)
    for button in reply.buttons:
        yield button.label
    for f in reply.files:
        yield f.name
        yield f.description or ""
        yield f.data.decode("utf-8", errors="replace")


def leaked(
    texts: Iterable[str], roster: dict[str, str], *, allowed: Iterable[str] = ()
) -> list[str]:
    """The roster emails (email → name) found in ``texts`` other than ``allowed`` (the
    reader's own, or those the reader typed in the command)."""
    ok = {a.lower() for a in allowed}
    blob = "\n".join(texts).lower()
    return sorted(e for e in roster if e.lower() not in ok and e.lower() in blob)


def typed_emails(line: str) -> set[str]:
    return {m.lower() for m in re.findall(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", line)}


ROSTER = {"bob.okafor@unc.edu": "Bob Okafor", "alice.chen@unc.edu": "Alice Chen"}


@pytest.mark.parametrize(
    "reply",
    [
        Reply(text="Ask bob.okafor@unc.edu"),
        Reply(sections=[Section("People", "", [("Bob", "Bob.Okafor@unc.edu")])]),
        Reply(tables=[Table(["Name", "Email"], [["Bob Okafor", "bob.okafor@unc.edu"]])]),
        Reply(files=[FileOut("people.csv", b"Bob Okafor,bob.okafor@unc.edu\n")]),
        Reply(buttons=[Button("Mail bob.okafor@unc.edu", "x")]),
    ],
)
def test_the_scanner_catches_a_leak_anywhere_in_a_reply(reply: Reply) -> None:
    assert leaked(reply_texts(reply), ROSTER, allowed={"alice.chen@unc.edu"}) == [
        "bob.okafor@unc.edu"
    ]


def test_the_scanner_allows_ones_own_email_and_what_was_typed() -> None:
    reply = Reply(text="You are alice.chen@unc.edu; bob.okafor@unc.edu is already linked.")
    allowed = {"alice.chen@unc.edu", *typed_emails("register bob.okafor@unc.edu")}
    assert leaked(reply_texts(reply), ROSTER, allowed=allowed) == []
    assert leaked(reply_texts(reply), ROSTER, allowed={"alice.chen@unc.edu"}) == [
        "bob.okafor@unc.edu"
    ]


# ----------------------------------------------------------------------------- what to run


def takes_a_person(spec: OptionSpec) -> bool:
    if spec.type is not str or spec.choices:
        return False
    words = f"{spec.name} {spec.description}".lower()
    return any(re.search(rf"\b{w}", words) for w in PERSON_WORDS)


def calls_find_person(cmd: Command) -> bool:
    """Whether the handler (or a helper of its module it calls) looks people up."""
    source = inspect.getsource(cmd.handler)
    if "find_person" in source:
        return True
    module = inspect.getmodule(cmd.handler)
    helpers = [
        name
        for name, fn in vars(module).items()
        if inspect.isfunction(fn)
        and fn.__module__ == module.__name__
        and fn is not cmd.handler
        and re.search(rf"\b{name}\(", source)
    ]
    return any("find_person" in inspect.getsource(vars(module)[h]) for h in helpers)


def filler(spec: OptionSpec) -> Any:
    """A plausible value for a required option no example gives."""
    if spec.choices:
        return [spec.choices[0]] if spec.many else spec.choices[0]
    value: Any = {int: 1, float: 1.0, bool: True}.get(spec.type, "x")
    return [value] if spec.many else value


def example_options(cmd: Command) -> list[dict[str, Any]]:
    """The options of each example (parsed as the terminal parses them), or fillers."""
    out = []
    for example in cmd.examples:
        tokens = split_line(example)[len(cmd.path) :]
        try:
            model = parse_tokens(cmd, tokens)
        except CourseBotError:
            continue
        out.append(model.model_dump(exclude_defaults=True))
    if not out:
        out.append({s.name: filler(s) for s in cmd.specs if s.required})
    return out


def variants(cmd: Command) -> list[dict[str, Any]]:
    """The examples, then each person option set to each way of naming someone else."""
    base = example_options(cmd)
    runs = list(base)
    people = [s for s in cmd.specs if takes_a_person(s)]
    for spec in people:
        for who in OTHERS:
            runs.append({**base[0], spec.name: [who, "bob.okafor@unc.edu"] if spec.many else who})
    return runs


@dataclass
class Scan:
    roster: dict[str, str]
    examples: tuple[str, ...] = ()
    runs: int = 0
    commands: set[str] = field(default_factory=set)
    leaks: list[tuple[str, str, list[str]]] = field(default_factory=list)
    #: Replies that named another student (so the scan looked at other people's data).
    named_others: int = 0

    def check(self, where: str, texts: list[str], allowed: set[str]) -> None:
        bare = []
        for text in texts:
            for example in self.examples:
                text = text.replace(example, "(example)")
            bare.append(text)
        found = leaked(bare, self.roster, allowed=allowed)
        if found:
            self.leaks.append((where, texts[0][:300], found))
        others = [n for e, n in self.roster.items() if e not in allowed]
        if any(n in t for t in texts for n in others):
            self.named_others += 1


async def run_everything(app, registry: Registry, user: str, tmp_path: Path) -> Scan:  # type: ignore[no-untyped-def]
    async with app.db.session() as s:
        people = list(await s.scalars(select(Person)))
    me = next(
        (p for p in people if p.email.startswith(f"{user}.")), None
    )  # alice → alice.chen@unc.edu
    # The commands' own examples (`register alice.chen@unc.edu` in a hint) are
    # documentation written with the sample roster, not data read from it.
    examples = tuple(e for c in registry for e in c.examples if "@" in e)
    scan = Scan({p.email.lower(): p.name for p in people}, examples=examples)
    mine = {me.email.lower()} if me else set()
    pdf = tmp_path / "critique.pdf"
    pdf.write_bytes(PDF)
    for cmd in registry:
        for options in variants(cmd):
            files = (pdf,) if cmd.attachment else ()
            reply = await app.core.handle(req(user, *files), cmd.name, options)
            scan.runs += 1
            scan.commands.add(cmd.name)
            line = f"{cmd.name} {options}"
            scan.check(line, list(reply_texts(reply)), mine | typed_emails(line))
            for button in reply.buttons:  # pages, "show more": what the student can press
                if button.form is None and button.action in registry.actions:
                    pressed = await app.core.handle_action(req(user), button.custom_id)
                    scan.runs += 1
                    scan.check(f"{line} → [{button.label}]", list(reply_texts(pressed)), mine)
    return scan


async def scan_outbox(app, scan: Scan, since: int, typed: set[str]) -> None:  # type: ignore[no-untyped-def]
    """What the student's commands made the bot send: a DM may show its reader's own
    email; a channel post shows nobody's (but what the student typed)."""
    async with app.db.session() as s:
        rows = list(await s.scalars(select(OutboxMessage).where(OutboxMessage.id > since)))
        emails = {p.id: p.email.lower() for p in await s.scalars(select(Person))}
    for row in rows:
        reader = {emails[row.person_id]} if row.person_id in emails else set()
        texts = list(reply_texts(reply_from_json(row.reply)))
        scan.check(f"outbox #{row.id} to {row.channel or row.person_id}", texts, reader | typed)


async def setup_course(app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Other people's data for the student to look for: an assignment, a project, a
    looking-for-group post, a critique, grades, a battle poll, a GPU job."""
    pdf = tmp_path / "bob.pdf"
    pdf.write_bytes(PDF)
    lines = [
        ("gedas", "assign"),
        ("gedas", "assign publish"),
        ("bob", "project create Robo"),
        ("carol", 'project lfg "video QA, long-form video"'),
        ("gedas", "grade set bob presentations 71"),
        ("bob", "gpu run conv2d"),
    ]
    for user, line in lines:
        reply = await app.core.handle_text(req(user), line)
        assert not reply.is_error, (line, reply.text)
    reply = await app.core.handle_text(req("maya"), f"battle open {await running_battle(app)}")
    assert not reply.is_error, reply.text
    reply = await app.core.handle(
        req("bob", pdf), "critique submit", {"paper": 5, "question": "Why?", "answer": "So."}
    )
    assert not reply.is_error, reply.text


async def test_no_student_sees_another_persons_email(app, tmp_path) -> None:  # type: ignore[no-untyped-def]
    registry = app.core.registry
    # The scan is systematic: every command that looks people up has an option it
    # recognises as naming a person, so the variants below reach the lookup.
    lookups = {c.name for c in registry if calls_find_person(c)}
    with_person = {c.name for c in registry if any(takes_a_person(s) for s in c.specs)}
    assert lookups and lookups <= with_person, lookups - with_person
    assert {"grades", "critique file", "assign swap", "rankings extend", "audit"} <= with_person

    await setup_course(app, tmp_path)
    async with app.db.session() as s:
        since = max(await s.scalars(select(OutboxMessage.id)), default=0)

    scan = await run_everything(app, registry, ME, tmp_path)
    await scan_outbox(app, scan, since, typed={"bob.okafor@unc.edu"})
    # Someone not yet registered (a stranger on the course's server) too.
    stranger = await run_everything(app, registry, "stranger", tmp_path)

    # It ran: every command, many times, and saw other students' data.
    assert scan.commands == {c.name for c in registry}
    assert scan.runs >= 2 * len(registry.commands), scan.runs
    assert scan.named_others >= 5, "no reply showed another student: the scan saw nothing"
    # NOTE: `find_person` (commands/people.py) used to answer an ambiguous name with
    # "Name (email), …"; it now lists names only (staff) and the "a" and "e" variants
    # above check that. A leak reported below with "matches several people" is fixed
    # there, not in the command that called it.
    assert scan.leaks == [], "\n".join(f"{w}: {found} in {text!r}" for w, text, found in scan.leaks)
    assert stranger.leaks == [], "\n".join(
        f"{w}: {found} in {text!r}" for w, text, found in stranger.leaks
    )
