"""A real deployment in miniature for end-to-end tests: `skd serve` and `skd worker` as
subprocesses, each with its own data dir, port, database and Celery queue.

On SQLite: a fresh database file and the embedded `sqla+sqlite` broker in the data dir. On
PostgreSQL: a fresh database (dropped at the end) and Redis with a queue of its own. Staff
sign in through the login form over loopback HTTP (httpx), as a browser would.
"""

from __future__ import annotations

import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import BACKEND, PG_ADMIN_URL, REDIS_URL, ROOT

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
ADMIN, PASSWORD = "root", "a long admin password"


# Idle connections are dropped by the client before uvicorn closes its end (after 5 s):
# reusing one at the moment the server closes it fails with "Server disconnected" (a client
# race that browsers answer by retrying; httpx does not).
KEEP_ALIVE = httpx.Limits(keepalive_expiry=2.0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    url: str
    env: dict[str, str]
    data_dir: Path
    logs: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def skd(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the `skd` command against this stack's database and broker."""
        return subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            cwd=ROOT,
            env={**self.env, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the worker's children go with it
        )
        self.processes[name] = process
        return process

    def start_worker(self, concurrency: int = 1) -> subprocess.Popen[bytes]:
        return self.start(
            "worker",
            "worker",
            f"--concurrency={concurrency}",
            "--without-gossip",
            "--without-mingle",
        )

    def start_beat(self) -> subprocess.Popen[bytes]:
        return self.start("beat", "beat")

    def wait_for_worker(self, timeout: float = 60) -> None:
        """Until `skd worker` says it is ready to take tasks."""
        deadline = time.monotonic() + timeout
        while "ready." not in self.log("worker"):
            worker = self.processes.get("worker")
            assert worker is not None and worker.poll() is None, self.log("worker")
            assert time.monotonic() < deadline, f"worker not ready:\n{self.log('worker')}"
            time.sleep(0.2)

    def stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def wait_until_serving(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            server = self.processes.get("serve")
            if server is not None and server.poll() is not None:
                raise AssertionError(f"skd serve exited:\n{self.log('serve')}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"skd serve did not answer in {timeout} s:\n{self.log('serve')}")

    def login(self, username: str = ADMIN, password: str = PASSWORD) -> httpx.Client:
        """A client signed in through the login form; its CSRF token is sent as a header."""
        client = httpx.Client(base_url=self.url, timeout=60, limits=KEEP_ALIVE)
        page = client.get("/login")
        token = _CSRF.search(page.text)
        assert token, "the login page has no CSRF field"
        answer = client.post(
            "/login",
            data={
                "username": username,
                "password": password,
                "csrf_token": token.group(1),
                "next": "/",
            },
        )
        assert answer.status_code == 303, answer.text
        again = _CSRF.search(client.get("/login").text)
        assert again
        client.headers["X-CSRF-Token"] = again.group(1)
        return client


def same_user(client: httpx.Client, timeout: float = 60) -> httpx.Client:
    """Another client signed in as ``client`` is (its cookies and CSRF header), with a
    connection pool of its own: for threads that each need one. A pooled connection shared
    across threads may sit idle past the server's keep-alive and be reset while reused."""
    return httpx.Client(
        base_url=client.base_url,
        cookies=client.cookies,
        headers=client.headers,
        timeout=timeout,
        limits=KEEP_ALIVE,
    )


def wait_for_job(client: httpx.Client, job_id: int, timeout: float = 90) -> dict[str, Any]:
    """Poll ``/api/jobs/ID`` until the job has finished; its JSON."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["finished"]:
            return job
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {job}")


def succeeded(client: httpx.Client, job_id: int, timeout: float = 240) -> dict[str, Any]:
    """Wait for the job; fail with its error and message unless it succeeded."""
    job = wait_for_job(client, job_id, timeout)
    assert job["state"] == "succeeded", (job["error"], job["message"])
    return job


def start_at_once(
    from_page: Callable[[], httpx.Response], from_api: Callable[[], httpx.Response]
) -> tuple[int, dict[str, Any]]:
    """Start one piece of work from a page's form and one over the JSON API at the same moment
    (two request threads of the server at once). Returns the id in the page's redirect
    (``.../<id>``, after its 303) and the API's 202 body."""
    with ThreadPoolExecutor(2) as pool:
        page_answer, api_answer = pool.map(lambda start: start(), (from_page, from_api))
    assert page_answer.status_code == 303, page_answer.text
    assert api_answer.status_code == 202, api_answer.text
    return int(page_answer.headers["location"].rsplit("/", 1)[1]), api_answer.json()


@contextmanager
def live_stack(tmp_path: Path, *, worker: bool = True, **settings: str) -> Iterator[Stack]:
    """Start `skd serve` (and `skd worker`) on a fresh database; stop and drop everything at
    the end. ``settings``: extra ``SKD_`` variables (name without the prefix)."""
    data_dir = tmp_path / "stack-data"
    logs = tmp_path / "stack-logs"
    data_dir.mkdir()
    logs.mkdir()
    port = free_port()
    queue = f"skd-e2e-{uuid.uuid4().hex[:10]}"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SKD_")  # nothing of the test session's own set-up leaks in
    }
    env.update(
        {
            "PYTHONPATH": str(ROOT),
            "HF_HUB_OFFLINE": "1",
            "SKD_DATA_DIR": str(data_dir),
            "SKD_SECRET_KEY": "e2e-" + secrets.token_hex(24),
            "SKD_DEMO": "0",
            "SKD_PORT": str(port),
            "SKD_CELERY_QUEUE": queue,
            "SKD_WEB_THREADS": "8",
        }
    )
    env.update({f"SKD_{name.upper()}": value for name, value in settings.items()})
    dropper = None
    if BACKEND == "postgres":
        import psycopg

        database = f"skd_e2e_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')

        # (Its own name: the loop in ``finally`` below rebinds ``name``, which this closure
        # once read, so every stack dropped a database called "worker" and left its own.)
        def dropper() -> None:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                left = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
                assert left.fetchone() is None, f"{database} was not dropped"

        base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        env["SKD_DATABASE_URL"] = f"{base}/{database}"
        env.setdefault("SKD_BROKER_URL", f"{REDIS_URL}/2")
        env.setdefault("SKD_RESULT_BACKEND", f"{REDIS_URL}/3")
    stack = Stack(f"http://127.0.0.1:{port}", env, data_dir, logs)
    try:
        for args in (("db", "upgrade"), ("users", "add", ADMIN, "--role", "admin")):
            done = subprocess.run(
                [sys.executable, "-m", "app.cli", *args],
                cwd=ROOT,
                env={**env, "SKD_NEW_PASSWORD": PASSWORD},
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert done.returncode == 0, done.stdout + done.stderr
        stack.start("serve", "serve")
        if worker:
            stack.start_worker()
        stack.wait_until_serving()
        yield stack
    finally:
        for name in list(stack.processes):
            stack.stop(name)
        if dropper is not None:
            dropper()
