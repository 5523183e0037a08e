"""Critic scoring over Celery workers: does another worker make a re-score proportionally faster?

Why: a re-score of a teacher corpus (millions of triples) is the critic loop's longest job, and
issue 4 (point 5) promises that it is split into chunk tasks so that more workers score
proportionally faster. What could break that: the chunk tasks queueing behind one another in
the broker, the workers serializing on the database's write lock (SQLite has one writer), or
the job counter row being a hot spot. This measures it with real worker processes.

What: N real triples from ``../shared/data/atomic2020_sample.tsv`` are imported into a fresh
database, and the packaged MiniLM (as a sequence classifier with a seeded head: the weights do
not change the cost) is registered as the active critic version. Then, for each worker count
k, the version's scores are deleted and a score job is sent exactly as the critic page's
"Score" button sends it (``request_scoring`` + ``dispatch_scoring``), with k Celery worker
processes (``celery -A workers.celery_app worker --pool=solo``) started beforehand, each
limited to ``--threads`` torch threads. The time is the job row's own ``finished_at -
started_at``: from the moment a worker picked up the job and planned its chunks to the last
chunk's commit (worker start-up is not in it; each worker's first model load is). Checks
after each run: the job succeeded, its count equals N and the scores table holds exactly N
rows.

With one thread per worker on this 2-core machine, k = 2 is what a second 1-core machine
would add; the ideal speed-up is k.

How to run (from the repository root)::

    .venv/bin/python bench/critic_workers_bench.py                     # SQLite, embedded default
    .venv/bin/python bench/critic_workers_bench.py --backend postgres  # PostgreSQL + Redis

The exit status is 0 when every run was complete and exact.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "atomic2020_sample.tsv"
PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/"


def configure_environment(args: argparse.Namespace, data_dir: Path) -> str | None:
    """SKD_* for this process and the workers; returns the PostgreSQL database to drop."""
    os.environ["SKD_DATA_DIR"] = str(data_dir)
    os.environ["SKD_CRITIC_SCORE_CHUNK_SIZE"] = str(args.chunk)
    os.environ["HF_HUB_OFFLINE"] = "1"
    if args.backend == "sqlite":
        return None
    import sqlalchemy

    name = f"skd_bench_{secrets.token_hex(4)}"
    admin = sqlalchemy.create_engine(PG_SERVER + "postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    os.environ["SKD_DATABASE_URL"] = PG_SERVER + name
    os.environ["SKD_BROKER_URL"] = "redis://127.0.0.1:6379/7"
    os.environ["SKD_RESULT_BACKEND"] = "redis://127.0.0.1:6379/7"
    return name


def drop_database(name: str) -> None:
    import sqlalchemy

    admin = sqlalchemy.create_engine(PG_SERVER + "postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def sample_file(source: Path, n: int, folder: Path) -> Path:
    """The first N distinct usable lines of the sample (``none`` tails skipped)."""
    out, seen = [], set()
    for line in source.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) != 3 or parts[2].strip().lower() == "none" or line in seen:
            continue
        seen.add(line)
        out.append(line)
        if len(out) == n:
            break
    if len(out) < n:
        raise SystemExit(f"{source} has only {len(out)} usable lines; ask for fewer with -n")
    path = folder / "sample.tsv"
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


def register_critic(data_dir: Path) -> int:
    """The packaged MiniLM with a seeded 2-label head, saved and made the active version."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from app.core.config import packaged_minilm_path
    from app.core.db import session_scope
    from app.core.models import CriticState, CriticVersion
    from app.critic.registry import activate

    base = packaged_minilm_path()
    torch.manual_seed(0)
    folder = data_dir / "models" / "bench-critic"
    AutoModelForSequenceClassification.from_pretrained(base, num_labels=2).save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    with session_scope(write=True) as session:
        version = CriticVersion(
            base_model=base,
            path=str(folder),
            state=CriticState.ready,
            metrics={"roc_auc": 0.5},
            threshold=0.5,
            hyperparameters={"names": True, "max_length": 64},
        )
        session.add(version)
        session.flush()
        activate(session, version.id)
        return version.id


def start_workers(k: int, threads: int) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker"]
    command += ["--pool=solo", "--without-gossip", "--without-mingle", "--loglevel=WARNING"]
    return [
        subprocess.Popen(
            [*command, "-n", f"bench{i}@%h"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(k)
    ]


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()


def one_run(version_id: int, k: int, threads: int, n: int, timeout: float) -> dict[str, float]:
    from sqlalchemy import delete, func, select

    from app.core.db import session_scope
    from app.core.models import Job, JobState, Score
    from app.critic import scoring_jobs
    from app.critic.queueing import dispatch_scoring

    with session_scope(write=True) as session:
        session.execute(delete(Score).where(Score.critic_version_id == version_id))
    workers = start_workers(k, threads)
    try:
        time.sleep(8)  # let the workers import torch and connect, so the job is not queued long
        with session_scope(write=True) as session:
            job = scoring_jobs.request_scoring(session, version_id)
            assert job is not None
            job_id = job.id
        dispatch_scoring(job_id)
        deadline = time.monotonic() + timeout
        while True:
            with session_scope() as session:
                job = session.get(Job, job_id)
                assert job is not None
                if job.state.finished:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"score job {job_id} did not finish in {timeout:.0f} s")
            time.sleep(0.2)
        with session_scope() as session:
            stored = session.scalar(
                select(func.count()).select_from(Score).where(Score.critic_version_id == version_id)
            )
    finally:
        stop_workers(workers)
    assert job.started_at is not None and job.finished_at is not None
    seconds = (job.finished_at - job.started_at).total_seconds()
    exact = job.state == JobState.succeeded and job.done == n and stored == n
    return {"seconds": seconds, "rate": n / seconds, "exact": float(exact), "done": job.done}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=6000, help="triples to score (default 6000)")
    parser.add_argument("--chunk", type=int, default=250, help="triples per chunk task")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="skd-workers-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        database = configure_environment(args, data_dir)
        try:
            from app.core import migrate
            from app.core.config import get_settings
            from app.core.db import configure
            from app.corpus.importer import import_files

            settings = get_settings()
            settings.ensure_dirs()
            migrate.upgrade(settings.database)
            configure(settings)
            summary = import_files([sample_file(args.data, args.n, Path(tmp))], source="bench")
            imported = summary.total("imported")  # the sample's near-duplicates are merged
            print(f"{args.backend}: imported {imported:,} triples; chunk {args.chunk}")
            version_id = register_critic(data_dir)
            results = {}
            for k in args.workers:
                results[k] = one_run(version_id, k, args.threads, imported, args.timeout)
                r = results[k]
                print(
                    f"  {k} worker(s) x {args.threads} thread(s): {r['seconds']:.1f} s, "
                    f"{r['rate']:.0f} triples/s, exact={bool(r['exact'])}",
                    flush=True,
                )
        finally:
            if database:
                drop_database(database)
    base = results[args.workers[0]]["rate"] / args.workers[0]
    print("\n| workers | seconds | triples/s | speed-up per worker (ideal 1.00) | exact |")
    print("|---:|---:|---:|---:|---|")
    for k, r in results.items():
        print(
            f"| {k} | {r['seconds']:.1f} | {r['rate']:.0f} | {r['rate'] / (base * k):.2f} "
            f"| {'yes' if r['exact'] else 'NO'} |"
        )
    return 0 if all(r["exact"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
