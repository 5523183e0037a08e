"""The ORM tables: the whole data model of the design, and the constraints that carry its rules.

The invariants of the rating loop live in the schema, not only in code, so that no bug, retry
or race can break them: a triple is stored once (``uq_triples_norm_hash``), an annotator rates
an item at most once (``uq_ratings_item_annotator``), a resubmitted rating is recognized by its
client submission id (``uq_ratings_submission``), at most one critic is active
(``uq_critic_versions_one_active``), and an item never records more ratings than it needs
(``ck_campaign_items_not_overfilled``).
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# BIGINT keys on PostgreSQL (corpora reach millions of rows and ratings grow without bound);
# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL keeps the zone; SQLite stores text without one, so values read back naive.
    Normalizing here means code can always compare with ``utcnow()``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@lru_cache(maxsize=8)
def _root(data_dir: str) -> Path:
    return Path(data_dir).resolve()


def data_root() -> Path:
    """This process's data dir, resolved (the root of every stored ``DataPath``)."""
    from app.core.config import get_settings

    return _root(str(get_settings().data_dir))


class DataPath(TypeDecorator[str]):
    """A file or folder the app made (a critic's or student's model, an export), stored
    relative to the data dir when it lies inside it and read back under the data dir of the
    process reading it.

    Absolute paths tied a database to one machine's layout: a backup restored where the data
    dir is elsewhere (production's ``/data`` on a laptop), or a data dir moved or mounted at
    another path on a second worker machine, pointed every model at a folder that was not
    there. A path outside the data dir (a model you trained elsewhere) stays absolute."""

    impl = String(1000)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        if value is None:
            return None
        path = Path(value).resolve()  # a writer's path is absolute or relative to its cwd
        try:
            return path.relative_to(data_root()).as_posix()
        except ValueError:
            return str(path)

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        if value is None or Path(value).is_absolute():
            return value
        return str(data_root() / value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as plain strings with a CHECK: portable, and adding a member is a small migration.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=20,
        values_callable=lambda members: [m.value for m in members],
    )


class Role(enum.StrEnum):
    annotator = "annotator"
    researcher = "researcher"
    admin = "admin"


class CampaignPurpose(enum.StrEnum):
    calibration = "calibration"  # uniform random sample: unbiased precision estimates
    training = "training"  # critic-uncertainty first (active learning)
    evaluation = "evaluation"  # rating student or teacher outputs


class CampaignState(enum.StrEnum):
    draft = "draft"
    open = "open"
    paused = "paused"
    closed = "closed"


class AssignmentState(enum.StrEnum):
    leased = "leased"
    submitted = "submitted"
    skipped = "skipped"
    released = "released"  # expired or handed back; the item is open to others again


class RatingOrigin(enum.StrEnum):
    campaign = "campaign"  # a rating made in this app
    imported = "imported"  # a human label that came with an imported file


class CriticState(enum.StrEnum):
    training = "training"
    ready = "ready"
    active = "active"
    failed = "failed"
    retired = "retired"


class JobState(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.succeeded, JobState.failed, JobState.cancelled)


class TeacherRunState(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class Triple(Base):
    """One (head, relation, tail) of the knowledge graph, with where it came from."""

    __tablename__ = "triples"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    head: Mapped[str] = mapped_column(Text)
    relation: Mapped[str] = mapped_column(String(40))
    tail: Mapped[str] = mapped_column(Text)
    # blake2b-128 of the normalized triple (see app.corpus.normalize): the dedup key.
    norm_hash: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(100))
    source_file: Mapped[str | None] = mapped_column(String(500))
    source_line: Mapped[int | None] = mapped_column(Integer)
    split: Mapped[str | None] = mapped_column(String(20))
    teacher_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("teacher_runs.id", ondelete="SET NULL")
    )
    # Extra fields a file carried (ATOMIC-10X p_valid_model, rec_* flags, ...).
    meta: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("norm_hash"),
        Index(None, "relation", "id"),
        Index(None, "source", "id"),
        Index(None, "head"),
        # A run's own triples; imported rows (no run) are not in it.
        Index(
            None,
            "teacher_run_id",
            "id",
            postgresql_where=text("teacher_run_id IS NOT NULL"),
            sqlite_where=text("teacher_run_id IS NOT NULL"),
        ),
    )


