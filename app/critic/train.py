"""Training a critic: a sequence classifier on (head, relation phrase + tail) pairs.

One function, ``train_critic``, with a dataclass of arguments, in the manner of the
transformers example scripts. Any Hugging Face encoder loads through
``AutoModelForSequenceClassification`` (a hub name, or a local folder such as the packaged
MiniLM). The loop is plain PyTorch (AdamW, linear warm-up and decay, a seeded shuffle) so it
needs nothing beyond transformers and torch; after each epoch the held-out labels are scored
and the best epoch by precision at the target recall is kept (early stopping). The result is
written with ``save_pretrained`` and loads back with ``from_pretrained``: the architecture is
the stock ``AutoModelForSequenceClassification`` one, so no code of ours is needed to load it.

Training on CPU is what most installations do, so the loop avoids work that does not change
the result (measured in ``bench/README.md``, section Critic):

* batches are cut from windows of similar-length pairs (``length_window`` batches per window,
  shuffled, then the batch order shuffled): less padding, the same examples per epoch;
* the word-embedding matrix is frozen by default (``freeze_embeddings``): it holds about half
  of a small encoder's weights (MiniLM: 11.7M of 22.7M), and its gradient and AdamW update were
  a third of each step's time, for no held-out gain;
* AdamW runs fused where torch supports it;
* the forward and backward passes run under bfloat16 autocast where the CPU has native
  bfloat16 (AVX512-BF16 or AMX; ``bf16``, auto by default): 1.4x faster per epoch with the
  packaged MiniLM, the same held-out AUC. The weights, the optimizer and the held-out scoring
  stay in float32, so a saved critic scores the same on any machine, and its stored held-out
  metrics and threshold are those the scoring jobs reproduce (bfloat16 scoring would be 2.5x
  faster with mpnet but moves scores by up to 0.004);
* for a larger encoder (the ``quality`` preset, ``app/critic/presets.py``), the lower
  ``freeze_layers`` encoder layers can be kept fixed: no gradient, no update, and the backward
  pass stops at the first trainable layer. ``layer_decay`` < 1 gives each layer a smaller rate
  than the one above it, so the layers nearest the pretrained features move least.

``max_minutes`` bounds the wall time: the loop measures its own seconds per step and, when
the planned epochs would not end in time (held-out scoring included), shortens the linear
schedule so that the rate still decays to zero at the last step that fits. A recipe can then
ask for the epochs that pay on a fast machine and still end in time on a slow one.

``init_from`` warm-starts from a saved critic (the active version) instead of the base model:
the loop then trains it on the new labels plus a replayed sample of the old ones. On a CUDA
device (the ``paper`` preset) training runs there in half precision: bfloat16 where the GPU
has it, else float16 with loss scaling (``torch.amp.GradScaler``), as transformers' Trainer
does with ``fp16``; ``bf16=False`` set explicitly keeps float32.
"""

from __future__ import annotations

import copy
import json
import random
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from app.core.jobs import NullProgress, Progress
from app.corpus.relations import relation_phrase
from app.critic.labels import LabelledTriple
from app.critic.metrics import bootstrap_intervals, evaluate, precision_at_recall

# The paper's critic read PersonX/PersonY as people's names; pretrained encoders know names
# far better than the placeholder tokens.
NAMES = {"PersonX": "Alex", "PersonY": "Jordan", "PersonZ": "Sam"}


def critic_input(head: str, relation: str, tail: str, *, names: bool = False) -> tuple[str, str]:
    """The sentence pair the critic reads: (head, "<relation phrase> <tail>")."""
    second = f"{relation_phrase(relation)} {tail}"
    if names:
        for placeholder, name in NAMES.items():
            head = head.replace(placeholder, name)
            second = second.replace(placeholder, name)
    return head, second


