"""Critic presets through the product's own training job: quality, time, warm start, scoring.

Why (issue 17): a researcher filtering a corpus needs a critic that keeps half of the good
triples at 90% precision, and the periodic retraining must take minutes. This measures, per
preset (``SKD_CRITIC_PRESET``), what the product does, not a script's copy of it:

1. **Full training.** A fresh SQLite data dir gets the bench's labels
   (``critic_bench.build_labels``: 30,304 balanced labels from real ATOMIC 2020 text) as triples
   with imported human ratings, less ``--new-labels`` training-side labels held back. Then
   ``loop.request_training`` + ``run_job(loop.run_training)``, exactly what ``skd critic train``
   runs, with the preset's defaults: the held-out side is the product's own by-head split.
   Reported from the version row: held-out ROC-AUC, average precision, precision at recall
   0.5 / 0.8, recall at precision 0.9, and the job's wall time.
2. **Warm start.** That version is activated, the held-back labels arrive as new ratings,
   and a retrain is requested the normal way: it warm-starts from the active version (new
   labels plus a replayed sample of the old ones). Its AUC and time.
3. **Full retrain on the same labels** (``full=True``, as ``--full``), for the presets in
   ``--full-retrain``: the AUC the warm start should match within 0.005.
4. **Scoring rate** of the trained version on ``--score-n`` held-out pairs: ours (length-sorted
   batches, ``score_pairs``), ours with int8 weights (torchao), and a naive
   ``transformers.pipeline("text-classification")`` over the same pairs and model, one round
   each after a warm-up, in the same process.
5. **Memory:** the child process's peak RSS (training included) and the model's size on disk.

Each preset runs in its own child process, one after another in one invocation, so the
``fast`` and ``quality`` times come from the same run and their ratio is meaningful on a
machine whose speed is not known. The load average before and after each child is printed:
on a shared machine compare ratios, not minutes.

How to run (from the repository root)::

    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/critic_presets_bench.py
    .venv/bin/python bench/critic_presets_bench.py --presets quality,fast --full-retrain fast
    .venv/bin/python bench/critic_presets_bench.py --heads 200   # a quick subsample
    # a recipe variant (settings win over the preset's values, as in the product):
    .venv/bin/python bench/critic_presets_bench.py --presets quality --full-retrain "" \
        --setting critic_epochs=2 --setting critic_freeze_layers=6

The results are written as JSON (``--out``) as each child finishes, so a run cut short keeps
what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _labels(args: argparse.Namespace, fraction: float):  # type: ignore[no-untyped-def]
    from critic_bench import build_labels

    from app.critic.labels import split_by_head

    labels = build_labels(Path(args.data), args.seed).labels
    if args.heads:
        heads = sorted({t.head for t in labels})
        random.Random(args.seed).shuffle(heads)
        keep = set(heads[: args.heads])
        labels = [t for t in labels if t.head in keep]
    train, held_out = split_by_head(labels, fraction)
    new = set(random.Random(args.seed + 1).sample(range(len(train)), args.new_labels))
    base = [t for i, t in enumerate(train) if i not in new] + held_out
    return base, [train[i] for i in sorted(new)], held_out


def _insert(labels) -> None:  # type: ignore[no-untyped-def]
    from app.core.db import session_scope
    from app.core.models import Rating, RatingOrigin, Triple

    with session_scope(write=True) as session:
        for label in labels:
            triple = Triple(
                head=label.head,
                relation=label.relation,
                tail=label.tail,
                norm_hash=uuid.uuid4().hex,
                source="bench",
            )
            session.add(triple)
            session.flush()
            session.add(
                Rating(
                    triple_id=triple.id,
                    origin=RatingOrigin.imported,
                    answer=2 if label.acceptable else -2,
                    submission_id=uuid.uuid4().hex,
                )
            )


def _train(full: bool) -> dict[str, Any]:
    """One training through the product's job; the figures from the version row."""
    from app.core.db import session_scope
    from app.core.jobs import NullProgress, run_job
    from app.core.models import CriticVersion
    from app.critic import loop

    with session_scope(write=True) as session:
        chain = loop.request_training(session, reason="bench", full=full)
        start_line = loop.describe_start(session, chain.version_id)
    print(f"  version {chain.version_id}: {start_line}", flush=True)
    began = time.perf_counter()
    run_job(chain.train_job_id, loop.run_training, extra=NullProgress())
    minutes = (time.perf_counter() - began) / 60
    with session_scope() as session:
        version = session.get(CriticVersion, chain.version_id)
        assert version is not None
        if version.state.value == "failed":
            raise RuntimeError(f"training failed: {version.error}")
        m = version.metrics
        at = {round(p["target_recall"], 2): p["precision"] for p in m["precision_at_recall"]}
        return {
            "version_id": version.id,
            "path": version.path,
            "start": version.label_snapshot.get("start"),
            "train_labels": version.label_snapshot.get("train"),
            "held_out_labels": version.label_snapshot.get("held_out"),
            "roc_auc": m["roc_auc"],
            "average_precision": m["average_precision"],
            "precision_at_recall_0.5": at.get(0.5),
            "precision_at_recall_0.8": at.get(0.8),
            "recall_at_precision_0.9": m.get("recall_at_precision_90"),
            # 95% bootstrap intervals over the held-out heads (the product stores them).
            "intervals": m.get("intervals"),
            "best_epoch": m.get("best_epoch"),
            "minutes": minutes,
            "hyperparameters": version.hyperparameters,
        }


