"""The web server's own job sweep: jobs never hang unseen, even with no worker or beat up.

Beat sweeps every minute, but beat may not run (a bare `skd serve`, a worker that never
started): then a queued job would wait for ever. The server runs the same idempotent sweep
(``app.core.job_control.sweep_jobs``) in a daemon thread every ``job_sweep_seconds``; several web
processes sweeping side by side is harmless.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from app.core.config import Settings

log = logging.getLogger(__name__)


def start_sweeper(settings: Settings) -> Callable[[], None]:
    """Start sweeping in the background; returns the function that stops it."""
    every = settings.job_sweep_seconds
    if every <= 0:
        return lambda: None
    stop = threading.Event()

    def loop() -> None:
        from app.core import processes, triple_counts
        from app.core.job_control import sweep_jobs
        from app.critic import queueing  # noqa: F401 - registers what critic jobs hold
        from app.export import run  # noqa: F401 - and export jobs
        from app.teacher import runs as _teacher  # noqa: F401 - and teacher runs

        while not stop.wait(every):
            try:
                report = sweep_jobs()
                if report.stale or report.unstarted:
                    log.warning("job sweep: %s", report.as_dict())
                triple_counts.tidy()  # fold the corpus counts' rows of differences
                processes.tidy()  # rows of processes gone for a day
            except Exception:  # keep sweeping; a locked or restarting database passes
                log.exception("job sweep failed")

    thread = threading.Thread(target=loop, name="skd-job-sweep", daemon=True)
    thread.start()

    def stopper() -> None:
        stop.set()
        thread.join(timeout=5)

    return stopper
