"""Shared set-up of the critic-loop tests: a learnable labelled corpus and fast settings."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.core.db import session_scope
from app.core.models import Job, Rating, RatingOrigin, Triple

GOOD = ["to eat dinner", "to sleep well", "to thank them", "to rest", "to call a friend"]
BAD = ["purple rocket volcano", "seventeen spoons", "the moon melts", "a banana cloud"]


def labelled_corpus(
    n_heads: int = 60,
    per_head: int = 4,
    seed: int = 3,
    prefix: str = "task",
    source: str = "t",
    first_head: int = 0,
) -> dict[int, bool]:
    """Triples whose acceptability a tiny model can learn (sensible vs nonsense tails), each
    with an imported human label. Returns triple id -> acceptable."""
    rng = random.Random(seed)
    labels: dict[int, bool] = {}
    with session_scope(write=True) as session:
        for h in range(first_head, first_head + n_heads):
            for k in range(per_head):
                acceptable = rng.random() < 0.6
                tail = f"{rng.choice(GOOD if acceptable else BAD)} {k}"
                triple = Triple(
                    head=f"PersonX does {prefix} {h}",
                    relation="xWant",
                    tail=tail,
                    norm_hash=uuid.uuid4().hex,
                    source=source,
                )
                session.add(triple)
                session.flush()
                session.add(
                    Rating(
                        triple_id=triple.id,
                        origin=RatingOrigin.imported,
                        answer=2 if acceptable else -2,
                        submission_id=uuid.uuid4().hex,
                    )
                )
                labels[triple.id] = acceptable
    return labels


@contextmanager
def critic_settings(
    settings: Any, base_model: Path | str, *, unset: tuple[str, ...] = (), **overrides: Any
) -> Iterator[Any]:
    """Fast training settings on the shared Settings object (the in-thread worker reads it).

    ``unset`` names settings to leave to the preset (as if not set anywhere). On exit the
    values and which settings count as set are both as they were."""
    values = {
        "critic_base_model": str(base_model),
        "critic_epochs": 3,
        "critic_learning_rate": 2e-3,
        "critic_batch_size": 16,
        "critic_score_chunk_size": 50,
        "critic_held_out_fraction": 0.25,
        # The tiny model's embeddings are random: freezing them (right for a pretrained
        # encoder) would leave it little to learn with.
        "critic_freeze_embeddings": False,
        **overrides,
    }
    saved = {key: getattr(settings, key) for key in values}
    explicit = set(settings.model_fields_set)
    for key, value in values.items():
        setattr(settings, key, value)
    settings.model_fields_set.difference_update(unset)
    try:
        yield settings
    finally:
        for key, value in saved.items():
            setattr(settings, key, value)
        settings.model_fields_set.clear()
        settings.model_fields_set.update(explicit)


def wait_for_jobs(*job_ids: int, timeout: float = 120.0) -> dict[int, Job]:
    """Poll the job rows until every one has finished; returns them (detached)."""
    deadline = time.monotonic() + timeout
    while True:
        with session_scope() as session:
            jobs = {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(job_ids)))}
            if all(job.state.finished for job in jobs.values()):
                session.expunge_all()
                return jobs
        if time.monotonic() > deadline:
            states = {job_id: (job.state.value, job.message) for job_id, job in jobs.items()}
            raise AssertionError(f"jobs did not finish in {timeout} s: {states}")
        time.sleep(0.2)
