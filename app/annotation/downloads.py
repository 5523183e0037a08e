"""Rows of dicts as CSV or JSONL text, produced piece by piece.

The web downloads and the ``skd ... export`` commands share this, so a file downloaded from the
browser and one written by the CLI are byte for byte the same. CSV cells that a spreadsheet
would run as formulas get a leading ``'``; JSONL is verbatim. Output is produced in chunks of
about 64 KiB: a 300,000-rating campaign streams without being held in memory.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, Literal

from app.core.cells import FORMULA_STARTS

Format = Literal["csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl")
MEDIA_TYPES: dict[str, str] = {
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson; charset=utf-8",
}
_CHUNK = 1 << 16


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _csv_cell(value: Any) -> Any:
    # Spreadsheet- and pandas-friendly: booleans as true/false, missing as an empty cell, and
    # text that a spreadsheet would run as a formula made inert (app.core.cells).
    # (Identity checks first: this runs once per cell, millions of times per download.)
    if type(value) is str:
        return "'" + value if value and value[0] in FORMULA_STARTS else value
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def csv_chunks(fields: list[str], rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """A header and one line per row, quoted by the csv module (commas, quotes, newlines)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(fields)
    cell = _csv_cell
    for row in rows:
        writer.writerow([cell(row.get(key)) for key in fields])
        if buffer.tell() >= _CHUNK:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def jsonl_chunks(fields: list[str], rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """One JSON object per line, keys in ``fields`` order, native types (null, true, numbers)."""
    parts: list[str] = []
    size = 0
    for row in rows:
        line = json.dumps({key: _plain(row.get(key)) for key in fields}, ensure_ascii=False)
        parts.append(line + "\n")
        size += len(line) + 1
        if size >= _CHUNK:
            yield "".join(parts)
            parts, size = [], 0
    if parts:
        yield "".join(parts)


def encode(fmt: str, fields: list[str], rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    if fmt == "csv":
        return csv_chunks(fields, rows)
    if fmt == "jsonl":
        return jsonl_chunks(fields, rows)
    raise ValueError(f"format: {fmt!r} is not one of {', '.join(FORMATS)}")