def _scoring(path: str, held_out, n: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    import numpy as np
    from transformers import pipeline

    from app.critic.score import load_scorer
    from app.critic.train import critic_input, score_pairs

    pairs = [critic_input(t.head, t.relation, t.tail, names=True) for t in held_out[:n]]
    model, tokenizer = load_scorer(path, False)
    int8, _ = load_scorer(path, True)
    naive_pipe = pipeline("text-classification", model=model, tokenizer=tokenizer)

    def naive(batch):  # type: ignore[no-untyped-def]
        out = naive_pipe([{"text": a, "text_pair": b} for a, b in batch], top_k=None)
        return np.array([next(s["score"] for s in row if s["label"].endswith("1")) for row in out])

    sides = {
        "ours": lambda batch: score_pairs(model, tokenizer, batch),
        "ours_int8": lambda batch: score_pairs(int8, tokenizer, batch),
        "naive": naive,
    }
    rates, scores = {}, {}
    for name, run in sides.items():
        run(pairs[:32])  # warm-up
        began = time.perf_counter()
        scores[name] = run(pairs)
        rates[name] = len(pairs) / (time.perf_counter() - began)
    return {
        "pairs": len(pairs),
        "triples_per_s": rates,
        "int8_max_diff": float(np.abs(scores["ours_int8"] - scores["ours"]).max()),
        "naive_max_diff": float(np.abs(scores["naive"] - scores["ours"]).max()),
    }


def _settings(pairs: list[str]) -> dict[str, str]:
    """``--setting critic_epochs=2`` as ``{"SKD_CRITIC_EPOCHS": "2"}`` (a recipe variant: a
    setting given wins over the preset's value, as it does in the product)."""
    chosen = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"--setting {pair!r}: expected NAME=VALUE, e.g. critic_epochs=2")
        chosen[f"SKD_{name.strip().upper()}"] = value.strip()
    return chosen


