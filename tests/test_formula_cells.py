"""No download carries a formula (issue #12, point 7; OWASP's CSV injection guidance).

Tails and worker ids starting with ``=``, ``+``, ``-``, ``@`` (or a tab / carriage return)
come out of ratings.csv, labels.csv and the export's TSV with a leading ``'``; JSONL and
Parquet stay verbatim; numbers (an answer of -1) stay numbers.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path

import pyarrow.parquet as pq
from fastapi.testclient import TestClient

from app.annotation.campaigns import CampaignSpec, create_campaign
from app.core.cells import neutralize_formula
from app.core.db import session_scope
from app.core.jobs import run_job
from app.core.models import CriticState, CriticVersion, Score, Triple
from app.export import ExportParams, start_export
from app.export.run import run_export_job
from tests.conftest import login, make_staff

DANGEROUS_TAILS = ["=1+1", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A2)", "\uff1dHYPERLINK(1)"]
WORKER = '=HYPERLINK("http://evil.example","x")'


def _add(tails: list[str]) -> list[int]:
    with session_scope(write=True) as session:
        triples = [
            Triple(
                head=f"PersonX opens file {n}",
                relation="xWant",
                tail=tail,
                norm_hash=uuid.uuid4().hex,
                source="t",
            )
            for n, tail in enumerate(tails)
        ]
        session.add_all(triples)
        session.flush()
        return [t.id for t in triples]


def test_neutralize_formula_follows_owasp() -> None:
    for text in ("=1", "+1", "-1", "@x", "\tx", "\rx", "\uff20x"):
        assert neutralize_formula(text) == "'" + text
    for text in ("", "plain", "to eat", "'quoted", " =spaced"):
        assert neutralize_formula(text) == text


def test_ratings_and_labels_downloads_neutralize_formula_cells(app, engine) -> None:  # type: ignore[no-untyped-def]
    _add(DANGEROUS_TAILS)
    with session_scope(write=True) as session:
        campaign = create_campaign(session, CampaignSpec(name="csv", ratings_per_item=1))
        campaign_id, share = campaign.id, campaign.share_token
    with TestClient(app) as worker:
        # An anonymous worker plants a formula through the platform's worker id.
        worker.get(f"/c/{share}", params={"PROLIFIC_PID": WORKER})
        answers = iter([2, -1, 1, -2, 2])
        item = worker.get(f"/api/annotate/{campaign_id}/next").json()["item"]
        n = 0
        while item is not None:
            body = {"item_id": item["item_id"], "answer": next(answers), "submission_id": f"s{n}"}
            item = worker.post(f"/api/annotate/{campaign_id}/submit", json=body).json()["item"]
            n += 1
    make_staff()
    with TestClient(app) as staff:
        login(staff)
        ratings_csv = staff.get(f"/campaigns/{campaign_id}/ratings.csv").text
        labels_csv = staff.get(f"/campaigns/{campaign_id}/labels.csv").text
        ratings_jsonl = staff.get(f"/campaigns/{campaign_id}/ratings.jsonl").text
        labels_jsonl = staff.get(f"/campaigns/{campaign_id}/labels.jsonl").text
    ratings = list(csv.DictReader(io.StringIO(ratings_csv)))
    labels = list(csv.DictReader(io.StringIO(labels_csv)))
    assert len(ratings) == len(labels) == len(DANGEROUS_TAILS)
    for rows in (ratings, labels):
        assert sorted(r["tail"] for r in rows) == sorted("'" + t for t in DANGEROUS_TAILS)
        for row in rows:  # no cell a spreadsheet would run, except numbers such as -1
            for cell in row.values():
                if cell and cell[0] in "=+-@\t\r":
                    float(cell)
    assert {r["external_id"] for r in ratings} == {"'" + WORKER}
    assert {r["answer"] for r in ratings} >= {"-1", "-2"}  # numbers untouched
    # JSONL is read by programs: verbatim.
    for text in (ratings_jsonl, labels_jsonl):
        records = [json.loads(line) for line in text.splitlines()]
        assert sorted(r["tail"] for r in records) == sorted(DANGEROUS_TAILS)
    assert {json.loads(line)["external_id"] for line in ratings_jsonl.splitlines()} == {WORKER}


def test_export_tsv_neutralizes_formula_cells_jsonl_and_parquet_stay_verbatim(
    engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ids = _add(DANGEROUS_TAILS)
    with session_scope(write=True) as session:
        version = CriticVersion(
            base_model="tiny", state=CriticState.active, metrics={}, label_snapshot={}
        )
        session.add(version)
        session.flush()
        session.add_all(Score(critic_version_id=version.id, triple_id=i, p_accept=0.9) for i in ids)
    started = start_export(
        ExportParams.from_dict(
            {
                "threshold": 0.5,
                "formats": ["atomic-tsv", "jsonl", "parquet"],
                "splits": "train=1",
            }
        ),
        destination=tmp_path / "out",
    )
    folder = Path(run_job(started.job_id, run_export_job)["path"])
    tsv_tails = [
        line.split("\t")[2]
        for path in (folder / "atomic-tsv").iterdir()
        for line in path.read_text("utf-8").splitlines()
    ]
    assert sorted(tsv_tails) == sorted("'" + t for t in DANGEROUS_TAILS)
    jsonl_tails = [
        json.loads(line)["tail"]
        for path in (folder / "jsonl").iterdir()
        for line in path.read_text("utf-8").splitlines()
    ]
    assert sorted(jsonl_tails) == sorted(DANGEROUS_TAILS)
    parquet_tails = [
        row["tail"]
        for path in (folder / "parquet").iterdir()
        for row in pq.read_table(path).to_pylist()
    ]
    assert sorted(parquet_tails) == sorted(DANGEROUS_TAILS)
