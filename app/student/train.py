"""Training a student: the HF ``Trainer`` on an export's train split, evaluated on val.

One function (``train_student``) with a dataclass of arguments, as the transformers example
scripts do; the Trainer owns the loop, so ``accelerate`` runs the same code on one GPU, several,
or the CPU. The loss covers the tail tokens only (``app.student.examples``). After every epoch
the loss on the val split is measured and the checkpoint saved; at the end the epoch with the
lowest dev loss is loaded back (``load_best_model_at_end``) and written with
``save_pretrained``, next to a model card. Mixed precision bfloat16 where the hardware computes
it natively (a recent GPU, or an AVX512-BF16/AMX CPU); float32 elsewhere.

Progress goes to a ``Progress`` sink from a ``TrainerCallback``: steps done of the total, the
latest training loss, and the time left at the pace so far. A cancelled job stops at its next
progress report (the sink raises), and the caller removes the half-written folder.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.core.durations import duration_words
from app.core.jobs import NullProgress, Progress
from app.student.base import load_base
from app.student.examples import PadCollator, read_pairs, tokenize_pair


@dataclass
class StudentTrainingArgs:
    """The hyperparameters of one student training (defaults: the ``SKD_STUDENT_*`` settings)."""

    output_dir: Path
    base_model: str
    epochs: int = 3
    learning_rate: float = 5e-5
    batch_size: int = 16
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_length: int = 64
    seed: int = 0
    bf16: bool | None = None  # None: where the hardware computes bfloat16 natively
    max_steps: int | None = None  # stop early (tests, quick looks); None: every epoch in full
    logging_steps: int = 10

    @classmethod
    def from_settings(
        cls, output_dir: Path, base_model: str, **overrides: Any
    ) -> StudentTrainingArgs:
        from app.core.config import get_settings

        settings = get_settings()
        values: dict[str, Any] = {
            "epochs": settings.student_epochs,
            "learning_rate": settings.student_learning_rate,
            "batch_size": settings.student_batch_size,
            "warmup_ratio": settings.student_warmup_ratio,
            "weight_decay": settings.student_weight_decay,
            "max_length": settings.student_max_length,
            "seed": settings.student_seed,
            "bf16": settings.student_bf16,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(output_dir=output_dir, base_model=base_model, **values)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["output_dir"] = str(self.output_dir)
        return data

    def problems(self) -> dict[str, str]:
        """Each unusable argument by name (empty when all are fine)."""
        errors: dict[str, str] = {}
        if self.epochs < 1:
            errors["epochs"] = "must be at least 1"
        if not 0 < self.learning_rate < 1:
            errors["learning_rate"] = "must be between 0 and 1"
        if self.batch_size < 1:
            errors["batch_size"] = "must be at least 1"
        if not 0 <= self.warmup_ratio < 1:
            errors["warmup_ratio"] = "must be in [0, 1)"
        if self.max_length < 8:
            errors["max_length"] = "must be at least 8 tokens"
        if self.max_steps is not None and self.max_steps < 1:
            errors["max_steps"] = "must be at least 1 (leave it empty for whole epochs)"
        return errors


def hardware_bf16() -> bool:
    """Whether this machine computes bfloat16 natively (where mixed precision pays)."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    from app.critic.train import native_bf16

    return native_bf16()


