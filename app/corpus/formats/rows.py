"""One row's fields to a ParsedTriple: relation and label checks, metadata kept, shared by every
reader."""

from __future__ import annotations

from typing import Any

from app.corpus.formats.base import (
    LABEL_VALUES,
    CorpusFormatError,
    ParsedTriple,
    ParseStats,
)
from app.corpus.normalize import clean, is_none_tail
from app.corpus.relations import canonical_relation


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
