"""Registry → discord.py app commands, built at start from the declarations.

Each registry command becomes a real :class:`discord.app_commands.Command` whose
parameters come from its :class:`~commands.registry.OptionSpec`: ``int`` → integer
(with the model's bounds), ``float`` → number, ``bool`` → boolean, ``date`` and the
other types → string (the core validates and explains), choices → choices (or
autocomplete beyond 25), a list → one string of space- or comma-separated values,
``Complete("paper")`` → autocomplete that shows paper titles. A command that
declares ``attachment`` gets a ``file`` attachment option. Options a command
collects in a form (``form=...``) are optional here: left out, they open a modal.
A list of papers left out opens a picker of select menus.

Groups follow :mod:`bot.discord.layout`; groups only staff may use get default
member permissions (Manage Messages for TA commands, Manage Server for instructor
commands) so Discord hides them from students. Every command is guild-only.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from datetime import date, datetime, time
from typing import Any, Protocol

import annotated_types
import discord
from discord import app_commands

from bot.discord.layout import ADMIN, ADMIN_MORE, Layout, Node
from commands.registry import Access, Command, OptionSpec

DESCRIPTION_LIMIT = 100
CHOICES_LIMIT = 25
FILE_OPTION = "file"

#: What Discord asks of a member to see a group only staff may use.
STAFF_PERMISSIONS = discord.Permissions(manage_messages=True)
INSTRUCTOR_PERMISSIONS = discord.Permissions(manage_guild=True)

_TYPE_HINTS = {
    date: " (YYYY-MM-DD)",
    datetime: " (YYYY-MM-DDTHH:MM)",
    time: " (HH:MM)",
}


class Handlers(Protocol):
    """What the built commands call (the adapter's router)."""

    async def run_command(
        self, interaction: discord.Interaction, cmd: Command, values: dict[str, Any]
    ) -> None: ...

    async def complete(
        self, interaction: discord.Interaction, cmd: Command, spec: OptionSpec, current: str
    ) -> list[app_commands.Choice[Any]]: ...


def attachment_of(cmd: Command) -> str | None:
    """The description of the file a command takes, if it declares one.

    Read with ``getattr`` so that the adapter works before ``Command.attachment``
    exists in the registry (see docs/discord.md)."""
    value = getattr(cmd, "attachment", None)
    return str(value) if value else None


def is_paper_list(spec: OptionSpec) -> bool:
    """A list of papers: typed ids, or picked from select menus when left out."""
    return spec.many and bool(spec.complete) and str(spec.complete).split(":")[0] == "paper"


def discord_required(cmd: Command, spec: OptionSpec) -> bool:
    """Whether Discord insists on the option (form fields and paper lists have fallbacks)."""
    return spec.required and spec.name not in cmd.form and not is_paper_list(spec)


def shorten(text: str, limit: int = DESCRIPTION_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def permissions_for(access: Access) -> discord.Permissions | None:
    if access >= Access.INSTRUCTOR:
        return INSTRUCTOR_PERMISSIONS
    if access >= Access.STAFF:
        return STAFF_PERMISSIONS
    return None


def build_commands(
    layout: Layout, handlers: Handlers
) -> list[app_commands.Command[Any, ..., Any] | app_commands.Group]:
    """The top-level app commands and groups for ``layout``."""
    return [_top(node, handlers) for node in layout.roots.values()]


def _top(
    node: Node, handlers: Handlers
) -> app_commands.Command[Any, ..., Any] | app_commands.Group:
    permissions = permissions_for(node.access)
    if node.command is not None and not node.children:
        return _leaf(node.name, node.command, None, handlers, permissions=permissions)
    group = app_commands.Group(
        name=node.name,
        description=_group_description(node),
        guild_only=True,
        default_permissions=permissions,
    )
    _fill(group, node, handlers)
    return group


def _fill(group: app_commands.Group, node: Node, handlers: Handlers) -> None:
    for child in node.children.values():
        if child.children:
            sub = app_commands.Group(name=child.name, description=_group_description(child))
            group.add_command(sub)
            _fill(sub, child, handlers)
        elif child.command is not None:
            group.add_command(_leaf(child.name, child.command, group, handlers))


def _group_description(node: Node) -> str:
    names = ", ".join(node.children)
    if node.name in (ADMIN, ADMIN_MORE):
        return shorten(f"Staff commands (hidden from students): {names}")
    return shorten(f"{node.name}: {names}")


def _leaf(
    name: str,
    cmd: Command,
    parent: app_commands.Group | None,
    handlers: Handlers,
    *,
    permissions: discord.Permissions | None = None,
) -> app_commands.Command[Any, ..., Any]:
    params: list[inspect.Parameter] = []
    descriptions: dict[str, str] = {}
    choices: dict[str, list[app_commands.Choice[str]]] = {}
    completers: dict[str, Callable[..., Awaitable[list[app_commands.Choice[Any]]]]] = {}

    for spec in cmd.specs:
        required = discord_required(cmd, spec)
        params.append(
            inspect.Parameter(
                spec.name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=_annotation(cmd, spec),
                default=inspect.Parameter.empty if required else None,
            )
        )
        descriptions[spec.name] = _option_description(cmd, spec)
        if spec.choices and not spec.many and len(spec.choices) <= CHOICES_LIMIT:
            choices[spec.name] = [app_commands.Choice(name=c, value=c) for c in spec.choices]
        elif spec.complete or (spec.choices and not spec.many):
            completers[spec.name] = _completer(handlers, cmd, spec)
    attachment = attachment_of(cmd)
    if attachment is not None:
        params.append(
            inspect.Parameter(
                FILE_OPTION,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=discord.Attachment,
                default=None,
            )
        )
        descriptions[FILE_OPTION] = shorten(attachment)

    async def callback(interaction: discord.Interaction, **values: Any) -> None:
        await handlers.run_command(interaction, cmd, values)

    callback.__name__ = callback.__qualname__ = f"slash_{'_'.join(cmd.path)}"
    callback.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                "interaction",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=discord.Interaction,
            ),
            *params,
        ]
    )
    if descriptions:
        app_commands.describe(**descriptions)(callback)
    if choices:
        app_commands.choices(**choices)(callback)
    if completers:
        app_commands.autocomplete(**completers)(callback)  # type: ignore[arg-type]
    command: app_commands.Command[Any, ..., Any] = app_commands.Command(
        name=name,
        description=shorten(cmd.description),
        callback=callback,
        parent=parent,
        extras={"course_command": cmd.name},
    )
    if parent is None:
        command.guild_only = True
        command.default_permissions = permissions
    return command


