"""Corpus import benchmark: how fast does ``skd import`` load a large ATOMIC-style TSV?

Why: the paper's corpora are big (ATOMIC 2020 has ~1.3M triples, ATOMIC-10X ~6.5M), and an
import runs as one all-or-nothing transaction, so its speed decides whether loading a corpus
is a coffee break or an afternoon. Targets: PostgreSQL >= 50,000 triples/s and 1,000,000 triples
in under 30 s; SQLite >= 20,000 triples/s.

What: generates N synthetic triples (seeded, so runs are comparable): PersonX events built from
word lists, the 23 ATOMIC 2020 relations, relation-specific tails, plus a small fraction of exact
duplicate lines, near duplicates (case, final period, doubled spaces) and ``none`` tails so those
code paths run. It writes them to a TSV in a temporary folder and, for each backend, on a fresh
database: runs ``skd db upgrade`` (not timed), times ``skd import FILE`` as a subprocess (wall
clock, from a clean environment: only the ``SKD_`` variables set here), then checks that the
triples table holds exactly the number of unique, non-``none`` triples generated.

With ``--split`` it also imports the same file once more into another fresh database through
the Python API (``import_files``, in a child process), to time reading+validating apart from
writing.

How to run (from the repository root; PostgreSQL at 127.0.0.1:5432 with trust auth)::

    .venv/bin/python bench/import_bench.py -n 1000000
    .venv/bin/python bench/import_bench.py -n 200000 --backends sqlite --split

The PostgreSQL database is created as ``skd_bench_<random>`` and dropped at the end.
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
import unicodedata
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.corpus.relations import ATOMIC2020_RELATIONS  # noqa: E402

VENV_BIN = Path(sys.executable).parent
SKD = str(VENV_BIN / "skd") if (VENV_BIN / "skd").exists() else "skd"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/"

# Targets: (minimum triples/s, maximum seconds for 1,000,000 triples or None).
TARGETS: dict[str, tuple[int, float | None]] = {
    "postgres": (50_000, 30.0),
    "sqlite": (20_000, None),
}

# --- synthetic ATOMIC-like data -------------------------------------------------------------

VERBS = [
    ("bakes", "bake"), ("buys", "buy"), ("cleans", "clean"), ("paints", "paint"),
    ("fixes", "fix"), ("sells", "sell"), ("borrows", "borrow"), ("loses", "lose"),
    ("finds", "find"), ("writes", "write"), ("reads", "read"), ("drives", "drive"),
    ("cooks", "cook"), ("washes", "wash"), ("builds", "build"), ("breaks", "break"),
    ("opens", "open"), ("carries", "carry"), ("steals", "steal"), ("orders", "order"),
    ("wraps", "wrap"), ("hides", "hide"), ("plants", "plant"), ("throws", "throw"),
    ("catches", "catch"), ("repairs", "repair"), ("decorates", "decorate"), ("packs", "pack"),
    ("returns", "return"), ("shares", "share"), ("sends", "send"), ("brings", "bring"),
    ("forgets", "forget"), ("grabs", "grab"), ("tries", "try"), ("eats", "eat"),
    ("drops", "drop"), ("checks", "check"), ("chooses", "choose"), ("rents", "rent"),
    ("donates", "donate"), ("counts", "count"), ("polishes", "polish"), ("sorts", "sort"),
    ("hangs", "hang"), ("folds", "fold"), ("sketches", "sketch"), ("measures", "measure"),
]  # fmt: skip
NOUNS = [
    "bread", "car", "dishes", "house", "bike", "book", "letter", "cake", "garden", "phone",
    "laptop", "guitar", "dog", "coffee", "sandwich", "shirt", "umbrella", "ticket", "present",
    "homework", "fence", "window", "package", "wallet", "key", "map", "painting", "chair",
    "table", "lamp", "soup", "pie", "boat", "kite", "camera", "watch", "ring", "scarf", "shoes",
    "jacket", "recipe", "song", "poem", "report", "budget", "plan", "puzzle", "quilt", "vase",
    "bottle", "tent", "backpack", "ladder", "hammer", "blanket", "pillow", "candle", "clock",
    "mirror", "basket", "notebook", "pencil", "sweater", "salad", "pizza", "tea", "cookie",
    "newspaper", "magazine", "email", "contract", "résumé", "café table",
]  # fmt: skip
ADJECTIVES = [
    "old", "new", "broken", "favorite", "expensive", "cheap", "heavy", "small", "huge", "red",
    "wooden", "shiny", "dusty", "borrowed", "antique", "fragile", "homemade", "rented", "lost",
    "spare", "tiny", "beautiful", "messy", "clean", "warm", "cold", "fresh", "stale", "rare",
]  # fmt: skip
PLACES = [
    "park", "store", "beach", "office", "library", "kitchen", "garage", "market", "school",
    "hospital", "airport", "station", "museum", "gym", "bakery", "church", "mall", "farm",
    "restaurant", "bank", "post office", "backyard", "attic", "basement", "cafe", "hotel",
]  # fmt: skip
TRAITS = [
    "generous", "careful", "lazy", "helpful", "kind", "responsible", "creative", "curious",
    "patient", "rude", "brave", "clumsy", "organized", "thoughtful", "hardworking", "selfish",
    "friendly", "determined", "skilled", "caring", "impatient", "honest", "reckless", "naïve",
]  # fmt: skip
FEELINGS = [
    "happy", "proud", "tired", "relieved", "nervous", "excited", "sad", "grateful", "angry",
    "satisfied", "annoyed", "embarrassed", "content", "worried", "accomplished", "surprised",
]  # fmt: skip
ADVERBS = ["very", "a bit", "really", "quite", "somewhat", "extremely"]
DETERMINERS = ["a", "the", "their", "PersonY's", "a friend's"]
PEOPLE = ["PersonY", "a friend", "their mom", "the neighbor", "a coworker", "the teacher"]
PHYSICAL = {"ObjectUse", "AtLocation", "MadeUpOf", "HasProperty", "CapableOf"}
DESIRE = {"Desires", "NotDesires"}


class TripleMaker:
    """Seeded generator of ATOMIC-2020-like heads and relation-specific tails."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.social = [r for r in ATOMIC2020_RELATIONS if r not in PHYSICAL | DESIRE]
        self.physical = [r for r in ATOMIC2020_RELATIONS if r in PHYSICAL]
        self.desire = [r for r in ATOMIC2020_RELATIONS if r in DESIRE]

    def _c(self, words: list[str]) -> str:
        return words[self.rng.randrange(len(words))]

    def thing(self) -> str:
        if self.rng.random() < 0.3:
            return f"{self._c(DETERMINERS)} {self._c(ADJECTIVES)} {self._c(NOUNS)}"
        return f"{self._c(DETERMINERS)} {self._c(NOUNS)}"

    def event(self, subject: str = "PersonX") -> str:
        verb = self._c(VERBS)[0]
        roll = self.rng.random()
        if roll < 0.45:
            return f"{subject} {verb} {self.thing()}"
        if roll < 0.7:
            return f"{subject} {verb} {self.thing()} at the {self._c(PLACES)}"
        if roll < 0.85:
            return f"{subject} {verb} {self.thing()} for {self._c(PEOPLE)}"
        return f"{subject} goes to the {self._c(PLACES)} to {self._c(VERBS)[1]} {self.thing()}"

    def action(self) -> str:
        return f"{self._c(VERBS)[1]} {self.thing()}"

    def tail(self, relation: str) -> str:
        c, rng = self._c, self.rng
        match relation:
            case "xAttr":
                return c(TRAITS) if rng.random() < 0.6 else f"{c(ADVERBS)} {c(TRAITS)}"
            case "xReact" | "oReact":
                return c(FEELINGS) if rng.random() < 0.5 else f"{c(ADVERBS)} {c(FEELINGS)}"
            case "xIntent" | "xWant" | "oWant" | "xNeed":
                if rng.random() < 0.2:
                    return f"to go to the {c(PLACES)}"
                return f"to {self.action()}"
            case "xEffect" | "oEffect":
                if rng.random() < 0.3:
                    return f"gets {c(FEELINGS)}"
                return f"{c(VERBS)[0]} {self.thing()}"
            case "HinderedBy":
                return rng.choice(
                    [
                        f"PersonX can't find {self.thing()}",
                        f"PersonX doesn't have {self.thing()}",
                        f"the {c(PLACES)} is closed",
                        f"PersonX is too {c(FEELINGS)}",
                    ]
                )
            case "isAfter" | "isBefore" | "HasSubEvent" | "Causes":
                return self.event()
            case "xReason":
                return f"PersonX wants to {self.action()}"
            case "isFilledBy":
                return c(NOUNS)
            case "ObjectUse" | "CapableOf":
                return self.action()
            case "AtLocation":
                return f"the {c(PLACES)}"
            case "MadeUpOf":
                return c(NOUNS)
            case "HasProperty":
                return c(ADJECTIVES)
            case _:  # Desires, NotDesires
                return c(NOUNS) if rng.random() < 0.5 else f"to {self.action()}"

    def blocks(self) -> Iterator[tuple[str, str, str]]:
        """Endless triples, grouped by head as in the ATOMIC files."""
        rng = self.rng
        while True:
            roll = rng.random()
            if roll < 0.85:
                head, relations = self.event(), self.social
            elif roll < 0.95:
                head, relations = f"{self._c(ADJECTIVES)} {self._c(NOUNS)}", self.physical
            else:
                head, relations = self._c(PEOPLE), self.desire
            for _ in range(rng.randint(3, 24)):
                relation = relations[rng.randrange(len(relations))]
                yield head, relation, self.tail(relation)


