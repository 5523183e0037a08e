"""Input limits (issue #12, point 6): no file can take unbounded memory or time silently.

A gzip bomb holding one endless line stops at the line limit with ``file:line`` and flat
memory; a file that decompresses past its limit stops too; long reads keep reporting
progress; a deeply nested JSONL line is an error at its line, not a traceback; an empty file is
"no triples in FILE" with a non-zero exit; an upload over the limit is refused with 413.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.corpus.formats import CorpusFormatError, ParseStats, read_triples
from app.corpus.relations import ATOMIC2020_RELATIONS
from tests.conftest import ROOT

RELATIONS = frozenset(ATOMIC2020_RELATIONS)
GOOD = "PersonX bakes bread\txWant\tto eat it\n"

# `skd import`'s peak RSS over the same command on a one-line file: the stated bound (MiB).
RSS_BOUND_MIB = 64


def _gzip(path: Path, first: bytes, filler: bytes, repeat: int) -> Path:
    with gzip.open(path, "wb", compresslevel=6) as out:
        out.write(first)
        for _ in range(repeat):
            out.write(filler)
    return path


def _skd_import_with_peak_rss(path: Path, cwd: Path, **env: str) -> tuple[int, str, int]:
    """(exit code, output, peak RSS in KiB) of `skd import PATH`, measured from a wrapper
    whose only child is the command."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stdout.write(r.stdout + r.stderr)\n"
        "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(r.returncode)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", wrapper, sys.executable, "-m", "app.cli", "import", str(path)],
        cwd=cwd,
        env={**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    peak = int(output.rsplit("PEAK_RSS_KIB", 1)[1].split()[0])
    return result.returncode, output, peak


def test_a_gzip_bomb_with_one_endless_line_stops_at_the_line_limit_in_flat_memory(
    engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    # 200 MB of one line after a good one, in a ~200 KB gzip.
    bomb = _gzip(tmp_path / "bomb.tsv.gz", GOOD.encode(), b"x" * (1 << 20), 200)
    assert bomb.stat().st_size < 1_000_000
    code, output, bomb_rss = _skd_import_with_peak_rss(bomb, tmp_path)
    assert code != 0
    assert "bomb.tsv.gz:2: line longer than 1,048,576 bytes (SKD_MAX_LINE_BYTES)" in output
    assert "Traceback" not in output
    small = tmp_path / "small.tsv"
    small.write_text(GOOD)
    code, output, small_rss = _skd_import_with_peak_rss(small, tmp_path)
    assert code == 0, output
    assert bomb_rss - small_rss < RSS_BOUND_MIB * 1024, (bomb_rss, small_rss)


def test_decompressed_size_over_the_limit_is_refused_with_file_and_line(
    engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    blanks = _gzip(tmp_path / "blanks.tsv.gz", GOOD.encode(), b"\n" * (1 << 20), 40)
    code, output, _ = _skd_import_with_peak_rss(
        blanks, tmp_path, SKD_MAX_DECOMPRESSED_BYTES=str(8 << 20)
    )
    assert code != 0
    assert "blanks.tsv.gz:" in output
    assert "decompressed size exceeds 8,388,608 bytes (SKD_MAX_DECOMPRESSED_BYTES)" in output


def test_long_reads_without_triples_keep_reporting_progress(tmp_path: Path) -> None:
    """A job's heartbeat rides on its progress: 30 MB of blank lines must not go silent."""
    path = tmp_path / "mostly-blank.tsv"
    with path.open("wb") as out:
        for _ in range(30):
            out.write(b"\n" * (1 << 20))
        out.write(GOOD.encode())
    reports: list[int] = []
    triples = list(read_triples(path, RELATIONS, on_bytes=reports.append))
    assert len(triples) == 1
    assert len(reports) >= 30 and reports == sorted(reports)


@pytest.mark.parametrize(
    "depth,message",
    [(100_000, "invalid JSON (nested too deeply)"), (100, "JSON nested more than 64 levels deep")],
)
def test_deeply_nested_jsonl_is_an_error_at_its_line(tmp_path: Path, depth, message) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "deep.jsonl"
    good = json.dumps({"head": "PersonX naps", "relation": "xWant", "tail": "to rest"})
    deep = '{"head": "a", "relation": "xWant", "tail": "b", "x": ' + "[" * depth + "]" * depth
    path.write_text(good + "\n" + deep + "}\n")
    with pytest.raises(CorpusFormatError) as failure:
        list(read_triples(path, RELATIONS, stats=ParseStats()))
    assert str(failure.value) == f"{path}:2: {message}"


def test_deep_nesting_through_the_cli_gives_file_line_and_a_non_zero_exit(
    engine, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "deep.jsonl"
    path.write_text('{"head": "a", "relation": "xWant", "tail": "b", "x": ' + "[" * 50_000 + "\n")
    code, output, _ = _skd_import_with_peak_rss(path, tmp_path)
    assert code != 0 and "deep.jsonl:1: invalid JSON" in output and "Traceback" not in output


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_an_empty_file_is_no_triples_with_a_non_zero_exit(
    engine, tmp_path: Path, content: bytes
) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "empty.tsv"
    path.write_bytes(content)
    code, output, _ = _skd_import_with_peak_rss(path, tmp_path)
    assert code != 0
    assert f"no triples in {path}" in output and "nothing was imported" in output


def test_an_upload_over_the_limit_is_refused_with_413_naming_the_file(
    staff_client, settings, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(settings, "max_upload_bytes", 1000)
    files = [("files", ("big.tsv", GOOD.encode() * 100, "text/tab-separated-values"))]
    response = staff_client.post("/api/corpus/import", files=files)
    assert response.status_code == 413
    assert (
        "big.tsv" in response.json()["detail"]
        and "SKD_MAX_UPLOAD_BYTES" in (response.json()["detail"])
    )
    assert not any((settings.data_dir / "uploads").rglob("*big.tsv"))
