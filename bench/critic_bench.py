"""Critic benchmark: how fast does the critic score, and how good is it on real text?

Why: the critic scores every triple of the teacher corpus (millions), so its CPU throughput
decides how long a re-score takes; and a critic that cannot tell good tails from bad ones
filters nothing useful. Issue 4, point 11. Targets: (a) scoring throughput of the packaged
MiniLM on CPU >= 2x a naive ``transformers.pipeline("text-classification")`` over the same
triples in the same run; (b) held-out ROC-AUC >= 0.85 on labels built from real ATOMIC 2020
text, trained with the *default* ``CriticTrainingArguments`` in under 15 minutes.

(a) Throughput. The packaged MiniLM (``app.core.config.packaged_minilm_path()``) is loaded once as a
sequence classifier (its classification head is new and seeded; the weights do not change the
cost). The same N triples of the sample file, read as the critic reads them
(``critic_input(..., names=True)``), are scored by

* ours: what a scoring worker runs (``app.critic.score.load_scorer`` + ``score_pairs`` with the
  ``critic_score_batch_size`` and ``critic_quantize`` settings), and
* naive: ``pipeline("text-classification", model=..., tokenizer=...)`` called on the list of
  ``{"text": head, "text_pair": relation phrase + tail}`` dicts, default batch size, ``top_k=None``
  (so p(acceptable) is read off the same softmax).

Both use the same model object, the same threads (``torch.get_num_threads()``) and the same
triples. Each side first scores 64 other triples as a warm-up (not timed, the same for both);
then the two alternate for ``--repeat`` rounds (ours, naive, ours, naive, ...) so a burst of
load from elsewhere hits both. Reported: the median of each side's rounds. Without quantization
the script also checks that both sides give the same scores (they read the same inputs).

(b) Quality. Labels from ``../shared/data/atomic2020_sample.tsv`` (human-authored ATOMIC 2020
tails, CC-BY): every distinct (head, relation, tail) with a real tail (``none`` skipped; the
duplicate check ignores case, spacing and a final period) is *acceptable*. For each of them, in
file order, one *not acceptable* triple is drawn with ``random.Random(--seed)``: the same head
and relation with the tail of another head under the same relation, redrawn when that tail is
one of this head's own tails for the relation, or the (head, relation, tail) negative was
already drawn. So the classes are balanced 1:1; a positive whose relation has no other head
(a handful of rare relations) gets no negative and is left out too. The labels are split with
``app.critic.labels.split_by_head`` (the ``critic_held_out_fraction`` setting), so no event is
on both sides; ``train_critic`` trains with the default ``CriticTrainingArguments`` (only
``base_model``, the packaged MiniLM, and ``output_dir`` are given; ``--epochs`` changes the
number of epochs, to try a larger encoder in bounded time) and the saved model is loaded
back with ``load_critic`` and scored on the held-out labels: those scores give the reported
ROC-AUC and average precision.

How to run (from the repository root)::

    HF_HUB_OFFLINE=1 .venv/bin/python bench/critic_bench.py                  # both parts
    HF_HUB_OFFLINE=1 .venv/bin/python bench/critic_bench.py --part throughput -n 2000
    HF_HUB_OFFLINE=1 .venv/bin/python bench/critic_bench.py --part quality
    HF_HUB_OFFLINE=1 .venv/bin/python bench/critic_bench.py --part quality \
        --base-model PATH/all-mpnet-base-v2 --epochs 2     # a larger encoder

The exit status is 0 only when every target of the parts run is met.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import (  # noqa: E402
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table  # noqa: E402

from app.core.config import Settings, packaged_minilm_path  # noqa: E402
from app.critic.labels import LabelledTriple, split_by_head  # noqa: E402
from app.critic.metrics import evaluate  # noqa: E402
from app.critic.train import (  # noqa: E402
    CriticTrainingArguments,
    critic_input,
    load_critic,
    score_pairs,
    train_critic,
)

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "atomic2020_sample.tsv"
THROUGHPUT_RATIO_TARGET = 2.0
AUC_TARGET = 0.85
MINUTES_TARGET = 15.0
# Wide enough for the tables when the output goes to a file (rich assumes 80 columns there).
console = Console(width=None if sys.stdout.isatty() else 150)


# --- machine load -------------------------------------------------------------------------


def cpu_stall_us() -> int | None:
    """Cumulative time (µs) in which runnable tasks waited for a CPU (Linux PSI ``some``)."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return int(dict(part.split("=") for part in line.split()[1:])["total"])


@dataclass
class Load:
    """How busy the machine was while a measurement ran: the share of the wall time in which
    work waited for a CPU (PSI, %), and the 1-minute load average at the end."""

    pressure: float | None = None
    load1: float | None = None


