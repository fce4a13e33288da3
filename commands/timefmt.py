"""Human-friendly dates and times in the course's zone, and instants that each chat
platform shows in its reader's own zone.

:func:`fmt_instant` and :func:`relative` return text that carries a small *time marker*:
the instant (UNIX seconds), a style (``F``: full date and time, ``R``: relative) and the
course-zone text a reader sees where no platform markup applies (its fallback). The
marker is delimited by private-use characters that neither the bot nor a person types,
so handlers keep building replies with f-strings and nothing else changes for them.

Each surface turns markers into what it shows with :func:`localize`:

- Discord: ``<t:UNIX:F>`` / ``<t:UNIX:R>``, which every reader sees in their zone;
- Slack: ``<!date^UNIX^{date_long_pretty} {time}|FALLBACK>`` (a relative time stays the
  course-zone text: Slack documents ``{ago}`` for past times only);
- everything else (the terminal, the web desk, mail, files, the audit log, and code
  blocks or tables on any platform): the course-zone text, e.g. ``Sun Aug 27, 2023,
  11:59 PM EDT`` or ``in 2 days`` (:func:`plain`).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Literal
from zoneinfo import ZoneInfo

#: Starts a time marker: ``OPEN style unix SEP fallback CLOSE``.
OPEN = "\ue000"
SEP = "\ue001"
CLOSE = "\ue002"
MARKER_CHARS = OPEN + SEP + CLOSE

Surface = Literal["plain", "discord", "slack"]

#: A whole marker: style, UNIX seconds, fallback (one line, no marker characters).
TIME_MARKER = re.compile(f"{OPEN}([FR])(-?[0-9]{{1,12}}){SEP}([^{MARKER_CHARS}\n]{{0,200}}){CLOSE}")
#: What is left of a marker cut short (a hard length cut): its head, or a lone delimiter.
_RESIDUE = re.compile(f"{OPEN}[FR]?-?[0-9]{{0,12}}{SEP}?|[{MARKER_CHARS}]")
#: Code that chat platforms show verbatim (no timestamp markup there): fenced blocks and
#: inline spans.
_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)

SLACK_DATE_FORMAT = "{date_long_pretty} {time}"


def fmt_day(d: date) -> str:
    return f"{d:%a} {d:%b} {d.day}"


def fmt_day_year(d: date) -> str:
    return f"{d:%a} {d:%b} {d.day}, {d.year}"


def fmt_time(t: time) -> str:
    return datetime.combine(date(2000, 1, 1), t).strftime("%I:%M %p").lstrip("0")


def course_text(instant: datetime, tz: ZoneInfo) -> str:
    """``Sun Aug 27, 2023, 11:59 PM EDT``: the zone abbreviation follows DST."""
    local = instant.astimezone(tz)
    return f"{fmt_day_year(local.date())}, {fmt_time(local.time())} {local.tzname()}"


def relative_text(instant: datetime, now: datetime) -> str:
    """``in 3 days``, ``2 hours ago``, ``now``."""
    seconds = (instant - now).total_seconds()
    future = seconds >= 0
    s = abs(seconds)
    if s < 60:
        return "now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= size:
            n = int(s // size)
            text = f"{n} {unit}{'s' * (n != 1)}"
            return f"in {text}" if future else f"{text} ago"
    return "now"


def marker(instant: datetime, style: Literal["F", "R"], fallback: str) -> str:
    """``instant`` as a time marker that shows ``fallback`` where no markup applies."""
    clean = _RESIDUE.sub("", fallback).replace("\n", " ")
    return f"{OPEN}{style}{int(instant.timestamp())}{SEP}{clean}{CLOSE}"


def fmt_instant(instant: datetime, tz: ZoneInfo) -> str:
    """An instant the bot posts: each chat reader sees it in their own zone, everything
    else shows the course-zone text (:func:`course_text`)."""
    return marker(instant, "F", course_text(instant, tz))


def relative(instant: datetime, now: datetime) -> str:
    """How far ``instant`` is from ``now`` (``in 3 days``); live on Discord."""
    return marker(instant, "R", relative_text(instant, now))


# ----------------------------------------------------------------------------- rendering


def has_markers(text: str) -> bool:
    return any(c in text for c in MARKER_CHARS)


def plain(text: str) -> str:
    """``text`` with every time marker replaced by its course-zone text (and anything
    left of a marker cut short removed)."""
    if not has_markers(text):
        return text
    return _RESIDUE.sub("", TIME_MARKER.sub(r"\3", text))


def _discord(m: re.Match[str]) -> str:
    return f"<t:{m.group(2)}:{m.group(1)}>"


def _slack(m: re.Match[str]) -> str:
    style, unix, fallback = m.groups()
    if style == "R":  # Slack's {ago} is documented for past times only
        return fallback
    return f"<!date^{unix}^{SLACK_DATE_FORMAT}|{fallback}>"


def localize(text: str, surface: Surface) -> str:
    """``text`` with its time markers as ``surface`` shows instants (see the module's
    doc). On Discord and Slack, markers inside code (fenced blocks, inline spans) become
    course-zone text, as timestamp markup is not rendered there."""
    if not has_markers(text):
        return text
    if surface == "plain":
        return plain(text)
    sub = _discord if surface == "discord" else _slack
    out: list[str] = []
    pos = 0
    for code in _CODE.finditer(text):
        out.append(TIME_MARKER.sub(sub, text[pos : code.start()]))
        out.append(plain(code.group(0)))
        pos = code.end()
    out.append(TIME_MARKER.sub(sub, text[pos:]))
    return _RESIDUE.sub("", "".join(out))
