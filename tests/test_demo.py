"""The embedded demo, run as a newcomer would: one command, then Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

# The demo is the embedded SQLite set-up: once, in the SQLite pass.
pytestmark = pytest.mark.one_backend


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_demo_starts_everything_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SKD_")  # a fresh machine: no configuration at all
    }
    env.update({"PYTHONPATH": str(ROOT), "COLUMNS": "200"})
    log = (tmp_path / "demo.log").open("w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "demo", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )
    try:
        text = ""
        deadline = time.monotonic() + 120
        while "SKD Studio is running" not in text and time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "demo.log").read_text()
            time.sleep(0.5)
            text = (tmp_path / "demo.log").read_text()
        time.sleep(1)
        text = (tmp_path / "demo.log").read_text()
        assert "SKD Studio is running" in text, text
        assert (tmp_path / "skd-data" / "skd.sqlite").is_file()
        # The processes write to their own logs; the terminal has one status line each, and
        # the logins and links come last (no request or task lines after them).
        logs = tmp_path / "skd-data" / "logs"
        for name in ("web", "worker", "beat"):
            assert re.search(
                rf"^  {name}\s+running\s+pid \d+\s+log {logs / name}\.log$", text, re.M
            )
            assert (logs / f"{name}.log").is_file()
        assert "Uvicorn running" in (logs / "web.log").read_text()
        after_links = text.split("SKD Studio is running", 1)[1]
        assert "INFO" not in after_links and "Ctrl-C stops" in after_links
        password = re.search(r"admin\s+user admin\s+password (\S+)", text).group(1)
        invites = re.findall(rf"http://127\.0\.0\.1:{port}/i/(\S+)", text)
        assert len(invites) == 3

        import httpx

        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as browser:
            page = browser.get("/login")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            browser.post(
                "/login", data={"username": "admin", "password": password, "csrf_token": csrf}
            )
            home = browser.get("/")
            assert home.status_code == 200
            counts = browser.get("/api/corpus").json()
            assert counts["triples"] >= 500
            assert set(counts["by_relation"]) == {
                "xAttr",
                "xEffect",
                "xIntent",
                "xNeed",
                "xReact",
                "xWant",
                "HinderedBy",
            }
            assert counts["imported_labels"] > 50
            # The worker is really consuming the queue: an upload gets imported.
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', home.text).group(1)
            queued = browser.post(
                "/api/corpus/import",
                files=[("files", ("x.tsv", b"PersonX waves\txIntent\tto greet\n", "text/plain"))],
                headers={"X-CSRF-Token": csrf},
            ).json()
            for _ in range(120):
                job = browser.get(queued["status_url"]).json()
                if job["finished"]:
                    break
                time.sleep(0.5)
            assert job["state"] == "succeeded", job
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=True) as worker:
            welcome = worker.get(f"/i/{invites[0]}").text
            assert "signed in as an annotator" in welcome and "Demo calibration" in welcome
        study = re.search(rf"http://127\.0\.0\.1:{port}(/c/\S+)", text).group(1)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=True) as worker:
            page = worker.get(study).text
            assert "Item <strong>1</strong> of 30" in page and "Guidelines" in page
    finally:
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        try:
            code = process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    assert code == 0, (tmp_path / "demo.log").read_text()[-3000:]
    leftovers = subprocess.run(["pgrep", "-g", str(process.pid)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "processes left running after Ctrl-C"
    # A second run reuses the same database and accounts.
    second = subprocess.run(
        [sys.executable, "-m", "app.cli", "demo", "--no-start"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert second.returncode == 0, second.stderr
    assert f"password {password}" in second.stderr
