"""Evaluating a trained version: held-out metrics, and the precision estimate from calibration
campaigns (an unbiased sample), for the chain's second link."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.annotation.quality import item_labels
from app.core.config import Settings, get_settings
from app.core.db import session_scope
from app.core.jobs import Progress
from app.core.models import (
    Campaign,
    CampaignPurpose,
    CriticState,
    CriticVersion,
    Score,
)
from app.critic.metrics import wilson_interval
from app.critic.registry import (
    activate,
    active_version,
    should_auto_activate,
)
from app.critic.score import score_triples


def calibration_labels(session: Session) -> dict[int, bool]:
    """Decisive labels of the items of ``calibration`` campaigns (uniform random samples)."""
    labels: dict[int, bool] = {}
    campaigns = session.scalars(
        select(Campaign.id).where(Campaign.purpose == CampaignPurpose.calibration)
    ).all()
    for campaign_id in campaigns:
        for row in item_labels(session, campaign_id):
            if row.label is not None:
                labels[row.triple_id] = row.label
    return labels


def calibration_estimate(
    labels: dict[int, bool], scores: dict[int, float], threshold: float
) -> dict[str, Any]:
    """Precision of what ``threshold`` keeps, estimated on the calibration sample."""
    kept = [labels[t] for t, p in scores.items() if t in labels and p >= threshold]
    good = sum(kept)
    low, high = wilson_interval(good, len(kept)) if kept else (None, None)
    return {
        "threshold": threshold,
        "sample_kept": len(kept),
        "sample_acceptable": good,
        "precision": good / len(kept) if kept else None,
        "low": low,
        "high": high,
    }


def evaluate_version(session: Session, version_id: int, settings: Settings) -> dict[str, Any]:
    """Score the calibration sample with this version and estimate, for each rec_X threshold,
    the precision of what it keeps (with a 95% interval). Stored in ``metrics["calibration"]``."""
    version = session.get(CriticVersion, version_id)
    if version is None or not version.path:
        raise LookupError(f"critic version {version_id} has no trained model")
    labels = calibration_labels(session)
    if labels:
        score_triples(
            session,
            version_id,
            sorted(labels),
            batch_size=settings.critic_score_batch_size,
            quantize=settings.critic_quantize,
        )
    scores = dict(
        session.execute(
            select(Score.triple_id, Score.p_accept).where(
                Score.critic_version_id == version_id, Score.triple_id.in_(list(labels))
            )
        ).all()
    )
    points = []
    for point in version.metrics.get("precision_at_recall", []):
        estimate = calibration_estimate(labels, scores, point["threshold"])
        points.append({"target_recall": point["target_recall"], **estimate})
    calibration: dict[str, Any] = {
        "labels": len(labels),
        "acceptable": sum(labels.values()),
        "at_recall": points,
    }
    if version.threshold is not None:
        calibration["at_threshold"] = calibration_estimate(labels, scores, version.threshold)
    version.metrics = {**version.metrics, "calibration": calibration}
    return calibration


def run_evaluation(params: dict[str, Any], progress: Progress) -> dict[str, Any]:
    """Link 2: the calibration estimate, then the auto-activation policy."""
    settings = get_settings()
    version_id = int(params["version_id"])
    progress.update(0, 2, "estimating precision on the calibration sample", force=True)
    with session_scope() as session:
        evaluate_version(session, version_id, settings)
        session.commit()
    progress.update(1, 2, "applying the activation policy", force=True)
    with session_scope(write=True) as session:
        candidate = session.get(CriticVersion, version_id)
        assert candidate is not None
        current = active_version(session)
        auc = candidate.metrics.get("roc_auc")
        if not settings.critic_auto_activate:
            decision = "kept ready: automatic activation is off"
        elif should_auto_activate(candidate, current, tolerance=settings.critic_auc_tolerance):
            activate(session, version_id)
            decision = f"activated (held-out ROC-AUC {auc:.3f})"
        elif auc is None or auc != auc or auc <= 0.5:
            decision = (
                "kept ready for review: its held-out ROC-AUC is no better than chance "
                f"({'unknown' if auc is None else f'{auc:.3f}'}); more labels may help"
            )
        else:
            assert current is not None
            decision = (
                f"kept ready for review: held-out ROC-AUC {auc:.3f} is more than "
                f"{settings.critic_auc_tolerance} below the active version {current.id}'s "
                f"{current.metrics.get('roc_auc', float('nan')):.3f}"
            )
        activated = candidate.state == CriticState.active
    return {"version_id": version_id, "activated": activated, "message": decision}
