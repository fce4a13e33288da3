"""Turns a typed command line (terminal, Slack subcommand) or a mapping of typed
options (Discord) into the command's validated options model.

Grammar (docs/input.md): positional values fill the options in declaration order (a
list option takes all remaining positionals); ``name=value`` or ``--name value`` set
one by name; ``--flag`` / ``--no-flag`` set a yes/no option. Quotes (``"…"``, ``'…'``,
``“…”``) group words; a quote opens only at the start of a word, after ``=`` or right
after a closing quote (so ``paper's`` is one word, and ``shlex.quote`` output reads back). The command's rest option (:attr:`Command.rest`, shown as
``<reason…>``) takes the rest of the line as typed, quoted or not. A quoted value stays
whole inside a list option of text. Every value then goes through :func:`validate`:
numbers are plain ASCII digits in range, text is within its limit and free of control
characters (:mod:`commands.text`), an option that names a record (a battle: ``4``,
``#4``, ``B4``) is read by its own rule (:class:`~commands.registry.Ref`), whatever the
platform.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from commands.errors import CourseBotError, InvalidInput, UsageError
from commands.registry import Command, OptionSpec
from commands.text import (
    MAX_ID,
    MAX_LINE,
    check_text,
    decimal_number,
    shown,
    visible_length,
    whole_number,
)

_TYPE_HINTS = {
    "int": "a whole number",
    "date": "a date like 2023-08-30",
    "datetime": "a date and time like 2023-08-27T23:59",
    "time": "a time like 13:00",
    "bool": "yes or no",
    "float": "a number",
}

#: Opening quote → closing quote.
_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "\u00ab": "\u00bb"}


class Token(str):
    """A word of a typed line that remembers where it stood, so the rest option can take
    the rest of the line as typed, and whether it was quoted."""

    line: str
    start: int
    end: int
    quoted: bool  # some of it was inside quotes
    whole: bool  # the word is one quoted stretch, quotes included ("like this")
    unclosed: bool  # a quote opened in it was never closed (it runs to the line's end)

    def __new__(
        cls,
        text: str,
        line: str,
        span: tuple[int, int],
        quoted: bool = False,
        whole: bool = False,
        unclosed: bool = False,
    ) -> Token:
        tok = super().__new__(cls, text)
        tok.line, (tok.start, tok.end) = line, span
        tok.quoted, tok.whole, tok.unclosed = quoted, whole, unclosed
        return tok


def check_line(line: str) -> None:
    if len(line) > MAX_LINE:
        raise UsageError(
            f"That line is {len(line):,} characters long; the limit is {MAX_LINE:,}.",
            hint="Shorten it (long text fits in the command's form on Discord and Slack).",
        )


def tokenize(line: str) -> list[Token]:
    """The words of ``line``, in one pass (linear in its length)."""
    check_line(line)
    out: list[Token] = []
    n = len(line)
    i = 0
    while i < n:
        if line[i].isspace():
            i += 1
            continue
        start = i
        buf: list[str] = []
        quoted = unclosed = False
        stretches = 0
        closed_at = -1  # where the last quoted stretch ended (`'a'"b"` joins, as in sh)
        while i < n and not line[i].isspace():
            ch = line[i]
            close = _QUOTES.get(ch)
            if close is not None and (i in (start, closed_at) or line[i - 1] == "="):
                quoted = True
                stretches += 1
                i += 1
                while i < n and line[i] != close:
                    if ch == '"' and line[i] == "\\" and i + 1 < n and line[i + 1] in '"\\':
                        i += 1
                    buf.append(line[i])
                    i += 1
                if i >= n:
                    unclosed = True
                i += 1  # past the closing quote
                closed_at = i
                continue
            if ch == "\\" and i + 1 < n and (line[i + 1] in "\"'\\" or line[i + 1].isspace()):
                i += 1
                ch = line[i]
            buf.append(ch)
            i += 1
        whole = quoted and not unclosed and stretches == 1 and line[start] in _QUOTES
        whole = whole and i - 1 > start and line[i - 1] == _QUOTES[line[start]]
        out.append(Token("".join(buf), line, (start, min(i, n)), quoted, whole, unclosed))
    return out


def split_line(line: str) -> list[str]:
    """The words of a typed line (each a :class:`Token`)."""
    return list(tokenize(line))


def list_items(spec: OptionSpec, text: str) -> list[str]:
    """A list typed into one text box (a Discord option, a modal field): its words,
    read as a typed line reads them (a quoted value of a text list stays whole)."""
    return [item for tok in tokenize(text) for item in _items(spec, tok)]


def _unclosed(tok: str) -> UsageError:
    return UsageError(
        f"A quote in `{shown(tok, 40)}` is never closed. Check your quotes.",
    )


def _named_key(tok: str, by_name: dict[str, OptionSpec]) -> str | None:
    """The option a word sets by name (``name=value``, ``--name``), if any."""
    if tok.startswith("--") and len(tok) > 2:
        body = tok[2:].split("=", 1)[0]
        key = body.replace("-", "_")
        if key.startswith("no_") and key[3:] in by_name and by_name[key[3:]].is_flag:
            return key[3:]
        return key
    if "=" in tok:
        key = tok.split("=", 1)[0].replace("-", "_")
        return key if key in by_name else None
    return None


def _flag(tok: str, by_name: dict[str, OptionSpec]) -> str | None:
    """The yes/no option a plain ``--flag`` / ``--no-flag`` word sets, if it is one."""
    if not tok.startswith("--") or "=" in tok or getattr(tok, "quoted", False):
        return None
    key = tok[2:].replace("-", "_")
    key = key[3:] if key.startswith("no_") and key[3:] in by_name else key
    spec = by_name.get(key)
    return key if spec is not None and spec.is_flag else None


def _items(spec: OptionSpec, tok: str) -> list[str]:
    """The values one word gives a list option: split at commas and spaces, except a
    quoted value of a text list (``grid="1 2; 3 4"``), which stays whole."""
    if getattr(tok, "quoted", False) and spec.type is str:
        return [str(tok)]
    return tok.replace(",", " ").split()


def _rest_of_line(tokens: Sequence[str], i: int) -> str:
    tok = tokens[i]
    if i == len(tokens) - 1 and not getattr(tok, "unclosed", False):
        return str(tok)
    if isinstance(tok, Token):
        last = tokens[-1]
        end = last.end if isinstance(last, Token) else len(tok.line)
        return tok.line[tok.start : end].strip()
    return " ".join(tokens[i:])


def parse_tokens(cmd: Command, tokens: Sequence[str]) -> BaseModel:
    by_name = {s.name: s for s in cmd.specs}
    rest = cmd.rest
    named = {key for tok in tokens if (key := _named_key(tok, by_name)) is not None}
    free = [s for s in cmd.specs if s.name not in named and not s.is_flag]
    after_rest = rest is not None and any(
        not s.is_flag for s in cmd.specs[cmd.specs.index(rest) + 1 :]
    )
    values: dict[str, Any] = {}
    extra: list[str] = []
    slot = 0  # the next free option a positional value fills
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        name: str | None = None
        value: Any = None
        if tok.startswith("--") and len(tok) > 2:
            body = tok[2:]
            if "=" in body:
                name, value = body.split("=", 1)
                value = _retag(tok, value)
            else:
                name = body
                neg = name.startswith("no-") and name[3:].replace("-", "_") in by_name
                key = (name[3:] if neg else name).replace("-", "_")
                spec = by_name.get(key)
                if spec is not None and spec.is_flag:
                    values[key] = not neg
                    i += 1
                    continue
                if i + 1 >= len(tokens):
                    raise UsageError(f"`--{shown(name)}` needs a value. Usage: `{cmd.usage()}`")
                i += 1
                value = tokens[i]
        elif "=" in tok and tok.split("=", 1)[0].replace("-", "_") in by_name:
            name, value = tok.split("=", 1)
            value = _retag(tok, value)
        if name is not None:
            key = name.replace("-", "_")
            if key not in by_name:
                raise UsageError(
                    f"`{cmd.name}` has no option `{shown(name)}`. Usage: `{cmd.usage()}`"
                )
            if getattr(value, "unclosed", False) and by_name[key] is not rest:
                raise _unclosed(value)
            spec = by_name[key]
            if spec.many:
                values.setdefault(key, []).extend(_items(spec, value))
            else:
                values[key] = str(value)
            i += 1
            continue
        spec = free[slot] if slot < len(free) else None
        if spec is not None and spec is rest and not (tok_whole(tok) and after_rest):
            end = len(tokens)
            while end - 1 > i and _flag(tokens[end - 1], by_name) is not None:
                end -= 1  # `--flag` words at the very end still count as flags
                values[_flag(tokens[end], by_name) or ""] = not tokens[end].startswith("--no-")
            values[spec.name] = _rest_of_line(tokens[:end], i)
            break
        if getattr(tok, "unclosed", False):
            raise _unclosed(tok)
        if spec is None:
            extra.append(tok)
        elif spec.many:
            values.setdefault(spec.name, []).extend(_items(spec, tok))
        else:
            values[spec.name] = str(tok)
            slot += 1
        i += 1
    if extra:
        raise UsageError(
            f"`{cmd.name}` got more than it takes: `{shown(' '.join(extra))}`. "
            f"Usage: `{cmd.usage()}`"
        )
    return validate(cmd, values)


def tok_whole(tok: str) -> bool:
    return bool(getattr(tok, "whole", False))


def _retag(tok: str, value: str) -> str:
    """``name="a b"``: the value keeps the word's quoting (for lists, the rest option)."""
    if isinstance(tok, Token):
        return Token(value, tok.line, (tok.start, tok.end), tok.quoted, False, tok.unclosed)
    return value


