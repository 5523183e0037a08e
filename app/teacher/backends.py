"""The teacher's backends: an OpenAI-compatible server over HTTP, or a local transformers model.

Both take a list of prompts and return, per prompt, ``n`` generations with their mean token
log-probability (when known). The HTTP backend speaks the OpenAI protocol through the official
``openai`` client (vLLM, TGI, llama.cpp, Ollama and hosted APIs all do): completions or chat,
up to ``concurrency`` requests in flight, a timeout per request, and retries with exponential
backoff on 429, 5xx and connection errors that wait what the server's ``Retry-After`` asks. The
local backend samples in batches: many left-padded prompts and ``num_return_sequences`` per
forward pass, under ``torch.inference_mode``.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Generation:
    """One sampled continuation and its mean token log-probability (None: not returned)."""

    text: str
    logprob: float | None = None


@dataclass(frozen=True)
class Sampling:
    """How to sample (the OpenAI names; the local backend maps what it can)."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 24
    stop: tuple[str, ...] = ("\n",)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None


class Backend(Protocol):
    """What a run needs from a backend."""

    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[list[Generation]]: ...

    def describe(self) -> dict[str, Any]: ...


class TeacherBackendError(RuntimeError):
    """The backend failed in a way a retry will not fix (or after the last retry)."""


def _mean(values: Sequence[float | None] | None) -> float | None:
    numbers = [v for v in (values or []) if v is not None]
    return sum(numbers) / len(numbers) if numbers else None


