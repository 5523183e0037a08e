"""Source names: what an import may call its triples, and the names the loop keeps for itself.

A teacher run's triples are the source ``teacher-run-<id>`` and a student's inferences
``student-<id>``, and the pages count and pick them by those names (a run's triple count, the
student evaluation's "not a student" rule). An import that took such a name would mix into
them unseen, so imports may not; any other name up to the column's 100 characters may be used.
"""

from __future__ import annotations

import re

SOURCE_MAX = 100  # triples.source is a VARCHAR(100)
TEACHER_PREFIX = "teacher-run-"
STUDENT_PREFIX = "student-"
_STUDENT = re.compile(r"student-\d+")
_RESERVED = re.compile(r"(teacher-run|student)-\d+", re.IGNORECASE)


def teacher_source(run_id: int) -> str:
    """The source of the triples teacher run ``run_id`` wrote."""
    return f"{TEACHER_PREFIX}{run_id}"


def student_source(model_id: int) -> str:
    """The source of the inferences student ``model_id`` wrote for an evaluation."""
    return f"{STUDENT_PREFIX}{model_id}"


def is_student_source(source: str) -> bool:
    return _STUDENT.fullmatch(source) is not None


def source_problem(source: str) -> str | None:
    """What is wrong with a source name for an import, or None (the door names the source)."""
    if len(source) > SOURCE_MAX:
        return f"at most {SOURCE_MAX} characters ({len(source)} given)"
    if any(ord(ch) < 32 for ch in source):
        return "no tabs, line breaks or other control characters"
    if _RESERVED.fullmatch(source):
        kind = "teacher run's" if source.lower().startswith(TEACHER_PREFIX) else "student's"
        return f"kept for a {kind} own triples; choose another name"
    return None
