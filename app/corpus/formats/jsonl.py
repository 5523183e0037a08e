"""The JSONL reader (ATOMIC-10X fields; tails and generations lists give one triple per entry)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from app.corpus.formats.base import (
    _JSONL_KNOWN,
    CorpusFormatError,
    ParsedTriple,
)
from app.corpus.formats.rows import _RowBuilder, parse_label

# Metadata is kept as JSON and written again (app.corpus.load.meta_json): a value nested
# deeper than this has no use in a corpus and would strain every later reader.
MAX_NESTING = 64


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists/objects more than ``limit`` levels (iteratively: no
    recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Iterable[Any] = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _read_jsonl(lines: Iterable[tuple[int, str]], rows: _RowBuilder) -> Iterator[ParsedTriple]:
    def records() -> Iterator[tuple[int, Any]]:
        for number, text in lines:
            if not text.strip():
                rows.stats.skipped["blank line"] += 1
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                raise CorpusFormatError(
                    rows.file, number, None, f"invalid JSON ({exc.msg} at column {exc.colno})"
                ) from None
            except RecursionError:
                raise CorpusFormatError(
                    rows.file, number, None, "invalid JSON (nested too deeply)"
                ) from None
            # Counting brackets is cheap; only a line with that many can nest that deep.
            if text.count("[") + text.count("{") > MAX_NESTING and _depth_exceeds(
                record, MAX_NESTING
            ):
                raise CorpusFormatError(
                    rows.file, number, None, f"JSON nested more than {MAX_NESTING} levels deep"
                )
            yield number, record

    return _read_records(records(), rows)


def _read_records(records: Iterable[tuple[int, Any]], rows: _RowBuilder) -> Iterator[ParsedTriple]:
    """JSONL objects or Parquet rows (the same fields) to triples."""
    for number, record in records:
        if not isinstance(record, dict):
            raise CorpusFormatError(rows.file, number, None, "expected a JSON object")
        label = parse_label(record.get("valid"), rows.file, number, "valid")
        split = record.get("split")
        if split is not None and not isinstance(split, str):
            raise CorpusFormatError(rows.file, number, "split", "expected text")
        meta = {k: v for k, v in record.items() if k not in _JSONL_KNOWN} or None
        lists = [key for key in ("tails", "generations") if key in record]
        if lists and "tail" not in record and "inference" not in record:
            for key in lists:
                values = record[key]
                if not isinstance(values, list):
                    raise CorpusFormatError(rows.file, number, key, "expected a list of text")
                for index, tail in enumerate(values):
                    row = rows.build(
                        record.get("head"),
                        record.get("relation"),
                        tail,
                        number,
                        split=split,
                        meta={**(meta or {}), "field": key},
                        tail_field=f"{key}[{index}]",
                    )
                    if row is not None:
                        yield row
            continue
        tail_field = "tail" if "tail" in record else "inference"
        row = rows.build(
            record.get("head"),
            record.get("relation"),
            record.get(tail_field),
            number,
            label=label,
            split=split,
            meta=meta,
            tail_field="tail (or inference)" if tail_field not in record else tail_field,
        )
        if row is not None:
            yield row
