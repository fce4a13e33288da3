"""The command registry: every command is declared once, here, and every adapter
(terminal, Discord, Slack) builds its own surface from it.

A declaration is a name, a description, who may run it, an options model (a
pydantic model whose fields are the command's typed options, in positional order)
and an async handler ``(ctx, options) -> Reply``.
"""

from __future__ import annotations

import difflib
import enum
import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict
from pydantic.fields import FieldInfo

from commands.errors import UsageError

if TYPE_CHECKING:
    from commands.context import Context
    from commands.replies import Form, Reply
    from db.models import Person


class Access(IntEnum):
    """Who may run a command, from least to most privileged."""

    ANYONE = 0  # anyone in the course's workspace, registered or not
    MEMBER = 1  # a person on the roster whose chat identity is linked
    STAFF = 2  # a TA or an instructor
    INSTRUCTOR = 3

    @property
    def label(self) -> str:
        return {0: "anyone", 1: "students", 2: "TAs and instructors", 3: "instructors"}[self]

    def allows(self, person: Person | None) -> bool:
        from db.models import Role

        if self is Access.ANYONE:
            return True
        if person is None:
            return False
        if self is Access.MEMBER:
            return True
        if self is Access.STAFF:
            return person.role in (Role.INSTRUCTOR, Role.TA)
        return person.role is Role.INSTRUCTOR


