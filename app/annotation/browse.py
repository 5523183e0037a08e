"""The corpus browser: one page of triples under filters, with scores, ratings and provenance.

Pages are cut by **keyset**, never by OFFSET: the next page starts after the last row shown
(its id, or its (score, id) when sorted by score), so page 20,000 of a million triples costs
what page 1 costs: an index seek and 50 rows. The cursor is an opaque string the page and the
JSON API hand back.

Filters: relations, sources, a text search over head and tail (case-insensitive substring),
a critic score range (under the active version unless another is named), a human label
(accepted, rejected, labelled at all, or no rating), and membership of a campaign (any, none,
or one by id). The label filter counts votes by the paper's rule (answers > 0 accept, -9
"too unfamiliar" is no vote) over non-excluded annotators; the rows shown then carry the
label their campaigns' own scales give (``app.annotation.quality``), which is the same for
the default scale.
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, case, exists, func, or_, select
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session

from app.annotation.acceptability import acceptability, answer_labels, is_acceptable
from app.annotation.annotators import user_label
from app.core.models import (
    Campaign,
    CampaignItem,
    CriticState,
    CriticVersion,
    Rating,
    Score,
    Triple,
    User,
)

SORTS = {
    "id": "oldest first",
    "-id": "newest first",
    "score": "lowest score first",
    "-score": "highest score first",
}
LABELS = {
    "": "any",
    "labelled": "has a human label (majority, no tie)",
    "accepted": "accepted by people",
    "rejected": "rejected by people",
    "none": "no human rating",
}
CAMPAIGN_FILTERS = {"": "any", "in": "in a campaign", "out": "in no campaign"}
UNFAMILIAR = -9
MAX_PAGE = 500


class BrowseError(ValueError):
    """A filter that cannot be applied, named: ``field`` and what is wrong."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass
class BrowseFilters:
    relations: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    text: str = ""
    score_min: float | None = None
    score_max: float | None = None
    label: str = ""
    campaign: str = ""  # "", "in", "out"
    campaign_id: int | None = None
    version_id: int | None = None  # None: the active critic version
    sort: str = "id"

    def check(self) -> None:
        if self.sort not in SORTS:
            raise BrowseError("sort", f"{self.sort!r} is not one of {', '.join(SORTS)}")
        if self.label not in LABELS:
            raise BrowseError("label", f"{self.label!r} is not one of {', '.join(LABELS)[2:]}")
        if self.campaign not in CAMPAIGN_FILTERS:
            raise BrowseError("campaign", f"{self.campaign!r} is not one of in, out")
        for name in ("score_min", "score_max"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise BrowseError(name, f"{value} is outside [0, 1]")
        if (
            self.score_min is not None
            and self.score_max is not None
            and self.score_min > self.score_max
        ):
            raise BrowseError("score_min", "is above score_max")

    @property
    def needs_scores(self) -> bool:
        return self.score_min is not None or self.score_max is not None or "score" in self.sort


@dataclass
class BrowseRow:
    id: int
    head: str
    relation: str
    tail: str
    source: str
    source_file: str | None
    source_line: int | None
    split: str | None
    teacher_run_id: int | None
    created_at: Any
    score: float | None = None
    accept: int = 0
    reject: int = 0
    unfamiliar: int = 0
    imported: int = 0  # how many of the ratings came with an imported file
    label: bool | None = None
    campaigns: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items()}
        data["created_at"] = self.created_at.isoformat() if self.created_at else None
        return data


@dataclass
class BrowsePage:
    rows: list[BrowseRow]
    next_cursor: str | None
    version: CriticVersion | None
    filters: BrowseFilters

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": [row.as_dict() for row in self.rows],
            "next_cursor": self.next_cursor,
            "critic_version_id": self.version.id if self.version else None,
        }


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        raise BrowseError("after", "not a cursor this page handed out") from None
    if not isinstance(values, list) or not values:
        raise BrowseError("after", "not a cursor this page handed out")
    return values


def _version(session: Session, version_id: int | None) -> CriticVersion | None:
    if version_id is not None:
        version = session.get(CriticVersion, version_id)
        if version is None:
            raise BrowseError("version", f"no critic version {version_id}")
        return version
    return session.scalar(select(CriticVersion).where(CriticVersion.state == CriticState.active))


