"""Errors as people meet them: a page in the app's look for a browser, JSON for an API client.

A crowdworker who opens a stale link, a paused study or the rating page without signing in
should read what happened and what to do, not ``{"detail": "..."}``. A request gets the page
when it asks for HTML (browsers send ``Accept: text/html``) and is not under ``/api/``;
everything else keeps FastAPI's JSON answer, unchanged.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.web.deps import templates
from app.web.sessions import CROWD_PATHS

# status -> (title, what to do)
ADVICE = {
    401: (
        "Please open your study link",
        "You are not signed in. Open this study from the link your study platform (Prolific, "
        "Mechanical Turk) or your invitation gave you: it signs you in.",
    ),
    403: ("Not allowed", "This page is not open to your account."),
    404: (
        "Study not found",
        "This study is not open, or the address is not quite right. Check the link you were "
        "given, or contact the researchers.",
    ),
    409: ("Not available right now", "Please come back later."),
}
# Staff mistype addresses and follow old links to deleted things; "study" means nothing to them.
STAFF_NOT_FOUND = (
    "Page not found",
    "Nothing is at this address: it may have been mistyped, or what it showed was deleted. "
    "Every page is reached from the start page.",
)
# Where crowdworkers are (the session's crowd paths) or arrive (invitation links): the study text.
CROWD_PAGES = (*CROWD_PATHS, "/i/")


def wants_page(request: Request) -> bool:
    return not request.url.path.startswith("/api/") and "text/html" in request.headers.get(
        "accept", ""
    )


async def html_or_json_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if not wants_page(request) or exc.status_code not in ADVICE:
        return await http_exception_handler(request, exc)
    title, advice = ADVICE[exc.status_code]
    staff_page = exc.status_code == 404 and not request.url.path.startswith(CROWD_PAGES)
    if staff_page:
        title, advice = STAFF_NOT_FOUND
    # Starlette's own "Not Found" for an unknown address adds nothing to the title.
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != "Not Found" else None
    response = templates.TemplateResponse(
        request,
        "error.html",
        {
            "user": None,
            "title": title,
            "advice": advice,
            "detail": detail,
            "start_link": staff_page,
        },
        status_code=exc.status_code,
    )
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response