class NoOptions(BaseModel):
    """For commands that take no options."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Complete:
    """Marks an option whose values the adapters can autocomplete (e.g. ``"paper"``)."""

    kind: str


@dataclass(frozen=True)
class LongText:
    """Marks a free-text option best typed in a paragraph box (a modal on Discord/Slack)."""


@dataclass(frozen=True)
class Ref:
    """Marks an option that names a record in a small grammar of its own (a battle: ``4``,
    ``#4`` or its id ``B4``), typed as text everywhere (a Discord string option).
    ``read(value, what)`` checks and reads it, under the number rules of docs/input.md
    rather than the text rules, raising :class:`~commands.errors.InvalidInput`; the
    option's description says what it takes. The handler then looks the record up."""

    read: Callable[[Any, str], Any]


Handler = Callable[["Context", Any], Awaitable["Reply"]]
#: A command's slow first step (see Command.prepare): any result.
Preparer = Callable[["Context", Any], Awaitable[Any]]
#: Whether a prepared result still holds (see Command.check).
Checker = Callable[["Context", Any, Any, bool], Awaitable[Any]]
ActionHandler = Callable[["Context", tuple[str, ...], str | None], Awaitable["Reply"]]


@dataclass(frozen=True)
class OptionSpec:
    """One option of a command, as the adapters and the parser see it."""

    name: str
    type: type
    required: bool
    description: str
    default: Any
    many: bool = False
    choices: tuple[str, ...] = ()
    complete: str | None = None
    long: bool = False
    #: Bounds from the field (``ge``/``le``, ``min_length``/``max_length``), if any.
    ge: float | None = None
    le: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    #: How a reference option is read (:class:`Ref`); None for every other option.
    ref: Ref | None = None

    @property
    def is_flag(self) -> bool:
        return self.type is bool

    @property
    def is_text(self) -> bool:
        """Free text (not a choice, a list, a number or a reference)."""
        return self.type is str and not self.choices and not self.many and self.ref is None

    @property
    def text_limit(self) -> int:
        """The most characters this text option takes (docs/input.md): the field's own
        ``max_length``, else LONG_TEXT_MAX for paragraphs and SHORT_TEXT_MAX for one
        line, never more than the platforms carry."""
        from commands.text import LONG_TEXT_MAX, SHORT_TEXT_MAX

        default = LONG_TEXT_MAX if self.long else SHORT_TEXT_MAX
        return min(self.max_length or default, LONG_TEXT_MAX)


def _option_specs(model: type[BaseModel]) -> list[OptionSpec]:
    specs = []
    for name, info in model.model_fields.items():
        specs.append(_spec(name, info))
    return specs


def _unannotated(ann: Any, metadata: list[Any]) -> Any:
    """``Annotated[T, ...]`` → T, adding its metadata (and a Field's) to ``metadata``."""
    while get_origin(ann) is typing.Annotated:
        ann, *extra = get_args(ann)
        for m in extra:
            metadata.extend(m.metadata if isinstance(m, FieldInfo) else [m])
    return ann


def _spec(name: str, info: FieldInfo) -> OptionSpec:
    metadata = list(info.metadata)
    ann = _unannotated(info.annotation, metadata)
    many = False
    choices: tuple[str, ...] = ()
    origin = get_origin(ann)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        args = [a for a in get_args(ann) if a is not type(None)]
        ann = _unannotated(args[0], metadata) if len(args) == 1 else str
        origin = get_origin(ann)
    if origin in (list, tuple):
        many = True
        ann = _unannotated(get_args(ann)[0], metadata)
        origin = get_origin(ann)
    if origin is Literal:
        choices = tuple(str(a) for a in get_args(ann))
        ann = str
    elif isinstance(ann, type) and issubclass(ann, enum.Enum):
        choices = tuple(str(m.value) for m in ann)
        ann = str
    complete = next((m.kind for m in metadata if isinstance(m, Complete)), None)
    long = any(isinstance(m, LongText) for m in metadata)
    ref = next((m for m in metadata if isinstance(m, Ref)), None)
    bound = {k: getattr(m, k) for m in metadata for k in ("ge", "gt", "le", "lt") if hasattr(m, k)}
    ge = bound.get("ge", None if "gt" not in bound else bound["gt"] + 1)
    le = bound.get("le", None if "lt" not in bound else bound["lt"] - 1)
    sizes = {
        k: getattr(m, k) for m in metadata for k in ("min_length", "max_length") if hasattr(m, k)
    }
    return OptionSpec(
        name=name,
        type=ann if isinstance(ann, type) else str,
        required=info.is_required(),
        description=info.description or name.replace("_", " "),
        default=None if info.is_required() else info.get_default(call_default_factory=True),
        many=many,
        choices=choices,
        complete=complete,
        long=long,
        ge=ge,
        le=le,
        min_length=sizes.get("min_length"),
        max_length=sizes.get("max_length"),
        ref=ref,
    )


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]
    description: str
    handler: Handler
    options: type[BaseModel]
    access: Access = Access.MEMBER
    ephemeral: bool = False
    examples: tuple[str, ...] = ()
    specs: tuple[OptionSpec, ...] = field(default=())
    topic: str = ""
    #: Options that Discord and Slack collect in a modal when they are not given inline
    #: (long free text: a question and its answer, a justification).
    form: tuple[str, ...] = ()
    #: When the command takes a file (a critique PDF), what the upload is; Discord shows
    #: a file option, Slack takes a file shared with the command, the shell `:attach`.
    attachment: str | None = None
    #: A read-only lookup (``schedule``, ``papers``): answered privately, with a
    #: "Share in channel" button, so fifty students asking do not flood the channel.
    share: bool = False
    #: Only reads the database (``whoami``, ``rank show``): on SQLite it runs beside the
    #: one writer on its own snapshot (WAL), never queued behind writes. A lookup
    #: (``share``) is one too. A test runs every such command and checks it writes nothing.
    reads: bool = False
    #: Slow work done first, on a read snapshot outside the write queue (the solver):
    #: ``prepare(ctx, opts)``'s result reaches the handler as ``ctx.prepared``, and the
    #: handler checks that what it was computed from has not changed meanwhile.
    prepare: Preparer | None = None
    #: ``check(ctx, opts, prepared, final)``, run on a fresh read snapshot after
    #: ``prepare``, outside the write queue too: raises
    #: :class:`~commands.errors.PreparedStale` when the data changed meanwhile (the core
    #: prepares again), or returns what reaches the handler as ``ctx.prepared``. On the
    #: last attempt (``final``) it must not raise: it keeps the result and says what
    #: changed, so the command ends however busy the course is.
    check: Checker | None = None

    def form_spec(self, fixed: dict[str, str] | None = None) -> Form:
        """The modal for this command's ``form`` options (see :class:`Form`)."""
        from commands.replies import Form, FormField

        fields = []
        for spec in self.specs:
            if spec.name in self.form:
                label = spec.description[:1].upper() + spec.description[1:45]
                fields.append(
                    FormField(
                        spec.name,
                        label[:45],
                        long=spec.long,
                        required=spec.required,
                        max_length=spec.text_limit if spec.type is str else 4000,
                    )
                )
        title = self.description
        if len(title) > 24:  # Slack's limit for modal titles; cut at a word
            title = title[:24].rsplit(" ", 1)[0]
        return Form(title, self.name, tuple(fields), tuple((fixed or {}).items()))

    @property
    def name(self) -> str:
        return " ".join(self.path)

    @property
    def group(self) -> str:
        """The first word: Discord's command group, Slack's subcommand."""
        return self.path[0]

    @property
    def rest(self) -> OptionSpec | None:
        """The option that takes the rest of a typed line, quoted or not
        (docs/input.md): the last paragraph (LongText) option, else the last option when
        it is one-line free text. Shown as ``<reason…>`` in the usage line."""
        long = [s for s in self.specs if s.long and s.is_text]
        if long:
            return long[-1]
        plain = [s for s in self.specs if not s.is_flag]
        return plain[-1] if plain and plain[-1].is_text else None

    def usage(self) -> str:
        parts = [self.name]
        rest = self.rest
        for s in self.specs:
            meta = s.name.upper() if not s.choices else "|".join(s.choices)
            if s is rest:
                parts.append(f"<{s.name}…>" if s.required else f"[{s.name}…]")
            elif s.is_flag:
                parts.append(f"[--{s.name}]")
            elif s.many:
                parts.append(f"<{s.name}...>" if s.required else f"[{s.name}...]")
            elif s.required:
                parts.append(f"<{s.name}>")
            else:
                parts.append(f"[{s.name}={meta}]" if s.choices else f"[{s.name}]")
        return " ".join(parts)


