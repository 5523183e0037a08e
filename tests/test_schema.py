"""The migrated schema: matches the models, carries the invariants, and migrates both ways."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from app.core import migrate
from app.core.db import make_engine, session_scope
from app.core.models import (
    Assignment,
    Base,
    Campaign,
    CampaignItem,
    CampaignPurpose,
    CriticState,
    CriticVersion,
    Rating,
    Role,
    Triple,
    User,
    utcnow,
)
from tests.conftest import BACKEND, PG_ADMIN_URL

# Indexes on expressions (ratings_done DESC) cannot be reflected by every dialect, so
# autogenerate cannot compare them; they are checked by name below instead.
EXPRESSION_INDEXES = {"ix_campaign_items_open"}


def _comparable(obj, name, type_, reflected, compare_to) -> bool:  # type: ignore[no-untyped-def]
    return not (type_ == "index" and name in EXPRESSION_INDEXES)


def test_migrated_schema_matches_the_models(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_object": _comparable, "compare_type": True}
        )
        diffs = compare_metadata(context, Base.metadata)
        indexes = {
            index["name"]
            for table in Base.metadata.tables
            for index in inspect(conn).get_indexes(table)
        }
    assert diffs == []
    # Expression/partial indexes are invisible to autogenerate: check them by name.
    declared = {i.name for t in Base.metadata.tables.values() for i in t.indexes}
    assert declared <= indexes, f"missing indexes: {declared - indexes}"


@pytest.fixture
def scratch_url(tmp_path):  # type: ignore[no-untyped-def]
    """An empty database of this backend, for migrating up and down."""
    if BACKEND == "sqlite":
        yield f"sqlite:///{tmp_path / 'scratch.sqlite'}"
        return
    import psycopg

    name = f"skd_scratch_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    yield f"{base}/{name}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_chain_upgrades_empty_database_and_downgrades_to_nothing(scratch_url: str) -> None:
    migrate.upgrade(scratch_url)
    assert migrate.current(scratch_url) is not None
    engine = make_engine(scratch_url)
    try:
        with engine.connect() as conn:
            assert set(Base.metadata.tables) <= set(inspect(conn).get_table_names())
        migrate.downgrade(scratch_url, "base")
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        migrate.upgrade(scratch_url)  # and back up again: downgrade left nothing behind
        assert migrate.current(scratch_url) is not None
    finally:
        engine.dispose()


def _triple(session, n: int = 0) -> Triple:  # type: ignore[no-untyped-def]
    triple = Triple(
        head=f"PersonX acts {n}", relation="xNeed", tail="a plan", norm_hash=f"{n:032x}", source="t"
    )
    session.add(triple)
    session.flush()
    return triple


def _item(session, ratings_needed: int = 3):  # type: ignore[no-untyped-def]
    campaign = Campaign(
        name="c",
        purpose=CampaignPurpose.calibration,
        answer_scale=[],
        selection={},
        share_token=uuid.uuid4().hex,
    )
    session.add(campaign)
    session.flush()
    item = CampaignItem(
        campaign_id=campaign.id, triple_id=_triple(session).id, ratings_needed=ratings_needed
    )
    annotator = User(role=Role.annotator, platform="prolific", external_id=uuid.uuid4().hex)
    session.add_all([item, annotator])
    session.flush()
    return item, annotator


def test_a_triple_is_stored_once(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(write=True) as session:
        _triple(session, 1)
    with pytest.raises(IntegrityError), session_scope(write=True) as session:
        _triple(session, 1)


def test_an_annotator_rates_an_item_once_and_a_submission_counts_once(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(write=True) as session:
        item, annotator = _item(session)
        ids = (item.id, item.triple_id, annotator.id)
        session.add(
            Rating(
                triple_id=ids[1], item_id=ids[0], annotator_id=ids[2], answer=2, submission_id="s1"
            )
        )
    with pytest.raises(IntegrityError), session_scope(write=True) as session:
        session.add(
            Rating(
                triple_id=ids[1], item_id=ids[0], annotator_id=ids[2], answer=1, submission_id="s2"
            )
        )
    with pytest.raises(IntegrityError), session_scope(write=True) as session:
        other = User(role=Role.annotator, platform="mturk", external_id="w2")
        session.add(other)
        session.flush()
        session.add(
            Rating(
                triple_id=ids[1],
                item_id=ids[0],
                annotator_id=other.id,
                answer=1,
                submission_id="s1",
            )
        )


def test_an_item_never_records_more_ratings_than_it_needs(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(write=True) as session:
        item, _ = _item(session, ratings_needed=2)
        item_id = item.id
    with pytest.raises(IntegrityError), session_scope(write=True) as session:
        session.get(CampaignItem, item_id).ratings_done = 3


def test_an_annotator_is_leased_an_item_once(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(write=True) as session:
        item, annotator = _item(session)
        ids = (item.id, annotator.id, item.campaign_id)
        session.add(
            Assignment(
                item_id=ids[0],
                annotator_id=ids[1],
                campaign_id=ids[2],
                leased_until=utcnow() + timedelta(minutes=10),
            )
        )
    with pytest.raises(IntegrityError), session_scope(write=True) as session:
        session.add(
            Assignment(
                item_id=ids[0], annotator_id=ids[1], campaign_id=ids[2], leased_until=utcnow()
            )
        )


def test_at_most_one_critic_is_active(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(write=True) as session:
        session.add_all(
            [
                CriticVersion(base_model="m", state=CriticState.active),
                CriticVersion(base_model="m", state=CriticState.ready),
                CriticVersion(base_model="m", state=CriticState.retired),
                CriticVersion(base_model="m", state=CriticState.retired),
            ]
        )
    with pytest.raises(IntegrityError), session_scope(write=True) as session:
        session.add(CriticVersion(base_model="m", state=CriticState.active))


def test_timestamps_come_back_timezone_aware(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(write=True) as session:
        triple_id = _triple(session, 7).id
    with session_scope() as session:
        created = session.get(Triple, triple_id).created_at
    assert created.tzinfo is not None
    assert abs((utcnow() - created).total_seconds()) < 60
