"""Load test of the rating loop over real HTTP: many annotators hammering next -> submit.

Starts the real server (uvicorn, `skd serve`) on a fresh PostgreSQL database with a campaign
over N synthetic triples (k ratings each), then runs A simulated annotators for a fixed time.
Each annotator enters through the campaign's share link (a Prolific-style id), then loops:
``GET /api/annotate/{id}/next`` (lease an item) and ``POST .../submit`` (store the answer).
With ``--mode combined`` the submit also returns the next item (one round trip per rating,
as the rating page does). Reports p50/p95/p99 latency per call, ratings/s, and checks the
invariants in the database afterwards.

    .venv/bin/python bench/annotate_load.py --annotators 50 --duration 30
    .venv/bin/python bench/annotate_load.py --mode combined

Targets on the 2-core reference machine: p99 (next + submit) < 50 ms at 50 concurrent
annotators, >= 500 ratings/s. Figures go in bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(url: str, triples: int, k: int, data_dir: Path) -> tuple[int, str]:
    """Migrate, load synthetic triples with the real importer, and create the campaign."""
    os.environ.update({"SKD_DATABASE_URL": url, "SKD_DATA_DIR": str(data_dir)})
    from app.annotation.campaigns import CampaignSpec, create_campaign
    from app.core import db, migrate
    from app.core.config import get_settings
    from app.corpus.importer import import_files

    get_settings.cache_clear()
    migrate.upgrade(url)
    db.configure(get_settings())
    rng = random.Random(7)
    verbs = ["bakes", "paints", "fixes", "sells", "finds", "loses", "cleans", "visits"]
    nouns = ["a car", "the house", "bread", "a gift", "a letter", "the garden", "a bike"]
    relations = ["xAttr", "xEffect", "xIntent", "xNeed", "xReact", "xWant", "HinderedBy"]
    corpus = data_dir / "corpus.tsv"
    with corpus.open("w") as out:
        for i in range(triples):
            head = f"PersonX {rng.choice(verbs)} {rng.choice(nouns)} {i}"
            out.write(f"{head}\t{rng.choice(relations)}\tto feel {rng.random():.6f}\n")
    import_files([corpus])
    with db.session_scope(write=True) as session:
        campaign = create_campaign(
            session, CampaignSpec(name="load", ratings_per_item=k, lease_seconds=600)
        )
        return campaign.id, campaign.share_token


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


class LeanClient:
    """A minimal HTTP/1.1 keep-alive client (one connection per simulated annotator).

    httpx costs about 1 ms of CPU per request, which on a 2-core machine is CPU taken from
    the server being measured; this speaks just enough HTTP for the two JSON calls.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.cookie = ""
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: dict | None = None
    ) -> tuple[int, dict, dict]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        payload = json.dumps(body).encode() if body is not None else b""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(payload)}\r\n"
            + ("Content-Type: application/json\r\n" if body is not None else "")
            + (f"Cookie: {self.cookie}\r\n" if self.cookie else "")
            + "\r\n"
        )
        self.writer.write(head.encode() + payload)
        assert self.reader is not None
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
            if name.strip().lower() == "set-cookie":
                self.cookie = value.strip().split(";", 1)[0]
        data = await self.reader.readexactly(int(headers.get("content-length", "0")))
        parsed = (
            json.loads(data)
            if headers.get("content-type", "").startswith("application/json")
            else {}
        )
        return status, headers, parsed

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def annotator(
    port: int,
    campaign_id: int,
    share: str,
    worker: str,
    stop_at: float,
    mode: str,
    timings: dict[str, list[float]],
    acknowledged: list[tuple[str, str, int]],
    think: float = 0.0,
) -> None:
    answers = [2, 1, -1, -2]
    rng = random.Random(worker)
    client = LeanClient("127.0.0.1", port)
    try:
        status, _, _ = await client.request("GET", f"/c/{share}?PROLIFIC_PID={worker}&STUDY_ID=s")
        assert status == 303 and client.cookie, f"entry failed: {status}"
        item = None
        while time.perf_counter() < stop_at:
            if item is None:
                started = time.perf_counter()
                status, _, reply = await client.request("GET", f"/api/annotate/{campaign_id}/next")
                timings["next"].append(time.perf_counter() - started)
                if status != 200:
                    raise RuntimeError(f"next answered {status}")
                item = reply["item"]
                if item is None:
                    return
            if think:
                await asyncio.sleep(rng.uniform(0.5, 1.5) * think)
            body = {
                "item_id": item["item_id"],
                "answer": rng.choice(answers),
                "submission_id": uuid.uuid4().hex,
                "seconds": 1.0,
                "next": mode == "combined",
            }
            started = time.perf_counter()
            status, _, reply = await client.request(
                "POST", f"/api/annotate/{campaign_id}/submit", body
            )
            timings["submit"].append(time.perf_counter() - started)
            if status == 200:
                acknowledged.append((worker, body["submission_id"], body["answer"]))
                item = reply.get("item") if mode == "combined" else None
            elif status == 409:
                item = None
            else:
                raise RuntimeError(f"submit answered {status}: {reply}")
    finally:
        await client.close()


