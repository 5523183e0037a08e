"""Honest numbers: a thin calibration estimate is no headline (page, export preview, CLI,
card), a critic no better than chance needs a confirmation to export with, the histogram
spreads over the scores' own range, and the PR curve offers its points as thresholds."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import select, update

from app.core.db import session_scope
from app.core.models import CriticVersion, Score
from tests.conftest import login, make_staff
from tests.test_export import build_corpus, export
from tests.test_export_web import skd

TOO_FEW = re.compile(r"too few calibration labels \(n = (\d+)\): 95% interval [\d.]+%–[\d.]+%")


def _staff(client) -> None:  # type: ignore[no-untyped-def]
    make_staff()
    client.headers["X-CSRF-Token"] = login(client)


def test_one_calibration_label_is_no_headline_anywhere(engine, client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    corpus = build_corpus(heads=40, calibration=1)
    _staff(client)
    page = client.get(f"/critic/preview?version={corpus.version_id}&rule=score&value=0").text
    assert TOO_FEW.search(page) and TOO_FEW.search(page).group(1) == "1"
    assert 'id="preview-precision">–<' in page  # no point estimate shown
    preview = client.post(
        "/exports/preview", data={"rule": "threshold", "value": "0", "formats": "jsonl"}
    ).text
    assert TOO_FEW.search(preview), preview
    dry = skd("export", "--dry-run", "--threshold", "0")
    assert dry.returncode == 0, dry.stderr
    assert "too few calibration labels (n = 1)" in dry.stdout
    card = (export({"threshold": 0.0}, tmp_path / "thin") / "README.md").read_text()
    assert "too few calibration labels (n = 1)" in card.lower()
    assert "Estimated precision of the kept triples: **" not in card


def test_many_calibration_labels_still_give_the_figure(engine, client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    build_corpus(heads=60, calibration=80)
    _staff(client)
    preview = client.post(
        "/exports/preview", data={"rule": "threshold", "value": "0", "formats": "jsonl"}
    ).text
    assert not TOO_FEW.search(preview) and "est. precision, 95%" in preview


def test_a_critic_no_better_than_chance_needs_confirmation(engine, client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    corpus = build_corpus(heads=30)
    with session_scope(write=True) as session:
        version = session.get(CriticVersion, corpus.version_id)
        version.metrics = {**version.metrics, "roc_auc": 0.49}
    _staff(client)
    refused = client.post("/api/exports", json={"threshold": 0.5})
    assert refused.status_code == 422
    message = refused.json()["detail"][0]
    assert message["loc"][-1] == "version" and "no better than chance" in message["msg"]
    form = client.get("/exports").text
    assert 'class="weak-critic"' in form and "no better than chance" in form
    critic_page = client.get("/critic").text
    assert "badge-weak" in critic_page
    cli = skd("export", "--threshold", "0.5", "--out", str(tmp_path / "weak"))
    assert cli.returncode == 2 and "--force" in cli.stdout + cli.stderr
    assert not (tmp_path / "weak").exists()
    forced = skd("export", "--threshold", "0.5", "--force", "--out", str(tmp_path / "forced"))
    assert forced.returncode == 0, forced.stdout + forced.stderr
    accepted = client.post("/api/exports", json={"threshold": 0.5, "confirm_weak_critic": True})
    assert accepted.status_code == 202, accepted.text


def test_histogram_spreads_over_the_scores_and_pr_points_are_thresholds(engine, client) -> None:  # type: ignore[no-untyped-def]
    corpus = build_corpus(heads=40)
    with session_scope(write=True) as session:
        ids = session.scalars(
            select(Score.triple_id).where(Score.critic_version_id == corpus.version_id)
        ).all()
        for rank, triple_id in enumerate(ids):  # everything between 0.52 and 0.60
            session.execute(
                update(Score)
                .where(Score.critic_version_id == corpus.version_id, Score.triple_id == triple_id)
                .values(p_accept=0.52 + 0.08 * rank / max(1, len(ids) - 1))
            )
        session.get(CriticVersion, corpus.version_id).threshold = 0.5
    _staff(client)
    page = client.get(f"/critic?version={corpus.version_id}").text
    histogram = page.split('class="plot-svg histogram"', 1)[1].split("</svg>", 1)[0]
    labels = re.findall(r'text-anchor="middle">([\d.]+)</text>', histogram)
    assert labels[0] == "0.52" and labels[-1] == "0.6", labels
    heights = [float(h) for h in re.findall(r'<rect[^>]*height="([\d.]+)"', histogram)]
    assert sum(1 for h in heights if h > 0) >= 15  # not two bars
    assert "threshold 0.500 (below every score)" in histogram
    picks = re.findall(r'class="pr-pick"[^>]*data-threshold="([\d.]+)"', page)
    assert len(picks) >= 5
    chosen = float(picks[2])
    preview = client.get(
        f"/critic/preview?version={corpus.version_id}&rule=score&value={chosen}"
    ).text
    assert f"{chosen:.4f}" in preview
