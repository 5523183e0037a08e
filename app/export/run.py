"""Running an export: the one code path behind the page, ``POST /api/exports`` and ``skd export``.

``start_export`` checks the parameters (``plan_export``: every refusal happens here, before any
work) and records an ``exports`` row with its job. The job body, ``run_export_job``, run by a
Celery worker or in-process by the CLI, reads the database in one snapshot and writes:

1. a grouped pass over the kept triples' heads, to cut the splits (``app.export.splits``);
2. one ordered, streamed pass over the kept triples that feeds every format at once;
3. the card, ``params.json`` and ``SHA256SUMS``; then the ``.tar.gz``.

Everything is written inside a hidden temporary folder next to the destination and renamed
into place at the end, so a failed or interrupted export leaves nothing half-written.
Memory stays flat: rows are streamed, and the only per-head state is two numbers per head.
"""

from __future__ import annotations

import hashlib
import json
import platform
import secrets
import shutil
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

import app as package
from app.core import queue
from app.core.config import get_settings
from app.core.db import is_postgres, session_scope
from app.core.job_control import dispatch, register_kind
from app.core.jobs import NullProgress, Progress, create_job, job_as_dict, new_job
from app.core.models import Export, Job, JobState, User
from app.export.archive import CHECKSUMS, files_of, sha256_of, write_archive, write_checksums
from app.export.card import WrittenCounts, render_card
from app.export.params import ExportParamError, ExportParams
from app.export.plan import (
    CheckedExport,
    ExportPlan,
    check_export,
    planned,
    threshold_reason,
)
from app.export.select import corpus_splits, head_counts, kept_rows
from app.export.splits import CorpusSplitPlan, SplitPlan, corpus_split_plan, plan_splits
from app.export.writers import WRITERS, FormatWriter

JOB_KIND = "export"
PARAMS_FILE = "params.json"
_PROGRESS_EVERY = 5000


@contextmanager
def snapshot_session() -> Iterator[Session]:
    """A read session that sees one snapshot of the database for all of its queries.

    PostgreSQL's default (read committed) takes a new snapshot per statement, so ratings or
    scores arriving between the passes could make the card disagree with the files;
    REPEATABLE READ fixes one snapshot for the transaction. SQLite's read transaction in WAL
    mode already is one.
    """
    with session_scope() as session:
        if is_postgres(session.get_bind()):  # type: ignore[arg-type]
            connection = session.connection(
                execution_options={"isolation_level": "REPEATABLE READ"}
            )
            # The streams are server-side cursors, which PostgreSQL plans for fetching the
            # first 10% quickly (nested loops); they are read to the end, so plan for that:
            # hash joins, about 2.5x faster on a million triples.
            connection.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
        yield session


def export_slug(params: ExportParams) -> str:
    """A name that depends only on the parameters: the archive's top folder, so two runs of
    the same export give the same archive bytes."""
    canonical = json.dumps(params.as_dict(), sort_keys=True, separators=(",", ":"))
    critic = "nocritic" if params.no_critic else f"v{params.version}"
    return f"skd-kg-{critic}-{hashlib.sha256(canonical.encode()).hexdigest()[:10]}"


def archive_path(folder: Path) -> Path:
    return folder.with_name(folder.name + ".tar.gz")


@dataclass
class ExportStart:
    export_id: int
    job_id: int
    checked: CheckedExport
    destination: Path

    def as_dict(self) -> dict[str, Any]:
        return {
            "export_id": self.export_id,
            "job_id": self.job_id,
            "params": self.checked.params.as_dict(),
            "threshold": self.checked.threshold,
            "threshold_rule": self.checked.threshold_rule,
            "destination": str(self.destination),
        }


