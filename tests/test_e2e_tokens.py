"""A script's door, through the real processes: `skd users tokens create` makes the keys,
`skd serve` and `skd worker` run as subprocesses, and the script sends nothing but
``Authorization: Bearer`` over loopback HTTP (no login form, no cookie, no CSRF token), from
several threads at once. Runs on SQLite (embedded broker) and PostgreSQL (Redis)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.live_stack import ADMIN, KEEP_ALIVE, Stack, live_stack, succeeded
from tests.test_e2e_jobs import labelled_file


def _script(stack: Stack, token: str) -> httpx.Client:
    """What a researcher's script holds: the server's address and a token, nothing else."""
    return httpx.Client(
        base_url=stack.url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
        limits=KEEP_ALIVE,
    )


def _make(stack: Stack, *args: str) -> str:
    made = stack.skd("users", "tokens", "create", ADMIN, *args)
    assert made.returncode == 0, made.stdout + made.stderr
    return made.stdout.strip()


def _upload(stack: Stack, token: str, path: Path) -> httpx.Response:
    with _script(stack, token) as client, path.open("rb") as handle:
        return client.post(
            "/api/corpus/import", files=[("files", (path.name, handle, "application/jsonl"))]
        )


def test_a_script_with_a_token_starts_work_the_worker_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    files = [labelled_file(tmp_path, i, heads=2) for i in range(6)]
    with live_stack(tmp_path) as stack:
        writer = _make(stack, "--name", "nightly import")
        reader = _make(stack, "--name", "dashboard", "--read-only")

        # Six uploads at once, each from its own connection, as a parallel script sends them.
        with ThreadPoolExecutor(len(files)) as pool:
            answers = list(pool.map(lambda path: _upload(stack, writer, path), files))
        assert [a.status_code for a in answers] == [202] * len(files), [a.text for a in answers]
        with _script(stack, reader) as dashboard:
            for answer in answers:
                job = succeeded(dashboard, answer.json()["job_id"])
                assert job["result"]["totals"]["imported"] == 8
                assert job["started_by"] == f"{ADMIN} (api token 'nightly import')"
            assert dashboard.get("/api/corpus").json()["triples"] == 6 * 8
            # The read-only key reads; asking it to start work is refused, and nothing starts.
            refused = _upload(stack, reader, files[0])
            assert refused.status_code == 403, refused.text
            assert len(dashboard.get("/api/jobs").json()) == len(files)
            me = dashboard.get("/api/account").json()
            assert me["signed_in_with"] == "token" and me["token"]["scope"] == "read"

        # Revoked from a terminal: the running server refuses the key on its next request.
        listed = stack.skd("users", "tokens", "list")
        assert "nightly import" in listed.stdout and writer not in listed.stdout
        token_id = next(
            line.split("│")[1].strip()
            for line in listed.stdout.splitlines()
            if "nightly import" in line
        )
        assert stack.skd("users", "tokens", "revoke", token_id).returncode == 0
        with _script(stack, writer) as gone:
            answer = gone.get("/api/jobs")
            assert answer.status_code == 401
            assert answer.headers["www-authenticate"] == 'Bearer error="invalid_token"'
