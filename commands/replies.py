"""Platform-neutral replies. Handlers return these; adapters render them.

Discord renders a :class:`Reply` as embeds, views and files; Slack as Block Kit and
file uploads; the terminal as plain text (files saved to a folder, paths printed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from pydantic import ConfigDict

from commands.timefmt import has_markers, plain


class Tone(StrEnum):
    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[str]]
    title: str | None = None


@dataclass(frozen=True)
class Section:
    heading: str
    body: str = ""
    fields: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class FileOut:
    # Bytes travel as base64 when a reply is stored (an outbox row).
    __pydantic_config__ = ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")

    name: str
    data: bytes
    mime: str = "application/octet-stream"
    description: str | None = None

    def __post_init__(self) -> None:
        # A file shows instants in the course's zone: no time marker (commands.timefmt)
        # ends up in an export, whichever service wrote it.
        if _MARKER_BYTES.search(self.data) and _is_text(self.mime):
            try:
                text = self.data.decode("utf-8")
            except UnicodeDecodeError:
                return
            object.__setattr__(self, "data", plain(text).encode("utf-8"))
        if self.description and has_markers(self.description):
            object.__setattr__(self, "description", plain(self.description))


#: A time marker's characters, UTF-8 encoded (U+E000..U+E002).
_MARKER_BYTES = re.compile(b"\xee\x80[\x80-\x82]")


def _is_text(mime: str) -> bool:
    return mime.startswith("text/") or mime in ("application/json", "application/xml")


@dataclass(frozen=True)
class Delivery:
    """The reply reports how a mass send went (``batch``: the outbox batch id): the core
    appends "22 of 25 delivered; 3 could not be reached: …" once it has sent them."""

    batch: str
    what: str = "messages"
    #: Said after the list of people not reached ("they can see it with `assignment`").
    hint: str = ""


@dataclass(frozen=True)
class FormField:
    """One text input of a form (Discord modal: label ≤ 45 chars, value ≤ 4000)."""

    name: str  # the command option it fills
    label: str
    long: bool = False  # a paragraph rather than one line
    required: bool = True
    min_length: int = 0
    max_length: int = 4000
    placeholder: str = ""


@dataclass(frozen=True)
class Form:
    """A form that fills in a command's options: a Discord or Slack modal, prompts in
    the terminal. Submitting it runs ``command`` with ``fixed`` plus the typed fields,
    through the same core (and the same validation) as typing the command."""

    title: str  # Slack modal titles: ≤ 24 chars
    command: str
    fields: tuple[FormField, ...]
    fixed: tuple[tuple[str, str], ...] = ()

    @property
    def custom_id(self) -> str:
        """A stable id (survives restarts): ``form:<command>:k=v:k=v``."""
        return ":".join(
            ("form", self.command.replace(" ", "."), *(f"{k}={v}" for k, v in self.fixed))
        )

    @staticmethod
    def parse_custom_id(custom_id: str) -> tuple[str, dict[str, str]]:
        """The command and fixed options of a form's custom id."""
        _, command, *pairs = custom_id.split(":")
        return command.replace(".", " "), dict(p.split("=", 1) for p in pairs)


@dataclass(frozen=True)
class Button:
    """A button: pressing it runs the registered action ``action`` with ``args``, or,
    when it carries a ``form``, opens that form."""

    label: str
    action: str = ""
    args: tuple[str, ...] = ()
    style: str = "secondary"  # primary | secondary | success | danger
    form: Form | None = None

    @property
    def custom_id(self) -> str:
        """A stable id (survives restarts): ``action:arg1:arg2`` (or the form's id)."""
        if self.form is not None:
            return self.form.custom_id
        return ":".join((self.action, *self.args))


@dataclass(frozen=True)
class Reactions:
    """The message takes reactions: each emoji runs ``action`` with ``args`` + emoji.

    ``secret``: each reaction is a private ballot. The action answers with
    ``ReactionFate.HIDE`` and every adapter says on the message what others can see of
    a reaction there (Discord: the bot removes it at once; Slack: reactions are public,
    the buttons are the private way; the terminal: it is taken off)."""

    action: str
    emojis: tuple[str, ...]
    args: tuple[str, ...] = ()
    secret: bool = False