class TripleCount(Base):
    """How many triples a (source, relation) has: what the staff pages show of the corpus,
    without counting a million rows per page. Database triggers on ``triples`` keep it
    (migration 0010), so every writer does, whichever door. On PostgreSQL a key has several
    rows (each inserting statement adds its own, so concurrent writers never wait on one
    row) which ``app.core.triple_counts.compact`` sums now and then; on SQLite it has one.
    Read it through ``app.core.triple_counts``, which sums by key."""

    __tablename__ = "triple_counts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(100))
    relation: Mapped[str] = mapped_column(String(40))
    n: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index(None, "source", "relation"),)


class ServerProcess(Base):
    """A running ``skd serve``, ``skd worker`` or ``skd beat`` process, as it last said so.

    Each writes its row when it starts, refreshes ``seen_at`` every few seconds and deletes
    it when it stops cleanly (a killed one's row just stops being refreshed). The jobs page
    reads them to say whether a worker takes the queue this server sends to, and whether more
    than one beat runs; ``skd db restore`` refuses while any is alive. See
    ``app.core.processes``."""

    __tablename__ = "server_processes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    instance: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(10))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[str] = mapped_column(String(500), default="")
    broker: Mapped[str] = mapped_column(String(500), default="")
    version: Mapped[str] = mapped_column(String(40), default="")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    heartbeat_seconds: Mapped[float] = mapped_column(Float, default=15.0)


class User(Base):
    """Staff log in with a password; crowdworkers are recognized by platform id or token."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    username: Mapped[str | None] = mapped_column(String(150))
    display_name: Mapped[str | None] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    # Crowdworkers: platform (prolific, mturk, invite) + that platform's worker id.
    platform: Mapped[str | None] = mapped_column(String(20))
    external_id: Mapped[str | None] = mapped_column(String(200))
    # sha256 of a personal access token; the token itself is shown once and never stored.
    token_hash: Mapped[str | None] = mapped_column(String(64))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Admins can exclude a worker's ratings from aggregation without deleting them.
    excluded: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime | None]
    # When an admin deactivated the account (is_active false): no sign-in, no rating; the
    # ratings it made stay.
    deactivated_at: Mapped[datetime | None]
    # Invitations: the link's token is derived from the secret key and this salt (so admins can
    # copy it again); a new salt is a new link. Revoking clears token_hash and sets the time.
    invite_salt: Mapped[str | None] = mapped_column(String(32))
    invite_revoked_at: Mapped[datetime | None]
    # Sessions carry the epoch they were issued under; logging out or changing the password
    # bumps it, so every cookie issued before (a copied one too) stops working.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))

    __table_args__ = (
        UniqueConstraint("username"),
        UniqueConstraint("platform", "external_id"),
        UniqueConstraint("token_hash"),
    )


class Campaign(Base):
    """A rating job over a set of triples."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    purpose: Mapped[CampaignPurpose] = mapped_column(_enum(CampaignPurpose, "campaign_purpose"))
    state: Mapped[CampaignState] = mapped_column(
        _enum(CampaignState, "campaign_state"), default=CampaignState.draft
    )
    ratings_per_item: Mapped[int] = mapped_column(SmallInteger, default=3)
    lease_seconds: Mapped[int] = mapped_column(Integer, default=600)
    guidelines: Mapped[str] = mapped_column(Text, default="")
    # [{"value": 2, "label": "always/often", "acceptable": true, "key": "1"}, ...]
    answer_scale: Mapped[list[Any]]
    # How the items were chosen: sample size, relation/source filters, seed.
    selection: Mapped[dict[str, Any]]
    gold_rate: Mapped[float] = mapped_column(Float, default=0.0)
    quota_per_annotator: Mapped[int | None] = mapped_column(Integer)
    min_gold_accuracy: Mapped[float] = mapped_column(Float, default=0.7)
    speeder_seconds: Mapped[float] = mapped_column(Float, default=2.0)
    completion_code: Mapped[str | None] = mapped_column(String(100))
    redirect_url: Mapped[str | None] = mapped_column(String(1000))
    share_token: Mapped[str] = mapped_column(String(64))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("share_token"),
        CheckConstraint("ratings_per_item >= 1", name="ratings_per_item_positive"),
        CheckConstraint("gold_rate >= 0 AND gold_rate <= 1", name="gold_rate_fraction"),
    )