def _completer(
    handlers: Handlers, cmd: Command, spec: OptionSpec
) -> Callable[[discord.Interaction, str], Awaitable[list[app_commands.Choice[Any]]]]:
    async def complete(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[Any]]:
        return await handlers.complete(interaction, cmd, spec, current)

    complete.__name__ = complete.__qualname__ = f"complete_{spec.name}"
    return complete


def _annotation(cmd: Command, spec: OptionSpec) -> Any:
    if spec.many or spec.choices:
        return str
    if spec.type in (int, float):
        low, high = _bounds(cmd, spec)
        if low is None and high is None:
            return spec.type
        return app_commands.Range[spec.type, low, high]
    if spec.type is bool:
        return bool
    return str


def _bounds(cmd: Command, spec: OptionSpec) -> tuple[Any, Any]:
    """The numeric bounds the options model puts on a field (``Field(ge=1)``)."""
    info = cmd.options.model_fields.get(spec.name)
    low = high = None
    for meta in info.metadata if info else ():
        if isinstance(meta, annotated_types.Ge):
            low = meta.ge
        elif isinstance(meta, annotated_types.Gt):
            low = meta.gt + (1 if spec.type is int else 0)  # type: ignore[operator]
        elif isinstance(meta, annotated_types.Le):
            high = meta.le
        elif isinstance(meta, annotated_types.Lt):
            high = meta.lt - (1 if spec.type is int else 0)  # type: ignore[operator]
    return low, high


