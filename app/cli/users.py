"""`skd users`: staff accounts and annotator invitations."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from app.cli.common import fail, schema_ready
from app.cli.tokens import tokens_app
from app.core.config import get_settings

users_app = typer.Typer(help="Staff and annotator accounts.", no_args_is_help=True)
users_app.add_typer(tokens_app, name="tokens")


@users_app.command("add")
def users_add(
    username: str,
    role: Annotated[str, typer.Option(help="admin or researcher")] = "researcher",
    password: Annotated[
        str | None, typer.Option(help="Default: prompt (or SKD_NEW_PASSWORD).")
    ] = None,
) -> None:
    """Create a staff account."""
    from app.core.accounts import create_staff
    from app.core.db import session_scope
    from app.core.models import Role

    if role not in ("admin", "researcher"):
        raise fail("--role: use admin or researcher", 2)
    schema_ready()
    password = password or os.environ.get("SKD_NEW_PASSWORD")
    if not password:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        with session_scope(write=True) as session:
            create_staff(session, username, password, Role(role))
    except ValueError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"created {role} {username!r}")


@users_app.command("invite")
def users_invite(
    name: Annotated[str | None, typer.Option(help="A label for the person.")] = None,
    campaign: Annotated[
        list[int] | None,
        typer.Option(help="A campaign id they may rate in (repeat for several).", min=1),
    ] = None,
    list_: Annotated[
        bool,
        typer.Option("--list", help="List the invitations (state and link) instead."),
    ] = False,
) -> None:
    """Create an annotator and print their personal sign-in link.

    They see the campaigns named with --campaign, and any campaign whose share link they open.
    The link can be shown again (``--list``, the people page); ``skd users revoke ID`` ends it.
    """
    from app.annotation.access import admit
    from app.core.accounts import create_invited_annotator
    from app.core.db import session_scope
    from app.core.models import Campaign

    schema_ready()
    if list_:
        _list_invitations()
        return
    with session_scope(write=True) as session:
        missing = [c for c in campaign or [] if session.get(Campaign, c) is None]
        if missing:
            raise fail(f"--campaign: no campaign {missing[0]}", 2)
        user, token = create_invited_annotator(session, name)
        for campaign_id in campaign or []:
            admit(session, campaign_id, user.id, "invite")
    typer.echo(f"{get_settings().public_url}/i/{token}")


def _list_invitations() -> None:
    from rich.table import Table

    from app.cli.console import out
    from app.core.db import session_scope
    from app.core.people import list_invitations

    with session_scope() as session:
        invitations = list_invitations(session)
    if not invitations:
        out.print("no invitations yet: skd users invite --name NAME")
        return
    table = Table()
    for column in ("id", "name", "state", "created", "link"):
        table.add_column(column, overflow="fold")
    for inv in invitations:
        link = inv.link or ("–" if inv.state == "revoked" else "(issue a new one on the page)")
        table.add_row(str(inv.user_id), inv.name or "–", inv.state, inv.created_at[:16], link)
    out.print(table, soft_wrap=True)


@users_app.command("list")
def users_list(
    role: Annotated[
        str | None, typer.Option(help="Only this role: admin, researcher or annotator.")
    ] = None,
) -> None:
    """Everyone with an account: staff and annotators, active or deactivated."""
    from rich.table import Table
    from sqlalchemy import func, select

    from app.cli.console import out
    from app.core.db import session_scope
    from app.core.models import Rating, Role, User

    if role is not None and role not in {r.value for r in Role}:
        raise fail(f"--role: use admin, researcher or annotator, not {role!r}", 2)
    schema_ready()
    table = Table()
    for column in ("id", "role", "name", "platform", "worker id", "ratings", "state"):
        table.add_column(column, overflow="fold")
    ratings = (
        select(func.count()).where(Rating.annotator_id == User.id).correlate(User).scalar_subquery()
    )
    query = select(User, ratings).order_by(User.role, User.id)
    if role is not None:
        query = query.where(User.role == Role(role))
    with session_scope() as session:
        for user, n in session.execute(query):
            state = "active" if user.is_active else "deactivated"
            if user.invite_revoked_at is not None:
                state = "revoked"
            table.add_row(
                str(user.id),
                user.role.value,
                user.username or user.display_name or "–",
                user.platform or "–",
                user.external_id or "–",
                str(n),
                state,
            )
    out.print(table, soft_wrap=True)


def _change(name_or_id: str, change: str) -> None:
    from app.core.db import session_scope
    from app.core.people import PeopleError, deactivate, describe, find_user, reactivate

    schema_ready()
    try:
        with session_scope(write=True) as session:
            user = find_user(session, name_or_id)
            if change == "deactivate":
                deactivate(session, user.id)
            else:
                reactivate(session, user.id)
            who = f"{describe(user)} (#{user.id}, {user.role.value})"
    except LookupError as exc:
        raise fail(str(exc).strip("'\"")) from None
    except PeopleError as exc:
        raise fail(str(exc)) from None
    if change == "deactivate":
        typer.echo(f"deactivated {who}: no more signing in or rating; their ratings are kept")
    else:
        typer.echo(f"reactivated {who}")


@users_app.command("deactivate")
def users_deactivate(
    name_or_id: Annotated[
        str, typer.Argument(help="An id, a username, platform:worker_id, or a name.")
    ],
) -> None:
    """Stop an account signing in and rating (its ratings stay); undo with ``activate``."""
    _change(name_or_id, "deactivate")


@users_app.command("activate")
def users_activate(
    name_or_id: Annotated[
        str, typer.Argument(help="An id, a username, platform:worker_id, or a name.")
    ],
) -> None:
    """Let a deactivated account sign in and rate again."""
    _change(name_or_id, "activate")


@users_app.command("revoke")
def users_revoke(
    invitation_id: Annotated[int, typer.Argument(help="The invitation's id.")],
) -> None:
    """End an invitation: its link stops working and the account is deactivated."""
    from app.core.db import session_scope
    from app.core.people import PeopleError, describe, revoke_invitation

    schema_ready()
    try:
        with session_scope(write=True) as session:
            user = revoke_invitation(session, invitation_id)
            who = describe(user)
    except LookupError:
        raise fail(f"no invitation {invitation_id}") from None
    except PeopleError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"revoked invitation #{invitation_id} ({who}): its link no longer works")


# --- ratings and labels ---------------------------------------------------------------------
