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


def test_text_search_pages_are_the_same_with_the_indexes_and_a_word_found_in_places(  # type: ignore[no-untyped-def]
    staff_client, engine, monkeypatch
) -> None:
    """With the trigram indexes, a text search sorted by id first reads a window of ids in
    order and, when a page of matches is not in it, takes the index. Every page is still the
    plain query's page: a word found only at both ends of the corpus, paged oldest and newest
    first through a window smaller than the gaps, and a word in every row."""
    import pytest

    if BACKEND != "postgres":
        pytest.skip("the trigram indexes are PostgreSQL's")
    from app.annotation import browse
    from app.core.db import get_engine
    from app.core.text_index import create_text_indexes, drop_text_indexes
    from tests.conftest import add_triples
    from tests.test_browse import _all_pages

    ids = add_triples(120, head="PersonX paints fence {i}", tail="to rest {i}")
    quince = [ids[i] for i in (*range(0, 12), *range(100, 106))]
    from app.core.db import session_scope
    from app.core.models import Triple

    with session_scope(write=True) as session:
        for triple_id in quince:
            session.get(Triple, triple_id).tail = f"to eat a QUINCE {triple_id}"  # type: ignore[union-attr]
    monkeypatch.setattr(browse, "TEXT_WINDOW", 10)
    create_text_indexes(get_engine())
    try:
        with session_scope() as session:
            assert browse._text_indexed(session)
        assert _all_pages(staff_client, "q=quince", limit=4) == quince
        assert _all_pages(staff_client, "q=quince&sort=-id", limit=4) == quince[::-1]
        assert _all_pages(staff_client, "q=paints", limit=25) == ids
        assert _all_pages(staff_client, "q=paints&sort=-id", limit=25) == ids[::-1]
        assert _all_pages(staff_client, "q=nowhere", limit=4) == []
    finally:
        drop_text_indexes(get_engine())
        with session_scope() as session:
            assert not browse._text_indexed(session)


def test_a_slow_text_search_says_how_to_make_it_fast(staff_client, engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """On PostgreSQL without the trigram indexes, a text search slower than
    ``SLOW_TEXT_SECONDS`` says so on the page and names `skd db text-index`; with them, or
    without a text search, it does not. SQLite has no such index to suggest."""
    from app.core.db import get_engine
    from app.core.text_index import create_text_indexes, drop_text_indexes
    from app.web import browse as browse_page
    from tests.conftest import add_triples

    add_triples(5, head="PersonX waters plant {i}")
    monkeypatch.setattr(browse_page, "SLOW_TEXT_SECONDS", 0.0)  # every search is "slow"
    page = staff_client.get("/corpus/browse", params={"q": "plant"})
    assert page.status_code == 200
    assert ('id="slow-search"' in page.text) == (BACKEND == "postgres")
    assert 'id="slow-search"' not in staff_client.get("/corpus/browse").text
    if BACKEND != "postgres":
        return
    assert "skd db text-index" in page.text
    create_text_indexes(get_engine())
    try:
        assert 'id="slow-search"' not in staff_client.get("/corpus/browse?q=plant").text
    finally:
        drop_text_indexes(get_engine())
