"""The input rules of docs/input.md (numbers, text, quoting, the rest of the line, line
length, local times), on the real registry, without a database; and the same rules for
already-typed options (Discord) through the core."""

from __future__ import annotations

import time
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from commands import load_registry
from commands.clock import parse_instant
from commands.errors import CourseBotError, InvalidInput, UsageError
from commands.grades import parse_local
from commands.parsing import list_items, parse_tokens, split_line, tokenize
from commands.text import MAX_ID, shown, visible_length
from tests.test_core import req

REG = load_registry()


def parse(line: str) -> BaseModel:
    cmd, rest = REG.match(split_line(line))
    return parse_tokens(cmd, rest)


def refusal(line: str) -> str:
    with pytest.raises(CourseBotError) as info:
        parse(line)
    return str(info.value)


@pytest.mark.parametrize(
    "token",
    ["+1", "-1", "1_000", "1.0", "1e3", "0x1", "１２", "١٢", "²", "1\ufe0f\u20e3", "½", "1."],
)
def test_an_id_is_plain_ascii_digits(token: str) -> None:
    message = refusal(f"battle show {token}")
    assert "`battle` must be a whole number written with the digits 0-9" in message
    assert shown(token) in message


@pytest.mark.parametrize("token", [str(MAX_ID + 1), str(2**63), "9" * 400, "0"])
def test_past_the_largest_id_is_out_of_range(token: str) -> None:
    message = refusal(f"battle show {token}")
    assert "`battle` is out of range: it must be from 1 to 2,147,483,647" in message


def test_an_option_s_own_bound_is_the_range() -> None:
    assert "must be from 1 to 20 (you gave `21`)" in refusal("discussion propose 3 count=21")
    assert parse("discussion propose 3 0020").count == 20  # type: ignore[attr-defined]
    assert parse("battle show 7").battle == 7  # type: ignore[attr-defined]


def test_decimals_are_plain_and_finite() -> None:
    assert parse("grade set bob hw 92.5").points == 92.5  # type: ignore[attr-defined]
    for token in ("nan", "inf", "1e309", "９２", "92,5"):
        assert "`points` must be a number" in refusal(f"grade set bob hw {token}")


def test_text_is_limited_not_cut() -> None:
    message = refusal("battle vote 1 A " + "x" * 3001)
    assert "`justification` is 3,001 characters long; the limit is 3,000" in message
    assert "`reason` is 501 characters long; the limit is 500" in refusal(
        "gpu cancel 3 " + "r" * 501
    )
    assert "`student` is 301 characters long; the limit is 300" in refusal("grades " + "s" * 301)


def test_control_characters_are_refused_and_named() -> None:
    message = refusal("battle vote 1 A great ablations\x00 here")
    assert "`justification` contains the control character `\\u0000`" in message
    assert "`\\u001B`" in refusal("register bob\x1b[31m")
    assert "`\\u0085`" in refusal('grades "bob\x85"')
    # Newlines and tabs are fine in paragraphs, not in one-line options.
    assert parse("battle vote 1 A line one\nline\ttwo").justification == "line one\nline\ttwo"  # type: ignore[attr-defined]


def test_invisible_characters_do_not_make_text() -> None:
    assert "only invisible characters" in refusal("battle vote 1 A \u200b\u200b\u200b\u2063")
    assert visible_length("a\u200b\u202eb \u2060c\ufe0f") == 3


def test_echoed_text_is_escaped() -> None:
    assert "`nope\\u202Egood`" in refusal("nope\u202egood")
    assert "`extra\\u202E`" in refusal("battle show 1 extra\u202e")
    assert "\u202e" not in refusal("battle show \u202e1")
    assert shown("a" * 200).endswith("…") and len(shown("a" * 200)) == 81


def test_the_rest_of_the_line_quoted_or_not() -> None:
    vote = parse("battle vote 1 A this paper's ablations win because …")
    assert vote.justification == "this paper's ablations win because …"  # type: ignore[attr-defined]
    vote = parse('battle vote 1 A "Their ablations are far more convincing."')
    assert vote.justification == "Their ablations are far more convincing."  # type: ignore[attr-defined]
    vote = parse('battle vote 1 B "great" ablations,   really')
    assert vote.justification == '"great" ablations,   really'  # type: ignore[attr-defined]
    note = parse('announce "Rankings are due." at 2023-08-27T09:00')
    assert (note.text, note.at, note.time) == ("Rankings are due.", "at", "2023-08-27T09:00")  # type: ignore[attr-defined]
    assert parse("announce No class Monday.").text == "No class Monday."  # type: ignore[attr-defined]
    lfg = parse("project lfg video QA, long-form video --clear")
    assert (lfg.interests, lfg.clear) == ("video QA, long-form video", True)  # type: ignore[attr-defined]
    assert parse("assign set bob 3 she asked twice").reason == "she asked twice"  # type: ignore[attr-defined]


def test_usage_shows_which_option_takes_the_rest() -> None:
    assert REG.get("battle vote").usage() == "battle vote <battle> <side> <justification…>"
    assert REG.get("critique submit").usage() == "critique submit <paper> <question> <answer…>"
    assert REG.get("gpu run").usage() == "gpu run <demo> [params...]"