def _norm_key(head: str, relation: str, tail: str) -> tuple[str, str, str]:
    """The documented dedup semantics, written out independently of app.corpus.normalize:
    NFC, whitespace collapsed, case folded, final periods/spaces ignored."""

    def part(text: str) -> str:
        return " ".join(unicodedata.normalize("NFC", text).split()).casefold().rstrip(". ")

    return part(head), relation, part(tail)


@dataclass
class Corpus:
    path: Path
    lines: int
    expected_rows: int
    exact_duplicates: int
    near_duplicates: int
    none_tails: int


def generate(
    path: Path, n: int, seed: int, dup_rate: float, near_rate: float, none_rate: float
) -> Corpus:
    """Write ``n`` triple lines (plus a header) to ``path``; count what an import must keep."""
    rng = random.Random(seed)
    maker = TripleMaker(rng)
    source = maker.blocks()
    lines: list[tuple[str, str, str]] = []
    keys: set[tuple[str, str, str]] = set()
    exact = near = nones = 0
    for _ in range(n):
        roll = rng.random()
        if lines and roll < dup_rate:
            triple = lines[rng.randrange(max(0, len(lines) - 5000), len(lines))]
            exact += 1
        elif lines and roll < dup_rate + near_rate:
            head, relation, tail = lines[rng.randrange(max(0, len(lines) - 5000), len(lines))]
            variant = rng.randrange(3)
            if variant == 0:
                tail = tail.rstrip(".") + "."
            elif variant == 1:
                head = head.upper() if rng.random() < 0.5 else head.lower()
            else:
                head = head.replace(" ", "  ", 1)
            triple = (head, relation, tail)
            near += 1
        elif roll < dup_rate + near_rate + none_rate:
            head, relation, _ = next(source)
            triple = (head, relation, "none" if rng.random() < 0.9 else "None")
            nones += 1
        else:
            triple = next(source)
        lines.append(triple)
        if triple[2].casefold() not in ("none", "none."):
            keys.add(_norm_key(*triple))
    with path.open("w", encoding="utf-8") as handle:
        handle.write("head\trelation\ttail\n")
        handle.write("".join(f"{h}\t{r}\t{t}\n" for h, r, t in lines))
    return Corpus(path, n, len(keys), exact, near, nones)


