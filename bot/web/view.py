"""What a page shows, as data: tables (sortable, filterable, downloadable as CSV), the
command core's replies, and forms that run commands. Templates turn these into HTML;
:func:`reply_blocks` turns any :class:`~commands.replies.Reply` into them, so a page can
show a command's answer exactly as chat does, only without a width limit. Instants show
in the course's zone, as in the terminal (:func:`finalize`)."""

from __future__ import annotations

import base64
import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

from commands.replies import FileOut, Reply, Table, Tone
from commands.timefmt import has_markers, plain


@dataclass(frozen=True)
class Cell:
    """One table cell: text, a link, a checkbox (bulk actions) or long text folded."""

    text: str
    href: str | None = None
    #: A checkbox ``name=value`` for a bulk action; ``text`` is its accessible label.
    check: tuple[str, str] | None = None
    #: Long text shown folded (``<details>``) after its first words.
    long: bool = False
    new_tab: bool = False
    #: A status cell (a critique's mark): its style (``mark-<kind>``) next to the words,
    #: never instead of them.
    kind: str = ""
    #: The detail of a status (an excuse's reason): the cell's tooltip, and read out
    #: after the words by screen readers.
    note: str = ""


CellLike = Cell | str


@dataclass
class TableView:
    columns: list[str]
    rows: list[list[Cell]]
    caption: str = ""
    #: Said under the table's heading (a reply's text, when the table is its body).
    description: Markup = field(default_factory=Markup)
    #: Set by the page: its position, used in ids and the CSV link (``?csv=<index>``).
    index: int = 0
    #: Seconds between in-place refreshes (htmx polls the page for this table); 0: none.
    refresh: int = 0
    kind: str = "table"

    @classmethod
    def of(
        cls, columns: Sequence[str], rows: Sequence[Sequence[CellLike]], caption: str = ""
    ) -> TableView:
        return cls(
            list(columns),
            [[c if isinstance(c, Cell) else Cell(str(c)) for c in row] for row in rows],
            caption,
        )

    def csv(self) -> str:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow([plain(c) for c in self.columns])
        writer.writerows([[plain(c.text) for c in row] for row in self.rows])
        return buf.getvalue()


@dataclass(frozen=True)
class Field:
    """An input of a form; ``name`` is the command option it fills."""

    name: str
    label: str
    kind: str = "text"  # text | textarea | number | select | hidden
    options: tuple[tuple[str, str], ...] = ()  # (value, label) for a select
    required: bool = False
    value: str = ""
    hint: str = ""


@dataclass
class FormView:
    """A form that runs one command through the command core (``command``), or presses a
    button (``action``: a chat button's id)."""

    title: str
    command: str = ""
    fields: list[Field] = field(default_factory=list)
    submit: str = "Run"
    #: Extra submit buttons: (name, value, label), e.g. ("grade", "pass", "Pass selected").
    buttons: list[tuple[str, str, str]] = field(default_factory=list)
    action: str = ""
    note: str = ""
    danger: bool = False
    #: A table inside the form (checkboxes for a bulk action).
    table: TableView | None = None
    #: ``get``: a filter of the page (its fields become the URL's query), not a command.
    method: str = "post"
    #: Where the form goes (default: the page itself).
    url: str = ""
    kind: str = "form"


@dataclass
class ReplyView:
    """A command's reply: its title, text, sections, and tables/files as blocks."""

    title: str
    text: Markup
    tone: str
    sections: list[tuple[str, Markup, list[tuple[str, Markup]]]]
    images: list[tuple[str, str]]  # (data URI, alt text)
    #: (file name, href): href None for a page's own files (``?file=NAME``), a data
    #: URI for the files of a change's result (shown once).
    downloads: list[tuple[str, str | None]]
    buttons: list[FormView]
    kind: str = "reply"


