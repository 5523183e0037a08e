"""Tell ``app.core.origin`` who is at the web door, so every job a request starts records it.

A pure ASGI middleware placed inside the session middleware (it reads the signed session's
user id). Sync routes run in a worker thread with a copy of this context, so they see it too.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.origin import reset_origin, set_origin


class JobOriginMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        session = scope.get("session") or {}
        user_id = session.get("user_id")
        door = "api" if scope["path"].startswith("/api/") else "web"
        token = set_origin(door, int(user_id) if isinstance(user_id, int) else None)
        try:
            await self.app(scope, receive, send)
        finally:
            reset_origin(token)
