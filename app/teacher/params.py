"""What a teacher run can ask for, checked before any work starts.

One JSON-able dict describes a run (the CLI's ``--params FILE``, ``POST /api/teacher/runs``
and the page's form all build it); ``check_params`` turns it into a ``RunParams`` or raises
``TeacherParamsError`` naming every bad field. The stored copy (``RunParams.as_dict``) is what
``--params FILE`` reads back to rerun a run; it never holds an API key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlparse

from app.corpus.relations import ATOMIC10X_RELATIONS
from app.teacher.backends import Sampling
from app.teacher.postprocess import FilterSettings
from app.teacher.prompts import EVENTS, ExamplePool, Template, check_template, default_template

KINDS = ("events", "inferences")
HEAD_SOURCES = ("run", "file", "source", "campaign")

# The paper's settings: events with top_p 0.9 and penalties 0.5, 10 seeds per prompt;
# inferences with top_p 0.5, 5 examples, 10 generations per (event, relation).
EVENT_SAMPLING = {"n": 5, "temperature": 1.0, "top_p": 0.9, "max_tokens": 16,
                  "presence_penalty": 0.5, "frequency_penalty": 0.5}  # fmt: skip
INFERENCE_SAMPLING = {"n": 10, "temperature": 1.0, "top_p": 0.5, "max_tokens": 16,
                      "presence_penalty": 0.0, "frequency_penalty": 0.0}  # fmt: skip


class TeacherParamsError(ValueError):
    """Bad run parameters; ``errors`` maps each field (dotted path) to what is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))


@dataclass
class BackendParams:
    type: str = "local"  # "local" or "openai"
    model: str | None = None  # local: hub name, folder or .gguf (None: SKD_TEACHER_MODEL)
    base_url: str | None = None  # openai
    mode: str = "completions"  # openai: "completions" or "chat"
    api_key_env: str | None = None  # openai: the environment variable holding the key
    concurrency: int = 8
    timeout: float = 60.0
    max_retries: int = 5
    batch_size: int | None = None  # local: prompts per forward pass (None: the setting)
    logprobs: bool = True


@dataclass
class HeadParams:
    """Where an inferences run takes its events from."""

    kind: str = "run"  # run, file, source or campaign
    value: str | int | None = None  # the run id, the source name or the campaign id
    heads: list[str] = field(default_factory=list)  # kind "file": the events read from it
    limit: int | None = None


@dataclass
class RunParams:
    kind: str = "events"
    name: str | None = None
    backend: BackendParams = field(default_factory=BackendParams)
    prompts: int = 4  # events: how many event prompts (each samples events.n events)
    examples: int = 10  # events: seed events per prompt
    inference_examples: int = 5
    relations: list[str] = field(default_factory=list)
    heads: HeadParams = field(default_factory=HeadParams)
    events: dict[str, Any] = field(default_factory=lambda: dict(EVENT_SAMPLING))
    inferences: dict[str, Any] = field(default_factory=lambda: dict(INFERENCE_SAMPLING))
    filters: dict[str, Any] = field(default_factory=dict)
    pool: dict[str, Any] = field(default_factory=lambda: ExamplePool().as_dict())
    templates: dict[str, dict[str, str]] = field(default_factory=dict)
    seed: int = 0
    chunk_size: int | None = None  # prompts per chunk task (None: the setting)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def sampling(self, phase: str) -> Sampling:
        values = dict(self.events if phase == EVENTS else self.inferences)
        stop = values.pop("stop", None)
        return Sampling(stop=tuple(stop) if stop else ("\n",), **values)

    def filter_settings(self) -> FilterSettings:
        return FilterSettings(**self.filters)

    def template(self, key: str) -> Template:
        given = self.templates.get(key)
        return Template(**given) if given else default_template(key)

    def example_pool(self) -> ExamplePool:
        return ExamplePool.from_dict(self.pool)

    @property
    def phases(self) -> list[str]:
        if self.kind == "events":
            return ["events", "inferences"] if self.relations else ["events"]
        return ["inferences"]

    def model_label(self) -> str:
        if self.backend.type == "openai":
            return self.backend.model or "?"
        return self.backend.model or "packaged:smollm2"


