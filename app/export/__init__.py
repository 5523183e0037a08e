"""Export the filtered knowledge graph for student training.

One function behind three doors (the page at ``/exports``, ``POST /api/exports`` and
``skd export``): ``run.start_export`` checks the parameters and records the export,
``run.run_export_job`` writes it. The rooms:

- ``params``: what can be asked, parsed and checked without the database;
- ``plan``: checked against the database: version, threshold, what is kept, the precision
  estimate (every refusal happens here, before any work);
- ``select``: the SQL of the selection (scores, filters, the human-label rule);
- ``splits``: train/val/test by head, sizes as asked;
- ``writers``: ATOMIC 2020 TSV, ATOMIC-10X JSONL, Parquet and the student's format;
- ``card``: the dataset card (README.md);
- ``archive``: SHA256SUMS and a reproducible .tar.gz;
- ``run``: the job, and listing past exports.
"""

from app.export.params import FORMATS, HUMAN_LABEL_RULES, ExportParamError, ExportParams
from app.export.plan import ExportPlan, plan_export
from app.export.run import (
    export_as_dict,
    export_file,
    get_export,
    list_exports,
    preview_export,
    queue_export,
    run_export_job,
    start_export,
)

__all__ = [
    "FORMATS",
    "HUMAN_LABEL_RULES",
    "ExportParamError",
    "ExportParams",
    "ExportPlan",
    "export_as_dict",
    "export_file",
    "get_export",
    "list_exports",
    "plan_export",
    "preview_export",
    "queue_export",
    "run_export_job",
    "start_export",
]
