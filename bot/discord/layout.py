"""Where each registry command lives on Discord: a pure mapping, no discord import.

Discord app commands are at most three words deep (``/group subgroup command``), and a
name that has subcommands cannot be run itself. The registry is flatter and freer, so
the adapter maps it with four rules:

1. **Group by the first word.** ``rank standard`` → ``/rank standard``; a command with
   no siblings stays a top-level command (``/papers``, ``/whoami``).
2. **Hide staff commands.** Discord can only hide whole top-level commands from members
   (``default_member_permissions``). A group whose commands are all for TAs or
   instructors keeps its name and is hidden (``/rankings``, ``/assign``). A *mixed* group
   keeps its public commands and moves its staff commands under ``/admin``:
   ``register link`` → ``/admin register link``, ``battle open`` → ``/admin battle open``,
   while ``register`` (students) stays ``/register``. Once ``/admin`` nears Discord's
   4,000 characters, the next groups' staff commands go under ``/staff`` instead
   (``/staff critique grade``). The core still checks every role.
3. **A bare command with subcommands gets a name.** ``assign`` next to ``assign show``
   becomes ``/assign run`` (:data:`BARE_NAMES`; ``run`` by default).
4. **Limits are checked when the tree is built**, not discovered by users: names
   1–32 lowercase characters, at most 25 subcommands per group and 25 options per
   command, at most three words. A registry that breaks them fails at start with a
   message naming the command.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from commands.registry import Access, Command, Registry

#: The top-level group that holds the staff commands of mixed groups.
ADMIN = "admin"
#: Where the staff commands of mixed groups go once ``/admin`` is full: Discord refuses
#: a command whose names, descriptions and choices pass 4,000 characters.
ADMIN_MORE = "staff"
#: Mixed groups always under ``/admin`` (the ones used most in class); the others fill
#: what is left of it, then go under ``/staff``.
ADMIN_FIRST = ("battle", "discussion", "register")
#: How much ``/admin`` may fill by the estimate below, which overshoots the real count
#: (bot.discord.tree.limit_problems checks the real figure before every sync).
ADMIN_BUDGET = 4000
#: The subcommand name a bare command takes when its group has other commands.
BARE_NAMES = {
    "assign": "run",
    "register": "me",
    "deadlines": "show",
    "announce": "post",
    "audit": "show",
}
DEFAULT_BARE = "run"

NAME_RE = re.compile(r"^[-_\w]{1,32}$")
MAX_CHILDREN = 25
MAX_OPTIONS = 25
MAX_TOP_LEVEL = 100


class LayoutError(ValueError):
    """The registry cannot be shown as Discord app commands (names, depth, limits)."""


@dataclass
class Node:
    """One name in the Discord command tree: a group (``children``) or a command."""

    name: str
    command: Command | None = None
    children: dict[str, Node] = field(default_factory=dict)

    @property
    def is_group(self) -> bool:
        return bool(self.children)

    def commands(self) -> Iterable[Command]:
        if self.command is not None:
            yield self.command
        for child in self.children.values():
            yield from child.commands()

    @property
    def access(self) -> Access:
        """The least privileged access among the commands below: who may see the node."""
        return min((c.access for c in self.commands()), default=Access.ANYONE)

    @property
    def hidden(self) -> bool:
        """True if only staff may run anything below (Discord hides it from members)."""
        return self.access >= Access.STAFF


@dataclass
class Layout:
    """The Discord command tree built from a registry, and the route of each command."""

    roots: dict[str, Node]
    routes: dict[tuple[str, ...], tuple[str, ...]]  # registry path → Discord path

    def route(self, command: Command | str) -> tuple[str, ...]:
        path = command.path if isinstance(command, Command) else tuple(command.split())
        return self.routes[path]

    def slash(self, command: Command | str) -> str:
        """How a user types it on Discord: ``/admin register link``."""
        return "/" + " ".join(self.route(command))


def build_layout(registry: Registry) -> Layout:
    """Map every registry command to a Discord path (see the module docstring)."""
    groups: dict[str, list[Command]] = {}
    for cmd in registry:
        groups.setdefault(cmd.path[0], []).append(cmd)

    placed: dict[tuple[str, ...], Command] = {}
    used = 0
    order = sorted(groups, key=lambda g: (g not in ADMIN_FIRST, g))
    for group in order:
        cmds = groups[group]
        public = [c for c in cmds if c.access < Access.STAFF]
        staff = [c for c in cmds if c.access >= Access.STAFF]
        parts: list[tuple[tuple[str, ...], list[Command]]] = [((), cmds)]
        if public and staff:
            size = len(group) + 100 + sum(_size(c) for c in staff)
            first = group in ADMIN_FIRST
            home = ADMIN if first or used + size <= ADMIN_BUDGET else ADMIN_MORE
            used += size if home == ADMIN else 0
            parts = [((), public), ((home,), staff)]
        for prefix, part in parts:
            for cmd in part:
                route = prefix + cmd.path
                has_children = any(
                    other is not cmd and other.path[: len(cmd.path)] == cmd.path for other in part
                )
                if has_children:
                    route += (BARE_NAMES.get(cmd.name, DEFAULT_BARE),)
                if route in placed:
                    raise LayoutError(
                        f"`{cmd.name}` and `{placed[route].name}` would both be /{' '.join(route)}"
                    )
                placed[route] = cmd

    roots: dict[str, Node] = {}
    for route, cmd in sorted(placed.items()):
        _check_route(route, cmd)
        level = roots
        for depth, word in enumerate(route):
            node = level.setdefault(word, Node(word))
            if depth == len(route) - 1:
                if node.children:
                    raise LayoutError(f"/{' '.join(route)} is both a command and a group")
                node.command = cmd
            elif node.command is not None:
                raise LayoutError(f"/{' '.join(route[: depth + 1])} is both a command and a group")
            level = node.children
    _check_sizes(roots)
    return Layout(roots=roots, routes={cmd.path: route for route, cmd in placed.items()})


def _size(cmd: Command) -> int:
    """About how many of Discord's characters a command takes (name, description,
    options and choices; descriptions are cut at 100)."""
    options = sum(
        len(s.name) + min(len(s.description), 100) + 24 + sum(2 * len(c) for c in s.choices)
        for s in cmd.specs
    )
    return len(cmd.path[-1]) + min(len(cmd.description), 100) + options


def _check_route(route: tuple[str, ...], cmd: Command) -> None:
    if len(route) > 3:
        raise LayoutError(
            f"`{cmd.name}` would be /{' '.join(route)}: Discord commands are at most three words"
        )
    for word in route:
        if not NAME_RE.match(word) or word != word.lower():
            raise LayoutError(f"`{cmd.name}`: `{word}` is not a Discord command name")
    if len(cmd.specs) > MAX_OPTIONS:
        raise LayoutError(f"`{cmd.name}` has {len(cmd.specs)} options; Discord allows 25")
    for spec in cmd.specs:
        if not NAME_RE.match(spec.name.lower()):
            raise LayoutError(f"`{cmd.name}`: option `{spec.name}` is not a Discord option name")


def _check_sizes(roots: dict[str, Node]) -> None:
    if len(roots) > MAX_TOP_LEVEL:
        raise LayoutError(f"{len(roots)} top-level commands; Discord allows {MAX_TOP_LEVEL}")

    def walk(node: Node, path: str) -> None:
        if len(node.children) > MAX_CHILDREN:
            raise LayoutError(f"/{path} has {len(node.children)} subcommands; Discord allows 25")
        for child in node.children.values():
            walk(child, f"{path} {child.name}")

    for root in roots.values():
        walk(root, root.name)
