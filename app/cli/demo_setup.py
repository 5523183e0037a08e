"""The embedded demo: one command from nothing to a running SKD Studio on SQLite.

``prepare_demo`` creates the database, loads the demo corpus that ships in the package, and
makes demo accounts (the same ones on every run: their secrets are kept in the data dir).
``run_services`` starts the web server, a Celery worker and Celery beat as child processes and
stops all of them cleanly on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.core import migrate
from app.core.accounts import create_invited_annotator, create_staff, hash_token
from app.core.config import Settings
from app.core.db import configure, session_scope
from app.core.jobs import Progress
from app.core.models import Role, User
from app.core.paths import DEMO_CORPUS
from app.corpus.importer import import_files

DEMO_ANNOTATORS = 3


@dataclass
class DemoAccounts:
    staff: list[dict[str, str]]  # username, password, role
    invites: list[dict[str, str]]  # name, token
    campaign_share: str | None = None  # share token of the demo campaign


def _credentials_file(settings: Settings) -> Path:
    return settings.data_dir / "demo-credentials.json"


def prepare_demo(settings: Settings, progress: Progress | None = None) -> DemoAccounts:
    """Idempotent: migrate, load the demo corpus (duplicates are skipped), ensure accounts."""
    settings.ensure_dirs()
    migrate.upgrade(settings.database)
    configure(settings)
    import_files([DEMO_CORPUS], source="demo", progress=progress, settings=settings)
    accounts = _ensure_accounts(settings)
    accounts.campaign_share = _ensure_campaign()
    _invite_to_demo_campaign(accounts)
    return accounts


def _invite_to_demo_campaign(accounts: DemoAccounts) -> None:
    """The invited demo annotators may rate in the demo campaign (admission is per campaign)."""
    from app.annotation.access import admit
    from app.core.models import Campaign

    with session_scope(write=True) as session:
        campaign_id = session.scalar(
            select(Campaign.id).where(Campaign.share_token == accounts.campaign_share)
        )
        if campaign_id is None:
            return
        for invite in accounts.invites:
            user_id = session.scalar(
                select(User.id).where(User.token_hash == hash_token(invite["token"]))
            )
            if user_id is not None:
                admit(session, campaign_id, user_id, "invite")


DEMO_GUIDELINES = """\
Each card shows an everyday **event** and a possible **inference** about it.
Judge whether the inference is plausible for a typical person in that situation.

- **always/often** or **sometimes/likely**: a reasonable person would agree.
- **farfetched/never**: it could be said, but it does not fit the event.
- **invalid**: it makes no sense or is not a proper inference.
- **too unfamiliar to judge**: you cannot tell (use sparingly).

