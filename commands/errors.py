"""Typed errors whose ``str()`` is the message the user reads.

Services raise these; the dispatcher turns them into a friendly reply and rolls the
transaction back, so bad input never changes stored data.
"""

from __future__ import annotations


class CourseBotError(Exception):
    """A known, user-facing failure. ``str(err)`` is shown to the user as is."""

    kind = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}" if self.hint else self.message


class UsageError(CourseBotError):
    """The command line itself is wrong: unknown command, missing or extra argument."""

    kind = "usage"


class InvalidInput(CourseBotError):
    """A value is wrong (a date that is not a date, a bad file)."""

    kind = "invalid"


class NotFound(CourseBotError):
    kind = "not_found"


class Forbidden(CourseBotError):
    """The caller's role does not allow this."""

    kind = "forbidden"


class NotRegistered(CourseBotError):
    kind = "not_registered"


class Conflict(CourseBotError):
    """The request contradicts stored state (already linked, already closed...)."""

    kind = "conflict"


class NoCourse(CourseBotError):
    kind = "no_course"


class PreparedStale(Exception):
    """What a command's ``prepare`` step computed on a snapshot no longer matches the
    data (rankings changed while the solver ran): the core runs ``prepare`` again,
    outside the write queue, rather than redoing the slow work while holding it."""
