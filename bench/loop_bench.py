"""The whole loop through the product: does filtering help, does the student beat its teacher?

Why (issue 18): the paper's two claims are (1) filtering the teacher's corpus with a critic
raises its quality, and (2) a small student trained on the filtered corpus writes better
inferences than its (much larger, few-shot) teacher. This runs that experiment end to end with
the product's own functions, the ones behind the pages and the CLI (``create_run`` +
``run_inline`` as ``skd generate``; ``loop.request_training`` + ``run_job`` as ``skd critic
train``; ``request_scoring`` + ``run_scoring_inline``; ``start_export`` + ``run_export_job``;
``start_training`` + ``run_training_job``; ``start_evaluation`` + ``run_evaluation_job``), in a
database and data dir of its own, and prints the table.

Stages (each writes ``DIR/stages/<stage>.json`` and is skipped when that file is present, so an
interrupted run resumes; a teacher run cut short is resumed by ``resume_run``):

1. ``prepare``: labels from ``../shared/data/atomic2020_sample.tsv`` built as
   ``bench/critic_bench.py`` builds them (human tail acceptable, another head's tail under the
   same relation not). Its heads are split three ways, disjoint: evaluation heads (PersonX
   heads with a tail in the seven ATOMIC-10X relations), judge heads and critic heads. The
   critic's labels go in as triples with imported ratings (as ``critic_presets_bench.py``).
2. ``teacher_events``: an events run of the local teacher (default: the packaged SmolLM2) with
   the paper's seed events and few-shot pool from ``../shared/data`` when present.
3. ``teacher_inferences``: an inferences run on those events, the seven relations.
4. ``teacher_eval``: the same teacher, few-shot, on the evaluation heads (a ``file`` heads run,
   before the human triples of those heads are in the corpus, so the dedup against the corpus
   cannot drop an answer equal to a human one); then the evaluation heads' human triples are
   imported with ``import_files`` (source ``atomic2020-heldout``).
5. ``critic``: one training through the product (preset ``quality`` where its model is
   installed, else ``fast``; ``--critic-base`` overrides), then activated.
6. ``score``: the active version scores the corpus.
7. ``exports``: the teacher's triples (its source only) unfiltered (threshold 0), at recall 0.8
   and at recall 0.5 (thresholds picked by the product on the critic's held-out labels), each
   split by head 80/10/10 in the student format.
8. ``students``: the student base (default: the packaged SmolLM2) fine-tuned on each export with
   the same ``--student-steps`` steps (``max_steps``).
9. ``evaluation``: an export of the evaluation heads' human and teacher triples (all
   ``test``) gives the queries (every relation either answered); ``build_evaluation`` makes
   every student generate (greedy, one each), takes the teacher's few-shot answer and the
   human tails, and opens a blind evaluation campaign, ready
   for people. Generation time per student is read off the job's progress reports.
10. ``judge``: a critic trained (``train_critic``) on labels of the judge heads only, none of
    them an evaluation head, a critic head or a generated event, from a base model different
    from the filtering critic's (MiniLM when the critic is mpnet and vice versa). It scores
    every corpus and every system's inferences; p >= 0.5 counts as acceptable.
11. ``report``: ``DIR/results.md`` and ``DIR/results.json`` (always rewritten).

How to run (from the repository root)::

    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/loop_bench.py --out /tmp/loop
    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/loop_bench.py --out /tmp/loop-small --small

The parameters are written to ``DIR/params.json``; running again with other parameters into
the same folder is refused (choose a new folder).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DATA = ROOT.parent / "shared" / "data"
RELATIONS = ["xAttr", "xEffect", "xIntent", "xNeed", "xReact", "xWant", "HinderedBy"]
HELDOUT_SOURCE = "atomic2020-heldout"
LABEL_SOURCE = "bench-critic-labels"
CORPORA = [("unfiltered", {"threshold": 0.0}), ("rec 0.8", {"target_recall": 0.8}),
           ("rec 0.5", {"target_recall": 0.5})]  # fmt: skip
STAGES = [
    "prepare",
    "teacher_events",
    "teacher_inferences",
    "teacher_eval",
    "critic",
    "score",
    "exports",
    "students",
    "evaluation",
    "judge",
]


# --- arguments ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="Folder of the results (and database).")
    p.add_argument("--small", action="store_true", help="A few dozen events; minutes, not hours.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", type=Path, default=DATA, help="The shared data folder.")
    p.add_argument("--database-url", help="Default: SQLite under --out.")
    p.add_argument("--teacher-model", help="Teacher: a folder or hub name (default: SmolLM2).")
    p.add_argument("--student-base", help="Student base model (default: SmolLM2).")
    p.add_argument("--critic-base", help="Filtering critic base (default: the preset's).")
    p.add_argument("--critic-preset", choices=["fast", "quality", "paper"],
                   help="Default: quality where installed, else fast.")  # fmt: skip
    p.add_argument("--judge-base", help="Judge base (default: the other packaged encoder).")
    p.add_argument("--event-prompts", type=int, help="Event prompts (events: prompts x n).")
    p.add_argument("--events-per-prompt", type=int)
    p.add_argument("--inferences-per-pair", type=int, help="Generations per (event, relation).")
    p.add_argument("--eval-heads", type=int, help="Held-out ATOMIC 2020 heads.")
    p.add_argument("--critic-heads", type=int, help="Heads whose labels train the critic.")
    p.add_argument("--judge-heads", type=int, help="Heads whose labels train the judge.")
    p.add_argument("--student-steps", type=int, help="Training steps of every student.")
    p.add_argument("--student-batch", type=int)
    p.add_argument("--critic-epochs", type=int, help="Default: the preset's.")
    p.add_argument("--judge-epochs", type=int)
    p.add_argument("--teacher-batch", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=16, help="Teacher tokens per inference.")
    # The paper's 0.5, as the product's default. (Before the local backend penalized only
    # generated tokens, it punished the prompt's "PersonX" too: 36 of 40 events were lost.)
    p.add_argument(
        "--event-penalty",
        type=float,
        default=0.5,
        help="Events' presence/frequency penalty (default 0.5, the paper's and the product's).",
    )
    args = p.parse_args(argv)
    # --small is sized to about 10 minutes on two quiet cores by the measured rates
    # (bench/README.md): SmolLM2 writes ~1.6 inferences/s and trains ~36 tokens/s there.
    small = {"event_prompts": 6, "events_per_prompt": 5, "inferences_per_pair": 1,
             "eval_heads": 8, "critic_heads": 80, "judge_heads": 100, "student_steps": 6,
             "student_batch": 8, "judge_epochs": 2}  # fmt: skip
    # The full size is the floor, sized to about two hours on two cores (measured,
    # bench/README.md): 480 events sampled keep 433 (>= 400), 5 inferences per (event,
    # relation), 100 held-out heads; 150 student steps of 16 each (2,400 examples, within one
    # epoch of the smallest export) keep the three students to about half an hour.
    full = {"event_prompts": 96, "events_per_prompt": 5, "inferences_per_pair": 5,
            "eval_heads": 100, "critic_heads": 0, "judge_heads": 500, "student_steps": 150,
            "student_batch": 16, "judge_epochs": 2}  # fmt: skip
    for key, value in (small if args.small else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def configure_environment(args: argparse.Namespace) -> None:
    """The bench's own database and data dir, set before the settings are first read."""
    out = args.out.resolve()
    for key in [k for k in os.environ if k.startswith("SKD_")]:
        del os.environ[key]
    os.environ["SKD_DATA_DIR"] = str(out / "data")
    os.environ["SKD_DATABASE_URL"] = args.database_url or f"sqlite:///{out / 'skd.sqlite'}"
    if args.critic_preset:
        os.environ["SKD_CRITIC_PRESET"] = args.critic_preset
    else:
        from app.core.config import Settings
        from app.critic.presets import PRESETS, _installed

        quality = _installed(PRESETS["quality"], Settings())
        os.environ["SKD_CRITIC_PRESET"] = "quality" if quality else "fast"
    os.environ["SKD_CRITIC_AUTO_ACTIVATE"] = "false"  # the bench activates its version itself


