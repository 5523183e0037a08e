"""Terminal output for the CLI: a rich progress bar that speaks the jobs' Progress protocol, and
the import summary table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.core.jobs import NullProgress

console = Console(stderr=True)
out = Console()


class RichProgress(NullProgress):
    """A terminal progress bar fed by ``update(done, total, message)`` like a job row."""

    def __init__(self, description: str) -> None:
        self.bar = Progress(
            TextColumn("[bold]{task.fields[title]}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=False,
        )
        self.task = self.bar.add_task("", total=None, title=description)

    def __enter__(self) -> RichProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def update(
        self,
        done: int,
        total: int | None = None,
        message: str | None = None,
        *,
        force: bool = False,
    ) -> None:
        fields: dict[str, Any] = {"completed": done}
        if total is not None:
            fields["total"] = total
        if message is not None:
            fields["description"] = message
        self.bar.update(self.task, **fields)


def import_summary_table(result: dict[str, Any]) -> Table:
    """read / imported / duplicates / skipped by reason, per file and in total."""
    reasons = sorted(result["totals"]["skipped"])
    table = Table(title="Import summary", title_justify="left")
    table.add_column("file")
    for name in ("lines read", "triples", "imported", "dup. in import", "already in corpus"):
        table.add_column(name, justify="right")
    for reason in reasons:
        table.add_column(f"skipped: {reason}", justify="right")
    table.add_column("human labels", justify="right")

    def row(name: str, data: dict[str, Any], skipped: dict[str, int]) -> list[str]:
        return [
            name,
            f"{data['lines']:,}",
            f"{data['triples']:,}",
            f"{data['imported']:,}",
            f"{data['duplicates_in_import']:,}",
            f"{data['already_in_corpus']:,}",
            *[f"{skipped.get(r, 0):,}" for r in reasons],
            f"{data['labels']:,}",
        ]

    for file in result["files"]:
        table.add_row(*row(file["file"], file, file["skipped"]))
    if len(result["files"]) > 1:
        table.add_section()
        table.add_row(*row("total", result["totals"], result["totals"]["skipped"]), style="bold")
    table.caption = f"{result['seconds']:.2f} s" + (
        f", {result['rate_per_second']:,} triples/s" if result.get("rate_per_second") else ""
    )
    return table
