"""Typed dependencies, so a route's signature says what it needs (a session, a staff user...)."""

from __future__ import annotations

import contextlib
import functools
import inspect
import secrets
import types
import typing
from collections.abc import Callable, Iterator
from typing import Annotated, Any

from annotated_types import Ge, Le
from fastapi import Depends, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.templating import Jinja2Templates
from pydantic import AfterValidator
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.core.accounts import STAFF_ROLES
from app.core.db import session_scope
from app.core.models import Role, User
from app.core.paths import TEMPLATES_DIR
from app.core.processes import latest_problems
from app.critic.estimates import is_weak, too_few, too_few_text
from app.web.bearer import token_use

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
# Honest numbers in every template (app.critic.estimates): thin estimates and weak critics.
templates.env.globals.update(
    too_few=too_few,
    too_few_text=too_few_text,
    is_weak_critic=is_weak,
    nav_problems=latest_problems,  # the staff navigation's flag on Jobs
)


def get_db() -> Iterator[Session]:
    """One session per request, committed when the route returns without error. On SQLite it
    takes the write lock up front at its first write (see ``session_scope``), so concurrent
    requests that write wait their turn instead of failing with "database is locked"."""
    with session_scope(write_on_demand=True) as session:
        yield session


# scope="function": the commit runs before the response is sent. FastAPI's default for a
# `yield` dependency ends it after the response, so a client could be told "done" before the
# write was saved (and a commit that then failed reached nobody); it also held SQLite's writer
# lock while the bytes went out.
SessionDep = Annotated[Session, Depends(get_db, scope="function")]


