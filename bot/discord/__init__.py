"""The Discord adapter: the whole bot as a discord.py 2.x application.

Nothing here decides anything about the course: commands come from the shared
registry (:mod:`bot.discord.layout` and :mod:`bot.discord.tree` turn it into app
commands), the command core runs them, and :mod:`bot.discord.render` turns the
platform-neutral replies into embeds, files and persistent buttons. See
docs/discord.md for setting up the Discord application.
"""

from __future__ import annotations

from bot.discord.client import CourseBot, intents, run_discord
from bot.discord.layout import Layout, build_layout
from bot.discord.outbox import DiscordOutbox

__all__ = ["CourseBot", "DiscordOutbox", "Layout", "build_layout", "intents", "run_discord"]
