"""The outbox port: how the core's posts, DMs, scheduled reminders, GPU results and
timers reach a platform. The domain defines it; each adapter implements it (the
terminal prints; Discord and Slack post)."""

from __future__ import annotations

from typing import Protocol

from commands.replies import Reply


class Outbox(Protocol):
    async def post(self, course_id: int, channel: str, reply: Reply) -> str:
        """Post to a channel of the course; return a message reference."""
        ...

    async def edit(self, course_id: int, message_ref: str, reply: Reply) -> None: ...

    async def dm(self, course_id: int, person_id: int, reply: Reply) -> str: ...