def check_invariants(url: str, acknowledged: list[tuple[str, str, int]]) -> list[str]:
    """What must hold whatever the load: returns the violations found (empty = all good)."""
    problems = []
    with psycopg.connect(url.replace("+psycopg", "")) as conn:
        over = conn.execute(
            "SELECT count(*) FROM campaign_items WHERE ratings_done > ratings_needed"
        ).fetchone()[0]
        mismatch = conn.execute(
            "SELECT count(*) FROM campaign_items i LEFT JOIN ("
            " SELECT item_id, count(*) n FROM ratings WHERE item_id IS NOT NULL GROUP BY item_id"
            ") r ON r.item_id = i.id WHERE i.ratings_done <> coalesce(r.n, 0)"
        ).fetchone()[0]
        twice = conn.execute(
            "SELECT count(*) FROM (SELECT item_id, annotator_id FROM ratings"
            " WHERE item_id IS NOT NULL GROUP BY 1, 2 HAVING count(*) > 1) d"
        ).fetchone()[0]
        stored = dict(
            conn.execute(
                "SELECT r.submission_id, r.answer FROM ratings r WHERE r.item_id IS NOT NULL"
            ).fetchall()
        )
    if over:
        problems.append(f"{over} items have more ratings than needed")
    if mismatch:
        problems.append(f"{mismatch} items' counters differ from their stored ratings")
    if twice:
        problems.append(f"{twice} (item, annotator) pairs rated twice")
    lost = [s for _, s, a in acknowledged if stored.get(s) != a]
    if lost:
        problems.append(f"{len(lost)} acknowledged ratings missing or changed")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--triples", type=int, default=100_000)
    parser.add_argument("-k", type=int, default=3, help="ratings per item")
    parser.add_argument("--mode", choices=["separate", "combined"], default="separate")
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="seconds each annotator pauses between answers (0: as fast as the server goes)",
    )
    parser.add_argument("--web-workers", type=int, default=2, help="web server processes")
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="an admin URL; a scratch database is created and dropped",
    )
    args = parser.parse_args()

    name = f"skd_bench_load_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(args.postgres, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    url = (
        args.postgres.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        + f"/{name}"
    )
    servers: list[subprocess.Popen[bytes]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            campaign_id, share = prepare(url, args.triples, args.k, Path(tmp))
            print(
                f"prepared {args.triples:,} triples, campaign {campaign_id} (k={args.k}) "
                f"in {time.perf_counter() - t0:.1f} s"
            )
            env = {
                **os.environ,
                "SKD_DATABASE_URL": url,
                "SKD_DATA_DIR": tmp,
                "SKD_SECRET_KEY": "bench-" + "0" * 32,
                "PYTHONPATH": str(ROOT),
                # Every simulated annotator is a new worker id from one address.
                "SKD_CROWD_ACCOUNTS_PER_ADDRESS": "0",
            }
            # One single-process uvicorn per web worker, each on its own port, with the
            # annotators spread evenly over them, as a reverse proxy would. (uvicorn's own
            # --workers shares one socket, and long-lived keep-alive connections can end up
            # mostly in one process, which then measures one core instead of all.)
            ports = [free_port() for _ in range(args.web_workers)]
            for port in ports:
                servers.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "uvicorn",
                            "app.main:create_app",
                            "--factory",
                            "--host",
                            "127.0.0.1",
                            "--port",
                            str(port),
                            "--log-level",
                            "warning",
                            "--no-access-log",
                        ],
                        env=env,
                        start_new_session=True,
                    )
                )
            for port in ports:
                for _ in range(100):
                    try:
                        if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.2)
            timings: dict[str, list[float]] = {"next": [], "submit": []}
            acknowledged: list[tuple[str, str, int]] = []

            async def run() -> float:
                stop_at = time.perf_counter() + args.duration
                started = time.perf_counter()
                await asyncio.gather(
                    *(
                        annotator(
                            ports[i % len(ports)],
                            campaign_id,
                            share,
                            f"bench-{i}",
                            stop_at,
                            args.mode,
                            timings,
                            acknowledged,
                            args.think,
                        )
                        for i in range(args.annotators)
                    )
                )
                return time.perf_counter() - started

            elapsed = asyncio.run(run())
            problems = check_invariants(url, acknowledged)
    finally:
        for server in servers:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(20)
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

    print(
        f"\n{args.annotators} annotators, {elapsed:.1f} s, mode {args.mode}, "
        f"{args.web_workers} web workers, think {args.think} s"
    )
    print(f"{'call':<8}{'n':>8}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}")
    for call, values in timings.items():
        if values:
            print(
                f"{call:<8}{len(values):>8}{1000 * percentile(values, 50):>10.1f}"
                f"{1000 * percentile(values, 95):>10.1f}{1000 * percentile(values, 99):>10.1f}"
            )
    pairs = (
        [a + b for a, b in zip(timings["next"], timings["submit"], strict=False)]
        if args.mode == "separate"
        else timings["submit"]
    )
    rate = len(acknowledged) / elapsed
    p99 = 1000 * percentile(pairs, 99)
    print(
        f"ratings/s: {rate:,.0f}   p99 next+submit: {p99:.1f} ms   "
        f"mean submit: {1000 * statistics.fmean(timings['submit']):.1f} ms"
    )
    print("invariants: " + ("all hold" if not problems else "; ".join(problems)))
    print(
        f"targets: p99 < 50 ms: {'met' if p99 < 50 else 'NOT met'}; "
        f">= 500 ratings/s: {'met' if rate >= 500 else 'NOT met'}"
    )
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
