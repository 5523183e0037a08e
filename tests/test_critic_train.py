"""Training a critic end to end on a tiny model built from a config (no downloads)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.critic.labels import LabelledTriple, split_by_head
from app.critic.metrics import bootstrap_intervals, evaluate
from app.critic.train import (
    FORWARD_SHARE,
    TIMING_MIN,
    TIMING_SKIP,
    CriticTrainingArguments,
    TimedSchedule,
    critic_input,
    load_critic,
    score_pairs,
    train_critic,
)

# The training code alone (no test here opens the database): run once, in the SQLite pass.
pytestmark = pytest.mark.one_backend


def synthetic_labels(n_heads: int = 120) -> list[LabelledTriple]:
    rng = random.Random(3)
    good = ["to eat dinner", "to sleep well", "to thank them", "happy", "to rest"]
    bad = ["purple rocket volcano", "seventeen spoons", "the moon melts", "a banana cloud"]
    triples = []
    for h in range(n_heads):
        for _k in range(4):
            acceptable = rng.random() < 0.6
            tail = rng.choice(good if acceptable else bad)
            triples.append(
                LabelledTriple(len(triples), f"PersonX does task {h}", "xWant", tail, acceptable)
            )
    return triples


# Settings under which the tiny model learns the synthetic labels in a few seconds. Its word
# embeddings are random: frozen (the default, right for a pretrained encoder) they leave it too
# little to learn with, and the run is luck.
TINY_TRAINING: dict[str, Any] = dict(
    epochs=4, learning_rate=2e-3, batch_size=16, seed=7, freeze_embeddings=False
)


def test_critic_input_reads_like_the_paper() -> None:
    assert critic_input("PersonX bakes bread", "xWant", "to eat it") == (
        "PersonX bakes bread",
        "as a result, PersonX wants to eat it",
    )
    assert critic_input("PersonX hugs PersonY", "xIntent", "to comfort PersonY", names=True) == (
        "Alex hugs Jordan",
        "because Alex wanted to comfort Jordan",
    )


def test_train_learns_saves_and_reloads_deterministically(tiny_base: Path, tmp_path: Path) -> None:
    train, held_out = split_by_head(synthetic_labels(), 0.25)
    args = dict(base_model=str(tiny_base), names=True, **TINY_TRAINING)
    first = train_critic(
        CriticTrainingArguments(output_dir=tmp_path / "a", **args), train, held_out
    )
    assert first.metrics["roc_auc"] > 0.9, first.history
    assert 1 <= first.best_epoch <= 4
    card = json.loads((tmp_path / "a" / "critic_card.json").read_text())
    assert card["best_epoch"] == first.best_epoch and card["train_labels"] == len(train)

    second = train_critic(
        CriticTrainingArguments(output_dir=tmp_path / "b", **args), train, held_out
    )
    assert second.history == first.history  # a fixed seed gives the same model

    model, tokenizer = load_critic(tmp_path / "a")
    pairs = [critic_input(t.head, t.relation, t.tail, names=True) for t in held_out]
    reloaded = score_pairs(model, tokenizer, pairs)
    labels = np.array([t.acceptable for t in held_out])
    # The saved folder is the best epoch: scoring it again gives the stored metrics.
    assert evaluate(labels, reloaded)["roc_auc"] == pytest.approx(first.metrics["roc_auc"])
    assert evaluate(labels, reloaded)["average_precision"] == pytest.approx(
        first.metrics["average_precision"]
    )
    # The intervals resample the held-out heads, are reproducible from the saved model's
    # scores, and hold the figure they are about.
    intervals = first.metrics["intervals"]
    assert intervals["by"] == "head" and intervals["groups"] == len({t.head for t in held_out})
    heads = [t.head for t in held_out]
    assert bootstrap_intervals(labels, reloaded, heads)["roc_auc"] == pytest.approx(
        intervals["roc_auc"]
    )
    low, high = intervals["roc_auc"]
    assert low <= first.metrics["roc_auc"] <= high
    assert card["held_out_metrics"]["intervals"] == intervals
    # Early stopping: training ends `patience` (2) epochs after the last improvement.
    assert len(first.history) == min(4, first.best_epoch + 2)


@pytest.mark.parametrize("bf16", [True, False])
def test_bf16_training_learns_and_saves_a_float32_critic(
    tiny_base: Path, tmp_path: Path, bf16: bool
) -> None:
    """bfloat16 autocast speeds the steps up; what is saved and scored stays float32, so a
    critic trained on a bfloat16 CPU loads and scores the same anywhere."""
    import torch

    train, held_out = split_by_head(synthetic_labels(), 0.25)
    args = CriticTrainingArguments(
        base_model=str(tiny_base), output_dir=tmp_path / "c", bf16=bf16, **TINY_TRAINING
    )
    trained = train_critic(args, train, held_out)
    assert trained.metrics["roc_auc"] > 0.9, trained.history
    card = json.loads((tmp_path / "c" / "critic_card.json").read_text())
    assert card["arguments"]["bf16"] is bf16
    model, tokenizer = load_critic(tmp_path / "c")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    pairs = [critic_input(t.head, t.relation, t.tail, names=True) for t in held_out]
    labels = np.array([t.acceptable for t in held_out])
    reloaded = evaluate(labels, score_pairs(model, tokenizer, pairs))
    assert reloaded["roc_auc"] == pytest.approx(trained.metrics["roc_auc"])


def test_bf16_is_on_by_default_only_where_the_cpu_has_it(tiny_base: Path, tmp_path: Path) -> None:
    from app.critic.train import native_bf16

    train, held_out = split_by_head(synthetic_labels(20), 0.25)
    args = CriticTrainingArguments(
        base_model=str(tiny_base), output_dir=tmp_path / "d", epochs=1, batch_size=16
    )
    assert args.bf16 is None
    train_critic(args, train, held_out)
    card = json.loads((tmp_path / "d" / "critic_card.json").read_text())
    assert card["arguments"]["bf16"] is native_bf16()


def test_half_precision_is_bfloat16_where_native_else_float16_on_a_gpu_only() -> None:
    import torch

    from app.critic.train import mixed_precision

    assert mixed_precision(None, "cpu", bf16_native=True) is torch.bfloat16
    assert mixed_precision(None, "cpu", bf16_native=False) is None  # emulated: slower
    assert mixed_precision(None, "cuda", bf16_native=True) is torch.bfloat16  # A100, H100
    assert mixed_precision(None, "cuda", bf16_native=False) is torch.float16  # V100, T4
    assert mixed_precision(False, "cuda", bf16_native=False) is None  # asked for float32
    assert mixed_precision(True, "cpu", bf16_native=False) is torch.bfloat16  # asked for


def test_float16_training_with_loss_scaling_learns_and_saves_float32(
    tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path a GPU without bfloat16 takes (float16 autocast, ``GradScaler``), run on the
    CPU, which autocasts float16 too: the scaled gradients still train the model."""
    import torch

    from app.critic import train as training

    monkeypatch.setattr(training, "mixed_precision", lambda *args: torch.float16)
    train, held_out = split_by_head(synthetic_labels(), 0.25)
    args = CriticTrainingArguments(
        base_model=str(tiny_base), output_dir=tmp_path / "h", **TINY_TRAINING
    )
    trained = train_critic(args, train, held_out)
    assert trained.metrics["roc_auc"] > 0.9, trained.history
    card = json.loads((tmp_path / "h" / "critic_card.json").read_text())
    assert card["mixed_precision"] == "float16" and card["arguments"]["bf16"] is False
    model, _ = load_critic(tmp_path / "h")
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_bad_base_model_fails_with_a_clear_message(tmp_path: Path) -> None:
    train, held_out = split_by_head(synthetic_labels(20), 0.25)
    args = CriticTrainingArguments(
        base_model=str(tmp_path / "no-such-model"), output_dir=tmp_path / "o"
    )
    with pytest.raises(ValueError, match="could not be loaded"):
        train_critic(args, train, held_out)


