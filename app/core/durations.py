"""Estimated durations in words, rounded the way an estimate deserves ("40 s", "7 min",
"2.5 h"): a student's time left, a teacher run's or a campaign's expected length."""

from __future__ import annotations


def duration_words(seconds: float) -> str:
    """Seconds under a minute and a half, minutes under an hour and a half, then hours."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"