Keys 1-5 answer, `s` skips, `u` goes back to change your previous answer.
"""


def _ensure_campaign() -> str:
    """A calibration campaign over the demo corpus, so the annotator links have work to do."""
    from app.annotation.campaigns import CampaignSpec, create_campaign
    from app.core.models import Campaign, CampaignPurpose

    with session_scope(write=True) as session:
        existing = session.scalar(select(Campaign).where(Campaign.name == "Demo calibration"))
        if existing is not None:
            return existing.share_token
        campaign = create_campaign(
            session,
            CampaignSpec(
                name="Demo calibration",
                purpose=CampaignPurpose.calibration,
                sample_size=300,
                sources=["demo"],
                ratings_per_item=3,
                gold_fraction=0.1,
                gold_rate=0.1,
                quota_per_annotator=30,
                guidelines=DEMO_GUIDELINES,
                completion_code="SKD-DEMO",
                seed=1,
            ),
        )
        return campaign.share_token


def _ensure_accounts(settings: Settings) -> DemoAccounts:
    path = _credentials_file(settings)
    saved: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    staff = saved.get("staff") or [
        {"username": "admin", "password": secrets.token_urlsafe(9), "role": "admin"},
        {"username": "researcher", "password": secrets.token_urlsafe(9), "role": "researcher"},
    ]
    invites = saved.get("invites") or []
    with session_scope(write=True) as session:
        for account in staff:
            if session.scalar(select(User.id).where(User.username == account["username"])) is None:
                create_staff(
                    session, account["username"], account["password"], Role(account["role"])
                )
        kept = [
            invite
            for invite in invites
            if session.scalar(select(User.id).where(User.token_hash == hash_token(invite["token"])))
        ]
        while len(kept) < DEMO_ANNOTATORS:
            name = f"demo-annotator-{len(kept) + 1}"
            _user, token = create_invited_annotator(session, name)
            kept.append({"name": name, "token": token})
    path.write_text(json.dumps({"staff": staff, "invites": kept}, indent=2))
    path.chmod(0o600)
    return DemoAccounts(staff=staff, invites=kept)


def service_commands(settings: Settings) -> dict[str, list[str]]:
    """The three processes of the embedded stack (the same ones docker-compose runs)."""
    python = sys.executable
    return {
        "web": [
            python,
            "-m",
            "app.cli",
            "serve",
            "--host",
            settings.host,
            "--port",
            str(settings.port),
        ],
        "worker": [python, "-m", "app.cli", "worker", "--concurrency", "2"],
        "beat": [python, "-m", "app.cli", "beat"],
    }


def run_services(settings: Settings, *, on_ready: Any = None, ready_timeout: float = 60.0) -> int:
    """Run web + worker + beat until Ctrl-C (or SIGTERM), then stop them all; returns an exit code.

    If any of them dies on its own, the others are stopped too and the exit code is 1: a demo
    that half runs is worse than one that says it failed.
    """
    env = {
        **os.environ,
        "SKD_DEMO": "1",
        "SKD_DATA_DIR": str(settings.data_dir.resolve()),
        "SKD_HOST": settings.host,
        "SKD_PORT": str(settings.port),
    }
    children: dict[str, subprocess.Popen[bytes]] = {}
    logs = _log_paths(settings)
    stopping = False

    def _terminate(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    # Both signals stop everything, also when started from a shell that set SIGINT to
    # "ignore" for background jobs (Python would then never raise KeyboardInterrupt).
    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        print(f"skd demo: starting web, worker and beat (logs in {logs['web'].parent})", flush=True)
        for name, command in service_commands(settings).items():
            # Each process writes to its own file, so the terminal keeps the links readable.
            with logs[name].open("ab") as log:
                children[name] = subprocess.Popen(
                    command, env=env, stdout=log, stderr=subprocess.STDOUT
                )
        if _wait_until_up(settings, children, ready_timeout):
            for name, child in children.items():
                print(f"  {name:<7} running  pid {child.pid:<8} log {logs[name]}", flush=True)
            if on_ready is not None:
                on_ready()
        while True:
            for name, child in children.items():
                if child.poll() is not None:
                    print(
                        f"skd demo: {name} exited with code {child.returncode}; stopping. "
                        f"The end of {logs[name]}:\n{_tail(logs[name])}",
                        file=sys.stderr,
                    )
                    code = 1
                    raise KeyboardInterrupt
            time.sleep(0.5)
    except KeyboardInterrupt:
        stopping = True
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop_all(children)
    return code if stopping else 1


def _log_paths(settings: Settings) -> dict[str, Path]:
    """``<data dir>/logs/<process>.log`` (appended to across runs)."""
    folder = settings.data_dir.resolve() / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return {name: folder / f"{name}.log" for name in ("web", "worker", "beat")}


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_until_up(
    settings: Settings, children: dict[str, subprocess.Popen[bytes]], timeout: float
) -> bool:
    """True once the web server answers; False if a child died first."""
    import urllib.request

    url = f"http://{settings.host}:{settings.port}/healthz"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children.values()):
            return False  # the main loop reports which one died
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"the web server did not answer at {url} within {timeout:.0f} s")


def _stop_all(children: dict[str, subprocess.Popen[bytes]], grace: float = 15.0) -> None:
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children.values():
        remaining = max(0.1, deadline - time.monotonic())
        try:
            child.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


DEMO_TEACHER_RUN: dict[str, Any] = {
    "name": "demo batch",
    "prompts": 2,
    "examples": 6,
    "relations": ["xWant", "xReact"],
    "events": {"n": 3},
    "inferences": {"n": 2},
    "inference_examples": 4,
    "chunk_size": 4,
}


def queue_demo_teacher_run() -> int:
    """A small teacher run with the packaged SmolLM2 (the default local teacher), handed to the
    worker: a few events and their xWant and xReact inferences, so the demo shows generated
    triples without making its start wait for a model."""
    from app.teacher.planning import create_run
    from app.teacher.runs import dispatch_run

    run_id, job_id = create_run(DEMO_TEACHER_RUN)
    dispatch_run(job_id)
    return run_id