def test_length_grouped_batches_cover_every_pair_once_and_are_seeded() -> None:
    import torch

    from app.critic.train import length_grouped_batches

    rng = random.Random(5)
    lengths = [rng.randint(5, 60) for _ in range(1000)]

    def batches(seed: int, window: int = 10) -> list[list[int]]:
        generator = torch.Generator().manual_seed(seed)
        return length_grouped_batches(lengths, 32, window, generator)

    first = batches(1)
    assert sorted(i for batch in first for i in batch) == list(range(1000))
    assert len(first) == 32  # 31 full batches and one of 8
    assert first == batches(1) and first != batches(2)

    def padding(bs: list[list[int]]) -> int:
        return sum(len(b) * max(lengths[i] for i in b) - sum(lengths[i] for i in b) for b in bs)

    plain = batches(1, window=0)
    assert sorted(i for batch in plain for i in batch) == list(range(1000))
    assert padding(first) < padding(plain) / 3


def test_frozen_embeddings_are_saved_unchanged(tiny_base: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    train, held_out = split_by_head(synthetic_labels(30), 0.25)
    base = AutoModelForSequenceClassification.from_pretrained(str(tiny_base))
    before = base.get_input_embeddings().weight.detach().clone()
    for freeze in (True, False):
        args = CriticTrainingArguments(
            base_model=str(tiny_base),
            output_dir=tmp_path / str(freeze),
            epochs=1,
            learning_rate=2e-3,
            batch_size=16,
            freeze_embeddings=freeze,
        )
        train_critic(args, train, held_out)
        # Stock class, no code of ours: the saved folder loads with from_pretrained.
        saved = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / str(freeze)))
        after = saved.get_input_embeddings().weight.detach()
        assert torch_equal(after, before) is freeze
        assert saved.classifier.weight.shape[0] == 2


