"""What the JSON API answers when it starts work (202 Accepted), as the reference shows it.

Every door that starts a job answers with the job to follow (``job_id``, ``status_url``) and
the ids and links of what the job makes. Routes that return one of these models are checked
by FastAPI; routes that build their ``JSONResponse`` themselves name theirs in ``responses=``
so that ``/openapi.json`` describes it field by field, and ``tests/test_api_reference.py``
holds the import, teacher run and export answers to their models.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.web.jobs import JobSummary


class JobStarted(BaseModel):
    """The job a request started: poll ``status_url`` until it is ``finished``."""

    job_id: int
    status_url: str = Field(description="GET it for the job (JobOut) until it is finished.")


class ImportStarted(JobStarted):
    progress_url: str = Field(description="The job's progress bar, as an HTML fragment.")


class TeacherRunStarted(JobStarted):
    run_id: int
    source: str = Field(description="The corpus source its triples land under.")
    run_url: str = Field(description="The run's JSON: counts, a sample, ratings.")
    page_url: str


class TeacherRunResumed(JobStarted):
    run_id: int


class ExportStarted(JobStarted):
    export_id: int
    progress_url: str
    export_url: str = Field(description="The export's JSON: parameters, counts, files.")
    download_url: str = Field(description="Its .tar.gz, once the job has succeeded.")
    started: dict[str, Any] = Field(description="The parameters as checked, the threshold.")
    export: dict[str, Any] = Field(description="The export's JSON as it starts.")


class StudentRunStarted(JobStarted):
    model_id: int
    model_url: str = Field(description="The student's JSON: state, dev loss, model card.")


class CriticTrainingStarted(BaseModel):
    """A training is a chain of three jobs: train, evaluate (and maybe activate), score."""

    version_id: int
    jobs: dict[str, int] = Field(description="The job of each step: train, evaluate, score.")
    status_urls: dict[str, str] = Field(description="Where to follow each of them.")


class JobRetried(JobStarted):
    """The new job that runs the failed or cancelled one again."""

    model_config = ConfigDict(extra="allow")  # see app.web.answers

    retry_of: int = Field(description="The job it runs again.")
    job: JobSummary


def accepted(model: type[BaseModel], what: str) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry of a route that answers 202 with ``model``."""
    return {202: {"model": model, "description": what}}
