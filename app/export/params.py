"""The parameters of an export: what a researcher can ask for, in one typed, checked object.

Every door (the page, ``POST /api/exports``, ``skd export``) turns what it was given into an
``ExportParams`` with ``ExportParams.from_dict``, which accepts JSON values and the text of a
form or a command line alike and collects *every* problem by parameter name, so a person sees
all their mistakes at once. Checks that need the database (does the version exist, does the
target precision exist on its curve, is anything kept) are in ``app.export.plan``.

The canonical form (``as_dict``) is what an export stores, writes to ``params.json`` and turns
into the reproducing command: lists sorted, zero-ratio splits dropped, the version resolved.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from app.critic.metrics import RECALL_LEVELS

# Written together into one folder; each is a subfolder with one file per split.
FORMATS: tuple[str, ...] = ("atomic-tsv", "jsonl", "parquet", "student")
FORMAT_HELP = {
    "atomic-tsv": "ATOMIC 2020 TSV: head⇥relation⇥tail, no header",
    "jsonl": "JSONL in the ATOMIC-10X schema (p_valid_model, valid, rec_X)",
    "parquet": "Parquet, the same columns (pyarrow; datasets.load_dataset)",
    "student": 'the student\'s input/output pairs: {"source": "<head> … [GEN]", "target": tail}',
}

# What the majority human label of a triple does, whatever the critic scored.
HUMAN_LABEL_RULES: dict[str, str] = {
    "override": "majority-accepted triples are always kept and majority-rejected ones always "
    "dropped, whatever their score",
    "drop-rejected": "majority-rejected triples are dropped; accepted ones must pass the "
    "threshold like the rest",
    "ignore": "the critic's score alone decides",
    "accepted-only": "only majority-accepted triples are kept, whatever their score (the "
    "corpus filtered by people alone)",
}

# Whether a critic filters the export. "none": no score, no threshold; every triple in the
# relation and source filters is a candidate and only the human-label rule drops any.
CRITIC_CHOICES: dict[str, str] = {
    "version": "a critic version's scores and threshold decide (with the human-label rule)",
    "none": "no critic: every triple in the filters, less what the human-label rule drops",
}
# What each human-label rule keeps when no critic filters the export.
NO_CRITIC_RULES: dict[str, str] = {
    "override": "every triple in the filters except the majority-rejected ones",
    "drop-rejected": "every triple in the filters except the majority-rejected ones",
    "ignore": "every triple in the filters",
    "accepted-only": "only the majority-accepted triples in the filters",
}

DEFAULT_SPLITS: tuple[tuple[str, float], ...] = (("train", 0.8), ("val", 0.1), ("test", 0.1))

# How triples are put into splits.
SPLIT_BY: dict[str, str] = {
    "head": "In the shares asked below; no head is in two splits (the COMET convention)",
    "corpus": "Each triple in its own split from its import (the split field of ATOMIC-10X "
    "JSONL, CSV or Parquet), e.g. to keep a published test set",
}

# The rec_X flags of the ATOMIC-10X schema: X is a target recall on the critic's held-out set.
REC_LEVELS: tuple[float, ...] = RECALL_LEVELS

_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_]{1,40}$")  # a Hugging Face split name, a file name
_FIELDS = (
    "version",
    "threshold",
    "target_precision",
    "target_recall",
    "kept_fraction",
    "relations",
    "sources",
    "human_labels",
    "splits",
    "split_by",
    "seed",
    "formats",
    "critic",
)
# The four ways to set the threshold; at most one is given (none: see app.export.plan).
THRESHOLD_FIELDS = ("threshold", "target_precision", "target_recall", "kept_fraction")
THRESHOLD_RULES = {
    "threshold": "score",
    "target_precision": "precision",
    "target_recall": "recall",
    "kept_fraction": "kept",
}


def is_split_name(name: str) -> bool:
    """A name usable as a Hugging Face split and a file name."""
    return bool(_SPLIT_NAME.match(name))


class ExportParamError(ValueError):
    """Bad export parameters: ``errors`` maps each parameter's name to what is wrong with it."""

    def __init__(self, errors: Mapping[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__("; ".join(f"{name}: {message}" for name, message in self.errors.items()))


@dataclass(frozen=True)
class ExportParams:
    """One export, as asked. ``version=None`` means the active critic version, unless
    ``critic`` is "none": then no critic filters the export (see ``CRITIC_CHOICES``)."""

    version: int | None = None
    threshold: float | None = None
    target_precision: float | None = None
    target_recall: float | None = None
    kept_fraction: float | None = None
    relations: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    human_labels: str = "override"
    splits: tuple[tuple[str, float], ...] = DEFAULT_SPLITS  # () when split_by is "corpus"
    seed: int = 0
    formats: tuple[str, ...] = FORMATS
    split_by: str = "head"
    critic: str = "version"

    # --- building -------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExportParams:
        """Parameters from JSON or from text (a form, a command line); raises ExportParamError
        naming every bad parameter. Missing or empty values take their defaults."""
        errors: dict[str, str] = {}
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            errors["parameters"] = f"unknown parameter(s) {', '.join(unknown)}; use {_FIELDS}"

        def take(name: str, parse: Any, default: Any) -> Any:
            value = data.get(name)
            if value is None or (isinstance(value, str) and not value.strip()):
                return default
            try:
                return parse(value)
            except (TypeError, ValueError) as exc:
                errors[name] = str(exc)
                return default

        raw_version = data.get("version")
        if isinstance(raw_version, str) and raw_version.strip().lower() in _NO_CRITIC_WORDS:
            data = {**data, "version": None, "critic": "none"}  # the page's "no critic" choice
        version = take("version", _version, None)
        critic = take("critic", _choice(CRITIC_CHOICES), "version")
        numbers = {name: take(name, _fraction, None) for name in THRESHOLD_FIELDS}
        relations = take("relations", _names, ())
        sources = take("sources", _names, ())
        human_labels = take("human_labels", _choice(HUMAN_LABEL_RULES), "override")
        split_by = take("split_by", _choice(SPLIT_BY), "head")
        splits = take("splits", _splits, DEFAULT_SPLITS)
        if split_by == "corpus":
            given = data.get("splits")
            if given not in (None, "", {}, []) and "splits" not in errors:
                errors["splits"] = (
                    "split shares don't apply when the corpus's own splits are kept; "
                    "leave them out, or split by head"
                )
            splits = ()
        seed = take("seed", _seed, 0)
        formats = take("formats", _formats, FORMATS)
        params = cls(
            version=version,
            relations=tuple(sorted(set(relations))),
            sources=tuple(sorted(set(sources))),
            human_labels=human_labels,
            splits=splits,
            seed=seed,
            formats=formats,
            split_by=split_by,
            critic=critic,
            **numbers,
        )
        given = [name for name in THRESHOLD_FIELDS if getattr(params, name) is not None]
        if critic == "none":
            if version is not None:
                errors.setdefault(
                    "version",
                    f"critic version {version} is given, but no critic is chosen; give one or "
                    "the other",
                )
            for name in given:
                errors.setdefault(
                    name,
                    "needs a critic's score, and no critic filters this export: leave it out "
                    "(the human-label rule alone decides), or choose a critic version",
                )
        elif len(given) > 1:
            errors.setdefault(
                given[1], f"give one way to set the threshold, not {' and '.join(given)}"
            )
        if errors:
            raise ExportParamError(errors)
        return params

    def checked(self) -> ExportParams:
        """The same parameters put through ``from_dict``'s checks (for objects built in code)."""
        return ExportParams.from_dict(self.as_dict())

    def with_version(self, version: int) -> ExportParams:
        return replace(self, version=version)

    # --- reading --------------------------------------------------------------------------

    @property
    def threshold_rule(self) -> tuple[str, float] | None:
        """(rule, value) with rule score|precision|recall|kept, or None for the default."""
        for name in THRESHOLD_FIELDS:
            value = getattr(self, name)
            if value is not None:
                return THRESHOLD_RULES[name], float(value)
        return None

    @property
    def split_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ratio in self.splits)

    def as_dict(self) -> dict[str, Any]:
        """The canonical JSON form (stored with the export and written to ``params.json``).

        ``split_by`` and ``critic`` appear only when they are not the default, so the params
        (and so the archive's name and bytes) of a split-by-head export with a critic are what
        they always were."""
        data = self._as_dict()
        if self.split_by != "head":
            data.pop("splits")
            data["split_by"] = self.split_by
        if self.critic != "version":
            data["critic"] = self.critic
        return data

    @property
    def no_critic(self) -> bool:
        """No critic filters this export (only the filters and the human-label rule)."""
        return self.critic == "none"

    def _as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "threshold": self.threshold,
            "target_precision": self.target_precision,
            "target_recall": self.target_recall,
            "kept_fraction": self.kept_fraction,
            "relations": list(self.relations),
            "sources": list(self.sources),
            "human_labels": self.human_labels,
            "splits": {name: ratio for name, ratio in self.splits},
            "seed": self.seed,
            "formats": list(self.formats),
        }

    def command(self, program: str = "skd export") -> str:
        """The command line that runs this export again (arguments shell-quoted)."""
        parts: list[str] = []
        if self.no_critic:
            parts.append("--no-critic")
        if self.version is not None:
            parts += ["--version", str(self.version)]
        for name in THRESHOLD_FIELDS:
            value = getattr(self, name)
            if value is not None:
                parts += [f"--{name.replace('_', '-')}", _number(value)]
        for relation in self.relations:
            parts += ["--relation", relation]
        for source in self.sources:
            parts += ["--source", source]
        parts += ["--human-labels", self.human_labels]
        if self.split_by != "head":
            parts += ["--split-by", self.split_by]
        for name, ratio in self.splits:
            parts += ["--split", f"{name}={_number(ratio)}"]
        parts += ["--seed", str(self.seed)]
        for fmt in self.formats:
            parts += ["--format", fmt]
        return " ".join([program, *(shlex.quote(part) for part in parts)])


