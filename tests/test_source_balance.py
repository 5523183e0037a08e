"""A sample spread over several sources: an evaluation campaign gives each source an equal
share (so a small reference is compared as precisely as a large teacher run), a calibration or
training one stays proportional, and either can be asked for by name from the page, the API
and the CLI, which all say the shares before and after the campaign is made."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

from sqlalchemy import select

from app.annotation.campaigns import CampaignSpec, create_campaign
from app.annotation.source_balance import equal_shares
from app.core.db import session_scope
from app.core.models import (
    CampaignItem,
    CampaignPurpose,
    CriticState,
    CriticVersion,
    Rating,
    RatingOrigin,
    Score,
    Triple,
)
from app.web.campaign_form import blank_values
from tests.conftest import csrf_of
from tests.test_campaigns import make_triples
from tests.test_import import run_cli


def sources_of(campaign_id: int) -> Counter[str]:
    """How many of the campaign's (non-gold) items each source gave."""
    with session_scope() as session:
        return Counter(
            session.scalars(
                select(Triple.source)
                .join(CampaignItem, CampaignItem.triple_id == Triple.id)
                .where(CampaignItem.campaign_id == campaign_id, CampaignItem.is_gold.is_(False))
            )
        )


def create(**fields: Any) -> tuple[int, dict[str, Any]]:
    with session_scope(write=True) as session:
        campaign = create_campaign(session, CampaignSpec(**{"name": "c", "seed": 1, **fields}))
        return campaign.id, dict(campaign.selection)


def test_equal_shares_are_as_even_as_the_sizes_allow() -> None:
    assert equal_shares({"big": 1000, "small": 50}, 300) == {"big": 250, "small": 50}
    assert equal_shares({"a": 1000, "b": 1000}, 301) == {"a": 151, "b": 150}
    assert equal_shares({"a": 9, "b": 100, "c": 100}, 60) == {"a": 9, "b": 26, "c": 25}
    # Never more than a source has, never more than asked.
    assert equal_shares({"a": 3, "b": 4}, 100) == {"a": 3, "b": 4}
    assert sum(equal_shares({"a": 7, "b": 70, "c": 700}, 100).values()) == 100


def test_an_evaluation_sample_gives_each_source_an_equal_share(engine) -> None:  # type: ignore[no-untyped-def]
    make_triples([("xWant", "teacher")], 60)
    make_triples([("xWant", "atomic2020")], 12)
    make_triples([("xWant", "unused")], 30)
    two = ["teacher", "atomic2020"]
    evaluation, selection = create(purpose=CampaignPurpose.evaluation, sources=two, sample_size=20)
    assert sources_of(evaluation) == {"teacher": 10, "atomic2020": 10}
    assert selection["source_balance"] == "equal"
    assert selection["per_source"] == {"atomic2020": 10, "teacher": 10}
    assert "an equal share per source (atomic2020 10 · teacher 10)" in selection["sampling"]
    # A source smaller than its share gives all it has; the others make up the sample.
    short, selection = create(purpose=CampaignPurpose.evaluation, sources=two, sample_size=40)
    assert sources_of(short) == {"teacher": 28, "atomic2020": 12}
    # The same seed draws the same items (the split is deterministic too).
    again, _ = create(purpose=CampaignPurpose.evaluation, sources=two, sample_size=40)
    with session_scope() as session:
        drawn = [
            sorted(session.scalars(select(CampaignItem.triple_id).where(c == c_id)))
            for c, c_id in ((CampaignItem.campaign_id, short), (CampaignItem.campaign_id, again))
        ]
    assert drawn[0] == drawn[1]

    # A calibration sample estimates the corpus as it is: proportional, unless asked.
    calibration, selection = create(sources=two, sample_size=36, seed=3)
    assert selection["source_balance"] == "proportional" and selection["per_source"] is None
    assert sum(sources_of(calibration).values()) == 36
    asked, selection = create(sources=two, sample_size=36, source_balance="equal")
    assert sources_of(asked) == {"teacher": 24, "atomic2020": 12}
    # An evaluation asked to be proportional is, and one source or no sample needs no split.
    _, selection = create(
        purpose=CampaignPurpose.evaluation, sources=two, sample_size=20,
        source_balance="proportional",
    )  # fmt: skip
    assert selection["per_source"] is None and selection["sampling"] == "uniform random"
    everything, selection = create(purpose=CampaignPurpose.evaluation, sources=two)
    assert sources_of(everything) == {"teacher": 60, "atomic2020": 12}
    assert selection["per_source"] is None
    # No sources named: the split is over every source the filters select.
    _, selection = create(purpose=CampaignPurpose.evaluation, sample_size=30)
    assert selection["per_source"] == {"atomic2020": 10, "teacher": 10, "unused": 10}