# ----------------------------------------------------------------------------- forms


def missing_form_options(cmd: Command, tokens: Sequence[str]) -> list[str]:
    """The command's form options (the long text Discord and Slack collect in a modal)
    when the typed words give none of them, else ``[]``, read with this grammar:
    ``critique submit 5`` → its form; ``critique submit 5 answer=...``, or a line whose
    positional words already reach the form's options, is parsed as typed."""
    by_name = {s.name: s for s in cmd.specs}
    # A form opens by itself only when the command cannot run without it: a command
    # whose form options are all optional (`intro`, which updates what is given) runs,
    # and offers its form as a button.
    form = [name for name in cmd.form if name in by_name and by_name[name].required]
    if not form:
        return []
    named: set[str] = set()
    positionals = 0
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        key = _named_key(tok, by_name)
        if key is None:
            positionals += 1
        else:
            named.add(key)
            if tok.startswith("--") and "=" not in tok and _flag(tok, by_name) is None:
                i += 1  # `--name value`: the next word is its value
        i += 1
    if any(name in named for name in form):
        return []
    free = [s for s in cmd.specs if s.name not in named and s.name not in form and not s.is_flag]
    if positionals > len(free) and not any(s.many for s in free):
        return []
    return form


def line_with(line: str, values: dict[str, object]) -> str:
    """``line`` with ``name=value`` words appended, quoted so that :func:`tokenize`
    reads each value back whole (a submitted form's fields after the typed command)."""
    words = [line] + [f"{name}={shlex.quote(str(value))}" for name, value in values.items()]
    return " ".join(w for w in words if w)


