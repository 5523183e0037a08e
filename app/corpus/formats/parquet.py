"""The Parquet reader: a row group at a time; errors name the row (from 1)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from app.corpus.formats.base import (
    CorpusFormatError,
    ParsedTriple,
)
from app.corpus.formats.jsonl import _read_records
from app.corpus.formats.rows import _RowBuilder


def _read_parquet(
    path: Path, rows: _RowBuilder, on_bytes: Callable[[int], None] | None
) -> Iterator[ParsedTriple]:
    """A Parquet file's rows as JSONL records, one row group at a time (memory stays at one
    group). Progress is reported as the share of rows read times the file size."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise CorpusFormatError(
            rows.file, None, None, f"not a readable Parquet file ({exc})"
        ) from None
    with parquet:
        columns = set(parquet.schema_arrow.names)
        missing = [name for name in ("head", "relation") if name not in columns]
        if (
            "tail" not in columns
            and "inference" not in columns
            and not (columns & {"tails", "generations"})
        ):
            missing.append("tail")
        if missing:
            raise CorpusFormatError(
                rows.file,
                None,
                ", ".join(missing),
                f"missing from the columns (found: {', '.join(sorted(columns)) or 'nothing'})",
            )
        total_rows = max(parquet.metadata.num_rows, 1)
        size = os.path.getsize(path)

        def records() -> Iterator[tuple[int, Any]]:
            number = 0
            for group in range(parquet.num_row_groups):
                for record in parquet.read_row_group(group).to_pylist():
                    number += 1
                    rows.stats.lines = number
                    yield number, {k: _jsonable(v) for k, v in record.items() if v is not None}
                if on_bytes is not None:
                    on_bytes(int(size * number / total_rows))

        yield from _read_records(records(), rows)


def _jsonable(value: Any) -> Any:
    """A Parquet cell as JSON would hold it: extra columns are kept as metadata (JSON), and
    Parquet has types JSON lacks (timestamps, decimals, bytes), which become text."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)
