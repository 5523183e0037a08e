"""Importing into the real database: counts, duplicates, labels, all-or-nothing, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.core.db import session_scope
from app.core.models import Job, JobState, Rating, RatingOrigin, Triple
from app.corpus import importer
from app.corpus.formats import CorpusFormatError
from app.corpus.importer import import_files
from tests.conftest import ROOT, shared_file


def count(model) -> int:  # type: ignore[no-untyped-def]
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_real_atomic_sample_imports_once(engine) -> None:  # type: ignore[no-untyped-def]
    path = shared_file("atomic2020_sample.tsv")
    first = import_files([path]).as_dict()["totals"]
    assert first["imported"] == count(Triple) > 15_000
    assert first["skipped"]["'none' tail"] > 0
    assert first["imported"] + first["duplicates_in_import"] == first["triples"]
    again = import_files([path]).as_dict()["totals"]
    assert again["imported"] == 0
    assert again["already_in_corpus"] == first["imported"]
    assert count(Triple) == first["imported"]


def test_real_comet_generations_and_provenance(engine) -> None:  # type: ignore[no-untyped-def]
    path = shared_file("comet_bart_generations.jsonl")
    summary = import_files([path], source="comet-bart").as_dict()["totals"]
    assert summary["imported"] == count(Triple)
    with session_scope() as session:
        sources = set(session.scalars(select(Triple.source).distinct()))
        first = session.scalars(select(Triple).order_by(Triple.id).limit(1)).one()
    assert sources == {"comet-bart"}
    assert first.source_file == str(path) and first.source_line == 1
    assert first.meta is not None and first.meta["field"] in {"tails", "generations"}


def test_duplicates_within_and_across_files_and_against_corpus(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = write(
        tmp_path / "a.tsv",
        ["PersonX eats\txNeed\tfood", "personx  eats.\txNeed\tFood.", "PersonX eats\txWant\tmore"],
    )
    b = write(tmp_path / "b.tsv", ["PersonX eats\txWant\tmore", "PersonX sleeps\txReact\trested"])
    result = import_files([a, b]).as_dict()
    assert [f["imported"] for f in result["files"]] == [2, 1]
    assert [f["duplicates_in_import"] for f in result["files"]] == [1, 1]
    assert [f["source"] for f in result["files"]] == ["a", "b"]
    c = write(
        tmp_path / "c.tsv", ["PersonX SLEEPS\txReact\trested.", "PersonX runs\txEffect\tsweats"]
    )
    result = import_files([c]).as_dict()["totals"]
    assert (result["imported"], result["already_in_corpus"]) == (1, 1)
    with session_scope() as session:
        stored = session.scalars(
            select(Triple.tail).where(Triple.head == "PersonX eats").order_by(Triple.id)
        ).all()
    assert stored == ["food", "more"]  # first spelling kept, whitespace-normalized


def test_human_labels_become_imported_ratings_once(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    records = [
        {"head": "PersonX paints", "relation": "xAttr", "tail": "artistic", "valid": 2},
        {"head": "PersonX paints", "relation": "xNeed", "tail": "a spaceship", "valid": -1},
        {"head": "PersonX paints", "relation": "xWant", "tail": "to rest", "valid": None},
        {"head": "PersonX paints", "relation": "xReact", "tail": "???", "valid": -9},
    ]
    path = tmp_path / "x.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert import_files([path]).as_dict()["totals"]["labels"] == 3
    assert import_files([path]).as_dict()["totals"]["labels"] == 0
    with session_scope() as session:
        labels = dict(
            session.execute(
                select(Triple.tail, Rating.answer).join(Rating, Rating.triple_id == Triple.id)
            ).all()
        )
        origins = set(session.scalars(select(Rating.origin)))
    assert labels == {"artistic": 2, "a spaceship": -1, "???": -9}
    assert origins == {RatingOrigin.imported}


def test_bad_line_in_last_file_writes_nothing(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    good = write(
        tmp_path / "good.tsv", [f"PersonX does thing {i}\txNeed\tstuff" for i in range(100)]
    )
    bad = write(
        tmp_path / "bad.tsv", ["PersonX sings\txReact\thappy", "PersonX sings\txSings\tloud"]
    )
    with pytest.raises(CorpusFormatError) as caught:
        import_files([good, bad])
    assert f"{bad}:2: field 'relation'" in str(caught.value)
    assert count(Triple) == 0


def test_failure_while_writing_rolls_everything_back(engine, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    first = write(tmp_path / "one.tsv", [f"PersonX eats {i}\txNeed\tfood" for i in range(50)])
    second = write(
        tmp_path / "two.jsonl",
        [json.dumps({"head": "PersonX", "relation": "xAttr", "tail": "kind", "valid": 2})],
    )
    real = importer.load_rows
    calls = []

    def failing(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(importer, "load_rows", failing)
    with pytest.raises(OSError, match="disk full"):
        import_files([first, second])
    assert count(Triple) == 0 and count(Rating) == 0


def test_large_batch_with_backslashes_and_unicode_round_trips(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lines = [
        f"PersonX types C:\\path\\{i} ünïcode\txIntent\tto save {i} € \\N" for i in range(3000)
    ]
    path = write(tmp_path / "big.tsv", lines)
    assert import_files([path]).as_dict()["totals"]["imported"] == 3000
    with session_scope() as session:
        row = session.scalars(select(Triple).where(Triple.source_line == 42)).one()
    assert (row.head, row.tail) == ("PersonX types C:\\path\\41 ünïcode", "to save 41 € \\N")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_import_prints_summary_and_records_a_job(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(
        tmp_path / "cli.tsv",
        [
            "PersonX wins\txReact\tproud",
            "PersonX wins\txReact\tnone",
            "PersonX wins\txReact\tproud",
        ],
    )
    result = run_cli("import", str(path), "--source", "mine", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Import summary" in result.stdout
    assert "'none' tail" in result.stdout
    row = [line for line in result.stdout.splitlines() if "cli.tsv" in line][0]
    assert [cell.strip() for cell in row.split("│")[2:7]] == ["3", "2", "1", "1", "0"]
    with session_scope() as session:
        job = session.scalars(select(Job)).one()
        source = session.scalars(select(Triple.source)).one()
    assert job.kind == "import" and job.state == JobState.succeeded and job.done == job.total
    assert source == "mine"


def test_cli_import_bad_file_exits_nonzero_and_names_the_place(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(
        tmp_path / "broken.csv", ["head,relation,tail", "PersonX a,xNeed,b", "PersonX c,xNope,d"]
    )
    result = run_cli("import", str(path), cwd=tmp_path)
    assert result.returncode != 0
    assert "broken.csv:3: field 'relation': unknown relation 'xNope'" in result.stderr
    assert "nothing was imported" in result.stderr
    assert count(Triple) == 0
    with session_scope() as session:
        job = session.scalars(select(Job)).one()
    assert job.state == JobState.failed and "xNope" in (job.error or "")


def test_cli_import_missing_file(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("import", str(tmp_path / "nope.tsv"), cwd=tmp_path)
    assert result.returncode == 2
    assert "no such file" in result.stderr
