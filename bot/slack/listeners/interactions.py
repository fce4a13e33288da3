"""Interactions: buttons (a registered action, or a form to open), the button that opens
a typed command's form, and submitted modals (a button's form, a typed command's form,
the rankings modal). An action and a submission are kept in the inbox before Slack hears
"got it", like a slash command: after a crash they run again or their sender is told."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot import inbox
from bot.slack import blocks as bk
from bot.slack.listeners.base import (
    adapter,
    core_request,
    guard,
    interaction_target,
    trigger_event,
)
from bot.slack.listeners.commands import inbox_done
from bot.slack.listeners.forms import dispatch_text, open_form
from bot.slack.middleware import who_of
from bot.slack.sender import Target
from commands.context import Request
from commands.core import new_error_id
from commands.parsing import line_with
from commands.replies import Form, Reply
from db.models import Platform, RankKind

if TYPE_CHECKING:
    from bot.slack.bot import SlackBot

log = logging.getLogger("coursebot.slack")

#: What the inbox keeps of a button press (the message it sits on is not needed).
BUTTON_FIELDS = ("user", "team", "channel", "container", "response_url", "trigger_id")
#: What the inbox keeps of a submitted modal's view: its inputs and the bot's own
#: metadata (not its blocks, which are only needed to place an error inside the modal).
VIEW_FIELDS = ("id", "hash", "callback_id", "private_metadata", "state")
#: How long a view submission may run before the modal is closed and the answer posted.
ACK_BUDGET = 2.0


def interaction_request(body: dict[str, Any], target: Target) -> Request:
    caller = who_of(body)
    return core_request(
        caller,
        caller.caller(),
        channel=target.channel,
        thread=target.thread,
        event_id=trigger_event(body),
    )


# ---------------------------------------------------------------------- buttons
async def button(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], context: Any) -> None:
    bot = adapter(context)
    value = str(action.get("value", ""))
    # A button that acts (not one that opens a form) is kept before the ack, like a
    # slash command: after a crash it is pressed again or its presser is told.
    event_id = trigger_event(body) if not value.startswith("form:") else None
    if event_id is not None:
        payload = {k: body.get(k) for k in BUTTON_FIELDS} | {"value": value}
        await inbox.receive(
            bot.app.db, Platform.SLACK, event_id, "button", payload, bot.core.clock.now()
        )
    await ack()
    await press(bot, body, value)
    if event_id is not None:
        await inbox_done(bot, event_id)


async def press(bot: SlackBot, body: dict[str, Any], value: str, *, replay: bool = False) -> None:
    target = interaction_target(body)
    async with guard(bot, target):
        if value.startswith("form:"):
            await open_form(bot, value, body, target)
            return
        request = interaction_request(body, target)
        reply = await bot.core.handle_action(request, value)
        if replay and reply.duplicate:
            reply = Reply(text=inbox.went_through("button press"), ephemeral=True)
        await bot.sender.send(reply, target, request)


async def fill(ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], context: Any) -> None:
    """The button offered in a DM for a command's form: the line again, with a trigger."""
    await ack()
    bot = adapter(context)
    target = interaction_target(body)
    async with guard(bot, target):
        request = interaction_request(body, target)
        text = str(action.get("value", ""))
        await dispatch_text(bot, request, text, target, body.get("trigger_id"))


# ---------------------------------------------------------------------- submissions
@dataclass(frozen=True)
class Submission:
    """A submitted modal: who and where, how to run it, and how to name it to the user
    (``what``) with what to do if it was lost (``again``)."""

    request: Request
    target: Target
    run: Callable[[], Awaitable[Reply]]
    what: str
    again: str


async def view_submission(ack: AsyncAck, body: dict[str, Any], context: Any) -> None:
    """A submitted modal, kept in the inbox before Slack hears "got it"."""
    bot = adapter(context)
    submission = submission_of(bot, body)
    event_id = submission.request.event_id
    if event_id is not None:
        view = body.get("view") or {}
        payload = {
            "user": body.get("user"),
            "team": body.get("team"),
            "trigger_id": body.get("trigger_id"),
            "view": {k: view.get(k) for k in VIEW_FIELDS},
            "what": submission.what,
            "again": submission.again,
        }
        await inbox.receive(
            bot.app.db, Platform.SLACK, event_id, "modal", payload, bot.core.clock.now()
        )
    await submit(bot, ack, body["view"], submission)
    if event_id is not None:
        await inbox_done(bot, event_id)


