"""Discord's limits on the command tree (issue #20): a command whose names, descriptions
and choices pass 4,000 characters, or a group of more than 25 subcommands, makes
Discord refuse the whole sync. The real tree is checked here, and at start."""

from __future__ import annotations

from typing import Any

import discord

from bot.app import App
from bot.discord.tree import COMMAND_CHARACTERS, _characters, limit_problems
from tests.discord_fakes import GUILD_ID, discord_world


async def test_the_real_command_tree_fits_discords_limits(app: App) -> None:
    async with discord_world(app) as w:
        tree = w.bot.tree
        payloads = [
            dict(c.to_dict(tree)) for c in tree.get_commands(guild=discord.Object(GUILD_ID))
        ]
        assert payloads, "no commands were built"
        assert limit_problems(payloads) == []
        largest = max(_characters(p) for p in payloads)
        assert largest <= COMMAND_CHARACTERS


def _oversized() -> dict[str, Any]:
    option = {"type": 3, "name": "text", "description": "o" * 100}
    options = [
        {"type": 1, "name": f"sub{i}", "description": "d" * 100, "options": [option, option]}
        for i in range(30)
    ]
    return {"type": 1, "name": "admin", "description": "staff", "options": options}


def test_a_command_over_the_limits_is_named() -> None:
    problems = limit_problems([_oversized()])
    assert any("`/admin` has" in p and "(Discord allows 4000)" in p for p in problems)
    assert any("`/admin` has 30 options or subcommands (Discord allows 25)" in p for p in problems)
    long_name = {"type": 1, "name": "x" * 40, "description": "d", "options": []}
    assert "the name has 40 characters" in limit_problems([long_name])[0]


def test_an_option_over_the_limits_is_named_with_its_command() -> None:
    """Options are checked too (name, description, choices), named by their command."""
    option = {
        "type": 3,
        "name": "battle",
        "description": "d" * 101,
        "choices": [{"name": "n" * 101, "value": "v" * 101}],
    }
    open_ = {"type": 1, "name": "open", "description": "d", "options": [option]}
    battle = {"type": 2, "name": "battle", "description": "d", "options": [open_]}
    admin = {"type": 1, "name": "admin", "description": "staff", "options": [battle]}
    assert limit_problems([admin]) == [
        "`/admin battle open` option `battle`: the description is over 100 characters",
        "`/admin battle open` option `battle`: a choice's name is not 1–100 characters",
        "`/admin battle open` option `battle`: a choice's value is over 100 characters",
    ]


async def test_a_tree_over_the_limits_is_not_synced(app: App) -> None:
    async with discord_world(app) as w:
        tree = w.bot.tree
        guild = discord.Object(GUILD_ID)
        group = discord.app_commands.Group(name="toolong", description="t" * 90)
        for i in range(25):
            sub = discord.app_commands.Group(name=f"g{i}", description="d" * 100)
            for j in range(25):

                async def cb(interaction: discord.Interaction) -> None: ...

                sub.add_command(
                    discord.app_commands.Command(name=f"c{j}", description="d" * 100, callback=cb)
                )
            group.add_command(sub)
        tree.add_command(group, guild=guild)
        assert await w.bot.sync_commands() is False
        assert any("app commands not synced: `/toolong` has" in r for r in w.failures)
        w.failures.clear()  # the logged error is the point here
