"""Rate limits that hold across every web process: events counted in a sliding window.

A limit is a ``kind`` (failed login by account, failed login by address, new crowd account by
address), a ``key`` (the username, the client address) and a count within a window. Events are
rows of ``throttle_events`` so that several web processes (or machines) share one count; the
rows of a key older than its window are removed whenever a new event for it is recorded.
"""

from __future__ import annotations

import math
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.core.models import ThrottleEvent, utcnow

LOGIN_ACCOUNT = "login-account"
LOGIN_ADDRESS = "login-address"
CROWD_ACCOUNT = "crowd-account"


def seconds_to_wait(session: Session, kind: str, key: str, limit: int, window: int) -> int:
    """0 when another event of ``kind`` for ``key`` is allowed now, else the seconds until the
    oldest counted event leaves the window (what the 429 answer tells the person)."""
    if limit <= 0:
        return 0
    since = utcnow() - timedelta(seconds=window)
    count, oldest = session.execute(
        select(func.count(), func.min(ThrottleEvent.at)).where(
            ThrottleEvent.kind == kind, ThrottleEvent.key == key[:200], ThrottleEvent.at > since
        )
    ).one()
    if count < limit:
        return 0
    return max(1, math.ceil((oldest - since).total_seconds()))


def record(session: Session, kind: str, key: str, window: int) -> None:
    """Count one event, and forget this key's events that have left the window."""
    now = utcnow()
    session.execute(
        delete(ThrottleEvent).where(
            ThrottleEvent.kind == kind,
            ThrottleEvent.key == key[:200],
            ThrottleEvent.at <= now - timedelta(seconds=window),
        )
    )
    session.add(ThrottleEvent(kind=kind, key=key[:200], at=now))


def forget(session: Session, kind: str, key: str) -> None:
    """Clear a key's events (a successful login clears its account's failures)."""
    session.execute(
        delete(ThrottleEvent).where(ThrottleEvent.kind == kind, ThrottleEvent.key == key[:200])
    )


def describe_wait(seconds: int) -> str:
    """'3 minutes' / '40 seconds': the wait in words for a 429 page."""
    if seconds >= 90:
        minutes = math.ceil(seconds / 60)
        return f"{minutes} minutes"
    return f"{seconds} seconds" if seconds != 1 else "1 second"