class SessionRoute(APIRoute):
    """The route class of every router: a plain (``def``) endpoint that takes the request's
    session commits it as it returns, in its own thread, so its pooled connection goes back
    before the answer is built. FastAPI validates a returned value against the return
    annotation in the request thread pool (``SKD_WEB_THREADS`` threads) *before* it ends
    ``SessionDep``: forty staff page reads at once parked fifteen finished ``/api/jobs``
    requests, each holding a connection while waiting for a thread, while all eight threads
    waited for a connection, until SQLite's pool (fifteen) timed out after 30 s and answered
    500. The dependency's own commit, at its end, then finds nothing left to do."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _commits_on_return(endpoint)
        super().__init__(path, endpoint, **kwargs)


def _commits_on_return(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(endpoint)  # FastAPI reads the signature through __wrapped__
    def endpoint_then_commit(*args: Any, **kwargs: Any) -> Any:
        result = endpoint(*args, **kwargs)
        for value in kwargs.values():
            if isinstance(value, Session):
                value.commit()
        return result

    return endpoint_then_commit


async def posted_form(request: Request) -> FormData:
    """The parsed form body, read on the event loop, so the routes that take it stay plain
    functions: their database work then runs in the thread pool, never on the loop itself."""
    return await request.form()


PostedForm = Annotated[FormData, Depends(posted_form)]

# Row ids are BIGINT: a larger number in a path, a query or a body is refused with 422 before
# it reaches the database (where it would overflow into a 500).
MAX_ROW_ID = 2**63 - 1
RowId = Annotated[int, Ge(1), Le(MAX_ROW_ID)]
CampaignId = RowId
# Counts and sizes a client may ask for (a ``limit``, an ``n``): small, non-negative.
PageLimit = Annotated[int, Ge(1), Le(1000)]


def _refuse_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL (0x00) characters")
    return value


NoNulStr = Annotated[str, AfterValidator(_refuse_nul)]


# What a database column can hold: BIGINT for integers, no NUL in text.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


def _unstorable(value: Any, loc: tuple[str | int, ...]) -> list[dict[str, Any]]:
    """Errors for NULs in text and integers beyond BIGINT, anywhere in a value."""
    if isinstance(value, str):
        if "\x00" in value:
            return [
                {
                    "type": "string_nul",
                    "loc": loc,
                    "msg": "must not contain NUL (0x00) characters",
                    "input": value[:100],
                }
            ]
        return []
    if isinstance(value, int) and not isinstance(value, bool):
        if not _INT_MIN <= value <= _INT_MAX:
            return [_range_error(loc, value)]
        return []
    if isinstance(value, dict):
        return [e for key, item in value.items() for e in _unstorable(item, (*loc, str(key)))]
    if isinstance(value, list):
        return [e for index, item in enumerate(value) for e in _unstorable(item, (*loc, index))]
    return []


def _range_error(loc: tuple[str | int, ...], value: object) -> dict[str, Any]:
    return {
        "type": "int_range",
        "loc": loc,
        "msg": f"must be an integer between {_INT_MIN} and {_INT_MAX}",
        "input": str(value)[:100],
    }


def _takes_int(annotation: Any) -> bool:
    if annotation is int:
        return True
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _takes_int(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list):
        return any(_takes_int(arg) for arg in typing.get_args(annotation))
    return False


_INT_PARAMS: dict[int, dict[str, frozenset[str]]] = {}


def _int_params(route: Any) -> dict[str, frozenset[str]]:
    """The names of a route's integer parameters (path, query, form), its dependencies' too."""
    found = _INT_PARAMS.get(id(route))
    if found is None:
        names: dict[str, set[str]] = {"path": set(), "query": set(), "body": set()}
        stack = [route.dependant]
        while stack:
            dependant = stack.pop()
            for where, fields in (
                ("path", dependant.path_params),
                ("query", dependant.query_params),
                ("body", dependant.body_params),
            ):
                names[where].update(
                    field.alias for field in fields if _takes_int(field.field_info.annotation)
                )
            stack.extend(dependant.dependencies)
        found = {where: frozenset(values) for where, values in names.items()}
        _INT_PARAMS[id(route)] = found
    return found


def _raw_int_errors(where: str, name: str, raw: str) -> list[dict[str, Any]]:
    text = raw.strip()
    if text.lstrip("+-").isdigit() and not _INT_MIN <= int(text) <= _INT_MAX:
        return [_range_error((where, name), raw)]
    return []


async def refuse_unstorable_input(request: Request) -> None:
    """No request may carry what the database cannot store: a NUL in text (PostgreSQL refuses
    it) or an integer beyond BIGINT (an overflow). An app-wide dependency, so every route,
    including ones added later, answers 422 naming the field instead of failing with a 500 in
    the database. Integer parameters are found from the route's own declarations; the body was
    already read by FastAPI, and its cached copy is used."""
    errors: list[dict[str, Any]] = []
    route = request.scope.get("route")
    declared = _int_params(route) if getattr(route, "dependant", None) is not None else None
    for name, value in request.path_params.items():
        errors += _unstorable(value, ("path", name))
        if declared and name in declared["path"] and isinstance(value, str):
            errors += _raw_int_errors("path", name, value)
    for name, value in request.query_params.multi_items():
        errors += _unstorable(value, ("query", name))
        if declared and name in declared["query"]:
            errors += _raw_int_errors("query", name, value)
    if getattr(route, "body_field", None) is not None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()
            for name, value in form.multi_items():
                if isinstance(value, str):
                    errors += _unstorable(value, ("body", name))
                    if declared and name in declared["body"]:
                        errors += _raw_int_errors("body", name, value)
        else:
            # Not JSON (or nested past the parser): FastAPI's own validation answers.
            with contextlib.suppress(ValueError, RecursionError):
                errors += _unstorable(await request.json(), ("body",))
    if errors:
        raise RequestValidationError(errors)


class LoginRequired(Exception):
    """Raised for an anonymous request to a page: the app answers with a redirect to /login."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


# Documents the header in the OpenAPI schema (Swagger's "Authorize" button); the token itself
# is checked once, at the door, by ``app.web.bearer``.
api_token_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="API token",
    description="A token from /account or `skd users tokens create` (skd_…). "
    "Without it, the signed-in browser session is used.",
)


