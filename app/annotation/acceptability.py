"""Which answers count as acceptable: a campaign's answer scale, or the paper's rule (> 0
acceptable, -9 no judgement)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, case
from sqlalchemy.orm import Session

from app.core.models import Campaign

UNFAMILIAR = -9  # the paper's "too unfamiliar to judge"


# value -> True (acceptable), False (not acceptable) or None (no judgement: "too unfamiliar")
Acceptability = dict[int, bool | None]


def default_acceptable(answer: int) -> bool | None:
    """The paper's rule, for values a scale does not list and for imported labels."""
    if answer > 0:
        return True
    if answer == UNFAMILIAR or answer == 0:
        return None
    return False


def acceptability(scale: list[Any] | None) -> Acceptability:
    """Which values of a campaign's answer scale count as acceptable (see the module docstring)."""
    mapping: Acceptability = {}
    for option in scale or []:
        if not isinstance(option, Mapping) or "value" not in option:
            continue
        try:
            value = int(option["value"])
        except (TypeError, ValueError):
            continue
        flag = option.get("acceptable", default_acceptable(value))
        mapping[value] = None if flag is None else bool(flag)
    return mapping


def is_acceptable(answer: int, mapping: Acceptability) -> bool | None:
    return mapping[answer] if answer in mapping else default_acceptable(answer)


def answer_labels(scale: list[Any] | None) -> dict[int, str]:
    """value -> the wording annotators saw, for the downloads."""
    labels: dict[int, str] = {}
    for option in scale or []:
        if isinstance(option, Mapping) and "value" in option and "label" in option:
            try:
                labels[int(option["value"])] = str(option["label"])
            except (TypeError, ValueError):
                continue
    return labels


def _acceptable_sql(column: Any, mapping: Acceptability) -> ColumnElement[Any]:
    """SQL for ``is_acceptable``: 1, 0 or NULL, so votes can be summed inside the database."""
    code = {True: 1, False: 0, None: None}
    whens: list[tuple[Any, Any]] = [
        (column == value, code[flag]) for value, flag in sorted(mapping.items())
    ]
    # The paper's rule for anything the scale does not list (and for a NULL gold answer).
    whens += [(column > 0, 1), (column == UNFAMILIAR, None), (column < 0, 0)]
    return case(*whens, else_=None)


def _not_excluded(user: Any) -> ColumnElement[bool]:
    # IS NOT TRUE: a rating whose annotator row is gone (NULL after an outer join) still counts.
    return user.excluded.is_not(True)


def _campaign(session: Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise LookupError(f"no campaign {campaign_id}")
    return campaign