def torch_equal(a, b) -> bool:  # type: ignore[no-untyped-def]
    import torch

    return bool(torch.equal(a, b))


def test_score_pairs_keeps_the_input_order_whatever_the_batching(tiny_base: Path) -> None:
    model, tokenizer = load_critic(tiny_base)
    triples = synthetic_labels(10)
    pairs = [critic_input(t.head, t.relation, t.tail, names=True) for t in triples]
    pairs += [("Alex writes a very long letter to Jordan about the weekend", "as a result, Alex")]
    one_by_one = np.array([score_pairs(model, tokenizer, [pair])[0] for pair in pairs])
    assert score_pairs(model, tokenizer, pairs, batch_size=7) == pytest.approx(one_by_one, abs=1e-5)
    reverse = score_pairs(model, tokenizer, pairs[::-1], batch_size=64)
    assert reverse[::-1] == pytest.approx(one_by_one, abs=1e-5)
    assert len(score_pairs(model, tokenizer, [])) == 0


def test_a_time_limit_shortens_the_schedule_so_the_rate_still_ends_at_zero() -> None:
    plan = TimedSchedule(total=1000, warmup_ratio=0.1, reserve_share=0.0)
    assert plan.warmup == 100 and plan.factor(50) == 0.5
    plan.limit_seconds, plan.started = 60.0, 0.0
    plan.fit(TIMING_SKIP, 2.0, epoch=1, steps_per_epoch=1000, held_out=320, batch=32)
    assert plan.total == 1000  # one timed step is not yet a measurement
    # 1 s per step measured; 60 s allowed (none kept for saving here), 5 s spent, 320 held-out
    # pairs to score at the end (FORWARD_SHARE s each per 32): 51 more steps fit.
    now = 2.0 + (TIMING_MIN - TIMING_SKIP)
    plan.fit(TIMING_MIN, now, epoch=1, steps_per_epoch=1000, held_out=320, batch=32)
    assert plan.total == TIMING_MIN + int(60 - now - 320 * FORWARD_SHARE / 32)
    assert plan.factor(plan.total) == 0 and plan.factor(plan.total - 1) > 0
    assert plan.warmup == int(0.1 * plan.total) and plan.factor(plan.warmup) == 1  # shrunk too

    # Planned over many short epochs, each ending in a held-out scoring: the limit reserves
    # time for the scorings of the epochs that still fit, not of all the planned ones.
    many = TimedSchedule(total=10_000, warmup_ratio=0.1, reserve_share=0.0)
    many.limit_seconds = 100.0
    many.scored(0.35)  # as if a scoring had been timed: 0.35 s each
    many.fit(TIMING_SKIP, 0.0, epoch=1, steps_per_epoch=10, held_out=32, batch=32)
    many.fit(TIMING_MIN, 3.0, epoch=1, steps_per_epoch=10, held_out=32, batch=32)
    # 1 s per step, 0.35 s per scoring, 97 s left: 93 more steps (10 epochs) and their 10
    # scorings (3.5 s) fit; reserving all 1,000 planned scorings would leave no step at all.
    assert many.total == 5 + 93

    roomy = TimedSchedule(total=10, warmup_ratio=0.1)
    roomy.limit_seconds = 3600.0
    for step in range(1, 10):
        roomy.fit(step, float(step), epoch=1, steps_per_epoch=10, held_out=10, batch=2)
    assert roomy.total == 10  # never longer than planned

    unlimited = TimedSchedule(total=10, warmup_ratio=0.1)
    unlimited.fit(TIMING_MIN, 1e9, epoch=1, steps_per_epoch=10, held_out=10, batch=2)
    assert unlimited.total == 10


