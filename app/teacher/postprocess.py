"""Post-processing the teacher's raw text, as the paper does, counting what each filter removed.

An event must start with PersonX and be short; an inference is cut at the end of its line and
its names mapped back to PersonX/PersonY. Both go through length and character-set filters,
then de-duplication (within the run and against the corpus, by the corpus's own normalized
key), then optionally only the top share by mean log-probability is kept. The counts of every
filter are stored with the run and shown on its page.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

from app.teacher.prompts import names_back

# The filters, in the order they apply; each removed candidate is counted under one of them.
FILTERS: tuple[str, ...] = (
    "empty",
    "not_personx",
    "too_short",
    "too_long",
    "charset",
    "duplicate_in_run",
    "duplicate_in_corpus",
    "low_logprob",
)

# Letters (any script's Latin letters), digits, spaces and everyday punctuation.
DEFAULT_CHARSET = r"[A-Za-z0-9À-ɏ \-,.'’!?;:()&/]+"

_PERSONX = re.compile(r"^PersonX\b")
_NUMBERING = re.compile(r"^\s*(?:\d+[.)]\s*)?(?:Event:\s*)?")


@dataclass(frozen=True)
class FilterSettings:
    """What the post-processing keeps (part of a run's parameters)."""

    min_event_words: int = 2
    max_event_words: int = 12
    min_inference_words: int = 1
    max_inference_words: int = 15
    charset: str = DEFAULT_CHARSET
    keep_top: float = 1.0  # share kept by mean log-probability, within each chunk


@dataclass(frozen=True)
class Candidate:
    """A cleaned output that passed the text filters, waiting for de-duplication."""

    text: str
    logprob: float | None
    prompt_index: int  # which prompt of the chunk wrote it


def first_line(raw: str) -> str:
    """The text up to the end of its first non-empty line, whitespace collapsed."""
    for line in raw.strip().splitlines():
        if line.strip():
            return " ".join(line.split())
    return ""


def clean_event(raw: str, settings: FilterSettings) -> tuple[str | None, str | None]:
    """(event, None) or (None, the filter that removed it)."""
    text = _NUMBERING.sub("", first_line(raw)).rstrip(" .")
    return _check(text, settings.min_event_words, settings.max_event_words, settings, event=True)


def clean_inference(
    raw: str, names: dict[str, str], settings: FilterSettings
) -> tuple[str | None, str | None]:
    """(inference, None) or (None, the filter that removed it); names mapped back."""
    text = names_back(first_line(raw), names).rstrip(" .")
    if text.casefold() == "none":
        return None, "empty"
    return _check(
        text, settings.min_inference_words, settings.max_inference_words, settings, event=False
    )


def _check(
    text: str, min_words: int, max_words: int, settings: FilterSettings, *, event: bool
) -> tuple[str | None, str | None]:
    if not text:
        return None, "empty"
    if event and not _PERSONX.match(text):
        return None, "not_personx"
    words = len(text.split())
    if words < min_words:
        return None, "too_short"
    if words > max_words:
        return None, "too_long"
    if not re.fullmatch(settings.charset, text):
        return None, "charset"
    return text, None


def keep_top_share(
    candidates: list[Candidate], share: float, counts: Counter[str]
) -> list[Candidate]:
    """The top ``share`` of ``candidates`` by mean log-probability (those without one stay)."""
    if share >= 1.0:
        return candidates
    scored = [c for c in candidates if c.logprob is not None]
    keep_n = math.ceil(share * len(scored))
    ranked = sorted(scored, key=lambda c: c.logprob, reverse=True)  # type: ignore[arg-type,return-value]
    kept_ids = {id(c) for c in ranked[:keep_n]}
    counts["low_logprob"] += len(scored) - keep_n
    return [c for c in candidates if c.logprob is None or id(c) in kept_ids]


def empty_counts() -> dict[str, int]:
    """Every counter a run shows, at zero."""
    return {"generated": 0, "kept": 0, **{name: 0 for name in FILTERS}}