def start_export(
    params: ExportParams, user_id: int | None = None, destination: Path | None = None
) -> ExportStart:
    """Check everything, then record the export and its (queued) job. Raises ExportParamError
    for bad parameters; nothing is recorded then.

    ``destination``: the export folder to create (its ``.tar.gz`` goes beside it); by default
    ``<data dir>/exports/<id>-<slug>``.
    """
    if destination is not None:
        destination = destination.expanduser().resolve()
        for path in (destination, archive_path(destination)):
            if path.exists():
                raise ExportParamError({"out": f"{path} already exists; choose a new folder"})
    with snapshot_session() as session:
        checked = check_export(session, params)
    params = checked.params
    settings = get_settings()
    settings.ensure_dirs()
    with session_scope(write=True) as session:
        export = Export(
            critic_version_id=None if checked.version is None else checked.version.id,
            threshold=checked.threshold,
            filters={
                "relations": list(params.relations),
                "sources": list(params.sources),
                "human_labels": params.human_labels,
            },
            split_seed=params.seed,
            formats=list(params.formats),
            params=params.as_dict(),
            summary={
                "threshold_rule": checked.threshold_rule,
                "threshold_reason": threshold_reason(
                    checked.threshold_rule, checked.threshold_value
                ),
            },
            created_by_id=user_id,
        )
        session.add(export)
        session.flush()
        if destination is None:
            destination = (
                settings.data_dir.resolve() / "exports" / f"{export.id:04d}-{export_slug(params)}"
            )
        job = create_job(
            session,
            JOB_KIND,
            {"export_id": export.id, "destination": str(destination)},
            created_by_id=user_id,
        )
        export.job_id = job.id
        return ExportStart(export.id, job.id, checked, destination)


def queue_export(
    params: ExportParams, user_id: int | None = None, destination: Path | None = None
) -> ExportStart:
    """``start_export`` and hand the job to a Celery worker (the page, the API and
    ``skd export --background``). Raises ``BrokerUnavailable`` (the job is then failed, so
    the export can be deleted) when the broker does not take it."""
    started = start_export(params, user_id, destination)
    dispatch(started.job_id, queue.EXPORT)
    return started


def preview_export(params: ExportParams) -> ExportPlan:
    """What an export with these parameters would keep (raises ExportParamError)."""
    with snapshot_session() as session:
        return _plan(session, params)


def _plan(session: Session, params: ExportParams) -> ExportPlan:
    with planned(session, params) as plan:
        return plan


def _plan_summary(plan: ExportPlan) -> dict[str, Any]:
    data = plan.as_dict()
    return {
        key: data[key]
        for key in (
            "threshold",
            "threshold_rule",
            "threshold_value",
            "threshold_reason",
            "rec_thresholds",
            "heldout_at_threshold",
            "counts",
            "kept_by_relation",
            "labels",
            "estimate",
            "data_as_of",
            "warnings",
        )
    }


# --- the job --------------------------------------------------------------------------------