def child(args: argparse.Namespace) -> int:
    """One preset, in a process of its own (its own settings, database and peak memory)."""
    out = Path(args.out)
    data_dir = Path(tempfile.mkdtemp(prefix=f"critic-{args.child}-"))
    for key in [k for k in os.environ if k.startswith("SKD_")]:
        del os.environ[key]
    os.environ.update(SKD_DATA_DIR=str(data_dir), SKD_CRITIC_PRESET=args.child)
    os.environ.update(_settings(args.setting))
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from app.core import db, migrate
    from app.core.config import get_settings
    from app.core.db import session_scope
    from app.critic.registry import activate

    settings = get_settings()
    settings.ensure_dirs()
    migrate.upgrade(settings.database)
    db.configure(settings)
    base, new, held_out = _labels(args, settings.critic_held_out_fraction)
    _insert(base)
    result: dict[str, Any] = {
        "preset": args.child,
        "settings": _settings(args.setting),
        "load_before": os.getloadavg(),
    }

    def save() -> None:
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out.write_text(json.dumps(result, indent=2, default=str))

    print(f"[{args.child}] {len(base):,} labels, then +{len(new)}; full training", flush=True)
    result["full"] = first = _train(full=True)
    save()
    with session_scope(write=True) as session:
        activate(session, first["version_id"])
    _insert(new)
    print(f"[{args.child}] +{len(new)} labels: warm start", flush=True)
    result["warm"] = _train(full=False)
    save()
    if not args.no_full_retrain:
        print(f"[{args.child}] full retrain on the same labels", flush=True)
        result["full_retrain"] = _train(full=True)
        save()
    print(f"[{args.child}] scoring rate", flush=True)
    result["scoring"] = _scoring(first["path"], held_out, args.score_n)
    size = sum(f.stat().st_size for f in Path(first["path"]).glob("*.safetensors"))
    result["model_mb"] = size / 2**20
    result["load_after"] = os.getloadavg()
    save()
    return 0


def _row(name: str, r: dict[str, Any] | None) -> str:
    if not r:
        return f"| {name} | not measured |"
    intervals = r.get("intervals") or {}

    def ci(key: str) -> str:
        pair = intervals.get(key)
        return f" ({pair[0]:.3f}–{pair[1]:.3f})" if pair else ""

    return (
        f"| {name} | {r['train_labels']:,} | {r['roc_auc']:.4f}{ci('roc_auc')} "
        f"| {r['average_precision']:.4f} "
        f"| {r['precision_at_recall_0.5']:.3f}{ci('precision_at_recall_50')} "
        f"| {r['precision_at_recall_0.8']:.3f} "
        f"| {r['recall_at_precision_0.9']:.3f} | {r['minutes']:.1f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="fast,quality")
    parser.add_argument(
        "--data", default=str(ROOT.parent / "shared" / "data" / "atomic2020_sample.tsv")
    )
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--heads", type=int, default=0, help="a subsample of this many heads")
    parser.add_argument("--new-labels", type=int, default=200)
    parser.add_argument(
        "--full-retrain",
        default="fast,quality",
        help="presets that also run a full retrain on the same labels (empty: none)",
    )
    parser.add_argument("--no-full-retrain", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--score-n", type=int, default=1000)
    parser.add_argument("--out", default="critic-presets-bench.json")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an SKD setting for every preset's run, e.g. critic_epochs=2 (repeatable)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    results = {}
    for preset in args.presets.split(","):
        out = Path(f"{Path(args.out).with_suffix('')}-{preset}.json")
        command = [sys.executable, __file__, "--child", preset, "--out", str(out)]
        for flag in ("data", "seed", "heads", "new_labels", "score_n"):
            command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        for pair in args.setting:
            command += ["--setting", pair]
        if preset not in args.full_retrain.split(","):
            command.append("--no-full-retrain")
        code = subprocess.call(command)
        results[preset] = json.loads(out.read_text()) if out.exists() else {}
        results[preset]["exit"] = code
        Path(args.out).write_text(json.dumps(results, indent=2, default=str))
    print("\n| run | train labels | ROC-AUC | AP | P@R0.5 | P@R0.8 | R@P0.9 | minutes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for preset, r in results.items():
        for part in ("full", "warm", "full_retrain"):
            print(_row(f"{preset} {part}", r.get(part)))
    for preset, r in results.items():
        s = r.get("scoring")
        if s:
            rates = ", ".join(f"{k} {v:.0f}/s" for k, v in s["triples_per_s"].items())
            print(
                f"{preset} scoring ({s['pairs']} pairs): {rates}; int8 max diff "
                f"{s['int8_max_diff']:.4f}; peak RSS {r['peak_rss_mb']:.0f} MB, "
                f"model {r['model_mb']:.0f} MB; load {r['load_before']} -> {r['load_after']}"
            )
    if all(results.get(p, {}).get("full") for p in ("fast", "quality")):
        ratio = results["quality"]["full"]["minutes"] / results["fast"]["full"]["minutes"]
        print(f"quality / fast training time in this run: {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