class ReactionFate(StrEnum):
    """What becomes of the reaction that a reply answers. The core says what it wants;
    each adapter does what its platform allows and words the outcome truthfully (a Slack
    bot cannot remove someone else's reaction, so it never claims it did)."""

    STAYS = "stays"  # the reaction stays (an open ballot, a withdrawal, nothing to do)
    HIDE = "hide"  # recorded as a secret ballot: take it off so nobody else sees it
    REFUSE = "refuse"  # it cannot count: take it off


@dataclass
class Reply:
    text: str = ""
    title: str | None = None
    sections: list[Section] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    files: list[FileOut] = field(default_factory=list)
    buttons: list[Button] = field(default_factory=list)
    reactions: Reactions | None = None
    ephemeral: bool = False
    tone: Tone = Tone.INFO
    error_id: str | None = None
    delivery: Delivery | None = None
    #: For the answer to a reaction: what becomes of that reaction.
    reaction_fate: ReactionFate = ReactionFate.STAYS
    #: Nothing to show anyone (a reaction removal that changes nothing).
    silent: bool = False
    #: The event was handled before (a platform's retry): say nothing again.
    duplicate: bool = False
    #: The answer to a reaction that changed something: the outbox row that backs it
    #: (written with the change, held by this process). The adapter sends the answer
    #: itself, then tells the core (:meth:`CommandCore.answered`); after a crash in
    #: between, the dispatcher sends the row instead, so the answer is never lost.
    backup: int | None = None

    @property
    def is_error(self) -> bool:
        return self.tone is Tone.ERROR

    @property
    def says_something(self) -> bool:
        """Whether there is anything to show its reader (not silent, not a repeat)."""
        if self.silent or self.duplicate:
            return False
        return bool(self.text or self.sections or self.tables or self.files or self.buttons)

    @property
    def remove_reaction(self) -> bool:
        """The adapter should take the answered reaction off, where it can."""
        return self.reaction_fate is not ReactionFate.STAYS

    @classmethod
    def error(cls, message: str, *, error_id: str | None = None) -> Reply:
        return cls(text=message, tone=Tone.ERROR, ephemeral=True, error_id=error_id)


def render_text(reply: Reply, *, width: int = 100) -> str:
    """Plain-text rendering, used by the terminal and as the fallback text elsewhere.
    Instants show in the course's zone (time markers become their text: see
    :mod:`commands.timefmt`)."""
    out: list[str] = []
    if reply.title:
        out.append(f"== {reply.title} ==")
    if reply.text:
        out.append(reply.text)
    for sec in reply.sections:
        if sec.heading:
            out.append(f"-- {sec.heading} --")
        if sec.body:
            out.append(sec.body)
        out.extend(f"{k}: {v}" for k, v in sec.fields)
    for table in reply.tables:
        out.append(render_table(table, width=width))
    return plain("\n".join(line for line in out if line is not None).rstrip())


def render_table(table: Table, *, width: int = 100) -> str:
    """A table as aligned plain text (instants in the course's zone: widths are measured
    on what is shown)."""
    cols = [plain(str(c)) for c in table.columns]
    rows = [[plain(str(c)) for c in r] for r in table.rows]
    widths = [len(c) for c in cols]
    for r in rows:
        for i, cell in enumerate(r):
            widths[i] = max(widths[i], len(cell))
    # Cap the widest column so a long title does not push the table off screen.
    while sum(widths) + 2 * (len(widths) - 1) > width and max(widths) > 12:
        widths[widths.index(max(widths))] -= 1

    def fmt(cells: list[str]) -> str:
        parts = []
        for cell, w in zip(cells, widths, strict=True):
            parts.append(cell if len(cell) <= w else cell[: w - 1] + "…")
        return "  ".join(p.ljust(w) for p, w in zip(parts, widths, strict=True)).rstrip()

    lines = []
    if table.title:
        lines.append(plain(table.title))
    lines.append(fmt(cols))
    lines.append("  ".join("-" * w for w in widths))
    lines.extend(fmt(r) for r in rows)
    if not rows:
        lines.append("(none)")
    return "\n".join(lines)


def split_text(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut at line ends when possible
    (a line longer than ``limit`` is cut hard). Adapters use it for their size limits."""
    out: list[str] = []
    current = ""
    for line in text.split("\n"):
        while len(line) > limit:  # one very long line: cut it hard
            if current:
                out.append(current)
                current = ""
            out.append(line[:limit])
            line = line[limit:]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            out.append(current)
            current = line
        else:
            current = candidate
    if current:
        out.append(current)
    return out