def _int(errors: dict[str, str], path: str, value: Any, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(str(value))
        except ValueError:
            errors[path] = f"must be a whole number, got {value!r}"
            return low
    if value < low or (high is not None and value > high):
        errors[path] = f"must be between {low} and {high}" if high else f"must be at least {low}"
    return value


def _float(errors: dict[str, str], path: str, value: Any, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        errors[path] = f"must be a number, got {value!r}"
        return low
    if not low <= number <= high:
        errors[path] = f"must be between {low:g} and {high:g}, got {number:g}"
    return number


def _check_sampling(errors: dict[str, str], path: str, given: Any, base: dict) -> dict[str, Any]:
    if not isinstance(given, dict):
        errors[path] = "must be an object"
        return dict(base)
    unknown = sorted(set(given) - set(base) - {"stop", "seed"})
    if unknown:
        errors[f"{path}.{unknown[0]}"] = "unknown setting"
    values = {**base, **given}
    values["n"] = _int(errors, f"{path}.n", values["n"], 1, 128)
    values["temperature"] = _float(errors, f"{path}.temperature", values["temperature"], 0, 2)
    values["top_p"] = _float(errors, f"{path}.top_p", values["top_p"], 0.01, 1)
    values["max_tokens"] = _int(errors, f"{path}.max_tokens", values["max_tokens"], 1, 256)
    for penalty in ("presence_penalty", "frequency_penalty"):
        values[penalty] = _float(errors, f"{path}.{penalty}", values[penalty], -2, 2)
    stop = values.get("stop")
    if stop is not None:
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            errors[f"{path}.stop"] = "must be a list of non-empty strings"
        values["stop"] = stop
    return values


def _check_pool(errors: dict[str, str], pool: dict[str, Any]) -> bool:
    """True if ``pool`` has the shape ``ExamplePool.from_dict`` reads, else names where not."""
    before = len(errors)
    for key in sorted(set(pool) - {"events", "inferences"}):
        errors[f"pool.{key}"] = "unknown part (a pool has events and inferences)"
    events = pool.get("events", [])
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        errors["pool.events"] = "must be a list of events (texts)"
    inferences = pool.get("inferences", {})
    if not isinstance(inferences, dict):
        errors["pool.inferences"] = "must map each relation to its [head, tail] pairs"
        return False
    for relation, pairs in inferences.items():
        if not isinstance(pairs, list):
            errors[f"pool.inferences.{relation}"] = "must be a list of [head, tail] pairs"
            continue
        for index, pair in enumerate(pairs):
            if not (
                isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
            ):
                errors[f"pool.inferences.{relation}.{index}"] = (
                    f"must be a [head, tail] pair of texts, got {pair!r}"[:200]
                )
                break
    return len(errors) == before


def check_url(url: str) -> str | None:
    """None if ``url`` is an http(s) URL with a host, else what is wrong with it."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return f"{url!r} is not an http:// or https:// URL"
    return None


def check_params(data: dict[str, Any], relations_allowed: frozenset[str]) -> RunParams:
    """A ``RunParams`` from ``data``, or ``TeacherParamsError`` naming every bad field."""
    from app.core.config import get_settings

    settings = get_settings()
    if not isinstance(data, dict):
        raise TeacherParamsError({"params": "must be a JSON object"})
    errors: dict[str, str] = {}
    known = set(RunParams.__dataclass_fields__)
    for key in sorted(set(data) - known):
        errors[key] = "unknown parameter"
    params = RunParams()
    kind = data.get("kind", "events")
    if kind not in KINDS:
        errors["kind"] = f"must be one of {', '.join(KINDS)}, got {kind!r}"
    params.kind = kind
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        errors["name"] = "must be a text"
        name = None
    params.name = (name.strip() or None) if name else None

    backend = data.get("backend", {}) or {}
    if not isinstance(backend, dict):
        errors["backend"] = "must be an object"
        backend = {}
    for key in sorted(set(backend) - set(BackendParams.__dataclass_fields__)):
        errors[f"backend.{key}"] = "unknown setting" + (
            " (API keys are never stored: give api_key_env, or the key per run)"
            if key == "api_key"
            else ""
        )
    b = BackendParams(
        **{k: v for k, v in backend.items() if k in BackendParams.__dataclass_fields__}
    )
    if b.type not in ("local", "openai"):
        errors["backend.type"] = f"must be local or openai, got {b.type!r}"
    if b.type == "openai":
        base_url = b.base_url or settings.teacher_base_url
        if not base_url:
            errors["backend.base_url"] = "the OpenAI-compatible backend needs a base URL"
        elif problem := check_url(base_url):
            errors["backend.base_url"] = problem
        b.base_url = base_url
        if not b.model:
            errors["backend.model"] = "name the server's model"
        if b.mode not in ("completions", "chat"):
            errors["backend.mode"] = f"must be completions or chat, got {b.mode!r}"
    b.concurrency = _int(errors, "backend.concurrency", b.concurrency, 1, 512)
    b.timeout = _float(errors, "backend.timeout", b.timeout, 0.1, 3600)
    b.max_retries = _int(errors, "backend.max_retries", b.max_retries, 0, 50)
    if b.batch_size is not None:
        b.batch_size = _int(errors, "backend.batch_size", b.batch_size, 1, 1024)
    params.backend = b

    params.prompts = _int(errors, "prompts", data.get("prompts", params.prompts), 1, 100_000)
    params.examples = _int(errors, "examples", data.get("examples", params.examples), 1, 50)
    params.inference_examples = _int(
        errors, "inference_examples", data.get("inference_examples", 5), 1, 50
    )
    params.seed = _int(errors, "seed", data.get("seed", 0), 0)
    if data.get("chunk_size") is not None:
        params.chunk_size = _int(errors, "chunk_size", data["chunk_size"], 1, 10_000)

    relations = data.get("relations", [])
    if isinstance(relations, str):
        relations = [r.strip() for r in relations.split(",") if r.strip()]
    if not isinstance(relations, list):
        errors["relations"] = "must be a list of relation names"
        relations = []
    for relation in relations:
        if relation not in relations_allowed:
            errors["relations"] = (
                f"unknown relation {relation!r} (ATOMIC-10X: {', '.join(ATOMIC10X_RELATIONS)})"
            )
    params.relations = list(dict.fromkeys(relations))
    if kind == "inferences" and not params.relations:
        errors["relations"] = "an inferences run needs at least one relation"

    params.events = _check_sampling(errors, "events", data.get("events", {}), EVENT_SAMPLING)
    params.inferences = _check_sampling(
        errors, "inferences", data.get("inferences", {}), INFERENCE_SAMPLING
    )

    filters = data.get("filters", {}) or {}
    if not isinstance(filters, dict):
        errors["filters"] = "must be an object"
        filters = {}
    for key in sorted(set(filters) - set(FilterSettings.__dataclass_fields__)):
        errors[f"filters.{key}"] = "unknown filter"
    filters = {k: v for k, v in filters.items() if k in FilterSettings.__dataclass_fields__}
    for key in ("min_event_words", "max_event_words", "min_inference_words", "max_inference_words"):
        if key in filters:
            filters[key] = _int(errors, f"filters.{key}", filters[key], 0, 200)
    if "keep_top" in filters:
        filters["keep_top"] = _float(errors, "filters.keep_top", filters["keep_top"], 0.01, 1)
    if "charset" in filters:
        import re

        try:
            re.compile(filters["charset"])
        except (re.error, TypeError) as exc:
            errors["filters.charset"] = f"not a regular expression: {exc}"
    params.filters = filters

    pool = data.get("pool")
    if pool is not None:
        if not isinstance(pool, dict):
            errors["pool"] = "must be an object with events and inferences"
        elif _check_pool(errors, pool):
            params.pool = {**ExamplePool().as_dict(), **pool}
    example_pool = params.example_pool()
    if kind == "events" and not example_pool.events:
        errors["pool.events"] = "no seed events to draw examples from"
    for relation in params.relations:
        if relation in relations_allowed and not example_pool.inferences.get(relation):
            errors[f"pool.inferences.{relation}"] = (
                f"no few-shot examples for {relation}; load a pool that has some"
            )

    templates = data.get("templates", {}) or {}
    if not isinstance(templates, dict):
        errors["templates"] = "must be an object"
        templates = {}
    for key, given in templates.items():
        if key != EVENTS and key not in relations_allowed:
            errors[f"templates.{key}"] = "not events or a relation"
            continue
        try:
            template = Template(**{**default_template(key).as_dict(), **given})
            check_template(key, template)
        except (TypeError, ValueError) as exc:
            errors[f"templates.{key}"] = str(exc)
            continue
        templates[key] = template.as_dict()
    # The run keeps every template it uses, exactly as run.
    keys = ([EVENTS] if kind == "events" else []) + params.relations
    params.templates = {
        k: templates.get(k) or default_template(k).as_dict()
        for k in keys
        if k == EVENTS or k in relations_allowed
    }

    heads = data.get("heads", {}) or {}
    if kind == "inferences":
        if not isinstance(heads, dict):
            errors["heads"] = "must be an object"
            heads = {}
        h = HeadParams(**{k: v for k, v in heads.items() if k in HeadParams.__dataclass_fields__})
        if h.kind not in HEAD_SOURCES:
            errors["heads.kind"] = f"must be one of {', '.join(HEAD_SOURCES)}, got {h.kind!r}"
        elif h.kind == "file" and not h.heads:
            errors["heads.heads"] = "the file of events is empty"
        elif h.kind in ("run", "campaign"):
            h.value = _int(errors, "heads.value", h.value, 1)
        elif h.kind == "source" and not h.value:
            errors["heads.value"] = "name the source"
        if h.limit is not None:
            h.limit = _int(errors, "heads.limit", h.limit, 1)
        params.heads = h

    if errors:
        raise TeacherParamsError(errors)
    return params
