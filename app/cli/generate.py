"""``skd generate events|inferences``: the teacher writes a corpus, from a terminal.

The same door as the researcher page and ``POST /api/teacher/runs``: options become the run's
parameters (a ``--params FILE`` saved from an earlier run first, options on top), which
``app.teacher.runs.create_run`` checks before any work (each bad one is named); then the run's
chunks run in this process with a progress bar, or on the Celery workers with
``--background``. ``skd generate resume RUN`` finishes an interrupted run without duplicates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.common import fail

generate_app = typer.Typer(
    help="The teacher: few-shot prompt a language model to write events and inferences.",
    no_args_is_help=True,
)

Relation = Annotated[
    list[str] | None,
    typer.Option("--relation", "-r", help="A relation to write inferences for (repeatable)."),
]


def _backend_options(
    backend: str | None,
    model: str | None,
    base_url: str | None,
    mode: str | None,
    api_key_env: str | None,
    concurrency: int | None,
    timeout: float | None,
    max_retries: int | None,
    batch_size: int | None,
) -> dict[str, Any]:
    given = {
        "type": backend,
        "model": model,
        "base_url": base_url,
        "mode": mode,
        "api_key_env": api_key_env,
        "concurrency": concurrency,
        "timeout": timeout,
        "max_retries": max_retries,
        "batch_size": batch_size,
    }
    return {k: v for k, v in given.items() if v is not None}


def _sampling(**values: Any) -> dict[str, Any]:
    out = {k: v for k, v in values.items() if v is not None}
    if "stop" in out:
        out["stop"] = [s.encode().decode("unicode_escape") for s in out["stop"]]
    return out


def _read_params(params_file: Path | None) -> dict[str, Any]:
    if params_file is None:
        return {}
    try:
        loaded = json.loads(params_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise fail(f"--params: cannot read {params_file}: {exc}", 2) from None
    if not isinstance(loaded, dict):
        raise fail(f"--params: {params_file} does not hold a JSON object", 2)
    return loaded


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        elif value not in (None, [], {}):
            out[key] = value
    return out


def _pool(seed_events: Path | None, pool_file: Path | None) -> dict[str, Any]:
    from app.core.config import get_settings
    from app.corpus.relations import allowed_relations
    from app.teacher.prompts import ExamplePool, read_example_pool, read_seed_events

    pool: dict[str, Any] = {}
    try:
        if seed_events is not None:
            pool["events"] = read_seed_events(seed_events)
        if pool_file is not None:
            loaded = read_example_pool(pool_file, allowed_relations(get_settings()))
            pool["inferences"] = {
                **ExamplePool().as_dict()["inferences"],  # type: ignore[dict-item]
                **{r: [list(p) for p in pairs] for r, pairs in loaded.items()},
            }
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    return pool


def _start(data: dict[str, Any], background: bool, api_key: str | None) -> None:
    from app.cli.common import follow, schema_ready
    from app.cli.console import RichProgress
    from app.cli.console import out as stdout
    from app.teacher.params import TeacherParamsError
    from app.teacher.planning import create_run
    from app.teacher.runs import run_inline

    schema_ready()
    try:
        run_id, job_id = create_run(data)
    except TeacherParamsError as exc:
        raise fail("\n".join(f"{k}: {v}" for k, v in exc.errors.items()), 2) from None
    stdout.print(f"teacher run #{run_id} (job #{job_id}), source teacher-run-{run_id}")
    if background:
        from app.core.queue import BrokerUnavailable
        from app.teacher.runs import dispatch_run

        try:
            dispatch_run(job_id, api_key)
        except BrokerUnavailable as exc:
            raise fail(str(exc)) from None
        follow(job_id)
    else:
        with RichProgress(f"teacher run #{run_id}") as bar:
            try:
                run_inline(job_id, api_key=api_key, on_chunk=bar.update)
            except KeyboardInterrupt:
                raise fail(
                    f"interrupted; finished chunks are kept: `skd generate resume {run_id}`", 130
                ) from None
            except Exception as exc:  # noqa: BLE001 - recorded on the job; one clear line
                raise fail(
                    f"teacher run #{run_id} failed: {exc}\n(finished chunks are kept: "
                    f"`skd generate resume {run_id}`)"
                ) from None
    _print_run(run_id)


def _print_plan(data: dict[str, Any]) -> None:
    """``--dry-run``: the plan of the run ``data`` describes, as a table; nothing is written."""
    from rich.table import Table

    from app.cli.common import schema_ready
    from app.cli.console import out as stdout
    from app.core.durations import duration_words
    from app.teacher.estimate import plan_run
    from app.teacher.params import TeacherParamsError

    schema_ready()
    try:
        plan = plan_run(data)
    except TeacherParamsError as exc:
        raise fail("\n".join(f"{k}: {v}" for k, v in exc.errors.items()), 2) from None
    table = Table(title=f"teacher run plan ({plan.backend}: {plan.model}); nothing started")
    for column in ("phase", "prompts", "per prompt", "generations", "max new tokens"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for p in plan.phases:
        phase = f"{p.phase} (at most)" if p.upper_bound else p.phase
        table.add_row(
            phase, f"{p.prompts:,}", str(p.n), f"{p.generations:,}", f"{p.max_new_tokens:,}"
        )
    stdout.print(table)
    picked = f"{plan.heads:,} events picked; " if plan.heads is not None else ""
    stdout.print(
        f"{picked}in all {plan.generations:,} generations, at most "
        f"{plan.max_new_tokens:,} new tokens",
        highlight=False,
    )
    if plan.pace is not None and plan.estimated_seconds is not None:
        stdout.print(
            f"about {duration_words(plan.estimated_seconds)} at the pace of teacher run "
            f"#{plan.pace.run_id} ({plan.pace.per_second:.2g} generations/s)",
            highlight=False,
        )
    else:
        stdout.print("no finished run of this model to time it by yet", highlight=False)


def _rated_line(rated: dict[str, Any]) -> str:
    """ "rated in campaign #4 'Rate teacher run #2' (open, 60 of 69 items): 58.3% acceptable
    [46.1-69.6], 35 of 60 decided"."""
    where = (
        f"rated in campaign #{rated['campaign_id']} '{rated['campaign']}' "
        f"({rated['state']}, {rated['rated_items']} of {rated['item_count']} items)"
    )
    if rated["acceptability"] is None:
        return f"{where}: nothing decided yet"
    return (
        f"{where}: {rated['acceptability']:.1%} acceptable "
        f"[{rated['ci_low']:.1%}-{rated['ci_high']:.1%}], "
        f"{rated['accepted']} of {rated['decided']} decided"
    )


