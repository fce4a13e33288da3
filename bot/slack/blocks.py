"""Block Kit rendering: a platform-neutral :class:`~commands.replies.Reply` becomes one
or more Slack messages, a :class:`~commands.replies.Form` becomes a modal.

Pure functions, no network: the adapter (:mod:`bot.slack.sender`) sends what these build.
Slack's limits are respected here: ≤ 3000 characters per section text, ≤ 10 fields of
≤ 2000 characters per section, ≤ 50 blocks per message (longer replies are split into
several messages), ≤ 25 buttons per actions block, modal titles ≤ 24 characters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from commands.replies import (
    Button,
    Form,
    Reactions,
    Reply,
    Tone,
    render_table,
    render_text,
    split_text,
)
from commands.timefmt import localize, plain

Block = dict[str, Any]

MAX_BLOCKS = 50
MAX_TEXT = 3000
MAX_FIELD = 2000
MAX_FIELDS = 10
MAX_BUTTONS = 25
MAX_HEADER = 150
MAX_MODAL_TITLE = 24
MAX_INPUT = 3000  # plain_text_input max_length
MAX_OPTION_TEXT = 75
MAX_OPTIONS = 100
MAX_FALLBACK = 3000
TABLE_WIDTH = 90

#: action_id prefix of the buttons the adapter renders (value = the button's custom id).
BUTTON_ACTION = "coursebot.button"
#: action_id of the button that opens a command's form when no trigger was at hand.
FILL_ACTION = "coursebot.fill"
#: callback ids of the modals.
FORM_CALLBACK = "coursebot.form"
COMMAND_CALLBACK = "coursebot.command"
RANK_CALLBACK = "coursebot.rank"

_TONE_MARK = {Tone.ERROR: ":x: ", Tone.SUCCESS: ":white_check_mark: ", Tone.WARNING: ":warning: "}

# ----------------------------------------------------------------------------- emoji

#: Unicode emoji (as handlers declare them) → Slack reaction names.
EMOJI_NAMES: dict[str, str] = {
    "🅰": "a",
    "🅱": "b",
    "🆎": "ab",
    "🅾": "o2",
    "👍": "+1",
    "👎": "-1",
    "✅": "white_check_mark",
    "❌": "x",
    "❤": "heart",
    "🔥": "fire",
    "🎉": "tada",
    "👀": "eyes",
    "🤔": "thinking_face",
    "⭐": "star",
    "🙋": "raising_hand",
    "1⃣": "one",
    "2⃣": "two",
    "3⃣": "three",
    "4⃣": "four",
    "5⃣": "five",
    "6⃣": "six",
    "7⃣": "seven",
    "8⃣": "eight",
    "9⃣": "nine",
    "🔟": "keycap_ten",
}
_NAME_ALIASES = {"thumbsup": "+1", "thumbsdown": "-1", "heavy_check_mark": "white_check_mark"}


def _bare(emoji: str) -> str:
    """An emoji without variation selectors (🅰️ and 🅰 are the same reaction)."""
    return emoji.replace("\ufe0f", "").replace("\ufe0e", "")


def emoji_name(emoji: str) -> str:
    """The Slack reaction name for an emoji a handler declared (``🅰️`` → ``a``).
    Names (``a``, ``:a:``) pass through."""
    bare = _bare(emoji)
    if bare in EMOJI_NAMES:
        return EMOJI_NAMES[bare]
    return emoji.strip(":")


def emoji_for(name: str, declared: Iterable[str]) -> str | None:
    """The declared emoji a Slack reaction name stands for, or None if it is not one
    of them (skin tones ignored: ``+1::skin-tone-3`` is ``+1``)."""
    base = name.split("::", 1)[0].strip(":")
    base = _NAME_ALIASES.get(base, base)
    for emoji in declared:
        if emoji_name(emoji) == base:
            return emoji
    return None


# ----------------------------------------------------------------------------- text


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^)\s]+)\)")


def _markup(text: str) -> str:
    out = escape(text)
    out = _BOLD.sub(r"*\1*", out)
    return _LINK.sub(lambda m: f"<{m.group(2)}|{m.group(1)}>", out)


def mrkdwn(text: str) -> str:
    """Our replies' light Markdown (``**bold**``, ``[text](url)``, backticks) as mrkdwn;
    instants as Slack dates, which each reader sees in their own zone."""
    return localize(_markup(text), "slack")


def section_block(text: str) -> Block:
    """A section of mrkdwn ``text`` (time markers left in it become Slack dates)."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": localize(text, "slack")}}


