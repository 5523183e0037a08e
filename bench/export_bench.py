"""Export benchmark: how long does ``skd export`` take on a million scored triples, and how
much memory does it need?

Why: an ATOMIC-10X-sized graph is millions of triples, and the export promises constant
memory (server-side cursors, one streamed pass for every format). Targets on the 2-core
development machine: JSONL alone in under 20 s, peak RSS under 300 MB.

What: a fresh database (PostgreSQL by default) gets N synthetic triples loaded directly with
COPY (this is not an import benchmark): ATOMIC-10X's seven relations, heads with 1-12
triples each, two sources, an active critic version with a held-out PR curve, a score for
every triple, 20,000 imported human labels and a calibration campaign of 2,000 labelled
items (so the label table and the precision estimate do real work). Then, as subprocesses
with a clean environment, timed from start to exit:

1. ``skd export --format jsonl --target-recall 0.8 --out DIR`` (JSONL alone);
2. the same with every format (TSV, JSONL, Parquet, student).

``--threshold 0`` exports every triple instead (the worst case for the writers).

Each run's peak RSS comes from ``wait4`` (the child's own maximum resident set); the job's
in-process time from its row. Checks: the JSONL holds exactly the kept count the job
reported, the archive exists, and no head is in two splits.

How to run (from the repository root; PostgreSQL at 127.0.0.1:5432 with trust auth)::

    .venv/bin/python bench/export_bench.py -n 1000000
    .venv/bin/python bench/export_bench.py -n 1000000 --threshold 0
    .venv/bin/python bench/export_bench.py -n 200000 --backend sqlite

The PostgreSQL database is created as ``skd_bench_export_<random>`` and dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import blake2b
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SKD = str(VENV_BIN / "skd") if (VENV_BIN / "skd").exists() else "skd"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/"
TARGET_JSONL_SECONDS = 20.0
TARGET_RSS_MB = 300.0

RELATIONS = ("xAttr", "xEffect", "xIntent", "xNeed", "xReact", "xWant", "HinderedBy")
SUBJECTS = ("PersonX", "PersonX's friend", "PersonX and PersonY")
VERBS = (
    "bakes", "buys", "cleans", "paints", "fixes", "sells", "borrows", "loses", "finds", "writes",
    "reads", "drives", "cooks", "washes", "builds", "breaks", "opens", "carries", "orders",
    "wraps", "hides", "plants", "throws", "catches", "packs",
)  # fmt: skip
NOUNS = (
    "bread", "car", "dishes", "house", "bike", "book", "letter", "cake", "garden", "phone",
    "door", "lamp", "table", "shirt", "window", "guitar", "ticket", "present", "box", "map",
    "coat", "chair", "kite", "wallet", "letterbox", "fence",
)  # fmt: skip
PLACES = (
    "at home", "at work", "at the park", "in the city", "at school", "on the weekend",
    "after dinner",
)  # fmt: skip
TAILS = (
    "to rest", "to eat it", "happy", "proud", "tired", "careful", "to go home", "gets paid",
    "a new one", "the money", "to thank them", "relieved", "helpful", "to call a friend",
    "buys more", "cleans up", "the rain",
)  # fmt: skip
CREATED = datetime(2026, 11, 1, tzinfo=UTC)
PR_CURVE = {
    "threshold": [0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1],
    "precision": [0.97, 0.95, 0.93, 0.9, 0.88, 0.86, 0.83, 0.81, 0.79, 0.77],
    "recall": [0.2, 0.35, 0.5, 0.62, 0.72, 0.8, 0.86, 0.91, 0.96, 1.0],
}


def synthetic(n: int, seed: int) -> Iterator[tuple[int, str, str, str, str, str]]:
    """(id, head, relation, tail, norm_hash, source) for n triples, heads in blocks."""
    rng = random.Random(seed)
    triple_id = 0
    while triple_id < n:
        head = (
            f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} the {rng.choice(NOUNS)} "
            f"{rng.choice(PLACES)} {rng.randrange(10**6)}"
        )
        source = "teacher-gpt3" if rng.random() < 0.9 else "teacher-local"
        for _ in range(min(rng.randint(1, 12), n - triple_id)):
            triple_id += 1
            tail = f"{rng.choice(TAILS)} {rng.choice(NOUNS)} {triple_id}"
            key = blake2b(str(triple_id).encode(), digest_size=16).hexdigest()
            yield triple_id, head, rng.choice(RELATIONS), tail, key, source


def _libpq(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return (
        make_url(url)
        .set(drivername="postgresql", database=database)
        .render_as_string(hide_password=False)
    )


def clean_env(**skd: str) -> dict[str, str]:
    """No inherited ``SKD_`` settings (commands run in a temporary folder: no ``.env`` either)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKD_")}
    env.update(skd)
    env["SKD_SECRET_KEY"] = "bench-" + secrets.token_hex(16)
    return env