def test_an_equal_share_of_uncertain_triples_per_source_for_training(engine) -> None:  # type: ignore[no-untyped-def]
    """Active learning with an equal split: each source's share is its own triples nearest
    the critic's threshold, and labelled triples are neither drawn nor counted."""
    big = make_triples([("xWant", "big")], 20)
    small = make_triples([("xWant", "small")], 4)
    with session_scope(write=True) as session:
        version = CriticVersion(base_model="tiny", state=CriticState.active, threshold=0.5)
        session.add(version)
        session.flush()
        # big: p = 0.50, 0.52, 0.54, ... (nearest first); small: 0.95, 0.1, 0.6, 0.45.
        for n, triple_id in enumerate(big):
            session.add(
                Score(critic_version_id=version.id, triple_id=triple_id, p_accept=0.5 + n / 50)
            )
        for triple_id, p in zip(small, [0.95, 0.1, 0.6, 0.45], strict=True):
            session.add(Score(critic_version_id=version.id, triple_id=triple_id, p_accept=p))
        session.add(  # big[0], the most uncertain, already has a label
            Rating(triple_id=big[0], origin=RatingOrigin.imported, answer=2,
                   submission_id=uuid.uuid4().hex)
        )  # fmt: skip
    campaign_id, selection = create(
        purpose=CampaignPurpose.training, sample_size=6, source_balance="equal"
    )
    assert "uncertainty first" in selection["sampling"]
    assert selection["per_source"] == {"big": 3, "small": 3}
    with session_scope() as session:
        served = list(
            session.scalars(
                select(CampaignItem.triple_id)
                .where(CampaignItem.campaign_id == campaign_id)
                .order_by(CampaignItem.sort_key)
            )
        )
    # |p - 0.5|: big[1] 0.02, big[2] 0.04, small[3] 0.05, big[3] 0.06, small[2] 0.1, small[1]
    # 0.4 (small[0] is 0.45): the three nearest of each source, served nearest first.
    assert served == [big[1], big[2], small[3], big[3], small[2], small[1]]


def test_the_api_the_cli_and_the_page_ask_for_and_show_the_split(  # type: ignore[no-untyped-def]
    staff_client, engine, tmp_path
) -> None:
    make_triples([("xWant", "teacher")], 50)
    make_triples([("xWant", "atomic2020")], 8)
    body = {"name": "compare", "purpose": "evaluation", "sample_size": 20,
            "sources": ["teacher", "atomic2020"]}  # fmt: skip
    plan = staff_client.post("/api/campaigns/plan", json=body)
    assert plan.status_code == 200, plan.text
    assert plan.json()["per_source"] == {"atomic2020": 8, "teacher": 12}
    created = staff_client.post("/api/campaigns", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["selection"]["per_source"] == {"atomic2020": 8, "teacher": 12}
    refused = staff_client.post("/api/campaigns", json={**body, "source_balance": "even"})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"][-1] == "source_balance"

    page = staff_client.get(f"/campaigns/{created.json()['id']}")
    assert "an equal share per source: atomic2020 8 · teacher 12" in page.text

    assert 'name="source_balance"' in staff_client.get("/campaigns/new").text
    fields = {"csrf_token": csrf_of(staff_client), "name": "by form", "purpose": "calibration",
              "answer_scale": blank_values()["answer_scale"],
              "sample_size": "10", "sources": ["teacher", "atomic2020"],
              "source_balance": "equal", "ratings_per_item": "1", "lease_minutes": "10",
              "seed": "4"}  # fmt: skip
    reply = staff_client.post("/campaigns/plan", data=fields, headers={"HX-Request": "true"})
    assert "atomic2020 5 · teacher 5" in reply.text
    made = staff_client.post("/campaigns", data=fields, follow_redirects=False)
    assert made.status_code == 303, made.text
    shown = staff_client.get(made.headers["location"])
    assert "an equal share per source: atomic2020 5 · teacher 5" in shown.text
    bad = staff_client.post("/campaigns", data={**fields, "source_balance": "lopsided"})
    assert bad.status_code == 422 and "use auto, equal, proportional" in bad.text

    both = ["--source", "teacher", "--source", "atomic2020"]
    dry = run_cli("campaign", "create", "terminal", "--purpose", "evaluation", "--sample", "10",
                  *both, "--dry-run", cwd=tmp_path)  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert "per source       atomic2020 5 · teacher 5" in dry.stdout
    made = run_cli("campaign", "create", "terminal", "--sample", "10", "--balance", "equal",
                   *both, cwd=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "an equal share per source: atomic2020 5 · teacher 5" in made.stdout
    wrong = run_cli("campaign", "create", "terminal", "--balance", "even", cwd=tmp_path)
    assert wrong.returncode == 2 and "--balance: use auto, equal, proportional" in wrong.stderr


def test_unlabelled_counts_come_from_the_kept_counts_less_the_rated_triples(engine) -> None:  # type: ignore[no-untyped-def]
    """What active learning may draw per source, without reading the corpus: a triple rated
    twice counts once, and ratings of triples outside the filters do not count."""
    from sqlalchemy import func

    from app.annotation.campaigns import source_shares

    big = make_triples([("xWant", "big"), ("xNeed", "big")], 10)
    make_triples([("xWant", "small"), ("xNeed", "small")], 3)
    with session_scope(write=True) as session:
        small_want = session.scalars(
            select(Triple.id).where(Triple.source == "small", Triple.relation == "xWant")
        ).all()
        small_need = session.scalars(
            select(Triple.id).where(Triple.source == "small", Triple.relation == "xNeed")
        ).all()
        rated = [small_want[0], small_want[0], small_want[1], *small_need]  # one twice
        for triple_id in rated:
            session.add(
                Rating(triple_id=triple_id, origin=RatingOrigin.imported, answer=2,
                       submission_id=uuid.uuid4().hex)
            )  # fmt: skip
    spec = CampaignSpec(
        name="c", purpose=CampaignPurpose.training, sample_size=6, source_balance="equal",
        relations=["xWant"],
    )  # fmt: skip
    with session_scope() as session:
        # what the corpus itself says, the slow way: xWant triples nobody rated, per source
        unrated = ~select(Rating.id).where(Rating.triple_id == Triple.id).exists()
        truth = dict(
            session.execute(
                select(Triple.source, func.count())
                .where(Triple.relation == "xWant", unrated)
                .group_by(Triple.source)
            ).all()
        )
        shares = source_shares(session, spec, unlabelled_only=True)
    assert len(big) == 20 and truth == {"big": 10, "small": len(small_want) - 2}
    assert shares == equal_shares(truth, 6)
    assert shares["small"] == truth["small"] < 3  # the small source gives all it has left
