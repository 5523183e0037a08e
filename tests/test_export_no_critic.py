"""Exporting with no critic: everything in the filters, or what human labels alone keep, with
no critic version at all or beside an active one; the card says so; rules that need a score
are refused. Through the code, ``skd export --no-critic`` (a subprocess), the JSON API and the
page's form. Runs on SQLite and PostgreSQL (SKD_TEST_BACKEND)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import delete, func, select

from app.core.db import session_scope
from app.core.models import CriticVersion, Export, Job, Score
from app.export import ExportParamError, ExportParams, preview_export
from tests.accessibility import assert_accessible
from tests.test_browser import browser, live_server, signed_in_page  # noqa: F401 (fixtures)
from tests.test_export import Corpus, build_corpus, export, rows_of
from tests.test_export_web import counts, skd, wait_for_export

NO_CRITIC_RULES = ("override", "drop-rejected", "ignore", "accepted-only")


def without_critic(corpus: Corpus, rule: str = "override") -> set[tuple[str, str, str]]:
    """What an export with no critic keeps, from the documented rules (scores play no part)."""
    keep = {
        "override": lambda label: label is not False,
        "drop-rejected": lambda label: label is not False,
        "ignore": lambda label: True,
        "accepted-only": lambda label: label is True,
    }[rule]
    return {(h, r, t) for h, r, t, _src, _s, label in corpus.rows.values() if keep(label)}


def no_critic_at_all(heads: int = 40, calibration: int = 0) -> Corpus:
    """The test corpus (triples, human labels) with no critic version and no score."""
    corpus = build_corpus(heads=heads, calibration=calibration)
    with session_scope(write=True) as session:
        session.execute(delete(Score))
        session.execute(delete(CriticVersion))
    return corpus


def test_every_human_label_rule_without_any_critic(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    corpus = no_critic_at_all()
    for rule in NO_CRITIC_RULES:
        folder = export(
            {"critic": "none", "human_labels": rule, "formats": ["jsonl", "parquet"]},
            tmp_path / rule,
        )
        records = [r for rs in rows_of(folder).values() for r in rs]
        assert {(r["head"], r["relation"], r["tail"]) for r in records} == without_critic(
            corpus, rule
        )
        # The ATOMIC-10X columns are all there, with no score and no rec_X flag.
        assert all(r["p_valid_model"] is None for r in records)
        assert all(r[f"rec_{x}"] is None for r in records for x in ("0.5", "0.8", "0.9"))
        assert rows_of(folder, "parquet") == rows_of(folder, "jsonl")
        assert "rec_0.8" in pq.read_table(folder / "parquet" / "train.parquet").schema.names
    # All but the rejected is less than everything, and the accepted alone less still.
    assert (
        without_critic(corpus, "accepted-only")
        < without_critic(corpus)
        < without_critic(corpus, "ignore")
    )


def test_no_critic_ignores_an_active_critic_and_says_so(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    corpus = build_corpus(heads=60, calibration=40)
    plan = preview_export(ExportParams.from_dict({"version": "none"}))  # the page's choice
    assert plan.version is None and plan.threshold is None and plan.threshold_rule == "none"
    assert plan.counts.kept == len(without_critic(corpus))
    assert plan.counts.candidates == len(corpus.rows)
    folder = export({"critic": "none", "seed": 3}, tmp_path / "graph")
    records = {(r["head"], r["relation"], r["tail"]) for rs in rows_of(folder).values() for r in rs}
    assert records == without_critic(corpus)
    # Triples the critic scores low, or never scored, are in: no critic filtered them.
    assert any(
        s is not None and s < 0.1
        for h, r, t, _x, s, _l in corpus.rows.values()
        if (h, r, t) in records
    )
    assert any(s is None for h, r, t, _x, s, _l in corpus.rows.values() if (h, r, t) in records)

    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "**No critic filtered this export.**" in card
    assert "There is no critic estimate: no critic filtered this export." in card
    assert f"**{len(records):,} triples**" in card
    assert "held-out ROC-AUC" not in card and "critic version" not in card.split("## Human")[0]
    assert 'pretty_name: "SKD Studio knowledge graph (no critic filter)"' in card
    # The calibration labels still measure what was kept (a uniform sample needs no score).
    sample = list(corpus.calibration.values())
    assert f"of the {len(sample):,} triples of calibration campaigns" in card
    assert "skd export --no-critic --human-labels override" in card
    params = json.loads((folder / "params.json").read_text())
    assert params["critic"] == "none" and params["version"] is None
    with tarfile.open(folder.with_name("graph.tar.gz")) as tar:
        assert tar.getnames()[0].startswith("skd-kg-nocritic-")
    with session_scope() as session:
        record = session.scalar(select(Export).where(Export.path == str(folder)))
        assert record.critic_version_id is None and record.threshold is None


def test_rules_that_need_a_score_are_refused_without_a_critic(engine) -> None:  # type: ignore[no-untyped-def]
    build_corpus(heads=20)
    before = counts()
    for name, value in (
        ("threshold", 0.5),
        ("target_precision", 0.9),
        ("target_recall", 0.8),
        ("kept_fraction", 0.5),
    ):
        with pytest.raises(ExportParamError) as caught:
            ExportParams.from_dict({"critic": "none", name: value})
        assert "needs a critic's score" in caught.value.errors[name]
    with pytest.raises(ExportParamError) as caught:
        ExportParams.from_dict({"critic": "none", "version": 1})
    assert "no critic is chosen" in caught.value.errors["version"]
    with pytest.raises(ExportParamError) as caught:
        ExportParams.from_dict({"critic": "maybe"})
    assert "not one of version, none" in caught.value.errors["critic"]
    assert counts() == before


def test_accepted_only_with_no_accepted_triple_is_refused(engine) -> None:  # type: ignore[no-untyped-def]
    corpus = no_critic_at_all(heads=10)
    with session_scope(write=True) as session:  # no human label left
        from app.core.models import Rating

        session.execute(delete(Rating))
    with pytest.raises(ExportParamError) as caught:
        preview_export(ExportParams.from_dict({"critic": "none", "human_labels": "accepted-only"}))
    message = caught.value.errors["result"]
    assert f"none of the {len(corpus.rows):,} triples" in message and "accepted" in message


def test_cli_no_critic_on_a_database_without_any_critic(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    corpus = no_critic_at_all(heads=30)
    refused = skd("export", "--dry-run")
    assert refused.returncode == 2 and "no critic version is active" in refused.stderr
    assert "--no-critic" in " ".join(refused.stderr.split())
    score = skd("export", "--no-critic", "--threshold", "0.5", "--kept-fraction", "0.2")
    assert score.returncode == 2
    words = " ".join(score.stderr.split())
    assert "--threshold: needs a critic's score" in words
    assert "--kept-fraction: needs a critic's score" in words
    assert counts() == (0, 0)
    dry = skd("export", "--no-critic", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "no critic filtered this export" in " ".join(dry.stdout.split())
    out = tmp_path / "people"
    done = skd(
        "export", "--no-critic", "--human-labels", "accepted-only", "--format", "jsonl",
        "--out", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no critic filtered this export" in " ".join(done.stdout.split())
    records = {(r["head"], r["relation"], r["tail"]) for rs in rows_of(out).values() for r in rs}
    assert records == without_critic(corpus, "accepted-only")
    assert "No critic filtered this export" in (out / "README.md").read_text(encoding="utf-8")
    # The card's command from params.json gives the same bytes again.
    again = skd("export", "--params", str(out / "params.json"), "--out", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.tar.gz").read_bytes() == (tmp_path / "people.tar.gz").read_bytes()
    listed = skd("export", "list")
    assert listed.returncode == 0 and "no critic" in listed.stdout


def test_api_and_form_export_without_a_critic(staff_client, celery_worker) -> None:  # type: ignore[no-untyped-def]
    corpus = no_critic_at_all(heads=30)
    # The API: "version": null with "critic": "none"; a score rule is a 422 naming it.
    for url in ("/api/exports", "/api/exports/preview"):
        bad = staff_client.post(url, json={"version": None, "critic": "none", "threshold": 0.5})
        assert bad.status_code == 422, bad.text
        detail = bad.json()["detail"][0]
        assert detail["loc"] == ["body", "threshold"] and "needs a critic's score" in detail["msg"]
    plain = staff_client.post("/api/exports/preview", json={})
    assert plain.status_code == 422 and "no critic version is active" in plain.text
    preview = staff_client.post("/api/exports/preview", json={"version": None, "critic": "none"})
    assert preview.status_code == 200, preview.text
    plan = preview.json()
    assert plan["version"] is None and plan["threshold"] is None
    assert plan["counts"]["kept"] == len(without_critic(corpus))
    started = staff_client.post("/api/exports", json={"critic": "none", "formats": ["jsonl"]})
    assert started.status_code == 202, started.text
    export_id = started.json()["export_id"]
    done = wait_for_export(staff_client, export_id)
    assert done["state"] == "succeeded", done
    assert done["no_critic"] and done["critic_version_id"] is None
    assert done["counts"]["total"] == len(without_critic(corpus))
    card = staff_client.get(f"/api/exports/{export_id}/files/README.md").text
    assert "No critic filtered this export" in card

    # The page: "no critic" in the version selector; the list says "no critic".
    page = staff_client.get("/exports").text
    assert '<option value="none"' in page
    assert f'id="export-{export_id}"' in page
    row = page.split(f'id="export-{export_id}"', 1)[1].split("</tr>", 1)[0]
    assert "no critic" in row and "vNone" not in row
    form = {
        "version": "none",
        "rule": "default",
        "value": "",
        "human_labels": "drop-rejected",
        "split_train": "0.8",
        "split_val": "0.1",
        "split_test": "0.1",
        "seed": "0",
        "formats": ["jsonl"],
    }
    htmx = {"HX-Request": "true"}
    shown = staff_client.post("/exports/preview", data=form, headers=htmx)
    assert shown.status_code == 200 and 'id="export-no-critic"' in shown.text
    assert f"{len(without_critic(corpus, 'drop-rejected')):,}" in shown.text
    refused = staff_client.post(
        "/exports/preview", data=form | {"rule": "threshold", "value": "0.5"}, headers=htmx
    )
    assert 'href="#field-value"' in refused.text and "needs a critic&#39;s score" in refused.text
    before = counts()
    posted = staff_client.post("/exports", data=form, follow_redirects=False)
    assert posted.status_code == 303, posted.text
    new_id = int(posted.headers["location"].rsplit("/", 1)[1])
    assert counts() == (before[0] + 1, before[1] + 1)
    assert wait_for_export(staff_client, new_id)["state"] == "succeeded"
    detail = staff_client.get(f"/exports/{new_id}").text
    assert "threshold (no critic)" in detail and "No critic filtered this export" in detail
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == before[1] + 1


@pytest.mark.one_backend  # the page in the browser: the same on any database
def test_browser_no_critic_choice_previews_exports_and_lists(  # type: ignore[no-untyped-def]
    live_server,  # noqa: F811
    browser,  # noqa: F811
    celery_worker,
) -> None:
    from tests.conftest import BACKEND, OUTPUT, make_staff

    OUTPUT.mkdir(exist_ok=True)
    corpus = no_critic_at_all(heads=40)
    make_staff("ada", "correct horse")
    page = signed_in_page(browser, live_server, "/exports", width=1200)
    # No critic version exists: the selector offers "no critic", and the preview uses it.
    page.select_option("select[name=version]", "none")
    page.click("button:has-text('Preview')")
    page.locator("#export-plan").wait_for()
    plan = page.locator("#export-plan").inner_text()
    assert "no critic filters this export" in plan
    assert f"{len(without_critic(corpus)):,}" in plan
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"exports-no-critic-preview-{BACKEND}.png"), full_page=True)
    # A score rule without a critic is refused, naming the value.
    page.check("input[name=rule][value=threshold]")
    page.click("button:has-text('Preview')")
    page.locator("#export-errors").wait_for()
    assert "needs a critic's score" in page.locator("#export-errors").inner_text()
    page.check("input[name=rule][value=default]")
    page.click("form#export-form button.primary")
    page.wait_for_selector(".export-started .badge-succeeded", timeout=60_000)
    row = page.locator("#export-list tr[id^=export-]").first
    row.locator(".badge-succeeded").wait_for(timeout=10_000)
    assert "no critic" in row.locator("td.critic-cell").inner_text()
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"exports-no-critic-done-{BACKEND}.png"), full_page=True)
    row.locator("td.name a").click()
    page.wait_for_selector(".dataset-card")
    text = page.locator("main").inner_text()
    assert "No critic filtered this export" in text and "--no-critic" in text
    assert_accessible(page)
    page.screenshot(path=str(OUTPUT / f"export-no-critic-detail-{BACKEND}.png"), full_page=True)