def _label_votes() -> Any:
    """Per triple: accept votes minus reject votes and the number of votes (paper's rule)."""
    vote = case((Rating.answer > 0, 1), (Rating.answer == UNFAMILIAR, 0), else_=-1)
    counted = case((Rating.answer == UNFAMILIAR, 0), (Rating.answer == 0, 0), else_=1)
    return (
        select(
            Rating.triple_id.label("triple_id"),
            func.sum(vote).label("margin"),
            func.sum(counted).label("votes"),
        )
        .outerjoin(User, User.id == Rating.annotator_id)
        .where(User.excluded.is_not(True))
        .group_by(Rating.triple_id)
    )


def browse_triples(
    session: Session, filters: BrowseFilters, *, after: str | None = None, limit: int = 50
) -> BrowsePage:
    """One page of triples in the filters' order, starting after ``after`` (a cursor)."""
    filters.check()
    limit = max(1, min(limit, MAX_PAGE))
    version = _version(session, filters.version_id)
    score_col = Score.p_accept
    query = select(Triple)
    if filters.needs_scores:
        if version is None:
            raise BrowseError("score", "no critic version is active, so there are no scores")
        query = query.add_columns(score_col).join(
            Score, and_(Score.triple_id == Triple.id, Score.critic_version_id == version.id)
        )
        if filters.score_min is not None:
            query = query.where(score_col >= filters.score_min)
        if filters.score_max is not None:
            query = query.where(score_col <= filters.score_max)
    if filters.relations:
        query = query.where(Triple.relation.in_(filters.relations))
    if filters.sources:
        query = query.where(Triple.source.in_(filters.sources))
    text = filters.text.strip()
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        query = query.where(
            or_(
                Triple.head.ilike(pattern, escape="\\"),
                Triple.tail.ilike(pattern, escape="\\"),
            )
        )
    in_campaign = exists().where(CampaignItem.triple_id == Triple.id)
    if filters.campaign_id is not None:
        query = query.where(
            exists().where(
                CampaignItem.triple_id == Triple.id,
                CampaignItem.campaign_id == filters.campaign_id,
            )
        )
    elif filters.campaign == "in":
        query = query.where(in_campaign)
    elif filters.campaign == "out":
        query = query.where(~in_campaign)
    if filters.label == "none":
        query = query.where(~exists().where(Rating.triple_id == Triple.id))
    elif filters.label:
        sub = _label_votes().subquery()
        wanted = {
            "accepted": sub.c.margin > 0,
            "rejected": sub.c.margin < 0,
            "labelled": sub.c.margin != 0,
        }[filters.label]
        query = query.where(Triple.id.in_(select(sub.c.triple_id).where(wanted)))

    descending = filters.sort.startswith("-")
    if "score" in filters.sort:
        key = score_col
        order = (score_col.desc(), Triple.id.desc()) if descending else (score_col, Triple.id)
    else:
        key = None
        order = (Triple.id.desc(),) if descending else (Triple.id,)
    if after:
        values = decode_cursor(after)
        try:
            if key is not None:
                p, last_id = float(values[0]), int(values[1])
                # Spelled out rather than a row comparison, so the first term is a range on
                # the (version, p_accept) index and a deep page is an index seek.
                if descending:
                    query = query.where(score_col <= p, or_(score_col < p, Triple.id < last_id))
                else:
                    query = query.where(score_col >= p, or_(score_col > p, Triple.id > last_id))
            else:
                last_id = int(values[0])
                query = query.where(Triple.id < last_id if descending else Triple.id > last_id)
                if filters.needs_scores:
                    # The same bound on the scores side, so a merge join starts there too
                    # instead of reading every score below the cursor.
                    query = query.where(
                        Score.triple_id < last_id if descending else Score.triple_id > last_id
                    )
        except (TypeError, ValueError, IndexError):
            raise BrowseError("after", "not a cursor this page handed out") from None
    if text and key is None and _text_indexed(session):
        results = _text_page(
            session, query, descending, after_id=last_id if after else None, limit=limit
        )
    else:
        results = session.execute(query.order_by(*order).limit(limit + 1)).all()
    more = len(results) > limit
    results = results[:limit]
    rows = [
        BrowseRow(
            id=r[0].id,
            head=r[0].head,
            relation=r[0].relation,
            tail=r[0].tail,
            source=r[0].source,
            source_file=r[0].source_file,
            source_line=r[0].source_line,
            split=r[0].split,
            teacher_run_id=r[0].teacher_run_id,
            created_at=r[0].created_at,
            score=float(r[1]) if len(r) > 1 and r[1] is not None else None,
        )
        for r in results
    ]
    _fill_details(session, rows, version, scores_known=filters.needs_scores)
    next_cursor = None
    if more and rows:
        last = rows[-1]
        next_cursor = encode_cursor([last.score, last.id] if key is not None else [last.id])
    return BrowsePage(rows=rows, next_cursor=next_cursor, version=version, filters=filters)