# --- stage bookkeeping ------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    out: Path

    def path(self, stage: str) -> Path:
        return self.out / "stages" / f"{stage}.json"

    def result(self, stage: str) -> dict[str, Any]:
        return json.loads(self.path(stage).read_text())

    def note(self, stage: str, data: dict[str, Any]) -> None:
        """What a stage started (a run's id), so a rerun resumes it instead of starting over."""
        (self.out / "stages" / f"{stage}.started.json").write_text(json.dumps(data))

    def started(self, stage: str) -> dict[str, Any] | None:
        path = self.out / "stages" / f"{stage}.started.json"
        return json.loads(path.read_text()) if path.is_file() else None


def say(text: str) -> None:
    print(text, flush=True)


def bar(label: str):  # type: ignore[no-untyped-def]
    from app.cli.console import RichProgress

    return RichProgress(label)


class Timer:
    """A Progress sink that also records when each labelled part (``student #3: …``) first and
    last reported, so the evaluation job's generation time per student can be read off it."""

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.spans: dict[str, list[float]] = {}

    def update(self, done: int, total: int | None = None, message: str | None = None,
               *, force: bool = False) -> None:  # fmt: skip
        label = (message or "").split(":", 1)[0]
        now = time.perf_counter()
        span = self.spans.setdefault(label, [now, now])
        span[1] = now
        self.sink.update(done, total, message, force=force)

    @contextmanager
    def paused(self) -> Iterator[None]:
        with self.sink.paused():
            yield