def _plain(text: str, limit: int) -> dict[str, Any]:
    text = plain(text).strip() or " "
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return {"type": "plain_text", "text": text, "emoji": True}


def _text_blocks(text: str) -> list[Block]:
    return [section_block(piece) for piece in split_text(text, MAX_TEXT) if piece.strip()]


def _table_blocks(table_text: str) -> list[Block]:
    """A table as monospace: code fences around pieces of at most 3000 characters."""
    inner = MAX_TEXT - 8
    return [section_block(f"```\n{piece}\n```") for piece in split_text(escape(table_text), inner)]


def _field(name: str, value: str) -> dict[str, str]:
    text = f"*{localize(escape(name), 'slack')}*\n{mrkdwn(value or '—')}"
    if len(text) > MAX_FIELD:  # cut the plain form: a cut must not split a Slack date
        text = f"*{escape(plain(name))}*\n{plain(_markup(value or '—'))}"
        text = text[: MAX_FIELD - 1] + "…"
    return {"type": "mrkdwn", "text": text}


def button_element(button: Button, index: int) -> Block:
    element: Block = {
        "type": "button",
        "action_id": f"{BUTTON_ACTION}.{index}",
        "text": _plain(button.label, 75),
        "value": button.custom_id[:2000],
    }
    style = {"primary": "primary", "success": "primary", "danger": "danger"}.get(button.style)
    if style:
        element["style"] = style
    return element


def _button_blocks(buttons: Sequence[Button]) -> list[Block]:
    blocks = []
    for start in range(0, len(buttons), MAX_BUTTONS):
        group = buttons[start : start + MAX_BUTTONS]
        blocks.append(
            {
                "type": "actions",
                "block_id": f"coursebot.buttons.{start // MAX_BUTTONS}",
                "elements": [button_element(b, start + i) for i, b in enumerate(group)],
            }
        )
    return blocks


def context_block(text: str) -> Block:
    """A small grey line (mrkdwn)."""
    text = localize(text, "slack")
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text[:MAX_TEXT]}]}


def _reactions_hint(reactions: Reactions) -> Block:
    names = " ".join(f":{emoji_name(e)}:" for e in reactions.emojis)
    if reactions.secret:
        # A Slack bot cannot remove someone else's reaction: say what is true here.
        return context_block(
            f"React with {names} to answer, but reactions on Slack are public: everyone in "
            "the channel can see who reacted with what, and the bot cannot remove them. "
            "The buttons are the private way to vote."
        )
    return context_block(f"React with {names} to answer.")


def reply_blocks(reply: Reply) -> list[Block]:
    """Every block of a reply, in order (may exceed 50: see :func:`split_messages`)."""
    blocks: list[Block] = []
    if reply.title:
        blocks.append({"type": "header", "text": _plain(reply.title, MAX_HEADER)})
    if reply.text:
        blocks += _text_blocks(_TONE_MARK.get(reply.tone, "") + mrkdwn(reply.text))
    elif reply.tone in _TONE_MARK and not reply.title and (reply.sections or reply.tables):
        blocks.append(section_block(_TONE_MARK[reply.tone].strip()))
    for sec in reply.sections:
        head = f"*{localize(escape(sec.heading), 'slack')}*" if sec.heading else ""
        body = mrkdwn(sec.body) if sec.body else ""
        text = "\n".join(p for p in (head, body) if p)
        if text:
            blocks += _text_blocks(text)
        fields = [_field(k, v) for k, v in sec.fields]
        for start in range(0, len(fields), MAX_FIELDS):
            blocks.append({"type": "section", "fields": fields[start : start + MAX_FIELDS]})
    for table in reply.tables:
        blocks += _table_blocks(render_table(table, width=TABLE_WIDTH))
    if reply.reactions is not None:
        blocks.append(_reactions_hint(reply.reactions))
    blocks += _button_blocks(reply.buttons)
    return blocks


def split_messages(blocks: list[Block]) -> list[list[Block]]:
    """Blocks grouped into messages of at most 50 blocks each (at least one message)."""
    if not blocks:
        return [[]]
    return [blocks[i : i + MAX_BLOCKS] for i in range(0, len(blocks), MAX_BLOCKS)]


