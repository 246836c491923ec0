"""The one place where commands draw tables and progress bars (``rich``), and the output vocabulary.

Tables (:func:`print_table`, :class:`TableStream`):

* on a terminal, ``rich`` draws them to the terminal's width; a cell too long for its column is
  folded onto the next line, never cut (a cut ``www.q4cyamnc6mtokjurvdclt.co`` reads as a real
  domain). Tables of more than :data:`RICH_MAX_ROWS` rows, and tables printed row by row
  (:class:`TableStream`: live capture, ``--stream``), are printed plain there too: rich takes
  milliseconds a row, and the terminal wraps a long line without cutting it either;
* otherwise (a pipe, a file, a test) the output is plain and stable: one line per row, columns
  left-aligned and separated by at least two spaces, no colour, no box, no folding, trailing
  spaces removed, and ``-`` for an empty cell, so ``awk``/``split()`` read the columns (every cell
  but the last is one word).

Progress (:func:`progress`): a ``rich`` bar on stderr, only when stderr is a terminal; a no-op
otherwise, so pipes and logs never see it.

The output vocabulary every command follows (README, "Output formats"):

* a command that *lists records* (flows, verdicts, decisions, addresses, candidates) takes
  ``--format`` from ``table`` (people), ``jsonl`` (one JSON object per line), ``csv`` (a header;
  lists as JSON arrays; absent values empty), and where the records are flows or decisions
  ``parquet`` (needs ``--out``) and ``eve`` (Suricata EVE JSON lines); its closing summary goes to
  stderr whenever the rows are for programs, and ``--summary-json FILE`` writes it as JSON;
* a command that gives *one result* (a check, a report, a manifest, a catalogue) prints text, or
  with ``--json`` one JSON document on stdout;
* ``--json`` therefore means: for a listing, ``--format jsonl`` (:func:`listing_format`); for a
  single result, one JSON document. Nothing prints a Python ``dict`` or ``repr``.
"""

from __future__ import annotations

__all__ = [
    "JSON_RULE",
    "PROTO_NAMES",
    "Col",
    "CsvRows",
    "Progress",
    "TableStream",
    "endpoint",
    "listing_format",
    "print_table",
    "progress",
    "render_plain",
    "write_summary_json",
]

import csv
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

JSON_RULE = "the same as --format jsonl (rows as JSON lines on stdout, the summary on stderr)"
"""The ``--help`` text of ``--json`` on a listing (the rule: module docstring)."""

_GAP = "  "
RICH_MAX_ROWS = 1000
"""Largest table drawn by rich on a terminal (it takes about 2.5 ms a row on a loaded 2-core VM)."""
PROTO_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp6", 47: "gre", 50: "esp", 51: "ah"}
"""IP protocol numbers as the tables name them."""


def endpoint(addr: str, port: int, v6: bool) -> str:
    """``10.0.0.1:443``, ``[2001:db8::1]:443``, or the address alone without a port."""
    if not port:
        return addr
    return f"[{addr}]:{port}" if v6 else f"{addr}:{port}"


def listing_format(fmt: str | None, as_json: bool, default: str = "table") -> str:
    """The ``--format`` of a listing, ``--json`` being ``--format jsonl``.

    Raises:
        click.UsageError: ``--json`` with another ``--format``.
    """
    if as_json:
        if fmt not in (None, "jsonl"):
            import click

            raise click.UsageError(f"--json is --format jsonl; it cannot go with --format {fmt}")
        return "jsonl"
    return fmt or default


def _flat(value: object) -> object:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return value