@contextmanager
def measured_load() -> Iterator[Load]:
    load = Load()
    start_stall, start = cpu_stall_us(), time.perf_counter()
    try:
        yield load
    finally:
        end_stall, wall = cpu_stall_us(), time.perf_counter() - start
        if start_stall is not None and end_stall is not None and wall > 0:
            load.pressure = 100 * (end_stall - start_stall) / 1e6 / wall
        load.load1 = os.getloadavg()[0]


def load_text(load: Load) -> str:
    psi = "n/a" if load.pressure is None else f"{load.pressure:.1f}%"
    return f"cpu psi {psi}, load1 {load.load1:.2f}"


# --- the data -----------------------------------------------------------------------------


def _key(text: str) -> str:
    return " ".join(text.casefold().split()).rstrip(".")


def read_triples(path: Path) -> list[tuple[str, str, str]]:
    """Distinct (head, relation, tail) with a real tail, in file order."""
    triples, seen = [], set()
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                continue
            head, relation, tail = (part.strip() for part in parts)
            if not head or not tail or _key(tail) == "none":
                continue
            key = (_key(head), relation, _key(tail))
            if key not in seen:
                seen.add(key)
                triples.append((head, relation, tail))
    return triples


@dataclass
class LabelSet:
    labels: list[LabelledTriple]
    dropped_positives: int  # positives without a possible negative (left out)
    counts: dict[str, int] = field(default_factory=dict)


def build_labels(path: Path, seed: int) -> LabelSet:
    """Human tails = acceptable; for each, one tail of another head under the same relation =
    not acceptable (seeded, deterministic)."""
    positives = read_triples(path)
    own_tails: dict[tuple[str, str], set[str]] = collections.defaultdict(set)
    pool: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    for head, relation, tail in positives:
        own_tails[(_key(head), relation)].add(_key(tail))
        pool[relation].append((_key(head), tail))
    rng = random.Random(seed)
    labels: list[LabelledTriple] = []
    drawn: set[tuple[str, str, str]] = set()
    dropped = 0
    for head, relation, tail in positives:
        candidates = pool[relation]
        negative = None
        if any(other != _key(head) for other, _ in candidates):
            for _attempt in range(100):
                other, other_tail = rng.choice(candidates)
                key = (_key(head), relation, _key(other_tail))
                if other == _key(head) or key[2] in own_tails[key[:2]] or key in drawn:
                    continue
                drawn.add(key)
                negative = other_tail
                break
        if negative is None:
            dropped += 1
            continue
        labels.append(LabelledTriple(len(labels), head, relation, tail, True))
        labels.append(LabelledTriple(len(labels), head, relation, negative, False))
    return LabelSet(labels, dropped)


# --- (a) throughput -----------------------------------------------------------------------


@dataclass
class ThroughputResult:
    n: int
    seconds: dict[str, list[float]]  # scorer -> seconds per round
    batch_size: int
    quantize: bool
    threads: int
    max_abs_diff: dict[str, float]  # scorer -> max |p - p(ours)| over the triples
    load: Load

    def rate(self, name: str) -> float:
        return self.n / statistics.median(self.seconds[name])

    def ratio(self, name: str = "ours") -> float:
        return self.rate(name) / self.rate("naive")


def run_throughput(args: argparse.Namespace, settings: Settings) -> ThroughputResult:
    from transformers import pipeline

    from app.critic.score import load_scorer

    triples = read_triples(args.data)
    rng = random.Random(args.seed)
    rng.shuffle(triples)
    if len(triples) < args.n + 64:
        raise SystemExit(f"{args.data} has {len(triples)} triples, need {args.n + 64}")
    warmup = [critic_input(h, r, t, names=True) for h, r, t in triples[:64]]
    pairs = [critic_input(h, r, t, names=True) for h, r, t in triples[64 : 64 + args.n]]

    torch.manual_seed(args.seed)  # the new classification head
    load_scorer.cache_clear()
    model, tokenizer = load_scorer(args.base_model, settings.critic_quantize)
    batch_size = settings.critic_score_batch_size
    classifier = pipeline("text-classification", model=model, tokenizer=tokenizer, device="cpu")
    label_one = model.config.id2label[1]

    def ours(batch: list[tuple[str, str]]) -> np.ndarray:
        return score_pairs(model, tokenizer, batch, batch_size=batch_size)

    def naive(batch: list[tuple[str, str]]) -> np.ndarray:
        out = classifier([{"text": a, "text_pair": b} for a, b in batch], top_k=None)
        return np.array([next(d["score"] for d in row if d["label"] == label_one) for row in out])

    sides = {"ours": ours, "naive": naive}
    if args.int8 and not settings.critic_quantize:
        # The same weights (same head), int8 dynamic quantization as critic_quantize does.
        int8_model = torch.ao.quantization.quantize_dynamic(
            model, {torch.nn.Linear}, dtype=torch.qint8
        )

        def ours_int8(batch: list[tuple[str, str]]) -> np.ndarray:
            return score_pairs(int8_model, tokenizer, batch, batch_size=batch_size)

        sides["ours_int8"] = ours_int8
    for fn in sides.values():
        fn(warmup)
    times: dict[str, list[float]] = {name: [] for name in sides}
    scores: dict[str, np.ndarray] = {}
    with (
        measured_load() as load,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as bar,
    ):
        task = bar.add_task("throughput rounds", total=len(sides) * args.repeat)
        for _round in range(args.repeat):
            for name, fn in sides.items():
                bar.update(task, description=f"throughput: {name}")
                start = time.perf_counter()
                scores[name] = fn(pairs)
                times[name].append(time.perf_counter() - start)
                bar.advance(task)
    diffs = {
        name: float(np.max(np.abs(scores[name] - scores["ours"])))
        for name in sides
        if name != "ours"
    }
    return ThroughputResult(
        args.n,
        times,
        batch_size,
        settings.critic_quantize,
        torch.get_num_threads(),
        diffs,
        load,
    )