def run_export_job(job_params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """The job body (Celery task and CLI alike): job params name the export and its folder."""
    export_id = int(job_params["export_id"])
    destination = Path(job_params["destination"])
    with session_scope() as session:
        export = session.get(Export, export_id)
        if export is None:
            raise LookupError(f"export {export_id} does not exist")
        params = ExportParams.from_dict(export.params)
    with snapshot_session() as session, planned(session, params) as plan:
        written = write_export(session, plan, destination, progress)
    archive = archive_path(destination)
    summary = _plan_summary(plan) | {
        "slug": export_slug(plan.params),
        "archive_bytes": archive.stat().st_size,
        "archive_sha256": sha256_of(archive),
        "files": files_of(destination),
    }
    with session_scope(write=True) as session:
        export = session.get(Export, export_id)
        assert export is not None
        export.path = str(destination)
        export.threshold = plan.threshold
        export.counts = written.as_dict()
        export.summary = summary
    return {
        "export_id": export_id,
        "path": str(destination),
        "archive": str(archive),
        "total": written.total,
        "by_split": written.by_split,
        "estimated_precision": plan.estimate.precision,
        "message": f"exported {written.total:,} triples",
    }


def write_export(
    session: Session, plan: ExportPlan, destination: Path, progress: Progress | None = None
) -> WrittenCounts:
    """Write the export folder and its archive from ``plan``'s selection (labels table live).

    Nothing appears at ``destination`` until everything is written.
    """
    progress = progress or NullProgress()
    kept = plan.counts.kept
    total_steps = 2 * kept  # first half: triples written; second half: the archive packed
    progress.update(0, total_steps, "grouping the kept triples by head", force=True)
    _replace_or_refuse(destination, plan)
    workspace = destination.parent / f".tmp-{destination.name}-{secrets.token_hex(4)}"
    workspace.mkdir(parents=True)
    try:
        slug = export_slug(plan.params)
        folder = workspace / slug
        folder.mkdir()
        counts = _write_rows(session, plan, _splits(session, plan), folder, progress)
        (folder / "README.md").write_text(render_card(plan, counts, _software()), encoding="utf-8")
        (folder / PARAMS_FILE).write_text(
            json.dumps(plan.params.as_dict(), indent=2, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
        write_checksums(folder)
        progress.update(kept, message="packing the archive", force=True)

        def packed(done: int, size: int) -> None:
            progress.update(kept + int(kept * done / max(size, 1)), message="packing the archive")

        archive = workspace / f"{slug}.tar.gz"
        write_archive(folder, archive, slug, int(plan.data_as_of.timestamp()), packed)
        folder.rename(destination)
        archive.rename(archive_path(destination))
    finally:
        shutil.rmtree(workspace, ignore_errors=True)
    progress.update(total_steps, message=f"exported {counts.total:,} triples", force=True)
    return counts


def _replace_or_refuse(destination: Path, plan: ExportPlan) -> None:
    """A folder already at ``destination`` is replaced only when it is this same export (a
    re-delivered job: same parameters, so the same bytes); anything else is refused."""
    for stale in destination.parent.glob(f".tmp-{destination.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if not destination.exists() and not archive_path(destination).exists():
        return
    try:
        same = json.loads((destination / PARAMS_FILE).read_text()) == plan.params.as_dict()
    except (OSError, ValueError):
        same = False
    if not same:
        raise ExportParamError({"out": f"{destination} already exists; choose a new folder"})
    shutil.rmtree(destination, ignore_errors=True)
    archive_path(destination).unlink(missing_ok=True)


def _splits(session: Session, plan: ExportPlan) -> SplitPlan | CorpusSplitPlan:
    """By head (a grouped pass over the kept heads, then cut points), or the corpus's own."""
    selection = plan.selection
    if plan.params.split_by == "corpus":
        found = [(s.name, s.triples, s.heads) for s in corpus_splits(session, selection)]
        return corpus_split_plan([split for split in found if split[0] is not None])
    return plan_splits(head_counts(session, selection), plan.params.splits, plan.params.seed)


def _write_rows(
    session: Session,
    plan: ExportPlan,
    splits: SplitPlan | CorpusSplitPlan,
    folder: Path,
    progress: Progress,
) -> WrittenCounts:
    names = splits.names
    rec_names = tuple(plan.rec_thresholds)
    rec_cuts = tuple(plan.rec_thresholds.values())
    # The rec_X flags depend only on where a score falls among the distinct thresholds, so
    # each pattern is built once and looked up by bisection (once per triple).
    cuts = sorted({cut for cut in rec_cuts if cut is not None})
    patterns = [
        tuple(None if cut is None else cut in cuts[:k] for cut in rec_cuts)
        for k in range(len(cuts) + 1)
    ]
    unscored = tuple(None for _ in rec_cuts)
    writers: list[FormatWriter] = [
        WRITERS[fmt](folder, names, rec_names) for fmt in plan.params.formats
    ]
    writes = [writer.write for writer in writers]
    split_of = splits.assigner()
    by_split_relation: Counter[tuple[int, str]] = Counter()
    by_source: Counter[str] = Counter()
    labelled: Counter[str] = Counter()
    kept = plan.counts.kept
    done = 0
    try:
        for head, relation, tail, source, p_valid, accepted, own in kept_rows(
            session, plan.selection
        ):
            split = split_of(head, own)
            valid = None if accepted is None else (1 if accepted else -1)
            recs = unscored if p_valid is None else patterns[bisect_right(cuts, p_valid)]
            for write in writes:
                write(split, head, relation, tail, p_valid, valid, recs)
            by_split_relation[split, relation] += 1
            by_source[source] += 1
            if valid is not None:
                labelled["accepted" if valid > 0 else "rejected"] += 1
            done += 1
            if done % _PROGRESS_EVERY == 0:
                progress.update(done, message=f"writing {done:,} of {kept:,} triples")
    finally:
        for writer in writers:
            writer.close()
    by_split = {name: 0 for name in names}
    by_relation: dict[str, dict[str, int]] = {}
    for (split, relation), n in sorted(
        by_split_relation.items(), key=lambda kv: (kv[0][1], kv[0][0])
    ):
        by_split[names[split]] += n
        by_relation.setdefault(relation, {name: 0 for name in names})[names[split]] = n
    return WrittenCounts(
        split_names=names,
        by_split=by_split,
        by_relation=by_relation,
        by_source=dict(sorted(by_source.items())),
        heads=dict(zip(names, splits.heads, strict=True)),
        labelled={"accepted": labelled["accepted"], "rejected": labelled["rejected"]},
        total=done,
    )


def _software() -> dict[str, str]:
    """Versions whose change could change the bytes (Parquet records its writer's version)."""
    return {
        "SKD Studio": package.__version__,
        "pyarrow": metadata.version("pyarrow"),  # without importing it (see writers)
        "Python": platform.python_version(),
    }


# --- listing --------------------------------------------------------------------------------


def export_state(export: Export, job: Job | None) -> str:
    """queued | running | succeeded | failed | missing (the files were deleted)."""
    if job is not None and job.state != JobState.succeeded:
        return job.state.value
    if export.path is None:
        return "failed" if job is None else job.state.value
    return "succeeded" if Path(export.path).is_dir() else "missing"


def export_as_dict(export: Export, job: Job | None, creator: str | None = None) -> dict[str, Any]:
    """The JSON shape of an export, shared by the API, the page and the CLI."""
    folder = Path(export.path) if export.path else None
    summary = export.summary or {}
    return {
        "id": export.id,
        "state": export_state(export, job),
        "created_at": export.created_at.isoformat(),
        "created_by": creator,
        "critic_version_id": export.critic_version_id,
        # No critic filtered it (asked so), as opposed to a version deleted since (id None).
        "no_critic": (export.params or {}).get("critic") == "none",
        "threshold": export.threshold,
        "threshold_reason": summary.get("threshold_reason"),
        "params": export.params,
        "command": ExportParams.from_dict(export.params).command() if export.params else None,
        "counts": export.counts,
        "estimate": summary.get("estimate"),
        "warnings": summary.get("warnings") or [],
        "path": str(folder) if folder else None,
        "archive_sha256": summary.get("archive_sha256"),
        "archive_bytes": summary.get("archive_bytes"),
        "files": summary.get("files", []),
        "job": job_as_dict(job) if job is not None else None,
        "page_url": f"/exports/{export.id}",
        "download_url": f"/exports/{export.id}/download" if folder else None,
        "api_url": f"/api/exports/{export.id}",
    }


def list_exports(session: Session, limit: int = 50) -> list[dict[str, Any]]:
    """Recent exports, newest first, with their parameters and state."""
    rows = session.execute(
        select(Export, Job, User.username)
        .outerjoin(Job, Job.id == Export.job_id)
        .outerjoin(User, User.id == Export.created_by_id)
        .order_by(Export.id.desc())
        .limit(limit)
    ).all()
    return [export_as_dict(export, job, username) for export, job, username in rows]


def get_export(session: Session, export_id: int) -> dict[str, Any] | None:
    row = session.execute(
        select(Export, Job, User.username)
        .outerjoin(Job, Job.id == Export.job_id)
        .outerjoin(User, User.id == Export.created_by_id)
        .where(Export.id == export_id)
    ).first()
    return None if row is None else export_as_dict(*row)


def export_file(session: Session, export_id: int, name: str | None = None) -> Path | None:
    """The archive (``name`` None) or one file of a finished export; None when there is no
    such file. ``name`` is checked to stay inside the export folder."""
    export = session.get(Export, export_id)
    if export is None or not export.path:
        return None
    folder = Path(export.path).resolve()
    if name is None:
        archive = archive_path(folder)
        return archive if archive.is_file() else None
    candidate = (folder / name).resolve()
    if not candidate.is_relative_to(folder) or not candidate.is_file():
        return None
    return candidate


# --- what an export job holds, and its retry -------------------------------------------------


def _remove_half_written(_session: Session, ended: list[Job]) -> None:
    """An export job that ended badly leaves no half-written folder behind (a worker killed
    mid-write cannot clean up its own hidden workspace)."""
    for job in ended:
        destination = (job.params or {}).get("destination")
        if destination:
            folder = Path(destination)
            for stale in folder.parent.glob(f".tmp-{folder.name}-*"):
                shutil.rmtree(stale, ignore_errors=True)


def retry_export(job_id: int) -> int:
    """The same export again, as a new job of the same export (one number per export)."""
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job is not None
        params = dict(job.params)
    new_id = new_job(JOB_KIND, {**params, "retry_of": job_id})
    with session_scope(write=True) as session:
        export = session.get(Export, int(params["export_id"]))
        if export is not None:
            export.job_id = new_id
    dispatch(new_id, queue.EXPORT)
    return new_id


register_kind(JOB_KIND, release=_remove_half_written, retry=retry_export)


__all__ = [
    "CHECKSUMS",
    "ExportStart",
    "export_as_dict",
    "export_file",
    "get_export",
    "list_exports",
    "preview_export",
    "queue_export",
    "run_export_job",
    "start_export",
    "write_export",
]
