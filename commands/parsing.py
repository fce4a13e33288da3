"""Turns a typed command line (terminal, Slack subcommand) or a mapping of typed
options (Discord) into the command's validated options model.

Grammar: positional values fill the options in declaration order (a list option
takes all remaining positionals); ``name=value`` or ``--name value`` set one by
name; ``--flag`` / ``--no-flag`` set a yes/no option.
"""

from __future__ import annotations

import shlex
from typing import Any

from pydantic import BaseModel, ValidationError

from commands.errors import InvalidInput, UsageError
from commands.registry import Command, OptionSpec

_TYPE_HINTS = {
    "int": "a whole number",
    "date": "a date like 2023-08-30",
    "datetime": "a date and time like 2023-08-27T23:59",
    "time": "a time like 13:00",
    "bool": "yes or no",
    "float": "a number",
}


def split_line(line: str) -> list[str]:
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"Could not read that line ({exc}). Check your quotes.") from exc


def parse_tokens(cmd: Command, tokens: list[str]) -> BaseModel:
    by_name = {s.name: s for s in cmd.specs}
    values: dict[str, Any] = {}
    positionals: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        name: str | None = None
        value: Any = None
        if tok.startswith("--") and len(tok) > 2:
            body = tok[2:]
            if "=" in body:
                name, value = body.split("=", 1)
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
                    raise UsageError(f"`--{name}` needs a value. Usage: `{cmd.usage()}`")
                value = tokens[i + 1]
                i += 1
        elif "=" in tok and tok.split("=", 1)[0].replace("-", "_") in by_name:
            name, value = tok.split("=", 1)
        if name is None:
            positionals.append(tok)
        else:
            key = name.replace("-", "_")
            if key not in by_name:
                raise UsageError(f"`{cmd.name}` has no option `{name}`. Usage: `{cmd.usage()}`")
            spec = by_name[key]
            if spec.many:
                values.setdefault(key, []).extend(value.replace(",", " ").split())
            else:
                values[key] = value
        i += 1
    _fill_positionals(cmd, values, positionals)
    return validate(cmd, values)


def _fill_positionals(cmd: Command, values: dict[str, Any], positionals: list[str]) -> None:
    free = [s for s in cmd.specs if s.name not in values]
    queue = list(positionals)
    for spec in free:
        if not queue:
            break
        if spec.many:
            values[spec.name] = [v for tok in queue for v in tok.replace(",", " ").split()]
            queue = []
        elif spec.is_flag:
            continue
        else:
            values[spec.name] = queue.pop(0)
    if queue:
        extra = " ".join(queue)
        raise UsageError(f"`{cmd.name}` got more than it takes: `{extra}`. Usage: `{cmd.usage()}`")


def validate(cmd: Command, values: dict[str, Any]) -> BaseModel:
    try:
        return cmd.options.model_validate(values)
    except ValidationError as exc:
        raise _friendly(cmd, exc, values) from None


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
            problems.append(f"`{name}` is not an option of `{cmd.name}`")
            continue
        got = err.get("input")
        problems.append(f"`{name}` {_expectation(spec, err)} (you gave `{got}`)")
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
    return f"{spec.description} — {kind}{many}{default}"