def _print_run(run_id: int) -> None:
    from rich.table import Table

    from app.cli.console import out as stdout
    from app.core.db import session_scope
    from app.core.models import TeacherRun
    from app.student.table import source_ratings
    from app.teacher.planning import source_name
    from app.teacher.postprocess import FILTERS
    from app.teacher.runs import sample_output

    with session_scope() as session:
        run = session.get(TeacherRun, run_id)
        assert run is not None
        counts = dict(run.counts or {})
        sample = sample_output(session, run_id, limit=5)
        events = [e.text for e in sample["events"]]
        triples = [(t.head, t.relation, t.tail) for t in sample["triples"]]
        state = run.state.value
        events_only = run.kind == "events" and not (run.params or {}).get("relations")
        ratings = source_ratings(session, source_name(run_id))
    table = Table(title=f"Teacher run #{run_id} ({state})", title_justify="left")
    table.add_column("")
    phases = [p for p in ("events", "inferences") if p in counts]
    for phase in phases:
        table.add_column(phase, justify="right")
    for key in ("generated", *FILTERS, "kept"):
        label = key.replace("_", " ") if key in ("generated", "kept") else f"− {key}"
        table.add_row(label, *[f"{counts[p].get(key, 0):,}" for p in phases])
    stdout.print(table)
    if "http" in counts:
        http = counts["http"]
        stdout.print(
            f"HTTP requests {http.get('requests', 0):,}, retries {http.get('retries', 0):,}"
        )
    for event in events:
        stdout.print(f"  event  {event}", highlight=False)
    for head, relation, tail in triples:
        stdout.print(f"  {head} · {relation} · {tail}", highlight=False)
    for rated in ratings:
        stdout.print(f"  {_rated_line(rated)}", highlight=False)
    if events_only and events and state == "succeeded":
        # The paper's two steps: the events are written; their inferences are the next run.
        stdout.print(
            f"events only (no --relation): next, `skd generate inferences --from-run {run_id}`",
            highlight=False,
        )