# --- OpenAI-compatible HTTP ------------------------------------------------------------------


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter; a server's Retry-After wins (capped at ``max_wait``)."""

    max_retries: int = 5
    base: float = 0.5
    max_wait: float = 60.0
    sleep: Callable[[float], None] = time.sleep

    def wait_for(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_wait)
        return min(self.base * (2**attempt) * (0.5 + random.random()), self.max_wait)


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds a ``Retry-After`` (or ``retry-after-ms``) header asks to wait, if any."""
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return float(millis) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return max(0.0, email.utils.mktime_tz(parsed) - time.time())


@dataclass
class OpenAIBackend:
    """An OpenAI-compatible server: ``mode`` "completions" or "chat"."""

    base_url: str
    model: str
    api_key: str | None = None
    mode: str = "completions"
    concurrency: int = 8
    timeout: float = 60.0
    logprobs: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    stats: dict[str, int] = field(default_factory=lambda: {"requests": 0, "retries": 0})

    def __post_init__(self) -> None:
        import openai

        # The client's own retries are off: ours count them and honour Retry-After beyond
        # the client's one-minute cap. A server that needs no key still gets a placeholder.
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=self.api_key or "unused",
            timeout=self.timeout,
            max_retries=0,
        )
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        return {"backend": "openai", "base_url": self.base_url, "model": self.model,
                "mode": self.mode}  # fmt: skip

    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[list[Generation]]:
        if not prompts:
            return []
        workers = max(1, min(self.concurrency, len(prompts)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="teacher-http") as pool:
            return list(pool.map(lambda p: self._with_retries(p, sampling), prompts))

    def close(self) -> None:
        self._client.close()

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] = self.stats.get(key, 0) + 1

    def _with_retries(self, prompt: str, sampling: Sampling) -> list[Generation]:
        import openai

        attempt = 0
        while True:
            self._count("requests")
            try:
                return self._request(prompt, sampling)
            except (
                openai.RateLimitError,
                openai.InternalServerError,
                openai.APIStatusError,
            ) as exc:
                status = getattr(exc, "status_code", 0)
                if status != 429 and status != 408 and status < 500:
                    raise TeacherBackendError(
                        f"{self.base_url}: the server refused the request (HTTP {status}): "
                        f"{_short(exc)}"
                    ) from None
                reason = f"HTTP {status}"
                retry_after = retry_after_seconds(getattr(exc.response, "headers", None))
            except openai.APIConnectionError as exc:  # includes APITimeoutError
                kind = "timed out" if isinstance(exc, openai.APITimeoutError) else "unreachable"
                reason, retry_after = f"{kind} ({_short(exc)})", None
            except openai.APIResponseValidationError as exc:
                raise _garbage(self.base_url, exc.body) from None
            if attempt >= self.retry.max_retries:
                raise TeacherBackendError(
                    f"{self.base_url}: gave up after {attempt + 1} attempts: {reason}"
                )
            wait = self.retry.wait_for(attempt, retry_after)
            self._count("retries")
            log.info("teacher request %s; retrying in %.2f s", reason, wait)
            self.retry.sleep(wait)
            attempt += 1

    def _request(self, prompt: str, sampling: Sampling) -> list[Generation]:
        common: dict[str, Any] = {
            "model": self.model,
            "n": sampling.n,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "presence_penalty": sampling.presence_penalty,
            "frequency_penalty": sampling.frequency_penalty,
        }
        if sampling.stop:
            common["stop"] = list(sampling.stop)[:4]  # the protocol allows at most four
        if sampling.seed is not None:
            common["seed"] = sampling.seed
        if self.mode == "chat":
            if self.logprobs:
                common["logprobs"] = True
            response = self._client.chat.completions.create(
                messages=[{"role": "user", "content": prompt}], **common
            )
            return self._parse(response, chat=True)
        if self.logprobs:
            common["logprobs"] = 1
        response = self._client.completions.create(prompt=prompt, **common)
        return self._parse(response, chat=False)

    def _parse(self, response: Any, *, chat: bool) -> list[Generation]:
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise _garbage(self.base_url, response)
        out: list[Generation] = []
        for choice in choices:
            try:
                if chat:
                    text = choice.message.content
                    content = getattr(choice.logprobs, "content", None) if choice.logprobs else None
                    logprob = _mean([t.logprob for t in content] if content else None)
                else:
                    text = choice.text
                    logprobs = choice.logprobs
                    logprob = _mean(logprobs.token_logprobs if logprobs else None)
            except AttributeError:
                raise _garbage(self.base_url, response) from None
            if not isinstance(text, str):
                raise _garbage(self.base_url, response)
            out.append(Generation(text, logprob))
        return out


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc)
    return text if len(text) <= limit else text[:limit] + "…"


def _garbage(base_url: str, body: Any) -> TeacherBackendError:
    snippet = str(body)
    snippet = snippet[:120] + ("…" if len(snippet) > 120 else "")
    return TeacherBackendError(
        f"{base_url}: the answer is not an OpenAI completion (is the base URL right? it "
        f"usually ends in /v1): {snippet!r}"
    )


# --- local transformers model ----------------------------------------------------------------


@lru_cache(maxsize=2)
def _cached_model(name_or_path: str, gguf_file: str | None, dtype_name: str | None) -> Any:
    """One copy of a model per process (a worker runs many chunks of one run)."""
    import torch

    from app.core.causal_lm import load_causal_lm

    dtype = getattr(torch, dtype_name) if dtype_name else None
    return load_causal_lm(name_or_path, gguf_file=gguf_file, dtype=dtype)


@dataclass
class LocalBackend:
    """A causal LM loaded with transformers (a hub name, a folder, or a folder + GGUF file)."""

    name_or_path: str
    gguf_file: str | None = None
    batch_size: int = 8
    dtype: str | None = None  # "float32", "bfloat16"...
    model: Any = None  # an already loaded (model, tokenizer) pair, for tests and benchmarks

    def describe(self) -> dict[str, Any]:
        return {"backend": "local", "model": self.name_or_path, "gguf_file": self.gguf_file}

    def loaded(self) -> tuple[Any, Any]:
        if self.model is None:
            self.model = _cached_model(self.name_or_path, self.gguf_file, self.dtype)
        return self.model

    def generate(self, prompts: Sequence[str], sampling: Sampling) -> list[list[Generation]]:
        out: list[list[Generation]] = []
        for start in range(0, len(prompts), self.batch_size):
            out.extend(self._batch(list(prompts[start : start + self.batch_size]), sampling))
        return out

    def _batch(self, prompts: list[str], sampling: Sampling) -> list[list[Generation]]:
        import torch

        model, tokenizer = self.loaded()
        tokenizer.padding_side = "left"  # decoder-only: new tokens follow the real text
        encoded = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
        limit = getattr(model.config, "max_position_embeddings", None)
        longest = int(encoded["input_ids"].shape[1])
        if limit and longest + sampling.max_tokens > limit:
            raise TeacherBackendError(
                f"a prompt of {longest} tokens plus {sampling.max_tokens} new ones is longer "
                f"than {self.name_or_path} reads ({limit} positions); use fewer examples"
            )
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        do_sample = sampling.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_tokens,
            "num_return_sequences": sampling.n,
            "do_sample": do_sample,
            "pad_token_id": tokenizer.pad_token_id,
            "return_dict_in_generate": True,
            "output_logits": True,
        }
        if do_sample:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        if sampling.presence_penalty or sampling.frequency_penalty:
            from transformers import LogitsProcessorList

            kwargs["logits_processor"] = LogitsProcessorList(
                [
                    GeneratedTokenPenalty(
                        int(encoded["input_ids"].shape[1]),
                        sampling.presence_penalty,
                        sampling.frequency_penalty,
                    )
                ]
            )
        if sampling.stop:
            kwargs.update(stop_strings=list(sampling.stop), tokenizer=tokenizer)
        with torch.inference_mode():
            inputs = _shared_prefill(model, encoded, sampling.n)
            if _cache_key() in inputs:
                kwargs["num_return_sequences"] = 1  # the rows are already repeated
            result = model.generate(**inputs, **kwargs)
            new_tokens = result.sequences[:, inputs["input_ids"].shape[1] :]
            # The model's own log-probability of each chosen token (raw logits, before top-p).
            logits = torch.stack(result.logits, dim=1).float()
            chosen = torch.log_softmax(logits, dim=-1).gather(-1, new_tokens.unsqueeze(-1))
            token_logprobs = chosen.squeeze(-1).tolist()
        generations: list[list[Generation]] = [[] for _ in prompts]
        special = {tokenizer.pad_token_id, tokenizer.eos_token_id}
        for row, ids in enumerate(new_tokens.tolist()):
            text, used = _decode_until_stop(tokenizer, ids, sampling.stop, special)
            logprob = _mean(token_logprobs[row][:used]) if used else None
            generations[row // sampling.n].append(Generation(text, logprob))
        return generations


class GeneratedTokenPenalty:
    """The OpenAI API's presence and frequency penalties, for a local model: subtracted from
    the logits of tokens the completion itself has produced so far, never the prompt's.

    Why not transformers' ``repetition_penalty``: it also punishes every token of the prompt,
    and a few-shot prompt is full of "PersonX", so the model learns to avoid the very word
    every event must start with (measured on SmolLM2: 2 of 20 events kept, against 20 of 20
    with this). A logits processor: ``(input_ids, scores) -> scores``."""

    def __init__(self, prompt_length: int, presence: float, frequency: float) -> None:
        self.prompt_length = prompt_length
        self.presence = presence
        self.frequency = frequency

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        generated = input_ids[:, self.prompt_length :]
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores).scatter_add_(
            1, generated, torch.ones_like(generated, dtype=scores.dtype)
        )
        return scores - self.frequency * counts - self.presence * (counts > 0).to(scores.dtype)


@lru_cache(maxsize=1)
def _cache_key() -> str:
    """What ``generate`` calls a cache it is handed: ``cache`` in recent transformers 5
    (``past_key_values`` is deprecated there), ``past_key_values`` before."""
    try:
        from transformers.generation.utils import ALL_CACHE_NAMES
    except ImportError:
        return "past_key_values"
    return str(ALL_CACHE_NAMES[0])


def _shared_prefill(model: Any, encoded: Any, n: int) -> dict[str, Any]:
    """Read each prompt once, not ``n`` times: the prompts (all but their last token) go
    through the model once, the key/value cache is repeated ``n`` times, and ``generate``
    continues every copy from there. ``num_return_sequences`` alone would repeat the prompts
    before reading them, and few-shot prompts are long beside the dozen tokens they ask for.
    Falls back to the plain inputs for a cache that cannot be repeated."""
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    if n <= 1 or ids.shape[1] < 2:
        return {"input_ids": ids, "attention_mask": mask}
    # Left padding: positions count real tokens only, as generate() itself computes them.
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    out = model(
        input_ids=ids[:, :-1],
        attention_mask=mask[:, :-1],
        position_ids=positions[:, :-1],
        use_cache=True,
    )
    cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    if cache is None or not hasattr(cache, "batch_repeat_interleave"):
        return {"input_ids": ids, "attention_mask": mask}
    cache.batch_repeat_interleave(n)
    return {
        "input_ids": ids.repeat_interleave(n, dim=0),
        "attention_mask": mask.repeat_interleave(n, dim=0),
        _cache_key(): cache,
    }


def _decode_until_stop(
    tokenizer: Any, ids: list[int], stop: Sequence[str], special: set[int | None]
) -> tuple[str, int]:
    """The text up to the first stop string, and how many tokens made it."""
    kept: list[int] = []
    for token in ids:
        if token in special:
            break
        kept.append(token)
        text = tokenizer.decode(kept, skip_special_tokens=True)
        cuts = [c for c in (text.find(s) for s in stop) if c >= 0]
        if cuts:
            return text[: min(cuts)], len(kept)
    return tokenizer.decode(kept, skip_special_tokens=True), len(kept)