@dataclass(frozen=True)
class Action:
    """A button press or a reaction: ``name`` is the first part of the custom id."""

    name: str
    handler: ActionHandler | None
    access: Access = Access.ANYONE
    ephemeral: bool = True
    #: A button that runs a command line (``assign changes=minimal``): pressing it goes
    #: through the core like the typed command, with its access check and its slow
    #: step (``prepare``) outside the write transaction.
    runs: str | None = None


def _options_model(fn: Handler) -> type[BaseModel]:
    """The options model: the annotation of the handler's second parameter."""
    params = list(inspect.signature(fn).parameters.values())
    if len(params) < 2:
        return NoOptions
    ann = params[1].annotation
    if isinstance(ann, str):  # postponed annotations: resolve this one only
        ann = eval(ann, fn.__globals__)  # the same evaluation typing.get_type_hints does
    if ann is inspect.Parameter.empty or ann is BaseModel:
        return NoOptions
    if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
        raise TypeError(f"{fn.__name__}: options must be a pydantic model, not {ann!r}")
    return ann


class Registry:
    def __init__(self) -> None:
        self.commands: dict[tuple[str, ...], Command] = {}
        self.actions: dict[str, Action] = {}

    # -- declaration -------------------------------------------------------------------
    def command(
        self,
        name: str,
        description: str,
        *,
        access: Access = Access.MEMBER,
        ephemeral: bool = False,
        examples: Iterable[str] = (),
        topic: str | None = None,
        form: Iterable[str] = (),
        attachment: str | None = None,
        share: bool = False,
        reads: bool = False,
        prepare: Preparer | None = None,
        check: Checker | None = None,
    ) -> Callable[[Handler], Handler]:
        path = tuple(name.split())

        def decorate(fn: Handler) -> Handler:
            model = _options_model(fn)
            if path in self.commands:
                raise ValueError(f"command {name!r} declared twice")
            self.commands[path] = Command(
                path=path,
                description=description,
                handler=fn,
                options=model,
                access=access,
                ephemeral=ephemeral or share,  # a lookup answers privately (see share)
                examples=tuple(examples),
                specs=tuple(_option_specs(model)),
                topic=topic or path[0],
                form=tuple(form),
                attachment=attachment,
                share=share,
                reads=reads or share,
                prepare=prepare,
                check=check,
            )
            return fn

        return decorate

    def action(
        self, name: str, *, access: Access = Access.ANYONE, ephemeral: bool = True
    ) -> Callable[[ActionHandler], ActionHandler]:
        def decorate(fn: ActionHandler) -> ActionHandler:
            if name in self.actions:
                raise ValueError(f"action {name!r} declared twice")
            self.actions[name] = Action(name, fn, access, ephemeral)
            return fn

        return decorate

    def command_button(self, name: str, line: str, *, access: Access = Access.ANYONE) -> None:
        """Declare the action ``name``: a button that runs the command ``line``, its
        arguments (``Button(..., "name", ("5",))``) appended as words."""
        if name in self.actions:
            raise ValueError(f"action {name!r} declared twice")
        self.actions[name] = Action(name, None, access, runs=line)

    # -- lookup ------------------------------------------------------------------------
    def __iter__(self) -> typing.Iterator[Command]:
        return iter(sorted(self.commands.values(), key=lambda c: c.path))

    def get(self, name: str) -> Command:
        return self.commands[tuple(name.split())]

    def topics(self) -> dict[str, list[Command]]:
        """Commands by topic, for help pages (``course``, ``rank``, ``battle``...)."""
        out: dict[str, list[Command]] = {}
        for cmd in self:
            out.setdefault(cmd.topic, []).append(cmd)
        return out

    def match(self, tokens: list[str]) -> tuple[Command, list[str]]:
        """The longest command path that prefixes ``tokens``, and the rest."""
        if not tokens:
            raise UsageError("Type a command, for example `help`.")
        words = [t.lower() for t in tokens]
        for n in range(min(len(words), 3), 0, -1):
            cmd = self.commands.get(tuple(words[:n]))
            if cmd is not None:
                return cmd, tokens[n:]
        raise UsageError(self._unknown_message(words))

    def _unknown_message(self, words: list[str]) -> str:
        from commands.text import shown

        words = [shown(w, 40) for w in words[:2]]
        typed = " ".join(words)
        names = [c.name for c in self]
        subs = [c.name for c in self if c.path[0] == words[0]]
        if subs:
            return (
                f"`{typed}` is not a command. `{words[0]}` has: "
                + ", ".join(f"`{s}`" for s in subs)
                + ". Type `help` for the full list."
            )
        close = difflib.get_close_matches(words[0], sorted({c.group for c in self}), n=1)
        close = close or difflib.get_close_matches(typed, names, n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        return f"Unknown command `{words[0]}`.{hint} Type `help` to see what you can run."

    def visible_to(self, person: Person | None) -> list[Command]:
        return [c for c in self if c.access.allows(person)]


#: The registry every feature module declares its commands in.
registry = Registry()
