"""The kept corpus counts (``triple_counts``, kept by triggers) always equal counting the
triples: after imports, duplicates, teacher inserts, deletes, moves, concurrent writers and
compaction; on a database migrated with triples already in it; and import refuses the source
names that would make a teacher run's count wrong."""

from __future__ import annotations

import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from app.core import triple_counts
from app.core.db import make_engine, session_scope
from app.core.models import TeacherRun, Triple, TripleCount
from app.corpus.formats import CorpusFormatError
from app.corpus.importer import import_files
from app.corpus.stats import corpus_counts
from app.teacher.chunks import _insert_ignoring_duplicates
from app.teacher.runs import run_triples_count
from tests.conftest import BACKEND, ROOT, add_triples
from tests.test_schema import scratch_url  # noqa: F401 - the fixture


def counted_by_hand(session) -> dict[tuple[str, str], int]:  # type: ignore[no-untyped-def]
    rows = session.execute(
        select(Triple.source, Triple.relation, func.count()).group_by(
            Triple.source, Triple.relation
        )
    )
    return {(source, relation): n for source, relation, n in rows}


def assert_counts_true() -> dict[tuple[str, str], int]:
    with session_scope() as session:
        kept, truth = triple_counts.counts(session), counted_by_hand(session)
    assert kept == truth
    return kept


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_imports_and_duplicates_keep_the_counts_true(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a = write(tmp_path / "a.tsv", [f"PersonX eats {i}\txNeed\tfood {i}" for i in range(30)])
    b = write(
        tmp_path / "b.tsv",
        [f"PersonX runs {i}\txWant\trest {i}" for i in range(12)]
        + ["PersonX eats 3\txNeed\tfood 3"],  # already in the corpus from a.tsv
    )
    import_files([a], source="atomic")
    import_files([b], source="other")
    import_files([a], source="atomic")  # everything already there: nothing counted twice
    kept = assert_counts_true()
    assert kept == {("atomic", "xNeed"): 30, ("other", "xWant"): 12}
    with session_scope() as session:
        shown = corpus_counts(session)
    assert shown["triples"] == 42
    assert shown["by_relation"] == {"xNeed": 30, "xWant": 12}
    assert shown["by_source"] == {"atomic": 30, "other": 12}
    with session_scope() as session:
        assert triple_counts.sources(session) == ["atomic", "other"]
        assert triple_counts.known_sources(session, ["other", "typo"]) == {"other"}


def test_deletes_moves_and_teacher_inserts_keep_the_counts_true(engine) -> None:  # type: ignore[no-untyped-def]
    add_triples(20, source="s1", relation="xWant")
    add_triples(5, head="PersonY {i}", source="s2", relation="xNeed")
    with session_scope(write=True) as session:
        run = TeacherRun(backend="local", model="m")
        session.add(run)
        session.flush()
        rows = [
            {
                "head": f"PersonX writes {i}",
                "relation": "xIntent",
                "tail": f"to say {i}",
                "norm_hash": uuid.uuid4().hex,
                "source": f"teacher-run-{run.id}",
                "teacher_run_id": run.id,
            }
            for i in range(7)
        ]
        # the teacher's own statement: duplicates skipped by the unique key
        assert _insert_ignoring_duplicates(session, rows + rows[:3]) == 7
        run_id = run.id
    with session_scope(write=True) as session:
        session.execute(text("DELETE FROM triples WHERE source = 's1' AND id % 4 = 0"))
        session.execute(text("UPDATE triples SET source = 's3' WHERE source = 's2' AND id % 2 = 0"))
        session.execute(text("UPDATE triples SET relation = 'xEffect' WHERE source = 's3'"))
        session.execute(text("UPDATE triples SET tail = tail || '!' WHERE source = 's1'"))
    kept = assert_counts_true()
    assert kept[("s1", "xWant")] == 15 and kept[(f"teacher-run-{run_id}", "xIntent")] == 7
    assert sum(n for (s, _), n in kept.items() if s in ("s2", "s3")) == 5
    with session_scope() as session:
        assert run_triples_count(session, run_id) == 7
        assert triple_counts.source_count(session, "s1") == 15
        assert triple_counts.source_count(session, "nobody") == 0


@pytest.mark.skipif(BACKEND != "postgres", reason="concurrent writers: PostgreSQL's case")
def test_concurrent_writers_and_compaction_lose_no_count(engine) -> None:  # type: ignore[no-untyped-def]
    """Eight writers insert into the same sources and relations at once while compaction folds
    the rows of differences again and again: nobody waits on a shared row, nothing is lost."""
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for batch in range(15):
                with session_scope(write=True) as session:
                    session.add_all(
                        Triple(
                            head=f"PersonX w{k} b{batch} {i}",
                            relation=("xWant", "xNeed", "xIntent")[i % 3],
                            tail="t",
                            norm_hash=uuid.uuid4().hex,
                            source=("shared", f"own-{k}")[i % 2],
                        )
                        for i in range(10)
                    )
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def compactor(stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                with session_scope(write=True) as session:
                    triple_counts.compact(session, above=0)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    stop = threading.Event()
    folding = threading.Thread(target=compactor, args=(stop,))
    folding.start()
    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    folding.join()
    assert not errors, errors
    kept = assert_counts_true()
    assert sum(kept.values()) == 8 * 15 * 10
    with session_scope(write=True) as session:
        triple_counts.compact(session, above=0)
    with session_scope() as session:
        rows = session.scalar(select(func.count()).select_from(TripleCount))
    assert rows == len(kept)  # one row per key once folded
    assert assert_counts_true() == kept


def test_compaction_folds_rows_only_above_its_threshold(engine) -> None:  # type: ignore[no-untyped-def]
    for _ in range(4):
        add_triples(3, head=f"PersonX {uuid.uuid4().hex} {{i}}", source="s", relation="xWant")
    with session_scope() as session:
        rows_before = session.scalar(select(func.count()).select_from(TripleCount))
    with session_scope(write=True) as session:
        assert triple_counts.compact(session, above=100) == 0  # few rows: left alone
    with session_scope(write=True) as session:
        folded = triple_counts.compact(session, above=0)
    with session_scope() as session:
        rows_after = session.scalar(select(func.count()).select_from(TripleCount))
    if BACKEND == "postgres":
        assert rows_before == 4 and rows_after == 1 and folded == 3  # a row per statement
    else:
        assert rows_before == rows_after == 1 and folded == 0  # one row per key, always
    assert assert_counts_true() == {("s", "xWant"): 12}


def test_migrating_a_database_with_triples_counts_them(scratch_url: str) -> None:  # noqa: F811
    from app.core import migrate

    migrate.upgrade(scratch_url, "0009")
    scratch = make_engine(scratch_url)
    try:
        with scratch.begin() as conn:
            for i in range(9):
                conn.execute(
                    text(
                        "INSERT INTO triples (head, relation, tail, norm_hash, source,"
                        " created_at) VALUES (:h, :r, 't', :k, :s, CURRENT_TIMESTAMP)"
                    ),
                    {"h": f"h{i}", "r": ("xWant", "xNeed")[i % 2], "k": f"k{i}", "s": "old"},
                )
        migrate.upgrade(scratch_url)
        with scratch.connect() as conn:
            kept = dict(
                conn.execute(
                    text(
                        "SELECT relation, sum(n) FROM triple_counts WHERE source = 'old'"
                        " GROUP BY relation"
                    )
                ).all()
            )
        assert kept == {"xWant": 5, "xNeed": 4}
        migrate.downgrade(scratch_url, "0009")
        with scratch.begin() as conn:  # the triggers went with the table
            conn.execute(
                text(
                    "INSERT INTO triples (head, relation, tail, norm_hash, source, created_at)"
                    " VALUES ('h', 'xWant', 't', 'k-after', 'old', CURRENT_TIMESTAMP)"
                )
            )
    finally:
        scratch.dispose()


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("teacher-run-3", "kept for a teacher run's own triples"),
        ("Student-12", "kept for a student's own triples"),
        ("x" * 101, "at most 100 characters"),
        ("two\tparts", "control characters"),
    ],
)
def test_import_refuses_a_source_name_it_cannot_keep(  # type: ignore[no-untyped-def]
    engine, tmp_path: Path, source: str, problem: str
) -> None:
    path = write(tmp_path / "a.tsv", ["PersonX eats\txNeed\tfood"])
    with pytest.raises(CorpusFormatError, match=problem) as refused:
        import_files([path], source=source)
    assert refused.value.field == "source"
    assert assert_counts_true() == {}