# --- data ------------------------------------------------------------------------------------


def _key(text: str) -> str:
    return " ".join(text.casefold().split()).rstrip(".")


def stage_prepare(bench: Bench) -> dict[str, Any]:
    import uuid

    from critic_bench import build_labels, read_triples

    from app.core.db import session_scope
    from app.core.models import Rating, RatingOrigin, Triple

    args = bench.args
    sample = args.data / "atomic2020_sample.tsv"
    labels = build_labels(sample, args.seed).labels
    triples = read_triples(sample)
    by_head: dict[str, list[tuple[str, str, str]]] = collections.defaultdict(list)
    for head, relation, tail in triples:
        by_head[head].append((head, relation, tail))
    seeds = set()
    if (args.data / "seed_events.txt").is_file():
        seeds = {_key(x) for x in (args.data / "seed_events.txt").read_text().splitlines()}
    heads = sorted(by_head)
    rng = random.Random(args.seed)
    rng.shuffle(heads)
    eligible = [
        h
        for h in heads
        if h.startswith("PersonX")
        and _key(h) not in seeds
        and any(r in RELATIONS for _h, r, _t in by_head[h])
    ]
    eval_heads = eligible[: args.eval_heads]
    rest = [h for h in heads if h not in set(eval_heads) and _key(h) not in seeds]
    judge_heads = rest[: args.judge_heads]
    critic_pool = rest[args.judge_heads :]
    critic_heads = critic_pool[: args.critic_heads] if args.critic_heads else critic_pool
    critic_set = set(critic_heads)
    critic_labels = [t for t in labels if t.head in critic_set]
    with session_scope(write=True) as session:
        for label in critic_labels:
            triple = Triple(head=label.head, relation=label.relation, tail=label.tail,
                            norm_hash=uuid.uuid4().hex, source=LABEL_SOURCE)  # fmt: skip
            session.add(triple)
            session.flush()
            session.add(Rating(triple_id=triple.id, origin=RatingOrigin.imported,
                               answer=2 if label.acceptable else -2,
                               submission_id=uuid.uuid4().hex))  # fmt: skip
    eval_triples = [t for h in eval_heads for t in by_head[h] if t[1] in RELATIONS]
    (bench.out / "heldout.tsv").write_text(
        "".join(f"{h}\t{r}\t{t}\n" for h, r, t in eval_triples), encoding="utf-8"
    )
    return {
        "eval_heads": eval_heads,
        "judge_heads": judge_heads,
        "critic_heads": len(critic_heads),
        "critic_labels": len(critic_labels),
        "critic_acceptable": sum(t.acceptable for t in critic_labels),
        "heldout_triples": len(eval_triples),
    }


# --- the teacher ------------------------------------------------------------------------------


def _pool(args: argparse.Namespace) -> dict[str, Any] | None:
    """The paper's seed events and few-shot examples where the shared data has them."""
    from app.teacher.prompts import ExamplePool, read_example_pool, read_seed_events

    seeds, fewshot = args.data / "seed_events.txt", args.data / "fewshot_examples.tsv"
    if not (seeds.is_file() and fewshot.is_file()):
        return None
    pool = ExamplePool(events=read_seed_events(seeds),
                       inferences=read_example_pool(fewshot, frozenset(RELATIONS)))  # fmt: skip
    return pool.as_dict()


def _backend(args: argparse.Namespace) -> dict[str, Any]:
    backend: dict[str, Any] = {"type": "local", "batch_size": args.teacher_batch}
    if args.teacher_model:
        backend["model"] = args.teacher_model
    return backend


