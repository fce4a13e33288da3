"""Platform-agnostic command handlers and the course's domain logic.

Feature modules declare their commands in :data:`commands.registry.registry`;
:func:`load_registry` imports them all and returns it.
"""

from __future__ import annotations

from commands.registry import Registry


def load_registry() -> Registry:
    from commands import (  # noqa: F401  (each module declares its commands)
        assignment,
        audit,
        battles,
        calendar,
        critiques,
        dashboard,
        delivery,
        discussions,
        gpu,
        grades,
        intros,
        logistics,
        people,
        projects,
        rankings,
        reminders,
    )
    from commands.registry import registry

    return registry
