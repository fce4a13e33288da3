"""What the bot accepts as typed input, on every platform, and how it shows user text
back. The rules (docs/input.md):

- a whole number is plain ASCII digits (no sign, separator, decimal point, or other
  script's digits) within a stated range: ``[0, MAX_ID]`` unless the option says less;
- free text has a length limit no higher than the platforms carry (LONG_TEXT_MAX for
  paragraphs, SHORT_TEXT_MAX for one-line options unless the option says otherwise),
  is refused when longer (never cut), and carries no control characters (newline and
  tab only in paragraphs);
- invisible characters (spaces, zero-width characters, bidi marks) do not count
  toward a minimum length;
- user text echoed in a reply goes through :func:`shown`, which escapes control and
  bidi characters (``\\u202E``) so a reply can not display reversed or broken.
"""

from __future__ import annotations

import re
import unicodedata

from commands.errors import InvalidInput
from commands.timefmt import TIME_MARKER

#: The largest id or count an option takes unless it says less (a 32-bit SQL integer).
MAX_ID = 2**31 - 1
#: Paragraph options (LongText): Slack's plain-text inputs carry 3000, Discord's 4000.
LONG_TEXT_MAX = 3000
#: One-line text options, unless the option's own ``max_length`` says otherwise.
SHORT_TEXT_MAX = 300
#: A typed command line longer than this is refused before it is read.
MAX_LINE = 8000
#: How much of a user's token an error message echoes.
ECHO_MAX = 80

_DIGITS = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
#: Characters that take no room but are not in the Cf/space categories.
_BLANKS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f\u180e")


def _escaped(ch: str) -> str:
    code = ord(ch)
    return f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}"


def _hidden(ch: str) -> bool:
    """A character that should never be shown raw: controls, format characters (bidi
    overrides, zero-width), surrogates, private use, line and paragraph separators."""
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def shown(text: object, limit: int = ECHO_MAX) -> str:
    """User text made safe to echo: control, bidi and other invisible format characters
    are written as ``\\u202E``; the result is cut to about ``limit`` characters."""
    s = str(text)
    cut = len(s) > limit
    if cut:
        s = s[:limit]
    out = "".join(_escaped(c) if _hidden(c) else c for c in s)
    return out + "…" if cut else out


def safe_message(text: str) -> str:
    """A whole message that may quote user text (an error naming a token): every hidden
    character but newline and tab written as ``\u202e``, nothing cut. The bot's own time
    markers (:mod:`commands.timefmt`; user text is echoed through :func:`shown`, which
    escapes their characters) stay, for each platform to show the instant."""
    out: list[str] = []
    pos = 0
    for mark in TIME_MARKER.finditer(text):
        out += [_safe(text[pos : mark.start()]), mark.group(0)]
        pos = mark.end()
    out.append(_safe(text[pos:]))
    return "".join(out)


def _safe(text: str) -> str:
    return "".join(_escaped(c) if c not in "\n\t" and _hidden(c) else c for c in text)


def invisible(ch: str) -> bool:
    """Takes no visible room: whitespace, zero-width and bidi marks, fillers."""
    if ch.isspace() or ch in _BLANKS:
        return True
    code = ord(ch)
    if 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF:  # variation selectors
        return True
    return unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp")


def visible_length(text: str) -> int:
    """How many characters of ``text`` are visible (what a minimum length counts)."""
    return sum(1 for ch in text if not invisible(ch))


def forbidden_char(text: str, *, multiline: bool = False) -> tuple[int, str] | None:
    """The first character that is never stored: a C0/C1 control (newline and tab are
    allowed in ``multiline`` text), a lone surrogate or a non-character; else None."""
    for i, ch in enumerate(text):
        code = ord(ch)
        if code < 0x20 or 0x7F <= code <= 0x9F:
            if multiline and ch in "\n\t":
                continue
            return i, ch
        if 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF):
            return i, ch
    return None


def check_text(
    text: str,
    *,
    what: str,
    limit: int = SHORT_TEXT_MAX,
    multiline: bool = False,
    min_visible: int = 0,
) -> str:
    """``text`` if it may be stored; otherwise :class:`InvalidInput` saying why (its
    length and the limit, the control character, or too few visible characters)."""
    if len(text) > limit:
        raise InvalidInput(
            f"{what} is {len(text):,} characters long; the limit is {limit:,}.",
            hint="Shorten it; nothing was cut or saved.",
        )
    bad = forbidden_char(text, multiline=multiline)
    if bad is not None:
        i, ch = bad
        raise InvalidInput(
            f"{what} contains the control character `{_escaped(ch)}` "
            f"(character {i + 1}); remove it and try again."
        )
    if min_visible and visible_length(text) < min_visible:
        raise InvalidInput(
            f"{what} needs at least {min_visible} visible characters "
            f"(it has {visible_length(text)})."
        )
    return text


def whole_number(token: object, *, what: str, low: int = 0, high: int = MAX_ID) -> int:
    """A plain ASCII decimal within ``[low, high]``, or :class:`InvalidInput` naming the
    token and the range. Already-typed ints (Discord options) are range-checked only."""
    if isinstance(token, bool):
        raise InvalidInput(f"{what} must be a whole number (you gave `{shown(token)}`).")
    if isinstance(token, float) and token.is_integer():
        token = int(token)
    if isinstance(token, int):
        value = token
    else:
        s = str(token)
        if not _DIGITS.fullmatch(s):
            raise InvalidInput(
                f"{what} must be a whole number written with the digits 0-9 only "
                f"(you gave `{shown(s)}`)."
            )
        digits = s.lstrip("0") or "0"
        if len(digits) > len(str(high)) + 1:  # far too large: do not convert
            raise InvalidInput(_range(what, low, high, shown(s, 24)))
        value = int(digits)
    if not low <= value <= high:
        raise InvalidInput(_range(what, low, high, shown(token, 24)))
    return value


def _range(what: str, low: int, high: int, given: str) -> str:
    return f"{what} is out of range: it must be from {low} to {high:,} (you gave `{given}`)."


def decimal_number(
    token: object, *, what: str, low: float | None = None, high: float | None = None
) -> float:
    """A plain ASCII decimal (``12``, ``-3.5``, ``.5``), finite, within the bounds."""
    if isinstance(token, bool):
        raise InvalidInput(f"{what} must be a number (you gave `{shown(token)}`).")
    if isinstance(token, int | float):
        value = float(token)
    else:
        s = str(token)
        if len(s) > 40 or not _DECIMAL.fullmatch(s):
            raise InvalidInput(
                f"{what} must be a number like 12 or 7.5, written with the digits 0-9 "
                f"(you gave `{shown(s)}`)."
            )
        value = float(s)
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidInput(f"{what} must be a finite number (you gave `{shown(token)}`).")
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "" if low is None else f"from {low:g} "
        hi = "" if high is None else f"to {high:g}"
        raise InvalidInput(f"{what} is out of range: it must be {lo}{hi} (you gave `{token}`).")
    return value


def forged_id(custom_id: object, value: object = None) -> bool:
    """A button, form or reaction id the bot could not have made (a crafted one): not
    text, too long, control characters, or a number past MAX_ID in one of its parts."""
    if not isinstance(custom_id, str) or len(custom_id) > 2000:
        return True
    if value is not None and (not isinstance(value, str) or len(value) > 100):
        return True
    if forbidden_char(custom_id) or (value and forbidden_char(value)):
        return True
    for part in re.split(r"[:=,]", custom_id):
        try:
            number = int(part)
        except ValueError:
            continue
        if not -MAX_ID <= number <= MAX_ID:
            return True
    return False
