"""Campaign management: create from the page, the JSON API and the CLI (one code path), the
rules a spec must follow, sampling, gold, pause/resume/close, and the progress numbers."""

from __future__ import annotations

import re
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.annotation.access import admit
from app.annotation.assign import next_item, submit_rating
from app.annotation.campaigns import (
    CampaignSpec,
    CampaignSpecError,
    CampaignStateError,
    create_campaign,
    set_campaign_state,
)
from app.core.db import session_scope
from app.core.models import Campaign, CampaignItem, CampaignState, Rating, Role, Triple, User
from tests.conftest import login, make_staff
from tests.test_import import run_cli

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_triples(rows: list[tuple[str, str]], per_row: int = 1) -> list[int]:
    """``per_row`` triples for each (relation, source); returns their ids in order."""
    with session_scope(write=True) as session:
        triples = [
            Triple(
                head=f"PersonX does {relation} {source} {i}",
                relation=relation,
                tail=f"thing {i}",
                norm_hash=uuid.uuid4().hex,
                source=source,
            )
            for relation, source in rows
            for i in range(per_row)
        ]
        session.add_all(triples)
        session.flush()
        return [t.id for t in triples]


def standard_corpus() -> list[int]:
    """10 xWant/atomic, 10 xNeed/atomic, 5 xWant/gen, 5 xReact/gen."""
    return (
        make_triples([("xWant", "atomic")], 10)
        + make_triples([("xNeed", "atomic")], 10)
        + make_triples([("xWant", "gen")], 5)
        + make_triples([("xReact", "gen")], 5)
    )


def items_of(campaign_id: int) -> list[tuple[int, bool, int | None]]:
    with session_scope() as session:
        return list(
            session.execute(
                select(CampaignItem.triple_id, CampaignItem.is_gold, CampaignItem.gold_answer)
                .where(CampaignItem.campaign_id == campaign_id)
                .order_by(CampaignItem.sort_key)
            ).all()
        )


def new(**kwargs) -> int:  # type: ignore[no-untyped-def]
    with session_scope(write=True) as session:
        return create_campaign(session, CampaignSpec(**{"name": "c", **kwargs})).id


def annotator_client(app, share_token: str, worker: str) -> TestClient:  # type: ignore[no-untyped-def]
    worker_client = TestClient(app)
    entry = worker_client.get(f"/c/{share_token}?PROLIFIC_PID={worker}", follow_redirects=False)
    assert entry.status_code == 303, entry.text
    return worker_client


# --- the page -------------------------------------------------------------------------------


def test_create_from_the_form_then_the_page_shows_link_and_items(staff_client) -> None:  # type: ignore[no-untyped-def]
    standard_corpus()
    form = staff_client.get("/campaigns/new")
    assert form.status_code == 200
    assert 'value="xReact"' in form.text and 'name="csrf_token"' in form.text
    assert "2 | always/often | yes" in form.text  # the default scale, editable
    response = staff_client.post(
        "/campaigns",
        data={
            "name": "Pilot",
            "purpose": "calibration",
            "sample_size": "7",
            "relations": ["xWant", "xNeed"],
            "sources": ["atomic"],
            "seed": "11",
            "ratings_per_item": "2",
            "lease_minutes": "5",
            "guidelines": "# Be careful\nRate *plausibility*.",
            "answer_scale": "1 | yes | yes\n0 | no | no\n-9 | unsure | -",
            "quota_per_annotator": "20",
            "completion_code": "PILOT1",
            "redirect_url": "https://app.prolific.com/submissions/complete?cc=PILOT1",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    page_url = response.headers["location"]
    with session_scope() as session:
        campaign = session.scalars(select(Campaign)).one()
        assert campaign.lease_seconds == 300 and campaign.ratings_per_item == 2
        assert campaign.quota_per_annotator == 20 and campaign.completion_code == "PILOT1"
        assert [o["label"] for o in campaign.answer_scale] == ["yes", "no", "unsure"]
        assert campaign.selection["seed"] == 11
        creator = session.get(User, campaign.created_by_id)
        assert creator is not None and creator.username == "ada"
        share = campaign.share_token
    assert page_url == f"/campaigns/{campaign.id}"
    page = staff_client.get(page_url)
    assert page.status_code == 200
    assert f"http://testserver/c/{share}" in page.text
    assert "PROLIFIC_PID={{%PROLIFIC_PID%}}&amp;STUDY_ID={{%STUDY_ID%}}" in page.text
    assert "workerId=" in page.text and "assignmentId=" in page.text
    assert "7 items" in page.text
    assert "<h1>Be careful</h1>" in page.text and "<em>plausibility</em>" in page.text
    assert f"/campaigns/{campaign.id}/labels.csv" in page.text
    assert "Krippendorff" in page.text
    triples = {t for t, _gold, _answer in items_of(campaign.id)}
    with session_scope() as session:
        chosen = session.execute(
            select(Triple.relation, Triple.source).where(Triple.id.in_(triples))
        ).all()
    assert len(chosen) == 7 and all(s == "atomic" for _r, s in chosen)


def test_form_errors_come_back_next_to_their_fields(staff_client) -> None:  # type: ignore[no-untyped-def]
    standard_corpus()
    response = staff_client.post(
        "/campaigns",
        data={
            "name": "Keep my name",
            "ratings_per_item": "0",
            "lease_minutes": "ten",
            "answer_scale": "2 | good | yes\nbad line\n-1 | poor | maybe",
            "gold_items": "12 x",
            "redirect_url": "ftp://nope",
        },
    )
    assert response.status_code == 422
    html = response.text
    assert 'value="Keep my name"' in html  # what was typed stays
    for field in ("ratings_per_item", "lease_minutes", "answer_scale", "gold_items"):
        assert f'id="err-{field}"' in html, field
    assert 'id="err-redirect_url"' in html
    assert "line 2: write `value | label | acceptable`" in html
    assert "line 3: acceptable must be yes, no or -" in html
    assert "Nothing was created" in html
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Campaign)) == 0