def fallback_text(reply: Reply) -> str:
    """The notification / screen-reader text of a message (``text`` next to ``blocks``)."""
    short = ": ".join(p for p in (reply.title, reply.text) if p)
    text = short or render_text(reply) or ", ".join(f.name for f in reply.files) or "coursebot"
    text = escape(plain(text))  # a notification shows no Slack dates: the course's zone
    return text if len(text) <= MAX_FALLBACK else text[: MAX_FALLBACK - 1] + "…"


# ----------------------------------------------------------------------------- modals


def private_metadata(metadata: dict[str, Any]) -> str:
    """A modal's private metadata (JSON, at most 3000 characters)."""
    text = json.dumps(metadata, separators=(",", ":"))
    if len(text) > 3000:
        raise ValueError("modal metadata over Slack's 3000 characters")
    return text


def modal_title(title: str) -> dict[str, Any]:
    return _plain(title, MAX_MODAL_TITLE)


def form_modal(form: Form, *, callback_id: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """A modal with one text input per form field (block id ``f.<option name>``)."""
    blocks = []
    for f in form.fields:
        element: dict[str, Any] = {
            "type": "plain_text_input",
            "action_id": "value",
            "multiline": f.long,
            "max_length": min(f.max_length, MAX_INPUT),
        }
        if f.min_length:
            element["min_length"] = min(f.min_length, MAX_INPUT)
        if f.placeholder:
            element["placeholder"] = _plain(f.placeholder, 150)
        blocks.append(
            {
                "type": "input",
                "block_id": f"f.{f.name}",
                "optional": not f.required,
                "label": _plain(f.label, 2000),
                "element": element,
            }
        )
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": modal_title(form.title),
        "submit": _plain("Submit", 24),
        "close": _plain("Cancel", 24),
        "private_metadata": private_metadata(metadata),
        "blocks": blocks,
    }


@dataclass(frozen=True)
class Choice:
    """One option of a select: what is submitted and what is shown."""

    value: str
    label: str


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def ranking_modal(
    *,
    title: str,
    intro: str,
    count: int,
    choices: Sequence[Choice],
    current: Sequence[str],
    metadata: dict[str, Any],
) -> dict[str, Any]:
    """A modal with one static select per rank position (block id ``rank.<position>``),
    preset to the current ranking when there is one."""
    options = [
        {"text": _plain(c.label, MAX_OPTION_TEXT), "value": c.value} for c in choices[:MAX_OPTIONS]
    ]
    by_value = {o["value"]: o for o in options}
    blocks: list[Block] = [section_block(mrkdwn(intro))]
    for position in range(1, count + 1):
        element: dict[str, Any] = {
            "type": "static_select",
            "action_id": "paper",
            "placeholder": _plain("Choose a paper", 150),
            "options": options,
        }
        if position <= len(current) and current[position - 1] in by_value:
            element["initial_option"] = by_value[current[position - 1]]
        blocks.append(
            {
                "type": "input",
                "block_id": f"rank.{position}",
                "label": _plain(f"{ordinal(position)} choice", 2000),
                "element": element,
            }
        )
    return {
        "type": "modal",
        "callback_id": RANK_CALLBACK,
        "title": modal_title(title),
        "submit": _plain("Save ranking", 24),
        "close": _plain("Cancel", 24),
        "private_metadata": private_metadata(metadata),
        "blocks": blocks,
    }


def view_values(view: dict[str, Any]) -> dict[str, str | None]:
    """A submitted view's inputs by block id: typed text or the selected option's value."""
    out: dict[str, str | None] = {}
    for block_id, actions in (view.get("state") or {}).get("values", {}).items():
        for state in actions.values():
            if state.get("type") in ("static_select", "external_select"):
                selected = state.get("selected_option") or {}
                out[block_id] = selected.get("value")
            else:
                out[block_id] = state.get("value")
    return out


def first_input_block(view: dict[str, Any]) -> str | None:
    """The block id of a view's first input (where a whole-form error is shown)."""
    for block in view.get("blocks", []):
        if block.get("type") == "input":
            return str(block.get("block_id"))
    return None


def error_text(reply: Reply, limit: int = 1500) -> str:
    """An error shown under a modal's input (``response_action: errors``): plain text,
    so instants are in the course's zone."""
    return plain(reply.text)[:limit]


def block_for_error(view: dict[str, Any], message: str) -> str | None:
    """The input block an error message is about (it names the option in backticks),
    else the first input block."""
    for block in view.get("blocks", []):
        block_id = str(block.get("block_id", ""))
        if (
            block.get("type") == "input"
            and block_id.startswith("f.")
            and f"`{block_id[2:]}`" in message
        ):
            return block_id
    return first_input_block(view)
