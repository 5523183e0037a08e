"""Readers for the corpus file formats. Each yields cleaned, validated rows or raises an error
that names the file, the line and the field.

Formats:
- ``atomic-tsv``: ``head<TAB>relation<TAB>tail`` (ATOMIC 2020), optionally a 4th column with a
  human label on the answer scale.
- ``comet-tsv``: the COMET evaluation file, ``head @@ relation<TAB>tail|tail|...``.
- ``jsonl``: one object per line: ``head``, ``relation``, ``tail`` (or ``inference``), and
  optionally ``split``, ``valid``, ``p_valid_model``, ``rec_*`` (ATOMIC-10X). Objects with lists
  ``tails`` and/or ``generations`` (COMET generation dumps) give one triple per list entry.
- ``csv``: a header row naming at least ``head``, ``relation`` and ``tail``; optional ``valid``
  (or ``label``), ``split``; other columns are kept as metadata.
- ``parquet``: columns as the JSONL fields (what ``skd export`` and many Hugging Face datasets
  write). Read a row group at a time; an error names the row (counting from 1) as its line.
The text formats may be gzip-compressed (``.gz``); this is detected from the bytes, not the name.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from app.corpus.normalize import clean, is_none_tail
from app.corpus.relations import canonical_relation

FORMATS = ("atomic-tsv", "comet-tsv", "jsonl", "csv", "parquet")

# The answer scale of the paper's human evaluation; > 0 is acceptable.
LABEL_VALUES = frozenset({2, 1, -1, -2, -9})

_JSONL_KNOWN = {"head", "relation", "tail", "inference", "split", "valid", "tails", "generations"}


class CorpusFormatError(ValueError):
    """Bad input, located: ``file:line: field 'x': what is wrong``."""

    def __init__(self, file: str, line: int | None, field: str | None, message: str) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.message = message
        where = file if line is None else f"{file}:{line}"
        what = f"field '{field}': {message}" if field else message
        super().__init__(f"{where}: {what}")


@dataclass(slots=True)
class ParsedTriple:
    head: str
    relation: str
    tail: str
    line: int
    label: int | None = None
    split: str | None = None
    meta: dict[str, Any] | None = None


@dataclass
class ParseStats:
    """What a reader saw besides the triples it yielded."""

    lines: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


def detect_format(path: Path) -> str:
    """The format implied by the file name (``.gz`` ignored); TSV files are sniffed for ``@@``."""
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".parquet"):
        return "parquet"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".tsv", ".txt", ".tab")):
        with _open_binary(path) as (stream, _raw):
            for raw_line in stream:
                line = raw_line.decode("utf-8", errors="replace").strip()
                if line:
                    return "comet-tsv" if "@@" in line.split("\t", 1)[0] else "atomic-tsv"
        return "atomic-tsv"
    raise CorpusFormatError(
        str(path),
        None,
        None,
        "cannot tell the format from the file name; use .tsv, .jsonl, .csv (optionally .gz), "
        ".parquet "
        f"or pass --format ({', '.join(FORMATS)})",
    )


class _open_binary:
    """Open a file for binary line iteration, transparently gunzipping; also yields the raw
    file so progress can follow the (compressed) byte position."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> tuple[IO[bytes], IO[bytes]]:
        self.raw = open(self.path, "rb")  # noqa: SIM115 - closed in __exit__
        magic = self.raw.read(2)
        self.raw.seek(0)
        self.stream: IO[bytes] = (
            gzip.GzipFile(fileobj=self.raw, mode="rb") if magic == b"\x1f\x8b" else self.raw
        )
        return self.stream, self.raw

    def __exit__(self, *exc: object) -> None:
        if self.stream is not self.raw:
            self.stream.close()
        self.raw.close()


_BLOCK_BYTES = 1 << 20


def _line_blocks(stream: IO[bytes]) -> Iterator[bytes]:
    """The stream in blocks of whole lines (each ends with a newline, except perhaps the last)."""
    pending: list[bytes] = []
    while block := stream.read(_BLOCK_BYTES):
        end = block.rfind(b"\n") + 1
        if end == 0:
            pending.append(block)
            continue
        if pending:
            pending.append(block[:end])
            yield b"".join(pending)
            pending = []
        else:
            yield block[:end] if end < len(block) else block
        if end < len(block):
            pending.append(block[end:])
    if pending:
        yield b"".join(pending)


