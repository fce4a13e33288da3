"""Hostile and careless input, generated: command lines (any Unicode, control
characters, huge and odd numbers, stray quotes, ``key=value`` noise, long lines) and
button, reaction and form ids, sent to the dispatcher as a stranger, a student and the
instructor, on SQLite and Postgres. Whatever comes in: no unexpected-error id, no
exception escapes, every call answers within a second, and a refused line leaves the
database as it was.

The suite runs a short profile (``coursebot-ci``, 40 examples per test); ``make fuzz``
runs ``HYPOTHESIS_PROFILE=fuzz`` (2,000 examples per test).
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text

from commands import load_registry
from commands.replies import Reply, render_text
from db.models import Base
from tests.test_core import req

settings.register_profile(
    "coursebot-ci",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz",
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "coursebot-ci"))
if PROFILE.max_examples < 10:  # the default profile, or a too-short one: use ours
    PROFILE = settings.get_profile("coursebot-ci")

REGISTRY = load_registry()
COMMANDS = sorted(c.name for c in REGISTRY)
OPTION_NAMES = sorted({s.name for c in REGISTRY for s in c.specs})
ACTIONS = sorted(REGISTRY.actions)
CALLERS = ["stranger", "alice", "gedas"]  # unregistered, a student, the instructor
#: Commands that do real work (the assignment solver) when their line is valid.
HEAVY = {"assign"}
#: Tables whose rows are compared, not just counted, around a refused line.
KEY_TABLES = [
    "people",
    "identities",
    "announcements",
    "battle_votes",
    "critiques",
    "projects",
    "lfg_posts",
    "gpu_jobs",
    "grade_entries",
]

ODD_NUMBERS = [
    "0",
    "-1",
    "+1",
    "1_000",
    "1.5",
    "1e3",
    "0x10",
    "１２",  # full-width
    "١٢",  # Arabic-Indic
    "²",
    "1\ufe0f\u20e3",  # keycap 1
    "9" * 19,
    "9" * 400,
    str(2**31),
    str(2**63),
    "-" + str(2**63),
    "nan",
    "inf",
    "007",
]
NASTY = [
    "\x00",
    "\x1b[31m",
    "\u202e",
    "\u200b",
    "\ufeff",
    "\ud800",
    "\x85",
    "\r\n",
    "\t",
    '"',
    "'",
    "\u201c",
    "\\",
    "--",
    "=",
    ",",
    ":",
    "`",
]

word = st.one_of(
    st.text(st.characters(codec=None), max_size=12),
    st.text(min_size=1, max_size=12).filter(lambda s: not s.isspace()),
    st.sampled_from(ODD_NUMBERS),
    st.sampled_from(NASTY),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(OPTION_NAMES), st.text(max_size=8)),
    st.builds(lambda k, v: f'{k}="{v}', st.sampled_from(OPTION_NAMES), st.text(max_size=8)),
    st.builds(lambda k: f"--{k}", st.sampled_from(OPTION_NAMES)),
    # Past a column's size (100, 200), the one-line and paragraph limits, the line limit.
    st.sampled_from(["a" * 101, "b" * 201, "c" * 301, "x" * 3001, "y" * 9000]),
)


@st.composite
def command_lines(draw: st.DrawFn) -> str:
    head = draw(st.one_of(st.sampled_from(COMMANDS), st.text(max_size=10)))
    words = draw(st.lists(word, max_size=8))
    sep = draw(st.sampled_from([" ", "  ", "\t", " \u3000 "]))
    return sep.join([head, *words])


@st.composite
def action_ids(draw: st.DrawFn) -> tuple[str, str | None]:
    name = draw(st.one_of(st.sampled_from(ACTIONS), st.text(max_size=10)))
    args = draw(st.lists(word, max_size=5))
    value = draw(st.one_of(st.none(), st.sampled_from(["🅰️", "🅱️", "-🅰️", "👍"]), word))
    return ":".join([name, *args]), value


@st.composite
def forms(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    command = draw(st.one_of(st.sampled_from(COMMANDS), st.text(max_size=10)))
    pairs = draw(
        st.lists(
            st.builds(lambda k, v: f"{k}={v}", st.sampled_from(OPTION_NAMES), word), max_size=3
        )
    )
    prefix = draw(st.sampled_from(["form", "form", "", "x"]))
    custom_id = ":".join([prefix, command.replace(" ", "."), *pairs])
    if draw(st.booleans()):
        custom_id = draw(st.text(max_size=30))
    values = draw(st.dictionaries(st.sampled_from(OPTION_NAMES), word, max_size=3))
    return custom_id, values


async def snapshot(app) -> str:  # type: ignore[no-untyped-def]
    """Row counts of every table and the rows of the key ones, as one digest."""
    digest = hashlib.sha256()
    tables = Base.metadata.sorted_tables
    async with app.db.session() as s:
        counts = select(*(select(func.count()).select_from(t).scalar_subquery() for t in tables))
        digest.update(repr(tuple((await s.execute(counts)).one())).encode())
        for name in KEY_TABLES:
            rows = (await s.execute(text(f"SELECT * FROM {name} ORDER BY 1"))).all()
            digest.update(repr([tuple(r) for r in rows]).encode())
    return digest.hexdigest()


async def check(app, what: str, call, heavy: bool = False) -> Reply:  # type: ignore[no-untyped-def]
    before = await snapshot(app)
    started = time.perf_counter()
    reply = await call()  # an exception escaping fails the test with its traceback
    took = time.perf_counter() - started
    assert reply.error_id is None, f"{what!r} → {render_text(reply)}"
    assert took < 1.0 or (heavy and not reply.is_error), f"{what!r} took {took:.2f} s"
    if reply.is_error:
        assert await snapshot(app) == before, f"{what!r} was refused but changed the database"
    return reply


@PROFILE
@given(line=command_lines(), caller=st.sampled_from(CALLERS))
async def test_any_line_is_answered(app, line: str, caller: str) -> None:  # type: ignore[no-untyped-def]
    heavy = line.split(" ", 1)[0] in HEAVY
    await check(app, line, lambda: app.core.handle_text(req(caller), line), heavy)


@PROFILE
@given(action=action_ids(), caller=st.sampled_from(CALLERS))
async def test_any_button_or_reaction_is_answered(app, action, caller: str) -> None:  # type: ignore[no-untyped-def]
    custom_id, value = action
    await check(app, custom_id, lambda: app.core.handle_action(req(caller), custom_id, value))


@PROFILE
@given(form=forms(), caller=st.sampled_from(CALLERS))
async def test_any_form_is_answered(app, form, caller: str) -> None:  # type: ignore[no-untyped-def]
    custom_id, values = form
    await check(app, custom_id, lambda: app.core.handle_form(req(caller), custom_id, values))


async def test_a_megabyte_line_is_refused_at_once(app) -> None:  # type: ignore[no-untyped-def]
    line = "rank standard " + "1 " * 500_000
    reply = await check(app, "1 MB line", lambda: app.core.handle_text(req("alice"), line))
    assert reply.is_error and "the limit is 8,000" in reply.text