# ----------------------------------------------------------------------------- validation


def validate(cmd: Command, values: dict[str, Any]) -> BaseModel:
    """The options model from ``values`` (typed words or a platform's typed options),
    after the input rules of :mod:`commands.text` (numbers, text, limits)."""
    specs = {s.name: s for s in cmd.specs}
    checked = dict(values)
    problems: list[str] = []
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None or value is None:
            continue
        try:
            if spec.many and isinstance(value, list | tuple):
                checked[name] = [_check(spec, v) for v in value]
            else:
                checked[name] = _check(spec, value)
        except CourseBotError as err:
            problems.append(err.message.rstrip("."))
    if problems:
        raise InvalidInput("; ".join(dict.fromkeys(problems)) + f". Usage: `{cmd.usage()}`")
    try:
        return cmd.options.model_validate(checked)
    except ValidationError as exc:
        raise _friendly(cmd, exc, checked) from None


def _check(spec: OptionSpec, value: Any) -> Any:
    what = f"`{spec.name}`"
    if spec.ref is not None:  # a reference (a battle: 4, #4, B4) reads itself
        return spec.ref.read(value, what)
    if spec.type is int and not spec.choices and not isinstance(value, str | int | float):
        return value  # pydantic says what is wrong
    if spec.type is int and not spec.choices:
        if isinstance(value, str) and (spec.complete or "").startswith("paper"):
            value = value.strip().removeprefix("#")  # `#5`, as a paper is printed
        low = int(spec.ge) if spec.ge is not None else 0
        high = int(min(spec.le, MAX_ID)) if spec.le is not None else MAX_ID
        return whole_number(value, what=what, low=low, high=high)
    if spec.type is float and not spec.choices and isinstance(value, str | int | float):
        return decimal_number(value, what=what, low=spec.ge, high=spec.le)
    if isinstance(value, str):
        long = spec.long and spec.is_text
        if long:
            value = value.replace("\r\n", "\n")
        check_text(value, what=what, limit=spec.text_limit, multiline=long)
        if value.strip() and not visible_length(value):  # blank text: the handler says
            raise InvalidInput(f"{what} has only invisible characters")
        if spec.min_length and visible_length(value) < spec.min_length:
            raise InvalidInput(
                f"{what} needs at least {spec.min_length} visible characters "
                f"(it has {visible_length(value)})"
            )
    return value


