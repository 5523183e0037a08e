"""``bench/loop_bench.py --small``'s plumbing, end to end, with tiny models built here.

The teacher is a 2-layer GPT-2 with a BPE tokenizer trained here on the teacher's own event
and inference prompts (so it answers them, badly); the student base is an untrained tiny GPT-2
(tests/student_helpers.py); the critic is the ``tiny_base`` BERT and the judge another tiny
BERT (a different base, as the bench requires). What is checked is what a researcher running
the bench would look at: every stage ran and wrote its result, the parameters are beside them,
the table names every corpus and every system, the evaluation campaign is open in the bench's
own database, and a second run skips every stage.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_file

ROOT = Path(__file__).resolve().parents[1]
RELATIONS = ["xAttr", "xEffect", "xIntent", "xNeed", "xReact", "xWant", "HinderedBy"]


def _tiny_teacher(folder: Path, steps: int = 40) -> Path:
    """A tiny GPT-2 taught, for a few dozen steps, to continue the teacher's event prompts with
    a PersonX event and its inference prompts with a short tail."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from app.teacher.prompts import (
        DEFAULT_EVENTS,
        ExamplePool,
        default_template,
        event_prompt,
        inference_prompt,
        with_names,
    )

    rng = random.Random(0)
    pool = ExamplePool()
    texts = []
    for _ in range(48):
        prompt = event_prompt(default_template("events"), list(DEFAULT_EVENTS), 3, rng)
        texts.append(prompt.text + " " + rng.choice(DEFAULT_EVENTS) + "\n")
    for relation in RELATIONS:
        pairs = pool.inferences[relation]
        for _ in range(12):
            head, tail = rng.choice(pairs)
            prompt = inference_prompt(default_template(relation), pairs, head, 2, rng)
            texts.append(prompt.text + " " + with_names(tail, prompt.names) + "\n")
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        texts,
        trainers.BpeTrainer(vocab_size=500, special_tokens=["<|endoftext|>"],
                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                            show_progress=False),
    )  # fmt: skip
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=1024, n_embd=64, n_layer=2,
                        n_head=2, bos_token_id=tokenizer.eos_token_id,
                        eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    model = GPT2LMHeadModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    tokenizer.pad_token = tokenizer.eos_token
    rng.shuffle(texts)
    model.train()
    for step in range(steps):
        start = (step * 8) % len(texts)
        batch = tokenizer(texts[start : start + 8], return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(folder)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(folder)
    return folder


def _tiny_student_base(folder: Path) -> Path:
    from app.export.writers import student_source
    from tests.student_helpers import build_tiny_causal_lm

    texts = []
    for line in shared_file("atomic2020_sample.tsv").read_text().splitlines()[:3000]:
        head, relation, tail = line.split("\t")
        texts.append(f"{student_source(head, relation)} {tail}")
    return build_tiny_causal_lm(folder, texts)


def _tiny_judge(folder: Path) -> Path:
    """Another tiny BERT (3 layers, 48 wide): not the critic's base."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from app.core.config import packaged_minilm_path

    tokenizer = AutoTokenizer.from_pretrained(packaged_minilm_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=48, num_hidden_layers=3,
                        num_attention_heads=2, intermediate_size=96,
                        max_position_embeddings=128, num_labels=2)  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.slow
# The bench keeps its own SQLite database whatever the backend: once, on the SQLite pass.
@pytest.mark.one_backend
def test_loop_bench_small_runs_every_stage_with_tiny_models(
    tmp_path: Path, tiny_base: Path
) -> None:
    shared_file("atomic2020_sample.tsv")  # skips cleanly without the shared data
    teacher = _tiny_teacher(tmp_path / "teacher")
    student = _tiny_student_base(tmp_path / "student")
    judge = _tiny_judge(tmp_path / "judge")
    out = tmp_path / "loop"
    command = [
        sys.executable, str(ROOT / "bench" / "loop_bench.py"), "--out", str(out), "--small",
        "--seed", "3", "--teacher-model", str(teacher), "--student-base", str(student),
        "--critic-base", str(tiny_base), "--critic-preset", "fast", "--critic-epochs", "1",
        "--judge-base", str(judge), "--judge-epochs", "1", "--event-prompts", "5",
        "--critic-heads", "25", "--judge-heads", "25", "--eval-heads", "4",
        "--student-steps", "4", "--student-batch", "4", "--max-tokens", "10",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKD_")}
    env |= {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    first = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=600)  # fmt: skip
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]

    stages = ["prepare", "teacher_events", "teacher_inferences", "teacher_eval", "critic",
              "score", "exports", "students", "evaluation", "judge"]  # fmt: skip
    for stage in stages:
        assert (out / "stages" / f"{stage}.json").is_file(), stage
    params = json.loads((out / "params.json").read_text())
    assert params["seed"] == 3 and params["teacher_model"] == str(teacher)
    assert params["relations"] == RELATIONS

    events = json.loads((out / "stages" / "teacher_events.json").read_text())
    inferences = json.loads((out / "stages" / "teacher_inferences.json").read_text())
    assert events["events"] > 0 and inferences["triples"] > 0
    exports = json.loads((out / "stages" / "exports.json").read_text())["exports"]
    sizes = [exports[name]["total"] for name in ("unfiltered", "rec 0.8", "rec 0.5")]
    assert sizes[0] == inferences["triples"]  # unfiltered keeps every teacher triple
    assert sizes[0] >= sizes[1] >= sizes[2]  # a stricter critic threshold keeps fewer

    table = (out / "results.md").read_text()
    assert table == first.stdout[first.stdout.index("# Loop bench") :].rstrip("\n") + "\n"
    for corpus in ("| unfiltered |", "| rec 0.8 |", "| rec 0.5 |"):
        assert corpus in table
    for system in ("student (unfiltered)", "student (rec 0.8)", "student (rec 0.5)",
                   "teacher (few-shot)", "human (ATOMIC 2020)"):  # fmt: skip
        assert f"| {system} |" in table
    for stage in stages:
        assert f"| {stage} |" in table
    results = json.loads((out / "results.json").read_text())
    assert results["systems"]["human (ATOMIC 2020)"]["inferences"] > 0

    # The campaign is open, with items, in the bench's own SQLite database.
    with sqlite3.connect(out / "skd.sqlite") as db:
        state, purpose, items = db.execute(
            "SELECT state, purpose, (SELECT count(*) FROM campaign_items WHERE campaign_id = c.id)"
            " FROM campaigns c WHERE id = ?",
            (results["campaign_id"],),
        ).fetchone()
        systems = {row[0] for row in db.execute(
            "SELECT DISTINCT system FROM evaluation_outputs WHERE campaign_id = ?",
            (results["campaign_id"],))}  # fmt: skip
    assert (state, purpose) == ("open", "evaluation") and items > 0
    assert {"teacher", "human"} <= systems or {"human"} <= systems

    # Resumable: a second run skips every stage and prints the same table.
    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done before; skipped") == len(stages)
    assert (out / "results.md").read_text() == table

    # Other parameters into the same folder are refused, naming what changed.
    other = subprocess.run([*command, "--student-steps", "5"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert other.returncode != 0 and "student_steps" in other.stderr
