"""The presentation assignment: compute a fair, optimal proposal from the rankings and
the course's rules, explain it, edit it, publish it (and publish changes to it), and
export it for the course website.

The optimisation lives in :mod:`commands.solver` (pure). Here:
:mod:`~commands.assignment.instance` turns the course into a solver instance,
:mod:`~commands.assignment.store` keeps the published assignment and a proposal side by
side, :mod:`~commands.assignment.summary` is the instructor's report,
:mod:`~commands.assignment.explain` says why each student got what they got,
:mod:`~commands.assignment.handlers` declares the ``assign …`` commands,
:mod:`~commands.assignment.partners` ``rank partner`` and
:mod:`~commands.assignment.withdraw` ``people drop``.
"""

from __future__ import annotations

from commands.assignment import handlers, partners, withdraw  # noqa: F401  (declare commands)
from commands.assignment.handlers import solve_offline
from commands.assignment.instance import CourseInstance, build_instance, offline_instance
from commands.assignment.summary import summary_sections

__all__ = [
    "CourseInstance",
    "build_instance",
    "offline_instance",
    "solve_offline",
    "summary_sections",
]