# --- (b) quality --------------------------------------------------------------------------


class RichProgress:
    """``app.core.jobs.Progress`` drawn as a rich progress bar."""

    def __init__(self, bar: Progress) -> None:
        self.bar = bar
        self.task = bar.add_task("training", total=None)

    def update(
        self, done: int, total: int | None = None, message: str | None = None, *, force=False
    ) -> None:
        self.bar.update(self.task, completed=done, total=total, description=message or "")

    @contextmanager
    def paused(self) -> Iterator[None]:
        yield


@dataclass
class QualityResult:
    label_set: LabelSet
    train: int
    held_out: int
    train_heads: int
    held_out_heads: int
    train_acceptable: int
    held_out_acceptable: int
    minutes: float
    roc_auc: float
    average_precision: float
    precision_at_08: float | None
    best_epoch: int
    history: list[dict[str, float]]
    arguments: dict[str, object]
    load: Load


def arguments_label(args: argparse.Namespace) -> str:
    return (
        "default arguments" if args.epochs is None else f"default arguments, {args.epochs} epochs"
    )


def run_quality(args: argparse.Namespace, settings: Settings) -> QualityResult:
    label_set = build_labels(args.data, args.seed)
    train, held_out = split_by_head(label_set.labels, settings.critic_held_out_fraction)
    output = Path(args.output_dir or tempfile.mkdtemp(prefix="critic-bench-"))
    # Only the base model and the output folder are given: the rest are the defaults, unless
    # --epochs asks for another number (to try a larger encoder in bounded time).
    overrides = {} if args.epochs is None else {"epochs": args.epochs}
    training_args = CriticTrainingArguments(
        base_model=args.base_model, output_dir=output, **overrides
    )
    console.print(
        f"quality: {len(label_set.labels):,} labels ({len(train):,} train, {len(held_out):,} "
        f"held out), {arguments_label(args)}, model in {output}"
    )
    with (
        measured_load() as load,
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        ) as bar,
    ):
        start = time.perf_counter()
        trained = train_critic(training_args, train, held_out, RichProgress(bar))
        minutes = (time.perf_counter() - start) / 60
    # The reported figures come from the saved model, loaded back as a scoring worker would.
    model, tokenizer = load_critic(output)
    pairs = [critic_input(t.head, t.relation, t.tail, names=training_args.names) for t in held_out]
    labels = np.array([t.acceptable for t in held_out])
    metrics = evaluate(labels, score_pairs(model, tokenizer, pairs))
    at_08 = [p for p in metrics["precision_at_recall"] if p["target_recall"] == 0.8]
    # The arguments as training recorded them (auto settings such as bf16 resolved).
    card = json.loads((output / "critic_card.json").read_text())
    arguments = {k: v for k, v in card["arguments"].items() if k != "output_dir"}
    return QualityResult(
        label_set,
        len(train),
        len(held_out),
        len({t.head for t in train}),
        len({t.head for t in held_out}),
        sum(t.acceptable for t in train),
        sum(t.acceptable for t in held_out),
        minutes,
        metrics["roc_auc"],
        metrics["average_precision"],
        at_08[0]["precision"] if at_08 else None,
        trained.best_epoch,
        trained.history,
        arguments,
        load,
    )


