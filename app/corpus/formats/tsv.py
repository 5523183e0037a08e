"""The two TSV readers: ATOMIC 2020 (head, relation, tail, optional label) and COMET's head @@
relation."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from app.corpus.formats.base import (
    CorpusFormatError,
    ParsedTriple,
)
from app.corpus.formats.rows import _RowBuilder, parse_label
from app.corpus.normalize import clean, is_none_tail


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
