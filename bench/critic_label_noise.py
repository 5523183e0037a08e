"""How much of a critic's held-out error is the benchmark's label noise?

``critic_bench.py`` (b) calls every tail of *another* head under the same relation "not
acceptable". Some of those negatives are sound inferences all the same ("PersonX demands
PersonY's attention, xReact, angry"), and no critic should be blamed for accepting them. This
script takes a critic saved by ``critic_bench.py --output-dir DIR`` and a file of held-out
negatives that a person read and marked ``sound``, ``maybe`` or ``unsound``
(``bench/data/critic_negatives_read.tsv``: 200 drawn at random), and reports the held-out
ROC-AUC three ways: against all negatives, against the read ones, and against only the read
ones marked unsound. The gap between the last two is what the noise costs; what is left below
1.0 against the unsound ones is the critic's own error. It also prints the AUC per relation
and the unsound negatives the critic liked best, to read.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/critic_label_noise.py --critic DIR
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
from critic_bench import DEFAULT_DATA, _key, build_labels  # noqa: E402

from app.core.config import Settings  # noqa: E402
from app.critic.labels import split_by_head  # noqa: E402
from app.critic.metrics import roc_auc  # noqa: E402
from app.critic.train import critic_input, load_critic, score_pairs  # noqa: E402

READ = ROOT / "bench" / "data" / "critic_negatives_read.tsv"
READINGS = ("sound", "maybe", "unsound")


def read_negatives(path: Path) -> dict[tuple[str, str, str], str]:
    """(head, relation, tail) keys -> reading; a bad row stops with its line number."""
    readings: dict[tuple[str, str, str], str] = {}
    with path.open(encoding="utf-8", newline="") as rows:
        for line, row in enumerate(csv.DictReader(rows, delimiter="\t"), start=2):
            reading = (row.get("reading") or "").strip()
            if reading not in READINGS:
                raise SystemExit(
                    f"{path}:{line}: reading must be one of {READINGS}, not {reading!r}"
                )
            readings[(_key(row["head"]), row["relation"], _key(row["tail"]))] = reading
    return readings


def auc_against(scores: np.ndarray, positives: np.ndarray, negatives: list[int]) -> float:
    labels = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    return float(roc_auc(labels, np.r_[scores[positives], scores[negatives]]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--critic", type=Path, required=True, help="a saved critic folder")
    parser.add_argument("--read", type=Path, default=READ, help="negatives read by a person")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="ATOMIC-style TSV")
    parser.add_argument("--seed", type=int, default=0, help="the bench's negatives seed")
    args = parser.parse_args(argv)

    readings = read_negatives(args.read)
    # The split the bench made: the same setting, so the same held-out heads.
    _train, held_out = split_by_head(
        build_labels(args.data, args.seed).labels, Settings().critic_held_out_fraction
    )
    model, tokenizer = load_critic(args.critic)
    card = args.critic / "critic_card.json"
    # Read the pairs as the critic was trained to read them (the names option).
    names = bool(json.loads(card.read_text())["arguments"]["names"]) if card.exists() else True
    pairs = [critic_input(t.head, t.relation, t.tail, names=names) for t in held_out]
    scores = np.asarray(score_pairs(model, tokenizer, pairs))
    labels = np.array([t.acceptable for t in held_out])
    positives = np.flatnonzero(labels)

    by_reading: dict[str, list[int]] = collections.defaultdict(list)
    for index, triple in enumerate(held_out):
        key = (_key(triple.head), triple.relation, _key(triple.tail))
        if not triple.acceptable and key in readings:
            by_reading[readings[key]].append(index)
    found = sum(len(v) for v in by_reading.values())
    if found < len(readings):
        print(f"warning: {len(readings) - found} read negatives are not held-out negatives here")

    print(
        f"held-out ROC-AUC, all {len(held_out) - len(positives):,} negatives: "
        f"{roc_auc(labels, scores):.4f}"
    )
    read = [i for reading in READINGS for i in by_reading[reading]]
    print(f"against the {len(read)} read negatives: {auc_against(scores, positives, read):.4f}")
    counts = ", ".join(f"{len(by_reading[r])} {r}" for r in READINGS)
    print(f"  read as: {counts}")
    for kept, what in ((("unsound",), "unsound"), (("unsound", "maybe"), "unsound or maybe")):
        chosen = [i for reading in kept for i in by_reading[reading]]
        print(
            f"against the {len(chosen)} read {what}: {auc_against(scores, positives, chosen):.4f}"
        )
    sound = by_reading["sound"]
    if sound:
        print(f"against the {len(sound)} read sound: {auc_against(scores, positives, sound):.4f}")

    print("\nper relation (all held-out labels):")
    relations: dict[str, list[int]] = collections.defaultdict(list)
    for index, triple in enumerate(held_out):
        relations[triple.relation].append(index)
    for relation, indices in sorted(relations.items(), key=lambda item: -len(item[1])):
        if len(set(labels[indices])) == 2:
            auc = roc_auc(labels[indices], scores[indices])
            print(f"  {relation:<12} {len(indices):>5} labels  AUC {auc:.3f}")

    print("\nthe unsound negatives the critic scored highest:")
    worst = sorted(by_reading["unsound"], key=lambda i: -scores[i])[:10]
    for index in worst:
        triple = held_out[index]
        print(f"  {scores[index]:.3f}  {triple.head} | {triple.relation} | {triple.tail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
