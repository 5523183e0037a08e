"""Tell ``app.core.origin`` who is at the web door, so every job a request starts records it.

A pure ASGI middleware placed inside the session middleware (it reads the signed session's
user id) and the API-token one (a script's job records the token's name and owner). Sync
routes run in a worker thread with a copy of this context, so they see it too.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.origin import reset_origin, set_origin
from app.web.bearer import token_use


class JobOriginMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        door = "api" if scope["path"].startswith("/api/") else "web"
        use = token_use(scope)
        if use is not None:
            token = set_origin(f"{door} token {use.name!r}", use.user_id)
        else:
            user_id = (scope.get("session") or {}).get("user_id")
            token = set_origin(door, int(user_id) if isinstance(user_id, int) else None)
        try:
            await self.app(scope, receive, send)
        finally:
            reset_origin(token)