def test_a_file_named_like_a_teacher_run_needs_a_source_name(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path / "teacher-run-3.tsv", ["PersonX eats\txNeed\tfood"])
    with pytest.raises(CorpusFormatError, match="taken from the file's name"):
        import_files([path])
    import_files([path], source="their-run-3")
    # names that only look alike are anybody's
    other = write(tmp_path / "student-essays.tsv", ["PersonX writes\txWant\tto pass"])
    import_files([other])
    assert assert_counts_true() == {("their-run-3", "xNeed"): 1, ("student-essays", "xWant"): 1}


def test_cli_and_api_refuse_a_reserved_source_before_any_job(  # type: ignore[no-untyped-def]
    staff_client, tmp_path: Path, test_env
) -> None:
    path = write(tmp_path / "a.tsv", ["PersonX eats\txNeed\tfood"])
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "import", str(path), "--source", "Teacher-Run-1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 2, said
    assert "--source 'Teacher-Run-1': kept for a teacher run's own triples" in said
    with path.open("rb") as handle:
        answer = staff_client.post(
            "/api/corpus/import",
            files={"files": ("a.tsv", handle, "text/tab-separated-values")},
            data={"source": "teacher-run-1"},
        )
    assert answer.status_code == 422
    assert "source 'teacher-run-1': kept for a teacher run's own triples" in answer.text
    jobs = staff_client.get("/api/jobs").json()
    assert not [job for job in jobs if job["kind"] == "import"], jobs
