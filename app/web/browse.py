"""The corpus browser and a campaign's items, as pages and as JSON (``app.annotation.browse``).

Both pages pick gold items: each row has a "gold" choice, and the form is a plain GET to
``/campaigns/new`` that fills the new campaign's gold list with the chosen triple ids.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.annotation.browse import (
    CAMPAIGN_FILTERS,
    LABELS,
    SORTS,
    BrowseError,
    BrowseFilters,
    browse_triples,
    campaign_items_page,
)
from app.annotation.campaigns import DEFAULT_SCALE
from app.core.models import Campaign, CriticState, CriticVersion
from app.core.text_index import text_indexes_ready
from app.corpus.stats import corpus_counts
from app.web.answers import CampaignItemsOut, TriplePageOut
from app.web.deps import RowId, SessionDep, SessionRoute, StaffUser, csrf_token, templates

router = APIRouter(tags=["browse"], route_class=SessionRoute)


def gold_choices(scale: list[Any]) -> list[dict[str, Any]]:
    """The answers a gold item can have: the scale's judgements (not "too unfamiliar")."""
    return [
        {"value": option["value"], "label": option["label"]}
        for option in scale
        if isinstance(option, dict) and option.get("acceptable") is not None
    ]


def _number(value: str | None, name: str) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        raise BrowseError(name, f"{value!r} is not a number") from None


def _filters(
    relation: list[str],
    source: list[str],
    q: str,
    score_min: str | None,
    score_max: str | None,
    label: str,
    campaign: str,
    campaign_id: str | None,
    version: str | None,
    sort: str,
) -> BrowseFilters:
    def whole(value: str | None, name: str) -> int | None:
        number = _number(value, name)
        if number is None:
            return None
        if number != int(number):
            raise BrowseError(name, f"{value!r} is not a whole number")
        return int(number)

    return BrowseFilters(
        relations=[r for r in relation if r],
        sources=[s for s in source if s],
        text=q,
        score_min=_number(score_min, "score_min"),
        score_max=_number(score_max, "score_max"),
        label=label,
        campaign=campaign,
        campaign_id=whole(campaign_id, "campaign_id"),
        version_id=whole(version, "version"),
        sort=sort,
    )


class _Params:
    """The query string of both doors (FastAPI reads each name once, here)."""

    def __init__(
        self,
        relation: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies defaults
        source: Annotated[list[str], Query()] = [],  # noqa: B006
        q: str = "",
        score_min: str | None = None,
        score_max: str | None = None,
        label: str = "",
        campaign: str = "",
        campaign_id: str | None = None,
        version: str | None = None,
        sort: str = "id",
        after: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> None:
        self.raw = {
            "relation": relation,
            "source": source,
            "q": q,
            "score_min": score_min or "",
            "score_max": score_max or "",
            "label": label,
            "campaign": campaign,
            "campaign_id": campaign_id or "",
            "version": version or "",
            "sort": sort,
        }
        self.after = after
        self.limit = limit

    def filters(self) -> BrowseFilters:
        return _filters(
            self.raw["relation"],
            self.raw["source"],
            self.raw["q"],
            self.raw["score_min"],
            self.raw["score_max"],
            self.raw["label"],
            self.raw["campaign"],
            self.raw["campaign_id"],
            self.raw["version"],
            self.raw["sort"],
        )


def _page(session: Session, params: _Params) -> Any:
    try:
        return browse_triples(session, params.filters(), after=params.after, limit=params.limit)
    except BrowseError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


# A text search slower than this, on PostgreSQL without the trigram indexes, says how to
# make it fast (they are opt in: app.core.text_index).
SLOW_TEXT_SECONDS = 0.3


def _slow_search(session: Session, params: _Params, seconds: float) -> float | None:
    """The search's seconds when the page should suggest ``skd db text-index``, else None."""
    if not str(params.raw["q"]).strip() or seconds < SLOW_TEXT_SECONDS:
        return None
    engine = session.get_bind()
    if engine.dialect.name != "postgresql" or text_indexes_ready(engine):  # type: ignore[arg-type]
        return None
    return seconds


@router.get("/api/corpus/triples", summary="Browse triples", response_model=TriplePageOut)
def api_browse(
    session: SessionDep, user: StaffUser, params: Annotated[_Params, Depends()]
) -> dict[str, Any]:
    """One page of triples; pass ``next_cursor`` back as ``after`` for the next page."""
    return _page(session, params).as_dict()


@router.get("/corpus/browse", response_class=HTMLResponse)
def browse_page(
    request: Request,
    session: SessionDep,
    user: StaffUser,
    params: Annotated[_Params, Depends()],
) -> HTMLResponse:
    error = None
    started = time.perf_counter()
    try:
        page = browse_triples(session, params.filters(), after=params.after, limit=params.limit)
    except BrowseError as exc:
        page, error = None, str(exc)
    seconds = time.perf_counter() - started
    counts = corpus_counts(session)
    versions = session.scalars(
        select(CriticVersion)
        .where(
            CriticVersion.state.in_([CriticState.active, CriticState.ready, CriticState.retired])
        )
        .order_by(CriticVersion.id.desc())
    ).all()
    campaigns = session.execute(select(Campaign.id, Campaign.name).order_by(Campaign.id)).all()
    query = [(k, v) for k, v in params.raw.items() if not isinstance(v, list) and v]
    query += [(k, item) for k in ("relation", "source") for item in params.raw[k]]
    return templates.TemplateResponse(
        request,
        "browse.html",
        {
            "user": user,
            "csrf": csrf_token(request),
            "page": page,
            "error": error,
            "values": params.raw,
            "query": query,
            "first_page": params.after is None,
            "counts": counts,
            "versions": versions,
            "campaigns": campaigns,
            "sorts": SORTS,
            "labels": LABELS,
            "campaign_filters": CAMPAIGN_FILTERS,
            "gold_choices": gold_choices(DEFAULT_SCALE),
            "slow_search": _slow_search(session, params, seconds),
        },
        status_code=status.HTTP_200_OK if error is None else status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


def _items(
    session: Session, campaign_id: int, after: str | None, limit: int, rated: str
) -> tuple[Campaign, list[Any], str | None]:
    try:
        return campaign_items_page(session, campaign_id, after=after, limit=limit, rated=rated)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except BrowseError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


@router.get(
    "/api/campaigns/{campaign_id}/items",
    summary="List a campaign's items",
    response_model=CampaignItemsOut,
)
def api_campaign_items(
    campaign_id: RowId,
    session: SessionDep,
    user: StaffUser,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    rated: str = "",
) -> dict[str, Any]:
    """A campaign's items with every rating and the aggregated label, a page at a time."""
    _campaign, rows, cursor = _items(session, campaign_id, after, limit, rated)
    return {"rows": [row.as_dict() for row in rows], "next_cursor": cursor}


@router.get("/campaigns/{campaign_id}/items", response_class=HTMLResponse)
def campaign_items(
    campaign_id: RowId,
    request: Request,
    session: SessionDep,
    user: StaffUser,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    rated: str = "",
) -> HTMLResponse:
    campaign, rows, cursor = _items(session, campaign_id, after, limit, rated)
    return templates.TemplateResponse(
        request,
        "campaign_items.html",
        {
            "user": user,
            "csrf": csrf_token(request),
            "campaign": campaign,
            "rows": rows,
            "next_cursor": cursor,
            "rated": rated,
            "first_page": after is None,
            "gold_choices": gold_choices(campaign.answer_scale),
        },
    )
