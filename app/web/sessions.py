"""The session cookie, and crowd sessions that live inside a study platform's page.

MTurk runs a HIT as an ``ExternalQuestion``: our rating pages inside an iframe on
``www.mturk.com``. There the browser treats our cookie as a third-party one: a
``SameSite=Lax`` cookie is neither stored nor sent, so a worker who entered lost their session
on the very next page (and ``frame-ancestors 'none'`` refused to show the page at all). So:

- the crowd paths (``CROWD_PATHS``) may be framed by the origins in
  ``SKD_CROWD_FRAME_ANCESTORS`` (MTurk's, by default), every other page by nobody
  (``app.web.headers``);
- a crowd session that began inside a frame (the study link opened in an iframe, or with
  MTurk's ``turkSubmitTo``) is marked ``framed``; its cookie is then sent
  ``SameSite=None; Secure; Partitioned`` on every response (CHIPS: a cookie of that frame
  only, keyed by the top-level site), which browsers store and send inside a cross-site
  frame. Every other session keeps ``SameSite=Lax``, so one browser never holds the same
  cookie twice with different attributes.

Every state-changing crowd route checks a CSRF token (``app.web.deps``): what ``SameSite``
would otherwise add. Staff sessions are never framed.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SESSION_COOKIE = "skd_session"
SESSION_MAX_AGE = 14 * 24 * 3600
FRAMED_KEY = "framed"
# Where a crowdworker is, from the study link to the last answer.
CROWD_PATHS = ("/c/", "/annotate/", "/api/annotate/")
# Host names a browser treats as a secure context over plain http (Secure cookies kept).
LOOPBACK_NAMES = ("localhost",)


def is_crowd_path(path: str) -> bool:
    return path.startswith(CROWD_PATHS)


def is_secure_context(scope: Scope, public_https: bool) -> bool:
    """Whether a ``Secure`` cookie set in answer to this request will be kept: https (as
    uvicorn saw it, proxy headers included), a public URL that is https, or localhost."""
    if public_https or scope.get("scheme") == "https":
        return True
    for name, value in scope.get("headers", ()):
        if name == b"host":
            host = value.decode("latin-1").rsplit(":", 1)[0].lower()
            return host in LOOPBACK_NAMES
    return False


def opened_in_a_frame(sec_fetch_dest: str | None, turk_submit_to: str | None) -> bool:
    """The study link was opened inside another page: the browser says so
    (``Sec-Fetch-Dest: iframe``), or MTurk's parameters do (it always frames a HIT)."""
    return (sec_fetch_dest or "") in ("iframe", "frame") or bool(turk_submit_to)


class SessionCookies:
    """Starlette's signed-cookie sessions (``request.session``), whose cookie is sent
    ``SameSite=None; Secure; Partitioned`` instead of ``Lax`` for a framed crowd session, when
    framing is allowed and the request is in a secure context."""

    def __init__(
        self, app: ASGIApp, *, secret_key: str, public_https: bool, frame_ancestors: str
    ) -> None:
        self.sessions = SessionMiddleware(
            app,
            secret_key=secret_key,
            session_cookie=SESSION_COOKIE,
            same_site="lax",
            https_only=public_https,
            max_age=SESSION_MAX_AGE,
        )
        framed = SessionMiddleware(
            app,
            secret_key=secret_key,
            session_cookie=SESSION_COOKIE,
            same_site="none",
            https_only=True,
            partitioned=True,
        )
        self.lax_flags = self.sessions.security_flags
        self.framed_flags = framed.security_flags
        self.public_https = public_https
        self.frames_allowed = bool(frame_ancestors.strip())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.frames_allowed or scope["type"] != "http":
            await self.sessions(scope, receive, send)
            return

        async def send_framed(message: Message) -> None:
            if message["type"] == "http.response.start" and self._framed(scope):
                headers = MutableHeaders(scope=message)
                cookies = headers.getlist("set-cookie")
                if cookies:
                    del headers["set-cookie"]
                    for cookie in cookies:
                        if cookie.startswith(SESSION_COOKIE + "="):
                            cookie = cookie.replace(self.lax_flags, self.framed_flags)
                        headers.append("set-cookie", cookie)
            await send(message)

        await self.sessions(scope, receive, send_framed)

    def _framed(self, scope: Scope) -> bool:
        session = scope.get("session") or {}
        return bool(session.get(FRAMED_KEY)) and is_secure_context(scope, self.public_https)
