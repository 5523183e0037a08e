"""Which processes run (web servers, workers, beat) and what will go wrong with them, for
staff: a fragment on the jobs page that refreshes itself, and ``GET /api/processes``.

Thin over ``app.core.processes``; the reference is this web server's own broker and queue,
the ones the jobs it starts are sent to.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from app.core import processes
from app.core.config import get_settings
from app.web.deps import SessionDep, SessionRoute, StaffUser, templates

router = APIRouter(tags=["jobs"], route_class=SessionRoute)


class ProcessOut(BaseModel):
    kind: str = Field(description="web, worker or beat.")
    host: str
    pid: int
    queues: list[str] = Field(description="The queues a worker takes, or a web server sends to.")
    broker: str = Field(description="Its broker's address, without the password.")
    version: str
    started_at: str = Field(json_schema_extra={"format": "date-time"})
    seen_at: str = Field(json_schema_extra={"format": "date-time"})


class ProcessesOut(BaseModel):
    """The processes alive now, and what will go wrong with them."""

    processes: list[ProcessOut]
    problems: list[str] = Field(
        description="Plain sentences: no worker takes this server's queue on its broker, "
        "more than one beat, ...; empty when all is well."
    )
    gone_silently: list[ProcessOut] = Field(
        description="Processes that stopped without saying so in the last day (killed, out "
        "of memory, machine lost), newest first; a clean stop leaves none."
    )
    broker: str = Field(description="Where this web server sends jobs (no password).")
    queue: str


def processes_context(session: SessionDep) -> dict[str, object]:
    """The live processes and their problems, as this server sees them."""
    settings = get_settings()
    alive, gone = processes.census(session)
    return {
        "processes": alive,
        "gone_silently": gone,
        "process_problems": processes.problems_here(alive, settings),
        "broker": processes.safe_broker(settings.broker),
        "queue": settings.celery_queue,
        "heartbeat_s": settings.process_heartbeat_seconds,
    }


@router.get("/api/processes", summary="List running processes")
def list_processes(session: SessionDep, user: StaffUser) -> ProcessesOut:
    """The web servers, workers and beats alive now (each says so every
    ``SKD_PROCESS_HEARTBEAT_SECONDS``), and the problems they make: a monitor can alert on a
    non-empty ``problems``."""
    settings = get_settings()
    alive, gone = processes.census(session)
    return ProcessesOut(
        processes=[ProcessOut.model_validate(p.as_dict()) for p in alive],
        problems=processes.problems_here(alive, settings),
        gone_silently=[ProcessOut.model_validate(p.as_dict()) for p in gone],
        broker=processes.safe_broker(settings.broker),
        queue=settings.celery_queue,
    )


@router.get("/jobs/processes", response_class=HTMLResponse, include_in_schema=False)
def processes_panel(request: Request, session: SessionDep, user: StaffUser) -> HTMLResponse:
    """The jobs page's process panel alone (it polls itself)."""
    return templates.TemplateResponse(request, "_processes.html", processes_context(session))
