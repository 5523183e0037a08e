"""What every reader shares: the format names, the parsed triple, the counts, the error that names
file and line."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

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