# How many ids the text search's first try reads in order before it takes the trigram index.
TEXT_WINDOW = 20_000


def _text_indexed(session: Session) -> bool:
    from app.core.text_index import text_indexes_ready

    return text_indexes_ready(session.get_bind())  # type: ignore[arg-type]


def _text_page(
    session: Session, query: Any, descending: bool, *, after_id: int | None, limit: int
) -> list[Any]:
    """A text search sorted by id, with the trigram indexes there. PostgreSQL's planner
    assumes matches are spread evenly, so for a word it thinks common it reads the primary
    key in order and filters, which is fast where the word is common and reads most of the
    table where it is not (a word found only in old triples, on the newest-first page: 0.9 s
    at a million). So: first the next ``TEXT_WINDOW`` ids in order (an index range: a few
    milliseconds); if a page of matches is among them, that is the page. Otherwise the same
    query ordered by an expression the primary key cannot serve, so the planner takes the
    trigram indexes (a bitmap of the matches, then the first ``limit + 1`` by id), with plain
    index and sequential scans off for that one query: the planner would otherwise read the
    primary key's range below the cursor and filter it, for a word it believes common (0.2 s
    at a million, where the bitmap takes 60 ms)."""
    ids = select(Triple.id)
    if after_id is not None:
        ids = ids.where(Triple.id < after_id if descending else Triple.id > after_id)
    ids = ids.order_by(Triple.id.desc() if descending else Triple.id)
    bound = session.scalar(ids.offset(TEXT_WINDOW - 1).limit(1))
    order = (Triple.id.desc(),) if descending else (Triple.id,)
    if bound is None:  # fewer than TEXT_WINDOW ids left: the plain query reads at most those
        return list(session.execute(query.order_by(*order).limit(limit + 1)).all())
    window = query.where(Triple.id >= bound if descending else Triple.id <= bound)
    found = session.execute(window.order_by(*order).limit(limit + 1)).all()
    if len(found) > limit:
        return list(found)
    # Matches are sparse here (fewer than a page in TEXT_WINDOW ids): a bitmap of them from
    # the trigram indexes, never a read of the whole table in any order.
    by_index = (Triple.id + 0).desc() if descending else Triple.id + 0
    for setting in ("enable_seqscan", "enable_indexscan"):
        session.execute(sql_text(f"SET LOCAL {setting} = off"))
    try:
        return list(session.execute(query.order_by(by_index).limit(limit + 1)).all())
    finally:
        for setting in ("enable_seqscan", "enable_indexscan"):
            session.execute(sql_text(f"RESET {setting}"))


def _fill_details(
    session: Session,
    rows: list[BrowseRow],
    version: CriticVersion | None,
    *,
    scores_known: bool,
) -> None:
    """Scores, rating tallies and campaigns of one page's triples: three indexed lookups."""
    if not rows:
        return
    ids = [row.id for row in rows]
    by_id = {row.id: row for row in rows}
    if version is not None and not scores_known:
        for triple_id, p in session.execute(
            select(Score.triple_id, Score.p_accept).where(
                Score.critic_version_id == version.id, Score.triple_id.in_(ids)
            )
        ):
            by_id[triple_id].score = float(p)
    scales = {
        campaign_id: acceptability(scale)
        for campaign_id, scale in session.execute(
            select(Campaign.id, Campaign.answer_scale).where(
                Campaign.id.in_(
                    select(CampaignItem.campaign_id).where(CampaignItem.triple_id.in_(ids))
                )
            )
        )
    }
    ratings = session.execute(
        select(Rating.triple_id, Rating.answer, Rating.item_id, CampaignItem.campaign_id)
        .outerjoin(CampaignItem, CampaignItem.id == Rating.item_id)
        .outerjoin(User, User.id == Rating.annotator_id)
        .where(Rating.triple_id.in_(ids), User.excluded.is_not(True))
    )
    for triple_id, answer, item_id, campaign_id in ratings:
        row = by_id[triple_id]
        if item_id is None:
            row.imported += 1
        flag = is_acceptable(int(answer), scales.get(campaign_id, {}))
        if flag is None:
            row.unfamiliar += 1
        elif flag:
            row.accept += 1
        else:
            row.reject += 1
    for row in rows:
        row.label = None if row.accept == row.reject else row.accept > row.reject
    memberships: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for triple_id, campaign_id, name, is_gold, done, needed in session.execute(
        select(
            CampaignItem.triple_id,
            Campaign.id,
            Campaign.name,
            CampaignItem.is_gold,
            CampaignItem.ratings_done,
            CampaignItem.ratings_needed,
        )
        .join(Campaign, Campaign.id == CampaignItem.campaign_id)
        .where(CampaignItem.triple_id.in_(ids))
        .order_by(Campaign.id)
    ):
        memberships[triple_id].append(
            {
                "id": campaign_id,
                "name": name,
                "gold": bool(is_gold),
                "ratings_done": done,
                "ratings_needed": needed,
            }
        )
    for triple_id, found in memberships.items():
        by_id[triple_id].campaigns = found


