"""The hot path under fire: many annotators, retries, double submits, abandoned leases.

Whatever happens, afterwards the database must show: no annotator rated an item twice, no item
got more ratings than it needs, every acknowledged rating is stored exactly once, and every
item of the campaign is complete.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter

import pytest
from sqlalchemy import func, select

from app.annotation.access import admit
from app.annotation.assign import (
    AssignmentError,
    next_item,
    release_expired_leases,
    skip_item,
    submit_rating,
)
from app.annotation.campaigns import CampaignSpec, create_campaign
from app.core.db import session_scope
from app.core.models import (
    Assignment,
    AssignmentState,
    Campaign,
    CampaignItem,
    Rating,
    Role,
    Triple,
    User,
)
from tests.conftest import add_triples

ANSWERS = [2, 1, -1, -2, -9]


def make_corpus(n: int) -> None:
    add_triples(n)


def make_annotators(n: int) -> list[int]:
    with session_scope(write=True) as session:
        users = [
            User(role=Role.annotator, platform="prolific", external_id=f"w{i}") for i in range(n)
        ]
        session.add_all(users)
        session.flush()
        admit_to_every_campaign(session, [u.id for u in users])
        return [u.id for u in users]


def admit_to_every_campaign(session, user_ids: list[int]) -> None:  # type: ignore[no-untyped-def]
    """As if each had entered every campaign by its share link."""
    for campaign_id in session.scalars(select(Campaign.id)):
        for user_id in user_ids:
            admit(session, campaign_id, user_id, "link")


def make_campaign(**kwargs) -> int:  # type: ignore[no-untyped-def]
    with session_scope(write=True) as session:
        return create_campaign(session, CampaignSpec(name="c", **kwargs)).id


def call(fn, *args):  # type: ignore[no-untyped-def]
    with session_scope(write=True) as session:
        return fn(session, *args)


def test_each_item_gets_exactly_k_ratings_from_distinct_annotators(engine) -> None:  # type: ignore[no-untyped-def]
    make_corpus(4)
    campaign = make_campaign(ratings_per_item=2)
    annotators = make_annotators(3)
    served = Counter()
    for annotator in annotators:
        while (item := call(next_item, campaign, annotator)) is not None:
            served[item.item_id] += 1
            call(submit_rating, campaign, annotator, item.item_id, 2, uuid.uuid4().hex, 3.0)
    assert sorted(served.values()) == [2, 2, 2, 2]
    # Closest-to-done first: the second annotator finished the first one's items.
    with session_scope() as session:
        done = session.execute(select(CampaignItem.ratings_done)).scalars().all()
    assert done == [2, 2, 2, 2]


def test_reload_returns_the_held_item_and_skip_passes_it_on(engine) -> None:  # type: ignore[no-untyped-def]
    make_corpus(2)
    campaign = make_campaign(ratings_per_item=1)
    a, b = make_annotators(2)
    first = call(next_item, campaign, a)
    assert call(next_item, campaign, a).item_id == first.item_id
    other = call(next_item, campaign, b)
    assert other.item_id != first.item_id
    call(skip_item, campaign, a, first.item_id)
    call(submit_rating, campaign, b, other.item_id, 1, "s-b1")
    assert call(next_item, campaign, b).item_id == first.item_id  # skipped item went to b
    second_for_a = call(next_item, campaign, a)
    assert second_for_a is None  # a never gets their skipped item back; the other is full


def test_expired_lease_returns_the_item(engine) -> None:  # type: ignore[no-untyped-def]
    make_corpus(1)
    campaign = make_campaign(ratings_per_item=1, lease_seconds=1)
    a, b = make_annotators(2)
    held = call(next_item, campaign, a)
    assert call(next_item, campaign, b) is None  # the only slot is leased
    time.sleep(1.2)
    assert call(next_item, campaign, b).item_id == held.item_id
    call(submit_rating, campaign, b, held.item_id, 2, "b")
    with pytest.raises(AssignmentError, match="already has all the ratings"):
        call(submit_rating, campaign, a, held.item_id, 2, "a-late")


def test_resubmit_is_idempotent_and_going_back_changes_the_answer(engine) -> None:  # type: ignore[no-untyped-def]
    make_corpus(2)
    campaign = make_campaign(ratings_per_item=1)
    (a,) = make_annotators(1)
    item = call(next_item, campaign, a)
    first = call(submit_rating, campaign, a, item.item_id, 2, "s1")
    again = call(submit_rating, campaign, a, item.item_id, 2, "s1")
    assert again.repeated and again.rating_id == first.rating_id
    changed = call(submit_rating, campaign, a, item.item_id, -1, "s2")
    assert changed.changed and changed.rating_id == first.rating_id
    with session_scope() as session:
        ratings = session.execute(select(Rating.answer)).scalars().all()
        done = session.scalar(
            select(CampaignItem.ratings_done).where(CampaignItem.id == item.item_id)
        )
    assert ratings == [-1] and done == 1
    with pytest.raises(AssignmentError, match="not on this campaign's scale"):
        call(submit_rating, campaign, a, item.item_id, 7, "s3")


def test_gold_items_are_interleaved_at_the_rate(engine) -> None:  # type: ignore[no-untyped-def]
    make_corpus(30)
    with session_scope(write=True) as session:
        for triple_id in session.scalars(select(Triple.id).limit(5)):
            session.add(
                Rating(
                    triple_id=triple_id,
                    answer=2,
                    submission_id=f"import:{triple_id}",
                    origin="imported",
                )
            )
    campaign = make_campaign(
        ratings_per_item=1, gold_fraction=0.2, gold_rate=0.25, quota_per_annotator=12
    )
    (a,) = make_annotators(1)
    gold = []
    while (item := call(next_item, campaign, a)) is not None:
        with session_scope() as session:
            gold.append(session.get(CampaignItem, item.item_id).is_gold)
        call(submit_rating, campaign, a, item.item_id, 1, uuid.uuid4().hex)
    assert len(gold) == 12 and sum(gold) == 3
    assert gold[3] and gold[7] and gold[11]


@pytest.mark.parametrize("annotators,items,k", [(32, 40, 3)])
def test_concurrent_annotators_with_retries_keep_every_invariant(
    engine, annotators: int, items: int, k: int
) -> None:  # type: ignore[no-untyped-def]
    make_corpus(items)
    campaign = make_campaign(ratings_per_item=k, lease_seconds=1)
    people = make_annotators(annotators)
    acknowledged: list[tuple[int, int, str, int]] = []  # (annotator, item, submission, answer)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def submit(annotator: int, item_id: int, submission: str, answer: int) -> None:
        try:
            call(submit_rating, campaign, annotator, item_id, answer, submission, 1.0)
        except AssignmentError as exc:
            if exc.status != 409:
                raise
            return
        with lock:
            acknowledged.append((annotator, item_id, submission, answer))

    def annotator_loop(annotator: int, seed: int) -> None:
        rng = random.Random(seed)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    item = call(next_item, campaign, annotator)
                except AssignmentError:
                    continue
                if item is None:
                    # Nothing open for me now; leases of others may still expire.
                    with session_scope() as session:
                        open_left = session.scalar(
                            select(func.count())
                            .select_from(CampaignItem)
                            .where(
                                CampaignItem.campaign_id == campaign,
                                CampaignItem.ratings_done < CampaignItem.ratings_needed,
                            )
                        )
                    if not open_left:
                        return
                    time.sleep(0.2)
                    continue
                roll = rng.random()
                submission = uuid.uuid4().hex
                answer = rng.choice(ANSWERS)
                if roll < 0.05:
                    return  # walks away holding a lease: it must expire and return
                if roll < 0.10:
                    call(skip_item, campaign, annotator, item.item_id)
                    continue
                if roll < 0.25:  # a double click: two concurrent submits of one answer
                    twins = [
                        threading.Thread(
                            target=submit, args=(annotator, item.item_id, submission, answer)
                        )
                        for _ in range(2)
                    ]
                    for t in twins:
                        t.start()
                    for t in twins:
                        t.join()
                    continue
                submit(annotator, item.item_id, submission, answer)
                if roll < 0.40:  # the response was lost: the client retries
                    submit(annotator, item.item_id, submission, answer)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=annotator_loop, args=(p, i)) for i, p in enumerate(people)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    # Anyone who walked away left a lease; let them expire, then finish with fresh annotators.
    time.sleep(1.1)
    with session_scope(write=True) as session:
        release_expired_leases(session, campaign)
    extra = make_extra_annotators(k)
    for annotator in extra:
        while (item := call(next_item, campaign, annotator)) is not None:
            submit(annotator, item.item_id, uuid.uuid4().hex, 2)

    with session_scope() as session:
        rows = session.execute(
            select(
                CampaignItem.id,
                CampaignItem.ratings_done,
                CampaignItem.ratings_needed,
                CampaignItem.leases_active,
            ).where(CampaignItem.campaign_id == campaign)
        ).all()
        ratings = session.execute(
            select(Rating.item_id, Rating.annotator_id, Rating.submission_id, Rating.answer)
        ).all()
        live = session.scalar(
            select(func.count())
            .select_from(Assignment)
            .where(Assignment.state == AssignmentState.leased)
        )
    per_item = Counter(r.item_id for r in ratings)
    assert all(r.ratings_done == r.ratings_needed == k for r in rows), "campaign not full"
    assert all(per_item[r.id] == r.ratings_done for r in rows), (
        "counter differs from stored ratings"
    )
    assert len({(r.item_id, r.annotator_id) for r in ratings}) == len(ratings), (
        "an annotator rated twice"
    )
    stored = {r.submission_id: r for r in ratings}
    for annotator, item_id, submission, answer in acknowledged:
        assert submission in stored, "an acknowledged rating was lost"
        assert (stored[submission].annotator_id, stored[submission].item_id) == (annotator, item_id)
        assert stored[submission].answer == answer
    assert len(stored) == len(ratings) == items * k
    assert live == 0 and all(r.leases_active == 0 for r in rows)


def make_extra_annotators(n: int) -> list[int]:
    with session_scope(write=True) as session:
        users = [
            User(
                role=Role.annotator,
                platform="mturk",
                external_id=f"extra{i}-{uuid.uuid4().hex[:6]}",
            )
            for i in range(n)
        ]
        session.add_all(users)
        session.flush()
        admit_to_every_campaign(session, [u.id for u in users])
        return [u.id for u in users]


def test_api_next_submit_skip_round_trip(client, engine) -> None:  # type: ignore[no-untyped-def]
    make_corpus(3)
    with session_scope(write=True) as session:
        campaign = create_campaign(
            session, CampaignSpec(name="api", ratings_per_item=1, completion_code="DONE42")
        )
        share, campaign_id = campaign.share_token, campaign.id
    assert client.get(f"/api/annotate/{campaign_id}/next").status_code == 401
    entry = client.get(
        f"/c/{share}?PROLIFIC_PID=abc&STUDY_ID=s&SESSION_ID=x", follow_redirects=False
    )
    assert entry.status_code == 303 and entry.headers["location"] == f"/annotate/{campaign_id}"
    first = client.get(f"/api/annotate/{campaign_id}/next").json()
    assert first["item"]["relation_phrase"] == "as a result, PersonX wants"
    body = {"item_id": first["item"]["item_id"], "answer": 2, "submission_id": "x1", "seconds": 2.5}
    reply = client.post(f"/api/annotate/{campaign_id}/submit", json=body).json()
    assert reply["saved"]["repeated"] is False and reply["item"]["position"] == 2
    again = client.post(f"/api/annotate/{campaign_id}/submit", json=body).json()
    assert again["saved"]["repeated"] is True
    skipped = client.post(
        f"/api/annotate/{campaign_id}/skip", json={"item_id": reply["item"]["item_id"]}
    ).json()
    last = client.post(
        f"/api/annotate/{campaign_id}/submit",
        json={"item_id": skipped["item"]["item_id"], "answer": -1, "submission_id": "x2"},
    ).json()
    assert last["done"] is True and last["completion_code"] == "DONE42"
    bad = client.post(
        f"/api/annotate/{campaign_id}/submit", json={**body, "answer": 9, "submission_id": "x3"}
    )
    assert bad.status_code == 422
    with session_scope() as session:
        worker = session.scalars(select(User).where(User.platform == "prolific")).one()
        assert worker.external_id == "abc"
        assert session.scalar(select(func.count()).select_from(Rating)) == 2
