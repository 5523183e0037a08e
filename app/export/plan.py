"""Checking an export against the database and working out what it will be, before any file.

``plan_export`` answers, for a set of parameters: which critic version, which threshold and
why, how many triples are kept and why, the held-out metrics, and the estimated precision of
what is kept, with its interval. It refuses, with a message naming the parameter, an unknown
or unusable version, a target no threshold reaches, and an export that would keep nothing.
The page's preview, the API's 422s and the job itself all go through it, so what a researcher
previews is what the job writes.

The precision estimate. Kept triples with a human label are counted as they were judged; for
the rest, the precision is estimated from the labels of *calibration* campaigns (uniform
random samples, so the estimate is unbiased): of the calibration triples in the filters whose
score reaches the threshold, the share judged acceptable, with a Wilson 95% interval. The
export's precision is then (acceptable labelled + unlabelled x p) / kept, and its interval the
same expression at the ends of p's interval. With no calibration labels there is no estimate,
and the card says so (the held-out precision at the threshold is shown in any case).

Without a critic (``critic="none"``) there is no version, no threshold, no held-out metric and
no rec_X threshold; the candidates are every triple in the filters and the human-label rule
alone drops any. The calibration estimate then measures the kept triples as they are (a
uniform sample needs no score to be unbiased).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.annotation.quality import iter_item_labels
from app.core import triple_counts
from app.core.config import get_settings
from app.core.models import (
    Campaign,
    CampaignPurpose,
    CriticState,
    CriticVersion,
    Rating,
    Score,
    Triple,
)
from app.corpus.relations import allowed_relations
from app.critic.filtering import choose_threshold
from app.critic.metrics import wilson_interval
from app.critic.registry import active_version
from app.export.params import REC_LEVELS, ExportParamError, ExportParams, is_split_name
from app.export.select import (
    LabelTotals,
    Selection,
    SelectionCounts,
    corpus_splits,
    count_selection,
    first_without_split,
    heads_in_several_splits,
    keeps_anything,
    labels_table,
    threshold_for_kept_fraction,
)

USABLE_STATES = (CriticState.active, CriticState.ready, CriticState.retired)
_ID_CHUNK = 500


@dataclass
class PrecisionEstimate:
    """Estimated precision of the kept triples (see the module docstring)."""

    sample: int  # calibration triples in the filters whose score reaches the threshold
    sample_acceptable: int
    sample_precision: float | None  # the score rule's precision, from that sample
    sample_interval: tuple[float, float] | None
    precision: float | None  # of the whole export (labelled triples counted as judged)
    interval: tuple[float, float] | None
    calibration_labels: int  # decided calibration labels in the whole corpus

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def threshold_reason(rule: str, value: float | None) -> str:
    """How the threshold was chosen, in words.

    Only the chosen rule's sentence is formatted: the version's own threshold has no value,
    and formatting every rule's sentence with it raised a TypeError on every default export.
    """
    if rule == "none":
        return "no critic: no score and no threshold; only the human-label rule drops triples"
    if rule == "version" or value is None:
        return "the threshold chosen for this critic version"
    if rule == "score":
        return f"given as a score ({value:g})"
    if rule == "precision":
        return f"the lowest threshold whose held-out precision reaches {value:g}"
    if rule == "recall":
        return f"the highest threshold whose held-out recall reaches {value:g}"
    if rule == "kept":
        return f"keeps {value:.1%} of the scored triples in the filters"
    raise ValueError(f"unknown threshold rule {rule!r}")


@dataclass
class ExportPlan:
    params: ExportParams  # the version resolved
    version: dict[str, Any] | None  # id, state, base model, created_at, metrics, label snapshot
    threshold: float | None  # None (and version None): no critic filters the export
    threshold_rule: str  # score | precision | recall | kept | version | none
    threshold_value: float | None
    rec_thresholds: dict[str, float | None]  # "rec_0.8" -> threshold (None: not reached)
    heldout_at_threshold: dict[str, float] | None  # precision and recall on the held-out set
    counts: SelectionCounts
    kept_by_relation: dict[str, int]
    labels: LabelTotals
    estimate: PrecisionEstimate
    data_as_of: datetime
    warnings: list[str] = field(default_factory=list)

    @property
    def no_critic(self) -> bool:
        return self.version is None

    @property
    def selection(self) -> Selection:
        return Selection(
            version_id=None if self.version is None else self.version["id"],
            threshold=self.threshold,
            relations=self.params.relations,
            sources=self.params.sources,
            human_labels=self.params.human_labels,
        )

    def threshold_reason(self) -> str:
        return threshold_reason(self.threshold_rule, self.threshold_value)

    def as_dict(self) -> dict[str, Any]:
        return {
            "params": self.params.as_dict(),
            "version": self.version,
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule,
            "threshold_value": self.threshold_value,
            "threshold_reason": self.threshold_reason(),
            "rec_thresholds": self.rec_thresholds,
            "heldout_at_threshold": self.heldout_at_threshold,
            "counts": self.counts.as_dict(),
            "kept_by_relation": self.kept_by_relation,
            "labels": dict(self.labels.__dict__),
            "estimate": self.estimate.as_dict(),
            "data_as_of": self.data_as_of.isoformat(),
            "warnings": list(self.warnings),
        }


@dataclass
class CheckedExport:
    """Parameters that passed every check: the version resolved, the threshold chosen."""

    params: ExportParams
    version: CriticVersion | None  # None: no critic
    threshold: float | None
    threshold_rule: str
    threshold_value: float | None

    @property
    def selection(self) -> Selection:
        return Selection(
            version_id=None if self.version is None else self.version.id,
            threshold=self.threshold,
            relations=self.params.relations,
            sources=self.params.sources,
            human_labels=self.params.human_labels,
        )


def check_export(session: Session, params: ExportParams) -> CheckedExport:
    """Every refusal of ``plan_export``, at the cost of a few indexed lookups: what starting an
    export needs (the job then makes the full plan in its own snapshot)."""
    with labels_table(session):
        return _checked(session, params)


def _checked(session: Session, params: ExportParams) -> CheckedExport:
    """The checks; the label table must be live (the human-label rule decides what is kept)."""
    params = params.checked()
    if params.no_critic:
        _check_filters(session, params)
        checked = CheckedExport(params, None, None, "none", None)
    else:
        version = _version(session, params)
        params = params.with_version(version.id)
        _check_filters(session, params)
        threshold, rule, value = _threshold(session, params, version)
        checked = CheckedExport(params, version, threshold, rule, value)
    if not keeps_anything(session, checked.selection):
        counts = count_selection(session, checked.selection)  # only to say why
        raise ExportParamError({"result": _nothing_kept(counts, checked.selection)})
    if params.split_by == "corpus":
        _check_corpus_splits(session, checked.selection)
    return checked


def _check_corpus_splits(session: Session, selection: Selection) -> None:
    """Keeping the corpus's splits needs every kept triple to have one, with a usable name."""
    splits = corpus_splits(session, selection)
    missing = sum(split.triples for split in splits if split.name is None)
    if missing:
        head, relation, tail = first_without_split(session, selection)
        raise ExportParamError(
            {
                "split_by": f"{missing:,} of the kept triples have no split of their own "
                f"(the first: {head!r} {relation} {tail!r}); import them with a split "
                "field, narrow the filters, or split by head"
            }
        )
    bad = sorted(split.name for split in splits if split.name and not is_split_name(split.name))
    if bad:
        raise ExportParamError(
            {
                "split_by": f"the corpus's split names {', '.join(map(repr, bad))} cannot name "
                "files; use letters, digits and _ only"
            }
        )


