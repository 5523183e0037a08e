"""``skd campaign ...``: create, list, pause, resume and close rating campaigns from a terminal.

The same door as the page and the JSON API: a ``CampaignSpec`` into
``app.annotation.campaigns.create_campaign``, state changes through ``set_campaign_state``
(``--dry-run``: ``app.annotation.campaign_plan``). Kept out of ``app/cli/main.py`` so that file
stays a table of contents; it registers ``campaign_app``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from app.annotation.campaign_plan import CampaignPlan

campaign_app = typer.Typer(help="Rating campaigns.", no_args_is_help=True)


def fail(message: str, code: int = 1) -> typer.Exit:
    from app.cli.console import console

    console.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


def schema_ready() -> None:
    from app.cli.common import schema_ready as ready

    ready()


def _gold_option(values: list[str]) -> dict[int, int]:
    gold: dict[int, int] = {}
    for value in values:
        triple_id, _, answer = value.partition("=")
        try:
            gold[int(triple_id)] = int(answer)
        except ValueError:
            raise fail(f"--gold: write TRIPLE_ID=ANSWER (e.g. 1234=2), not {value!r}", 2) from None
    return gold


@campaign_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="A name people will recognize.")],
    purpose: Annotated[
        str, typer.Option(help="calibration (uniform sample), training or evaluation.")
    ] = "calibration",
    sample: Annotated[
        int | None, typer.Option("--sample", help="Sample size (default: every triple).")
    ] = None,
    relation: Annotated[
        list[str] | None, typer.Option("--relation", help="Only this relation (repeatable).")
    ] = None,
    source: Annotated[
        list[str] | None, typer.Option("--source", help="Only this source (repeatable).")
    ] = None,
    balance: Annotated[
        str,
        typer.Option(
            "--balance",
            help="How a sample spreads over sources: equal (a share each), proportional "
            "(uniform), or auto (equal for evaluation, proportional otherwise).",
        ),
    ] = "auto",
    ratings_per_item: Annotated[int, typer.Option(help="Annotators per triple.")] = 3,
    lease_minutes: Annotated[
        float, typer.Option(help="Minutes before an unanswered item goes back.")
    ] = 10,
    gold_fraction: Annotated[
        float, typer.Option(help="Gold items drawn from imported labels, relative to the sample.")
    ] = 0.0,
    gold: Annotated[
        list[str] | None,
        typer.Option("--gold", help="An explicit gold item TRIPLE_ID=ANSWER (repeatable)."),
    ] = None,
    gold_rate: Annotated[float, typer.Option(help="Share of served items that are gold.")] = 0.0,
    guidelines: Annotated[
        Path | None, typer.Option("--guidelines", help="Markdown file shown to annotators.")
    ] = None,
    scale: Annotated[
        Path | None,
        typer.Option("--scale", help="Answer scale file: `value | label | yes/no/-` per line."),
    ] = None,
    quota: Annotated[int | None, typer.Option(help="Items per annotator.")] = None,
    min_gold_accuracy: Annotated[
        float, typer.Option(help="Flag annotators whose gold accuracy is below this.")
    ] = 0.7,
    speeder_seconds: Annotated[
        float, typer.Option(help="Flag annotators whose median seconds/item is below this.")
    ] = 2.0,
    completion_code: Annotated[
        str | None, typer.Option(help="Code shown at the end (default: random).")
    ] = None,
    redirect_url: Annotated[
        str | None, typer.Option(help="Where annotators go when done (Prolific).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Sampling seed (default: a fresh one, printed).")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print what the campaign would ask (items, ratings, annotators, time at the "
            "recent pace) and create nothing.",
        ),
    ] = False,
) -> None:
    """Create a campaign and print its share link."""
    from app.annotation.campaign_plan import plan_campaign
    from app.annotation.campaign_stats import campaign_progress
    from app.annotation.campaigns import (
        DEFAULT_SCALE,
        CampaignSpec,
        CampaignSpecError,
        create_campaign,
    )
    from app.annotation.campaigns import share_url as link_of
    from app.annotation.scale import ScaleError, parse_scale_lines
    from app.annotation.source_balance import describe_shares
    from app.core.db import session_scope
    from app.core.models import CampaignPurpose

    if purpose not in set(CampaignPurpose):
        raise fail("--purpose: use calibration, training or evaluation", 2)
    for path in (guidelines, scale):
        if path is not None and not path.is_file():
            raise fail(f"no such file: {path}", 2)
    answer_scale = list(DEFAULT_SCALE)
    if scale is not None:
        try:
            answer_scale = parse_scale_lines(scale.read_text(encoding="utf-8"))
        except ScaleError as exc:
            raise fail(f"{scale}: " + "; ".join(exc.problems), 2) from None
    spec = CampaignSpec(
        name=name.strip(),
        purpose=CampaignPurpose(purpose),
        sample_size=sample,
        relations=list(relation or []),
        sources=list(source or []),
        source_balance=balance,
        ratings_per_item=ratings_per_item,
        lease_seconds=round(lease_minutes * 60),
        gold_fraction=gold_fraction,
        gold_items=_gold_option(list(gold or [])),
        gold_rate=gold_rate,
        guidelines=guidelines.read_text(encoding="utf-8") if guidelines else "",
        answer_scale=answer_scale,
        quota_per_annotator=quota,
        min_gold_accuracy=min_gold_accuracy,
        speeder_seconds=speeder_seconds,
        completion_code=completion_code,
        redirect_url=redirect_url,
        seed=seed,
    )
    schema_ready()
    # The CLI's spellings for the spec's fields, so a message points at the option to change.
    options = {
        "sample_size": "--sample",
        "relations": "--relation",
        "sources": "--source",
        "source_balance": "--balance",
        "lease_seconds": "--lease-minutes",
        "gold_items": "--gold",
        "quota_per_annotator": "--quota",
        "filters": "--relation/--source",
    }
    try:
        if dry_run:
            with session_scope() as session:
                _print_plan(plan_campaign(session, spec))
            return
        with session_scope(write=True) as session:
            campaign = create_campaign(session, spec)
            progress = campaign_progress(session, [campaign.id])[campaign.id]
            campaign_id, link = campaign.id, link_of(campaign)
            code, used_seed = campaign.completion_code, campaign.selection["seed"]
            per_source = campaign.selection.get("per_source")
    except CampaignSpecError as exc:
        lines = [
            f"{options.get(field, '--' + field.replace('_', '-'))}: {message}"
            for field, message in exc.errors.items()
        ]
        raise fail("\n".join(lines), 2) from None
    gold_note = f" + {progress.gold_items:,} gold" if progress.gold_items else ""
    items = f"{progress.items:,} items{gold_note}"
    typer.echo(f"created campaign #{campaign_id} {spec.name!r}: {items}")
    if per_source:
        typer.echo(f"an equal share per source: {describe_shares(per_source)}")
    typer.echo(f"seed {used_seed}; completion code {code}")
    typer.echo(f"share link: {link}")


def _print_plan(plan: CampaignPlan) -> None:
    """``--dry-run``: the plan, one fact a line; nothing was created."""
    from app.annotation.source_balance import describe_shares
    from app.core.durations import duration_words

    gold = f" + up to {plan.gold_items:,} gold" if plan.gold_items else ""
    lines = [
        "campaign plan; nothing created",
        f"triples matched  {plan.matched:,}",
        f"items to rate    {plan.items:,}{gold}",
        *([f"per source       {describe_shares(plan.per_source)}"] if plan.per_source else []),
        f"ratings needed   {plan.ratings:,} ({plan.ratings_per_item} per item)",
        f"answers in all   {plan.served:,}" if plan.served is not None else "answers in all   –",
    ]
    if plan.annotators is not None:
        lines.append(f"annotators       {plan.annotators:,} at {plan.quota_per_annotator} each")
    if plan.pace is not None and plan.person_hours is not None:
        per = plan.minutes_per_annotator
        each = f"about {duration_words(per * 60)} per annotator, " if per is not None else ""
        lines.append(
            f"at the median pace of the last {plan.pace.ratings:,} ratings here "
            f"({plan.pace.seconds_per_rating:.1f} s each): {each}"
            f"{duration_words(plan.person_hours * 3600)} of rating in all"
        )
    else:
        lines.append("no ratings here yet to time it by")
    typer.echo("\n".join(lines))


@campaign_app.command("list")
def list_campaigns() -> None:
    """Campaigns with their state, progress and pace."""
    from rich.table import Table
    from sqlalchemy import select

    from app.annotation.campaign_stats import campaign_progress
    from app.annotation.campaigns import share_url
    from app.cli.console import out
    from app.core.db import session_scope
    from app.core.models import Campaign

    schema_ready()
    table = Table()
    for column in ("id", "name", "purpose", "state", "progress", "ratings/h", "annotators"):
        table.add_column(column, justify="right" if column in ("id", "ratings/h") else "left")
    table.add_column("share link", overflow="fold")
    with session_scope() as session:
        campaigns = list(session.scalars(select(Campaign).order_by(Campaign.id)))
        progress = campaign_progress(session, [c.id for c in campaigns])
        for campaign in campaigns:
            p = progress[campaign.id]
            table.add_row(
                str(campaign.id),
                campaign.name,
                campaign.purpose.value,
                campaign.state.value,
                f"{p.ratings_done:,}/{p.ratings_needed:,} ({p.percent}%)",
                f"{p.ratings_last_hour:,}",
                f"{p.annotators:,}",
                share_url(campaign),
            )
    out.print(table)


def _set_state(campaign_id: int, state: str) -> None:
    from app.annotation.campaigns import set_campaign_state
    from app.core.db import session_scope

    schema_ready()
    try:
        with session_scope(write=True) as session:
            campaign = set_campaign_state(session, campaign_id, state)
            name = campaign.name
    except (LookupError, ValueError) as exc:  # CampaignStateError is a ValueError
        raise fail(str(exc)) from None
    typer.echo(f"campaign #{campaign_id} {name!r} is {state}")


@campaign_app.command("pause")
def pause(campaign_id: int) -> None:
    """Stop handing out items (annotators are told to come back later)."""
    _set_state(campaign_id, "paused")


@campaign_app.command("resume")
def resume(campaign_id: int) -> None:
    """Hand out items again."""
    _set_state(campaign_id, "open")


@campaign_app.command("close")
def close(campaign_id: int) -> None:
    """Close for good (a closed campaign cannot be reopened)."""
    _set_state(campaign_id, "closed")