class CampaignItem(Base):
    """A triple inside a campaign, with its rating counter kept in the row (no count(*))."""

    __tablename__ = "campaign_items"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    triple_id: Mapped[int] = mapped_column(ForeignKey("triples.id", ondelete="CASCADE"))
    ratings_needed: Mapped[int] = mapped_column(SmallInteger)
    ratings_done: Mapped[int] = mapped_column(SmallInteger, default=0)
    # Live leases, kept in the row so "open" is a column comparison the index can serve.
    leases_active: Mapped[int] = mapped_column(SmallInteger, default=0)
    # The campaign's sampling order: a random rank for calibration, critic uncertainty for
    # training. Lower is served first.
    sort_key: Mapped[float] = mapped_column(Float, default=0.0)
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    gold_answer: Mapped[int | None] = mapped_column(SmallInteger)

    campaign: Mapped[Campaign] = relationship()
    triple: Mapped[Triple] = relationship()

    __table_args__ = (
        UniqueConstraint("campaign_id", "triple_id"),
        CheckConstraint("ratings_done <= ratings_needed", name="not_overfilled"),
        CheckConstraint("leases_active >= 0", name="leases_nonnegative"),
        # The hot path: open items of a campaign, closest to done first, then sampling order.
        Index(
            "ix_campaign_items_open",
            "campaign_id",
            "is_gold",
            text("ratings_done DESC"),
            "sort_key",
            postgresql_where=text("ratings_done + leases_active < ratings_needed"),
            sqlite_where=text("ratings_done + leases_active < ratings_needed"),
        ),
        Index(None, "triple_id"),
    )


class Assignment(Base):
    """A lease of an item to an annotator; an abandoned lease expires and the item returns."""

    __tablename__ = "assignments"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("campaign_items.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    state: Mapped[AssignmentState] = mapped_column(
        _enum(AssignmentState, "assignment_state"), default=AssignmentState.leased
    )
    leased_at: Mapped[datetime] = mapped_column(default=utcnow)
    leased_until: Mapped[datetime]

    __table_args__ = (
        # An annotator is never handed the same item twice (a skip is remembered too).
        UniqueConstraint("item_id", "annotator_id"),
        Index(None, "annotator_id", "campaign_id", "state"),
        # The lease sweeper: live leases by expiry.
        Index(
            "ix_assignments_live_leases",
            "leased_until",
            postgresql_where=text("state = 'leased'"),
            sqlite_where=text("state = 'leased'"),
        ),
        # At most one live lease per annotator per campaign: one client cannot hold a
        # campaign's capacity by asking for items in parallel.
        Index(
            "uq_assignments_one_live_lease",
            "campaign_id",
            "annotator_id",
            unique=True,
            postgresql_where=text("state = 'leased'"),
            sqlite_where=text("state = 'leased'"),
        ),
    )


class Rating(Base):
    """One human judgement of one triple, from a campaign or from an imported labelled file."""

    __tablename__ = "ratings"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    triple_id: Mapped[int] = mapped_column(ForeignKey("triples.id", ondelete="CASCADE"))
    item_id: Mapped[int | None] = mapped_column(ForeignKey("campaign_items.id", ondelete="CASCADE"))
    annotator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    origin: Mapped[RatingOrigin] = mapped_column(
        _enum(RatingOrigin, "rating_origin"), default=RatingOrigin.campaign
    )
    # The scale value: 2 always/often, 1 sometimes/likely, -1 farfetched/never, -2 invalid,
    # -9 too unfamiliar to judge. > 0 is acceptable.
    answer: Mapped[int] = mapped_column(SmallInteger)
    seconds: Mapped[float | None] = mapped_column(Float)
    # Client-chosen id: a double click or a retry of the same submission is recognized.
    submission_id: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The browser session that gave the answer (a random nonce kept in its signed cookie): only
    # that session may see or change it again. A worker id alone is not a credential.
    session_nonce: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        UniqueConstraint("item_id", "annotator_id"),
        UniqueConstraint("submission_id"),
        Index(None, "triple_id"),
        Index(None, "annotator_id", "created_at"),
    )


