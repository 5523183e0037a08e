"""`skd users tokens`: API tokens for scripts (the same as each person's /account page).

The terminal is trusted like an admin (it has the database): it can make a token for any
active staff account, list everyone's, and revoke any.
"""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.common import fail, schema_ready
from app.core.api_tokens import DEFAULT_EXPIRY_DAYS, MAX_EXPIRY_DAYS

tokens_app = typer.Typer(
    help="API tokens: keys for scripts that use the JSON API (Authorization: Bearer).",
    no_args_is_help=True,
)


@tokens_app.command("create")
def tokens_create(
    username: Annotated[str, typer.Argument(help="The staff account the token acts as.")],
    name: Annotated[str, typer.Option(help="What the token is for (unique per person).")],
    read_only: Annotated[
        bool, typer.Option("--read-only", help="May only read (GET): for dashboards.")
    ] = False,
    expires_days: Annotated[
        int,
        typer.Option(min=0, max=MAX_EXPIRY_DAYS, help="Days until it expires; 0: never."),
    ] = DEFAULT_EXPIRY_DAYS,
) -> None:
    """Make a token and print it, once: only its digest is stored."""
    from app.core.api_tokens import create_token
    from app.core.db import session_scope
    from app.core.people import PeopleError, find_user

    schema_ready()
    try:
        with session_scope(write=True) as session:
            user = find_user(session, username)
            token, plain = create_token(
                session,
                user,
                name,
                scope="read" if read_only else "write",
                expires_in_days=expires_days or None,
            )
            expiry = token.expires_at.isoformat()[:10] if token.expires_at else "never"
            summary = (
                f"token #{token.id} {token.name!r} for {user.username} "
                f"({'read-only' if read_only else 'read and write'}, expires {expiry})"
            )
    except LookupError as exc:
        raise fail(str(exc).strip("'\""), 2) from None
    except (PeopleError, ValueError) as exc:
        raise fail(str(exc), 2) from None
    typer.echo(summary, err=True)
    typer.echo(plain)  # alone on stdout: TOKEN=$(skd users tokens create ...)


@tokens_app.command("list")
def tokens_list(
    user: Annotated[str | None, typer.Option(help="Only this person's tokens.")] = None,
) -> None:
    """Every token (revoked and expired ones too), newest first; never the tokens themselves."""
    from rich.table import Table
    from sqlalchemy import select

    from app.cli.console import out
    from app.core.api_tokens import list_tokens, token_state
    from app.core.db import session_scope
    from app.core.models import User
    from app.core.people import PeopleError, find_user

    schema_ready()
    with session_scope() as session:
        try:
            owner_id = find_user(session, user).id if user is not None else None
        except (LookupError, PeopleError) as exc:
            raise fail(str(exc).strip("'\""), 2) from None
        tokens = list_tokens(session, owner_id)
        names = {user_id: name for user_id, name in session.execute(select(User.id, User.username))}
        rows = [
            (
                str(t.id),
                names.get(t.user_id) or f"#{t.user_id}",
                t.name,
                f"{t.prefix}…",
                "read-only" if t.scope == "read" else "read and write",
                token_state(t),
                t.created_at.isoformat()[:10],
                t.expires_at.isoformat()[:10] if t.expires_at else "never",
                t.last_used_at.isoformat()[:16].replace("T", " ") if t.last_used_at else "never",
            )
            for t in tokens
        ]
    if not rows:
        out.print("no API tokens yet: skd users tokens create USERNAME --name NAME")
        return
    table = Table()
    for column in ("id", "user", "name", "token", "access", "state", "made", "expires", "used"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    out.print(table, soft_wrap=True)


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[int, typer.Argument(help="The token's id (skd users tokens list).")],
) -> None:
    """Revoke a token: every request with it is refused (401) from now on."""
    from app.core.api_tokens import revoke_token
    from app.core.db import session_scope

    schema_ready()
    try:
        with session_scope(write=True) as session:
            token = revoke_token(session, token_id)
            name = token.name
    except LookupError as exc:
        raise fail(str(exc), 2) from None
    typer.echo(f"revoked token #{token_id} {name!r}: requests with it now get 401")
