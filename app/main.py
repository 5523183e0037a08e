"""create_app(): the FastAPI application with its routers, static files, templates, middleware."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

import app as package
from app.core import db
from app.core.config import Settings, get_settings
from app.core.paths import STATIC_DIR
from app.core.processes import Heartbeat
from app.core.queue import BrokerUnavailable
from app.web import (
    account,
    annotate,
    auth,
    backups,
    browse,
    campaigns,
    corpus,
    critic,
    critic_actions,
    docs,
    exports,
    home,
    job_actions,
    jobs,
    jobs_page,
    people,
    processes,
    quality,
    rate,
    student,
    teacher,
)
from app.web.bearer import BearerTokenMiddleware
from app.web.deps import LoginRequired, refuse_unstorable_input
from app.web.errors import html_or_json_error
from app.web.headers import SecurityHeadersMiddleware
from app.web.job_actions import broker_unavailable
from app.web.origin import JobOriginMiddleware
from app.web.sessions import SessionCookies
from app.web.sweeper import start_sweeper

# One router per resource, in the order they are included.
ROUTERS = (
    home.router,
    auth.router,
    account.router,
    processes.router,  # before the jobs' own routes: /jobs/processes is not a job's id
    jobs.router,
    jobs_page.router,
    corpus.router,
    browse.router,
    annotate.router,
    rate.router,
    quality.router,
    campaigns.router,
    critic.router,
    critic_actions.router,
    exports.router,
    people.router,
    teacher.router,
    student.router,
    job_actions.router,
    backups.router,
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    secret = settings.session_secret()  # refuses to start without a key outside the demo
    settings.ensure_dirs()
    db.configure(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Sync routes run in anyio's thread pool (40 threads by default). On a small machine
        # that many threads interleave on the GIL while holding database transactions open,
        # which makes hot rows wait; a smaller pool queues requests before they begin instead.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.web_threads
        # Everything loaded so far lives as long as the process: keep it out of the cyclic
        # garbage collector's scans, which otherwise revisit it on every request burst.
        gc.freeze()
        stop_sweeping = start_sweeper(settings)
        # this server in the jobs page's process list, with the queue and broker it sends to
        heartbeat = Heartbeat("web", [settings.celery_queue], settings.broker).start(settings)
        yield
        heartbeat.stop()
        stop_sweeping()

    application = FastAPI(
        lifespan=lifespan,
        title="SKD Studio",
        version=package.__version__,
        summary="Human-in-the-loop Symbolic Knowledge Distillation.",
        description=docs.DESCRIPTION,
        openapi_tags=docs.TAGS,
        generate_unique_id_function=docs.operation_id,
        docs_url=None,  # served from packaged assets instead of a CDN (app/web/docs.py)
        redoc_url=None,
        dependencies=[Depends(refuse_unstorable_input)],
    )
    # Added before (so inside) the session middleware: it reads the session's user, so that
    # every job a request starts records who started it.
    application.add_middleware(JobOriginMiddleware)
    # Outside the job origin (which names the token), inside the security headers (a refused
    # token's 401 carries them too).
    application.add_middleware(BearerTokenMiddleware)
    application.add_middleware(
        SessionCookies,
        secret_key=secret,
        public_https=settings.public_url.startswith("https://"),
        frame_ancestors=settings.crowd_frame_ancestors,
    )
    application.add_middleware(
        SecurityHeadersMiddleware, crowd_frame_ancestors=settings.crowd_frame_ancestors
    )
    docs.mount_offline_docs(application)
    application.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    # htmx comes from a package (django-js-lib-htmx ships it; no Django is involved).
    application.mount("/vendor", StaticFiles(packages=[("js_lib_htmx", "static")]), name="vendor")
    for router in ROUTERS:
        application.include_router(docs.list_only_the_api(router))
    application.add_exception_handler(BrokerUnavailable, broker_unavailable)

    # Browsers get a page in the app's look; API clients keep the JSON answer.
    application.add_exception_handler(StarletteHTTPException, html_or_json_error)

    @application.exception_handler(LoginRequired)
    async def _to_login(request: Request, exc: LoginRequired) -> RedirectResponse:
        return RedirectResponse(f"/login?next={quote(exc.next_url)}", status_code=303)

    return application
