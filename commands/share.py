"""Read-only lookups answer privately, with a "Share in channel" button.

Fifty students typing ``schedule`` used to get fifty public copies in the channel,
paced by the platform's rate limit. A command declared with ``share=True`` now answers
only its caller, and the button posts the same answer to the channel when someone wants
to show it to everyone. The button carries the command and its options (not the
answer), so the shared post is computed afresh, with the presser's own access checked.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from commands.context import Context
from commands.errors import Forbidden
from commands.parsing import validate
from commands.registry import Access, Command, registry
from commands.replies import Button, Reply, Tone

#: Platforms carry at most 100 characters in a button's id (Discord's limit).
MAX_ID = 100


def offer_share(reply: Reply, cmd: Command, opts: BaseModel) -> None:
    """Make the reply private and add the button (when its options fit in an id)."""
    reply.ephemeral = True
    args = [".".join(cmd.path)]
    for name, value in opts.model_dump(exclude_defaults=True).items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if any(c in text for c in ":=\n") or isinstance(value, (list, dict)):
            return  # cannot be carried in an id; the private answer stays
        args.append(f"{name}={text}")
    button = Button("Share in channel", "share", tuple(args))
    if len(button.custom_id) <= MAX_ID:
        reply.buttons.append(button)


@registry.action("share", access=Access.ANYONE, ephemeral=True)
async def share(ctx: Context, args: tuple[str, ...], _value: str | None) -> Reply:
    channel = ctx.request.where.channel
    if not args or not channel:
        return Reply.error("There is no channel here to share this in.")
    cmd = ctx.registry.get(args[0].replace(".", " "))
    if not cmd.share:
        raise ValueError(args[0])  # an id the bot never wrote
    if not cmd.access.allows(ctx.person):
        raise Forbidden(f"`{' '.join(cmd.path)}` is only for {cmd.access.label}.")
    options: dict[str, Any] = dict(a.split("=", 1) for a in args[1:])
    answer = await cmd.handler(ctx, validate(cmd, options))
    if answer.is_error:
        return answer
    answer.ephemeral = False
    answer.buttons = [b for b in answer.buttons if b.action != "share"]
    who = ctx.person.name if ctx.person else ctx.request.caller.display_name
    answer.text = (answer.text + "\n" if answer.text else "") + f"(shared by {who})"
    ctx.post(channel, answer)
    return Reply(text="Shared in the channel.", tone=Tone.SUCCESS)