def test_form_without_csrf_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    make_staff()
    login(client)
    assert client.post("/campaigns", data={"name": "x"}).status_code == 403


def test_pages_are_for_staff_only(client, app) -> None:  # type: ignore[no-untyped-def]
    standard_corpus()
    campaign_id = new()
    for path in ("/campaigns", "/campaigns/new", f"/campaigns/{campaign_id}"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/login")
    with session_scope() as session:
        share = session.get(Campaign, campaign_id).share_token
    worker = annotator_client(app, share, "w-nosy")
    for path in ("/campaigns", "/campaigns/new", f"/campaigns/{campaign_id}", "/api/campaigns"):
        assert worker.get(path, follow_redirects=False).status_code == 403, path


def test_nav_links_to_campaigns_and_guidelines_preview(staff_client) -> None:  # type: ignore[no-untyped-def]
    assert 'href="/campaigns"' in staff_client.get("/").text
    preview = staff_client.post(
        "/campaigns/guidelines-preview", data={"guidelines": "**bold** <script>x</script>"}
    )
    assert "<strong>bold</strong>" in preview.text and "<script>" not in preview.text


# --- the JSON API ---------------------------------------------------------------------------


def test_api_create_get_and_list(staff_client) -> None:  # type: ignore[no-untyped-def]
    ids = standard_corpus()
    body = {
        "name": "API",
        "purpose": "training",
        "relations": ["xReact"],
        "ratings_per_item": 1,
        "gold_items": {str(ids[0]): 2},
        "gold_rate": 0.2,
        "answer_scale": [
            {"value": 1, "label": "fine", "acceptable": True},
            {"value": -1, "label": "wrong", "acceptable": False},
            {"value": 2, "label": "great", "acceptable": True},
        ],
    }
    response = staff_client.post("/api/campaigns", json=body)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["purpose"] == "training" and created["state"] == "open"
    assert created["progress"]["items"] == 5 and created["progress"]["gold_items"] == 1
    assert created["progress"]["ratings_needed"] == 5 and created["progress"]["fraction"] == 0
    assert created["share_url"].startswith("http://testserver/c/")
    assert [o["key"] for o in created["answer_scale"]] == ["1", "2", "3"]
    assert isinstance(created["selection"]["seed"], int)  # a fresh seed, recorded
    fetched = staff_client.get(f"/api/campaigns/{created['id']}").json()
    assert fetched["name"] == "API" and fetched["share_url"] == created["share_url"]
    listed = staff_client.get("/api/campaigns").json()
    assert [c["id"] for c in listed] == [created["id"]]
    assert staff_client.get("/api/campaigns/999999").status_code == 404


@pytest.mark.parametrize(
    "change,field,words",
    [
        ({"ratings_per_item": 0}, "ratings_per_item", "between 1 and"),
        ({"relations": ["xWant", "NoSuchRelation"]}, "relations", "NoSuchRelation"),
        ({"relations": ["xReact"], "sources": ["atomic"]}, "filters", "select no triples"),
        ({"answer_scale": "2 | good | yes\nx | bad | no"}, "answer_scale", "line 2"),
        ({"answer_scale": "2 | good | yes\n1 | ok | yes"}, "answer_scale", "not-acceptable"),
        ({"gold_rate": 0.1}, "gold_rate", "no gold items"),
        ({"gold_items": {"999999": 2}}, "gold_items", "no triple with id 999999"),
        ({"gold_items": {"1": 7}}, "gold_items", "not a judgement"),
        ({"sample_size": 0}, "sample_size", "at least 1"),
        ({"redirect_url": "javascript:alert(1)"}, "redirect_url", "https://"),
        ({"name": "  "}, "name", "name"),
        ({"ratings_per_item": "three"}, "ratings_per_item", "integer"),
        ({"colour": "blue"}, "colour", "xtra"),
        ({"min_gold_accuracy": 1.5}, "min_gold_accuracy", "between 0 and 1"),
        ({"speeder_seconds": -1}, "speeder_seconds", "between 0 and 3600"),
    ],
)
def test_api_refuses_bad_input_naming_the_field(staff_client, change, field, words) -> None:  # type: ignore[no-untyped-def]
    standard_corpus()
    response = staff_client.post("/api/campaigns", json={"name": "bad", **change})
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    named = {str(entry["loc"][1]): entry["msg"] for entry in detail}
    assert field in named, detail
    assert words.lower() in named[field].lower(), detail
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Campaign)) == 0


