"""The corpus score histogram over the range the scores actually take.

Fixed bins over [0, 1] hide a critic whose scores crowd together: the demo's 15,702 scores all
fell between 0.52 and 0.60 and showed as two bars. Here the range is the scores' own (their
min and max, one index lookup each), widened to round numbers so the axis reads well, and the
threshold is kept inside it when it is close. Counting stays one range count per bin on the
(version, p_accept) index, as in ``app.critic.score.score_histogram``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from app.core.models import Score

_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)


@dataclass
class Histogram:
    counts: list[int]
    low: float
    high: float

    @property
    def width(self) -> float:
        return (self.high - self.low) / (len(self.counts) or 1)


def nice_range(lowest: float, highest: float, bins: int) -> tuple[float, float]:
    """[low, high] around the scores, on a round step, at least ``bins`` steps of 0.001 wide,
    within [0, 1]. The whole [0, 1] once the scores spread over most of it."""
    lowest, highest = max(0.0, lowest), min(1.0, highest)
    span = highest - lowest
    if span > 0.6:
        return 0.0, 1.0
    # the coarsest round step that still gives the scores several bins
    step = next((s for s in reversed(_STEPS) if s * bins <= max(span, 0.001) * 2.5), _STEPS[0])
    low = math.floor(lowest / step) * step
    high = math.ceil(highest / step) * step
    if high - low < step * 2:
        high = low + step * 2
    low, high = max(0.0, round(low, 6)), min(1.0, round(high, 6))
    if high <= low:
        low, high = max(0.0, high - step * 2), min(1.0, low + step * 2)
    return low, high


def score_range(session: Session, version_id: int) -> tuple[float, float] | None:
    row = session.execute(
        select(func.min(Score.p_accept), func.max(Score.p_accept)).where(
            Score.critic_version_id == version_id
        )
    ).one()
    if row[0] is None:
        return None
    return float(row[0]), float(row[1])


def adaptive_histogram(session: Session, version_id: int, bins: int = 20) -> Histogram:
    """Counts in ``bins`` equal bins over the scores' own (rounded) range."""
    found = score_range(session, version_id)
    if found is None:
        return Histogram([0] * bins, 0.0, 1.0)
    low, high = nice_range(found[0], found[1], bins)
    width = (high - low) / bins
    ranged = Score.critic_version_id == version_id

    def in_bin(k: int) -> Any:
        start = low + k * width
        lower = Score.p_accept >= start if k else Score.p_accept >= low - 1e-12
        if k == bins - 1:
            return and_(lower, Score.p_accept <= high + 1e-12)
        return and_(lower, Score.p_accept < low + (k + 1) * width)

    counts = [
        select(func.count()).select_from(Score).where(ranged, in_bin(k)).scalar_subquery()
        for k in range(bins)
    ]
    return Histogram([int(n or 0) for n in session.execute(select(*counts)).one()], low, high)