def _teacher_run(bench: Bench, stage: str, params: dict[str, Any]) -> dict[str, Any]:
    """Create (or resume) a teacher run and run it here, as ``skd generate`` does."""
    from sqlalchemy import func, select

    from app.core.db import session_scope
    from app.core.models import TeacherEvent, TeacherRun, TeacherRunState, Triple
    from app.teacher.planning import create_run
    from app.teacher.runs import fail_run, resume_run, run_inline

    began = time.perf_counter()
    started = bench.started(stage)
    if started:
        with session_scope() as session:
            run = session.get(TeacherRun, started["run_id"])
            state = run.state if run else None
            old_job = run.job_id if run else None
        run_id = started["run_id"]
        if state == TeacherRunState.succeeded:
            job_id = None
        else:
            if old_job is not None:
                fail_run(old_job, "the bench stopped before the run finished")  # if running
            job_id = resume_run(run_id)
            say(f"  resuming teacher run {run_id} (job #{job_id})")
    else:
        run_id, job_id = create_run(params)
        bench.note(stage, {"run_id": run_id})
    if job_id is not None:
        with bar(f"{stage} (run {run_id})") as progress:
            run_inline(job_id, on_chunk=lambda d, t, m: progress.update(d, t, m))
    with session_scope() as session:
        run = session.get(TeacherRun, run_id)
        assert run is not None
        events = session.scalar(
            select(func.count()).select_from(TeacherEvent).where(TeacherEvent.run_id == run_id)
        )
        triples = session.scalar(
            select(func.count()).select_from(Triple).where(Triple.teacher_run_id == run_id)
        )
        return {"run_id": run_id, "source": f"teacher-run-{run_id}", "events": events,
                "triples": triples, "counts": run.counts,
                "seconds": time.perf_counter() - began}  # fmt: skip


def stage_teacher_events(bench: Bench) -> dict[str, Any]:
    args = bench.args
    params: dict[str, Any] = {
        "name": "loop bench: events",
        "backend": _backend(args),
        "prompts": args.event_prompts,
        "examples": 10,
        "events": {
            "n": args.events_per_prompt,
            "presence_penalty": args.event_penalty,
            "frequency_penalty": args.event_penalty,
        },
        "seed": args.seed,
    }
    if (pool := _pool(args)) is not None:
        params["pool"] = pool
    return _teacher_run(bench, "teacher_events", params)


def _inference_params(args: argparse.Namespace, name: str, heads: dict[str, Any]) -> dict:
    params: dict[str, Any] = {
        "name": name,
        "kind": "inferences",
        "backend": _backend(args),
        "relations": RELATIONS,
        "heads": heads,
        "inferences": {"n": args.inferences_per_pair, "max_tokens": args.max_tokens},
        "inference_examples": 5,
        "seed": args.seed,
    }
    if (pool := _pool(args)) is not None:
        params["pool"] = pool
    return params


def stage_teacher_inferences(bench: Bench) -> dict[str, Any]:
    events = bench.result("teacher_events")
    params = _inference_params(
        bench.args, "loop bench: inferences", {"kind": "run", "value": events["run_id"]}
    )
    return _teacher_run(bench, "teacher_inferences", params)


def stage_teacher_eval(bench: Bench) -> dict[str, Any]:
    """The teacher, few-shot, on the held-out heads (one answer is evaluated per query; it
    samples ``inferences_per_pair`` so the filters leave one); then the humans' triples."""
    from app.corpus.importer import import_files

    heads = bench.result("prepare")["eval_heads"]
    params = _inference_params(
        bench.args, "loop bench: teacher on held-out heads", {"kind": "file", "heads": heads}
    )
    result = _teacher_run(bench, "teacher_eval", params)
    if not (bench.out / "stages" / "heldout_imported").exists():
        summary = import_files([bench.out / "heldout.tsv"], source=HELDOUT_SOURCE,
                               fmt="atomic-tsv")  # fmt: skip
        (bench.out / "stages" / "heldout_imported").write_text(str(summary.total("imported")))
    result["heldout_imported"] = int((bench.out / "stages" / "heldout_imported").read_text())
    return result


# --- the critic, scoring, exports -------------------------------------------------------------


