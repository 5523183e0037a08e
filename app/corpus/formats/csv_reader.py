"""The CSV reader: a header naming head, relation, tail; valid/label and split optional."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator

from app.corpus.formats.base import (
    CorpusFormatError,
    ParsedTriple,
)
from app.corpus.formats.rows import _RowBuilder, parse_label


def _read_csv(lines: Iterable[tuple[int, str]], rows: _RowBuilder) -> Iterator[ParsedTriple]:
    numbers: list[int] = [0]

    def texts() -> Iterator[str]:
        for number, text in lines:
            numbers[0] = number
            yield text

    reader = csv.reader(texts())
    try:
        header = next(reader)
    except StopIteration:
        return
    columns = [name.strip().lower() for name in header]
    if "tail" not in columns and "inference" in columns:
        columns[columns.index("inference")] = "tail"
    if "label" in columns and "valid" not in columns:
        columns[columns.index("label")] = "valid"
    missing = [name for name in ("head", "relation", "tail") if name not in columns]
    if missing:
        raise CorpusFormatError(
            rows.file,
            1,
            ", ".join(missing),
            f"missing from the header (found: {', '.join(header) or 'nothing'})",
        )
    index = {name: i for i, name in enumerate(columns)}
    extras = [
        name for name in columns if name not in {"head", "relation", "tail", "valid", "split"}
    ]
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise CorpusFormatError(rows.file, numbers[0], None, f"malformed CSV: {exc}") from None
        number = numbers[0]
        if not values or not any(v.strip() for v in values):
            rows.stats.skipped["blank line"] += 1
            continue
        if len(values) != len(columns):
            raise CorpusFormatError(
                rows.file,
                number,
                None,
                f"expected {len(columns)} columns like the header, found {len(values)}",
            )
        label = (
            parse_label(values[index["valid"]].strip(), rows.file, number, header[index["valid"]])
            if "valid" in index
            else None
        )
        split = values[index["split"]].strip() or None if "split" in index else None
        meta = {name: values[index[name]] for name in extras if values[index[name]] != ""} or None
        row = rows.build(
            values[index["head"]],
            values[index["relation"]],
            values[index["tail"]],
            number,
            label=label,
            split=split,
            meta=meta,
        )
        if row is not None:
            yield row