def _api_key(prompt_key: bool) -> str | None:
    if not prompt_key:
        return None
    import getpass

    return getpass.getpass("API key (used for this run only, not stored): ") or None


# --- the commands ---------------------------------------------------------------------------

BackendOpt = Annotated[str | None, typer.Option(help="local (transformers) or openai (HTTP).")]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        help="local: hub name, folder or .gguf (default SKD_TEACHER_MODEL); openai: "
        "the server's model name."
    ),  # fmt: skip
]
BaseUrlOpt = Annotated[str | None, typer.Option(help="OpenAI-compatible base URL (…/v1).")]
ModeOpt = Annotated[str | None, typer.Option(help="openai: completions or chat.")]
KeyEnvOpt = Annotated[
    str | None, typer.Option(help="openai: environment variable holding the API key.")
]
AskKeyOpt = Annotated[
    bool, typer.Option("--ask-api-key", help="openai: type the key for this run (never stored).")
]
ConcurrencyOpt = Annotated[int | None, typer.Option(help="openai: requests in flight.")]
TimeoutOpt = Annotated[float | None, typer.Option(help="openai: seconds per request.")]
RetriesOpt = Annotated[int | None, typer.Option(help="openai: retries on 429/5xx/errors.")]
BatchOpt = Annotated[int | None, typer.Option(help="local: prompts per forward pass.")]
NOpt = Annotated[int | None, typer.Option("--n", help="Generations per prompt.")]
TopPOpt = Annotated[float | None, typer.Option(help="Nucleus sampling share.")]
TempOpt = Annotated[float | None, typer.Option(help="Sampling temperature (0: greedy).")]
MaxTokOpt = Annotated[int | None, typer.Option(help="Tokens per generation.")]
PresOpt = Annotated[float | None, typer.Option(help="Presence penalty.")]
FreqOpt = Annotated[float | None, typer.Option(help="Frequency penalty.")]
StopOpt = Annotated[list[str] | None, typer.Option("--stop", help="Stop string (repeatable).")]
KeepTopOpt = Annotated[
    float | None, typer.Option(help="Keep this top share by mean log-probability (0-1].")
]
SeedOpt = Annotated[int | None, typer.Option(help="Seed of the example draws and sampling.")]
ChunkOpt = Annotated[int | None, typer.Option(help="Prompts per chunk task.")]
NameOpt = Annotated[str | None, typer.Option(help="A name for the run.")]
PoolOpt = Annotated[
    Path | None, typer.Option("--pool", help="Few-shot examples: head<TAB>relation<TAB>tail TSV.")
]
ParamsOpt = Annotated[
    Path | None, typer.Option("--params", help="A run's params.json to rerun; options override.")
]
BackgroundOpt = Annotated[
    bool, typer.Option(help="Queue the run for the Celery workers and follow its progress.")
]
DryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Print what the run would ask of the model (prompts, generations, new tokens, "
        "time at the pace of the last run of this model) and start nothing.",
    ),
]