@dataclass
class Database:
    backend: str
    env: dict[str, str]
    sqlite_path: Path | None = None
    libpq: str | None = None

    @contextmanager
    def connect(self) -> Iterator[Any]:
        if self.sqlite_path is not None:
            with closing(sqlite3.connect(self.sqlite_path)) as conn:
                yield conn
                conn.commit()
            return
        import psycopg

        assert self.libpq is not None
        with psycopg.connect(self.libpq) as conn:
            yield conn


@contextmanager
def fresh_database(backend: str, workdir: Path, pg_url: str) -> Iterator[Database]:
    data_dir = workdir / f"data-{backend}"
    data_dir.mkdir()
    if backend == "sqlite":
        yield Database(backend, clean_env(SKD_DATA_DIR=str(data_dir)), data_dir / "skd.sqlite")
        return
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"skd_bench_export_{secrets.token_hex(4)}"
    admin = _libpq(pg_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
        env = clean_env(SKD_DATA_DIR=str(data_dir), SKD_DATABASE_URL=url)
        yield Database(backend, env, libpq=_libpq(pg_url, name))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- loading the data (COPY on PostgreSQL, executemany on SQLite) ------------------------------


def load(db: Database, n: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed + 1)
    metrics = {
        "n": 2000,
        "acceptable": 1540,
        "roc_auc": 0.84,
        "average_precision": 0.93,
        "pr_curve": PR_CURVE,
    }
    labelled = rng.sample(range(1, n + 1), min(n, 22_000))
    imported, calibration = labelled[:20_000], labelled[20_000:]
    tables: dict[str, tuple[list[str], Iterator[tuple[Any, ...]]]] = {
        "triples": (
            ["id", "head", "relation", "tail", "norm_hash", "source", "created_at"],
            ((*row, CREATED) for row in synthetic(n, seed)),
        ),
        "critic_versions": (
            ["id", "base_model", "state", "label_snapshot", "hyperparameters", "metrics"]
            + ["created_at"],
            iter([(1, "bench", "active", "{}", "{}", json.dumps(metrics), CREATED)]),
        ),
        "scores": (
            ["critic_version_id", "triple_id", "p_accept"],
            ((1, t, round(rng.random() ** 0.6, 6)) for t in range(1, n + 1)),
        ),
        "users": (
            ["id", "role", "platform", "external_id", "is_active", "excluded", "created_at"],
            iter([(1, "annotator", "prolific", "bench", True, False, CREATED)]),
        ),
        "campaigns": (
            ["id", "name", "purpose", "state", "ratings_per_item", "lease_seconds", "guidelines"]
            + ["answer_scale", "selection", "gold_rate", "min_gold_accuracy", "speeder_seconds"]
            + ["share_token", "created_at"],
            iter(
                [(1, "cal", "calibration", "open", 1, 600, "", "[]", "{}", 0, 0.7, 2, "b", CREATED)]
            ),
        ),
        "campaign_items": (
            ["id", "campaign_id", "triple_id", "ratings_needed", "ratings_done", "leases_active"]
            + ["sort_key", "is_gold"],
            ((i, 1, t, 1, 1, 0, 0.0, False) for i, t in enumerate(calibration, 1)),
        ),
        "ratings": (
            ["triple_id", "item_id", "annotator_id", "origin", "answer", "submission_id"]
            + ["created_at"],
            _ratings(rng, imported, calibration),
        ),
    }
    with db.connect() as conn:
        for table, (columns, rows) in tables.items():
            _copy(db, conn, table, columns, rows)
        if db.backend == "postgres":
            conn.execute("SELECT setval('triples_id_seq', %s)", (n,))
            conn.execute("ANALYZE")
    return {"triples": n, "imported_labels": len(imported), "calibration": len(calibration)}


def _ratings(
    rng: random.Random, imported: list[int], calibration: list[int]
) -> Iterator[tuple[Any, ...]]:
    for t in imported:
        answer = rng.choice((2, 1, 1, -1, -2))
        yield (t, None, None, "imported", answer, f"i{t}", CREATED)
    for item, t in enumerate(calibration, 1):
        answer = 2 if rng.random() < 0.8 else -1
        yield (t, item, 1, "campaign", answer, f"c{t}", CREATED)


def _copy(db: Database, conn: Any, table: str, columns: list[str], rows: Iterator) -> None:
    if db.backend == "sqlite":
        marks = ", ".join("?" for _ in columns)
        conn.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
            (
                tuple(v.isoformat(" ") if isinstance(v, datetime) else v for v in row)
                for row in rows
            ),
        )
        return
    with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


