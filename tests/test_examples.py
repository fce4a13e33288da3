"""Every documented example runs: each command's ``examples=`` and every command line
the README and the manual in ``docs/`` show (code blocks, with or without the shell's
prompt, and inline code) go through the core against the sample course, as the
instructor or a student as the command's access requires. A friendly refusal is fine (an
example may need state it does not have, e.g. an open poll); an unexpected-error id or a
usage error (the example itself is wrong) fails. Every ``coursebot`` command line they
show is parsed by the real command line (a wrong option or a missing command fails),
and docs/commands.md is what ``coursebot docs commands`` writes now."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from commands import load_registry
from commands.errors import UsageError
from commands.parsing import split_line
from commands.registry import Access, Command
from commands.replies import Reply, render_text
from tests.test_core import req

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
#: The manual whose command lines are run (the README's, then each guide's).
DOCS = [
    README,
    *(
        ROOT / "docs" / name
        for name in (
            "instructor.md",
            "student.md",
            "your-course.md",
            "troubleshooting.md",
            "deploy.md",
            "backup.md",
            "commands.md",
        )
    ),
]
#: Words in a reply that mean the line itself was not understood.
USAGE_SIGNS = ("Usage: `", "is not a parameter", "has no option", "got more than it takes")
#: The terminal shell's prompt before a line in a transcript (``alice@#general> ``).
PROMPT = re.compile(r"^[a-z0-9_.-]+@(#[\w-]+|dm)> ")


def speaker(cmd: Command) -> str:
    """Who runs the example: the instructor for staff commands, else a student."""
    return "gedas" if cmd.access >= Access.STAFF else "alice"


def declared_examples() -> list[tuple[Command, str]]:
    reg = load_registry()
    return [(cmd, line) for cmd in reg for line in cmd.examples]


def _candidates(path: Path) -> list[str]:
    """Lines of fenced code blocks (less a shell prompt) and inline code spans."""
    text = path.read_text(encoding="utf-8")
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, re.S)
    lines = [PROMPT.sub("", line.strip()) for block in blocks for line in block.splitlines()]
    return lines + re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))


def doc_lines(paths: list[Path] = DOCS) -> list[str]:
    """Chat command lines in the README and the manual: those that start with a declared
    command (placeholders like `<n>` and `…` are skipped)."""
    reg = load_registry()
    found: list[str] = []
    for line in (c for path in paths for c in _candidates(path)):
        if not line or not line[0].islower() or re.search(r"[<>\[\]|…]|\.\.\.", line):
            continue
        try:
            cmd, rest = reg.match(split_line(line))
        except UsageError:
            continue
        if line.split()[0] != cmd.path[0] or (not rest and _needs_options(cmd)):
            continue  # prose naming a command ("`rank standard` opens a form")
        if rest and not cmd.specs and " ".join(line.split()[:2]) in cli_names():
            continue  # a `coursebot` command named in prose (`course list`), not chat
        if line not in found:
            found.append(line)
    return found


def readme_lines() -> list[str]:
    return doc_lines([README])


#: `coursebot` subcommands the manual may name before their engineer lands them.
PENDING: set[str] = set()


def cli_lines(paths: list[Path] = DOCS) -> list[list[str]]:
    """`coursebot …` command lines in the README and the manual, as argument lists: the
    optional parts of a reference line (`[--seed N]`) dropped, `a|b` read as `a`."""
    found: list[list[str]] = []
    for raw in (c for path in paths for c in _candidates(path)):
        line = raw.removeprefix("$ ").split("  #")[0].strip()
        match = re.match(r"^(\.venv/bin/)?coursebot (.*)$", line)
        if match is None or re.search(r" — |\.\.\.|…|COMMAND", line):
            continue
        explicit, rest = match.groups()
        if not explicit and rest.split()[0] not in cli_names():
            continue  # prose or a message ("coursebot cannot start: …")
        while re.search(r"\[[^\[\]]*\]", rest):
            rest = re.sub(r"\s*\[[^\[\]]*\]", "", rest)
        words = [w.split("|")[0] for w in shlex.split(rest)]
        if words and words not in found:
            found.append(words)
    return found


def cli_names() -> set[str]:
    """The `coursebot` command's subcommands, one and two words (`course`, `course list`)."""
    import typer.main

    from bot.cli import app

    top = typer.main.get_command(app)
    names = set()
    for name, sub in top.commands.items():  # type: ignore[attr-defined]
        names.add(name)
        names.update(f"{name} {s}" for s in getattr(sub, "commands", {}))
    return names


