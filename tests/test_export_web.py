"""The export's doors: the page (form, preview, list, downloads), ``/api/exports`` and
``skd export``, all over the same function. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from sqlalchemy import func, select

from app.core.db import session_scope
from app.core.models import Export, Job
from tests.conftest import ROOT
from tests.test_export import build_corpus


def wait_for_export(client, export_id: int, timeout: float = 60) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        export = client.get(f"/api/exports/{export_id}").json()
        if export["state"] not in ("queued", "running"):
            return export
        time.sleep(0.2)
    raise AssertionError(f"export {export_id} did not finish: {export}")


def counts() -> tuple[int, int]:
    with session_scope() as session:
        return (
            session.scalar(select(func.count()).select_from(Export)),
            session.scalar(select(func.count()).select_from(Job)),
        )


def test_staff_only(client) -> None:  # type: ignore[no-untyped-def]
    assert client.get("/api/exports").status_code == 401
    page = client.get("/exports", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    assert client.delete("/api/exports/1").status_code in (401, 403)
    assert client.post("/exports/1/delete", follow_redirects=False).status_code in (401, 403)


def test_api_refuses_bad_parameters_naming_them_before_any_work(staff_client) -> None:  # type: ignore[no-untyped-def]
    build_corpus(heads=20)
    before = counts()
    for body, field, words in (
        ({"version": 999}, "version", "no critic version 999"),
        ({"threshold": 1.5}, "threshold", "outside [0, 1]"),
        ({"target_precision": 0.99}, "target_precision", "no threshold"),
        (
            {"threshold": 0.9999999, "human_labels": "ignore", "relations": ["xWant"]},
            "result",
            "nothing is kept",
        ),
        ({"splits": {"train": 0.5}}, "splits", "add up to 1"),
    ):
        for url in ("/api/exports", "/api/exports/preview"):
            response = staff_client.post(url, json=body)
            assert response.status_code == 422, (url, body, response.text)
            detail = response.json()["detail"]
            assert detail[0]["loc"] == ["body", field], detail
            assert words in detail[0]["msg"]
    # A field of the wrong type is refused by the schema, also with its name.
    response = staff_client.post("/api/exports", json={"seed": "soon"})
    assert response.status_code == 422 and response.json()["detail"][0]["loc"][-1] == "seed"
    assert counts() == before


def test_api_export_runs_on_a_worker_and_serves_its_files(staff_client, celery_worker) -> None:  # type: ignore[no-untyped-def]
    build_corpus(heads=60, calibration=40)
    preview = staff_client.post("/api/exports/preview", json={"target_recall": 0.8}).json()
    assert preview["threshold"] == 0.5 and preview["counts"]["kept"] > 0
    response = staff_client.post(
        "/api/exports", json={"target_recall": 0.8, "formats": ["jsonl", "parquet"]}
    )
    assert response.status_code == 202, response.text
    started = response.json()
    export = wait_for_export(staff_client, started["export_id"])
    assert export["state"] == "succeeded", export
    assert export["counts"]["total"] == preview["counts"]["kept"]
    assert export["estimate"]["precision"] is not None
    archive = staff_client.get(started["download_url"])
    assert archive.status_code == 200
    assert archive.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(archive.content)) as tar:
        names = tar.getnames()
    assert any(name.endswith("/README.md") for name in names)
    assert any(name.endswith("/parquet/train.parquet") for name in names)
    card = staff_client.get(f"/exports/{started['export_id']}/files/README.md")
    assert card.status_code == 200 and "# Filtered commonsense knowledge graph" in card.text
    lines = staff_client.get(f"/api/exports/{started['export_id']}/files/jsonl/val.jsonl").text
    assert all(json.loads(line)["split"] == "val" for line in lines.splitlines())
    # Nothing outside the export folder is served.
    outside = staff_client.get(f"/exports/{started['export_id']}/files/..%2F..%2Fskd.sqlite")
    assert outside.status_code == 404
    listed = staff_client.get("/api/exports").json()
    assert [x["id"] for x in listed] == [started["export_id"]]
    assert listed[0]["params"]["target_recall"] == 0.8
    # The page lists it with its parameters and a download link; its own page shows the card.
    page = staff_client.get("/exports").text
    assert f'href="/exports/{started["export_id"]}/download"' in page
    assert "labels override" in page
    detail = staff_client.get(f"/exports/{started['export_id']}").text
    assert "Dataset card" in detail and "Counts per relation" in detail
    assert "skd export --version" in detail
    assert f'hx-post="/exports/{started["export_id"]}/delete"' in detail

    # Deleting from the page: its files and row go, and the list says what was freed.
    folder = Path(export["path"])
    assert folder.is_dir()
    gone = staff_client.post(
        f"/exports/{started['export_id']}/delete", headers={"HX-Request": "true"}
    )
    assert gone.status_code == 200 and gone.headers["HX-Redirect"] == "/exports"
    assert not folder.exists() and not folder.with_name(folder.name + ".tar.gz").exists()
    page = staff_client.get("/exports").text
    assert f"Export #{started['export_id']} deleted" in page and "freed" in page
    assert staff_client.get(f"/api/exports/{started['export_id']}").status_code == 404
    again = staff_client.delete(f"/api/exports/{started['export_id']}")
    assert again.status_code == 404 and "no export" in again.json()["detail"]


def test_form_preview_errors_and_start(staff_client, celery_worker) -> None:  # type: ignore[no-untyped-def]
    build_corpus(heads=30)
    form = {
        "version": "",
        "rule": "target_recall",
        "value": "0.8",
        "human_labels": "override",
        "split_train": "0.8",
        "split_val": "0.1",
        "split_test": "0.1",
        "seed": "0",
        "formats": ["jsonl", "student"],
    }
    htmx = {"HX-Request": "true"}
    preview = staff_client.post("/exports/preview", data=form, headers=htmx)
    assert preview.status_code == 200 and 'id="export-plan"' in preview.text
    assert "triples kept" in preview.text
    # A bad value: the message names the field, and nothing is started.
    before = counts()
    bad = staff_client.post("/exports", data=form | {"value": "1.7"}, headers=htmx)
    assert 'href="#field-value"' in bad.text and "outside [0, 1]" in bad.text
    plain = staff_client.post("/exports", data=form | {"split_val": "0.5"}, follow_redirects=False)
    assert plain.status_code == 422 and "add up to 1" in plain.text
    # Keeping the corpus's own splits: these triples were imported without any.
    own = staff_client.post("/exports/preview", data=form | {"split_by": "corpus"}, headers=htmx)
    assert 'href="#field-split_by"' in own.text and "no split of their own" in own.text
    assert counts() == before
    # Started with htmx: the job's progress bar comes back, and the list is told to refresh.
    started = staff_client.post("/exports", data=form, headers=htmx)
    assert started.status_code == 200 and 'class="job' in started.text
    assert started.headers["HX-Trigger"] == "export-started"
    export_id = staff_client.get("/api/exports").json()[0]["id"]
    assert wait_for_export(staff_client, export_id)["state"] == "succeeded"
    # Without JavaScript: a redirect to the export's page.
    again = staff_client.post("/exports", data=form, follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"].startswith("/exports/")
    wait_for_export(staff_client, int(again.headers["location"].rsplit("/", 1)[1]))


def skd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env={**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_export_refusals_dry_run_export_and_list(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    build_corpus(heads=40)
    bad = skd("export", "--threshold", "1.5", "--split", "train=0.5")
    assert bad.returncode == 2
    assert "--threshold: 1.5 is outside [0, 1]" in bad.stderr
    assert "--split: the ratios must add up to 1" in bad.stderr
    missing = skd("export", "--version", "77")
    assert missing.returncode == 2 and "--version: no critic version 77" in missing.stderr
    assert counts() == (0, 0)
    dry = skd("export", "--dry-run", "--target-precision", "0.9")
    assert dry.returncode == 0, dry.stderr
    assert "0.7000" in dry.stdout and "kept" in dry.stdout
    out = tmp_path / "graph"
    done = skd("export", "--target-recall", "0.8", "--format", "jsonl", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert (out / "jsonl" / "train.jsonl").is_file() and (tmp_path / "graph.tar.gz").is_file()
    assert "total" in done.stdout and str(out) in done.stdout
    # The card's command, run again from params.json, gives the same bytes.
    again = skd("export", "--params", str(out / "params.json"), "--out", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again.tar.gz").read_bytes() == (tmp_path / "graph.tar.gz").read_bytes()
    exists = skd("export", "--out", str(out))
    assert exists.returncode == 2 and "already exists" in exists.stderr
    listed = skd("export", "list")
    assert listed.returncode == 0 and "succeeded" in listed.stdout
    with session_scope() as session:
        first = session.scalar(select(Export.id).where(Export.path == str(out)))
    removed = skd("export", "delete", str(first), "--yes")
    assert removed.returncode == 0, removed.stderr
    assert f"deleted export {first}" in removed.stdout and "MB freed" in removed.stdout
    assert not out.exists() and not (tmp_path / "graph.tar.gz").exists()
    assert (tmp_path / "again.tar.gz").is_file()  # the other export is untouched
    unknown = skd("export", "delete", str(first), "--yes")
    assert unknown.returncode == 1 and f"no export {first}" in unknown.stderr
