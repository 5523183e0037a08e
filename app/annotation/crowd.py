"""Crowd platforms: the ids Prolific and MTurk send with a worker, and MTurk's hand-back.

Prolific opens a study link with ``PROLIFIC_PID``, ``STUDY_ID`` and ``SESSION_ID``; MTurk
(an ExternalQuestion HIT) with ``workerId``, ``assignmentId``, ``hitId`` and ``turkSubmitTo``.
Each arrival is stored (``CrowdVisit``) so the ratings download says which study session or
assignment a rating was made in, which is what the platforms' own payment pages list.

MTurk specifics:
- **Preview.** While a worker only looks at a HIT, MTurk sends
  ``assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE``: no account is made and nothing is leased; the
  page shows the guidelines and a read-only example.
- **Hand-back.** A finished assignment must be posted (a form POST from the worker's browser)
  to ``<turkSubmitTo>/mturk/externalSubmit`` with ``assignmentId`` and at least one more
  field. Only MTurk's two hosts are accepted as ``turkSubmitTo``, so a crafted link cannot
  make the page post somewhere else.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.models import CrowdVisit

MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
MTURK_HOSTS = frozenset({"www.mturk.com", "workersandbox.mturk.com"})
FIELD_LENGTH = 200


@dataclass(frozen=True)
class PlatformIds:
    study_id: str | None = None
    session_id: str | None = None
    assignment_id: str | None = None
    hit_id: str | None = None
    submit_to: str | None = None

    @property
    def any(self) -> bool:
        return any(
            (self.study_id, self.session_id, self.assignment_id, self.hit_id, self.submit_to)
        )


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value[:FIELD_LENGTH] or None


def mturk_submit_base(turk_submit_to: str | None) -> str | None:
    """``turkSubmitTo`` if it is one of MTurk's hosts over https, else None."""
    if not turk_submit_to:
        return None
    parts = urlsplit(turk_submit_to.strip())
    if parts.scheme != "https" or parts.hostname not in MTURK_HOSTS:
        return None
    return f"https://{parts.hostname}"


def platform_ids(
    study_id: str | None = None,
    session_id: str | None = None,
    assignment_id: str | None = None,
    hit_id: str | None = None,
    turk_submit_to: str | None = None,
) -> PlatformIds:
    return PlatformIds(
        study_id=_clean(study_id),
        session_id=_clean(session_id),
        assignment_id=_clean(assignment_id),
        hit_id=_clean(hit_id),
        submit_to=mturk_submit_base(turk_submit_to),
    )


def is_mturk_preview(assignment_id: str | None) -> bool:
    return (assignment_id or "").strip() == MTURK_PREVIEW


def record_visit(
    session: Session, campaign_id: int, annotator_id: int, platform: str, ids: PlatformIds
) -> CrowdVisit | None:
    """Store an arrival that carried platform ids (the same ids twice in a row: one row)."""
    if not ids.any:
        return None
    latest = latest_visit(session, campaign_id, annotator_id)
    if latest is not None and (
        latest.study_id,
        latest.session_id,
        latest.assignment_id,
        latest.hit_id,
        latest.submit_to,
    ) == (ids.study_id, ids.session_id, ids.assignment_id, ids.hit_id, ids.submit_to):
        return latest
    visit = CrowdVisit(
        campaign_id=campaign_id,
        annotator_id=annotator_id,
        platform=platform,
        study_id=ids.study_id,
        session_id=ids.session_id,
        assignment_id=ids.assignment_id,
        hit_id=ids.hit_id,
        submit_to=ids.submit_to,
    )
    session.add(visit)
    session.flush()
    return visit


def latest_visit(session: Session, campaign_id: int, annotator_id: int) -> CrowdVisit | None:
    return session.scalar(
        select(CrowdVisit)
        .where(CrowdVisit.campaign_id == campaign_id, CrowdVisit.annotator_id == annotator_id)
        .order_by(CrowdVisit.created_at.desc(), CrowdVisit.id.desc())
        .limit(1)
    )


def mturk_hand_back(session: Session, campaign_id: int, annotator_id: int) -> dict[str, str] | None:
    """The form MTurk needs at the end (action and assignment id), if this worker came from
    an MTurk assignment with a valid ``turkSubmitTo``."""
    visit = latest_visit(session, campaign_id, annotator_id)
    if visit is None or visit.platform != "mturk" or not visit.assignment_id:
        return None
    if visit.submit_to is None or is_mturk_preview(visit.assignment_id):
        return None
    return {
        "action": f"{visit.submit_to}/mturk/externalSubmit",
        "assignment_id": visit.assignment_id,
    }


VISIT_FIELDS = ("study_id", "session_id", "assignment_id", "hit_id")


def visit_finder(session: Session, campaign_id: int) -> Callable[[int | None, Any], dict[str, Any]]:
    """For the ratings download: (annotator id, rating time) -> the platform ids of the latest
    arrival at or before that time (empty values where the worker came with none)."""
    by_annotator: dict[int, tuple[list[Any], list[dict[str, Any]]]] = {}
    for visit in session.scalars(
        select(CrowdVisit)
        .where(CrowdVisit.campaign_id == campaign_id)
        .order_by(CrowdVisit.annotator_id, CrowdVisit.created_at, CrowdVisit.id)
    ):
        times, values = by_annotator.setdefault(visit.annotator_id, ([], []))
        times.append(visit.created_at)
        values.append({name: getattr(visit, name) for name in VISIT_FIELDS})
    empty = dict.fromkeys(VISIT_FIELDS)

    def find(annotator_id: int | None, at: Any) -> dict[str, Any]:
        found = by_annotator.get(annotator_id) if annotator_id is not None else None
        if not found or at is None:
            return empty
        times, values = found
        index = bisect_right(times, at) - 1
        return values[index] if index >= 0 else empty

    return find
