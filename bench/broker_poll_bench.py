"""What the embedded broker's polling costs: a teacher run whose tasks start one another, and an
idle worker's CPU, at kombu's default (a look every 1 s) and at SKD_BROKER_POLL_SECONDS.

    nice -n 10 .venv/bin/python bench/broker_poll_bench.py
    nice -n 10 .venv/bin/python bench/broker_poll_bench.py --polls 1 0.5 0.2 0.1 --prompts 24

Each setting gets a real deployment of its own (``skd serve`` and one ``skd worker`` on a fresh
SQLite database and the embedded ``sqla+sqlite`` broker, tests/live_stack.py) and a loopback
OpenAI-compatible server that answers at once (tests/teacher_helpers.py), so what is left of
a run's wall time is the product's own work and the waits between its tasks (their number is
read from the worker's log). The run is timed from the API's 202 to the job's end (polled
every 50 ms). Then the worker sits idle and the CPU time of its main process (the one that
polls) is read from /proc over ``--idle`` seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("SKD_TEST_BACKEND", "sqlite")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (not its children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(poll: float, prompts: int, idle: float) -> dict[str, float]:
    from tests.live_stack import live_stack
    from tests.teacher_helpers import FakeOpenAI

    params = {
        "backend": {"type": "openai", "base_url": "", "model": "fake", "concurrency": 4},
        "prompts": prompts,
        "chunk_size": 2,
        "relations": ["xWant", "xReact"],
        "events": {"n": 2},
        "inferences": {"n": 2},
    }
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeOpenAI() as server,
        live_stack(Path(tmp), broker_poll_seconds=str(poll)) as stack,
    ):
        stack.wait_for_worker()
        client = stack.login()
        params["backend"]["base_url"] = server.base_url  # type: ignore[index]
        started = time.perf_counter()
        answer = client.post("/api/teacher/runs", json={**params, "name": f"poll {poll}"})
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["job_id"]
        while not (job := client.get(f"/api/jobs/{job_id}").json())["finished"]:
            time.sleep(0.05)
        seconds = time.perf_counter() - started
        assert job["state"] == "succeeded", job
        log = (stack.logs / "worker.log").read_text(errors="replace")
        tasks = log.count("] received")
        time.sleep(2)  # the last acks and result writes settle
        worker = stack.processes["worker"].pid
        before = cpu_seconds(worker)
        time.sleep(idle)
        busy = cpu_seconds(worker) - before
        return {"poll": poll, "tasks": tasks, "seconds": seconds, "idle_cpu_share": busy / idle}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--polls", type=float, nargs="+", default=[1.0, 0.2])
    parser.add_argument("--prompts", type=int, default=12, help="event prompts of the run")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of idle CPU reading")
    args = parser.parse_args()
    print(f"# Broker polling: a teacher run of {args.prompts} prompts, "
          f"load {os.getloadavg()[0]:.1f}\n")  # fmt: skip
    print("| look every | tasks | run, 202 to done | per task | idle worker CPU |")
    print("|---:|---:|---:|---:|---:|")
    for poll in args.polls:
        row = measure(poll, args.prompts, args.idle)
        print(
            f"| {poll:g} s | {row['tasks']} | {row['seconds']:.1f} s "
            f"| {row['seconds'] / row['tasks']:.2f} s "
            f"| {100 * row['idle_cpu_share']:.1f}% of a core |",
            flush=True,
        )


if __name__ == "__main__":
    main()
