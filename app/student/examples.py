"""The student's examples: the paper's input format, read from an export, tokenized for a
causal LM with the loss on the tail only.

An export writes ``student/<split>.jsonl`` lines ``{"source": "<head> h </head> <relation> r
</relation> [GEN]", "target": tail}`` (``app.export.writers``). The model reads
``source + " " + target`` and learns to write the target: every prompt position is labelled
-100, so the loss counts the tail's tokens (and the end-of-sequence token that teaches it to
stop) and nothing else. Queries for generation are (head, relation) pairs, from the same files
or from a JSONL/TSV file of queries.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.export.writers import student_source

IGNORE = -100  # the label the loss skips
_SOURCE = re.compile(
    r"^<head> (?P<head>.*) </head> <relation> (?P<relation>\S+) </relation> \[GEN\]$"
)


@dataclass(frozen=True)
class Pair:
    source: str
    target: str


@dataclass(frozen=True)
class Query:
    head: str
    relation: str

    @property
    def prompt(self) -> str:
        """What the student reads; its answer starts after one space (``[GEN] tail``)."""
        return student_source(self.head, self.relation)


class ExampleFileError(ValueError):
    """A student file or a query file that cannot be read (the file and line in the message)."""


def split_file(export_folder: Path, split: str) -> Path:
    return export_folder / "student" / f"{split}.jsonl"


def read_pairs(path: Path) -> list[Pair]:
    """The (source, target) pairs of one student split file; a bad line names itself."""
    pairs: list[Pair] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                pairs.append(Pair(str(row["source"]), str(row["target"])))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ExampleFileError(f"{path}:{number}: not a student pair ({exc})") from exc
    return pairs


def parse_source(source: str) -> Query:
    match = _SOURCE.match(source)
    if match is None:
        raise ValueError(f"not a student source: {source!r}")
    return Query(match["head"], match["relation"])


def export_queries(export_folder: Path, split: str = "test") -> tuple[list[Query], dict]:
    """The distinct (head, relation) queries of an export's split, in file order, and the
    tails the export holds for each (the references)."""
    path = split_file(export_folder, split)
    if not path.is_file():
        raise ExampleFileError(
            f"{path} does not exist: the export has no {split!r} split in the student format"
        )
    tails: dict[Query, list[str]] = {}
    for number, pair in enumerate(read_pairs(path), 1):
        try:
            query = parse_source(pair.source)
        except ValueError as exc:
            raise ExampleFileError(f"{path}:{number}: {exc}") from exc
        tails.setdefault(query, []).append(pair.target)
    return list(tails), tails


def read_queries(path: Path) -> list[Query]:
    """Queries from a file: JSONL with ``head`` and ``relation`` (or a student ``source``),
    or TSV ``head<TAB>relation``. Blank lines are skipped; a bad line stops with its number."""
    queries: list[Query] = []
    seen: set[Query] = set()
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            text = line.strip()
            if not text:
                continue
            try:
                query = _query_of(text)
            except (ValueError, KeyError, TypeError) as exc:
                raise ExampleFileError(f"{path}:{number}: {exc}") from exc
            if query not in seen:
                seen.add(query)
                queries.append(query)
    if not queries:
        raise ExampleFileError(f"{path}: no queries in the file")
    return queries


def _query_of(text: str) -> Query:
    if text.startswith("{"):
        row: dict[str, Any] = json.loads(text)
        if "source" in row and "head" not in row:
            return parse_source(str(row["source"]))
        for name in ("head", "relation"):
            if not str(row.get(name) or "").strip():
                raise ValueError(f"field {name!r} is missing or empty")
        return Query(str(row["head"]).strip(), str(row["relation"]).strip())
    parts = text.split("\t")
    if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
        raise ValueError("expected JSON with head and relation, or head<TAB>relation")
    return Query(parts[0].strip(), parts[1].strip())


def tokenize_pair(tokenizer: Any, pair: Pair, max_length: int) -> dict[str, list[int]] | None:
    """Input ids and labels for one pair: the prompt's positions labelled ``IGNORE``.

    The prompt and the tail are tokenized apart (the tail with its leading space, as the model
    will write it after ``[GEN]``), so the boundary is exact. Cut to ``max_length`` from the
    end; None when no tail token is left.
    """
    prompt = tokenizer(pair.source, add_special_tokens=True)["input_ids"]
    tail = tokenizer(" " + pair.target, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        tail = [*tail, tokenizer.eos_token_id]
    ids = (prompt + tail)[:max_length]
    labels = ([IGNORE] * len(prompt) + tail)[:max_length]
    if all(label == IGNORE for label in labels):
        return None
    return {"input_ids": ids, "labels": labels}


class PadCollator:
    """Pads a batch to its longest example (right side: training reads left to right)."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids, labels, mask = [], [], []
        for feature in features:
            gap = width - len(feature["input_ids"])
            ids.append(feature["input_ids"] + [self.pad_token_id] * gap)
            labels.append(feature["labels"] + [IGNORE] * gap)
            mask.append([1] * len(feature["input_ids"]) + [0] * gap)
        return {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
        }
