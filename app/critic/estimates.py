"""Honest numbers: when an estimate is too thin to be a headline, and when a critic is no
better than chance.

- **Too few labels.** A precision estimated from a handful of calibration labels ("100.0%" from
  one label) is not a finding. Below ``SKD_CALIBRATION_MIN_LABELS`` labels, every place that
  shows the estimate (critic page, export preview, CLI, dataset card) says
  "too few calibration labels (n = 1)" and shows the 95% interval instead of the point.
- **Weak critic.** A version whose held-out ROC-AUC is at most ``SKD_CRITIC_WEAK_AUC`` (or
  unknown) filters no better than a coin: it is flagged in red wherever a version can be
  chosen, and exporting with it needs an explicit confirmation (``--force`` in the CLI,
  ``confirm_weak_critic`` in the API, a checkbox on the page).
"""

from __future__ import annotations

from typing import Any

from app.core.config import get_settings


def min_labels() -> int:
    return get_settings().calibration_min_labels


def too_few(n: int | None) -> bool:
    """True when ``n`` calibration labels are too few for a headline estimate (0 included)."""
    return (n or 0) < min_labels()


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def too_few_text(n: int | None, interval: Any = None) -> str:
    """``too few calibration labels (n = 1): 95% interval 20.7%–100.0%``."""
    text = f"too few calibration labels (n = {n or 0})"
    if interval and interval[0] is not None and interval[1] is not None:
        text += f": 95% interval {_pct(float(interval[0]))}–{_pct(float(interval[1]))}"
    return text


def weak_auc() -> float:
    return get_settings().critic_weak_auc


def is_weak(metrics: dict[str, Any] | None) -> bool:
    """Held-out ROC-AUC unknown or at most the weak-critic bound (0.55 by default)."""
    auc = (metrics or {}).get("roc_auc")
    try:
        return auc is None or float(auc) <= weak_auc()
    except (TypeError, ValueError):
        return True


def weak_reason(version_id: int, metrics: dict[str, Any] | None) -> str:
    auc = (metrics or {}).get("roc_auc")
    shown = "unknown" if auc is None else f"{float(auc):.3f}"
    return (
        f"critic version {version_id} has a held-out ROC-AUC of {shown}, no better than "
        f"chance (at most {weak_auc():g}): its scores would filter at random"
    )


def weak_version_error(session: Any, version: int | str | None) -> str | None:
    """Why exporting with this version (None or "active": the active one) needs a
    confirmation, or None when it does not (a usable AUC, or no such version: the export's
    own checks name that)."""
    from sqlalchemy import select

    from app.core.models import CriticState, CriticVersion

    if version in (None, "", "active"):
        row = session.scalar(select(CriticVersion).where(CriticVersion.state == CriticState.active))
    else:
        try:
            row = session.get(CriticVersion, int(version))
        except (TypeError, ValueError):
            return None
    if row is None or not is_weak(row.metrics):
        return None
    return weak_reason(row.id, row.metrics)
