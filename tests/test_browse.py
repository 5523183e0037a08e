"""The corpus browser and a campaign's items: filters, keyset pages, scores, labels, gold picks."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import select

from app.annotation.campaigns import CampaignSpec, create_campaign
from app.core.db import session_scope
from app.core.models import (
    CampaignItem,
    CriticState,
    CriticVersion,
    Rating,
    RatingOrigin,
    Role,
    Score,
    User,
)
from tests.conftest import add_triples


def _all_pages(client, query: str, limit: int = 7) -> list[int]:  # type: ignore[no-untyped-def]
    seen: list[int] = []
    after = None
    while True:
        url = f"/api/corpus/triples?{query}&limit={limit}" + (f"&after={after}" if after else "")
        body = client.get(url).json()
        seen += [row["id"] for row in body["rows"]]
        after = body["next_cursor"]
        if after is None:
            return seen


def _scored(ids: list[int]) -> int:
    with session_scope(write=True) as session:
        version = CriticVersion(base_model="m", state=CriticState.active)
        session.add(version)
        session.flush()
        for rank, triple_id in enumerate(ids):
            # scores repeat (ties on the score), so the (score, id) cursor must break them
            session.add(
                Score(critic_version_id=version.id, triple_id=triple_id, p_accept=(rank % 5) / 5)
            )
        return version.id


def test_pages_walk_every_triple_once_in_each_order(staff_client) -> None:  # type: ignore[no-untyped-def]
    ids = add_triples(23, source="gpt3") + add_triples(
        9, head="X eats {i}", relation="xNeed", source="human"
    )
    _scored(ids)
    assert _all_pages(staff_client, "sort=id") == sorted(ids)
    assert _all_pages(staff_client, "sort=-id") == sorted(ids, reverse=True)
    by_score = _all_pages(staff_client, "sort=score", limit=4)
    assert sorted(by_score) == sorted(ids) and len(by_score) == len(ids)
    scores = {
        row["id"]: row["score"]
        for row in staff_client.get("/api/corpus/triples?limit=500").json()["rows"]
    }
    assert [scores[i] for i in by_score] == sorted(scores[i] for i in by_score)
    high = _all_pages(staff_client, "sort=-score&score_min=0.6", limit=3)
    assert high and all(scores[i] >= 0.6 for i in high)
    assert len(high) == sum(1 for i in ids if scores[i] >= 0.6)
    assert _all_pages(staff_client, "relation=xNeed") == sorted(ids[23:])
    assert _all_pages(staff_client, "source=gpt3&q=thing 1") == sorted(
        i for n, i in enumerate(ids[:23]) if f"thing {n}".startswith("thing 1")
    )


def test_label_and_campaign_filters_and_the_row_details(staff_client) -> None:  # type: ignore[no-untyped-def]
    ids = add_triples(6)
    with session_scope(write=True) as session:
        for triple_id, answer in ((ids[0], 2), (ids[1], -2)):
            session.add(
                Rating(
                    triple_id=triple_id,
                    answer=answer,
                    origin=RatingOrigin.imported,
                    submission_id=uuid.uuid4().hex,
                )
            )
        campaign = create_campaign(
            session, CampaignSpec(name="c", ratings_per_item=1, sample_size=2, seed=3)
        )
        in_campaign = set(session.scalars(select(CampaignItem.triple_id)))
        campaign_id = campaign.id
    api = "/api/corpus/triples?limit=50"
    assert [r["id"] for r in staff_client.get(api + "&label=accepted").json()["rows"]] == [ids[0]]
    assert [r["id"] for r in staff_client.get(api + "&label=rejected").json()["rows"]] == [ids[1]]
    assert [r["id"] for r in staff_client.get(api + "&label=none").json()["rows"]] == ids[2:]
    assert {r["id"] for r in staff_client.get(api + "&campaign=in").json()["rows"]} == in_campaign
    assert {
        r["id"] for r in staff_client.get(api + f"&campaign_id={campaign_id}").json()["rows"]
    } == in_campaign
    assert {r["id"] for r in staff_client.get(api + "&campaign=out").json()["rows"]} == set(
        ids
    ) - in_campaign
    row = staff_client.get(api).json()["rows"][0]
    assert (row["accept"], row["reject"], row["imported"], row["label"]) == (1, 0, 1, True)
    assert row["source"] == "t"
    bad = staff_client.get(api + "&score_min=2")
    assert bad.status_code == 422 and "score_min" in bad.json()["detail"]
    assert staff_client.get(api + "&after=nonsense").status_code == 422
    page = staff_client.get("/corpus/browse?label=accepted")
    assert page.status_code == 200 and f'id="triple-{ids[0]}"' in page.text
    assert f'id="triple-{ids[1]}"' not in page.text


def test_campaign_items_show_ratings_and_label_and_pick_gold(staff_client) -> None:  # type: ignore[no-untyped-def]
    ids = add_triples(3)
    with session_scope(write=True) as session:
        campaign_id = create_campaign(session, CampaignSpec(name="items", ratings_per_item=2)).id
        workers = [
            User(role=Role.annotator, platform="prolific", external_id=f"w{i}") for i in range(2)
        ]
        session.add_all(workers)
        session.flush()
        worker_ids = [w.id for w in workers]
    with session_scope(write=True) as session:
        item = session.scalars(
            select(CampaignItem).where(CampaignItem.campaign_id == campaign_id).limit(1)
        ).one()
        for worker_id, answer in zip(worker_ids, (2, 1), strict=True):
            session.add(
                Rating(
                    triple_id=item.triple_id,
                    item_id=item.id,
                    annotator_id=worker_id,
                    answer=answer,
                    submission_id=uuid.uuid4().hex,
                )
            )
        item.ratings_done = 2
    body = staff_client.get(f"/api/campaigns/{campaign_id}/items?rated=yes").json()
    assert len(body["rows"]) == 1
    rated = body["rows"][0]
    assert rated["label"] is True and (rated["accept"], rated["reject"]) == (2, 0)
    assert [r["answer_label"] for r in rated["ratings"]] == ["always/often", "sometimes/likely"]
    page = staff_client.get(f"/campaigns/{campaign_id}/items")
    assert page.status_code == 200 and "prolific:w0: always/often" in page.text
    assert page.text.count('name="gold"') == 3
    # the gold picks are a GET to the campaign form, which fills its gold list with them
    form = staff_client.get(f"/campaigns/new?gold={ids[0]}+2&gold=&gold={ids[2]}+-2")
    gold_box = re.search(r'<textarea name="gold_items"[^>]*>([^<]*)</textarea>', form.text)
    assert gold_box is not None and gold_box.group(1).split("\n") == [f"{ids[0]} 2", f"{ids[2]} -2"]
    assert staff_client.get("/api/campaigns/999999/items").status_code == 404