def test_a_quoted_value_stays_whole_in_a_list() -> None:
    run = parse('gpu run conv2d grid="1 2; 3 4" kernel="0 0; 0 1"')
    assert run.params == ["grid=1 2; 3 4", "kernel=0 0; 0 1"]  # type: ignore[attr-defined]
    assert parse("rank standard 1,2 3").papers == [1, 2, 3]  # type: ignore[attr-defined]
    # The same list typed into one Discord option or modal field reads the same way.
    params = next(spec for spec in REG.get("gpu run").specs if spec.name == "params")
    assert list_items(params, 'grid="1 2; 3 4" kernel="0 0; 0 1"') == run.params  # type: ignore[attr-defined]
    papers = next(spec for spec in REG.get("rank standard").specs if spec.name == "papers")
    assert list_items(papers, "1,2 3") == ["1", "2", "3"]


def test_quotes_open_at_a_word_start_or_after_equals() -> None:
    assert split_line("a o'neil 'b c' d=\"e f\" “g h” \\\"i") == [
        "a",
        "o'neil",
        "b c",
        "d=e f",
        "g h",
        '"i',
    ]
    assert "never closed" in refusal('battle show "1')


def test_a_long_line_is_refused_before_reading_and_tokenising_is_linear() -> None:
    with pytest.raises(UsageError, match="8,001 characters long; the limit is 8,000"):
        split_line("x" * 8001)

    def best_of(n: int) -> float:
        """The fastest of 5 runs tokenising lines of about ``n`` characters (the
        fastest, so that another process on the machine does not decide the test)."""
        times = []
        for _ in range(5):
            started = time.perf_counter()
            tokenize('"' + "a b " * (n // 4))  # an unclosed quote over the whole line
            tokenize("1 " * (n // 2))
            times.append(time.perf_counter() - started)
        return min(times)

    # Linear: 8 times the input takes about 8 times as long (quadratic would be 64).
    small, large = best_of(900), best_of(7200)
    assert large / small < 24, (small, large)


@given(st.text(max_size=200))
def test_tokenising_never_fails_except_as_a_usage_error(text: str) -> None:
    tokens = tokenize(text)
    assert all(t.start < t.end <= len(text) for t in tokens)


def test_local_times_in_a_dst_gap_or_the_repeated_hour() -> None:
    ny = ZoneInfo("America/New_York")
    with pytest.raises(InvalidInput, match="does not exist in America/New_York"):
        parse_local("2024-03-10T02:30", ny)
    with pytest.raises(InvalidInput, match="happens twice") as info:
        parse_local("2023-11-05 01:30", ny)
    assert "2023-11-05T01:30-04:00" in str(info.value)
    assert parse_local("2023-11-05T01:30-05:00", ny).utcoffset().total_seconds() == -5 * 3600  # type: ignore[union-attr]
    with pytest.raises(InvalidInput, match="not a real date"):
        parse_local("2023-02-30T10:00", ny)
    with pytest.raises(InvalidInput, match="does not exist"):
        parse_instant("2024-03-10T02:00", "America/New_York")
    assert parse_instant("2023-11-05T03:30", "America/New_York").hour == 8


async def test_typed_options_follow_the_same_rules(app) -> None:  # type: ignore[no-untyped-def]
    """Discord sends ints and strings already typed: the same limits apply."""
    reply = await app.core.handle(req("alice"), "battle show", {"battle": 2**63})
    assert reply.is_error and reply.error_id is None and "out of range" in reply.text
    reply = await app.core.handle(req("alice"), "battle show", {"battle": "١"})
    assert reply.is_error and "digits 0-9" in reply.text
    reply = await app.core.handle(
        req("alice"), "battle vote", {"battle": 1, "side": "A", "justification": "ok\x00"}
    )
    assert reply.is_error and "`\\u0000`" in reply.text
    reply = await app.core.handle_text(req("gedas"), "announce " + "n" * 3001)
    assert reply.is_error and "3,001 characters long; the limit is 3,000" in reply.text
    # A handler's own message that quotes the user (a roster lookup, a date) is escaped
    # too, by the core, whatever the handler wrote.
    reply = await app.core.handle_text(req("gedas"), "rankings extend 2023-09-01T09:00\u202e")
    assert reply.is_error and "\u202e" not in reply.text
    reply = await app.core.handle_text(req("gedas"), "register unlink zz\u202ezz")
    assert reply.is_error and "\u202e" not in reply.text and "zz\\u202Ezz" in reply.text


async def test_crafted_buttons_and_forms_are_no_longer_active(app) -> None:  # type: ignore[no-untyped-def]
    for custom_id in (
        "papers.page:all:::x",
        f"battle.react:{2**64}",
        "battle.react",
        "audit.page:\x00:1",
        "register.approve:²",
        "discussion.propose:-99999999999999999999",
    ):
        reply = await app.core.handle_action(req("gedas"), custom_id)
        assert reply.error_id is None, (custom_id, reply.text)
    for custom_id in ("form", "form:battle.vote:battle", "form:battle.vote:battle=1:x", ""):
        reply = await app.core.handle_form(req("alice"), custom_id, {})
        assert reply.error_id is None, (custom_id, reply.text)
    reply = await app.core.handle_form(req("alice"), "form", {})
    assert "no longer active" in reply.text
