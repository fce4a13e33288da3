"""The command-line grammar and the registry, independent of any database."""

from __future__ import annotations

import contextlib
from datetime import date
from typing import Annotated

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from commands import load_registry
from commands.errors import InvalidInput, UsageError
from commands.parsing import parse_tokens, split_line
from commands.registry import Access, Complete, Registry


class RankLike(BaseModel):
    kind: str = Field(description="standard or battle")
    papers: list[int] = Field(description="paper ids, best first")
    note: str | None = None
    strict: bool = False


class DateLike(BaseModel):
    on: date | None = None
    paper: int = Field(1, ge=1, json_schema_extra=None)


def _registry() -> Registry:
    reg = Registry()

    async def rank(ctx, opts: RankLike):  # type: ignore[no-untyped-def]
        raise AssertionError

    async def dated(ctx, opts: DateLike):  # type: ignore[no-untyped-def]
        raise AssertionError

    reg.command("rank submit", "rank papers", access=Access.MEMBER)(rank)
    reg.command("dated", "a date", access=Access.ANYONE)(dated)
    return reg


REG = _registry()


def parse(line: str) -> BaseModel:
    cmd, rest = REG.match(split_line(line))
    return parse_tokens(cmd, rest)


def test_positionals_fill_in_order_and_a_list_takes_the_rest() -> None:
    opts = parse("rank submit standard 5 7 9")
    assert opts == RankLike(kind="standard", papers=[5, 7, 9])


def test_named_values_flags_and_commas() -> None:
    opts = parse("rank submit --strict kind=battle papers=1,2 --note 'hi there'")
    assert opts == RankLike(kind="battle", papers=[1, 2], note="hi there", strict=True)
    assert parse("rank submit standard 1 --no-strict").strict is False  # type: ignore[attr-defined]


def test_errors_name_the_option_and_show_usage() -> None:
    with pytest.raises(InvalidInput, match=r"`papers` .*whole number.*you gave `x`"):
        parse("rank submit standard 1 x")
    with pytest.raises(InvalidInput, match="`kind` is missing"):
        parse("rank submit")
    with pytest.raises(UsageError, match="has no option `colour`"):
        parse("rank submit standard 1 --colour red")
    with pytest.raises(UsageError, match="needs a value"):
        parse("rank submit standard 1 --note")
    with pytest.raises(InvalidInput, match=r"`on` must be a date like 2023-08-30"):
        parse("dated on=yesterday")
    with pytest.raises(InvalidInput, match="out of range: it must be from 1 to 2,147,483,647"):
        parse("dated paper=0")


def test_unknown_commands_suggest_what_exists() -> None:
    with pytest.raises(UsageError, match="`rank` has: `rank submit`"):
        REG.match(["rank", "foo"])
    with pytest.raises(UsageError, match="Did you mean `dated`"):
        REG.match(["dater"])
    with pytest.raises(UsageError, match="Type a command"):
        REG.match([])


@given(st.lists(st.integers(min_value=1, max_value=10**6), min_size=1, max_size=30))
def test_any_list_of_ids_round_trips(ids: list[int]) -> None:
    line = "rank submit battle " + " ".join(map(str, ids))
    assert parse(line).papers == ids  # type: ignore[attr-defined]


@given(st.text(min_size=1, max_size=40))
def test_arbitrary_text_never_crashes_the_parser(text: str) -> None:
    """Whatever a user types, the parser answers with a result or a user-facing error."""
    with contextlib.suppress(UsageError, InvalidInput):
        parse("rank submit " + text)


def test_every_declared_command_is_well_formed() -> None:
    reg = load_registry()
    names = [c.name for c in reg]
    assert {
        "help",
        "whoami",
        "register",
        "papers",
        "schedule",
        "deadlines",
        "grading",
        "officehours",
    } <= set(names)
    for cmd in reg:
        assert cmd.description and cmd.description[0].isupper(), cmd.name
        assert len(cmd.description) <= 100, cmd.name  # Discord's limit for descriptions
        assert all(len(w) <= 32 and w.islower() for w in cmd.path), cmd.name
        for spec in cmd.specs:
            assert spec.description, (cmd.name, spec.name)
            assert len(spec.choices) <= 25, (cmd.name, spec.name)  # Discord's choice limit
        assert cmd.usage().startswith(cmd.name)
    assert reg.get("papers").specs[0].choices[:3] == ("all", "standard", "30")
    assert reg.get("register list").access is Access.STAFF


class WithPaper(BaseModel):
    paper: Annotated[int, Complete("paper")] = Field(description="a paper id")


def test_complete_marker_is_exposed_for_autocomplete() -> None:
    reg = Registry()

    async def handler(ctx, opts: WithPaper):  # type: ignore[no-untyped-def]
        raise AssertionError

    reg.command("show", "show a paper")(handler)
    assert reg.get("show").specs[0].complete == "paper"
    with pytest.raises(ValueError, match="declared twice"):
        reg.command("show", "again")(handler)