def _friendly(cmd: Command, exc: ValidationError, values: dict[str, Any]) -> UsageError:
    specs = {s.name: s for s in cmd.specs}
    problems = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        name = loc[0] if loc else ""
        spec = specs.get(name)
        if err["type"] == "missing":
            problems.append(f"`{name}` is missing")
            continue
        if err["type"] == "extra_forbidden":
            problems.append(f"`{shown(name)}` is not an option of `{cmd.name}`")
            continue
        got = err.get("input")
        problems.append(f"`{name}` {_expectation(spec, err)} (you gave `{shown(got)}`)")
    message = "; ".join(dict.fromkeys(problems))
    return InvalidInput(f"{message}. Usage: `{cmd.usage()}`")


def _expectation(spec: OptionSpec | None, err: Any) -> str:
    if spec is not None and spec.choices:
        return "must be one of " + ", ".join(spec.choices)
    if spec is not None:
        kind = _TYPE_HINTS.get(spec.type.__name__)
        if kind and err["type"].endswith(("_parsing", "_type", "_from_datetime_parsing")):
            return f"must be {kind}"
    msg = str(err.get("msg", "is not valid"))
    msg = msg.removeprefix("Value error, ")
    return msg[0].lower() + msg[1:] if msg else "is not valid"


def describe_option(spec: OptionSpec) -> str:
    kind = _TYPE_HINTS.get(spec.type.__name__, "text")
    if spec.choices:
        kind = "one of " + ", ".join(spec.choices)
    many = " (one or more)" if spec.many else ""
    default = (
        "" if spec.required or spec.default in (None, [], False) else f"; default {spec.default}"
    )
    if spec.ref is not None:  # its description says what names the record
        return f"{spec.description}{default}"
    return f"{spec.description} — {kind}{many}{default}"
