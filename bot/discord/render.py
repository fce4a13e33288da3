"""Reply → Discord messages: embeds for text, sections and tables, files, buttons.

Instants (time markers, :mod:`commands.timefmt`) become Discord's timestamp markup
(``<t:UNIX:F>``, ``<t:UNIX:R>``) in descriptions and field values, so each reader sees
their own zone; titles, field names and code blocks (tables) cannot show that markup and
get the course-zone text. Limits are counted on the converted text.

Everything stays inside Discord's limits, splitting rather than failing: a
description holds 4096 characters, a field 1024 (25 fields an embed), a message
10 embeds and 6000 characters in all, 10 files and 25 buttons. A long table is cut
into several code blocks, each repeating the header; what does not fit one message
goes on in the next. Buttons, files and reactions go on the last message.

A message that takes reactions says so in its footer (``React with 🅰️ 🅱️ · ref
battle.react:3``): after a restart that footer is how a reaction is routed back to
its action, with nothing kept in memory or in the database.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from dataclasses import dataclass, field
from typing import Any

import discord

from commands import replies
from commands.replies import Button, FileOut, Reactions, Reply, Table, Tone, render_table
from commands.timefmt import has_markers, localize, plain

log = logging.getLogger("coursebot.discord")

TITLE_LIMIT = 256
DESCRIPTION_LIMIT = 4096
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FIELDS_PER_EMBED = 25
FOOTER_LIMIT = 2048
MESSAGE_TOTAL_LIMIT = 6000
EMBEDS_PER_MESSAGE = 10
FILES_PER_MESSAGE = 10
BUTTONS_PER_MESSAGE = 25
BUTTON_LABEL_LIMIT = 80
CUSTOM_ID_LIMIT = 100
#: What the embeds of one message may hold, leaving room for a footer added at the end.
EMBED_BUDGET = MESSAGE_TOTAL_LIMIT - 200
#: Characters a table line may take: wider ones wrap in an embed.
TABLE_WIDTH = 72

#: Custom-id prefix of a button that runs a core action or opens a core form.
ACTION_PREFIX = "cb:a:"
#: Custom-id prefix of a modal that submits a core form.
FORM_PREFIX = "cb:m:"

BLANK = "\u200b"  # a field needs a non-empty name and value
COLORS = {
    Tone.INFO: discord.Colour.blurple(),
    Tone.SUCCESS: discord.Colour.green(),
    Tone.WARNING: discord.Colour.gold(),
    Tone.ERROR: discord.Colour.red(),
}
STYLES = {
    "primary": discord.ButtonStyle.primary,
    "secondary": discord.ButtonStyle.secondary,
    "success": discord.ButtonStyle.success,
    "danger": discord.ButtonStyle.danger,
}


@dataclass
class Outgoing:
    """One Discord message to send: embeds, then (on the last one) files, buttons and
    reactions. Files and views are built fresh for every send (a discord.File is
    read once)."""

    embeds: list[discord.Embed] = field(default_factory=list)
    files: list[FileOut] = field(default_factory=list)
    buttons: list[Button] = field(default_factory=list)
    reactions: Reactions | None = None
    content: str | None = None

    def discord_files(self) -> list[discord.File]:
        return [
            discord.File(io.BytesIO(f.data), filename=f.name, description=f.description)
            for f in self.files
        ]

    def view(self) -> discord.ui.View | None:
        """A persistent view (no timeout) of the buttons, or None."""
        from bot.discord.components import ActionButton

        if not self.buttons:
            return None
        view = discord.ui.View(timeout=None)
        for button in self.buttons:
            view.add_item(ActionButton.of(button))
        return view

    def send_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``send``/``followup.send`` (only what is present)."""
        kwargs: dict[str, Any] = {"embeds": self.embeds}
        if self.content:
            kwargs["content"] = self.content
        if self.files:
            kwargs["files"] = self.discord_files()
        view = self.view()
        if view is not None:
            kwargs["view"] = view
        return kwargs


# ---------------------------------------------------------------------------- reactions
#: What a message whose reactions are secret ballots says on Discord, where the bot can
#: take a reaction off (with Manage Messages; a voter is told when it could not).
SECRET_NOTE = (
    "Nobody else: the bot removes your reaction as soon as it has recorded it (if it "
    "cannot, it tells you). The Vote buttons are private too."
)


def reaction_footer(reactions: Reactions) -> str:
    """What a message that takes reactions says at its foot. The meaning of each emoji
    is kept by the bot (``message_refs``), not read back from the message."""
    return f"React with {' '.join(reactions.emojis)}"


# ---------------------------------------------------------------------------- rendering
def render(reply: Reply, *, single: bool = False) -> list[Outgoing]:
    """The messages that show ``reply``. ``single`` keeps only what fits in one message
    (an edit), ending with a note that the rest was cut."""
    color = COLORS.get(reply.tone, COLORS[Tone.INFO])
    embeds = _pack_embeds(reply, color)
    messages = _group_messages(embeds)
    if single and len(messages) > 1:
        messages = messages[:1]
        last = messages[0][-1]
        last.add_field(name=BLANK, value="… (too long to show here in full)", inline=False)
    out = [Outgoing(embeds=group) for group in messages] or [Outgoing()]

    buttons = _valid_buttons(reply.buttons)
    files = list(reply.files)
    tail = out[-1]
    tail.buttons = buttons
    tail.files = files[:FILES_PER_MESSAGE]
    for i in range(FILES_PER_MESSAGE, len(files), FILES_PER_MESSAGE):
        if single:
            break
        out.append(Outgoing(files=files[i : i + FILES_PER_MESSAGE]))
    if reply.reactions is not None:
        holder = next((m for m in reversed(out) if m.embeds), out[-1])
        if not holder.embeds:
            holder.embeds.append(discord.Embed(colour=color))
        if reply.reactions.secret:
            holder.embeds[-1].add_field(
                name="Who sees your reaction", value=SECRET_NOTE, inline=False
            )
        holder.embeds[-1].set_footer(
            text=_footer(holder.embeds[-1], reaction_footer(reply.reactions))
        )
        holder.reactions = reply.reactions
    for message in out:
        if not message.embeds and not message.files:
            message.content = "(nothing to show)"
    return out


