"""Password checks must not starve other requests: /healthz latency while clients hammer login.

Starts the real server (`skd serve`) on a fresh SQLite database with one staff account, then
runs C clients that log in again and again (GET /login for the CSRF token, POST /login with
the right password: every attempt runs argon2), while one more client asks for ``/healthz``
every 20 ms. Reports the /healthz latency percentiles with the load and without it, and the
logins per second. Run it once per value of ``SKD_PASSWORD_CHECK_CONCURRENCY`` to compare:

    .venv/bin/python bench/login_load.py --clients 16 --duration 20
    .venv/bin/python bench/login_load.py --clients 16 --password-slots 64   # ~unbounded

Target (issue #12): /healthz p99 under 50 ms while 16 clients hammer the login. Figures go in
bench/README.md.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def probe_healthz(base: str, stop: threading.Event, out: list[float]) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        while not stop.is_set():
            started = time.perf_counter()
            client.get("/healthz").raise_for_status()
            out.append((time.perf_counter() - started) * 1000)
            time.sleep(0.02)


def hammer_login(base: str, stop: threading.Event, counts: list[int], errors: list[str]) -> None:
    with httpx.Client(base_url=base, timeout=60) as client:
        while not stop.is_set():
            token = CSRF.search(client.get("/login").text)
            assert token, "no CSRF token on /login"
            response = client.post(
                "/login",
                data={"username": "bench", "password": "bench password", "csrf_token": token[1]},
            )
            if response.status_code != 303:
                errors.append(f"{response.status_code}: {response.text[:100]}")
            counts.append(1)


def measure(base: str, seconds: float, clients: int) -> tuple[list[float], int, list[str]]:
    stop = threading.Event()
    latencies: list[float] = []
    counts: list[int] = []
    errors: list[str] = []
    threads = [threading.Thread(target=probe_healthz, args=(base, stop, latencies))]
    threads += [
        threading.Thread(target=hammer_login, args=(base, stop, counts, errors))
        for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(120)
    return latencies, len(counts), errors


def report(name: str, latencies: list[float]) -> str:
    return (
        f"{name}: /healthz n={len(latencies)} p50={statistics.median(latencies):.1f} ms "
        f"p95={percentile(latencies, 0.95):.1f} ms p99={percentile(latencies, 0.99):.1f} ms "
        f"max={max(latencies):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument(
        "--password-slots",
        type=int,
        default=None,
        help="SKD_PASSWORD_CHECK_CONCURRENCY for the server (default: the setting's default)",
    )
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="skd-login-bench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKD_")}
    env.update(
        {
            "SKD_DATA_DIR": str(data_dir),
            "SKD_SECRET_KEY": "bench-" + "k" * 40,
            "PYTHONPATH": str(ROOT),
            # The throttle is measured by the tests; here every attempt must reach argon2.
            "SKD_LOGIN_FAILURES_PER_ACCOUNT": "0",
            "SKD_LOGIN_FAILURES_PER_ADDRESS": "0",
        }
    )
    if args.password_slots is not None:
        env["SKD_PASSWORD_CHECK_CONCURRENCY"] = str(args.password_slots)
    skd = [sys.executable, "-m", "app.cli"]
    subprocess.run([*skd, "db", "upgrade"], env=env, check=True, capture_output=True)
    subprocess.run(
        [*skd, "users", "add", "bench", "--role", "admin", "--password", "bench password"],
        env=env,
        check=True,
        capture_output=True,
    )
    log = (data_dir / "serve.log").open("w")
    print(f"server log: {data_dir / 'serve.log'}")
    server = subprocess.Popen(
        [*skd, "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/healthz").raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("skd serve did not start") from None
                time.sleep(0.3)
        idle, _, _ = measure(base, min(5.0, args.duration), 0)
        loaded, logins, errors = measure(base, args.duration, args.clients)
        slots = args.password_slots if args.password_slots is not None else "default"
        print(f"password slots: {slots}; {args.clients} login clients for {args.duration:.0f} s")
        print(report("idle  ", idle))
        print(report("loaded", loaded))
        print(f"logins: {logins} ({logins / args.duration:.1f}/s), errors: {len(errors)}")
        for error in errors[:5]:
            print("  ", error)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


if __name__ == "__main__":
    main()
