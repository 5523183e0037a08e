"""Who is starting work right now: the door (web, api, cli, beat, worker) and the signed-in user.

Every job records where it came from (``jobs.started_by`` and ``jobs.created_by_id``), whichever
function creates it. Rather than thread a "who" argument through every step, each door says
once who is at it, and ``app.core.jobs.create_job`` reads it:

- the web app sets it per request (``app.web.origin``: "web" for pages, "api" for ``/api/``,
  with the session's user id);
- the ``skd`` command sets a process default ("cli (unix name)");
- the Celery worker sets it per task ("beat" for the scheduled tasks, else "worker").

A context variable, so concurrent requests and tasks in threads never see each other's value;
the process default covers threads that start with an empty context.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass


@dataclass(frozen=True)
class Origin:
    door: str  # "web", "api", "cli (alice)", "beat", "worker"
    user_id: int | None = None


_current: ContextVar[Origin | None] = ContextVar("skd_job_origin", default=None)
_process_default: Origin | None = None


def current_origin() -> Origin | None:
    """The origin of the work in this context, else the process default, else None."""
    return _current.get() or _process_default


def set_process_origin(door: str, user_id: int | None = None) -> None:
    """Say once for a whole process (the CLI) where its jobs come from."""
    global _process_default
    _process_default = Origin(door[:100], user_id)


def set_origin(door: str, user_id: int | None = None) -> Token[Origin | None]:
    """Set the origin for this context (a request, a task); returns the token to reset it."""
    return _current.set(Origin(door[:100], user_id))


def reset_origin(token: Token[Origin | None]) -> None:
    _current.reset(token)


@contextmanager
def origin(door: str, user_id: int | None = None) -> Iterator[None]:
    token = set_origin(door, user_id)
    try:
        yield
    finally:
        reset_origin(token)