def stage_critic(bench: Bench) -> dict[str, Any]:
    from app.core.db import session_scope
    from app.core.jobs import run_job
    from app.core.models import CriticVersion
    from app.critic import loop
    from app.critic.registry import activate

    args = bench.args
    began = time.perf_counter()
    with session_scope(write=True) as session:
        loop.release_dead_trainings(session)
    if args.critic_epochs:
        os.environ["SKD_CRITIC_EPOCHS"] = str(args.critic_epochs)
        from app.core.config import get_settings

        get_settings.cache_clear()
    with session_scope(write=True) as session:
        chain = loop.request_training(session, reason="loop bench", base_model=args.critic_base,
                                      full=True)  # fmt: skip
        start = loop.describe_start(session, chain.version_id)
    say(f"  critic version {chain.version_id}: {start}")
    with bar(f"critic version {chain.version_id}") as progress:
        run_job(chain.train_job_id, loop.run_training, extra=progress)
    with session_scope(write=True) as session:
        version = session.get(CriticVersion, chain.version_id)
        assert version is not None
        if version.state.value == "failed":
            raise RuntimeError(f"critic training failed: {version.error}")
        activate(session, version.id)
        m = version.metrics or {}
        hyper = version.hyperparameters or {}
        return {
            "version_id": version.id,
            "score_job_id": chain.score_job_id,
            "base": hyper.get("base_name"),
            "base_source": version.base_model,
            "preset": hyper.get("preset"),
            "roc_auc": m.get("roc_auc"),
            "average_precision": m.get("average_precision"),
            "precision_at_recall": m.get("precision_at_recall"),
            "labels": version.label_snapshot,
            "seconds": time.perf_counter() - began,
        }


def stage_score(bench: Bench) -> dict[str, Any]:
    from app.core.db import session_scope
    from app.critic import scoring_jobs

    began = time.perf_counter()
    version_id = bench.result("critic")["version_id"]
    with session_scope(write=True) as session:
        job = scoring_jobs.request_scoring(session, version_id)
        job_id = job.id if job else None
    result: dict[str, Any] = {"scored": 0}
    if job_id is not None:
        with bar(f"score with version {version_id}") as progress:
            result = scoring_jobs.run_scoring_inline(job_id, progress)
    return {**result, "seconds": time.perf_counter() - began}


def _export(params: dict[str, Any], label: str) -> dict[str, Any]:
    from app.core.db import session_scope
    from app.core.jobs import run_job
    from app.core.models import Export
    from app.export.params import ExportParams
    from app.export.run import run_export_job, start_export

    started = start_export(ExportParams.from_dict(params))
    with bar(f"export {label}") as progress:
        result = run_job(started.job_id, run_export_job, extra=progress)
    with session_scope() as session:
        export = session.get(Export, started.export_id)
        assert export is not None
        return {"export_id": export.id, "path": export.path, "threshold": export.threshold,
                "total": result["total"], "by_split": result["by_split"],
                "estimated_precision": result.get("estimated_precision")}  # fmt: skip


def stage_exports(bench: Bench) -> dict[str, Any]:
    source = bench.result("teacher_inferences")["source"]
    began = time.perf_counter()
    exports = {}
    for name, rule in CORPORA:
        params = {**rule, "sources": [source], "relations": RELATIONS, "seed": bench.args.seed,
                  "formats": ["jsonl", "student"]}  # fmt: skip
        exports[name] = _export(params, name)
        say(f"  {name}: {exports[name]['total']:,} triples (threshold "
            f"{exports[name]['threshold']})")  # fmt: skip
    return {"exports": exports, "seconds": time.perf_counter() - began}


# --- students and the evaluation ------------------------------------------------------------


def stage_students(bench: Bench) -> dict[str, Any]:
    from app.core.jobs import run_job
    from app.student.runs import run_training_job, start_training

    args = bench.args
    exports = bench.result("exports")["exports"]
    began = time.perf_counter()
    students = {}
    for name, _rule in CORPORA:
        started = start_training(exports[name]["export_id"], args.student_base,
                                 max_steps=args.student_steps, batch_size=args.student_batch,
                                 seed=args.seed)  # fmt: skip
        with bar(f"student on {name} (#{started.model_id})") as progress:
            result = run_job(started.job_id, run_training_job, extra=progress)
        students[name] = {"model_id": started.model_id, "path": result["path"],
                          "wall_seconds": result["wall_seconds"],
                          "dev_loss": result["dev_loss"]}  # fmt: skip
    return {"students": students, "seconds": time.perf_counter() - began}


