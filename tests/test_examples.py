"""Every documented example runs: each command's ``examples=`` and every command line
the README shows (code blocks and inline code) go through the core against the sample
course, as the instructor or a student as the command's access requires. A friendly
refusal is fine (an example may need state it does not have, e.g. an open poll); an
unexpected-error id or a usage error (the example itself is wrong) fails."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from commands import load_registry
from commands.errors import UsageError
from commands.parsing import split_line
from commands.registry import Access, Command
from commands.replies import Reply, render_text
from tests.test_core import req

README = Path(__file__).resolve().parent.parent / "README.md"
#: Words in a reply that mean the line itself was not understood.
USAGE_SIGNS = ("Usage: `", "is not a parameter", "has no option", "got more than it takes")


def speaker(cmd: Command) -> str:
    """Who runs the example: the instructor for staff commands, else a student."""
    return "gedas" if cmd.access >= Access.STAFF else "alice"


def declared_examples() -> list[tuple[Command, str]]:
    reg = load_registry()
    return [(cmd, line) for cmd in reg for line in cmd.examples]


def readme_lines() -> list[str]:
    """Command lines in the README: lines of fenced code blocks and inline code spans
    that start with a declared command (placeholders like `<n>` and `…` are skipped)."""
    reg = load_registry()
    text = README.read_text()
    found: list[str] = []
    blocks = re.findall(r"```[^\n]*\n(.*?)```", text, re.S)
    candidates = [line.strip() for block in blocks for line in block.splitlines()]
    candidates += re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    for line in candidates:
        if not line or not line[0].islower() or re.search(r"[<>\[\]|…]|\.\.\.", line):
            continue
        try:
            cmd, rest = reg.match(split_line(line))
        except UsageError:
            continue
        if line.split()[0] != cmd.path[0] or (not rest and _needs_options(cmd)):
            continue  # prose naming a command ("`rank standard` opens a form")
        if line not in found:
            found.append(line)
    return found


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
    lines = readme_lines()
    assert 'gpu run conv2d grid="1 2; 3 4" kernel="0 0; 0 1"' in lines


async def test_every_declared_example_runs(app) -> None:  # type: ignore[no-untyped-def]
    problems = []
    for cmd, line in declared_examples():
        reply = await app.core.handle_text(req(speaker(cmd)), line)
        if (bad := problem(line, reply)) is not None:
            problems.append(bad)
    assert not problems, "\n".join(problems)


async def test_every_readme_command_line_runs(app) -> None:  # type: ignore[no-untyped-def]
    reg = app.core.registry
    problems = []
    for line in readme_lines():
        cmd, _ = reg.match(split_line(line))
        reply = await app.core.handle_text(req(speaker(cmd)), line)
        if (bad := problem(line, reply)) is not None:
            problems.append(bad)
    assert not problems, "\n".join(problems)


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
