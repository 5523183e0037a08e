"""`skd db text-index`: the opt-in trigram indexes behind the corpus browser's text search.
Through the real door (the `skd` command against a fresh database of a running stack)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import BACKEND
from tests.live_stack import live_stack


def test_text_index_builds_serves_search_and_drops(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.tsv"
    corpus.write_text(
        "".join(f"PersonX paints fence {i}\txWant\tto rest after {i}\n" for i in range(40))
        + "PersonX bakes a Quince tart\txWant\tto share it\n"
    )
    with live_stack(tmp_path, worker=False) as stack:
        assert stack.skd("import", str(corpus)).returncode == 0
        if BACKEND == "sqlite":
            done = stack.skd("db", "text-index")
            assert done.returncode == 1
            assert "PostgreSQL feature" in done.stderr, done.stderr
            return
        status = stack.skd("db", "text-index", "--status")
        assert status.stdout.split() == [
            "ix_triples_head_trgm:",
            "missing",
            "ix_triples_tail_trgm:",
            "missing",
        ]
        built = stack.skd("db", "text-index")
        assert built.returncode == 0, built.stdout + built.stderr
        assert "built ix_triples_head_trgm, ix_triples_tail_trgm" in built.stdout
        assert stack.skd("db", "text-index").stdout.strip() == "the text indexes are already there"
        assert stack.skd("db", "text-index", "--status").stdout.count(": valid") == 2
        # The search answers as before, case-insensitively, in heads and tails alike.
        staff = stack.login()
        found = staff.get("/api/corpus/triples", params={"q": "quince"}).json()
        assert [row["head"] for row in found["rows"]] == ["PersonX bakes a Quince tart"]
        found = staff.get("/api/corpus/triples", params={"q": "REST AFTER 3"}).json()
        assert {row["tail"] for row in found["rows"]} == {"to rest after 3"} | {
            f"to rest after {i}" for i in range(30, 40)
        }
        dropped = stack.skd("db", "text-index", "--drop")
        assert "dropped ix_triples_head_trgm, ix_triples_tail_trgm" in dropped.stdout
        assert stack.skd("db", "text-index", "--status").stdout.count(": missing") == 2