class _ListDataset:
    """A list of tokenized examples, as the Trainer's ``Dataset`` (len + getitem)."""

    def __init__(self, rows: list[dict[str, list[int]]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.rows[index]


def _tokenized(tokenizer: Any, path: Path, max_length: int) -> tuple[_ListDataset, int, int]:
    rows = []
    skipped = 0
    for pair in read_pairs(path):
        row = tokenize_pair(tokenizer, pair, max_length)
        if row is None:
            skipped += 1
        else:
            rows.append(row)
    tokens = sum(len(r["input_ids"]) for r in rows)
    return _ListDataset(rows), skipped, tokens


def _progress_callback(progress: Progress) -> Any:
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        """Steps, loss and time left to the job row (and to a terminal bar)."""

        def __init__(self) -> None:
            self.started = time.monotonic()
            self.loss: float | None = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.monotonic()
            progress.update(0, state.max_steps, "training: step 0", force=True)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                self.loss = float(logs["loss"])

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            step, total = state.global_step, state.max_steps
            elapsed = time.monotonic() - self.started
            left = elapsed / step * (total - step) if step else 0.0
            loss = f" · loss {self.loss:.3f}" if self.loss is not None else ""
            progress.update(
                step, total, f"step {step}/{total}{loss} · about {duration_words(left)} left"
            )

        def on_evaluate(
            self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any
        ) -> None:
            if metrics and "eval_loss" in metrics:
                progress.update(
                    state.global_step,
                    state.max_steps,
                    f"epoch {state.epoch:.0f}: dev loss {metrics['eval_loss']:.4f}",
                    force=True,
                )

    return ProgressCallback()


def train_student(
    args: StudentTrainingArgs,
    train_file: Path,
    val_file: Path | None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Fine-tune ``args.base_model`` on ``train_file`` (student pairs), keep the epoch with the
    lowest loss on ``val_file``, and write the model and tokenizer to ``args.output_dir``.

    Returns the figures the model card and the database keep: dev loss per epoch, the best
    epoch, the training loss, steps, examples and tokens, bf16, and the wall time.
    """
    import torch
    from transformers import PrinterCallback, Trainer, TrainingArguments, set_seed

    progress = progress or NullProgress()
    started = time.monotonic()
    set_seed(args.seed)
    progress.update(0, None, f"loading {args.base_model}", force=True)
    model, tokenizer = load_base(args.base_model)
    model.config.pad_token_id = tokenizer.pad_token_id
    train_set, skipped, train_tokens = _tokenized(tokenizer, train_file, args.max_length)
    if not len(train_set):
        raise ValueError(f"{train_file}: no training example (the split is empty)")
    val_set = None
    if val_file is not None and val_file.is_file():
        val_set, _val_skipped, _ = _tokenized(tokenizer, val_file, args.max_length)
        if not len(val_set):
            val_set = None
    bf16 = hardware_bf16() if args.bf16 is None else args.bf16
    use_cpu = not torch.cuda.is_available()
    checkpoints = args.output_dir / ".checkpoints"
    per_epoch = math.ceil(len(train_set) / args.batch_size)
    strategy = "epoch" if val_set is not None else "no"
    every: dict[str, Any] = {}
    if args.max_steps is not None and val_set is not None:
        # A capped run may never finish an epoch: evaluate every epoch's worth of steps or at
        # the cap, whichever comes first.
        strategy = "steps"
        steps = max(1, min(args.max_steps, per_epoch))
        every = {"eval_steps": steps, "save_steps": steps}
    training_args = TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=args.epochs,
        max_steps=args.max_steps if args.max_steps is not None else -1,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        warmup_steps=math.ceil(args.warmup_ratio * per_epoch * args.epochs),
        weight_decay=args.weight_decay,
        lr_scheduler_type="linear",
        eval_strategy=strategy,
        save_strategy=strategy,
        save_only_model=True,  # no optimizer state: the best epoch's weights are all we reload
        save_total_limit=1,
        load_best_model_at_end=val_set is not None,
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        logging_strategy="steps",
        logging_steps=args.logging_steps,
        report_to="none",
        disable_tqdm=True,
        bf16=bf16,
        use_cpu=use_cpu,
        seed=args.seed,
        data_seed=args.seed,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        **every,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        data_collator=PadCollator(tokenizer.pad_token_id),
        train_dataset=train_set,
        eval_dataset=val_set,
        processing_class=tokenizer,
        callbacks=[_progress_callback(progress)],
    )
    # Progress goes to the job row and the CLI's bar; the Trainer's own printing would only
    # interleave raw dicts with them.
    trainer.remove_callback(PrinterCallback)
    try:
        outcome = trainer.train()
        history = trainer.state.log_history
        dev = [
            {"epoch": round(float(e["epoch"]), 3), "step": e["step"], "loss": float(e["eval_loss"])}
            for e in history
            if "eval_loss" in e
        ]
        best = min(dev, key=lambda e: e["loss"]) if dev else None
        model = trainer.model
        model.config.use_cache = True
        model.save_pretrained(args.output_dir)
        tokenizer.save_pretrained(args.output_dir)
    finally:
        shutil.rmtree(checkpoints, ignore_errors=True)
    wall = time.monotonic() - started
    return {
        "dev_loss": dev,
        "best": best,
        "train_loss": float(outcome.training_loss),
        "steps": int(trainer.state.global_step),
        "train_examples": len(train_set),
        "val_examples": len(val_set) if val_set is not None else 0,
        "skipped_examples": skipped,
        "train_tokens_per_epoch": train_tokens,
        "train_runtime_s": float(outcome.metrics.get("train_runtime", 0.0)),
        "bf16": bf16,
        "device": str(trainer.args.device),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "wall_seconds": wall,
    }