# --- running the CLI ------------------------------------------------------------------------


def clean_env(**skd: str) -> dict[str, str]:
    """This shell's environment without any ``SKD_`` settings, plus the given ones (commands run
    in the temporary folder, so no ``.env`` file is read either)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKD_")}
    env.update(skd)
    env["SKD_SECRET_KEY"] = "bench-" + secrets.token_hex(16)
    return env


def run(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """Run a command; return (wall seconds, output) or exit with its output on failure."""
    started = time.perf_counter()
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return seconds, proc.stdout + proc.stderr


@dataclass
class Database:
    """One fresh database for one run: the ``SKD_`` variables and a way to query it."""

    backend: str
    env: dict[str, str]
    sqlite_path: Path | None = None
    pg_url: str | None = None

    def query(self, sql: str) -> Any:
        if self.sqlite_path is not None:
            with closing(sqlite3.connect(self.sqlite_path)) as conn:
                return conn.execute(sql).fetchone()[0]
        import psycopg

        assert self.pg_url is not None
        with psycopg.connect(self.pg_url) as conn:
            row = conn.execute(sql).fetchone()
            return row[0] if row else None


def _libpq(url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return (
        make_url(url)
        .set(drivername="postgresql", database=database)
        .render_as_string(hide_password=False)
    )


@contextmanager
def fresh_database(backend: str, workdir: Path, pg_url: str) -> Iterator[Database]:
    """A new, empty database (SQLite data dir, or a PostgreSQL database dropped afterwards)."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"skd-{backend}-", dir=workdir))
    if backend == "sqlite":
        env = clean_env(SKD_DATA_DIR=str(data_dir))
        yield Database(backend, env, sqlite_path=data_dir / "skd.sqlite")
        return
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"skd_bench_{secrets.token_hex(5)}"
    admin = _libpq(pg_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(pg_url).set(database=name).render_as_string(hide_password=False)
        env = clean_env(SKD_DATA_DIR=str(data_dir), SKD_DATABASE_URL=url)
        yield Database(backend, env, pg_url=_libpq(pg_url, name))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cpu_pressure() -> float | None:
    """Share of the last 10 s in which runnable tasks waited for a CPU (Linux PSI), in %.

    Other work on a 2-core machine slows a run down; this says how busy it was."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    fields = dict(part.split("=") for part in line.split()[1:])
    return float(fields["avg10"])


@dataclass
class Result:
    backend: str
    n: int
    seconds: float
    job_seconds: float | None
    rows: int
    expected: int
    load: float = 0.0
    pressure: float | None = None
    parse_seconds: float | None = None
    write_seconds: float | None = None

    @property
    def rate(self) -> float:
        return self.n / self.seconds

    @property
    def target(self) -> str:
        rate, limit = TARGETS[self.backend]
        return f">= {rate:,}/s" + (f", 1M < {limit:.0f} s" if limit else "")

    @property
    def met(self) -> bool:
        rate, limit = TARGETS[self.backend]
        ok = self.rate >= rate and self.rows == self.expected
        if limit is not None and self.n >= 1_000_000:
            ok = ok and self.seconds * 1_000_000 / self.n < limit
        return ok


def bench_backend(backend: str, corpus: Corpus, workdir: Path, pg_url: str) -> Result:
    with fresh_database(backend, workdir, pg_url) as db:
        run([SKD, "db", "upgrade"], db.env, workdir)
        cmd = [SKD, "import", str(corpus.path), "--source", "bench", "--format", "atomic-tsv"]
        seconds, _output = run(cmd, db.env, workdir)
        load, pressure = os.getloadavg()[0], cpu_pressure()
        rows = int(db.query("SELECT count(*) FROM triples"))
        result = db.query("SELECT result FROM jobs WHERE kind = 'import' ORDER BY id DESC LIMIT 1")
        if isinstance(result, str):
            result = json.loads(result)
        job_seconds = float(result["seconds"]) if result else None
    return Result(
        backend, corpus.lines, seconds, job_seconds, rows, corpus.expected_rows, load, pressure
    )


def split_backend(backend: str, corpus: Corpus, workdir: Path, pg_url: str) -> dict[str, float]:
    """Read vs write time of the same import through the Python API, in a child process."""
    with fresh_database(backend, workdir, pg_url) as db:
        run([SKD, "db", "upgrade"], db.env, workdir)
        _, output = run(
            [sys.executable, __file__, "--split-worker", str(corpus.path)], db.env, workdir
        )
        return json.loads(output.strip().splitlines()[-1])


def split_worker(path: str) -> None:
    """Child process of ``--split``: import ``path`` in-process, print phase times as JSON."""
    from app.corpus.importer import import_files

    class Timer:
        def __init__(self) -> None:
            self.started = time.perf_counter()
            self.writing: float | None = None

        def update(
            self, done: int, total: int | None = None, message: str | None = None, **_: Any
        ) -> None:
            if self.writing is None and message and message.startswith("writing"):
                self.writing = time.perf_counter()

        @contextmanager
        def paused(self) -> Iterator[None]:
            yield

    timer = Timer()
    import_files([path], source="bench", fmt="atomic-tsv", progress=timer)
    ended = time.perf_counter()
    assert timer.writing is not None
    parse = timer.writing - timer.started
    print(json.dumps({"parse": parse, "write": ended - timer.writing}))


# --- main -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1_000_000, help="triples to generate")
    parser.add_argument("--seed", type=int, default=20261123, help="random seed")
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite,postgres")
    parser.add_argument("--postgres-url", default=DEFAULT_PG_URL, help="server (no database)")
    parser.add_argument("--dup-rate", type=float, default=0.01, help="exact duplicate lines")
    parser.add_argument("--near-rate", type=float, default=0.005, help="near-duplicate lines")
    parser.add_argument("--none-rate", type=float, default=0.03, help="'none' tails")
    parser.add_argument("--split", action="store_true", help="also time read vs write phases")
    parser.add_argument("--repeat", type=int, default=1, help="runs per backend (shared machine)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--split-worker", metavar="FILE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.split_worker:
        split_worker(args.split_worker)
        return 0

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - set(TARGETS)
    if unknown:
        parser.error(f"--backends: unknown {', '.join(sorted(unknown))}; use sqlite,postgres")

    workdir = Path(tempfile.mkdtemp(prefix="skd-import-bench-"))
    try:
        started = time.perf_counter()
        corpus = generate(
            workdir / "bench.tsv", args.n, args.seed, args.dup_rate, args.near_rate, args.none_rate
        )
        print(
            f"generated {corpus.lines:,} triples in {time.perf_counter() - started:.1f} s "
            f"({corpus.path.stat().st_size / 1e6:.0f} MB): {corpus.exact_duplicates:,} exact "
            f"duplicates, {corpus.near_duplicates:,} near duplicates, {corpus.none_tails:,} "
            f"'none' tails -> {corpus.expected_rows:,} unique triples expected",
            flush=True,
        )
        results: list[Result] = []
        for backend in backends:
            for _ in range(args.repeat):
                result = bench_backend(backend, corpus, workdir, args.postgres_url)
                if args.split:
                    phases = split_backend(backend, corpus, workdir, args.postgres_url)
                    result.parse_seconds, result.write_seconds = phases["parse"], phases["write"]
                results.append(result)
                print(f"{backend}: {result.seconds:.1f} s, {result.rows:,} rows", flush=True)
        print_table(results)
        return 0 if all(r.met for r in results) else 1
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def print_table(results: list[Result]) -> None:
    """One line per run; right-aligned numbers."""
    header = ["backend", "N", "seconds", "triples/s", "rows ok", "in-job s", "read s", "write s"]
    header += ["load1", "cpu psi", "target", "met"]
    numeric = {1, 2, 3, 5, 6, 7, 8, 9}

    def opt(value: float | None, unit: str = "") -> str:
        return "-" if value is None else f"{value:.1f}{unit}"

    table = [header]
    for r in results:
        table.append(
            [
                r.backend,
                f"{r.n:,}",
                f"{r.seconds:.1f}",
                f"{r.rate:,.0f}",
                "yes" if r.rows == r.expected else f"NO ({r.rows:,} != {r.expected:,})",
                opt(r.job_seconds),
                opt(r.parse_seconds),
                opt(r.write_seconds),
                f"{r.load:.2f}",
                opt(r.pressure, "%"),
                r.target,
                "PASS" if r.met else "FAIL",
            ]
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    print()
    for index, row in enumerate(table):
        cells = zip(row, widths, strict=True)
        line = "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(cells)
        )
        print(line.rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    sys.exit(main())