def plan_export(session: Session, params: ExportParams) -> ExportPlan:
    """Check ``params`` against the database and work out the export (nothing is written)."""
    with planned(session, params) as plan:
        return plan


@contextmanager
def planned(session: Session, params: ExportParams) -> Iterator[ExportPlan]:
    """``plan_export`` that keeps the label table for the block, to write the files from."""
    with labels_table(session) as label_totals:
        checked = _checked(session, params)
        params, version, threshold = checked.params, checked.version, checked.threshold
        selection = checked.selection
        counts = count_selection(session, selection)
        if counts.kept == 0:  # (the data changed since the check)
            raise ExportParamError({"result": _nothing_kept(counts, selection)})
        estimate = _estimate(session, selection, counts)
        newest_rating = session.scalar(select(func.max(Rating.created_at)))
        created = None if version is None else version.created_at
        moments = [created, newest_rating, counts.newest_triple]
        plan = ExportPlan(
            params=params,
            version=None if version is None else _version_facts(version),
            threshold=threshold,
            threshold_rule=checked.threshold_rule,
            threshold_value=checked.threshold_value,
            rec_thresholds=(
                {f"rec_{level:g}": None for level in REC_LEVELS}  # columns kept, all null
                if version is None
                else _rec_thresholds(session, version.id)
            ),
            heldout_at_threshold=(
                None
                if version is None or threshold is None
                else _heldout_at(version.metrics, threshold)
            ),
            counts=counts,
            kept_by_relation=counts.kept_by_relation,
            labels=label_totals,
            estimate=estimate,
            data_as_of=max(moment for moment in moments if moment is not None),
        )
        if version is not None and counts.scored < counts.candidates:
            plan.warnings.append(
                f"critic version {version.id} scored {counts.scored:,} of the "
                f"{counts.candidates:,} triples in the filters; unscored triples are left out"
                + (" unless humans accepted them" if params.human_labels == "override" else "")
            )
        if estimate.precision is None:
            plan.warnings.append(
                "no calibration labels for the kept triples: the precision is not estimated "
                "(open a calibration campaign to measure it)"
            )
        if params.split_by == "corpus":
            shared = heads_in_several_splits(session, selection)
            if shared:
                plan.warnings.append(
                    f"{shared:,} heads have triples in more than one of the corpus's own "
                    "splits, so they are in several splits here too (split by head to avoid it)"
                )
        yield plan