@generate_app.command("events")
def events_command(
    prompts: Annotated[int | None, typer.Option(help="How many event prompts.")] = None,
    n: NOpt = None,
    examples: Annotated[int | None, typer.Option(help="Seed events per prompt.")] = None,
    seed_events: Annotated[
        Path | None, typer.Option(help="Seed events: a text file, one event a line.")
    ] = None,
    relation: Relation = None,
    pool: PoolOpt = None,
    backend: BackendOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    mode: ModeOpt = None,
    api_key_env: KeyEnvOpt = None,
    ask_api_key: AskKeyOpt = False,
    concurrency: ConcurrencyOpt = None,
    timeout: TimeoutOpt = None,
    max_retries: RetriesOpt = None,
    batch_size: BatchOpt = None,
    top_p: TopPOpt = None,
    temperature: TempOpt = None,
    max_tokens: MaxTokOpt = None,
    presence_penalty: PresOpt = None,
    frequency_penalty: FreqOpt = None,
    stop: StopOpt = None,
    keep_top: KeepTopOpt = None,
    seed: SeedOpt = None,
    chunk_size: ChunkOpt = None,
    name: NameOpt = None,
    params_file: ParamsOpt = None,
    background: BackgroundOpt = False,
    dry_run: DryRunOpt = False,
) -> None:
    """Write new events (then, with --relation, inferences for them)."""
    given = {
        "kind": "events",
        "name": name,
        "prompts": prompts,
        "examples": examples,
        "relations": relation or [],
        "seed": seed,
        "chunk_size": chunk_size,
        "backend": _backend_options(
            backend,
            model,
            base_url,
            mode,
            api_key_env,
            concurrency,
            timeout,
            max_retries,
            batch_size,
        ),  # fmt: skip
        "events": _sampling(
            n=n,
            top_p=top_p,
            temperature=temperature,
            max_tokens=max_tokens,
            presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty,
            stop=stop,
        ),  # fmt: skip
        "filters": {"keep_top": keep_top} if keep_top is not None else {},
        "pool": _pool(seed_events, pool),
    }
    data = _merge(_read_params(params_file), given)
    data["kind"] = "events"
    if dry_run:
        _print_plan(data)
        return
    _start(data, background, _api_key(ask_api_key))


