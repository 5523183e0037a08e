"""Evaluating a critic version on a labelled file the user brings.

The same metrics as a version's held-out evaluation (``app.critic.metrics.evaluate``), on any
file the importer reads that carries human labels: ATOMIC-10X JSONL with ``valid``, a TSV
with a fourth label column, or a CSV with a ``valid``/``label`` column. Labels follow the
paper: > 0 acceptable, < 0 not, "too unfamiliar" (-9) and unlabelled lines are left out.
Nothing is written to the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.core.jobs import NullProgress, Progress
from app.corpus.formats import ParseStats, read_triples
from app.critic.metrics import evaluate
from app.critic.score import load_scorer
from app.critic.train import critic_input, score_pairs


@dataclass
class FileEvaluation:
    path: str
    version_id: int
    labelled: int
    skipped_unlabelled: int
    skipped_unfamiliar: int
    metrics: dict[str, Any]


def evaluate_file(
    path: Path,
    version_id: int,
    model_path: str,
    hyperparameters: dict[str, Any],
    relations: frozenset[str],
    *,
    fmt: str | None = None,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> FileEvaluation:
    """Score the file's labelled triples with the version's model and compare with the labels.

    Raises ``CorpusFormatError`` (file:line: field) for a bad line, ValueError when the file
    has no usable labels of both kinds.
    """
    progress = progress or NullProgress()
    names = bool(hyperparameters.get("names", True))
    pairs: list[tuple[str, str]] = []
    labels: list[bool] = []
    heads: list[str] = []
    unlabelled = unfamiliar = 0
    for row in read_triples(path, relations, fmt=fmt, stats=ParseStats()):
        if row.label is None:
            unlabelled += 1
        elif row.label == -9:
            unfamiliar += 1
        else:
            pairs.append(critic_input(row.head, row.relation, row.tail, names=names))
            labels.append(row.label > 0)
            heads.append(row.head)
    good = sum(labels)
    if good == 0 or good == len(labels):
        raise ValueError(
            f"{path}: needs labelled triples of both kinds to evaluate (found {good} acceptable "
            f"and {len(labels) - good} not; {unlabelled} lines had no label)"
        )
    model, tokenizer = load_scorer(model_path)
    max_length = int(hyperparameters.get("max_length", 64))
    scores = np.empty(len(pairs), dtype=np.float32)
    step = max(batch_size * 16, 1)
    for start in range(0, len(pairs), step):
        part = pairs[start : start + step]
        scores[start : start + len(part)] = score_pairs(
            model, tokenizer, part, batch_size=batch_size, max_length=max_length
        )
        progress.update(start + len(part), len(pairs), "scoring the file's labelled triples")
    return FileEvaluation(
        path=str(path),
        version_id=version_id,
        labelled=len(labels),
        skipped_unlabelled=unlabelled,
        skipped_unfamiliar=unfamiliar,
        metrics=evaluate(np.array(labels), scores, groups=heads, intervals=True),
    )
