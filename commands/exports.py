"""Tables as files for download: CSV (spreadsheets, Canvas), Markdown and HTML (the
course website). Every export in the bot goes through here."""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence

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