def _version(session: Session, params: ExportParams) -> CriticVersion:
    if params.version is None:
        version = active_version(session)
        if version is None:
            raise ExportParamError(
                {
                    "version": "no critic version is active; give a version id"
                    + _known(session)
                    + ', or choose no critic (--no-critic; "critic": "none")'
                }
            )
    else:
        version = session.get(CriticVersion, params.version)
        if version is None:
            raise ExportParamError(
                {"version": f"no critic version {params.version}" + _known(session)}
            )
    if version.state not in USABLE_STATES:
        raise ExportParamError(
            {
                "version": f"critic version {version.id} is {version.state.value}; "
                "use an active, ready or retired version"
            }
        )
    any_score = session.scalar(
        select(Score.triple_id).where(Score.critic_version_id == version.id).limit(1)
    )
    if any_score is None:
        raise ExportParamError(
            {"version": f"critic version {version.id} has not scored the corpus yet"}
        )
    return version


def _known(session: Session) -> str:
    """ " (usable versions: 4 (active), 3 (retired))", so the message says what to type."""
    rows = session.execute(
        select(CriticVersion.id, CriticVersion.state)
        .where(CriticVersion.state.in_(USABLE_STATES))
        .order_by(CriticVersion.id.desc())
        .limit(10)
    ).all()
    if not rows:
        return " (there is no trained critic version yet)"
    listed = ", ".join(f"{version_id} ({state.value})" for version_id, state in rows)
    return f" (usable versions: {listed})"


def _check_filters(session: Session, params: ExportParams) -> None:
    """Unknown relations and sources are typos, not empty filters: say so."""
    errors: dict[str, str] = {}
    allowed = allowed_relations(get_settings())
    unknown = [relation for relation in params.relations if relation not in allowed]
    if unknown:
        errors["relations"] = (
            f"unknown relation(s) {', '.join(unknown)}; expected names such as "
            f"{', '.join(sorted(allowed)[:8])}, …"
        )
    if params.sources:
        present = triple_counts.known_sources(session, params.sources)
        missing = [source for source in params.sources if source not in present]
        if missing:
            errors["sources"] = f"no triples from source(s) {', '.join(missing)}"
    if errors:
        raise ExportParamError(errors)


def _threshold(
    session: Session, params: ExportParams, version: CriticVersion
) -> tuple[float, str, float | None]:
    """(threshold, rule, value); the default is the version's own threshold, else the
    configured target recall (the paper's rec_0.8)."""
    asked = params.threshold_rule
    if asked is None:
        if version.threshold is not None:
            return float(version.threshold), "version", None
        asked = ("recall", get_settings().critic_target_recall)
        field_name = "threshold"
    else:
        field_name = {
            "score": "threshold",
            "precision": "target_precision",
            "recall": "target_recall",
            "kept": "kept_fraction",
        }[asked[0]]
    rule, value = asked
    if rule == "score":
        return value, rule, value
    if value <= 0:
        raise ExportParamError({field_name: "must be above 0"})
    try:
        if rule == "kept":
            selection = Selection(version.id, 0.0, params.relations, params.sources)
            return threshold_for_kept_fraction(session, selection, value), rule, value
        return choose_threshold(session, version.id, rule, value), rule, value  # type: ignore[arg-type]
    except ValueError as exc:
        message = str(exc)
        if "not reached" in message:
            best = _best_on_curve(version.metrics, rule)
            message = (
                f"no threshold of critic version {version.id} reaches a held-out {rule} of "
                f"{value:g}" + (f" (the best is {best:.3f})" if best is not None else "")
            )
        if field_name == "threshold":
            message += "; give a threshold explicitly"
        raise ExportParamError({field_name: message}) from None