def test_a_timed_scoring_replaces_the_estimate_and_is_not_counted_as_training() -> None:
    """Epochs of 100 steps at 1 s each; the first held-out scoring takes 20 s, far more than
    the estimate. What fits afterwards is planned with the measured 20 s per scoring, and the
    20 s pause does not make the steps look slower."""
    plan = TimedSchedule(total=1000, warmup_ratio=0.1, reserve_share=0.0)
    plan.limit_seconds = 300.0
    plan.fit(TIMING_SKIP, 2.0, epoch=1, steps_per_epoch=100, held_out=320, batch=32)
    for step in range(TIMING_MIN, 101):
        plan.fit(step, float(step), epoch=1, steps_per_epoch=100, held_out=320, batch=32)
    plan.scored(20.0)  # the scoring at the end of epoch 1: 100 s to 120 s
    plan.fit(101, 121.0, epoch=2, steps_per_epoch=100, held_out=320, batch=32)
    # 179 s left. With one scoring to come, 158 more steps would reach into epoch 3, whose
    # end needs a second: two scorings (40 s) leave 139 steps, a shortened epoch 3.
    assert plan.scoring_seconds == 20.0
    assert plan.total == 101 + int(179 - 2 * 20.0)
    # Had the pause been counted as steps, each step would seem 1.2 s long.
    assert plan.total > 101 + int((179 - 2 * 20.0) / 1.2)

    # The limit counts from the job's start: time spent before training is not free.
    late = TimedSchedule(total=1000, warmup_ratio=0.1, reserve_share=0.0)
    late.limit_seconds, late.started = 60.0, -30.0  # loading took 30 s
    late.fit(TIMING_SKIP, 2.0, epoch=1, steps_per_epoch=1000, held_out=320, batch=32)
    late.fit(TIMING_MIN, 5.0, epoch=1, steps_per_epoch=1000, held_out=320, batch=32)
    assert late.total == TIMING_MIN + int(60 - 35.0 - 320 * FORWARD_SHARE / 32)

    # Saving the model is kept out of the limit: a share of it, at most 15 s.
    quality = TimedSchedule(total=10, warmup_ratio=0.1, limit_seconds=24 * 60.0)
    assert quality.reserve == 15.0
    assert TimedSchedule(total=10, warmup_ratio=0.1, limit_seconds=15.0).reserve == 0.75


def test_training_within_a_time_limit_learns_and_records_where_it_stopped(
    tiny_base: Path, tmp_path: Path
) -> None:
    train, held_out = split_by_head(synthetic_labels(), 0.25)
    args = {**TINY_TRAINING, "epochs": 5000, "patience": 1000}  # far more than 6 s allow
    limited = train_critic(
        CriticTrainingArguments(str(tiny_base), tmp_path / "limited", max_minutes=0.1, **args),
        train,
        held_out,
    )
    schedule = limited.schedule
    assert schedule["time_limited"] and schedule["steps"] < schedule["planned_steps"]
    assert limited.metrics["roc_auc"] > 0.75  # the shortened run still learned
    assert limited.history[-1]["step"] == schedule["steps"]  # the last step was scored
    card = json.loads((tmp_path / "limited" / "critic_card.json").read_text())
    assert card["schedule"] == schedule and card["arguments"]["max_minutes"] == 0.1

    full = train_critic(
        CriticTrainingArguments(str(tiny_base), tmp_path / "full", **TINY_TRAINING),
        train,
        held_out,
    )
    assert not full.schedule["time_limited"]
    # Without a limit only early stopping ends it before the planned steps.
    assert full.schedule["steps"] == full.history[-1]["step"] <= full.schedule["planned_steps"]
    assert full.schedule["epochs"] == len(full.history) and full.schedule["max_minutes"] is None
