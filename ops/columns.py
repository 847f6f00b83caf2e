"""Lists for a terminal: a header row, aligned columns, and a line saying so when there is nothing."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def lines(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """The header and the rows, each column as wide as its widest cell; a cell that is None is "-".
    The last column is never padded (it may be long: an e-mail's subject, a flag's reason)."""
    cells = [[("-" if value is None else str(value)) for value in row] for row in rows]
    widths = [max([len(title)] + [len(row[number]) for row in cells]) for number, title in enumerate(headers)]
    widths[-1] = 0
    return ["  ".join(f"{value:<{width}}" for value, width in zip(row, widths)).rstrip()
            for row in [list(headers), *cells]]


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]], nothing: str) -> None:
    """The table on stdout, or the one line `nothing` ("no bookings") when there are no rows."""
    rows = list(rows)
    print("\n".join(lines(headers, rows)) if rows else nothing)