async def resubmit(bot: SlackBot, body: dict[str, Any]) -> None:
    """A kept submission, after a restart: run it again and post the answer (the
    modal closed long ago); "went through" if it had committed."""
    submission = submission_of(bot, body)
    async with guard(bot, submission.target):
        reply = await submission.run()
        if reply.duplicate:
            reply = Reply(text=inbox.went_through(submission.what), ephemeral=True)
        await bot.sender.send(reply, submission.target, submission.request)


def _metadata(view: dict[str, Any]) -> dict[str, Any]:
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def submission_of(bot: SlackBot, body: dict[str, Any]) -> Submission:
    """What a submitted modal runs, by its callback id: a button's form (the core's
    form id and the typed fields), a typed command's form (the line and the typed
    fields) or the rankings modal (the selected papers, in rank order)."""
    view = body["view"]
    meta = _metadata(view)
    values = bk.view_values(view)
    channel = meta.get("channel")
    target = Target(body["user"]["id"], channel=channel, thread=meta.get("thread"))
    event_id = trigger_event(body) or f"view:{view.get('id')}:{view.get('hash')}"
    caller = who_of(body)
    request = core_request(
        caller, caller.caller(), channel=channel, thread=target.thread, event_id=event_id
    )
    core, pending = bot.core, bot.files.with_pending
    callback = view.get("callback_id")
    if callback == bk.RANK_CALLBACK:
        positions = sorted(
            (int(k.split(".", 1)[1]), v)
            for k, v in values.items()
            if k.startswith("rank.") and k.split(".", 1)[1].isdigit()
        )
        papers = [int(v) for _, v in positions if v and v.isdigit()]
        is_battle = meta.get("kind") == RankKind.BATTLE.value
        name = f"rank {(RankKind.BATTLE if is_battle else RankKind.STANDARD).value}"
        line = f"`{bot.command} {name}`"
        return Submission(
            request,
            target,
            lambda: core.handle(request, name, {"papers": papers}),
            what=f"ranking from {line}",
            again=f"Please type {line} again.",
        )
    typed = {
        k.removeprefix("f."): v
        for k, v in values.items()
        if k.startswith("f.") and v not in (None, "")
    }
    if callback == bk.COMMAND_CALLBACK:
        full = line_with(str(meta.get("line", "")), typed)
        line = f"`{bot.command} {str(meta.get('line', ''))[:100]}`"
        return Submission(
            request,
            target,
            lambda: core.handle_text(pending(request), full),
            what=f"form for {line}",
            again=f"Please type {line} again and fill in the form.",
        )
    form_id = str(meta.get("form", ""))
    try:
        command = f"`{bot.command} {Form.parse_custom_id(form_id)[0]}`"
    except ValueError:
        command = "a command"
    return Submission(
        request,
        target,
        lambda: core.handle_form(pending(request), form_id, typed),
        what=f"form for {command}",
        again="Please open the form again (its button) and send it.",
    )


async def submit(
    bot: SlackBot, ack: AsyncAck, view: dict[str, Any], submission: Submission
) -> None:
    """Run a submission; an error within the ack budget shows in the modal itself,
    anything else closes it and the answer is posted (ephemeral or public)."""

    async def safe() -> Reply:
        try:
            return await submission.run()
        except Exception:
            err_id = new_error_id()
            log.exception("Slack adapter error %s in a modal submission", err_id)
            return Reply.error(
                f"Something went wrong and nothing was saved (error id `{err_id}`).",
                error_id=err_id,
            )

    task = asyncio.ensure_future(safe())
    done, _ = await asyncio.wait({task}, timeout=ACK_BUDGET)
    if task in done:
        reply = task.result()
        block = bk.block_for_error(view, reply.text) if reply.is_error else None
        if block is not None:
            await ack(response_action="errors", errors={block: bk.error_text(reply)})
            return
        await ack()
    else:
        await ack()
        reply = await task
    async with guard(bot, submission.target):
        await bot.sender.send(reply, submission.target, submission.request)


def register(app: AsyncApp) -> None:
    app.action(re.compile(rf"^{re.escape(bk.BUTTON_ACTION)}\.\d+$"))(button)
    app.action(bk.FILL_ACTION)(fill)
    for callback in (bk.FORM_CALLBACK, bk.COMMAND_CALLBACK, bk.RANK_CALLBACK):
        app.view(callback)(view_submission)
