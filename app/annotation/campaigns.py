"""Campaigns: choosing which triples a rating job covers, and the answer scale it asks with.

``create_campaign`` draws the items once, when the campaign is made, and stores each item's
place in the campaign's sampling order (``sort_key``), so the hot path only reads an index.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, insert, select
from sqlalchemy.orm import Session

from app.annotation.scale import check_scale, normalize_scale
from app.annotation.source_balance import (
    AUTO,
    EQUAL,
    check_balance,
    describe_shares,
    equal_shares,
    resolved_balance,
)
from app.core import triple_counts
from app.core.config import get_settings
from app.core.models import (
    Campaign,
    CampaignItem,
    CampaignPurpose,
    CampaignState,
    CriticState,
    CriticVersion,
    Rating,
    Score,
    Triple,
    utcnow,
)

# The paper's human evaluation scale; values > 0 are acceptable. ``key`` is the shortcut.
DEFAULT_SCALE: list[dict[str, Any]] = [
    {"value": 2, "label": "always/often", "acceptable": True, "key": "1"},
    {"value": 1, "label": "sometimes/likely", "acceptable": True, "key": "2"},
    {"value": -1, "label": "farfetched/never", "acceptable": False, "key": "3"},
    {"value": -2, "label": "invalid", "acceptable": False, "key": "4"},
    {"value": -9, "label": "too unfamiliar to judge", "acceptable": None, "key": "5"},
]


@dataclass
class CampaignSpec:
    name: str
    purpose: CampaignPurpose = CampaignPurpose.calibration
    sample_size: int | None = None  # None: every triple that passes the filters
    relations: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    # How the sample spreads over sources (``app.annotation.source_balance``): auto, equal
    # or proportional.
    source_balance: str = AUTO
    ratings_per_item: int = 3
    lease_seconds: int = 600
    gold_fraction: float = 0.0  # share of items drawn from triples with known answers
    gold_rate: float = 0.0  # share of served items that are gold
    guidelines: str = ""
    answer_scale: list[dict[str, Any]] = field(default_factory=lambda: list(DEFAULT_SCALE))
    quota_per_annotator: int | None = None
    # Quality flags: below this gold accuracy, or faster than this median, an annotator is
    # flagged on the campaign page.
    min_gold_accuracy: float = 0.7
    speeder_seconds: float = 2.0
    completion_code: str | None = None
    redirect_url: str | None = None
    seed: int | None = 0  # None: draw a fresh seed (recorded in ``selection``)
    open: bool = True
    # Explicit gold: triple id -> the answer (a scale value) a careful annotator gives.
    gold_items: dict[int, int] = field(default_factory=dict)


MAX_RATINGS_PER_ITEM = 50
ALL_LABELLED = "every selected triple already has a human label: nothing to learn"
NO_GOLD_TO_DRAW = (
    "no triple has a known answer (an imported human label) to draw gold from; list gold "
    "items instead"
)
MAX_LEASE_SECONDS = 7 * 24 * 3600


class CampaignSpecError(ValueError):
    """A spec that cannot become a campaign; ``errors`` maps each field name to its problem, so
    the form can show every message next to its field and the API can name the fields."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


class CampaignStateError(ValueError):
    """A state change the rules refuse (a closed campaign stays closed)."""


def _present(session: Session, name: str, wanted: list[str]) -> set[str]:
    """Which of the ``wanted`` relations or sources have triples (from the kept counts, never a
    scan of the corpus)."""
    if not wanted:
        return set()
    if name == "sources":
        return triple_counts.known_sources(session, wanted)
    return set(triple_counts.by_relation(session)) & set(wanted)


def _check_gold_items(session: Session, spec: CampaignSpec) -> str | None:
    judgements = {
        option.get("value")
        for option in spec.answer_scale
        if isinstance(option, dict) and option.get("acceptable") is not None
    }
    wrong = sorted({a for a in spec.gold_items.values() if a not in judgements})
    if wrong:
        return (
            f"answer {', '.join(map(str, wrong))} is not a judgement on the scale "
            f"(use one of {', '.join(map(str, sorted(judgements)))})"
        )
    ids = sorted(spec.gold_items)
    found: set[int] = set()
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        found.update(session.scalars(select(Triple.id).where(Triple.id.in_(chunk))))
    missing = [str(i) for i in ids if i not in found]
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        return f"no triple with id {shown}"
    return None