def current_user_or_none(
    request: Request,
    session: SessionDep,
    _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(api_token_scheme)],
) -> User | None:
    """The signed-in user: the owner of the request's API token, else the session's user."""
    use = token_use(request.scope)
    if use is not None:
        owner = session.get(User, use.user_id)
        session.commit()
        return owner if owner is not None and owner.is_active else None
    user_id = request.session.get("user_id")
    if user_id is None:
        return None
    user = session.get(User, user_id)
    # Hand the pooled connection back before the route runs (the user stays loaded: sessions
    # do not expire on commit). Many routes open their own write transaction; holding this
    # read's connection meanwhile made each such request need two, and twenty at once on the
    # SQLite pool (fifteen) all held one while waiting for another until the pool timed out.
    session.commit()
    # A session issued before the account's latest logout or password change is revoked.
    if user is None or not user.is_active or request.session.get("epoch", 0) != user.session_epoch:
        request.session.clear()
        return None
    return user


OptionalUser = Annotated[User | None, Depends(current_user_or_none)]


def _wants_html(request: Request) -> bool:
    return not request.url.path.startswith("/api/")


def require_staff(request: Request, user: OptionalUser) -> User:
    if user is None:
        if _wants_html(request) and request.method == "GET":
            raise LoginRequired(str(request.url.path))
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "log in as staff first, or send an API token (Authorization: Bearer skd_…)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if user.role not in STAFF_ROLES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "staff only")
    return user


StaffUser = Annotated[User, Depends(require_staff)]


async def rater_id(request: Request) -> int:
    """The signed-in person's id from the signed session cookie. The hot path checks the row
    inside its own transaction instead of opening a second one just for this. (``async``
    because it does no I/O: FastAPI would otherwise hop to a worker thread just to run it.)"""
    user_id = request.session.get("user_id")
    if user_id is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "open your study link first")
    return int(user_id)


RaterId = Annotated[int, Depends(rater_id)]


async def rater_nonce(request: Request) -> str:
    """The browser session's own random nonce (kept in the signed cookie): ratings given under
    it can be seen and changed again only under it, so a worker id alone reveals nothing."""
    nonce = request.session.get("rater_nonce")
    if not nonce:
        nonce = secrets.token_hex(16)
        request.session["rater_nonce"] = nonce
    return str(nonce)


RaterNonce = Annotated[str, Depends(rater_nonce)]


async def rater_epoch(request: Request) -> int:
    """The session epoch the signed-in annotator's cookie was issued under (checked against the
    account inside the hot path's first query, so logging out ends copies of the cookie)."""
    return int(request.session.get("epoch", 0))


RaterEpoch = Annotated[int, Depends(rater_epoch)]


def client_address(request: Request) -> str:
    """The client's address for rate limits (behind a proxy: uvicorn's forwarded-for, when
    ``FORWARDED_ALLOW_IPS`` trusts the proxy)."""
    return request.client.host if request.client else "unknown"


def require_admin(user: StaffUser) -> User:
    """Staff checks first (anonymous: login or 401), then the role: researchers get 403."""
    if user.role != Role.admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admins only")
    return user


AdminUser = Annotated[User, Depends(require_admin)]


def csrf_token(request: Request) -> str:
    """The session's CSRF token (created on first use); forms carry it in a hidden field."""
    token = request.session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def verify_csrf(request: Request) -> None:
    """State-changing requests must echo the session's token (form field or X-CSRF-Token).
    A request with a valid API token needs none: browsers never send that header by themselves,
    so no other site can make one."""
    if token_use(request.scope) is not None:
        return
    expected = request.session.get("csrf")
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    if not expected or not sent or not secrets.compare_digest(expected, sent):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token; reload the page"
        )


CSRFChecked = Depends(verify_csrf)