@generate_app.command("inferences")
def inferences_command(
    relation: Relation = None,
    heads_file: Annotated[
        Path | None, typer.Option(help="Events to ask about: a text file, one a line.")
    ] = None,
    from_run: Annotated[int | None, typer.Option(help="The events of this teacher run.")] = None,
    source: Annotated[str | None, typer.Option(help="The heads of this corpus source.")] = None,
    campaign: Annotated[int | None, typer.Option(help="The heads of this campaign.")] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many heads.")] = None,
    examples: Annotated[int | None, typer.Option(help="Few-shot examples per prompt.")] = None,
    pool: PoolOpt = None,
    n: NOpt = None,
    backend: BackendOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    mode: ModeOpt = None,
    api_key_env: KeyEnvOpt = None,
    ask_api_key: AskKeyOpt = False,
    concurrency: ConcurrencyOpt = None,
    timeout: TimeoutOpt = None,
    max_retries: RetriesOpt = None,
    batch_size: BatchOpt = None,
    top_p: TopPOpt = None,
    temperature: TempOpt = None,
    max_tokens: MaxTokOpt = None,
    presence_penalty: PresOpt = None,
    frequency_penalty: FreqOpt = None,
    stop: StopOpt = None,
    keep_top: KeepTopOpt = None,
    seed: SeedOpt = None,
    chunk_size: ChunkOpt = None,
    name: NameOpt = None,
    params_file: ParamsOpt = None,
    background: BackgroundOpt = False,
    dry_run: DryRunOpt = False,
) -> None:
    """Write inferences for events you pick (a file, a run, a source or a campaign)."""
    from app.teacher.prompts import read_seed_events

    chosen = [x for x in (heads_file, from_run, source, campaign) if x is not None]
    if len(chosen) > 1:
        raise fail("pick the events one way: --heads-file, --from-run, --source or --campaign", 2)
    heads: dict[str, Any] = {"limit": limit}
    if heads_file is not None:
        try:
            heads.update(kind="file", heads=read_seed_events(heads_file))
        except ValueError as exc:
            raise fail(str(exc), 2) from None
    elif from_run is not None:
        heads.update(kind="run", value=from_run)
    elif source is not None:
        heads.update(kind="source", value=source)
    elif campaign is not None:
        heads.update(kind="campaign", value=campaign)
    given = {
        "kind": "inferences",
        "name": name,
        "relations": relation or [],
        "inference_examples": examples,
        "heads": heads,
        "seed": seed,
        "chunk_size": chunk_size,
        "backend": _backend_options(
            backend,
            model,
            base_url,
            mode,
            api_key_env,
            concurrency,
            timeout,
            max_retries,
            batch_size,
        ),  # fmt: skip
        "inferences": _sampling(
            n=n,
            top_p=top_p,
            temperature=temperature,
            max_tokens=max_tokens,
            presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty,
            stop=stop,
        ),  # fmt: skip
        "filters": {"keep_top": keep_top} if keep_top is not None else {},
        "pool": _pool(None, pool),
    }
    data = _merge(_read_params(params_file), given)
    data["kind"] = "inferences"
    if not data.get("relations"):
        from app.corpus.relations import ATOMIC10X_RELATIONS

        data["relations"] = list(ATOMIC10X_RELATIONS)
    if not data.get("heads", {}).get("kind"):
        raise fail("pick the events: --heads-file, --from-run, --source or --campaign", 2)
    if dry_run:
        _print_plan(data)
        return
    _start(data, background, _api_key(ask_api_key))


@generate_app.command("resume")
def resume_command(
    run_id: Annotated[int, typer.Argument(help="The teacher run to finish.")],
    ask_api_key: AskKeyOpt = False,
    background: BackgroundOpt = False,
) -> None:
    """Finish an interrupted run: finished chunks are kept, the rest run again."""
    from app.cli.common import follow, schema_ready
    from app.cli.console import RichProgress
    from app.teacher.runs import resume_run, run_inline

    schema_ready()
    try:
        job_id = resume_run(run_id)
    except (LookupError, ValueError) as exc:
        raise fail(str(exc), 2) from None
    api_key = _api_key(ask_api_key)
    if background:
        from app.core.queue import BrokerUnavailable
        from app.teacher.runs import dispatch_run

        try:
            dispatch_run(job_id, api_key)
        except BrokerUnavailable as exc:
            raise fail(str(exc)) from None
        follow(job_id)
    else:
        with RichProgress(f"teacher run #{run_id}") as bar:
            try:
                run_inline(job_id, api_key=api_key, on_chunk=bar.update)
            except Exception as exc:  # noqa: BLE001
                raise fail(f"teacher run #{run_id} failed: {exc}") from None
    _print_run(run_id)


@generate_app.command("show")
def show_command(
    run_id: Annotated[int, typer.Argument(help="The teacher run.")],
    params_out: Annotated[
        Path | None, typer.Option("--params-out", help="Write its params.json here (to rerun).")
    ] = None,
) -> None:
    """A run's filter counts and a sample of its output; --params-out saves its parameters."""
    from app.cli.common import schema_ready
    from app.core.db import session_scope
    from app.core.models import TeacherRun

    schema_ready()
    with session_scope() as session:
        run = session.get(TeacherRun, run_id)
        if run is None:
            raise fail(f"there is no teacher run {run_id}", 2)
        params = dict(run.params)
    if params_out is not None:
        params_out.write_text(json.dumps(params, indent=2) + "\n", encoding="utf-8")
    _print_run(run_id)
