"""What the JSON API answers when it reads or changes something, as the reference shows it;
the answers that start work (202) are in ``app.web.started``, a job in ``app.web.jobs``.

Each model names the keys the code builds (``corpus_counts``, ``campaign_as_dict``,
``version_as_dict``, ``export_as_dict``, ``run_view``, ``model_as_dict``...), so a script
writer reads what an answer holds in ``/openapi.json`` instead of trying it. FastAPI filters a
route's answer through its response model: every model here keeps the keys it does not name
(``extra="allow"``), so a key added to a dict and not yet here still reaches scripts, and
``tests/test_api_reference.py`` fails until it is named. Nested free-form parts (metrics,
parameters, counts kept as the job wrote them) stay JSON objects, described.

A key the code sends only sometimes (the crowd's ``waiting``, ``full``, ``completion_code``)
has a default here, and its route sets ``response_model_exclude_unset``: the model never adds
a key the code did not send. Routes that answer a ``JSONResponse`` of their own (a 422 beside
the answer) name their model in ``responses=`` and are not filtered at all.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.core.models import (
    CampaignPurpose,
    CampaignState,
    CriticState,
    StudentState,
    TeacherRunState,
)
from app.web.jobs import JobSummary

_WHEN = {"format": "date-time"}


class Answer(BaseModel):
    """Keeps the keys a model does not name (see the module's docstring)."""

    model_config = ConfigDict(extra="allow")


# --- corpus and browse ------------------------------------------------------------------------


class CorpusCountsOut(Answer):
    """The corpus in numbers: what there is to sample a campaign from."""

    triples: int = Field(description="Triples in the corpus.")
    by_relation: dict[str, int] = Field(description="Triples per relation (xWant, xNeed, ...).")
    by_source: dict[str, int] = Field(
        description="Triples per source (an import's name, or teacher-run-ID)."
    )
    imported_labels: int = Field(description="Human labels that came with imported files.")
    ratings: int = Field(description="Ratings made in campaigns here.")


class TripleRowOut(Answer):
    """One triple of the browse page, with its critic score and its ratings."""

    id: int
    head: str
    relation: str
    tail: str
    source: str
    source_file: str | None = Field(description="The imported file it came from.")
    source_line: int | None = Field(description="Its line in that file.")
    split: str | None = Field(description="The split the imported file gave it (train, dev, ...).")
    teacher_run_id: int | None = Field(description="The teacher run that wrote it.")
    created_at: str | None = Field(json_schema_extra=_WHEN)
    score: float | None = Field(description="The critic version's p(acceptable), if scored.")
    accept: int = Field(description="Acceptable votes.")
    reject: int = Field(description="Not-acceptable votes.")
    unfamiliar: int = Field(description="'Too unfamiliar to judge' votes.")
    imported: int = Field(description="How many of its ratings came with an imported file.")
    label: bool | None = Field(description="The majority label; null while undecided.")
    campaigns: list[dict[str, Any]] = Field(
        description="The campaigns it is an item of: id, name, gold, ratings_done, ratings_needed."
    )


class TriplePageOut(Answer):
    """One page of triples; pass ``next_cursor`` back as ``after`` for the next."""

    rows: list[TripleRowOut]
    next_cursor: str | None = Field(description="null on the last page.")
    critic_version_id: int | None = Field(description="The version whose scores are shown.")


class CampaignItemOut(Answer):
    """One item of a campaign, with every rating and the aggregated label."""

    item_id: int
    triple_id: int
    head: str
    relation: str
    tail: str
    is_gold: bool = Field(description="A gold item: its answer is known, it checks raters.")
    gold_answer: int | None
    ratings_done: int
    ratings_needed: int
    ratings: list[dict[str, Any]] = Field(
        description="Each rating: annotator, answer, answer_label, excluded (not counted)."
    )
    accept: int
    reject: int
    unfamiliar: int
    label: bool | None = Field(description="The majority of usable votes; null if undecided.")
    score: float | None = Field(description="The active critic's p(acceptable), if scored.")


class CampaignItemsOut(Answer):
    """One page of a campaign's items; pass ``next_cursor`` back as ``after`` for the next."""

    rows: list[CampaignItemOut]
    next_cursor: str | None = Field(description="null on the last page.")


# --- campaigns --------------------------------------------------------------------------------


class CampaignProgressOut(Answer):
    """How far a campaign has come. Gold items are counted apart: they never finish."""

    items: int = Field(description="Items to rate, gold left out.")
    gold_items: int
    ratings_done: int = Field(description="Ratings in, over the non-gold items.")
    ratings_needed: int = Field(description="Ratings the non-gold items need in all.")
    gold_ratings: int
    ratings_last_hour: int = Field(description="Every rating of the last hour: the pace.")
    annotators: int = Field(description="People who have rated in it.")
    fraction: float = Field(description="ratings_done / ratings_needed, in [0, 1].")


class CampaignOut(Answer):
    """A rating campaign: its settings, the link for the crowd, and its progress."""

    id: int
    name: str
    purpose: CampaignPurpose = Field(
        description="calibration: a uniform sample; training: critic-uncertain first; "
        "evaluation: rating teacher or student outputs."
    )
    state: CampaignState = Field(description="Only an open campaign hands out items.")
    share_url: str = Field(description="The study link to give the crowd platform.")
    page_url: str
    ratings_per_item: int
    lease_seconds: int = Field(description="How long an item is held for one annotator.")
    gold_rate: float = Field(description="The share of served items that are gold.")
    quota_per_annotator: int | None = Field(description="Most items one person rates.")
    min_gold_accuracy: float = Field(description="Below it on gold, a rater is excluded.")
    speeder_seconds: float = Field(description="Answers faster than this count as speeding.")
    completion_code: str | None = Field(description="Shown to annotators who finish.")
    redirect_url: str | None = Field(description="Where annotators who finish are sent.")
    selection: dict[str, Any] = Field(
        description="How its items were drawn: relations, sources, sample size, seed, shares."
    )
    answer_scale: list[dict[str, Any]] = Field(
        description="The answers annotators choose from: value, label, acceptable, key."
    )
    guidelines: str = Field(description="Markdown shown to annotators.")
    created_at: str = Field(json_schema_extra=_WHEN)
    closed_at: str | None = Field(json_schema_extra=_WHEN)
    progress: CampaignProgressOut


class RatingPaceOut(Answer):
    seconds_per_rating: float = Field(description="The median over the newest ratings.")
    ratings: int = Field(description="How many ratings it is the median of.")


class CampaignPlanOut(Answer):
    """What a campaign would ask of people, before it is created: the numbers a crowd
    platform asks for when a study is set up."""

    matched: int = Field(description="Triples the relation and source filters select.")
    items: int = Field(description="Items to rate, gold left out.")
    ratings_per_item: int
    gold_items: int = Field(description="Gold items, at most.")
    gold_rate: float
    quota_per_annotator: int | None
    per_source: dict[str, int] | None = Field(
        description="Items per source when the sample is split over several; else null."
    )
    ratings: int = Field(description="Ratings the items need: items × ratings_per_item.")
    served: int | None = Field(
        description="Answers given in all, gold included; null when every answer is gold."
    )
    annotators: int | None = Field(description="People its quota needs; null without one.")
    pace: RatingPaceOut | None = Field(description="The recent pace here; null before any.")
    minutes_per_annotator: float | None = Field(description="At that pace, for one quota.")
    person_hours: float | None = Field(description="At that pace, for every answer.")


# --- annotate (the crowd's hot path) ----------------------------------------------------------


class ServedItemOut(Answer):
    """An item leased to the annotator: answer it (submit) or hand it back (skip)."""

    item_id: int = Field(description="Send it back with the answer.")
    head: str
    relation: str
    relation_phrase: str = Field(description="The relation in words, as the page shows it.")
    tail: str
    leased_until: str = Field(
        description="The item is this annotator's until then.", json_schema_extra=_WHEN
    )
    position: int = Field(description="This annotator's item number, from 1.")
    total: int | None = Field(description="The annotator's quota, if the campaign sets one.")


class AfterAnswer(Answer):
    """The keys that say why there is no next item: present only then."""

    message: str | None = Field(
        default=None, description="Why no item is served (waiting, full, or refused)."
    )
    waiting: bool = Field(
        default=False,
        description="Present (true) when every item left is being rated by others right now.",
    )
    full: bool = Field(
        default=False,
        description="Present (true) when every item has all the ratings it needs.",
    )
    completion_code: str | None = Field(
        default=None, description="Present when the annotator is done: the code to hand in."
    )
    redirect_url: str | None = Field(
        default=None, description="Present when done: where the platform wants them sent."
    )


class NextItemOut(AfterAnswer):
    """The next item, or why there is none (``done``, ``waiting``, ``full`` or ``message``)."""

    done: bool = Field(description="The annotator has finished; read completion_code.")
    item: ServedItemOut | None = Field(description="null when there is nothing to rate now.")


class SavedRatingOut(Answer):
    rating_id: int
    changed: bool = Field(description="An earlier answer to this item was replaced.")
    repeated: bool = Field(description="The same submission_id again: nothing new stored.")


class SubmittedOut(AfterAnswer):
    """The stored answer and, unless the body said ``next: false``, the next item (the keys
    of ``NextItemOut``) in the same answer."""

    saved: SavedRatingOut
    done: bool | None = Field(default=None, description="As in NextItemOut; absent if no next.")
    item: ServedItemOut | None = Field(
        default=None, description="The next item; absent with next: false."
    )


# --- critic -----------------------------------------------------------------------------------


class CriticVersionOut(Answer):
    """A trained critic: its state, its threshold and its held-out quality."""

    id: int
    state: CriticState = Field(description="Only the active version filters exports.")
    base_model: str
    path: str | None = Field(description="Its model files on the server.")
    threshold: float | None = Field(description="p(acceptable) at or above it is kept.")
    error: str | None = Field(description="Why its training failed.")
    job_id: int | None = Field(description="The training job.")
    created_at: str = Field(json_schema_extra=_WHEN)
    activated_at: str | None = Field(json_schema_extra=_WHEN)
    hyperparameters: dict[str, Any] = Field(description="What it was trained with.")
    label_snapshot: dict[str, Any] = Field(
        description="The labels it learned from: counts, train / held-out split."
    )
    metrics: dict[str, Any] = Field(
        description="Held-out quality: ROC-AUC, average precision, precision at recall "
        "levels, calibration estimates; the PR curve only in the single version."
    )
    page_url: str


class ScoreHistogramOut(Answer):
    bins: int = Field(description="Equal bins over [0, 1].")
    counts: list[int] = Field(description="Scored triples in each bin.")


class CriticVersionDetailOut(CriticVersionOut):
    """One version, with its PR curve in ``metrics`` and its corpus scores."""

    histogram: ScoreHistogramOut
    scored: int = Field(description="Triples it has scored.")
    unscored: int | None = Field(description="Triples it has not scored; null without files.")


class CriticVersionActivated(CriticVersionOut):
    """The version, now active."""

    score_job_id: int | None = Field(
        description="The re-score with it; null when one was already queued."
    )


class FilterPreviewOut(Answer):
    """What a threshold keeps, and how precise the calibration labels say it is."""

    version_id: int
    rule: Literal["recall", "precision", "kept"]
    value: float = Field(description="The target asked for.")
    threshold: float | None = Field(description="The p(acceptable) threshold the rule picks.")
    scored: int = Field(description="Triples the version has scored.")
    kept: int = Field(description="Scored triples at or above the threshold.")
    kept_by_relation: dict[str, int]
    sample_kept: int = Field(description="Calibration-labelled triples it keeps.")
    sample_kept_acceptable: int = Field(description="...of which labelled acceptable.")
    estimated_precision: float | None = Field(description="Their share; null with none.")
    interval: list[float] | None = Field(description="Its 95% Wilson interval [low, high].")


class ScoreAlreadyQueued(Answer):
    """No new job: a score job for this version is already queued or running."""

    job_id: None = Field(description="Always null here.")
    detail: str


# --- exports ----------------------------------------------------------------------------------


class ExportOut(Answer):
    """An export of the filtered graph: its parameters, what it kept, its files."""

    id: int
    state: str = Field(
        description="queued, running, succeeded, failed, cancelled, or missing (the files "
        "were deleted on the server)."
    )
    created_at: str = Field(json_schema_extra=_WHEN)
    created_by: str | None = Field(description="The user who asked for it.")
    critic_version_id: int | None = Field(description="The critic that filtered it.")
    no_critic: bool = Field(description="Asked without a critic (critic: none).")
    threshold: float | None
    threshold_reason: str | None = Field(description="Why this threshold, in words.")
    params: dict[str, Any] | None = Field(description="The parameters, as checked.")
    command: str | None = Field(description="The `skd export` command that makes it again.")
    counts: dict[str, Any] | None = Field(
        description="What the files hold: total, by_split, by_relation, by_source, heads."
    )
    estimate: dict[str, Any] | None = Field(description="Its precision, estimated.")
    warnings: list[str]
    path: str | None = Field(description="Its folder on the server.")
    archive_sha256: str | None
    archive_bytes: int | None
    files: list[Any] = Field(description="The files it wrote, as paths in the folder.")
    job: JobSummary | None
    page_url: str
    download_url: str | None = Field(description="Its .tar.gz, once written.")
    api_url: str


class ExportDeleted(Answer):
    deleted: int = Field(description="The export's id.")
    removed: list[str] = Field(description="The paths that were on disk and are now gone.")
    freed_bytes: int


class ExportPlanOut(Answer):
    """What an export with these parameters would keep; nothing is written."""

    params: dict[str, Any] = Field(description="The parameters, the critic version resolved.")
    version: dict[str, Any] | None = Field(description="The critic; null without one.")
    threshold: float | None
    threshold_rule: str = Field(description="score, precision, recall, kept, version or none.")
    threshold_value: float | None
    threshold_reason: str
    rec_thresholds: dict[str, Any] = Field(
        description="The threshold at each held-out recall level (rec_0.8, ...)."
    )
    heldout_at_threshold: dict[str, Any] | None = Field(
        description="Held-out precision and recall at the threshold."
    )
    counts: dict[str, Any] = Field(description="Triples selected, scored, kept.")
    kept_by_relation: dict[str, int]
    labels: dict[str, Any] = Field(description="The human labels the rules used.")
    estimate: dict[str, Any] = Field(description="Precision of what is kept, estimated.")
    data_as_of: str = Field(json_schema_extra=_WHEN)
    warnings: list[str]


# --- teacher ----------------------------------------------------------------------------------


class TeacherRunOut(Answer):
    """A teacher run: what it was asked, how far it is, what it wrote."""

    id: int
    name: str | None
    kind: str = Field(description="events or inferences.")
    state: TeacherRunState
    backend: str = Field(description="local or openai.")
    model: str
    source: str = Field(description="The corpus source its triples land under.")
    params: dict[str, Any] | None = Field(description="The run's parameters (no API key).")
    templates: dict[str, Any] | None = Field(description="The prompt templates it used.")
    counts: dict[str, Any] = Field(description="Its counts per phase (events, inferences).")
    http: Any = Field(description="HTTP requests and retries it made (OpenAI-compatible backend).")
    phase: str | None = Field(description="The phase it is in.")
    triples: int = Field(description="Triples it has added to the corpus.")
    error: str | None
    created_at: str = Field(json_schema_extra=_WHEN)
    finished_at: str | None = Field(json_schema_extra=_WHEN)
    job: JobSummary | None
    timing: dict[str, float | None] | None = Field(
        description="Its job's duration_s, rate_per_s, left_s, waiting_s."
    )


class TeacherRunDetailOut(TeacherRunOut):
    """One run, with how people rated it and a sample of what it wrote."""

    ratings: list[dict[str, Any]] = Field(
        description="Its row of each evaluation campaign that rated it: acceptability, "
        "interval, per relation."
    )
    sample: dict[str, list[dict[str, Any]]] = Field(
        description="events: [{text, logprob}], triples: [{id, head, relation, tail, logprob}]."
    )


class TeacherCampaignOpened(Answer):
    campaign_id: int
    campaign_url: str = Field(description="The campaign's JSON (CampaignOut).")


class TeacherRunPlanOut(Answer):
    """What a run would ask of the model, and how long it should take; nothing starts."""

    backend: str
    model: str
    heads: int | None = Field(description="The events an inferences run asks about.")
    phases: list[dict[str, Any]] = Field(
        description="Per phase: prompts, n, max_tokens, generations, max_new_tokens."
    )
    generations: int
    max_new_tokens: int = Field(description="The most new tokens it may ask for.")
    pace: dict[str, Any] | None = Field(
        description="The newest finished run of the same model: run_id, generations, "
        "seconds, per_second; null when there is none."
    )
    estimated_seconds: float | None


# --- student ----------------------------------------------------------------------------------


class StudentModelOut(Answer):
    """A student trained on an export."""

    id: int
    export_id: int | None
    base_model: str
    state: StudentState
    path: str | None = Field(description="Its model folder on the server, once trained.")
    args: dict[str, Any] | None = Field(description="Its training arguments.")
    dev_loss: list[Any] = Field(description="The dev loss after each evaluation.")
    best_dev_loss: float | None
    wall_seconds: float | None = Field(description="How long training took.")
    error: str | None
    job_id: int | None
    job_state: str | None = Field(description="Its training job's state.")
    created_at: str = Field(json_schema_extra=_WHEN)
    finished_at: str | None = Field(json_schema_extra=_WHEN)


class EvaluationTableOut(Answer):
    """The teacher-vs-student table of an evaluation campaign."""

    campaign_id: int
    name: str
    systems: list[str] = Field(description="The systems (or corpus sources) compared.")
    compared: Literal["systems", "sources"]
    rated_items: int
    item_count: int
    shared_triples: int = Field(description="Triples more than one system wrote.")
    per_system: list[dict[str, Any]] = Field(
        description="Per system: inferences, decided, accepted, acceptability with its "
        "interval (ci_low, ci_high), mean_words, distinct_1, distinct_2."
    )
    per_relation: list[dict[str, Any]]
    differences: list[dict[str, Any]] = Field(
        description="Each pair: difference, its interval, z, p_value, significant."
    )
    method: dict[str, str] = Field(description="How each figure is computed, in words.")


# --- jobs -------------------------------------------------------------------------------------


class SweepOut(Answer):
    stale: int = Field(description="Running jobs failed: their worker stopped reporting.")
    unstarted: int = Field(description="Queued jobs failed: no worker took them in time.")