def _best_on_curve(metrics: dict[str, Any], rule: str) -> float | None:
    values = (metrics.get("pr_curve") or {}).get(rule) or []
    return max(values) if values else None


def _rec_thresholds(session: Session, version_id: int) -> dict[str, float | None]:
    """The thresholds of the rec_X flags (None where the held-out curve never reaches X)."""
    result: dict[str, float | None] = {}
    for level in REC_LEVELS:
        try:
            result[f"rec_{level:g}"] = choose_threshold(session, version_id, "recall", level)
        except ValueError:
            result[f"rec_{level:g}"] = None
    return result


def _heldout_at(metrics: dict[str, Any], threshold: float) -> dict[str, float] | None:
    """Held-out precision and recall when keeping scores >= threshold, from the stored curve
    (thinned for plotting, so the nearest point at or above the threshold)."""
    curve = metrics.get("pr_curve") or {}
    points = list(
        zip(
            curve.get("threshold", []),
            curve.get("precision", []),
            curve.get("recall", []),
            strict=False,
        )
    )
    at_or_above = [point for point in points if point[0] >= threshold]
    if not at_or_above:
        return None
    point = min(at_or_above, key=lambda p: p[0])
    return {"curve_threshold": point[0], "precision": point[1], "recall": point[2]}


def _version_facts(version: CriticVersion) -> dict[str, Any]:
    metrics = version.metrics or {}
    return {
        "id": version.id,
        "state": version.state.value,
        "base_model": version.base_model,
        "created_at": version.created_at.isoformat(),
        "threshold": version.threshold,
        "label_snapshot": version.label_snapshot or {},
        "metrics": {
            key: metrics[key]
            for key in (
                "n",
                "acceptable",
                "roc_auc",
                "average_precision",
                "precision_at_recall",
                "intervals",
            )
            if key in metrics
        },
    }


def _estimate(session: Session, selection: Selection, counts: SelectionCounts) -> PrecisionEstimate:
    labels: dict[int, bool] = {}
    calibration = session.scalars(
        select(Campaign.id)
        .where(Campaign.purpose == CampaignPurpose.calibration)
        .order_by(Campaign.id)
    ).all()
    for campaign_id in calibration:
        for item in iter_item_labels(session, campaign_id):
            if item.label is not None:
                labels[item.triple_id] = item.label
    sample = acceptable = 0
    ids = sorted(labels)
    for start in range(0, len(ids), _ID_CHUNK):
        chunk = ids[start : start + _ID_CHUNK]
        query = selection.candidates(Triple.id).where(Triple.id.in_(chunk), selection.above())
        for (triple_id,) in session.execute(query):
            sample += 1
            acceptable += labels[triple_id]
    if not sample:
        return PrecisionEstimate(sample, acceptable, None, None, None, None, len(labels))
    share = acceptable / sample
    low, high = wilson_interval(acceptable, sample)
    known = counts.kept_accepted  # labelled kept triples judged acceptable

    def overall(p: float) -> float:
        return (known + counts.kept_unlabelled * p) / counts.kept

    return PrecisionEstimate(
        sample=sample,
        sample_acceptable=acceptable,
        sample_precision=share,
        sample_interval=(low, high),
        precision=overall(share),
        interval=(overall(low), overall(high)),
        calibration_labels=len(labels),
    )


def _nothing_kept(counts: SelectionCounts, selection: Selection) -> str:
    threshold = selection.threshold
    if counts.candidates == 0:
        return "no triple is in the chosen relations and sources"
    if selection.no_critic or threshold is None:
        if selection.human_labels == "accepted-only":
            return (
                f"none of the {counts.candidates:,} triples in the filters has a "
                "majority-accepted human label"
            )
        return (
            f"human labels rejected all {counts.candidates:,} triples in the filters "
            "(no critic was chosen)"
        )
    if selection.human_labels == "accepted-only":
        return (
            f"none of the {counts.candidates:,} triples in the filters has a "
            "majority-accepted human label"
        )
    if counts.scored == 0:
        return (
            f"the critic version scored none of the {counts.candidates:,} triples in the "
            "filters, and no human accepted any of them"
        )
    return (
        f"nothing is kept: none of the {counts.scored:,} scored triples in the filters reaches "
        f"the threshold {threshold:.4g}"
        + (" (human labels dropped the rest)" if counts.dropped_by_label else "")
    )