# --- running the export -------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    seconds: float
    peak_rss_mb: float
    job_seconds: float
    kept: int
    archive_mb: float
    folder_mb: float

    @property
    def met(self) -> bool:
        ok_time = self.name != "jsonl" or self.seconds < TARGET_JSONL_SECONDS
        return ok_time and self.peak_rss_mb < TARGET_RSS_MB


def run_export(
    db: Database, workdir: Path, name: str, formats: list[str], threshold: float | None
) -> Run:
    out = workdir / f"export-{name}"
    rule = ["--target-recall", "0.8"] if threshold is None else ["--threshold", str(threshold)]
    args = [SKD, "export", *rule, "--out", str(out)]
    for fmt in formats:
        args += ["--format", fmt]
    started = time.perf_counter()
    proc = subprocess.Popen(
        args, env=db.env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _pid, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    stdout, stderr = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(args)} failed:\n{stdout.decode()}\n{stderr.decode()}")
    with db.connect() as conn:
        cursor = conn.cursor()
        cursor.execute(
            "SELECT started_at, finished_at, result FROM jobs WHERE kind = 'export' "
            "ORDER BY id DESC LIMIT 1"
        )
        started_at, finished_at, result = cursor.fetchone()
    if isinstance(started_at, str):  # SQLite
        started_at, finished_at = map(datetime.fromisoformat, (started_at, finished_at))
        result = json.loads(result)
    kept = int(result["total"])
    if "jsonl" in formats:
        _check(out, kept)
    archive = Path(str(out) + ".tar.gz")
    assert archive.is_file(), "no archive"
    folder_bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return Run(
        name=name,
        seconds=seconds,
        peak_rss_mb=usage.ru_maxrss / 1024,  # kilobytes on Linux
        job_seconds=(finished_at - started_at).total_seconds(),
        kept=kept,
        archive_mb=archive.stat().st_size / 2**20,
        folder_mb=folder_bytes / 2**20,
    )


def _check(out: Path, kept: int) -> None:
    """Every kept triple is in the JSONL once, and no head is in two splits."""
    lines = 0
    heads: dict[str, str] = {}
    for path in sorted((out / "jsonl").iterdir()):
        split = path.stem
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                lines += 1
                head = " ".join(json.loads(line)["head"].split()).casefold().rstrip(". ")
                if heads.setdefault(head, split) != split:
                    sys.exit(f"head {head!r} is in two splits")
    if lines != kept:
        sys.exit(f"the JSONL has {lines:,} lines, the job kept {kept:,}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1_000_000, help="scored triples")
    parser.add_argument("--backend", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--postgres-url", default=DEFAULT_PG_URL)
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each export")
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="export with this score threshold (0 keeps every triple); default: target "
        "recall 0.8, which keeps about 68%% of the synthetic scores",
    )
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="skd-export-bench-"))
    runs: list[Run] = []
    try:
        with fresh_database(args.backend, workdir, args.postgres_url) as db:
            subprocess.run([SKD, "db", "upgrade"], env=db.env, cwd=workdir, check=True)
            started = time.perf_counter()
            loaded = load(db, args.n, args.seed)
            print(
                f"loaded {loaded['triples']:,} scored triples, {loaded['imported_labels']:,} "
                f"imported labels, {loaded['calibration']:,} calibration labels on "
                f"{args.backend} in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            for attempt in range(args.repeat):
                for name, formats in (
                    ("jsonl", ["jsonl"]),
                    ("all formats", ["atomic-tsv", "jsonl", "parquet", "student"]),
                ):
                    label = f"{name}-{attempt}".replace(" ", "-")
                    run = run_export(db, workdir, label, formats, args.threshold)
                    run.name = name
                    runs.append(run)
                    print(_row(run), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print("| export | kept | wall s | in-job s | peak RSS MB | folder MB | .tar.gz MB | met? |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for run in runs:
        print(_row(run))
    return 0 if all(run.met for run in runs) else 1


def _row(run: Run) -> str:
    return (
        f"| {run.name} | {run.kept:,} | {run.seconds:.1f} | {run.job_seconds:.1f} | "
        f"{run.peak_rss_mb:.0f} | {run.folder_mb:.0f} | {run.archive_mb:.0f} | "
        f"{'yes' if run.met else 'no'} |"
    )


if __name__ == "__main__":
    sys.exit(main())
