"""The JSON body of ``POST /api/teacher/runs`` and ``/api/teacher/plan``, as the reference shows it.

``app.teacher.params.check_params`` stays the one judge of a run's parameters: every door (the
form, ``--params FILE``, the API) builds the same dict, and its 422 names each bad field by its
dotted path (``events.n``, ``pool.inferences.xWant.3``). These models give that dict a shape in
``/openapi.json`` (each field with its meaning and its default) so that a script writer, or a
client generated from the schema, sees what a run accepts. Pydantic checks the types; what it
lets through (unknown keys included: ``extra="allow"``) reaches ``check_params`` exactly as it
was sent (``model_dump(exclude_unset=True)``), which names what is wrong with it. Ranges live in
``check_params`` only, so there is one rule per field.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Closed in the reference (check_params refuses unknown keys, naming them), open to pydantic so
# that check_params gets to name them.
_PASS_ON = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": False})


class SamplingIn(BaseModel):
    """How one phase samples; unset fields keep the phase's default (the paper's settings)."""

    model_config = _PASS_ON

    n: int | None = Field(None, description="Generations per prompt (events 5, inferences 10).")
    temperature: float | None = Field(None, description="Sampling temperature (1.0).")
    top_p: float | None = Field(None, description="Nucleus sampling (events 0.9, inferences 0.5).")
    max_tokens: int | None = Field(None, description="New tokens per generation (16).")
    presence_penalty: float | None = Field(None, description="Events 0.5, inferences 0.")
    frequency_penalty: float | None = Field(None, description="Events 0.5, inferences 0.")
    stop: list[str] | str | None = Field(None, description="Where a generation ends (a newline).")
    seed: int | None = Field(None, description="The server's sampling seed, where it has one.")


class BackendIn(BaseModel):
    """Which model writes: the local one, or an OpenAI-compatible server (vLLM, TGI, a host)."""

    model_config = _PASS_ON

    type: Literal["local", "openai"] = "local"
    model: str | None = Field(
        None,
        description="local: a hub name, a folder or a .gguf file (default SKD_TEACHER_MODEL, "
        "the packaged SmolLM2); openai: the server's model name (required).",
    )
    base_url: str | None = Field(
        None, description="openai: the server, e.g. http://gpu-box:8000/v1 (SKD_TEACHER_BASE_URL)."
    )
    mode: Literal["completions", "chat"] = Field(
        "completions", description="openai: the completions or the chat endpoint."
    )
    api_key_env: str | None = Field(
        None, description="openai: the environment variable that holds the key on the workers."
    )
    concurrency: int = Field(8, description="openai: requests in flight.")
    timeout: float = Field(60.0, description="openai: seconds per request.")
    max_retries: int = Field(5, description="openai: retries of a failed request.")
    batch_size: int | None = Field(None, description="local: prompts per forward pass.")
    logprobs: bool = Field(True, description="Ask for log-probabilities (keep_top uses them).")


class HeadsIn(BaseModel):
    """Where an inferences run takes its events from."""

    model_config = _PASS_ON

    kind: Literal["run", "file", "source", "campaign"] = "run"
    value: int | str | None = Field(
        None, description="The run id, the source name or the campaign id."
    )
    heads: list[str] = Field(default_factory=list, description="kind file: the events themselves.")
    limit: int | None = Field(None, description="At most this many events.")


class FiltersIn(BaseModel):
    """What the post-processing keeps; unset fields keep their defaults."""

    model_config = _PASS_ON

    min_event_words: int | None = Field(None, description="Default 2.")
    max_event_words: int | None = Field(None, description="Default 12.")
    min_inference_words: int | None = Field(None, description="Default 1.")
    max_inference_words: int | None = Field(None, description="Default 15.")
    charset: str | None = Field(None, description="A regular expression every kept text matches.")
    keep_top: float | None = Field(
        None, description="Share kept by mean log-probability within each chunk (default 1.0)."
    )


class TemplateIn(BaseModel):
    """How one prompt reads (unset parts keep the default template's)."""

    model_config = _PASS_ON

    instruction: str | None = None
    example: str | None = Field(None, description="How each numbered example reads.")
    query: str | None = Field(None, description="The open line the model completes.")
    separator: str | None = None


class PoolIn(BaseModel):
    """The few-shot examples a run draws from (default: the packaged pool)."""

    model_config = _PASS_ON

    events: list[str] | None = Field(None, description="Seed events for event prompts.")
    inferences: dict[str, list[list[str]]] | None = Field(
        None, description="Per relation, [head, tail] pairs for inference prompts."
    )


class TeacherRunIn(BaseModel):
    """A teacher run: the JSON a run's ``params`` holds (``GET /api/teacher/runs/{id}``), so a
    finished run's parameters, sent back, run it again."""

    model_config = _PASS_ON

    kind: Literal["events", "inferences"] = Field(
        "events",
        description="events: new events (and, with relations, their inferences); "
        "inferences: inferences for events chosen in heads.",
    )
    name: str | None = Field(None, description="Shown on the teacher page.")
    backend: BackendIn | None = None
    prompts: int | None = Field(
        None, description="events: how many event prompts (each samples events.n events; 4)."
    )
    examples: int | None = Field(None, description="events: seed events per prompt (10).")
    inference_examples: int | None = Field(
        None, description="[head, tail] examples per inference prompt (5)."
    )
    relations: list[str] | str | None = Field(
        None, description="ATOMIC-10X relations to write inferences for (xWant, xNeed, ...)."
    )
    heads: HeadsIn | None = Field(None, description="inferences: where the events come from.")
    events: SamplingIn | None = None
    inferences: SamplingIn | None = None
    filters: FiltersIn | None = None
    pool: PoolIn | None = None
    templates: dict[str, TemplateIn] | None = Field(
        None, description="Per 'events' or relation name: how its prompt reads."
    )
    seed: int | None = Field(None, description="Which examples each prompt draws (0).")
    chunk_size: int | None = Field(
        None, description="Prompts per chunk task (SKD_TEACHER_CHUNK_SIZE)."
    )
    api_key: str | None = Field(
        None,
        description="openai: a key for this run only; it travels with the task and is never "
        "stored (api_key_env names one the workers hold instead).",
        json_schema_extra={"writeOnly": True},
    )

    def as_params(self) -> dict[str, Any]:
        """The dict ``check_params`` judges: what was sent, as sent."""
        return self.model_dump(exclude_unset=True)