def _number(value: float) -> str:
    """Shortest text that reads back as the same float (``0.8``, not ``0.8000000000000002``)."""
    return repr(float(value))


# --- parsers: each raises ValueError with a message for a person --------------------------------


_NO_CRITIC_WORDS = ("none", "no-critic", "no critic")


def _version(value: Any) -> int | None:
    if isinstance(value, str) and value.strip().lower() in ("active", "default"):
        return None
    number = _integer(value, "a critic version id (a whole number), 'active' or 'none'")
    if number < 1:
        raise ValueError(f"{value!r} is not a critic version id")
    return number


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected {what}, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected {what}, got {value!r}")


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


def _fraction(value: Any) -> float:
    number = _float(value)
    if not 0 <= number <= 1:
        raise ValueError(f"{number:g} is outside [0, 1]")
    return number


def _names(value: Any) -> tuple[str, ...]:
    """A list, or text with commas or new lines between names."""
    if isinstance(value, str):
        items: Iterable[Any] = re.split(r"[,\n]", value)
    elif isinstance(value, list | tuple | set | frozenset):
        items = value
    else:
        raise ValueError(f"expected a list of names, got {value!r}")
    names = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"expected names, got {item!r}")
        if item.strip():
            names.append(item.strip())
    return tuple(names)


