"""Critic versions: a row per trained model, exactly one active, switched atomically.

A version is ``training`` while its job runs, ``ready`` when trained and evaluated, ``active``
when it is the one that scores the corpus, ``retired`` when replaced and ``failed`` when its
training failed. Activation is one transaction: the previous active version is retired and
the new one activated together, and the partial unique index on ``state = 'active'`` makes
two active versions impossible even for concurrent switches (one of them fails and can be
retried). Readers never see zero or two active versions.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core.models import CriticState, CriticVersion, utcnow

# Auto-activation: a new version replaces the active one unless its held-out ROC-AUC is worse
# by more than this (the default of the setting ``critic_auc_tolerance``).
AUC_TOLERANCE = 0.01


class CriticStateError(ValueError):
    """A switch the rules refuse (e.g. activating a version that failed)."""


def active_version(session: Session) -> CriticVersion | None:
    return session.scalar(select(CriticVersion).where(CriticVersion.state == CriticState.active))


def start_version(
    session: Session, base_model: str, hyperparameters: dict[str, Any], job_id: int | None = None
) -> CriticVersion:
    version = CriticVersion(
        base_model=base_model,
        hyperparameters=hyperparameters,
        state=CriticState.training,
        job_id=job_id,
    )
    session.add(version)
    session.flush()
    return version


def finish_version(
    session: Session,
    version_id: int,
    *,
    path: str,
    metrics: dict[str, Any],
    label_snapshot: dict[str, Any],
    threshold: float | None = None,
) -> CriticVersion:
    version = _get(session, version_id)
    version.state = CriticState.ready
    version.path = path
    version.metrics = metrics
    version.label_snapshot = label_snapshot
    version.threshold = threshold
    return version


def fail_version(session: Session, version_id: int, error: str) -> None:
    version = _get(session, version_id)
    version.state = CriticState.failed
    version.error = error


def activate(session: Session, version_id: int) -> CriticVersion:
    """Make ``version_id`` the active critic (ready, retired or already active versions only).

    Rolling back to an earlier version is the same call with its id.
    """
    version = _get(session, version_id)
    if version.state == CriticState.active:
        return version
    if version.state not in (CriticState.ready, CriticState.retired):
        raise CriticStateError(
            f"critic version {version_id} is {version.state.value}; only a ready or retired "
            "version can be activated"
        )
    session.execute(
        update(CriticVersion)
        .where(CriticVersion.state == CriticState.active)
        .values(state=CriticState.retired)
    )
    session.flush()
    version.state = CriticState.active
    version.activated_at = utcnow()
    session.flush()
    return version


def should_auto_activate(
    candidate: CriticVersion, current: CriticVersion | None, *, tolerance: float = AUC_TOLERANCE
) -> bool:
    """The policy: activate when held-out AUC is not worse than the active one's by more than
    ``tolerance`` (the setting ``critic_auc_tolerance``); otherwise keep the new version ready
    for a person to decide. A version no better than chance (AUC <= 0.5) is never activated
    automatically, not even the first one."""
    new_auc = candidate.metrics.get("roc_auc")
    if new_auc is None or new_auc != new_auc:  # missing or NaN: let a person decide
        return False
    if new_auc <= 0.5:  # no better than chance: never switched on automatically
        return False
    if current is None:
        return True
    old_auc = current.metrics.get("roc_auc")
    if old_auc is None or old_auc != old_auc:
        return True
    return bool(new_auc >= old_auc - tolerance)


def _get(session: Session, version_id: int) -> CriticVersion:
    version = session.get(CriticVersion, version_id, with_for_update=True)
    if version is None:
        raise LookupError(f"no critic version {version_id}")
    return version
