"""A campaign's plan before it opens: triples matched, items, ratings, the annotators its
quota implies and the time at the median pace of the ratings made here; through the JSON API,
the new-campaign page (htmx panel and the plain form) and ``skd campaign create --dry-run``.
Asking creates nothing, and refuses what creating would refuse."""

from __future__ import annotations

import re
import statistics
from typing import Any

from sqlalchemy import func, select

from app.core.db import session_scope
from app.core.models import Campaign
from app.web.campaign_form import blank_values
from tests.conftest import csrf_of
from tests.test_campaigns import annotator_client, make_triples, standard_corpus
from tests.test_import import run_cli


def _campaigns() -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Campaign)) or 0


def _plan(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    reply = client.post("/api/campaigns/plan", json={"name": "plan", **body})
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_the_api_plans_items_ratings_people_and_time_at_the_pace_of_real_ratings(
    staff_client: Any, app: Any
) -> None:
    ids = standard_corpus()  # 10 xWant/atomic, 10 xNeed/atomic, 5 xWant/gen, 5 xReact/gen
    plan = _plan(staff_client, {"relations": ["xWant"], "sample_size": 12,
                                "ratings_per_item": 3, "quota_per_annotator": 5,
                                "gold_rate": 0.25, "gold_items": {str(ids[0]): 2}})  # fmt: skip
    assert (plan["matched"], plan["items"], plan["ratings"]) == (15, 12, 36)
    assert plan["gold_items"] == 1
    assert plan["served"] == 48  # a quarter of what each annotator sees is gold
    assert plan["annotators"] == 10  # 48 answers, 5 each
    assert plan["pace"] is None and plan["person_hours"] is None
    # A sample larger than the filters select is every selected triple; the overlap sets a
    # floor on the people needed (nobody rates an item twice).
    plan = _plan(staff_client, {"sources": ["gen"], "sample_size": 100, "ratings_per_item": 4,
                                "quota_per_annotator": 50})  # fmt: skip
    assert (plan["items"], plan["ratings"], plan["annotators"]) == (10, 40, 4)
    assert _campaigns() == 0

    # Ratings made here, with the seconds each took, time the next campaign.
    created = staff_client.post(
        "/api/campaigns", json={"name": "first", "ratings_per_item": 1, "sources": ["gen"]}
    )
    assert created.status_code == 201, created.text
    campaign = created.json()
    worker = annotator_client(app, campaign["share_url"].rsplit("/c/", 1)[1], "w1")
    seconds = [2.0, 4.5, 3.0, 40.0, 5.0]
    for n, took in enumerate(seconds):
        item = worker.get(f"/api/annotate/{campaign['id']}/next").json()["item"]
        body = {"item_id": item["item_id"], "answer": 2, "submission_id": f"s{n}", "seconds": took}
        assert worker.post(f"/api/annotate/{campaign['id']}/submit", json=body).status_code == 200
    plan = _plan(staff_client, {"relations": ["xNeed"], "quota_per_annotator": 6})
    median = statistics.median(seconds)  # 4.5: the 40 s answer does not move it
    assert plan["pace"] == {"seconds_per_rating": median, "ratings": 5}
    assert plan["items"] == 10 and plan["served"] == 30
    assert abs(plan["minutes_per_annotator"] - 6 * median / 60) < 1e-9
    assert abs(plan["person_hours"] - 30 * median / 3600) < 1e-9

    refused = staff_client.post("/api/campaigns/plan", json={"name": "x", "relations": ["nope"]})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "relations"]
    refused = staff_client.post("/api/campaigns/plan", json={"name": "x", "gold_fraction": 0.1})
    assert refused.status_code == 422 and "to draw gold from" in refused.text
    assert _campaigns() == 1


def test_the_form_shows_the_plan_in_place_and_without_javascript(staff_client: Any) -> None:
    make_triples([("xWant", "atomic")], 40)
    page = staff_client.get("/campaigns/new").text
    assert 'id="campaign-plan"' in page and 'hx-post="/campaigns/plan"' in page
    form = {"csrf_token": csrf_of(staff_client), "name": "", "purpose": "calibration",
            "sample_size": "30", "ratings_per_item": "3", "lease_minutes": "10",
            "quota_per_annotator": "9", "gold_rate": "0",
            "answer_scale": blank_values()["answer_scale"]}  # fmt: skip
    fragment = staff_client.post("/campaigns/plan", data=form, headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and "<html" not in fragment.text
    facts = dict(re.findall(r"<dt>([^<]+)</dt><dd>([\d,]+)", fragment.text))
    assert facts == {"Triples matched": "40", "Items to rate": "30", "Ratings needed": "90",
                     "Answers in all": "90", "Annotators (places)": "10"}  # fmt: skip
    assert "No ratings here yet" in fragment.text

    plain = staff_client.post("/campaigns/plan", data=form)  # no JavaScript: the whole form
    assert plain.status_code == 200 and "<html" in plain.text
    assert 'name="sample_size" type="number"' in plain.text and 'value="30"' in plain.text
    assert "<dt>Ratings needed</dt><dd>90" in plain.text
    form["ratings_per_item"] = "0"
    refused = staff_client.post("/campaigns/plan", data=form, headers={"HX-Request": "true"})
    assert "Not a campaign yet" in refused.text and "ratings_per_item" in refused.text
    assert staff_client.post("/campaigns/plan", data=form).status_code == 422
    assert _campaigns() == 0


def test_the_cli_dry_run_prints_the_plan_and_creates_nothing(engine: Any, tmp_path: Any) -> None:
    standard_corpus()
    options = ["--source", "atomic", "--sample", "15", "--ratings-per-item", "2", "--quota", "4"]
    done = run_cli("campaign", "create", "x", *options, "--dry-run", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    said = done.stdout
    assert "nothing created" in said and "triples matched  20" in said
    assert "items to rate    15" in said and "ratings needed   30 (2 per item)" in said
    assert "annotators       8 at 4 each" in said and "no ratings here yet" in said
    refused = run_cli("campaign", "create", "x", "--relation", "nope", "--dry-run", cwd=tmp_path)
    assert refused.returncode == 2 and "--relation: not in the corpus: nope" in refused.stderr
    assert _campaigns() == 0