def validate_spec(session: Session, spec: CampaignSpec) -> dict[str, str]:
    """Every problem with ``spec`` by field name (empty when it is fine). ``create_campaign``
    calls this, so the page, the API and the CLI refuse exactly the same things."""
    errors: dict[str, str] = {}
    if not spec.name.strip():
        errors["name"] = "give the campaign a name"
    elif len(spec.name) > 200:
        errors["name"] = "at most 200 characters"
    if spec.purpose not in set(CampaignPurpose):
        errors["purpose"] = "use calibration, training or evaluation"
    if spec.sample_size is not None and spec.sample_size < 1:
        errors["sample_size"] = "must be at least 1 (leave it empty for every triple)"
    balance_problem = check_balance(spec.source_balance)
    if balance_problem:
        errors["source_balance"] = balance_problem
    if not 1 <= spec.ratings_per_item <= MAX_RATINGS_PER_ITEM:
        errors["ratings_per_item"] = f"must be between 1 and {MAX_RATINGS_PER_ITEM}"
    if not 1 <= spec.lease_seconds <= MAX_LEASE_SECONDS:
        errors["lease_seconds"] = "must be between 1 second and 7 days"
    for name in ("gold_fraction", "gold_rate"):
        if not 0 <= getattr(spec, name) <= 1:
            errors[name] = "must be between 0 and 1"
    if not 0 <= spec.min_gold_accuracy <= 1:
        errors["min_gold_accuracy"] = "must be between 0 and 1"
    if not 0 <= spec.speeder_seconds <= 3600:
        errors["speeder_seconds"] = "must be between 0 and 3600 seconds"
    if spec.quota_per_annotator is not None and spec.quota_per_annotator < 1:
        errors["quota_per_annotator"] = "must be at least 1 (leave it empty for no quota)"
    if spec.completion_code is not None and len(spec.completion_code) > 100:
        errors["completion_code"] = "at most 100 characters"
    if spec.redirect_url:
        if not spec.redirect_url.startswith(("https://", "http://")):
            errors["redirect_url"] = "must start with https:// (or http://)"
        elif len(spec.redirect_url) > 1000:
            errors["redirect_url"] = "at most 1000 characters"
    scale_problems = check_scale(spec.answer_scale)
    if scale_problems:
        errors["answer_scale"] = "; ".join(scale_problems)
    for name in ("relations", "sources"):
        wanted: list[str] = getattr(spec, name)
        present = _present(session, name, wanted)
        missing = [value for value in wanted if value not in present]
        if missing:
            errors[name] = f"not in the corpus: {', '.join(missing)}"
    if spec.gold_items and "answer_scale" not in errors:
        problem = _check_gold_items(session, spec)
        if problem:
            errors["gold_items"] = problem
    if spec.gold_rate > 0 and spec.gold_fraction == 0 and not spec.gold_items:
        errors["gold_rate"] = "there are no gold items to serve: set a gold fraction or list some"
    return errors