@dataclass
class Page:
    """A whole page: title, an optional result of the last change, and its blocks."""

    title: str
    blocks: list[TableView | ReplyView | FormView] = field(default_factory=list)
    intro: str = ""
    result: ReplyView | None = None
    #: Files a reply carried (CSV exports), downloadable at ``?file=<name>``.
    files: dict[str, FileOut] = field(default_factory=dict)
    status: int = 200

    def add(self, *blocks: TableView | ReplyView | FormView | None) -> Page:
        for block in blocks:
            if block is None:
                continue
            table = block.table if isinstance(block, FormView) else block
            if isinstance(table, TableView):
                table.index = len(self.tables)
            self.blocks.append(block)
        return self

    @property
    def tables(self) -> list[TableView]:
        """Every table, those inside forms too, in page order (``?csv=N``)."""
        out = []
        for b in self.blocks:
            t = b.table if isinstance(b, FormView) else b
            if isinstance(t, TableView):
                out.append(t)
        return out

    def add_reply(self, reply: Reply, *, files_as_tables: bool = True) -> Page:
        """A command's reply: its title and text, then its tables (and CSV files, in
        full), then its sections, images, downloads and buttons."""
        view, tables = reply_blocks(reply, files_as_tables=files_as_tables)
        for f in reply.files:
            self.files[f.name] = f
        if view.title == self.title:
            view.title = ""  # the page's own heading says it
        if not tables:
            return self.add(view)
        if len(tables) == 1 and not reply.is_error and "\n" not in reply.text.strip():
            # One table: the reply's title heads it and its one-line text describes it.
            table = tables[0]
            if view.title and not table.caption:
                table.caption, view.title = view.title, ""
            if not view.title:
                table.description, view.text = view.text, Markup("")
        for t in tables:
            t.caption = t.caption or reply.title or self.title
        tail = ReplyView(
            "", Markup(""), view.tone, view.sections, view.images, view.downloads, view.buttons
        )
        view.sections, view.images, view.downloads, view.buttons = [], [], [], []
        has_tail = tail.sections or tail.images or tail.downloads or tail.buttons
        head = view if view.title or view.text else None
        return self.add(head, *tables, tail if has_tail else None)


# ------------------------------------------------------------------------- replies


def finalize(value: object) -> object:
    """What a template prints (Jinja's ``finalize``): the web desk shows instants in the
    course's zone, so no time marker (:mod:`commands.timefmt`) reaches a page, whatever
    the template prints."""
    if isinstance(value, Markup):
        return Markup(plain(str(value))) if has_markers(value) else value
    if isinstance(value, str):
        return plain(value)
    return value


_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"\*\*([^*\n]+)\*\*")


def chat_markup(text: str) -> Markup:
    """Chat text as HTML: escaped, `code` and **bold** kept, line breaks kept; instants
    in the course's zone."""
    out = str(escape(plain(text)))
    out = _CODE.sub(r"<code>\1</code>", out)
    out = _BOLD.sub(r"<strong>\1</strong>", out)
    return Markup(out.replace("\n", "<br>\n"))


def _title_of(file_name: str) -> str:
    """``battle-1-votes.csv`` → ``Battle 1 votes``."""
    stem = file_name.rsplit(".", 1)[0].replace("-", " ").replace("_", " ")
    return stem[:1].upper() + stem[1:]


def table_view(table: Table) -> TableView:
    return TableView.of(table.columns, table.rows, table.title or "")


def csv_table(data: bytes, caption: str) -> TableView | None:
    """A CSV file (an export) as a table, or None if it is not one."""
    try:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error):
        return None
    if not rows:
        return None
    width = len(rows[0])
    body = [[Cell(c, long=len(c) > 120) for c in r] for r in rows[1:] if len(r) == width]
    return TableView(rows[0], body, caption)


def reply_blocks(
    reply: Reply, *, files_as_tables: bool = True
) -> tuple[ReplyView, list[TableView]]:
    """A reply as a block of text and sections, plus its tables: a reply's own tables
    and, with ``files_as_tables``, each CSV file it carries (an export), shown in full.
    Without it (the result of a change), files are offered as downloads in the page."""
    tables = [table_view(t) for t in reply.tables]
    images, downloads = [], []
    for f in reply.files:
        if f.mime.startswith("image/"):
            uri = f"data:{f.mime};base64,{base64.b64encode(f.data).decode()}"
            images.append((uri, f.description or f.name))
            continue
        if files_as_tables:
            downloads.append((f.name, None))
        else:
            downloads.append((f.name, f"data:{f.mime};base64,{base64.b64encode(f.data).decode()}"))
        if files_as_tables and f.mime == "text/csv":
            shown = csv_table(f.data, f.description or _title_of(f.name))
            if shown is not None:
                tables.append(shown)
    buttons = [
        FormView(title=b.label, action=b.custom_id, submit=b.label, danger=b.style == "danger")
        for b in reply.buttons
        if b.form is None and b.action
    ]
    view = ReplyView(
        title=reply.title or "",
        text=chat_markup(reply.text),
        tone=reply.tone.value if isinstance(reply.tone, Tone) else str(reply.tone),
        sections=[
            (s.heading, chat_markup(s.body), [(k, chat_markup(v)) for k, v in s.fields])
            for s in reply.sections
        ],
        images=images,
        downloads=downloads,
        buttons=buttons,
    )
    return view, tables