def test_api_without_csrf_is_refused(client) -> None:  # type: ignore[no-untyped-def]
    make_staff()
    login(client)
    assert client.post("/api/campaigns", json={"name": "x"}).status_code == 403


# --- the CLI --------------------------------------------------------------------------------


def test_cli_create_list_and_state_changes(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ids = standard_corpus()
    guidelines = tmp_path / "guide.md"
    guidelines.write_text("# Read me\nBe quick but careful.\n")
    scale = tmp_path / "scale.txt"
    scale.write_text("# a binary scale\n1 | makes sense | yes\n-1 | nonsense | no\n")
    result = run_cli(
        "campaign",
        "create",
        "From the terminal",
        "--sample",
        "4",
        "--relation",
        "xWant",
        "--relation",
        "xReact",
        "--source",
        "gen",
        "--ratings-per-item",
        "2",
        "--lease-minutes",
        "3",
        "--guidelines",
        str(guidelines),
        "--quota",
        "9",
        "--completion-code",
        "CLI99",
        "--seed",
        "5",
        "--gold",
        f"{ids[0]}=-1",
        "--gold-rate",
        "0.25",
        "--scale",
        str(scale),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    with session_scope() as session:
        campaign = session.scalars(select(Campaign)).one()
    assert re.search(
        rf"share link: https?://\S+/c/{re.escape(campaign.share_token)}", result.stdout
    )
    assert "4 items + 1 gold" in result.stdout and "seed 5" in result.stdout
    assert [o["label"] for o in campaign.answer_scale] == ["makes sense", "nonsense"]
    assert [(t, a) for t, g, a in items_of(campaign.id) if g] == [(ids[0], -1)]
    assert campaign.guidelines.startswith("# Read me") and campaign.lease_seconds == 180
    assert campaign.selection["relations"] == ["xWant", "xReact"]
    assert campaign.completion_code == "CLI99" and campaign.quota_per_annotator == 9

    listing = run_cli("campaign", "list", cwd=tmp_path)
    assert listing.returncode == 0 and "From the terminal" in listing.stdout
    assert "0/8 (0%)" in listing.stdout

    assert run_cli("campaign", "pause", str(campaign.id), cwd=tmp_path).returncode == 0
    assert state_of(campaign.id) == CampaignState.paused
    assert run_cli("campaign", "resume", str(campaign.id), cwd=tmp_path).returncode == 0
    assert state_of(campaign.id) == CampaignState.open
    assert run_cli("campaign", "close", str(campaign.id), cwd=tmp_path).returncode == 0
    reopen = run_cli("campaign", "resume", str(campaign.id), cwd=tmp_path)
    assert reopen.returncode == 1 and "cannot be reopened" in reopen.stderr + reopen.stdout
    assert state_of(campaign.id) == CampaignState.closed


def test_cli_reports_bad_options_by_their_names(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    standard_corpus()
    result = run_cli(
        "campaign", "create", "x", "--relation", "Nope", "--ratings-per-item", "0", cwd=tmp_path
    )
    assert result.returncode == 2
    output = result.stdout + result.stderr
    assert "--relation: not in the corpus: Nope" in output
    assert "--ratings-per-item: must be between 1 and" in output
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Campaign)) == 0


def state_of(campaign_id: int) -> CampaignState:
    with session_scope() as session:
        campaign = session.get(Campaign, campaign_id)
        assert campaign is not None
        return campaign.state


# --- sampling and gold ----------------------------------------------------------------------


def test_sampling_honours_filters_sample_size_and_seed(engine) -> None:  # type: ignore[no-untyped-def]
    standard_corpus()
    spec = {"relations": ["xWant"], "sources": ["atomic", "gen"], "sample_size": 8}
    first = items_of(new(seed=42, **spec))
    again = items_of(new(seed=42, **spec))
    other = items_of(new(seed=43, **spec))
    assert len(first) == 8 and first == again  # same seed: same items in the same order
    assert {t for t, *_ in other} != {t for t, *_ in first} or other != first
    with session_scope() as session:
        relations = set(
            session.scalars(
                select(Triple.relation).where(Triple.id.in_([t for t, *_ in first])).distinct()
            )
        )
    assert relations == {"xWant"}
    everything = items_of(new(relations=["xNeed"], sample_size=None))
    assert len(everything) == 10
    bigger_than_pool = items_of(new(sources=["gen"], sample_size=50))
    assert len(bigger_than_pool) == 10


def test_explicit_gold_items_with_answers(engine) -> None:  # type: ignore[no-untyped-def]
    ids = standard_corpus()
    gold = {ids[0]: 2, ids[25]: -2}
    campaign_id = new(relations=["xWant"], sources=["atomic"], gold_items=gold, gold_rate=0.5)
    items = items_of(campaign_id)
    gold_rows = {t: answer for t, is_gold, answer in items if is_gold}
    assert gold_rows == gold
    plain = [t for t, is_gold, _ in items if not is_gold]
    assert len(plain) == 9 and ids[0] not in plain  # a gold triple is not also a normal item
    with session_scope() as session:
        assert session.get(Campaign, campaign_id).selection["gold_items"] == 2


def test_gold_fraction_needs_known_answers(engine) -> None:  # type: ignore[no-untyped-def]
    ids = standard_corpus()
    with pytest.raises(CampaignSpecError) as error:
        new(gold_fraction=0.1)
    assert "gold_fraction" in error.value.errors
    with session_scope(write=True) as session:
        session.add(
            Rating(triple_id=ids[3], answer=-1, submission_id="import:3", origin="imported")
        )
    items = items_of(new(gold_fraction=0.1, relations=["xNeed"]))
    assert [(t, a) for t, g, a in items if g] == [(ids[3], -1)]


# --- state changes --------------------------------------------------------------------------


def test_pause_resume_and_close_reach_the_annotators(staff_client, app) -> None:  # type: ignore[no-untyped-def]
    standard_corpus()
    created = staff_client.post("/api/campaigns", json={"name": "Live", "ratings_per_item": 1})
    campaign_id, share = created.json()["id"], created.json()["share_url"].rsplit("/", 1)[1]
    worker = annotator_client(app, share, "w-state")
    assert worker.get(f"/api/annotate/{campaign_id}/next").status_code == 200
    sideways = staff_client.post(f"/campaigns/{campaign_id}/state", data={"state": "sideways"})
    assert sideways.status_code == 422

    paused = staff_client.post(
        f"/campaigns/{campaign_id}/state", data={"state": "paused"}, follow_redirects=False
    )
    assert paused.status_code == 303 and paused.headers["location"] == f"/campaigns/{campaign_id}"
    assert worker.get(f"/api/annotate/{campaign_id}/next").status_code == 409

    # htmx swaps the header in place: the fragment carries the new state and the next button.
    resumed = staff_client.post(
        f"/campaigns/{campaign_id}/state", data={"state": "open"}, headers={"HX-Request": "true"}
    )
    assert resumed.status_code == 200 and 'id="campaign-head"' in resumed.text
    assert "badge-open" in resumed.text and 'value="paused"' in resumed.text
    assert "<html" not in resumed.text
    assert worker.get(f"/api/annotate/{campaign_id}/next").status_code == 200

    closed = staff_client.post(f"/campaigns/{campaign_id}/state", data={"state": "closed"})
    assert closed.status_code == 200 and "cannot be reopened" in closed.text  # page after redirect
    assert worker.get(f"/api/annotate/{campaign_id}/next").status_code == 409
    reopen = staff_client.post(f"/campaigns/{campaign_id}/state", data={"state": "open"})
    assert reopen.status_code == 409
    assert (
        staff_client.post(
            f"/api/campaigns/{campaign_id}/state", json={"state": "paused"}
        ).status_code
        == 409
    )
    assert state_of(campaign_id) == CampaignState.closed
    assert staff_client.post("/campaigns/999999/state", data={"state": "paused"}).status_code == 404


def test_set_campaign_state_refuses_reopening(engine) -> None:  # type: ignore[no-untyped-def]
    standard_corpus()
    campaign_id = new()
    with session_scope(write=True) as session:
        assert set_campaign_state(session, campaign_id, "paused").state == CampaignState.paused
        closed = set_campaign_state(session, campaign_id, CampaignState.closed)
        assert closed.closed_at is not None
    with session_scope(write=True) as session, pytest.raises(CampaignStateError):
        set_campaign_state(session, campaign_id, "open")
    with session_scope(write=True) as session, pytest.raises(LookupError):
        set_campaign_state(session, 999_999, "open")


# --- the list page --------------------------------------------------------------------------


def test_list_page_shows_progress_pace_and_people(staff_client) -> None:  # type: ignore[no-untyped-def]
    ids = standard_corpus()
    campaign_id = new(name="Counted", relations=["xReact"], ratings_per_item=2)  # 5 items
    new(name="Untouched", relations=["xNeed"], gold_items={ids[0]: 2}, gold_rate=0.1)
    with session_scope(write=True) as session:
        people = [
            User(role=Role.annotator, platform="prolific", external_id=f"p{i}") for i in (1, 2)
        ]
        session.add_all(people)
        session.flush()
        a, b = (p.id for p in people)
    for annotator, count in ((a, 2), (b, 1)):
        for n in range(count):
            with session_scope(write=True) as session:
                admit(session, campaign_id, annotator, "link")  # entered by its link
                item = next_item(session, campaign_id, annotator)
                assert item is not None
                submit_rating(session, campaign_id, annotator, item.item_id, 2, f"{annotator}-{n}")
    page = staff_client.get("/campaigns")
    assert page.status_code == 200 and 'href="/campaigns/new"' in page.text
    row = page.text.split(f'id="campaign-{campaign_id}"')[1].split("</tr>")[0]
    assert '<span class="n-done">3</span> / <span class="n-needed">10</span> ratings · 30%' in row
    assert 'class="n rate" data-label="Ratings/hour">3<' in row
    assert 'class="n annotators" data-label="Annotators">2<' in row
    assert "badge-open" in row and "calibration" in row
    listed = {c["name"]: c["progress"] for c in staff_client.get("/api/campaigns").json()}
    assert listed["Counted"] == {
        "items": 5,
        "gold_items": 0,
        "ratings_done": 3,
        "ratings_needed": 10,
        "gold_ratings": 0,
        "ratings_last_hour": 3,
        "annotators": 2,
        "fraction": 0.3,
    }
    assert listed["Untouched"]["items"] == 10 and listed["Untouched"]["gold_items"] == 1
    detail = staff_client.get(f"/campaigns/{campaign_id}").text
    assert "p1" in detail or "prolific" in detail  # the annotator table lists the raters


def test_quality_thresholds_are_campaign_settings(staff_client) -> None:  # type: ignore[no-untyped-def]
    standard_corpus()
    body = {"name": "Strict", "min_gold_accuracy": 0.9, "speeder_seconds": 4.5}
    created = staff_client.post("/api/campaigns", json=body).json()
    assert (created["min_gold_accuracy"], created["speeder_seconds"]) == (0.9, 4.5)
    page = staff_client.get(f"/campaigns/{created['id']}").text
    assert "gold accuracy &lt; 0.9" in page and "median &lt; 4.5 s/item" in page
