"""The export's default threshold (the critic version's own) through every door: the API, the
form's default rule and ``skd export --dry-run``. Every trained version has a threshold, and
each of these once crashed with a TypeError in ``threshold_reason``."""

from __future__ import annotations

import pytest

from app.core.db import session_scope
from app.core.models import CriticVersion
from app.export.plan import threshold_reason
from tests.test_export import build_corpus
from tests.test_export_web import skd, wait_for_export

REASON = "the threshold chosen for this critic version"


def _version_with_its_own_threshold(threshold: float = 0.5) -> int:
    corpus = build_corpus(heads=30)
    with session_scope(write=True) as session:
        version = session.get(CriticVersion, corpus.version_id)
        version.threshold = threshold
        return version.id


@pytest.mark.parametrize(
    ("rule", "value", "words"),
    [
        ("version", None, REASON),
        ("score", 0.25, "given as a score (0.25)"),
        ("precision", 0.9, "held-out precision reaches 0.9"),
        ("recall", 0.8, "held-out recall reaches 0.8"),
        ("kept", 0.5, "keeps 50.0%"),
    ],
)
def test_each_rule_is_said_in_words(rule: str, value: float | None, words: str) -> None:
    assert words in threshold_reason(rule, value)


def test_the_api_previews_and_exports_with_the_default_threshold(  # type: ignore[no-untyped-def]
    staff_client, celery_worker
) -> None:
    _version_with_its_own_threshold(0.5)
    preview = staff_client.post("/api/exports/preview", json={})
    assert preview.status_code == 200, preview.text
    plan = preview.json()
    assert plan["threshold"] == 0.5 and plan["threshold_rule"] == "version"
    assert plan["threshold_reason"] == REASON
    started = staff_client.post("/api/exports", json={})
    assert started.status_code == 202, started.text
    export = wait_for_export(staff_client, started.json()["export_id"])
    assert export["state"] == "succeeded", export
    assert export["threshold"] == 0.5 and export["threshold_reason"] == REASON


def test_the_form_previews_with_the_default_rule(staff_client) -> None:  # type: ignore[no-untyped-def]
    _version_with_its_own_threshold(0.5)
    form = {
        "version": "",
        "rule": "default",
        "value": "",
        "human_labels": "override",
        "split_train": "0.8",
        "split_val": "0.1",
        "split_test": "0.1",
        "seed": "0",
        "formats": ["jsonl"],
    }
    preview = staff_client.post("/exports/preview", data=form, headers={"HX-Request": "true"})
    assert preview.status_code == 200, preview.text
    assert 'id="export-plan"' in preview.text and REASON in preview.text


def test_the_cli_dry_run_uses_the_default_threshold(engine) -> None:  # type: ignore[no-untyped-def]
    _version_with_its_own_threshold(0.5)
    dry = skd("export", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "0.5000" in dry.stdout and REASON in " ".join(dry.stdout.split())