def _decoded_lines(stream: IO[bytes], file: str, stats: ParseStats) -> Iterator[tuple[int, str]]:
    """(line number, text without line ending); undecodable bytes are an error at their line.

    Lines are the ``\\n``-separated pieces of the bytes, as binary line iteration gives them,
    but decoded a block at a time: per-line decoding was a large part of reading a big file.
    """
    number = 0
    for block in _line_blocks(stream):
        error: UnicodeDecodeError | None = None
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError as exc:
            error = exc
            bad_line_start = block.rfind(b"\n", 0, exc.start) + 1
            text = block[:bad_line_start].decode("utf-8")  # the good lines before it
        lines = text.split("\n")
        if text.endswith("\n") or not text:
            lines.pop()  # split's empty piece after the final newline
        if number == 0 and lines:
            lines[0] = lines[0].removeprefix("\ufeff")
        strip = "\r" in text
        for line in lines:
            number += 1
            stats.lines = number
            yield number, line.rstrip("\r\n") if strip else line
        if error is not None:
            number += 1
            stats.lines = number
            raise CorpusFormatError(
                file,
                number,
                None,
                f"not valid UTF-8 (byte {error.start - bad_line_start + 1} of the line)",
            )


def parse_label(value: Any, file: str, line: int, field_name: str) -> int | None:
    """A human label on the paper's scale (2, 1, -1, -2, -9), or None when absent."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if number != number or number != int(number) or int(number) not in LABEL_VALUES:
        raise CorpusFormatError(
            file,
            line,
            field_name,
            f"{value!r} is not on the answer scale (2 always/often, 1 sometimes/likely, "
            "-1 farfetched/never, -2 invalid, -9 too unfamiliar)",
        )
    return int(number)


class _RowBuilder:
    """Validates and cleans one triple's fields; shared by every format."""

    def __init__(self, file: str, relations: frozenset[str], stats: ParseStats) -> None:
        self.file = file
        self.relations = relations
        self.stats = stats
        self._relation_cache: dict[str, str] = {}

    def relation(self, raw: Any, line: int, field_name: str = "relation") -> str:
        if not isinstance(raw, str) or not raw.strip():
            raise CorpusFormatError(self.file, line, field_name, "missing or empty")
        name = raw.strip()
        cached = self._relation_cache.get(name)
        if cached is not None:
            return cached
        canonical = canonical_relation(name, self.relations)
        if canonical is None:
            raise CorpusFormatError(
                self.file,
                line,
                field_name,
                f"unknown relation {name!r}; expected one of {', '.join(sorted(self.relations))} "
                "(add more with SKD_EXTRA_RELATIONS)",
            )
        self._relation_cache[name] = canonical
        return canonical

    def text(self, raw: Any, line: int, field_name: str) -> str:
        if raw is None:
            raise CorpusFormatError(self.file, line, field_name, "missing or empty")
        if not isinstance(raw, str):
            raise CorpusFormatError(
                self.file, line, field_name, f"expected text, got {type(raw).__name__}"
            )
        value = clean(raw)
        if not value:
            raise CorpusFormatError(self.file, line, field_name, "missing or empty")
        return value

    def build(
        self,
        head: Any,
        relation: Any,
        tail: Any,
        line: int,
        *,
        label: int | None = None,
        split: str | None = None,
        meta: dict[str, Any] | None = None,
        tail_field: str = "tail",
        relation_field: str = "relation",
        head_field: str = "head",
    ) -> ParsedTriple | None:
        """A clean row, or None (counted) for a ``none`` tail."""
        head_text = self.text(head, line, head_field)
        relation_name = self.relation(relation, line, relation_field)
        tail_text = self.text(tail, line, tail_field)
        if is_none_tail(tail_text):
            self.stats.skipped["'none' tail"] += 1
            return None
        return ParsedTriple(head_text, relation_name, tail_text, line, label, split, meta)


