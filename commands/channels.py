"""A course's channels, bound by id on each platform (issue #20).

The course file names a channel per key (``channels: {battles: battles}``): a name, or
the platform's id. Names are resolved **once**, when an adapter starts (it lists the
workspace's channels and calls :func:`bind_channels`); the id is kept on the course's
binding, so a renamed channel still receives its messages and a second channel of the
same name never does. A name that matches two channels, or none, and an id that is not in
the workspace, are problems the adapter logs; that key stays unbound (nothing is posted
to a guessed channel) until the course file gives an id or staff bind one by hand
(``coursebot course channel``).

Adapters then find a channel with :func:`channel_id` (a key, the course file's value for
it, or an id already bound), never by name.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Course, CourseBinding, Platform

#: ``from`` of a channel that staff bound by id (not resolved from the course file).
BY_HAND = "bind"
#: Channel keys the bot posts to, by the name of the key when the course file names none.
DEFAULT_KEYS = ("announcements", "general", "battles", "discussions")

_IDS = {
    Platform.DISCORD: re.compile(r"\d{15,21}"),
    Platform.SLACK: re.compile(r"[CGD][A-Z0-9]{6,}"),
}


@dataclass(frozen=True)
class ChannelInfo:
    """One channel of a workspace, as the platform lists it."""

    id: str
    name: str


def is_channel_id(platform: Platform, value: str) -> bool:
    """``value`` has the shape of a channel id on ``platform`` (a Discord snowflake, a
    Slack ``C…``/``G…`` id); the terminal has no ids."""
    pattern = _IDS.get(platform)
    return bool(pattern and pattern.fullmatch(value.strip()))


def clean_name(value: str) -> str:
    return value.strip().lstrip("#").strip()


def resolve(
    platform: Platform,
    wanted: Mapping[str, str],
    listing: Iterable[ChannelInfo],
    bound: Mapping[str, Any] | None = None,
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """The course's channels (key → course-file value) resolved against the workspace's
    ``listing``: the new binding map and the problems, one sentence each.

    A key already bound from the same value keeps its id (names are resolved once); a
    key bound by hand stays so while its channel exists."""
    channels = list(listing)
    by_id = {c.id: c for c in channels}
    by_name: dict[str, list[ChannelInfo]] = defaultdict(list)
    for c in channels:
        by_name[c.name.casefold()].append(c)
    out: dict[str, dict[str, str]] = {}
    problems: list[str] = []
    for key, entry in (bound or {}).items():
        if isinstance(entry, dict) and entry.get("from") == BY_HAND:
            if entry.get("id") in by_id:
                out[key] = {"id": str(entry["id"]), "from": BY_HAND}
            else:
                problems.append(
                    f"the channel bound by hand for `{key}` ({entry.get('id')}) is not in "
                    "this workspace any more; bind another with `coursebot course channel`."
                )
    for key, value in wanted.items():
        if key in out:
            continue
        value = str(value)
        old = (bound or {}).get(key)
        if isinstance(old, dict) and old.get("from") == value and old.get("id") in by_id:
            out[key] = {"id": str(old["id"]), "from": value}
            continue
        if is_channel_id(platform, value):
            if value.strip() in by_id:
                out[key] = {"id": value.strip(), "from": value}
            else:
                problems.append(
                    f"channel id {value} (the course file's `{key}` channel) is not in this "
                    "workspace, or the bot cannot see it; check the id, or invite the bot."
                )
            continue
        name = clean_name(value)
        found = by_name.get(name.casefold(), [])
        if len(found) == 1:
            out[key] = {"id": found[0].id, "from": value}
        elif not found:
            problems.append(
                f"no channel named #{name} (the course file's `{key}` channel) is visible "
                "to the bot; create it, invite the bot, or put the channel's id in the "
                "course file."
            )
        else:
            ids = ", ".join(c.id for c in found)
            problems.append(
                f"{len(found)} channels are named #{name} ({ids}), so the `{key}` channel "
                f"is ambiguous and nothing is posted there: put one id in the course file "
                f"(`channels: {{{key}: '<id>'}}`) or run `coursebot course channel <course> "
                f"{key} <id>`."
            )
    return out, problems


async def binding_of(
    session: AsyncSession, platform: Platform, workspace: str
) -> CourseBinding | None:
    return await session.scalar(
        select(CourseBinding).where(
            CourseBinding.platform == platform, CourseBinding.external_id == workspace
        )
    )


async def bind_channels(
    session: AsyncSession, platform: Platform, workspace: str, listing: Iterable[ChannelInfo]
) -> list[str]:
    """Resolve the channels of the course bound to ``workspace`` and keep their ids on
    the binding (written only when something changed); the problems, for the log."""
    binding = await binding_of(session, platform, workspace)
    if binding is None:
        return []
    course = await session.get(Course, binding.course_id)
    if course is None:
        return []
    listing = list(listing)
    wanted = {k: str(v) for k, v in (course.channels or {}).items()}
    resolved, problems = resolve(platform, wanted, listing, binding.channels)
    # The keys the course file leaves out go by their own names, where such a channel
    # exists; only two of the same name is worth saying.
    defaults = {k: k for k in DEFAULT_KEYS if k not in wanted and k not in resolved}
    found, quiet = resolve(platform, defaults, listing, binding.channels)
    resolved.update(found)
    problems += [p for p in quiet if "ambiguous" in p]
    if resolved != (binding.channels or {}):
        binding.channels = resolved
    return [f"course {course.key}: {p}" for p in problems]


def channel_id(binding: CourseBinding | None, course: Course | None, channel: str) -> str | None:
    """The platform id of a course channel named by its key (``battles``), by the course
    file's value for a key (``#battles``, ``battles``), or by an id already bound; None
    when that channel is not bound here (the caller says so; it never guesses by name)."""
    bound: Mapping[str, Any] = (binding.channels if binding else None) or {}
    wanted = channel.strip()
    if binding is not None and is_channel_id(binding.platform, wanted):
        return wanted  # an id (the channel a command was typed in)
    entry = bound.get(wanted) or bound.get(clean_name(wanted))
    if isinstance(entry, dict) and entry.get("id"):
        return str(entry["id"])
    values = (course.channels if course else None) or {}
    for key, value in values.items():
        if clean_name(str(value)) == clean_name(wanted) or str(value) == wanted:
            entry = bound.get(key)
            if isinstance(entry, dict) and entry.get("id"):
                return str(entry["id"])
    for entry in bound.values():
        if isinstance(entry, dict) and entry.get("id") == wanted:
            return wanted
    return None


async def bind_by_hand(
    session: AsyncSession, binding: CourseBinding, key: str, channel: str
) -> None:
    """Staff bind a course channel key to a platform id (checked by the adapter at its
    next start; an id not in the workspace is reported then)."""
    channels = dict(binding.channels or {})
    channels[key] = {"id": channel.strip(), "from": BY_HAND}
    binding.channels = channels
