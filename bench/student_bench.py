"""Student benchmark: training speed of the packaged SmolLM2-135M, and batched generation.

1. Training tokens per second: the HF Trainer (the same ``train_student`` the job runs) on
   real ATOMIC 2020 triples in the student format, a fixed number of steps, in float32 and in
   bfloat16 mixed precision where the CPU computes bfloat16 natively (AVX512-BF16/AMX).
   Tokens are the padded batch tokens the model actually processed.
2. Generation: the fine-tuned model writes greedy inferences for the same queries, batched
   (``app.student.generate``) against a naive loop of one ``generate`` call per query.

Run from the project root (nice: the machine is shared):

    nice -n 10 .venv/bin/python bench/student_bench.py --steps 20 --queries 64

Reads ``../shared/data/atomic2020_sample.tsv``; the converted SmolLM2 is cached under
``--data-dir`` (first run: about a minute to de-quantize the GGUF).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "atomic2020_sample.tsv"


def student_pairs(limit: int, seed: int = 0) -> list[tuple[str, str, str]]:
    rows = []
    with DATA.open(encoding="utf-8") as handle:
        for line in handle:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3 and parts[2].strip().lower() not in ("none", ""):
                rows.append((parts[0], parts[1], parts[2]))
    random.Random(seed).shuffle(rows)
    return rows[:limit]


def write_split(path: Path, rows: list[tuple[str, str, str]]) -> None:
    from app.export.writers import student_source

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for head, relation, tail in rows:
            handle.write(json.dumps({"source": student_source(head, relation), "target": tail}))
            handle.write("\n")


def padded_tokens(tokenizer, path: Path, batch_size: int, steps: int, max_length: int) -> int:  # type: ignore[no-untyped-def]
    """Tokens the Trainer fed the model: each batch padded to its longest example."""
    from app.student.examples import read_pairs, tokenize_pair

    rows = [tokenize_pair(tokenizer, pair, max_length) for pair in read_pairs(path)]
    lengths = [len(r["input_ids"]) for r in rows if r]
    total = 0
    for step in range(steps):
        batch = lengths[(step * batch_size) % len(lengths) :][:batch_size]
        total += max(batch) * len(batch)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "skd-bench")
    args = parser.parse_args()
    os.environ.setdefault("SKD_DATA_DIR", str(args.data_dir))

    import torch

    from app.student.base import PACKAGED, load_base
    from app.student.examples import Query
    from app.student.generate import Decoding, cut_inference, generate, load_student
    from app.student.train import StudentTrainingArgs, hardware_bf16, train_student

    work = Path(tempfile.mkdtemp(prefix="student-bench-"))
    rows = student_pairs(args.batch_size * args.steps + 200)
    write_split(work / "student" / "train.jsonl", rows[200:])
    write_split(work / "student" / "val.jsonl", rows[:100])
    print(
        f"CPU: {platform.processor() or platform.machine()}, torch threads "
        f"{torch.get_num_threads()}, cores {os.cpu_count()}, native bf16: {hardware_bf16()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    started = time.monotonic()
    _model, tokenizer = load_base(PACKAGED)
    print(
        f"load (converted SmolLM2, cached after the first run): {time.monotonic() - started:.1f} s"
    )
    tokens = padded_tokens(
        tokenizer, work / "student" / "train.jsonl", args.batch_size, args.steps, 64
    )
    results = {}
    for bf16 in [False, True] if hardware_bf16() else [False]:
        label = "bf16" if bf16 else "fp32"
        out = work / f"model-{label}"
        train_args = StudentTrainingArgs(
            output_dir=out,
            base_model=PACKAGED,
            epochs=1,
            batch_size=args.batch_size,
            max_steps=args.steps,
            learning_rate=5e-5,
            bf16=bf16,
        )
        cpu = time.process_time()
        figures = train_student(train_args, work / "student" / "train.jsonl", None)
        cpu = time.process_time() - cpu
        seconds = figures["train_runtime_s"]
        results[label] = {
            "steps": figures["steps"],
            "seconds": round(seconds, 1),
            "tokens_per_s": round(tokens / seconds, 1),
            # CPU seconds of every thread: on a shared machine the wall clock also counts
            # time spent waiting for a core; tokens per CPU-second does not.
            "cpu_s": round(cpu, 1),
            "tokens_per_cpu_s": round(tokens / cpu, 1),
            "examples_per_s": round(figures["steps"] * args.batch_size / seconds, 2),
            "train_loss": round(figures["train_loss"], 3),
        }
        print(f"train {label}: {results[label]}")
    model_dir = work / "model-fp32"
    model, tokenizer = load_student(model_dir)
    queries = [Query(h, r) for h, r, _t in rows[100 : 100 + args.queries]]
    decoding = Decoding(batch_size=args.queries, max_new_tokens=args.max_new_tokens)
    started, cpu = time.monotonic(), time.process_time()
    batched = list(generate(model, tokenizer, queries, decoding))
    batched_s, batched_cpu = time.monotonic() - started, time.process_time() - cpu
    tokenizer.padding_side = "left"
    started, cpu = time.monotonic(), time.process_time()
    naive = []
    with torch.no_grad():
        for query in queries:
            encoded = tokenizer(query.prompt, return_tensors="pt")
            output = model.generate(
                **encoded,
                max_new_tokens=args.max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
            text = tokenizer.decode(output[0, encoded["input_ids"].shape[1] :], True)
            naive.append(cut_inference(text))
    naive_s, naive_cpu = time.monotonic() - started, time.process_time() - cpu
    by_query = {(row["head"], row["relation"]): row["tail"] for row in batched}
    same = sum(
        1
        for query, tail in zip(queries, naive, strict=True)
        if by_query.get((query.head, query.relation), "") == tail
    )
    print(
        f"generate {len(queries)} queries, greedy, {args.max_new_tokens} new tokens: batched "
        f"(one batch, scores included) {batched_s:.1f} s = {len(queries) / batched_s:.1f} "
        f"queries/s; naive loop {naive_s:.1f} s = {len(queries) / naive_s:.1f} queries/s; "
        f"{naive_s / batched_s:.1f}x; same text for {same} of {len(queries)} queries"
    )
    print(
        f"generate, CPU seconds: batched {batched_cpu:.1f}, naive {naive_cpu:.1f} "
        f"({naive_cpu / batched_cpu:.1f}x)"
    )
    print("sample:", json.dumps(batched[:3], ensure_ascii=False))


if __name__ == "__main__":
    main()