def _read_atomic_tsv(lines: Iterable[tuple[int, str]], rows: _RowBuilder) -> Iterator[ParsedTriple]:
    # The checks of _RowBuilder.build, inlined: this is the format of the big corpora (ATOMIC
    # 2020, 10X) and per-field method calls were most of the time of reading them. Same rules,
    # same order (label, head, relation, tail), same errors; clean() does the rare lines with
    # non-ASCII text or NUL characters.
    file = rows.file
    skipped = rows.stats.skipped
    relations: dict[str, str] = {}  # as written in the file -> canonical name
    for number, text in lines:
        if not text or text.isspace():
            skipped["blank line"] += 1
            continue
        parts = text.split("\t")
        if number == 1 and [p.strip().lower() for p in parts[:3]] == ["head", "relation", "tail"]:
            skipped["header line"] += 1
            continue
        if len(parts) == 3:
            head, relation, tail = parts
            label = None
        elif len(parts) == 4:
            head, relation, tail, label_text = parts
            label = parse_label(label_text.strip(), file, number, "label")
        else:
            raise CorpusFormatError(
                file,
                number,
                None,
                f"expected 3 tab-separated columns (head, relation, tail) or 4 (+ label), "
                f"found {len(parts)}",
            )
        if text.isascii() and "\x00" not in text:
            head = " ".join(head.split())  # clean() of ASCII text
            tail = " ".join(tail.split())
        else:
            head = clean(head)
            tail = clean(tail)
        if not head:
            raise CorpusFormatError(file, number, "head", "missing or empty")
        canonical = relations.get(relation)
        if canonical is None:
            canonical = relations[relation] = rows.relation(relation, number)
        if not tail:
            raise CorpusFormatError(file, number, "tail", "missing or empty")
        # casefold() never shortens text, so only short tails can be "none" or "none.".
        if len(tail) <= 5 and is_none_tail(tail):
            skipped["'none' tail"] += 1
            continue
        yield ParsedTriple(head, canonical, tail, number, label)


def _read_comet_tsv(lines: Iterable[tuple[int, str]], rows: _RowBuilder) -> Iterator[ParsedTriple]:
    for number, text in lines:
        if not text.strip():
            rows.stats.skipped["blank line"] += 1
            continue
        parts = text.split("\t")
        if len(parts) != 2:
            raise CorpusFormatError(
                rows.file,
                number,
                None,
                f"expected 'head @@ relation<TAB>tail|tail|...', found {len(parts)} columns",
            )
        query, tails = parts
        if "@@" not in query:
            raise CorpusFormatError(
                rows.file, number, "head @@ relation", "missing the '@@' between head and relation"
            )
        head, _, relation = query.rpartition("@@")
        for tail in tails.split("|"):
            if not tail.strip():
                rows.stats.skipped["empty tail"] += 1
                continue
            row = rows.build(head, relation, tail, number)
            if row is not None:
                yield row


def _read_jsonl(lines: Iterable[tuple[int, str]], rows: _RowBuilder) -> Iterator[ParsedTriple]:
    def records() -> Iterator[tuple[int, Any]]:
        for number, text in lines:
            if not text.strip():
                rows.stats.skipped["blank line"] += 1
                continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                raise CorpusFormatError(
                    rows.file, number, None, f"invalid JSON ({exc.msg} at column {exc.colno})"
                ) from None

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


_READERS: dict[str, Callable[[Iterable[tuple[int, str]], _RowBuilder], Iterator[ParsedTriple]]] = {
    "atomic-tsv": _read_atomic_tsv,
    "comet-tsv": _read_comet_tsv,
    "jsonl": _read_jsonl,
    "csv": _read_csv,
}


def read_triples(
    path: Path,
    relations: frozenset[str],
    *,
    fmt: str | None = None,
    stats: ParseStats | None = None,
    on_bytes: Callable[[int], None] | None = None,
    display_name: str | None = None,
) -> Iterator[ParsedTriple]:
    """Yield the triples of one file, validated; raise CorpusFormatError at the first bad line.

    ``on_bytes`` is called now and then with the number of (compressed) bytes consumed, for a
    progress bar whose total is the file size.
    """
    file = display_name or str(path)
    if not path.is_file():
        raise CorpusFormatError(file, None, None, "no such file")
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise CorpusFormatError(file, None, None, f"unknown format {fmt!r}; use one of {FORMATS}")
    stats = stats if stats is not None else ParseStats()
    rows = _RowBuilder(file, relations, stats)
    if fmt == "parquet":
        yield from _read_parquet(path, rows, on_bytes)
        return
    with _open_binary(path) as (stream, raw):
        lines = _decoded_lines(stream, file, stats)
        for count, row in enumerate(_READERS[fmt](lines, rows), start=1):
            if on_bytes is not None and count % 20_000 == 0:
                on_bytes(raw.tell())
            yield row
        if on_bytes is not None:
            on_bytes(os.path.getsize(path))


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