class CsvRows:
    """CSV of flat JSON-able dicts: the first row's keys are the header; lists and objects are
    JSON in their cell (``json.loads`` splits them back); None is an empty cell."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._writer: Any = None

    def write(self, row: dict[str, Any]) -> None:
        """Write one row (the header first)."""
        if self._writer is None:
            self._writer = csv.DictWriter(self.out, fieldnames=list(row), extrasaction="ignore")
            self._writer.writeheader()
        self._writer.writerow({k: _flat(v) for k, v in row.items()})


def write_summary_json(path: str | None, summary: object) -> None:
    """``--summary-json FILE``: the run's summary as one JSON document (nothing without a path).

    Raises:
        OSError: the file cannot be written.
    """
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2, ensure_ascii=False)
            f.write("\n")


@dataclass(frozen=True)
class Col:
    """One table column."""

    name: str
    """Header."""
    width: int = 0
    """Minimum width (fixed width of a :class:`TableStream` column)."""
    right: bool = False
    """Right-aligned (numbers)."""


def _is_terminal(out: IO[str]) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return text if text.strip() else "-"


def render_plain(cols: Sequence[Col], rows: Sequence[Sequence[object]]) -> str:
    """The plain form of a table: aligned columns, nothing cut, one line per row."""
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [max([len(c.name), c.width, *(len(r[i]) for r in cells)]) for i, c in enumerate(cols)]
    lines = [_plain_line(cols, [c.name for c in cols], widths)]
    lines += [_plain_line(cols, r, widths) for r in cells]
    return "\n".join(lines) + "\n"


def _plain_line(cols: Sequence[Col], cells: Sequence[str], widths: Sequence[int]) -> str:
    parts = [
        cell.rjust(w) if col.right else cell.ljust(w)
        for col, cell, w in zip(cols, cells, widths, strict=True)
    ]
    return _GAP.join(parts).rstrip()


def _rich_table(cols: Sequence[Col]) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(
        box=box.SIMPLE_HEAD,
        show_header=True,
        show_edge=False,
        pad_edge=False,
        header_style="bold",
    )
    for c in cols:
        table.add_column(
            c.name,
            justify="right" if c.right else "left",
            overflow="fold",
            min_width=c.width or None,
        )
    return table


def _console(out: IO[str]) -> Any:
    from rich.console import Console

    return Console(file=out, highlight=False, soft_wrap=False)


def print_table(
    cols: Sequence[Col], rows: Sequence[Sequence[object]], out: IO[str] | None = None, *, title: str = ""
) -> None:
    """Print a whole table: ``rich`` on a terminal (long cells folded), plain otherwise."""
    out = out if out is not None else sys.stdout
    if not _is_terminal(out) or len(rows) > RICH_MAX_ROWS:
        if title:
            out.write(title + "\n")
        out.write(render_plain(cols, rows))
        return
    table = _rich_table(cols)
    if title:
        table.title = title
    for row in rows:
        table.add_row(*(_cell(c) for c in row))
    _console(out).print(table)


class TableStream:
    """A table printed row by row (live capture, the streaming path): fixed column widths.

    Each cell is padded to its column's width and never cut (a longer cell pushes the rest of its
    row); the same plain form on a terminal, where rich would cost milliseconds a row.
    """

    def __init__(self, cols: Sequence[Col], out: IO[str] | None = None) -> None:
        self.cols = tuple(cols)
        self.out = out if out is not None else sys.stdout
        self.widths = [max(len(c.name), c.width) for c in self.cols]
        self._header = False

    def row(self, cells: Sequence[object]) -> None:
        """Print one row (the header first, once)."""
        if not self._header:
            self._header = True
            self.out.write(_plain_line(self.cols, [c.name for c in self.cols], self.widths) + "\n")
        self.out.write(_plain_line(self.cols, [_cell(c) for c in cells], self.widths) + "\n")

    def close(self) -> None:
        """Flush."""
        self.out.flush()


class Progress:
    """A progress bar on stderr, or nothing (see :func:`progress`)."""

    def __init__(self, bar: Any, task: Any) -> None:
        self._bar = bar
        self._task = task

    def update(self, done: float, total: float | None = None, text: str | None = None) -> None:
        """Set how much is done (of ``total``, when it is known) and what is being done."""
        if self._bar is None:
            return
        kw: dict[str, Any] = {"completed": done}
        if total is not None:
            kw["total"] = total
        if text is not None:
            kw["description"] = text
        self._bar.update(self._task, **kw)

    def advance(self, n: float = 1, text: str | None = None) -> None:
        """Add ``n`` to what is done."""
        if self._bar is None:
            return
        self._bar.update(self._task, advance=n, **({"description": text} if text is not None else {}))


@contextmanager
def progress(label: str, total: float | None = None, *, enabled: bool = True) -> Iterator[Progress]:
    """A progress bar on stderr while the block runs, when ``enabled`` and stderr is a terminal.

    Args:
        label: what is being done (``analyze capture.pcap``).
        total: units of work (captures, bytes, stages), or None for a spinner with elapsed time.
        enabled: ``--no-progress`` passes False.
    """
    if not (enabled and _is_terminal(sys.stderr)):
        yield Progress(None, None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, SpinnerColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    bar = Bar(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=Console(file=sys.stderr),
        transient=True,
    )
    with bar:
        yield Progress(bar, bar.add_task(label, total=total))