def _choice(choices: Mapping[str, str]) -> Any:
    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return text

    return parse


def _seed(value: Any) -> int:
    number = _integer(value, "a whole number")
    if not 0 <= number < 2**63:
        raise ValueError(f"{number} is outside [0, 2^63)")
    return number


def _formats(value: Any) -> tuple[str, ...]:
    names = set(_names(value))
    if not names:
        raise ValueError(f"choose at least one of {', '.join(FORMATS)}")
    unknown = sorted(names - set(FORMATS))
    if unknown:
        raise ValueError(f"{', '.join(map(repr, unknown))}: not one of {', '.join(FORMATS)}")
    return tuple(fmt for fmt in FORMATS if fmt in names)


def _splits(value: Any) -> tuple[tuple[str, float], ...]:
    """``{"train": 0.8, ...}``, ``[["train", 0.8], ...]`` or ``"train=0.8,val=0.1,test=0.1"``.

    Ratios are fractions of the kept triples that add up to 1; a zero ratio drops the split.
    Order matters only for the names: the assignment of heads is by hash, see app.export.splits.
    """
    pairs: list[tuple[Any, Any]]
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, str):
        pairs = []
        for part in re.split(r"[,\s]+", value.strip()):
            if not part:
                continue
            if "=" not in part:
                raise ValueError(f"write name=ratio, e.g. train=0.8 (got {part!r})")
            name, ratio = part.split("=", 1)
            pairs.append((name, ratio))
    elif isinstance(value, list | tuple):
        pairs = []
        for item in value:
            if isinstance(item, str) and "=" in item:
                pairs.append(tuple(item.split("=", 1)))  # type: ignore[arg-type]
            elif isinstance(item, list | tuple) and len(item) == 2:
                pairs.append((item[0], item[1]))
            else:
                raise ValueError(f"expected name=ratio pairs, got {item!r}")
    else:
        raise ValueError(f"expected name=ratio pairs, got {value!r}")
    seen: set[str] = set()
    result: list[tuple[str, float]] = []
    for raw_name, raw_ratio in pairs:
        name = str(raw_name).strip()
        if not _SPLIT_NAME.match(name):
            raise ValueError(f"split name {name!r}: use letters, digits and _ only")
        if name in seen:
            raise ValueError(f"split {name!r} is given twice")
        seen.add(name)
        ratio = _float(raw_ratio)
        if ratio < 0:
            raise ValueError(f"split {name!r}: the ratio {ratio:g} is negative")
        if ratio > 0:
            result.append((name, ratio))
    if not result:
        raise ValueError("give at least one split with a ratio above 0")
    total = sum(ratio for _name, ratio in result)
    if abs(total - 1) > 1e-6:
        raise ValueError(f"the ratios must add up to 1 (they add up to {total:g})")
    return tuple(result)