class CriticVersion(Base):
    """A trained critic: its files, the labels it saw, how good it is, and whether it is live."""

    __tablename__ = "critic_versions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    base_model: Mapped[str] = mapped_column(String(500))
    path: Mapped[str | None] = mapped_column(DataPath())
    state: Mapped[CriticState] = mapped_column(
        _enum(CriticState, "critic_state"), default=CriticState.training
    )
    # Which labels it trained on: counts and the last rating id, so "fresh labels" is a query.
    label_snapshot: Mapped[dict[str, Any]] = mapped_column(default=dict)
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # ROC-AUC, average precision, PR curve, precision at recall levels, calibration estimate.
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    threshold: Mapped[float | None] = mapped_column(Float)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None]

    __table_args__ = (
        Index(
            "uq_critic_versions_one_active",
            "state",
            unique=True,
            postgresql_where=text("state = 'active'"),
            sqlite_where=text("state = 'active'"),
        ),
        # The training lock: at most one version trains at a time. It lives in the database,
        # not in a worker, so a crashed worker cannot hold it; the stale-job sweep fails the
        # dead job's version, which releases it.
        Index(
            "uq_critic_versions_one_training",
            "state",
            unique=True,
            postgresql_where=text("state = 'training'"),
            sqlite_where=text("state = 'training'"),
        ),
    )


class Score(Base):
    """The critic's p(acceptable) for one triple under one critic version."""

    __tablename__ = "scores"

    critic_version_id: Mapped[int] = mapped_column(
        ForeignKey("critic_versions.id", ondelete="CASCADE"), primary_key=True
    )
    triple_id: Mapped[int] = mapped_column(
        ForeignKey("triples.id", ondelete="CASCADE"), primary_key=True
    )
    p_accept: Mapped[float] = mapped_column(Float)

    __table_args__ = (
        # Filtering by threshold and uncertainty sampling read scores in p order.
        Index(None, "critic_version_id", "p_accept"),
    )