@dataclass
class ItemRow:
    item_id: int
    triple_id: int
    head: str
    relation: str
    tail: str
    is_gold: bool
    gold_answer: int | None
    ratings_done: int
    ratings_needed: int
    ratings: list[dict[str, Any]] = field(default_factory=list)
    accept: int = 0
    reject: int = 0
    unfamiliar: int = 0
    label: bool | None = None
    score: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def campaign_items_page(
    session: Session,
    campaign_id: int,
    *,
    after: str | None = None,
    limit: int = 50,
    rated: str = "",
) -> tuple[Campaign, list[ItemRow], str | None]:
    """One page of a campaign's items (by item id, keyset) with every rating and the label.

    ``rated``: "" all items, "yes" items with at least one rating, "no" items without.
    The label is the majority of usable votes under the campaign's scale, excluded annotators
    left out (their ratings are listed, marked), as ``app.annotation.quality`` counts it.
    """
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise LookupError(f"no campaign {campaign_id}")
    limit = max(1, min(limit, MAX_PAGE))
    query = (
        select(CampaignItem, Triple)
        .join(Triple, Triple.id == CampaignItem.triple_id)
        .where(CampaignItem.campaign_id == campaign_id)
    )
    if rated == "yes":
        query = query.where(CampaignItem.ratings_done > 0)
    elif rated == "no":
        query = query.where(CampaignItem.ratings_done == 0)
    if after:
        try:
            query = query.where(CampaignItem.id > int(decode_cursor(after)[0]))
        except (TypeError, ValueError):
            raise BrowseError("after", "not a cursor this page handed out") from None
    found = session.execute(query.order_by(CampaignItem.id).limit(limit + 1)).all()
    more = len(found) > limit
    rows = [
        ItemRow(
            item_id=item.id,
            triple_id=triple.id,
            head=triple.head,
            relation=triple.relation,
            tail=triple.tail,
            is_gold=item.is_gold,
            gold_answer=item.gold_answer,
            ratings_done=item.ratings_done,
            ratings_needed=item.ratings_needed,
        )
        for item, triple in found[:limit]
    ]
    if rows:
        mapping = acceptability(campaign.answer_scale)
        wording = answer_labels(campaign.answer_scale)
        by_item = {row.item_id: row for row in rows}
        for (
            item_id,
            answer,
            annotator_id,
            username,
            display,
            platform,
            external,
            excluded,
        ) in session.execute(
            select(
                Rating.item_id,
                Rating.answer,
                Rating.annotator_id,
                User.username,
                User.display_name,
                User.platform,
                User.external_id,
                User.excluded,
            )
            .outerjoin(User, User.id == Rating.annotator_id)
            .where(Rating.item_id.in_(list(by_item)))
            .order_by(Rating.id)
        ):
            row = by_item[item_id]
            row.ratings.append(
                {
                    "annotator": user_label(annotator_id, username, display, platform, external),
                    "answer": answer,
                    "answer_label": wording.get(answer, str(answer)),
                    "excluded": bool(excluded),
                }
            )
            if excluded:
                continue
            flag = is_acceptable(int(answer), mapping)
            if flag is None:
                row.unfamiliar += 1
            elif flag:
                row.accept += 1
            else:
                row.reject += 1
        for row in rows:
            row.label = None if row.accept == row.reject else row.accept > row.reject
        version = _version(session, None)
        if version is not None:
            by_triple = {row.triple_id: row for row in rows}
            for triple_id, p in session.execute(
                select(Score.triple_id, Score.p_accept).where(
                    Score.critic_version_id == version.id, Score.triple_id.in_(list(by_triple))
                )
            ):
                by_triple[triple_id].score = float(p)
    cursor = encode_cursor([rows[-1].item_id]) if more and rows else None
    return campaign, rows, cursor