def _footer(embed: discord.Embed, text: str) -> str:
    old = embed.footer.text if embed.footer and embed.footer.text else ""
    return (f"{old} · {text}" if old else text)[-FOOTER_LIMIT:]


def _valid_buttons(buttons: list[Button]) -> list[Button]:
    keep: list[Button] = []
    seen: set[str] = set()
    for button in buttons[:BUTTONS_PER_MESSAGE]:
        if len(ACTION_PREFIX + button.custom_id) > CUSTOM_ID_LIMIT:
            log.error("button %r dropped: its custom id is too long", button.label)
            continue
        if button.custom_id in seen:  # Discord refuses a message with two equal ids
            log.error("button %r dropped: same custom id as another", button.label)
            continue
        seen.add(button.custom_id)
        # A label is plain text: an instant in it shows in the course's zone.
        if has_markers(button.label):
            button = dataclasses.replace(button, label=plain(button.label))
        keep.append(button)
    if len(buttons) > BUTTONS_PER_MESSAGE:
        log.error("%d buttons dropped: a message holds 25", len(buttons) - BUTTONS_PER_MESSAGE)
    return keep


def _pack_embeds(reply: Reply, color: discord.Colour) -> list[discord.Embed]:
    """Text, sections and tables, in the order the terminal shows them, as embeds."""
    pieces: list[tuple[str, str, str]] = []  # (kind, name, value); kind: text | field
    if reply.text:
        text = localize(reply.text, "discord")
        pieces += [("text", "", chunk) for chunk in split_text(text, DESCRIPTION_LIMIT)]
    for section in reply.sections:
        lines = [section.body] if section.body else []
        lines += [f"**{k}:** {v}" for k, v in section.fields]
        value = localize("\n".join(lines), "discord").strip() or BLANK
        name = (plain(section.heading) or BLANK)[:FIELD_NAME_LIMIT]
        for i, chunk in enumerate(split_text(value, FIELD_VALUE_LIMIT)):
            label = name if i == 0 else f"{name} (cont.)"[:FIELD_NAME_LIMIT]
            pieces.append(("field", label, chunk))
    for table in reply.tables:
        pieces += [("text", "", block) for block in table_blocks(table)]

    title = plain(reply.title)[:TITLE_LIMIT] if reply.title else None
    embeds: list[discord.Embed] = [discord.Embed(title=title, colour=color)]
    for kind, name, value in pieces:
        embed = embeds[-1]
        if kind == "text":
            current = embed.description or ""
            joined = f"{current}\n\n{value}" if current else value
            too_big = len(embed) - len(current) + len(joined) > EMBED_BUDGET
            if embed.fields or len(joined) > DESCRIPTION_LIMIT or too_big:
                embed = discord.Embed(colour=color)
                embeds.append(embed)
                joined = value
            embed.description = joined
        else:
            full = len(embed) + len(name) + len(value) > EMBED_BUDGET
            if len(embed.fields) >= FIELDS_PER_EMBED or full:
                embed = discord.Embed(colour=color)
                embeds.append(embed)
            embed.add_field(name=name, value=value, inline=False)
    if reply.error_id:
        embeds[0].set_footer(text=f"error id {reply.error_id}")
    return [e for e in embeds if len(e) or e.fields]


def _group_messages(embeds: list[discord.Embed]) -> list[list[discord.Embed]]:
    messages: list[list[discord.Embed]] = []
    size = 0
    for embed in embeds:
        n = len(embed)
        if not messages or len(messages[-1]) >= EMBEDS_PER_MESSAGE or size + n > EMBED_BUDGET:
            messages.append([])
            size = 0
        messages[-1].append(embed)
        size += n
    return messages


def split_text(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters (an empty text stays one piece)."""
    return [text] if len(text) <= limit else replies.split_text(text, limit)


def table_blocks(table: Table, *, limit: int = DESCRIPTION_LIMIT) -> list[str]:
    """A table as monospace code blocks that each fit ``limit``, repeating its header."""
    text = render_table(table, width=TABLE_WIDTH).replace("```", "'''")
    lines = text.split("\n")
    head_n = 3 if table.title else 2
    head, body = lines[:head_n], lines[head_n:]
    fence = 8  # "```\n" + "\n```"
    blocks: list[list[str]] = [list(head)]
    size = sum(len(x) + 1 for x in head) + fence
    for line in body:
        line = line[: limit - fence - sum(len(x) + 1 for x in head) - 1]
        if size + len(line) + 1 > limit and len(blocks[-1]) > head_n:
            blocks.append(list(head[-2:]))  # continuation: column header and rule
            size = sum(len(x) + 1 for x in blocks[-1]) + fence
        blocks[-1].append(line)
        size += len(line) + 1
    return ["```\n" + "\n".join(block) + "\n```" for block in blocks]