@dataclass
class CriticTrainingArguments:
    base_model: str
    output_dir: Path
    epochs: int = 3
    learning_rate: float = 5e-5
    batch_size: int = 32
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_length: int = 64
    seed: int = 0
    target_recall: float = 0.8
    names: bool = True
    patience: int = 2
    freeze_embeddings: bool = True
    length_window: int = 50
    bf16: bool | None = None  # None: where the CPU (or the GPU) computes bfloat16 natively
    freeze_layers: int = 0  # lower encoder layers kept fixed, with the embeddings
    layer_decay: float = 1.0  # layer-wise rate decay (1: one rate for every layer)
    init_from: str | None = None  # warm start: a saved critic whose weights training starts from
    max_minutes: float | None = None  # wall-time limit; the schedule is shortened to fit it


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (oneDNN's check: AVX512-BF16 or AMX).
    Elsewhere bfloat16 autocast is emulated and slower than float32, so auto means off."""
    try:
        return bool(
            torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        )
    except (AttributeError, RuntimeError):  # a torch build without the check
        return False


def mixed_precision(bf16: bool | None, device_type: str, bf16_native: bool) -> torch.dtype | None:
    """The autocast dtype for training, or None for float32. ``bf16`` is the setting (None:
    auto). Auto picks bfloat16 where the device computes it natively; a CUDA GPU without it
    (V100, T4) gets float16, which needs loss scaling; a CPU without it stays in float32
    (emulated half precision is slower there)."""
    if bf16 is not None:
        return torch.bfloat16 if bf16 else None
    if bf16_native:
        return torch.bfloat16
    return torch.float16 if device_type == "cuda" else None


@dataclass
class TrainedCritic:
    path: Path
    metrics: dict[str, Any]
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    schedule: dict[str, Any] = field(default_factory=dict)


# Steps timed before a time limit may shorten the schedule (the first ones are slower).
TIMING_SKIP, TIMING_MIN = 2, 5
# Until the first held-out scoring is timed, scoring a pair (forward only, float32) is taken
# to cost this share of a training step per pair: 0.62 measured with mpnet on 2 cores whose
# training runs in bfloat16 (bench/README.md); less where training runs in float32.
FORWARD_SHARE = 0.6
# Kept at the end of a time limit for restoring the best epoch and saving the model: this
# share of the limit, at most this many seconds (mpnet's 420 MB save takes a few).
RESERVE_SHARE, RESERVE_MAX = 0.05, 15.0


@dataclass
class TimedSchedule:
    """Linear warm-up over ``warmup_ratio`` of ``total`` steps, then decay to zero at
    ``total``, where ``total`` may be lowered while training runs (a time limit): the warm-up
    shrinks with it and the rate decays to zero at the new end.

    The limit counts from ``started`` (the job's start, so loading the model counts too).
    The seconds per step are timed from step ``TIMING_SKIP`` on, less the pauses for held-out
    scoring, whose own time is measured at the first scoring and reserved for each scoring
    still to come."""

    total: int
    warmup_ratio: float
    planned: int = field(init=False)
    limit_seconds: float | None = None
    started: float = 0.0
    timed_from: float | None = None
    paused: float = 0.0  # seconds of scoring since ``timed_from``, not training steps
    scoring_seconds: float | None = None  # one held-out scoring, once one has been timed
    reserve_share: float = RESERVE_SHARE

    @property
    def reserve(self) -> float:
        """Seconds of the limit kept for saving."""
        return min(RESERVE_MAX, self.reserve_share * (self.limit_seconds or 0.0))

    def __post_init__(self) -> None:
        self.planned = self.total

    @property
    def warmup(self) -> int:
        return int(self.warmup_ratio * self.total)

    def factor(self, step: int) -> float:
        if step < self.warmup:
            return step / max(1, self.warmup)
        return max(0.0, (self.total - step) / max(1, self.total - self.warmup))

    def scored(self, seconds: float) -> None:
        """A held-out scoring took ``seconds``: what the next ones are expected to take, and
        time that was not spent on training steps."""
        self.scoring_seconds = seconds
        if self.timed_from is not None:
            self.paused += seconds

    def fit(
        self, step: int, now: float, epoch: int, steps_per_epoch: int, held_out: int, batch: int
    ) -> None:
        """After ``step`` steps (in ``epoch``): lower ``total`` to the steps that fit in the
        limit, leaving time for the held-out scoring at the end of each epoch still to run."""
        if self.limit_seconds is None:
            return
        if step == TIMING_SKIP:
            self.timed_from, self.paused = now, 0.0
        if self.timed_from is None or step < TIMING_MIN:
            return
        per_step = (now - self.timed_from - self.paused) / (step - TIMING_SKIP)
        scoring = self.scoring_seconds
        if scoring is None:
            scoring = held_out * FORWARD_SHARE * per_step / batch
        left = self.limit_seconds - self.reserve - (now - self.started)
        total = self.planned
        for _ in range(4):  # fewer steps can mean fewer epochs, so fewer scorings: settle
            scorings = 1 + max(0, -(-total // steps_per_epoch) - epoch)
            total = min(self.planned, step + int((left - scorings * scoring) / per_step))
        self.total = max(step, total)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, window: int, generator: torch.Generator
) -> list[list[int]]:
    """One epoch's batches: a seeded shuffle, cut into windows of ``window`` batches, each
    window sorted by length and cut into batches, then the batches shuffled. Every index is in
    exactly one batch; a batch holds pairs of similar length, so padding (wasted work) is
    small. ``window`` 0 or 1 gives plain shuffled batches."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    if window > 1:
        span = batch_size * window
        order = [
            i
            for start in range(0, len(order), span)
            for i in sorted(order[start : start + span], key=lambda i: lengths[i])
        ]
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if window > 1:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def _depth(name: str, layers: int) -> int:
    """Where a parameter sits: 0 the embeddings (and MPNet's shared relative-position bias),
    1..layers the encoder layers, layers + 1 everything above (pooler, classifier)."""
    match = _LAYER.search(name)
    if match:
        return int(match.group(1)) + 1
    if ".embeddings." in f".{name}" or "relative_attention_bias" in name:
        return 0
    return layers + 1


_LAYER = re.compile(r"\.encoder\.layer\.(\d+)\.")


def encoder_layer_count(model: PreTrainedModel) -> int:
    layers = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    return len(layers) if layers is not None else 0


def freeze_lower(model: PreTrainedModel, layers: int) -> None:
    """Fix the embeddings and the lowest ``layers`` encoder layers: no gradient, no update,
    and no backward pass below the first trainable layer (a large share of a step's time)."""
    if layers <= 0:
        return
    total = encoder_layer_count(model)
    if not total:
        raise ValueError(
            f"freeze_layers: {type(model).__name__} has no encoder.layer list to freeze"
        )
    if layers >= total:
        raise ValueError(f"freeze_layers: {layers}, but the encoder has only {total} layers")
    for name, parameter in model.named_parameters():
        if _depth(name, total) <= layers:
            parameter.requires_grad_(False)


def _optimizer(
    model: PreTrainedModel, learning_rate: float, weight_decay: float, layer_decay: float = 1.0
) -> torch.optim.Optimizer:
    """AdamW without decay on biases and norms, each layer's rate ``layer_decay`` times the
    rate of the layer above (the classifier gets ``learning_rate``); fused where supported."""
    no_decay = ("bias", "LayerNorm.weight", "layernorm.weight", "norm.weight")
    total = encoder_layer_count(model)
    groups: dict[tuple[int, bool], list[torch.nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            depth = _depth(name, total) if layer_decay != 1.0 else total + 1
            groups.setdefault((depth, name.endswith(no_decay)), []).append(parameter)
    grouped = [
        {
            "params": params,
            "weight_decay": 0.0 if exempt else weight_decay,
            "lr": learning_rate * layer_decay ** (total + 1 - depth),
        }
        for (depth, exempt), params in sorted(groups.items())
    ]
    try:
        return torch.optim.AdamW(grouped, lr=learning_rate, fused=True)
    except (RuntimeError, TypeError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(grouped, lr=learning_rate)


def score_pairs(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[tuple[str, str]],
    *,
    batch_size: int = 64,
    max_length: int = 64,
) -> np.ndarray:
    """p(acceptable) for each pair, in the input order.

    All pairs are tokenized in one call (the fast tokenizer's batch path), then batches are
    formed from pairs of the same or similar token length and padded only to their own longest
    pair: less padding, less work. Measured on 2 CPU cores with the packaged MiniLM, this is
    about 20% faster than tokenizing batch by batch (``bench/README.md``); the scores are the
    same (a pair's score does not depend on its batch)."""
    model.eval()
    scores = np.empty(len(pairs), dtype=np.float32)
    if not pairs:
        return scores
    encoded = tokenizer(
        [a for a, _ in pairs], [b for _, b in pairs], truncation=True, max_length=max_length
    )
    keys = list(encoded.keys())
    order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            batch = tokenizer.pad(
                [{key: encoded[key][i] for key in keys} for i in index], return_tensors="pt"
            ).to(model.device)
            logits = model(**batch).logits
            scores[index] = torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy()
    return scores


def load_critic(path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=2)
    return model, tokenizer


def train_critic(
    args: CriticTrainingArguments,
    train: Sequence[LabelledTriple],
    held_out: Sequence[LabelledTriple],
    progress: Progress | None = None,
    started: float | None = None,
) -> TrainedCritic:
    """Fine-tune ``args.base_model`` on ``train``; keep the epoch whose held-out precision at
    ``args.target_recall`` is best; save it to ``args.output_dir``. ``started`` (a
    ``time.monotonic()`` reading) is when the job began, from which ``args.max_minutes``
    counts; by default, this call."""
    started = time.monotonic() if started is None else started
    if not train or not held_out:
        raise ValueError("need labelled triples on both sides of the split (train and held-out)")
    progress = progress or NullProgress()
    _seed_everything(args.seed)
    start_from = args.init_from or args.base_model
    try:
        model, tokenizer = load_critic(start_from)
    except OSError as exc:
        what = "the active version to warm-start from" if args.init_from else "base model"
        raise ValueError(
            f"{what} {start_from!r} could not be loaded (a hub name, or a folder "
            f"with config.json and tokenizer files): {exc}"
        ) from None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    pairs = [critic_input(t.head, t.relation, t.tail, names=args.names) for t in train]
    labels = torch.tensor([int(t.acceptable) for t in train])
    held_pairs = [critic_input(t.head, t.relation, t.tail, names=args.names) for t in held_out]
    held_labels = np.array([t.acceptable for t in held_out])
    lengths = [
        len(ids)
        for ids in tokenizer(
            [a for a, _ in pairs],
            [b for _, b in pairs],
            truncation=True,
            max_length=args.max_length,
        )["input_ids"]
    ]
    if args.freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    freeze_lower(model, args.freeze_layers)

    native = torch.cuda.is_bf16_supported() if device.type == "cuda" else native_bf16()
    amp = mixed_precision(args.bf16, device.type, native)
    bf16 = amp == torch.bfloat16
    # float16 gradients underflow without loss scaling; disabled, the scaler passes through.
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    steps_per_epoch = (len(pairs) + args.batch_size - 1) // args.batch_size
    total_steps = steps_per_epoch * args.epochs
    optimizer = _optimizer(model, args.learning_rate, args.weight_decay, args.layer_decay)
    plan = TimedSchedule(total_steps, args.warmup_ratio)
    if args.max_minutes is not None:
        plan.limit_seconds, plan.started = args.max_minutes * 60, started
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, plan.factor)
    generator = torch.Generator().manual_seed(args.seed)
    best_state: dict[str, torch.Tensor] | None = None
    best_score, best_epoch, stale = -1.0, 0, 0
    history: list[dict[str, float]] = []
    step = 0
    progress.update(0, total_steps, "training", force=True)
    for epoch in range(1, args.epochs + 1):
        model.train()
        for batch_index in length_grouped_batches(
            lengths, args.batch_size, args.length_window, generator
        ):
            if step >= plan.total:  # the time limit ends training inside this epoch
                break
            batch = [pairs[i] for i in batch_index]
            encoded = tokenizer(
                [a for a, _ in batch],
                [b for _, b in batch],
                padding=True,
                truncation=True,
                max_length=args.max_length,
                return_tensors="pt",
            ).to(device)
            with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
                logits = model(**encoded).logits
            loss = torch.nn.functional.cross_entropy(logits.float(), labels[batch_index].to(device))
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)  # clip the true gradients
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            plan.fit(step, time.monotonic(), epoch, steps_per_epoch, len(held_out), args.batch_size)
            note = "" if plan.total == plan.planned else " (shortened to fit the time limit)"
            progress.update(step, plan.total, f"epoch {epoch}: loss {loss.item():.3f}{note}")
        scoring_from = time.monotonic()
        scores = score_pairs(model, tokenizer, held_pairs, max_length=args.max_length)
        plan.scored(time.monotonic() - scoring_from)
        point = precision_at_recall(held_labels, scores, (args.target_recall,))
        precision = point[0].precision if point else 0.0
        metrics = evaluate(held_labels, scores)
        history.append(
            {
                "epoch": epoch,
                "step": step,
                "precision_at_target": precision,
                "roc_auc": metrics["roc_auc"],
            }
        )
        if precision > best_score:
            best_score, best_epoch, stale = precision, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
            best_metrics, best_scores = metrics, scores
        else:
            stale += 1
            if stale >= args.patience:
                break
        if step >= plan.total:
            break
    assert best_state is not None
    # How far another draw of held-out heads could move the kept epoch's figures: whole
    # heads are resampled, as the split is by head (under a second for 6,000 labels).
    best_metrics["intervals"] = bootstrap_intervals(
        held_labels, best_scores, [t.head for t in held_out]
    )
    schedule = {
        "planned_steps": plan.planned,
        "steps": step,
        "epochs": round(step / steps_per_epoch, 2),
        "time_limited": plan.total < plan.planned,
        "max_minutes": args.max_minutes,
    }
    model.load_state_dict(best_state)
    model.to("cpu")  # saved and scored on CPU by the workers
    args.output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.output_dir)
    tokenizer.save_pretrained(args.output_dir)
    card = {
        "arguments": {**asdict(args), "output_dir": str(args.output_dir), "bf16": bf16},
        "mixed_precision": str(amp).removeprefix("torch.") if amp else "float32",
        "train_labels": len(train),
        "held_out_labels": len(held_out),
        "best_epoch": best_epoch,
        "history": history,
        "schedule": schedule,
        "held_out_metrics": {k: v for k, v in best_metrics.items() if k != "pr_curve"},
    }
    (args.output_dir / "critic_card.json").write_text(json.dumps(card, indent=2))
    return TrainedCritic(args.output_dir, best_metrics, best_epoch, history, schedule)