def _option_description(cmd: Command, spec: OptionSpec) -> str:
    text = spec.description
    if spec.type in _TYPE_HINTS and not spec.many:
        text += _TYPE_HINTS[spec.type]
    if is_paper_list(spec):
        text += " (ids separated by spaces; leave empty to pick from menus)"
    elif spec.many:
        text += " (one or more, separated by spaces)"
    if spec.name in cmd.form:
        text += " (leave empty to type it in a form)"
    return shorten(text)


# ------------------------------------------------------------------ Discord's limits

#: Discord refuses a command whose names, descriptions and choice values add up to more
#: than this many characters (the command with its groups, subcommands and options).
COMMAND_CHARACTERS = 4000
#: Options (or subcommands and groups) of one command or group.
OPTIONS_LIMIT = 25
NAME_LIMIT = 32
#: A choice's name and its value (a string).
CHOICE_CHARACTERS = 100


def _characters(payload: dict[str, Any]) -> int:
    total = len(payload.get("name", "")) + len(payload.get("description", ""))
    for choice in payload.get("choices") or ():
        total += len(str(choice.get("name", ""))) + len(str(choice.get("value", "")))
    for option in payload.get("options") or ():
        total += _characters(option)
    return total


def _shape_problems(payload: dict[str, Any], path: str) -> list[str]:
    out = []
    name = payload.get("name", "")
    if not 1 <= len(name) <= NAME_LIMIT:
        out.append(f"`{path}`: the name has {len(name)} characters (Discord allows 1–32)")
    if len(payload.get("description", "")) > DESCRIPTION_LIMIT:
        out.append(f"`{path}`: the description is over {DESCRIPTION_LIMIT} characters")
    options = payload.get("options") or ()
    if len(options) > OPTIONS_LIMIT:
        out.append(
            f"`{path}` has {len(options)} options or subcommands (Discord allows {OPTIONS_LIMIT})"
        )
    choices = payload.get("choices") or ()
    if len(choices) > CHOICES_LIMIT:
        out.append(f"`{path}` has more than {CHOICES_LIMIT} choices")
    for choice in choices:
        if not 1 <= len(str(choice.get("name", ""))) <= CHOICE_CHARACTERS:
            out.append(f"`{path}`: a choice's name is not 1–{CHOICE_CHARACTERS} characters")
        if len(str(choice.get("value", ""))) > CHOICE_CHARACTERS:
            out.append(f"`{path}`: a choice's value is over {CHOICE_CHARACTERS} characters")
    for option in options:
        if option.get("type") in (1, 2):  # a subcommand or a group
            out.extend(_shape_problems(option, f"{path} {option.get('name', '?')}"))
        else:  # an option of the command: `/admin battle open` option `battle`
            where = f"{path}` option `{option.get('name', '?')}"
            out.extend(_shape_problems({**option, "options": ()}, where))
    return out


def limit_problems(payloads: list[dict[str, Any]]) -> list[str]:
    """What Discord would refuse in these top-level commands (their ``to_dict``), one
    sentence each naming the command: a refused sync would stop the bot, so the
    problems are found before syncing, and in a test."""
    out = []
    for payload in payloads:
        name = payload.get("name", "?")
        size = _characters(payload)
        if size > COMMAND_CHARACTERS:
            out.append(
                f"`/{name}` has {size} characters of names, descriptions and choices "
                f"(Discord allows {COMMAND_CHARACTERS}): move some of its subcommands to "
                "another group in bot/discord/layout.py or shorten their descriptions"
            )
        out.extend(_shape_problems(payload, f"/{name}"))
    return out
