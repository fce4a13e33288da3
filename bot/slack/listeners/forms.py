"""Opening modals. A typed line runs in the core, unless it asks for a modal: ``rank
standard`` / ``rank battle`` without ids open the rankings modal, and a command whose
form options were not typed (:func:`commands.parsing.missing_form_options`) opens its
form (in a DM, where no trigger is at hand, a button opens it). A button that carries a
form opens that form. Who may rank, and what, is the core's answer
(:func:`commands.rankings.ranking_picker`); the adapter only draws it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.slack import blocks as bk
from bot.slack.sender import Target
from commands.context import Request
from commands.core import CommandCore
from commands.errors import CourseBotError, UsageError
from commands.parsing import missing_form_options, split_line
from commands.rankings import ranking_picker
from commands.replies import Form, Reply
from db.models import RankKind

if TYPE_CHECKING:
    from bot.slack.bot import SlackBot

#: The commands whose list of papers the rankings modal fills in.
RANK_COMMANDS = {("rank", "standard"): RankKind.STANDARD, ("rank", "battle"): RankKind.BATTLE}
#: Longer lines are typed out in full (a button's value holds at most 2000 characters).
MAX_FORM_LINE = 2000


async def dispatch_text(
    bot: SlackBot, request: Request, text: str, target: Target, trigger_id: str | None
) -> None:
    """A typed command: the rankings modal, a command's form, or straight to the core."""
    text = text or "help"
    if await maybe_modal(bot, request, text, target, trigger_id):
        return
    reply = await bot.core.handle_text(bot.files.with_pending(request), text)
    await bot.sender.send(reply, target, request)


async def maybe_modal(
    bot: SlackBot, request: Request, text: str, target: Target, trigger_id: str | None
) -> bool:
    """Open a modal instead of running the line; True if one was opened (or offered)."""
    try:
        cmd, rest = bot.core.registry.match(split_line(text))
    except UsageError:
        return False  # the core says what is wrong with the line
    kind = RANK_COMMANDS.get(cmd.path)
    if kind is not None and not rest and trigger_id:
        return await open_rank_modal(bot, request, kind, target, trigger_id)
    missing = missing_form_options(cmd, rest)
    if not missing or len(text) > MAX_FORM_LINE:
        return False
    fields = tuple(f for f in cmd.form_spec().fields if f.name in missing)
    form = Form(cmd.description[:24], cmd.name, fields)
    meta = {"line": text, "channel": target.channel, "thread": target.thread}
    if trigger_id:
        view = bk.form_modal(form, callback_id=bk.COMMAND_CALLBACK, metadata=meta)
        await bot.client.views_open(trigger_id=trigger_id, view=view)
        return True
    # No trigger (a direct message): a button opens the modal.
    button = {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "action_id": bk.FILL_ACTION,
                "text": {"type": "plain_text", "text": f"Fill in {cmd.name}"[:75]},
                "value": text[:MAX_FORM_LINE],
                "style": "primary",
            }
        ],
    }
    names = ", ".join(f.label for f in fields)
    note = f"`{cmd.name}` takes {names} in a form. Press the button to fill it in."
    await bot.sender.ephemeral_blocks(
        target, [bk.section_block(bk.mrkdwn(note)), button], note.replace("`", "")
    )
    return True


async def open_rank_modal(
    bot: SlackBot, request: Request, kind: RankKind, target: Target, trigger_id: str
) -> bool:
    """One select per rank position, preset to the student's current ranking; False
    (the line then runs, and the core answers) for anyone the core does not let rank."""
    async with bot.app.db.session() as session:
        try:
            course, person = await CommandCore.resolve(session, request)
        except CourseBotError:
            return False
        picker = await ranking_picker(session, course, person, kind)
    if picker is None:
        return False
    choices = [bk.Choice(str(number), f"#{number} {title}") for number, title in picker.papers]
    what = "30/45-min" if kind is RankKind.STANDARD else "battle"
    view = bk.ranking_modal(
        title=f"Rank {kind.value} papers",
        intro=f"Choose {picker.count} different {what} papers, best first. "
        f"(Or type `{bot.command} rank {kind.value} <{picker.count} paper ids>`.)",
        count=picker.count,
        choices=choices,
        current=[str(n) for n in picker.current],
        metadata={"kind": kind.value, "channel": target.channel, "thread": target.thread},
    )
    await bot.client.views_open(trigger_id=trigger_id, view=view)
    return True


async def open_form(bot: SlackBot, custom_id: str, body: dict[str, Any], target: Target) -> None:
    """The form a button carries (remembered when it was sent, or rebuilt from its id
    after a restart: the command's own form)."""
    form = bot.sender.forms.get(custom_id) or rebuild_form(bot, custom_id)
    if form is None or not form.fields:
        await bot.sender.ephemeral(
            Reply.error("That form is no longer available. Run the command again."), target
        )
        return
    meta = {"form": custom_id, "channel": target.channel, "thread": target.thread}
    view = bk.form_modal(form, callback_id=bk.FORM_CALLBACK, metadata=meta)
    await bot.client.views_open(trigger_id=body["trigger_id"], view=view)


def rebuild_form(bot: SlackBot, custom_id: str) -> Form | None:
    try:
        command, fixed = Form.parse_custom_id(custom_id)
        cmd = bot.core.registry.get(command)
    except (KeyError, ValueError):
        return None
    return cmd.form_spec(fixed)
