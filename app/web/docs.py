"""The API reference: what ``/openapi.json`` lists, and ``/docs`` / ``/redoc`` without a CDN.

Scripts read the reference to drive the loop, so it lists the JSON API only (the paths under
``/api/``): the HTML pages and the forms behind them are the browser's door, with answers of
their own (redirects, fragments); listed beside the API, they made the reference read as if
scripts should post forms. Every listed operation has a short summary, and its operation id is made
from that summary (``list_teacher_runs``), so a generated client reads well.

FastAPI's built-in pages load their scripts and styles from jsDelivr, which an offline lab (or
a locked-down one) cannot reach. The same pages are served here with the assets the
``fastapi-offline`` wheel ships (its ``static/`` folder: swagger-ui-bundle.js, swagger-ui.css,
redoc.standalone.js); only the asset files are used, not its FastAPI subclass.
"""

from __future__ import annotations

import re

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.utils import generate_unique_id

ASSETS = "/docs-assets"
API_PREFIX = "/api/"

DESCRIPTION = """\
The JSON API of SKD Studio: what the pages and the `skd` command do, for scripts.

**Sign in with an API token.** Make one on [your account page](/account) (or
`skd users tokens create NAME --name WHAT` in a terminal) and send it with every request as
`Authorization: Bearer skd_...` (the *Authorize* button below does that here). A token acts as
its owner, with the owner's current role; a read-only token may only read. A token that is
unknown, revoked or expired gets 401, even beside a signed-in browser's cookie.

**Long work is a job.** Imports, teacher runs, critic training and scoring, exports, student
training and evaluations answer `202 Accepted` with the job's `status_url`
(`/api/jobs/{job_id}`; a critic training starts a chain of three, in `status_urls`). Poll it
until `finished` is true: `state` is then `succeeded`, `failed` or `cancelled`, `done` and
`total` count the progress on the way, and `result` names what the job made.

**Errors are JSON** (`{"detail": ...}`): 422 names each bad field (`loc`, `msg`) before any
work starts, 409 says which state forbids it (a run still running, a version training), 403 a
role or a read-only token that may not, 404 no such thing.

**The loop, in order:** `POST /api/teacher/runs` (or `POST /api/corpus/import`) →
`POST /api/campaigns` (crowdworkers rate on its `share_url`) → `POST /api/critic/train` →
`POST /api/exports` → `POST /api/student/runs` → `POST /api/student/evaluations`.
"""

# The reference's sections, in the loop's order.
SECTIONS = {
    "account": "Who a request acts as, and your API tokens.",
    "corpus": "The corpus of triples: counts by relation and source, imports.",
    "browse": "The corpus, and a campaign's items with their ratings, a page at a time.",
    "teacher": (
        "The teacher writes events and inferences (the packaged SmolLM2 or any"
        " OpenAI-compatible server)."
    ),
    "campaigns": "Rating campaigns: plan, create, open, pause, close.",
    "annotate": (
        "A crowdworker's loop (the rating page's calls, in the annotator's own session):"
        " lease the next item, submit or skip."
    ),
    "labels": "Ratings and the aggregated labels the critic trains on, as CSV or JSONL.",
    "critic": (
        "Critic versions: train on fresh labels, evaluate, activate, score the corpus,"
        " preview a threshold."
    ),
    "exports": "The filtered graph for the student: preview, export, download.",
    "student": "Students trained on an export, and the blind evaluation against the teacher.",
    "jobs": "Every long job: progress, cancel, retry.",
    "backups": "Copies of the database (admins): list, back up now, download for `skd db restore`.",
}
TAGS = [{"name": name, "description": text} for name, text in SECTIONS.items()]


def operation_id(route: APIRoute) -> str:
    """``list_teacher_runs`` from the summary "List teacher runs"; FastAPI's own id otherwise."""
    if not route.summary:
        return generate_unique_id(route)
    words = re.sub(r"[^a-z0-9 ]", "", route.summary.lower().replace("'s", "")).split()
    return "_".join(word for word in words if word not in ("a", "an", "the"))


def list_only_the_api(router: APIRouter) -> APIRouter:
    """Keep the router's routes outside ``/api/`` out of the reference (before including it)."""
    for route in router.routes:
        if isinstance(route, APIRoute) and not route.path.startswith(API_PREFIX):
            route.include_in_schema = False
    return router


def mount_offline_docs(application: FastAPI) -> None:
    """Serve the API docs pages; create the app with ``docs_url=None, redoc_url=None``."""
    application.mount(
        ASSETS, StaticFiles(packages=[("fastapi_offline", "static")]), name="docs-assets"
    )
    title = application.title

    # Plain Starlette routes (as FastAPI's own docs routes are), public like them.
    async def swagger_ui(_request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=application.openapi_url or "/openapi.json",
            title=f"{title} · API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
        )

    async def redoc(_request: Request) -> HTMLResponse:
        return get_redoc_html(
            openapi_url=application.openapi_url or "/openapi.json",
            title=f"{title} · API",
            redoc_js_url=f"{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    application.add_route("/docs", swagger_ui, include_in_schema=False)
    application.add_route("/redoc", redoc, include_in_schema=False)
