"""Tables as files for download: CSV (spreadsheets, Canvas), Markdown and HTML (the
course website). Every export in the bot goes through here."""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence
from typing import Protocol

from commands.replies import FileOut

FORMATS = {"csv": "text/csv", "md": "text/markdown", "html": "text/html"}


def csv_text(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def markdown_text(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def html_text(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>\n"


def table_files(
    stem: str,
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    formats: Sequence[str] = ("csv", "md"),
) -> list[FileOut]:
    """``stem.csv``, ``stem.md``, ``stem.html`` (as asked) holding the same table."""
    render = {"csv": csv_text, "md": markdown_text, "html": html_text}
    return [
        FileOut(f"{stem}.{fmt}", render[fmt](header, rows).encode(), FORMATS[fmt])
        for fmt in formats
    ]


# ------------------------------------------------------------------------ Canvas gradebook

#: The student columns of Canvas's gradebook import, in its order.
CANVAS_STUDENT = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
#: What the second row holds under a column Canvas computes itself (it skips them).
READ_ONLY = "(read only)"


class CanvasStudent(Protocol):
    """What a Canvas row needs of a student (a roster entry)."""

    name: str
    canvas_id: str | None
    sis_id: str | None
    onyen: str | None
    section: str | None


def canvas_csv(
    columns: Sequence[tuple[str, str]],
    students: Sequence[tuple[str, CanvasStudent, Sequence[str]]],
) -> bytes:
    """A CSV that Canvas's gradebook import (Grades → Import) accepts: the header
    ``Student, ID, SIS User ID, SIS Login ID, Section`` and one column per assignment,
    then the ``Points Possible`` row, then one row per student (``(shown name, student,
    cells)``, the name as Canvas sorts it, "Family, Given"). ``columns`` are ``(name,
    points possible)``; Canvas's own computed columns (``Current Score``, ``Final
    Score``) go last with ``(read only)`` as their points, and the import skips them."""
    rows: list[list[object]] = [
        ["Points Possible", "", "", "", "", *(points for _, points in columns)]
    ]
    for shown, s, cells in students:
        rows.append(
            [shown, s.canvas_id or "", s.sis_id or "", s.onyen or "", s.section or "", *cells]
        )
    return csv_text([*CANVAS_STUDENT, *(name for name, _ in columns)], rows).encode()


def canvas_matching(students: Sequence[CanvasStudent]) -> str:
    """What the reply says about how Canvas will find each student: by its own id, or
    (without one) by SIS User ID / SIS Login ID, or by name alone."""
    no_id = [s for s in students if not s.canvas_id]
    if not no_id:
        return "Every student has a Canvas id."
    by_name = [s for s in no_id if not s.sis_id and not s.onyen]
    one = len(no_id) == 1
    text = f"{len(no_id)} student{'' if one else 's'} {'has' if one else 'have'} no Canvas id"
    if len(by_name) < len(no_id):
        login = all(s.onyen for s in no_id if s not in by_name)
        text += ": matched by SIS login" if login else ": matched by SIS user id or login"
    if by_name:
        names = ", ".join(s.name for s in by_name[:10]) + (", …" if len(by_name) > 10 else "")
        k = len(by_name)
        who = (
            "none has a SIS id or login"
            if k == len(no_id)
            else f"{k} of them {'has' if k == 1 else 'have'} no SIS id or login"
        )
        text += (
            f"; {who} either ({names}): Canvas matches "
            f"{'them' if len(by_name) > 1 else 'that one'} by name, so check the import preview"
        )
    return text + ". `coursebot course roster <Canvas export>` fills in the ids."