def create_campaign(
    session: Session, spec: CampaignSpec, created_by_id: int | None = None
) -> Campaign:
    """Create a campaign and its items in the caller's transaction.

    Raises ``CampaignSpecError`` (field name -> problem) when the spec cannot be used.
    """
    errors = validate_spec(session, spec)
    if errors:
        raise CampaignSpecError(errors)
    seed = spec.seed if spec.seed is not None else secrets.randbelow(2**31)
    conditions = selection_conditions(spec)
    query = select(Triple.id).where(*conditions)
    ids = list(session.scalars(query.order_by(Triple.id)))
    if not ids:
        raise CampaignSpecError({"filters": "the relation and source filters select no triples"})
    rng = random.Random(seed)
    order: dict[int, float] = {}
    sampling = "uniform random"
    # The active critic, read directly: this step sits below app.critic in the layers.
    critic = (
        session.scalar(select(CriticVersion).where(CriticVersion.state == CriticState.active))
        if spec.purpose == CampaignPurpose.training
        else None
    )
    uncertainty = critic is not None and critic.threshold is not None
    shares = source_shares(session, spec, unlabelled_only=uncertainty)
    if critic is not None and critic.threshold is not None:
        if shares:
            for source, share in shares.items():
                one_source = query.where(Triple.source == source)
                order.update(
                    uncertainty_order(session, one_source, critic.id, critic.threshold, share)
                )
        else:
            order = uncertainty_order(session, query, critic.id, critic.threshold, spec.sample_size)
        ids = list(order)
        if not ids:
            raise CampaignSpecError({"filters": ALL_LABELLED})
        sampling = (
            f"uncertainty first: unlabelled triples scored nearest critic version {critic.id}'s "
            f"threshold {critic.threshold:.4f}"
        )
    elif shares:
        by_source: dict[str, list[int]] = {}
        for triple_id, source in session.execute(
            select(Triple.id, Triple.source).where(*conditions).order_by(Triple.id)
        ):
            by_source.setdefault(source, []).append(triple_id)
        ids = [i for source in shares for i in rng.sample(by_source[source], shares[source])]
    elif spec.sample_size is not None and spec.sample_size < len(ids):
        ids = rng.sample(ids, spec.sample_size)
    if shares:
        sampling += f", an equal share per source ({describe_shares(shares)})"
    gold: dict[int, int] = {}
    if spec.gold_fraction > 0:
        # Gold answers come from imported human labels (the first label of each triple).
        labelled = dict(
            session.execute(
                select(Rating.triple_id, func.max(Rating.answer))
                .where(Rating.item_id.is_(None), Rating.answer != -9)
                .group_by(Rating.triple_id)
            ).all()
        )
        candidates = sorted(labelled)
        if not candidates:
            raise CampaignSpecError({"gold_fraction": NO_GOLD_TO_DRAW})
        wanted = max(1, round(spec.gold_fraction * len(ids)))
        for triple_id in rng.sample(candidates, min(wanted, len(candidates))):
            gold[triple_id] = labelled[triple_id]
    gold.update(spec.gold_items)  # explicit answers win over drawn ones
    campaign = Campaign(
        name=spec.name,
        purpose=spec.purpose,
        state=CampaignState.open if spec.open else CampaignState.draft,
        ratings_per_item=spec.ratings_per_item,
        lease_seconds=spec.lease_seconds,
        guidelines=spec.guidelines,
        answer_scale=normalize_scale(spec.answer_scale),
        selection={
            "sample_size": spec.sample_size,
            "relations": spec.relations,
            "sources": spec.sources,
            "seed": seed,
            "gold_fraction": spec.gold_fraction,
            "gold_items": len(spec.gold_items),
            "sampling": sampling,
            "source_balance": resolved_balance(spec.source_balance, spec.purpose),
            "per_source": shares,
        },
        gold_rate=spec.gold_rate,
        quota_per_annotator=spec.quota_per_annotator,
        min_gold_accuracy=spec.min_gold_accuracy,
        speeder_seconds=spec.speeder_seconds,
        completion_code=spec.completion_code or secrets.token_hex(4).upper(),
        redirect_url=spec.redirect_url,
        share_token=secrets.token_urlsafe(12),
        created_by_id=created_by_id,
    )
    session.add(campaign)
    session.flush()
    rows = [
        {
            "campaign_id": campaign.id,
            "triple_id": triple_id,
            "ratings_needed": spec.ratings_per_item,
            "ratings_done": 0,
            "leases_active": 0,
            # Served in ascending order: the critic's distance from its threshold for a
            # training campaign with an active critic, else a random order.
            "sort_key": order[triple_id] if order else rng.random(),
            "is_gold": False,
            "gold_answer": None,
        }
        for triple_id in ids
        if triple_id not in gold
    ]
    # Gold items are shown to everyone (ratings_needed large enough never to close them).
    rows += [
        {
            "campaign_id": campaign.id,
            "triple_id": triple_id,
            "ratings_needed": 32000,
            "ratings_done": 0,
            "leases_active": 0,
            "sort_key": rng.random(),
            "is_gold": True,
            "gold_answer": answer,
        }
        for triple_id, answer in gold.items()
    ]
    for start in range(0, len(rows), 10_000):
        session.execute(insert(CampaignItem), rows[start : start + 10_000])
    return campaign


def selection_conditions(spec: CampaignSpec) -> list[Any]:
    """The WHERE clauses of the spec's relation and source filters."""
    conditions: list[Any] = []
    if spec.relations:
        conditions.append(Triple.relation.in_(spec.relations))
    if spec.sources:
        conditions.append(Triple.source.in_(spec.sources))
    return conditions


