"""CPU cost of one critic training step, per encoder and lever (issue 17's quality preset).

Why: a full training run of the larger encoder takes half an hour or more on 2 cores; on a
shared machine it may not finish at all. The cost of a step decides the training time (an
epoch is steps x this, plus a held-out pass), so the levers (lower layers fixed, layer-wise
decay) can be compared in minutes. Each variant: the same 320 seeded pairs of the bench's
labels (``critic_bench.build_labels``), batch 32, max length 64, bfloat16 autocast where the
CPU has it, the word embeddings fixed, exactly the modules ``train_critic`` uses
(``freeze_lower``, ``_optimizer``); the median of 8 steps after 2 warm-up steps, in CPU
seconds of this process (``time.process_time``: load from elsewhere inflates it less than
wall time, though spin-waiting threads and shared caches still do). Also the CPU seconds per
pair of a held-out scoring pass.

    HF_HUB_OFFLINE=1 nice -n 10 .venv/bin/python bench/critic_step_cost.py --mpnet FOLDER

FOLDER: the unpacked all-mpnet-base-v2 (the quality preset unpacks it into
``<data dir>/models/base/all-mpnet-base-v2`` on first use; ``skd critic presets`` says
whether the packages are installed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from critic_bench import DEFAULT_DATA, build_labels  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from app.core.config import packaged_minilm_path  # noqa: E402
from app.critic.train import (  # noqa: E402
    _optimizer,
    critic_input,
    freeze_lower,
    load_critic,
    native_bf16,
    score_pairs,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mpnet", required=True, help="the unpacked all-mpnet-base-v2 folder")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    labels = build_labels(DEFAULT_DATA, 20261123).labels
    random.Random(0).shuffle(labels)
    labels = labels[: 32 * args.steps]
    pairs = [critic_input(t.head, t.relation, t.tail, names=True) for t in labels]
    y = torch.tensor([int(t.acceptable) for t in labels])
    bf16 = native_bf16()
    variants = [
        ("all-MiniLM-L6-v2", packaged_minilm_path(), 0, 1.0),
        ("all-mpnet-base-v2", args.mpnet, 0, 1.0),
        ("all-mpnet-base-v2", args.mpnet, 4, 0.9),
        ("all-mpnet-base-v2", args.mpnet, 6, 0.9),
    ]
    for name, path, freeze, decay in variants:
        torch.manual_seed(0)
        model, tokenizer = load_critic(path)
        model.get_input_embeddings().weight.requires_grad_(False)
        freeze_lower(model, freeze)
        optimizer = _optimizer(model, 1e-4, 0.01, decay)
        model.train()
        cpu = []
        for step in range(args.steps):
            batch = slice(step * 32, (step + 1) * 32)
            encoded = tokenizer(
                [a for a, _ in pairs[batch]],
                [b for _, b in pairs[batch]],
                padding=True,
                truncation=True,
                max_length=64,
                return_tensors="pt",
            )
            began = time.process_time()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = model(**encoded).logits
            loss = torch.nn.functional.cross_entropy(logits.float(), y[batch])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            cpu.append(time.process_time() - began)
        began = time.process_time()
        score_pairs(model, tokenizer, pairs)
        row = {
            "model": name,
            "freeze_layers": freeze,
            "layer_decay": decay,
            "cpu_s_per_step": sorted(cpu[2:])[len(cpu[2:]) // 2],
            "score_cpu_s_per_pair": (time.process_time() - began) / len(pairs),
            "load": os.getloadavg(),
        }
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
