"""Critic versions: one active, atomic switches under concurrent readers, rollback, policy."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from app.core.db import session_scope
from app.core.models import CriticState, CriticVersion
from app.critic.registry import (
    CriticStateError,
    activate,
    active_version,
    fail_version,
    finish_version,
    should_auto_activate,
    start_version,
)


def ready_version(auc: float) -> int:
    with session_scope(write=True) as session:
        version = start_version(session, "tiny", {"lr": 1e-3})
        finish_version(
            session,
            version.id,
            path=f"/m/{version.id}",
            metrics={"roc_auc": auc},
            label_snapshot={},
        )
        return version.id


def states() -> dict[int, str]:
    with session_scope() as session:
        return {v.id: v.state.value for v in session.scalars(select(CriticVersion))}


def test_activate_retires_the_previous_and_rollback_restores_it(engine) -> None:  # type: ignore[no-untyped-def]
    first, second = ready_version(0.80), ready_version(0.82)
    with session_scope(write=True) as session:
        activate(session, first)
    with session_scope(write=True) as session:
        activate(session, second)
    assert states() == {first: "retired", second: "active"}
    with session_scope(write=True) as session:  # roll back
        activate(session, first)
    assert states() == {first: "active", second: "retired"}


def test_failed_or_training_versions_cannot_be_activated(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(write=True) as session:
        broken = start_version(session, "tiny", {}).id
        fail_version(session, broken, "out of memory")
        session.flush()
        training = start_version(session, "tiny", {}).id
    for version_id in (training, broken):
        with pytest.raises(CriticStateError), session_scope(write=True) as session:
            activate(session, version_id)
    with session_scope() as session:
        assert active_version(session) is None


def test_readers_never_see_zero_or_two_active_during_switches(engine) -> None:  # type: ignore[no-untyped-def]
    ids = [ready_version(0.8) for _ in range(4)]
    with session_scope(write=True) as session:
        activate(session, ids[0])
    seen: list[int] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            with session_scope() as session:
                seen.append(
                    session.scalar(
                        select(func.count())
                        .select_from(CriticVersion)
                        .where(CriticVersion.state == CriticState.active)
                    )
                    or 0
                )

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for thread in readers:
        thread.start()
    for round_ in range(20):
        with session_scope(write=True) as session:
            activate(session, ids[round_ % 4])
    stop.set()
    for thread in readers:
        thread.join()
    assert seen and set(seen) == {1}


def test_auto_activation_policy() -> None:
    def version(auc: float | None) -> CriticVersion:
        return CriticVersion(base_model="m", metrics={} if auc is None else {"roc_auc": auc})

    assert should_auto_activate(version(0.7), None)
    assert should_auto_activate(version(0.795), version(0.80))
    assert not should_auto_activate(version(0.78), version(0.80))
    assert not should_auto_activate(version(None), version(0.80))
    # No better than chance: never switched on by itself, even with nothing active.
    assert not should_auto_activate(version(0.45), None)
    assert not should_auto_activate(version(0.5), version(0.40))
    # The tolerance is the setting's value when given.
    assert should_auto_activate(version(0.75), version(0.80), tolerance=0.06)