def source_shares(
    session: Session, spec: CampaignSpec, unlabelled_only: bool = False
) -> dict[str, int] | None:
    """How many items each source gives when the sample is split equally (source -> count),
    or None when it is not: a proportional balance, no sample size, one source, or a sample
    that takes every selected triple anyway.

    ``unlabelled_only`` counts only triples nobody has labelled (what active learning draws).
    """
    if spec.sample_size is None or resolved_balance(spec.source_balance, spec.purpose) != EQUAL:
        return None
    # the kept counts: no need to read the selected triples
    sizes = triple_counts.per_source(session, spec.relations, spec.sources)
    if unlabelled_only:  # less the rated ones: reads the ratings, not the corpus
        for source, rated in rated_per_source(session, spec).items():
            sizes[source] = sizes.get(source, 0) - rated
        sizes = {source: n for source, n in sizes.items() if n > 0}
    if len(sizes) < 2 or spec.sample_size >= sum(sizes.values()):
        return None
    return equal_shares(sizes, spec.sample_size)


def rated_per_source(session: Session, spec: CampaignSpec) -> dict[str, int]:
    """How many of the selected triples someone has rated, per source: the kept counts less
    these are the unlabelled triples active learning draws from, found by reading the ratings
    (thousands) instead of testing every triple of the corpus (millions) for one."""
    rated = select(Rating.triple_id).distinct().subquery()
    query = (
        select(Triple.source, func.count())
        .join(rated, rated.c.triple_id == Triple.id)
        .where(*selection_conditions(spec))
        .group_by(Triple.source)
    )
    return {source: int(n) for source, n in session.execute(query)}


def uncertainty_order(
    session: Session, selection: Any, version_id: int, threshold: float, limit: int | None
) -> dict[int, float]:
    """Active learning: the selected triples nobody has labelled yet, nearest the critic's
    threshold first (its least certain calls), as triple id -> distance.

    Triples the version has not scored yet come after every scored one.
    """
    chosen = selection.subquery()
    labelled = select(Rating.id).where(Rating.triple_id == chosen.c.id).exists()
    distance = func.abs(Score.p_accept - threshold)
    query = (
        select(chosen.c.id, distance)
        .join(
            Score,
            and_(Score.triple_id == chosen.c.id, Score.critic_version_id == version_id),
        )
        .where(~labelled)
        .order_by(distance, chosen.c.id)
    )
    if limit is not None:
        query = query.limit(limit)
    order = {triple_id: float(gap) for triple_id, gap in session.execute(query)}
    if limit is None or len(order) < limit:
        scored = select(Score.triple_id).where(
            Score.critic_version_id == version_id, Score.triple_id == chosen.c.id
        )
        rest = select(chosen.c.id).where(~labelled, ~scored.exists()).order_by(chosen.c.id)
        if limit is not None:
            rest = rest.limit(limit - len(order))
        for position, triple_id in enumerate(session.scalars(rest)):
            order[triple_id] = 1.0 + position  # after every scored triple (distances <= 1)
    return order


def set_campaign_state(session: Session, campaign_id: int, state: CampaignState | str) -> Campaign:
    """Open, pause or close a campaign. Closing is final: the data of a closed campaign is what
    was reported, so reopening it is refused (make a new campaign instead).

    Raises ``LookupError`` for no such campaign, ``CampaignStateError`` for a change the rules
    refuse, ``ValueError`` for a state that does not exist.
    """
    try:
        target = CampaignState(state)
    except ValueError:
        raise ValueError(f"state: use open, paused or closed, not {state!r}") from None
    if target == CampaignState.draft:
        raise CampaignStateError("state: a campaign cannot go back to draft")
    campaign = session.get(Campaign, campaign_id, with_for_update=True)
    if campaign is None:
        raise LookupError(f"no campaign {campaign_id}")
    if campaign.state == CampaignState.closed and target != CampaignState.closed:
        raise CampaignStateError("this campaign is closed; a closed campaign cannot be reopened")
    campaign.state = target
    if target == CampaignState.closed and campaign.closed_at is None:
        campaign.closed_at = utcnow()
    return campaign


def share_url(campaign: Campaign, base_url: str | None = None) -> str:
    """The link annotators open (``base_url`` defaults to the configured public URL)."""
    base = (base_url or get_settings().public_url).rstrip("/")
    return f"{base}/c/{campaign.share_token}"