class Job(Base):
    """Every long task (import, training, scoring, export, generation) as a row with progress."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    state: Mapped[JobState] = mapped_column(_enum(JobState, "job_state"), default=JobState.queued)
    done: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int | None] = mapped_column(BigInteger)
    message: Mapped[str] = mapped_column(Text, default="")
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    celery_id: Mapped[str | None] = mapped_column(String(155))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # The door it came through: "web", "api", "cli (alice)", "beat", "worker" (app.core.origin).
    started_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Touched by every progress update: a running job without heartbeats has lost its worker.
    heartbeat_at: Mapped[datetime | None]

    __table_args__ = (
        Index(None, "kind", "state"),
        Index(None, "created_at"),
    )


class Export(Base):
    """A filtered knowledge graph written to disk for student training."""

    __tablename__ = "exports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    critic_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("critic_versions.id", ondelete="SET NULL")
    )
    threshold: Mapped[float | None] = mapped_column(Float)
    filters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    split_seed: Mapped[int] = mapped_column(Integer, default=0)
    formats: Mapped[list[Any]] = mapped_column(default=list)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    path: Mapped[str | None] = mapped_column(DataPath())
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Every parameter exactly as it will run (the version resolved from "active"): what the page
    # lists and what `skd export --params params.json` runs again (see app.export.params).
    params: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    # The finished export's figures beyond counts: how the threshold was chosen, the estimated
    # precision with its interval, the archive's size and sha256, warnings.
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))


class StudentState(enum.StrEnum):
    queued = "queued"
    training = "training"
    ready = "ready"
    failed = "failed"
    cancelled = "cancelled"


class StudentModel(Base):
    """A student: a causal LM fine-tuned on an export's train split (``app.student``).

    ``metrics`` holds what the model card says: the dev loss per epoch, the best epoch kept,
    the training loss and the steps; ``args`` the training arguments exactly as run.
    """

    __tablename__ = "student_models"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    export_id: Mapped[int | None] = mapped_column(ForeignKey("exports.id", ondelete="SET NULL"))
    base_model: Mapped[str] = mapped_column(String(500))
    args: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[StudentState] = mapped_column(
        _enum(StudentState, "student_state"), default=StudentState.queued
    )
    path: Mapped[str | None] = mapped_column(DataPath())
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    wall_seconds: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class EvaluationOutput(Base):
    """Which system wrote which triple of an ``evaluation`` campaign.

    A triple is rated once per campaign however many systems wrote it (the campaign item is
    per triple); this table credits its ratings to each of them. Annotators never see it.
    """

    __tablename__ = "evaluation_outputs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    triple_id: Mapped[int] = mapped_column(ForeignKey("triples.id", ondelete="CASCADE"))
    system: Mapped[str] = mapped_column(String(100))
    # The system's own score of the inference (a student's mean token log-probability).
    score: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        UniqueConstraint("campaign_id", "system", "triple_id"),
        Index(None, "triple_id"),
    )


class TeacherRun(Base):
    """One generation run of the teacher model: which backend and prompts made which triples."""

    __tablename__ = "teacher_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    backend: Mapped[str] = mapped_column(String(50))
    model: Mapped[str] = mapped_column(String(500))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[TeacherRunState] = mapped_column(
        _enum(TeacherRunState, "teacher_run_state"), default=TeacherRunState.queued
    )
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # "events" (events, then inferences for them when relations are asked) or "inferences"
    # (for heads the user picked). The triples it wrote have source "teacher-run-<id>".
    kind: Mapped[str] = mapped_column(String(20), default="events", server_default="events")
    # The templates exactly as run (events and each relation), so a run can be read and rerun.
    templates: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    error: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None]


class TeacherEvent(Base):
    """An event a teacher run wrote (the heads its inferences are asked for), with provenance."""

    __tablename__ = "teacher_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("teacher_runs.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)
    # The corpus's normalized key of the event (case, spacing, final period ignored).
    norm_key: Mapped[str] = mapped_column(String(32))
    logprob: Mapped[float | None] = mapped_column(Float)
    chunk: Mapped[int] = mapped_column(Integer)
    examples: Mapped[list[Any]] = mapped_column(default=list)

    __table_args__ = (UniqueConstraint("run_id", "norm_key"),)


class TeacherChunk(Base):
    """A finished chunk of a teacher run: written in the same transaction as its output, so a
    chunk that is delivered again (a killed worker) is skipped, and one that never finished
    runs again from nothing."""

    __tablename__ = "teacher_chunks"

    run_id: Mapped[int] = mapped_column(
        ForeignKey("teacher_runs.id", ondelete="CASCADE"), primary_key=True
    )
    phase: Mapped[str] = mapped_column(String(20), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    finished_at: Mapped[datetime] = mapped_column(default=utcnow)


class AnnotatorCampaign(Base):
    """An annotator's admission to a campaign: through its share link or a staff invitation.

    Every annotate route and the hot path check it, so a campaign id alone opens nothing.
    """

    __tablename__ = "annotator_campaigns"

    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("campaigns.id", ondelete="CASCADE"), primary_key=True
    )
    annotator_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    via: Mapped[str] = mapped_column(String(20))  # link or invite
    entered_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index(None, "annotator_id"),)


class ThrottleEvent(Base):
    """One counted event (a failed login, a new crowd account) for rate limits shared by every
    web process: ``kind`` says which limit, ``key`` whose (a username, an address)."""

    __tablename__ = "throttle_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    key: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index(None, "kind", "key", "at"),)


class CrowdVisit(Base):
    """One arrival of a crowdworker through a campaign's link, with the platform's own ids.

    Prolific adds ``STUDY_ID`` and ``SESSION_ID``; MTurk adds ``assignmentId``, ``hitId`` and
    ``turkSubmitTo`` (where the finished assignment is posted back). A worker can arrive more
    than once (an MTurk worker takes several assignments of one HIT group): each arrival is a
    row, and a rating belongs to the latest arrival before it (``app.annotation.crowd``).
    """

    __tablename__ = "crowd_visits"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    platform: Mapped[str] = mapped_column(String(20))
    study_id: Mapped[str | None] = mapped_column(String(200))
    session_id: Mapped[str | None] = mapped_column(String(200))
    assignment_id: Mapped[str | None] = mapped_column(String(200))
    hit_id: Mapped[str | None] = mapped_column(String(200))
    submit_to: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index(None, "campaign_id", "annotator_id", "created_at"),)


class ApiToken(Base):
    """A staff member's key for scripts: ``Authorization: Bearer skd_…`` on any request acts as
    its owner, with the owner's current role, and needs no CSRF token (a browser never sends
    it by itself). The token is shown once; only its SHA-256 digest is kept, with a short
    prefix so people can tell their tokens apart. ``read`` tokens may only read (GET, HEAD)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))
    scope: Mapped[str] = mapped_column(String(10), default="write")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("token_hash"), Index(None, "user_id", "id"))
