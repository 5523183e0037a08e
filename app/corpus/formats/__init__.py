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

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from app.corpus.formats.base import (
    FORMATS,
    LABEL_VALUES,
    CorpusFormatError,
    ParsedTriple,
    ParseStats,
)
from app.corpus.formats.csv_reader import _read_csv
from app.corpus.formats.jsonl import _read_jsonl
from app.corpus.formats.lines import _decoded_lines, _open_binary
from app.corpus.formats.parquet import _read_parquet
from app.corpus.formats.rows import _RowBuilder, parse_label
from app.corpus.formats.tsv import _read_atomic_tsv, _read_comet_tsv

__all__ = [
    "FORMATS",
    "LABEL_VALUES",
    "CorpusFormatError",
    "ParseStats",
    "ParsedTriple",
    "detect_format",
    "parse_label",
    "read_triples",
]


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
        # Only the first 64 KiB are looked at: a file of one endless line must not be read
        # into memory here (the reader refuses it later with its line number).
        with _open_binary(path) as (stream, _raw):
            start = stream.read(1 << 16).decode("utf-8", errors="replace")
        for line in start.split("\n"):
            if line.strip():
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
    max_line_bytes: int | None = None,
    max_decompressed_bytes: int | None = None,
) -> Iterator[ParsedTriple]:
    """Yield the triples of one file, validated; raise CorpusFormatError at the first bad line.

    ``on_bytes`` is called now and then with the number of (compressed) bytes consumed, for a
    progress bar whose total is the file size: every 20,000 triples and every block read, so
    a long stretch without triples (blank lines) still reports. Lines longer than
    ``max_line_bytes`` and text beyond ``max_decompressed_bytes`` are errors at their line.
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
        lines = _decoded_lines(
            stream,
            file,
            stats,
            max_line=max_line_bytes,
            max_total=max_decompressed_bytes,
            on_block=None if on_bytes is None else lambda: on_bytes(raw.tell()),
        )
        for count, row in enumerate(_READERS[fmt](lines, rows), start=1):
            if on_bytes is not None and count % 20_000 == 0:
                on_bytes(raw.tell())
            yield row
        if on_bytes is not None:
            on_bytes(os.path.getsize(path))
