"""`skd users`: staff accounts and annotator invitations."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from app.cli.common import fail, schema_ready
from app.core.config import get_settings

users_app = typer.Typer(help="Staff and annotator accounts.", no_args_is_help=True)


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
) -> None:
    """Create an annotator and print their personal sign-in link (shown only once).

    They see the campaigns named with --campaign, and any campaign whose share link they open.
    """
    from app.annotation.access import admit
    from app.core.accounts import create_invited_annotator
    from app.core.db import session_scope
    from app.core.models import Campaign

    schema_ready()
    with session_scope(write=True) as session:
        missing = [c for c in campaign or [] if session.get(Campaign, c) is None]
        if missing:
            raise fail(f"--campaign: no campaign {missing[0]}", 2)
        user, token = create_invited_annotator(session, name)
        for campaign_id in campaign or []:
            admit(session, campaign_id, user.id, "invite")
    typer.echo(f"{get_settings().public_url}/i/{token}")


# --- ratings and labels ---------------------------------------------------------------------