def stage_evaluation(bench: Bench) -> dict[str, Any]:
    from app.core.jobs import run_job
    from app.student.evaluation import EvaluationSpec, run_evaluation_job, start_evaluation

    began = time.perf_counter()
    # The queries: every (held-out head, relation) that the humans or the teacher answered, so
    # each system is asked every relation of each head (the teacher answers nearly all seven).
    teacher_source = bench.result("teacher_eval")["source"]
    heldout = _export({"threshold": 0.0, "sources": [HELDOUT_SOURCE, teacher_source],
                       "relations": RELATIONS, "splits": {"test": 1.0}, "formats": ["student"]},
                      "held-out heads")  # fmt: skip
    students = bench.result("students")["students"]
    spec = EvaluationSpec(
        name="loop bench: teacher vs students",
        export_id=heldout["export_id"],
        student_model_ids=[students[name]["model_id"] for name, _ in CORPORA],
        heads=None,
        relations=RELATIONS,
        n=1,
        decoding="greedy",
        teacher=True,
        teacher_sources=[teacher_source],
        reference_sources=[HELDOUT_SOURCE],
        seed=bench.args.seed,
        guidelines="Is the inference about the event plausible? (loop bench)",
    )
    job_id = start_evaluation(spec)
    with bar("evaluation: students generate") as sink:
        timer = Timer(sink)
        result = run_job(job_id, run_evaluation_job, extra=timer)  # type: ignore[arg-type]
    generation = {}
    for name, _ in CORPORA:
        span = timer.spans.get(f"student #{students[name]['model_id']}")
        generation[name] = span[1] - span[0] if span else None
    # No student may have seen an evaluation head (the teacher could write one as an event).
    eval_heads = {_key(h) for h in bench.result("prepare")["eval_heads"]}
    unfiltered = bench.result("exports")["exports"]["unfiltered"]["path"]
    seen = sorted({h for h, _r, _t in _read_export_triples(unfiltered) if _key(h) in eval_heads})
    return {**result, "heldout_export": heldout, "generation_seconds": generation,
            "eval_heads_in_training": seen,
            "seconds": time.perf_counter() - began}  # fmt: skip


# --- the judge ------------------------------------------------------------------------------


def _judge_base(bench: Bench, critic_source: str) -> str:
    from app.core.config import get_settings, packaged_minilm_path
    from app.critic.presets import PRESETS

    if bench.args.judge_base:
        return bench.args.judge_base
    minilm = packaged_minilm_path()
    if Path(critic_source).resolve() != Path(minilm).resolve() and "MiniLM" not in critic_source:
        return minilm
    mpnet = PRESETS["quality"].local_copy(get_settings())  # type: ignore[misc]
    if mpnet is None:
        raise SystemExit("the judge needs a base model other than the critic's: give --judge-base")
    return str(mpnet)


