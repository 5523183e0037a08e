"""Security headers on every response: no framing (clickjacking), no MIME sniffing, and no
full URLs in the Referer (share links carry worker ids in their query strings).

The one exception to "no framing": the crowd pages (``app.web.sessions.CROWD_PATHS``) may be
shown inside the study platforms' pages named in ``SKD_CROWD_FRAME_ANCESTORS`` (MTurk runs a
HIT in an iframe). Staff pages never are.

A plain ASGI middleware rather than ``BaseHTTPMiddleware``: it adds the headers as the response
starts, without buffering bodies or moving the route to another task.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.web.sessions import is_crowd_path

SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def crowd_headers(frame_ancestors: str) -> dict[str, str]:
    """The headers of a crowd page: framing by these origins (and our own), no
    ``X-Frame-Options`` (it has no allow-list; CSP's ``frame-ancestors`` replaces it)."""
    origins = " ".join(frame_ancestors.split())
    if not origins:
        return SECURITY_HEADERS
    headers = {k: v for k, v in SECURITY_HEADERS.items() if k != "X-Frame-Options"}
    headers["Content-Security-Policy"] = f"frame-ancestors 'self' {origins}"
    return headers


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, crowd_frame_ancestors: str = "") -> None:
        self.app = app
        self.crowd = crowd_headers(crowd_frame_ancestors)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chosen = self.crowd if is_crowd_path(scope["path"]) else SECURITY_HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in chosen.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
