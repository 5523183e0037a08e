"""A campaign's answer scale: checking it, and editing it as text lines.

The scale is stored as JSON (``[{"value": 2, "label": "always/often", "acceptable": true,
"key": "1"}, ...]``). People edit it as one answer per line, ``value | label | acceptable``,
where acceptable is ``yes``, ``no`` or ``-`` (not a judgement, like "too unfamiliar"): the
critic trains on the acceptable/not split, so every answer must say which side it is on.
Problems are reported per line, so a researcher can fix a long scale in one go.
"""

from __future__ import annotations

from typing import Any

MAX_OPTIONS = 9  # keys 1-9 on the rating page
VALUE_RANGE = (-99, 99)  # stored in a SMALLINT, and kept readable in exports
_YES = {"yes", "y", "true", "1"}
_NO = {"no", "n", "false", "0"}
_NEITHER = {"-", "", "none", "skip", "n/a"}


class ScaleError(ValueError):
    """A scale that cannot be used; ``problems`` are sentences a person can act on."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _check_option(option: Any, where: str) -> list[str]:
    if not isinstance(option, dict):
        return [f"{where}: expected value, label and acceptable"]
    problems = []
    value = option.get("value")
    low, high = VALUE_RANGE
    if not isinstance(value, int) or isinstance(value, bool):
        problems.append(f"{where}: value {value!r} is not a whole number")
    elif not low <= value <= high:
        problems.append(f"{where}: value {value} is outside {low}..{high}")
    label = option.get("label")
    if not isinstance(label, str) or not label.strip():
        problems.append(f"{where}: the label is empty")
    elif len(label) > 100:
        problems.append(f"{where}: the label is longer than 100 characters")
    if option.get("acceptable") not in (True, False, None):
        problems.append(f"{where}: acceptable must be true, false or null")
    return problems


def _check_whole(options: list[dict[str, Any]]) -> list[str]:
    problems = []
    if len(options) < 2:
        problems.append("the scale needs at least two answers")
    if len(options) > MAX_OPTIONS:
        problems.append(f"the scale has {len(options)} answers; at most {MAX_OPTIONS} (keys 1-9)")
    sides = {option.get("acceptable") for option in options}
    if options and not (True in sides and False in sides):
        problems.append(
            "the scale needs at least one acceptable and one not-acceptable answer "
            "(the critic learns from that split)"
        )
    return problems


def check_scale(options: Any) -> list[str]:
    """Everything wrong with a scale given as a list of option dicts (empty list: fine)."""
    if not isinstance(options, list):
        return ["the scale must be a list of answers"]
    problems: list[str] = []
    seen_values: set[int] = set()
    seen_labels: set[str] = set()
    for number, option in enumerate(options, 1):
        where = f"answer {number}"
        option_problems = _check_option(option, where)
        problems += option_problems
        if option_problems:
            continue
        if option["value"] in seen_values:
            problems.append(f"{where}: value {option['value']} is used twice")
        if option["label"].strip().lower() in seen_labels:
            problems.append(f"{where}: label {option['label']!r} is used twice")
        seen_values.add(option["value"])
        seen_labels.add(option["label"].strip().lower())
    if not problems:
        problems += _check_whole(options)
    return problems


def normalize_scale(options: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stored form: exactly value, label, acceptable and the shortcut key (its position)."""
    return [
        {
            "value": int(option["value"]),
            "label": str(option["label"]).strip(),
            "acceptable": option.get("acceptable"),
            "key": str(position),
        }
        for position, option in enumerate(options, 1)
    ]


def _acceptable(word: str) -> bool | None | str:
    lowered = word.strip().lower()
    if lowered in _YES:
        return True
    if lowered in _NO:
        return False
    if lowered in _NEITHER:
        return None
    return "invalid"


def parse_scale_lines(text: str) -> list[dict[str, Any]]:
    """Parse ``value | label | acceptable`` lines (blank lines and ``#`` comments are ignored).

    Raises ``ScaleError`` listing every problem, each with its line number.
    """
    options: list[dict[str, Any]] = []
    problems: list[str] = []
    first_line_of: dict[int, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"line {number}"
        parts = [part.strip() for part in line.split("|")]
        if len(parts) not in (2, 3):
            problems.append(
                f"{where}: write `value | label | acceptable` ({len(parts) - 1} '|' found)"
            )
            continue
        value_text, label = parts[0], parts[1]
        accept = _acceptable(parts[2] if len(parts) == 3 else "-")
        try:
            value = int(value_text)
        except ValueError:
            problems.append(f"{where}: value {value_text!r} is not a whole number")
            continue
        if accept == "invalid":
            problems.append(f"{where}: acceptable must be yes, no or - (got {parts[2]!r})")
            continue
        option = {"value": value, "label": label, "acceptable": accept}
        option_problems = _check_option(option, where)
        if option_problems:
            problems += option_problems
            continue
        if value in first_line_of:
            problems.append(
                f"{where}: value {value} is already used on line {first_line_of[value]}"
            )
            continue
        first_line_of[value] = number
        options.append(option)
    if not problems:
        problems = _check_whole(options)
    if problems:
        raise ScaleError(problems)
    return normalize_scale(options)


def format_scale_lines(options: list[dict[str, Any]]) -> str:
    """The text a researcher edits: the inverse of ``parse_scale_lines``."""
    words = {True: "yes", False: "no", None: "-"}
    return "\n".join(
        f"{option['value']} | {option['label']} | {words[option.get('acceptable')]}"
        for option in options
    )
