"""`skd serve`'s logs are settings: no line per request unless SKD_ACCESS_LOG asks for one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve_and_get(tmp_path: Path, test_env: dict[str, str], **extra: str) -> str:
    """Start `skd serve` (own data dir and port, the session's database), GET /healthz 3
    times, stop it, and return everything it printed."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKD_")}
    env.update(test_env)
    env.update({"SKD_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT), **extra})
    log_path = tmp_path / f"serve-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    for _ in range(3):
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz") as r:
                            assert r.status == 200
                    break
                except OSError:
                    assert process.poll() is None, log_path.read_text()
                    if time.monotonic() > deadline:
                        pytest.fail("skd serve did not answer: " + log_path.read_text())
                    time.sleep(0.3)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return log_path.read_text()


def test_no_access_log_by_default_and_one_line_per_request_when_asked(
    tmp_path: Path,
    test_env: dict[str, str],
    engine,  # type: ignore[no-untyped-def]  # the schema exists
) -> None:
    quiet = _serve_and_get(tmp_path, test_env)
    assert "Uvicorn running" in quiet  # start-up lines are still written
    assert "GET /healthz" not in quiet
    loud = _serve_and_get(tmp_path, test_env, SKD_ACCESS_LOG="true")
    assert loud.count("GET /healthz") == 3
    warnings_only = _serve_and_get(tmp_path, test_env, SKD_LOG_LEVEL="warning")
    assert "Uvicorn running" not in warnings_only and "GET /healthz" not in warnings_only


def test_api_docs_pages_load_nothing_from_a_cdn(client) -> None:  # type: ignore[no-untyped-def]
    import re

    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        urls = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
        assert urls, html
        for url in urls:
            assert url.startswith("/"), f"{page} loads {url}"
            if url != "/openapi.json":
                assert client.get(url).status_code == 200, url
    assert "/api/corpus/triples" in client.get("/openapi.json").json()["paths"]


def test_skd_outside_a_set_up_folder_says_where_it_looked(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKD_")}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "stats"],
        cwd=tmp_path,
        env={**env, "COLUMNS": "300"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    message = result.stdout + result.stderr
    assert f"looked at {tmp_path / 'skd-data'}" in message and "SKD_DATA_DIR" in message
    assert not (tmp_path / "skd-data").exists()  # nothing was created
    named = subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "upgrade"],
        cwd=tmp_path,
        env={**env, "SKD_DATA_DIR": str(tmp_path / "mine")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert named.returncode == 0, named.stderr
    assert (tmp_path / "mine" / "skd.sqlite").is_file()
