"""A student writes inferences: batched generation for (head, relation) queries.

Decoding is greedy, beam search or top-p (nucleus) sampling, ``n`` inferences per query.
Queries are batched with left padding (a decoder-only model continues from the last real
token). Each output is cut as the paper cuts it: at the first newline or end of sentence.
Its score is the mean log-probability per token of the cut inference given the prompt,
measured in one more batched forward pass, so every decoding method gets the same kind of
score (the decoder's own beam scores would measure uncut text and differ between methods).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.core.jobs import NullProgress, Progress
from app.student.examples import Query

METHODS = ("greedy", "beam", "top-p")
_SENTENCE_END = re.compile(r"[.!?](\s|$)")


@dataclass
class Decoding:
    """How to generate (defaults: greedy, one inference per query)."""

    method: str = "greedy"
    n: int = 1
    num_beams: int = 5
    top_p: float = 0.9
    temperature: float = 1.0
    batch_size: int = 32
    max_new_tokens: int = 24
    seed: int = 0

    def problems(self) -> dict[str, str]:
        errors: dict[str, str] = {}
        if self.method not in METHODS:
            errors["decoding"] = f"use one of {', '.join(METHODS)}, not {self.method!r}"
        if self.n < 1:
            errors["n"] = "must be at least 1"
        elif self.method == "greedy" and self.n > 1:
            errors["n"] = "greedy decoding gives one inference per query; use beam or top-p"
        elif self.method == "beam" and self.num_beams < self.n:
            errors["num_beams"] = f"must be at least n ({self.n})"
        if not 0 < self.top_p <= 1:
            errors["top_p"] = "must be in (0, 1]"
        if self.temperature <= 0:
            errors["temperature"] = "must be above 0"
        if self.batch_size < 1:
            errors["batch_size"] = "must be at least 1"
        if not 1 <= self.max_new_tokens <= 512:
            errors["max_new_tokens"] = "must be between 1 and 512"
        return errors

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class DecodingError(ValueError):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {message}" for name, message in errors.items()))
        self.errors = errors


def cut_inference(text: str) -> str:
    """The inference as the paper keeps it: up to the first newline or end of sentence."""
    text = text.split("\n", 1)[0]
    match = _SENTENCE_END.search(text)
    if match is not None:
        text = text[: match.start()]
    return " ".join(text.split())


def load_student(path: Path | str) -> tuple[Any, Any]:
    """A trained student folder (``save_pretrained`` output) as (model, tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(path))
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


def _generate_kwargs(decoding: Decoding, tokenizer: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "max_new_tokens": decoding.max_new_tokens,
        "num_return_sequences": decoding.n,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if decoding.method == "greedy":
        kwargs |= {"do_sample": False, "num_beams": 1}
    elif decoding.method == "beam":
        kwargs |= {"do_sample": False, "num_beams": decoding.num_beams}
    else:
        kwargs |= {
            "do_sample": True,
            "top_p": decoding.top_p,
            "top_k": 0,
            "temperature": decoding.temperature,
        }
    return kwargs


def score_inferences(
    model: Any, tokenizer: Any, prompts: list[str], tails: list[str]
) -> list[float]:
    """Mean log-probability per token of each tail (with its leading space) after its prompt."""
    import torch

    rows: list[tuple[list[int], int]] = []
    for prompt, tail in zip(prompts, tails, strict=True):
        prompt_ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        tail_ids = tokenizer(" " + tail, add_special_tokens=False)["input_ids"] if tail else []
        rows.append((prompt_ids + tail_ids, len(prompt_ids)))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id
    ids = torch.tensor([r + [pad] * (width - len(r)) for r, _ in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r, _ in rows])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits.float()
    logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
    picked = logprobs.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    scores = []
    for row, (full, start) in enumerate(rows):
        span = picked[row, start - 1 : len(full) - 1]
        scores.append(float(span.mean()) if span.numel() else float("-inf"))
    return scores


def generate(
    model: Any,
    tokenizer: Any,
    queries: list[Query],
    decoding: Decoding,
    progress: Progress | None = None,
) -> Iterator[dict[str, Any]]:
    """One row per inference: head, relation, the prompt, rank (0..n-1), tail and score.

    Empty inferences (the model stopped at once, or the cut left nothing) are left out.
    """
    import torch

    errors = decoding.problems()
    if errors:
        raise DecodingError(errors)
    progress = progress or NullProgress()
    torch.manual_seed(decoding.seed)
    tokenizer.padding_side = "left"
    kwargs = _generate_kwargs(decoding, tokenizer)
    done = 0
    progress.update(0, len(queries), "generating", force=True)
    for start in range(0, len(queries), decoding.batch_size):
        batch = queries[start : start + decoding.batch_size]
        prompts = [query.prompt for query in batch]
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=True)
        with torch.no_grad():
            output = model.generate(**encoded, **kwargs)
        texts = tokenizer.batch_decode(
            output[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True
        )
        found: list[tuple[Query, int, str]] = []
        for index, text in enumerate(texts):
            tail = cut_inference(text)
            if tail:
                found.append((batch[index // decoding.n], index % decoding.n, tail))
        if found:
            tokenizer.padding_side = "right"
            scores = score_inferences(
                model, tokenizer, [q.prompt for q, _, _ in found], [t for _, _, t in found]
            )
            tokenizer.padding_side = "left"
            for (query, rank, tail), score in zip(found, scores, strict=True):
                yield {
                    "head": query.head,
                    "relation": query.relation,
                    "query": query.prompt,
                    "rank": rank,
                    "tail": tail,
                    "score": round(score, 6),
                }
        done += len(batch)
        progress.update(done, len(queries), f"generated for {done} of {len(queries)} queries")


def generate_to_file(
    model_path: Path,
    queries: list[Query],
    out: Path,
    decoding: Decoding,
    progress: Progress | None = None,
    *,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Generate for ``queries`` and write JSONL to ``out`` (all or nothing: a temporary file
    renamed at the end). Returns counts."""
    model, tokenizer = load_student(model_path)
    partial = out.with_name(f".{out.name}.partial")
    written = 0
    try:
        with partial.open("w", encoding="utf-8") as handle:
            for row in generate(model, tokenizer, queries, decoding, progress):
                handle.write(json.dumps({**row, **(extra or {})}, ensure_ascii=False) + "\n")
                written += 1
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return {"queries": len(queries), "inferences": written, "out": str(out)}
