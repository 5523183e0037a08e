"""``Authorization: Bearer skd_…``: a script's API token, checked once at the door.

A pure ASGI middleware, outside the job-origin one (so jobs a script starts record the token
that started them) and inside the security headers. A request that presents a token is
answered 401 when the token is unknown, revoked, expired or its owner may no longer use it,
and 403 when a read-only token asks to change something; it never falls back to the session
cookie it may also carry. A valid token is kept in the ASGI scope for ``app.web.deps``, which
makes its owner the request's user and lets it past the CSRF check.
"""

from __future__ import annotations

import anyio
from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.api_tokens import TokenUse, authenticate_token

SCOPE_KEY = "skd_api_token"


def presented_token(scope: Scope) -> str | None:
    """The bearer token in the request's Authorization header, if it sends one."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer":
                return credentials.strip()
    return None


def token_use(scope: Scope) -> TokenUse | None:
    """The valid token this request came with (set by the middleware), else None."""
    use = scope.get(SCOPE_KEY)
    return use if isinstance(use, TokenUse) else None


class BearerTokenMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        plain = presented_token(scope)
        if plain is None:
            await self.app(scope, receive, send)
            return
        use = await anyio.to_thread.run_sync(authenticate_token, plain)
        if use is None:
            answer = JSONResponse(
                {
                    "detail": "invalid API token: unknown, revoked or expired, or its owner "
                    "can no longer sign in; make a new one on /account"
                },
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
            await answer(scope, receive, send)
            return
        if not use.allows(scope["method"]):
            answer = JSONResponse(
                {"detail": f"API token {use.name!r} is read-only: it may only GET"},
                status_code=403,
                headers={"WWW-Authenticate": 'Bearer error="insufficient_scope"'},
            )
            await answer(scope, receive, send)
            return
        scope[SCOPE_KEY] = use
        if use.expires_at is None:
            await self.app(scope, receive, send)
            return
        # Every answer tells the script when its key stops working, so it can warn in time.
        expires = use.expires_at.isoformat(timespec="seconds").replace("+00:00", "Z")

        async def send_with_expiry(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-SKD-Token-Expires"] = expires
            await send(message)

        await self.app(scope, receive, send_with_expiry)
