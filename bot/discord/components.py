"""Persistent components: every button and select the bot sends is a
:class:`discord.ui.DynamicItem`, whose custom id carries all it needs.

The bot registers the item *classes* at start (``Client.add_dynamic_items``), so a
press on a message sent before a restart, or by another process, is routed the same
way as a fresh one; no view object is kept per message. The ids:

``cb:a:<custom id>``
    a core :class:`~commands.replies.Button`: its action (``papers.page:all:::2``) or,
    for a button that opens a form, the form's id (``form:battle.vote:battle=1:side=A``).
``cb:p:<command>:<option>:<chosen ids>:<page>``
    the paper picker's select menu (rankings picked from menus).
``cb:u:…`` / ``cb:s:…``
    the picker's Undo and Submit buttons.

Modals are answered in :meth:`CourseBot.on_interaction` (their custom id is
``cb:m:<form id>``), so a form opened before a restart can still be submitted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import discord

from bot.discord.render import ACTION_PREFIX, FORM_PREFIX, STYLES
from commands.replies import Button, Form

if TYPE_CHECKING:
    from bot.discord.client import CourseBot

MODAL_TITLE_LIMIT = 45
LABEL_LIMIT = 45
PLACEHOLDER_LIMIT = 100
INPUT_LIMIT = 4000
INPUTS_PER_MODAL = 5
SELECT_OPTIONS = 25
SELECT_LABEL_LIMIT = 100


def _bot(interaction: discord.Interaction) -> CourseBot:
    return cast("CourseBot", interaction.client)


class ActionButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=re.escape(ACTION_PREFIX) + r"(?P<cid>.+)",
):
    """A core button: runs its action, or opens its form."""

    def __init__(
        self,
        custom_id: str,
        *,
        label: str | None = None,
        style: discord.ButtonStyle = discord.ButtonStyle.secondary,
    ) -> None:
        super().__init__(
            discord.ui.Button(
                label=(label or "…")[:80], style=style, custom_id=ACTION_PREFIX + custom_id
            )
        )
        self.core_id = custom_id

    @classmethod
    def of(cls, button: Button) -> ActionButton:
        style = STYLES.get(button.style, discord.ButtonStyle.secondary)
        return cls(button.custom_id, label=button.label, style=style)

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> ActionButton:
        button = cast("discord.ui.Button[Any]", item)
        return cls(match["cid"], label=button.label, style=button.style)

    async def callback(self, interaction: discord.Interaction) -> None:
        await _bot(interaction).router.on_button(interaction, self.core_id)


# ---------------------------------------------------------------------------- forms
class FormModal(discord.ui.Modal):
    """A core :class:`Form` as a Discord modal. It keeps no state: the submission is
    routed by its custom id (see the module docstring)."""

    def __init__(self, form: Form) -> None:
        super().__init__(
            title=form.title[:MODAL_TITLE_LIMIT] or "Form",
            custom_id=FORM_PREFIX + form.custom_id,
            timeout=None,
        )
        for spec in form.fields[:INPUTS_PER_MODAL]:
            self.add_item(
                discord.ui.TextInput(
                    label=spec.label[:LABEL_LIMIT] or spec.name,
                    custom_id=spec.name,
                    style=discord.TextStyle.paragraph if spec.long else discord.TextStyle.short,
                    required=spec.required,
                    min_length=min(spec.min_length, INPUT_LIMIT) or None,
                    max_length=min(spec.max_length, INPUT_LIMIT),
                    placeholder=spec.placeholder[:PLACEHOLDER_LIMIT] or None,
                )
            )


def modal_values(data: Any) -> dict[str, str]:
    """The text a user typed into a submitted modal, by input custom id."""
    values: dict[str, str] = {}

    def walk(component: Any) -> None:
        if not isinstance(component, dict):
            return
        if "custom_id" in component and "value" in component:
            values[str(component["custom_id"])] = str(component["value"])
        for child in component.get("components") or []:
            walk(child)
        if "component" in component:
            walk(component["component"])

    for component in (data or {}).get("components") or []:
        walk(component)
    return values


def fits_custom_id(form: Form) -> bool:
    return len(FORM_PREFIX + form.custom_id) <= 100


# ---------------------------------------------------------------------------- picker
@dataclass(frozen=True)
class PickState:
    """Where a paper picker stands: the command, its list option and the ids so far."""

    command: str  # "rank standard"
    option: str  # "papers"
    chosen: tuple[int, ...] = ()

    def encode(self) -> str:
        return ":".join(
            (self.command.replace(" ", "."), self.option, ",".join(map(str, self.chosen)))
        )

    @classmethod
    def decode(cls, text: str) -> PickState:
        command, option, chosen = text.split(":")
        ids = tuple(int(x) for x in chosen.split(",") if x)
        return cls(command.replace(".", " "), option, ids)

    def plus(self, number: int) -> PickState:
        return PickState(self.command, self.option, (*self.chosen, number))

    def undo(self) -> PickState:
        return PickState(self.command, self.option, self.chosen[:-1])


class PickSelect(
    discord.ui.DynamicItem[discord.ui.Select[Any]],
    template=r"cb:p:(?P<state>[^:]+:[^:]+:[0-9,]*):(?P<page>\d+)",
):
    """One select menu of the picker (a second one holds papers 26–50)."""

    def __init__(
        self,
        state: PickState,
        page: int,
        options: list[discord.SelectOption] | None = None,
        placeholder: str | None = None,
    ) -> None:
        super().__init__(
            discord.ui.Select(
                custom_id=f"cb:p:{state.encode()}:{page}",
                options=options or [discord.SelectOption(label="…", value="0")],
                placeholder=placeholder,
                min_values=1,
                max_values=1,
            )
        )
        self.state = state

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> PickSelect:
        select = cast("discord.ui.Select[Any]", item)
        return cls(PickState.decode(match["state"]), int(match["page"]), list(select.options))

    async def callback(self, interaction: discord.Interaction) -> None:
        data: dict[str, Any] = dict(interaction.data or {})
        values = list(data.get("values") or [])
        await _bot(interaction).router.on_pick(interaction, self.state, int(values[0]))


class PickButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"cb:(?P<op>[us]):(?P<state>[^:]+:[^:]+:[0-9,]*)",
):
    """The picker's Undo (``u``) and Submit (``s``) buttons."""

    def __init__(self, op: str, state: PickState, *, disabled: bool = False) -> None:
        label, style = (
            ("Undo", discord.ButtonStyle.secondary)
            if op == "u"
            else ("Submit", discord.ButtonStyle.success)
        )
        super().__init__(
            discord.ui.Button(
                label=label,
                style=style,
                custom_id=f"cb:{op}:{state.encode()}",
                disabled=disabled,
            )
        )
        self.op = op
        self.state = state

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> PickButton:
        return cls(match["op"], PickState.decode(match["state"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        router = _bot(interaction).router
        if self.op == "u":
            await router.on_pick_undo(interaction, self.state)
        else:
            await router.on_pick_submit(interaction, self.state)


def picker_view(state: PickState, papers: list[tuple[int, str]]) -> discord.ui.View:
    """Select menus of the papers not chosen yet, plus Undo and Submit."""
    view = discord.ui.View(timeout=None)
    left = [(n, t) for n, t in papers if n not in state.chosen]
    nth = ordinal(len(state.chosen) + 1)
    for page in range(min(2, (len(left) + SELECT_OPTIONS - 1) // SELECT_OPTIONS)):
        chunk = left[page * SELECT_OPTIONS : (page + 1) * SELECT_OPTIONS]
        options = [
            discord.SelectOption(label=f"#{n} {title}"[:SELECT_LABEL_LIMIT], value=str(n))
            for n, title in chunk
        ]
        span = f" (#{chunk[0][0]}–#{chunk[-1][0]})" if len(left) > SELECT_OPTIONS else ""
        view.add_item(PickSelect(state, page, options, placeholder=f"Your {nth} choice{span}"))
    view.add_item(PickButton("u", state, disabled=not state.chosen))
    view.add_item(PickButton("s", state, disabled=not state.chosen))
    return view


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


DYNAMIC_ITEMS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    ActionButton,
    PickSelect,
    PickButton,
)