def _read_export_triples(folder: str) -> list[tuple[str, str, str]]:
    rows = []
    for path in sorted((Path(folder) / "jsonl").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                rows.append((row["head"], row["relation"], row["tail"]))
    return rows


def stage_judge(bench: Bench) -> dict[str, Any]:
    from critic_bench import build_labels
    from sqlalchemy import select

    from app.core.db import session_scope
    from app.core.models import EvaluationOutput, TeacherEvent, Triple
    from app.critic.labels import split_by_head
    from app.critic.train import (
        CriticTrainingArguments,
        critic_input,
        load_critic,
        score_pairs,
        train_critic,
    )

    args = bench.args
    began = time.perf_counter()
    critic = bench.result("critic")
    base = _judge_base(bench, str(critic["base_source"]))
    if Path(base).name == Path(str(critic["base_source"])).name:
        raise SystemExit(f"the judge's base {base} is the filtering critic's; give --judge-base")
    prepared = bench.result("prepare")
    with session_scope() as session:
        events = {_key(x) for x in session.scalars(select(TeacherEvent.text))}
    judge_heads = {h for h in prepared["judge_heads"] if _key(h) not in events}
    labels = [t for t in build_labels(args.data / "atomic2020_sample.tsv", args.seed).labels
              if t.head in judge_heads]  # fmt: skip
    train, held_out = split_by_head(labels, 0.2)
    folder = bench.out / "data" / "judge"
    if not (folder / "config.json").is_file():
        trained = train_critic(
            CriticTrainingArguments(base_model=base, output_dir=folder, epochs=args.judge_epochs,
                                    seed=args.seed),
            train, held_out,
        )  # fmt: skip
        metrics = trained.metrics
        (folder / "bench_metrics.json").write_text(json.dumps(metrics, default=str))
    metrics = json.loads((folder / "bench_metrics.json").read_text())
    model, tokenizer = load_critic(folder)

    def judge(rows: list[tuple[str, str, str]]) -> list[float]:
        if not rows:
            return []
        pairs = [critic_input(h, r, t, names=True) for h, r, t in rows]
        return [float(x) for x in score_pairs(model, tokenizer, pairs)]

    corpora = {}
    for name, export in bench.result("exports")["exports"].items():
        rows = _read_export_triples(export["path"])
        corpora[name] = {"triples": rows, "scores": judge(rows)}
    campaign_id = bench.result("evaluation")["campaign_id"]
    with session_scope() as session:
        outputs = session.execute(
            select(EvaluationOutput.system, Triple.head, Triple.relation, Triple.tail)
            .join(Triple, Triple.id == EvaluationOutput.triple_id)
            .where(EvaluationOutput.campaign_id == campaign_id)
            .order_by(EvaluationOutput.system, Triple.id)
        ).all()
    systems: dict[str, dict[str, list]] = {}
    for system, head, relation, tail in outputs:
        entry = systems.setdefault(system, {"triples": []})
        entry["triples"].append((head, relation, tail))
    for entry in systems.values():
        entry["scores"] = judge(entry["triples"])
    return {"base": base, "labels": len(labels), "heads": len(judge_heads),
            "held_out_auc": metrics.get("roc_auc"), "corpora": corpora, "systems": systems,
            "seconds": time.perf_counter() - began}  # fmt: skip


# --- the table -----------------------------------------------------------------------------


def _acceptability(scores: list[float]) -> tuple[int, int, float | None, float, float]:
    from app.student.table import wilson

    n = len(scores)
    accepted = sum(1 for s in scores if s >= 0.5)
    low, high = wilson(accepted, n) if n else (0.0, 0.0)
    return accepted, n, (accepted / n if n else None), low, high


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _samples(n: int) -> str:
    return "1 sample" if n == 1 else f"{n} samples"


def build_report(bench: Bench) -> tuple[str, dict[str, Any]]:
    from app.critic.presets import model_name
    from app.student.table import distinct_n

    r = {s: bench.result(s) for s in STAGES if bench.path(s).is_file()}
    judge = r["judge"]
    students = r["students"]["students"]
    system_name = {f"student-{s['model_id']}": f"student ({name})" for name, s in students.items()}
    system_name |= {"teacher": "teacher (few-shot)", "human": "human (ATOMIC 2020)"}
    gen_seconds = {f"student-{students[n]['model_id']}": t
                   for n, t in r["evaluation"]["generation_seconds"].items()}  # fmt: skip
    gen_seconds["teacher"] = r["teacher_eval"]["seconds"]
    mode = "small" if bench.args.small else "full"
    teacher = bench.args.teacher_model or "packaged SmolLM2"
    evaluation = r["evaluation"]
    lines = [f"# Loop bench ({mode}), seed {bench.args.seed}", ""]
    lines += [
        f"Teacher: {teacher}; student base: {bench.args.student_base or 'packaged SmolLM2'}; "
        f"critic: {r['critic']['base']} (preset {r['critic']['preset']}, held-out AUC "
        f"{(r['critic']['roc_auc'] or 0):.3f}); judge: {model_name(judge['base'])} "
        f"({judge['labels']} labels from {judge['heads']} heads, held-out AUC "
        f"{(judge['held_out_auc'] or 0):.3f}); evaluation campaign #{evaluation['campaign_id']} "
        f"({evaluation['items']} items, {evaluation['queries']} queries), open for ratings; "
        f"held-out heads also in a training export: "
        f"{len(evaluation.get('eval_heads_in_training', [])) or 'none'}.",
        "",
        "## Corpora",
        "",
        "| corpus | critic threshold | triples (train/val/test) | judged acceptable (95% CI) |",
        "|---|---|---|---|",
    ]
    corpora_rows = {}
    for name, _ in CORPORA:
        export = r["exports"]["exports"][name]
        a, n, share, low, high = _acceptability(judge["corpora"][name]["scores"])
        corpora_rows[name] = {"triples": n, "accepted": a, "acceptability": share,
                              "ci": [low, high], "threshold": export["threshold"]}  # fmt: skip
        splits = "/".join(str(export["by_split"].get(s, 0)) for s in ("train", "val", "test"))
        threshold = "–" if export["threshold"] is None else f"{export['threshold']:.3f}"
        lines.append(f"| {name} | {threshold} | {export['total']:,} ({splits}) | "
                     f"{_pct(share)} [{_pct(low)}, {_pct(high)}] |")  # fmt: skip
    lines += ["", "## Systems on held-out ATOMIC 2020 heads", ""]
    header = ["system", "inferences", "judged acceptable (95% CI)", *RELATIONS,
              "distinct-1", "distinct-2", "generation s"]  # fmt: skip
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    order = [f"student-{students[n]['model_id']}" for n, _ in CORPORA] + ["teacher", "human"]
    system_rows = {}
    for system in order:
        entry = judge["systems"].get(system, {"triples": [], "scores": []})
        a, n, share, low, high = _acceptability(entry["scores"])
        per_rel = {}
        for relation in RELATIONS:
            scores = [s for (_h, rel, _t), s in zip(entry["triples"], entry["scores"], strict=True)
                      if rel == relation]  # fmt: skip
            per_rel[relation] = _acceptability(scores)[2]
        tails = [t for _h, _r, t in entry["triples"]]
        d1, d2 = distinct_n(tails, 1), distinct_n(tails, 2)
        seconds = gen_seconds.get(system)
        name = system_name.get(system, system)
        system_rows[name] = {"inferences": n, "accepted": a, "acceptability": share,
                             "ci": [low, high], "per_relation": per_rel, "distinct_1": d1,
                             "distinct_2": d2, "generation_seconds": seconds}  # fmt: skip
        cells = [name, str(n), f"{_pct(share)} [{_pct(low)}, {_pct(high)}]",
                 *(_pct(per_rel[x]) for x in RELATIONS),
                 "–" if d1 is None else f"{d1:.3f}", "–" if d2 is None else f"{d2:.3f}",
                 "–" if seconds is None else f"{seconds:.1f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Teacher generation time: its whole run on the held-out heads (model load "
              f"included, {_samples(bench.args.inferences_per_pair)} per query); students: greedy, "
              "one per query, model load included.", "", "## Wall time per stage", "",
              "| stage | wall s | CPU s | load (1 min) |", "|---|---|---|---|"]  # fmt: skip
    stage_seconds = {}
    for stage in STAGES:
        if stage in r:
            stage_seconds[stage] = r[stage].get("seconds")
            cells = [r[stage].get(k) for k in ("seconds", "cpu_seconds", "load1")]
            text_cells = ["–" if c is None else f"{c:.1f}" for c in cells]
            lines.append(f"| {stage} | " + " | ".join(text_cells) + " |")
    text = "\n".join(lines) + "\n"
    data = {"corpora": corpora_rows, "systems": system_rows, "stage_seconds": stage_seconds,
            "campaign_id": r["evaluation"]["campaign_id"]}  # fmt: skip
    return text, data


# --- main ----------------------------------------------------------------------------------


def _params(args: argparse.Namespace) -> dict[str, Any]:
    data = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    data.pop("out")
    data["critic_preset_in_force"] = os.environ.get("SKD_CRITIC_PRESET")
    data["relations"] = RELATIONS
    return data


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.data / "atomic2020_sample.tsv").is_file():
        raise SystemExit(f"{args.data}/atomic2020_sample.tsv is missing (the shared data)")
    out = args.out.resolve()
    (out / "stages").mkdir(parents=True, exist_ok=True)
    configure_environment(args)
    params = _params(args)
    params_path = out / "params.json"
    if params_path.is_file():
        before = json.loads(params_path.read_text())
        # A parameter the folder's run does not name came with a later version of the bench.
        changed = sorted(k for k in set(before) if before.get(k) != params.get(k))
        if changed:
            raise SystemExit(f"{out} holds a run with other parameters ({', '.join(changed)}); "
                             "choose a new --out")  # fmt: skip
    else:
        params_path.write_text(json.dumps(params, indent=2))

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from app.core import db, migrate
    from app.core.config import get_settings

    settings = get_settings()
    settings.ensure_dirs()
    migrate.upgrade(settings.database)
    db.configure(settings)

    bench = Bench(args, out)
    work: dict[str, Callable[[Bench], dict[str, Any]]] = {
        name: globals()[f"stage_{name}"] for name in STAGES
    }
    for stage in STAGES:
        if bench.path(stage).is_file():
            say(f"[{stage}] done before; skipped")
            continue
        say(f"[{stage}]")
        began, cpu = time.perf_counter(), time.process_time()
        result = work[stage](bench)
        result.setdefault("seconds", time.perf_counter() - began)
        # CPU seconds of this process (all its threads): on a shared machine the wall time
        # says how busy the others were; this says what the stage cost.
        result["cpu_seconds"] = time.process_time() - cpu
        result["load1"] = os.getloadavg()[0]
        bench.path(stage).write_text(json.dumps(result, indent=2, default=str))
        say(f"[{stage}] {result['seconds']:.1f} s")
    text, data = build_report(bench)
    (out / "results.md").write_text(text, encoding="utf-8")
    (out / "results.json").write_text(json.dumps(data, indent=2, default=str))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
