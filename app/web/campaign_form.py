"""The "new campaign" form: its defaults, and turning its text fields into a ``CampaignSpec``.

Everything a person types arrives as text; this module turns it into typed values and collects
every problem by field name (not just the first), so the page can show each message next to
its field. The rules about what makes a good campaign live in
``app.annotation.campaigns.validate_spec``:
this module only parses.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData

from app.annotation.campaigns import DEFAULT_SCALE, CampaignSpec
from app.annotation.scale import ScaleError, format_scale_lines, parse_scale_lines
from app.annotation.source_balance import AUTO
from app.core.models import CampaignPurpose

PURPOSE_HELP = {
    CampaignPurpose.calibration: "A uniform random sample: unbiased estimates of how much of "
    "the corpus is acceptable, and of the critic's precision.",
    CampaignPurpose.training: "Labels to train the critic. Uncertainty-first once a critic "
    "exists; for now items are served in random order, like calibration.",
    CampaignPurpose.evaluation: "Rate the outputs of a student or teacher model (pick its "
    "source below; with several, each gets an equal share of the sample).",
}

# Spec field -> the form field that shows its message (the form asks for minutes).
FORM_FIELD = {"lease_seconds": "lease_minutes"}

_GOLD_SPLIT = re.compile(r"[\s,;|=:]+")


def blank_values() -> dict[str, Any]:
    """What the empty form shows: the spec's defaults, a fresh seed, the paper's scale."""
    return {
        "name": "",
        "purpose": CampaignPurpose.calibration.value,
        "sample_size": "",
        "relations": [],
        "sources": [],
        "source_balance": AUTO,
        "seed": str(secrets.randbelow(1_000_000)),
        "ratings_per_item": "3",
        "lease_minutes": "10",
        "gold_fraction": "0",
        "gold_items": "",
        "gold_rate": "0",
        "guidelines": "",
        "answer_scale": format_scale_lines(DEFAULT_SCALE),
        "quota_per_annotator": "",
        "min_gold_accuracy": "0.7",
        "speeder_seconds": "2",
        "completion_code": "",
        "redirect_url": "",
    }


def parse_gold_lines(text: str) -> dict[int, int]:
    """``triple_id answer`` per line (space, comma, ``|`` or ``=`` between); ``#`` comments."""
    gold: dict[int, int] = {}
    problems: list[str] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [part for part in _GOLD_SPLIT.split(line) if part]
        if len(parts) != 2:
            problems.append(f"line {number}: write `triple_id answer`, e.g. `1234 2`")
            continue
        try:
            triple_id, answer = int(parts[0]), int(parts[1])
        except ValueError:
            problems.append(f"line {number}: triple id and answer must be whole numbers")
            continue
        if triple_id in gold:
            problems.append(f"line {number}: triple {triple_id} is listed twice")
            continue
        gold[triple_id] = answer
    if problems:
        raise ValueError("; ".join(problems))
    return gold


@dataclass
class ParsedForm:
    values: dict[str, Any]  # what to show again if the form comes back
    # Best effort even when ``errors`` is not empty (a default stands in for an unreadable
    # field), so the spec's own checks can report their problems in the same round.
    spec: CampaignSpec
    errors: dict[str, str] = field(default_factory=dict)


class _Reader:
    """Reads one typed value per field, remembering a message for each one that is wrong."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.errors: dict[str, str] = {}

    def text(self, name: str) -> str:
        return str(self.values.get(name) or "").strip()

    def integer(self, name: str, default: int | None = None) -> int | None:
        raw = self.text(name)
        if not raw:
            return default
        try:
            return int(raw)
        except ValueError:
            self.errors[name] = "must be a whole number"
            return default

    def number(self, name: str, default: float) -> float:
        raw = self.text(name)
        if not raw:
            return default
        try:
            return float(raw)
        except ValueError:
            self.errors[name] = "must be a number"
            return default


def parse_campaign_form(form: FormData) -> ParsedForm:
    """Turn the posted form into a spec, or into the messages that say what to fix."""
    values = blank_values()
    for name in values:
        if isinstance(values[name], list):
            values[name] = [str(v) for v in form.getlist(name) if str(v).strip()]
        else:
            raw = form.get(name)
            values[name] = raw if isinstance(raw, str) else ""
    read = _Reader(values)
    purpose = read.text("purpose") or CampaignPurpose.calibration.value
    if purpose not in set(CampaignPurpose):
        read.errors["purpose"] = "choose calibration, training or evaluation"
        purpose = CampaignPurpose.calibration.value
    minutes = read.number("lease_minutes", 10.0)
    try:
        scale = parse_scale_lines(str(values["answer_scale"]))
    except ScaleError as exc:
        read.errors["answer_scale"] = "; ".join(exc.problems)
        scale = list(DEFAULT_SCALE)
    try:
        gold_items = parse_gold_lines(str(values["gold_items"]))
    except ValueError as exc:
        read.errors["gold_items"] = str(exc)
        gold_items = {}
    spec = CampaignSpec(
        name=read.text("name"),
        purpose=CampaignPurpose(purpose),
        sample_size=read.integer("sample_size"),
        relations=list(values["relations"]),
        sources=list(values["sources"]),
        source_balance=read.text("source_balance") or AUTO,
        ratings_per_item=read.integer("ratings_per_item", 3) or 0,
        lease_seconds=round(minutes * 60),
        gold_fraction=read.number("gold_fraction", 0.0),
        gold_items=gold_items,
        gold_rate=read.number("gold_rate", 0.0),
        guidelines=str(values["guidelines"]).strip(),
        answer_scale=scale,
        quota_per_annotator=read.integer("quota_per_annotator"),
        min_gold_accuracy=read.number("min_gold_accuracy", 0.7),
        speeder_seconds=read.number("speeder_seconds", 2.0),
        completion_code=read.text("completion_code") or None,
        redirect_url=read.text("redirect_url") or None,
        seed=read.integer("seed"),
    )
    return ParsedForm(values=values, spec=spec, errors=read.errors)


def form_errors(spec_errors: dict[str, str]) -> dict[str, str]:
    """Spec field names -> the names of the form fields that show them."""
    return {FORM_FIELD.get(name, name): message for name, message in spec_errors.items()}