def parse_cli(args: list[str]) -> str:
    """Parse a `coursebot` line with the real command line (nothing runs); its name."""
    import typer.main

    from bot.cli import app

    cmd = typer.main.get_command(app)
    ctx = cmd.make_context("coursebot", list(args))
    names = []
    while hasattr(cmd, "resolve_command"):
        name, sub, rest = cmd.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        assert sub is not None, args
        names.append(name)
        cmd, ctx = sub, sub.make_context(name, rest, parent=ctx)
    return " ".join(n for n in names if n)


def _needs_options(cmd: Command) -> bool:
    return any(s.required for s in cmd.specs)


def problem(line: str, reply: Reply) -> str | None:
    if reply.error_id is not None:
        return f"{line!r} → unexpected error {reply.error_id}"
    text = render_text(reply)
    if reply.is_error and any(sign in text for sign in USAGE_SIGNS):
        return f"{line!r} → {text}"
    return None


def test_there_are_examples_to_run() -> None:
    assert len(declared_examples()) > 50
    lines = doc_lines()
    assert 'gpu run conv2d grid="1 2; 3 4" kernel="0 0; 0 1"' in lines
    assert "rank standard 5 6 7 8 13 14 15" in readme_lines()  # the tour, less its prompt
    assert len(lines) > 100
    assert len(cli_lines()) > 30


async def test_every_declared_example_runs(app) -> None:  # type: ignore[no-untyped-def]
    problems = []
    for cmd, line in declared_examples():
        reply = await app.core.handle_text(req(speaker(cmd)), line)
        if (bad := problem(line, reply)) is not None:
            problems.append(bad)
    assert not problems, "\n".join(problems)


async def test_every_command_line_of_the_manual_runs(app) -> None:  # type: ignore[no-untyped-def]
    reg = app.core.registry
    problems = []
    for line in doc_lines():
        cmd, _ = reg.match(split_line(line))
        reply = await app.core.handle_text(req(speaker(cmd)), line)
        if (bad := problem(line, reply)) is not None:
            problems.append(bad)
    assert not problems, "\n".join(problems)


def test_every_coursebot_line_of_the_manual_parses() -> None:
    problems = []
    for args in cli_lines():
        try:
            parse_cli(args)
        except Exception as exc:
            if " ".join(args[:2]) in PENDING:
                continue
            if type(exc).__name__ == "MissingParameter" and all(a.isalpha() for a in args):
                continue  # prose naming a command: "`coursebot backup restore` puts back…"
            problems.append(f"coursebot {' '.join(args)} → {exc}")
    assert not problems, "\n".join(problems)


def test_commands_md_is_up_to_date() -> None:
    from bot.cli import commands_markdown

    path = ROOT / "docs" / "commands.md"
    assert path.read_text(encoding="utf-8") == commands_markdown(), (
        "docs/commands.md is out of date: run `make docs` "
        "(.venv/bin/coursebot docs commands -o docs/commands.md)"
    )


@pytest.mark.parametrize(
    "line",
    [
        'gpu run conv2d grid="1 2; 3 4" kernel="0 0; 0 1"',
        "battle vote 1 A this paper wins because its ablations are far more convincing",
    ],
)
async def test_issue_18_lines_are_understood(app, line: str) -> None:  # type: ignore[no-untyped-def]
    reply = await app.core.handle_text(req("alice"), line)
    assert problem(line, reply) is None, render_text(reply)