# --- report -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("throughput", "quality", "both"), default="both")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ATOMIC-style TSV")
    parser.add_argument("-n", type=int, default=2000, help="triples scored per round (a)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per side (a)")
    parser.add_argument(
        "--int8", action="store_true", help="(a): also time int8 dynamic quantization"
    )
    parser.add_argument("--seed", type=int, default=0, help="triple sample / negatives seed")
    parser.add_argument(
        "--base-model", default=None, help="encoder (default: the critic_base_model setting)"
    )
    parser.add_argument("--output-dir", default=None, help="where (b) saves the critic")
    parser.add_argument(
        "--epochs", type=int, default=None, help="(b): epochs instead of the default setting"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        console.print(f"[red]no data file at {args.data}[/red] (see ../shared/data/README.md)")
        return 2
    settings = Settings()
    args.base_model = args.base_model or settings.critic_base_model or packaged_minilm_path()
    console.print(
        f"model {args.base_model}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs"
    )
    ok = True
    report: dict[str, object] = {}
    if args.part in ("throughput", "both"):
        result = run_throughput(args, settings)
        table = Table(title=f"(a) scoring throughput, {result.n:,} triples, CPU")
        for column in ("scorer", "rounds s", "triples/s", "vs naive", "max |Δp|", "target", "met?"):
            table.add_column(column, justify="left" if column in ("scorer", "target") else "right")
        met = result.ratio() >= THROUGHPUT_RATIO_TARGET
        ok &= met
        quant = ", int8" if result.quantize else ""
        labels = {
            "ours": f"ours (score_pairs, batch {result.batch_size}{quant})",
            "naive": "naive (pipeline, batch 1)",
            "ours_int8": f"ours, int8 (score_pairs, batch {result.batch_size})",
        }
        for name, seconds in result.seconds.items():
            table.add_row(
                labels[name],
                " / ".join(f"{s:.2f}" for s in seconds),
                f"{result.rate(name):,.0f}",
                f"{result.ratio(name):.2f}x",
                f"{result.max_abs_diff[name]:.1e}" if name in result.max_abs_diff else "",
                f">= {THROUGHPUT_RATIO_TARGET:.0f}x" if name == "ours" else "",
                ("yes" if met else "NO") if name == "ours" else "",
            )
        console.print(table)
        console.print(f"{result.threads} threads; {load_text(result.load)}")
        report["throughput"] = {
            "n": result.n,
            "seconds": result.seconds,
            "per_s": {name: result.rate(name) for name in result.seconds},
            "ratio": result.ratio(),
            "batch_size": result.batch_size,
            "quantize": result.quantize,
            "threads": result.threads,
            "max_abs_diff": result.max_abs_diff,
            "cpu_psi": result.load.pressure,
            "load1": result.load.load1,
        }
    if args.part in ("quality", "both"):
        result = run_quality(args, settings)
        history = Table(title="(b) epochs (held-out, during training)")
        for column in ("epoch", "precision @ recall 0.8", "ROC-AUC"):
            history.add_column(column, justify="right")
        for row in result.history:
            history.add_row(
                f"{row['epoch']:g}", f"{row['precision_at_target']:.3f}", f"{row['roc_auc']:.4f}"
            )
        console.print(history)
        table = Table(title=f"(b) quality, held-out split by head, {arguments_label(args)}")
        for column in ("labels (acc/not)", "train / held out", "heads", "best epoch"):
            table.add_column(column, justify="right")
        for column in ("ROC-AUC", "AP", "P@R0.8", "minutes", "target", "met?"):
            table.add_column(column, justify="right")
        met = result.roc_auc >= AUC_TARGET and result.minutes < MINUTES_TARGET
        ok &= met
        acceptable = result.train_acceptable + result.held_out_acceptable
        total = result.train + result.held_out
        table.add_row(
            f"{total:,} ({acceptable:,}/{total - acceptable:,})",
            f"{result.train:,} / {result.held_out:,}",
            f"{result.train_heads:,} / {result.held_out_heads:,}",
            f"{result.best_epoch:g}",
            f"{result.roc_auc:.4f}",
            f"{result.average_precision:.4f}",
            "n/a" if result.precision_at_08 is None else f"{result.precision_at_08:.3f}",
            f"{result.minutes:.1f}",
            f"AUC >= {AUC_TARGET}, < {MINUTES_TARGET:.0f} min",
            "yes" if met else "NO",
        )
        console.print(table)
        console.print(
            f"{result.label_set.dropped_positives} positives without a possible negative left "
            f"out; {load_text(result.load)}"
        )
        console.print(f"arguments: {json.dumps(result.arguments, default=str)}")
        report["quality"] = {
            "labels": total,
            "acceptable": acceptable,
            "train": result.train,
            "held_out": result.held_out,
            "train_heads": result.train_heads,
            "held_out_heads": result.held_out_heads,
            "dropped_positives": result.label_set.dropped_positives,
            "roc_auc": result.roc_auc,
            "average_precision": result.average_precision,
            "precision_at_recall_0.8": result.precision_at_08,
            "best_epoch": result.best_epoch,
            "history": result.history,
            "minutes": result.minutes,
            "arguments": result.arguments,
            "cpu_psi": result.load.pressure,
            "load1": result.load.load1,
        }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
