"""Import corpus files: read and validate everything first, then write it all in one transaction.

Reading every file before writing anything means a bad line in the last file costs no writes,
and the one transaction around the writes means a failure (or Ctrl-C) leaves the corpus as it
was. Duplicates are dropped twice: within the import by the normalized hash, and against the
corpus by the database's unique index on it.
"""

from __future__ import annotations

import gc
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.core.config import Settings, get_settings
from app.core.db import get_engine, is_sqlite, session_scope
from app.core.jobs import NullProgress, Progress
from app.corpus.formats import CorpusFormatError, ParseStats, read_triples
from app.corpus.load import Row, load_rows, meta_json
from app.corpus.normalize import triple_hash
from app.corpus.relations import allowed_relations
from app.corpus.sources import source_problem


@dataclass
class FileSummary:
    file: str
    format: str | None
    source: str
    lines: int = 0
    triples: int = 0
    duplicates_in_import: int = 0
    already_in_corpus: int = 0
    imported: int = 0
    labels: int = 0
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass
class ImportSummary:
    files: list[FileSummary]
    seconds: float = 0.0

    def total(self, name: str) -> int:
        return sum(getattr(f, name) for f in self.files)

    @property
    def skipped(self) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for f in self.files:
            counts.update(f.skipped)
        return dict(counts)

    def as_dict(self) -> dict[str, Any]:
        totals = {
            name: self.total(name)
            for name in (
                "lines",
                "triples",
                "duplicates_in_import",
                "already_in_corpus",
                "imported",
                "labels",
            )
        }
        return {
            "files": [asdict(f) for f in self.files],
            "totals": {**totals, "skipped": self.skipped},
            "seconds": round(self.seconds, 3),
            "rate_per_second": round(totals["imported"] / self.seconds) if self.seconds else None,
        }


def default_source(path: Path) -> str:
    """A source name from a file name: ``atomic2020_sample.tsv.gz`` -> ``atomic2020_sample``."""
    name = path.name.removesuffix(".gz")
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return stem or "import"


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while an import builds its millions of rows.

    The rows make no reference cycles, but every few hundred new objects the collector walks
    the young ones and, as they pile up, now and then all of them: on a 1M-triple file that was
    a quarter of the reading time. Reference counting still frees everything as usual.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@_cyclic_gc_paused()
def import_files(
    paths: Sequence[Path | str],
    *,
    source: str | None = None,
    fmt: str | None = None,
    display_names: Sequence[str] | None = None,
    progress: Progress | None = None,
    settings: Settings | None = None,
) -> ImportSummary:
    """Import triple files into the corpus, all or nothing.

    Raises CorpusFormatError (file, line, field) on the first bad input, before any write;
    a file without a single triple is bad input too. Lines and decompressed sizes beyond the
    settings' limits are refused where they occur, so memory stays bounded.
    """
    settings = settings or get_settings()
    progress = progress or NullProgress()
    started = time.perf_counter()
    files = [Path(p) for p in paths]
    names = list(display_names) if display_names else [str(p) for p in files]
    for path, name in zip(files, names, strict=True):
        if not path.is_file():
            raise CorpusFormatError(name, None, None, "no such file")
    sizes = [max(os.path.getsize(p), 1) for p in files]
    total_bytes = sum(sizes)
    total_steps = 2 * total_bytes  # first half: reading (bytes); second half: writing (rows)
    progress.update(0, total_steps, "reading", force=True)

    seen: set[str] = set()
    parsed: list[tuple[FileSummary, list[Row]]] = []
    read_before = 0
    for path, name, size in zip(files, names, sizes, strict=True):
        summary = FileSummary(file=name, format=fmt, source=source or default_source(Path(name)))
        problem = source_problem(summary.source)
        if problem:
            named = "" if source else " (taken from the file's name; give a source name instead)"
            raise CorpusFormatError(name, None, "source", f"{summary.source!r}: {problem}{named}")
        stats = ParseStats()
        rows: list[Row] = []
        count_in_file = 0

        def on_bytes(position: int, _before: int = read_before, _name: str = name) -> None:
            progress.update(
                _before + position,
                message=f"reading {_name}: {count_in_file + len(rows):,} triples",  # noqa: B023
            )

        triples = duplicates = 0
        add_row = rows.append
        for triple in read_triples(
            path,
            allowed_relations(settings),
            fmt=fmt,
            stats=stats,
            on_bytes=on_bytes,
            display_name=name,
            max_line_bytes=settings.max_line_bytes,
            max_decompressed_bytes=settings.max_decompressed_bytes,
        ):
            triples += 1
            key = triple_hash(triple.head, triple.relation, triple.tail)
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            add_row(
                Row(
                    triple.head,
                    triple.relation,
                    triple.tail,
                    key,
                    triple.line,
                    triple.split,
                    meta_json(triple.meta) if triple.meta else None,
                    triple.label,
                )
            )
        if triples == 0:  # an empty file is a mistake (wrong file, truncated copy), not a no-op
            raise CorpusFormatError(name, None, None, f"no triples in {name}")
        summary.triples = triples
        summary.duplicates_in_import = duplicates
        summary.lines = stats.lines
        summary.skipped = dict(stats.skipped)
        parsed.append((summary, rows))
        read_before += size

    total_rows = sum(len(rows) for _, rows in parsed)
    progress.update(total_bytes, message=f"writing {total_rows:,} triples", force=True)
    scaled = _ScaledProgress(progress, offset=total_bytes, total_rows=total_rows, span=total_bytes)
    written = 0
    # SQLite has one writer: progress rows cannot be written while the import's transaction
    # holds the lock, so the job row shows "writing" until the commit (the CLI bar still moves).
    # The pause is entered before the transaction and left after it, when the lock is free.
    hold = progress.paused() if is_sqlite(get_engine()) else nullcontext()
    with hold, session_scope(write=True) as session:
        for summary, rows in parsed:
            result = load_rows(
                session,
                rows,
                source=summary.source,
                source_file=summary.file,
                batch_size=settings.import_batch_size,
                progress=scaled,
                done_before=written,
            )
            written += len(rows)
            summary.imported = result.inserted
            summary.already_in_corpus = len(rows) - result.inserted
            summary.labels = result.labels
    summary_all = ImportSummary([file_summary for file_summary, _ in parsed])
    summary_all.seconds = time.perf_counter() - started
    progress.update(
        total_steps,
        message=f"imported {summary_all.total('imported'):,} triples",
        force=True,
    )
    return summary_all


class _ScaledProgress(NullProgress):
    """Maps rows written onto the second half of the import's progress scale."""

    def __init__(self, inner: Progress, *, offset: int, total_rows: int, span: int) -> None:
        self.inner, self.offset, self.total_rows, self.span = inner, offset, total_rows, span

    def update(
        self,
        done: int,
        total: int | None = None,
        message: str | None = None,
        *,
        force: bool = False,
    ) -> None:
        fraction = done / self.total_rows if self.total_rows else 1.0
        self.inner.update(
            self.offset + int(fraction * self.span),
            message=message or f"writing: {done:,} of {self.total_rows:,} triples",
            force=force,
        )


def run_import_job(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """The job body for imports (Celery task and CLI alike): params name the files."""
    summary = import_files(
        params["paths"],
        source=params.get("source"),
        fmt=params.get("format"),
        display_names=params.get("names"),
        progress=progress,
    )
    result = summary.as_dict()
    result["message"] = (
        f"imported {result['totals']['imported']:,} of {result['totals']['triples']:,} triples"
    )
    return result
