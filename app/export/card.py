"""The dataset card: ``README.md`` at the top of every export.

It says what is in the files (counts per split and relation, per source), how good the critic
is on held-out labels, which threshold was used and how it was chosen, the estimated precision
of the kept triples with its 95% interval, the exact parameters and the command that makes the
same files again. Its YAML header follows the Hugging Face dataset-card convention, so
``datasets.load_dataset("<export folder>")`` finds the splits by itself.

The card is part of the byte-identical promise, so it holds nothing that changes between two
runs on the same data: no wall-clock time, no export id, no path. Its date is "data as of":
the newest of the critic version's creation, the newest human rating and the newest kept
triple. The time the export was made is recorded in SKD Studio's list of exports instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from app.critic.describe import label_snapshot_sentence, model_display_name
from app.critic.estimates import min_labels, too_few, too_few_text
from app.export.params import FORMAT_HELP, HUMAN_LABEL_RULES, NO_CRITIC_RULES
from app.export.plan import ExportPlan


@dataclass
class WrittenCounts:
    """What the files hold, counted while they were written."""

    split_names: tuple[str, ...]
    by_split: dict[str, int]
    by_relation: dict[str, dict[str, int]]  # relation -> split -> triples
    by_source: dict[str, int]
    heads: dict[str, int]  # distinct heads per split
    labelled: dict[str, int]  # kept triples whose valid is 1 / -1
    total: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_split": self.by_split,
            "by_relation": self.by_relation,
            "by_source": self.by_source,
            "heads": self.heads,
            "labelled": self.labelled,
        }


def _n(value: int) -> str:
    return f"{value:,}"


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def _ci(intervals: dict[str, Any], name: str) -> str:
    """ " (95% interval low–high)" after a held-out figure; nothing for versions trained
    before intervals were stored."""
    pair = intervals.get(name)
    if not pair or pair[0] is None or pair[1] is None:
        return ""
    return f" (95% interval {_f(pair[0])}–{_f(pair[1])})"


def _size_category(n: int) -> str:
    """The Hugging Face ``size_categories`` bucket of n rows."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")]
    bounds += [(1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")]
    for bound, name in bounds:
        if n < bound:
            return name
    return "n>100M"


def file_path(fmt: str, split: str) -> str:
    folder, extension = {
        "atomic-tsv": ("atomic-tsv", "tsv"),
        "jsonl": ("jsonl", "jsonl"),
        "parquet": ("parquet", "parquet"),
        "student": ("student", "jsonl"),
    }[fmt]
    return f"{folder}/{split}.{extension}"


def _yaml_header(plan: ExportPlan, counts: WrittenCounts) -> list[str]:
    formats = plan.params.formats
    splits = counts.split_names
    # One config: ``datasets`` picks one loader for a whole folder, so configs in different
    # formats cannot sit side by side (a "student" JSONL config next to Parquet fails).
    main = next((fmt for fmt in ("parquet", "jsonl", "student") if fmt in formats), None)
    configs = [("default", main)] if main else []
    if plan.version is None or plan.threshold is None:
        title = "SKD Studio knowledge graph (no critic filter)"
    else:
        title = (
            f"SKD Studio filtered knowledge graph (critic version {plan.version['id']}, "
            f"threshold {plan.threshold:.4g})"
        )
    lines = [
        "---",
        f"pretty_name: {json.dumps(title)}",
        "language:",
        "- en",
        "task_categories:",
        "- text-generation",
        "tags:",
        "- commonsense",
        "- knowledge-graph",
        "- atomic",
        "- symbolic-knowledge-distillation",
        "size_categories:",
        f"- {_size_category(counts.total)}",
    ]
    if configs:
        lines.append("configs:")
        for name, fmt in configs:
            lines.append(f"- config_name: {name}")
            lines.append("  data_files:")
            for split in splits:
                lines.append(f"  - split: {split}")
                lines.append(f"    path: {file_path(fmt, split)}")
    lines.append("---")
    return lines


def configs_note(formats: tuple[str, ...]) -> str:
    main = next((fmt for fmt in ("parquet", "jsonl", "student") if fmt in formats), None)
    return f"the {main} files" if main else "no loadable format"


def render_card(plan: ExportPlan, counts: WrittenCounts, software: dict[str, str]) -> str:
    """The README.md of an export (Markdown with a YAML header)."""
    if plan.version is None or plan.threshold is None:
        return _render_no_critic_card(plan, counts, software)
    params = plan.params
    version = plan.version
    metrics = version["metrics"]
    estimate = plan.estimate
    splits = counts.split_names
    asked = dict(params.splits)
    out = _yaml_header(plan, counts)
    say = out.append

    say("")
    say("# Filtered commonsense knowledge graph")
    say("")
    relations = len(counts.by_relation)
    summary = (
        f"**{_n(counts.total)} triples** ({_n(sum(counts.heads.values()))} heads, "
        f"{relations} relation{'s' if relations != 1 else ''}) kept from "
        f"{_n(plan.counts.candidates)} candidate triples by critic version {version['id']} at "
        f"threshold **{plan.threshold:.4f}** ({plan.threshold_reason()})."
    )
    if estimate.precision is not None and too_few(estimate.sample):
        summary += (
            " Estimated precision of the kept triples: "
            f"{too_few_text(estimate.sample, estimate.sample_interval)}; no headline figure."
        )
    elif estimate.precision is not None and estimate.interval is not None:
        summary += (
            f" Estimated precision of the kept triples: **{_f(estimate.precision)}** "
            f"(95% interval {_f(estimate.interval[0])}–{_f(estimate.interval[1])})."
        )
    else:
        summary += " Precision not estimated: no calibration labels (see below)."
    say(summary)
    say("")
    say(f"Data as of {plan.data_as_of.strftime('%Y-%m-%d %H:%M:%S UTC')}. Made with SKD Studio.")
    say("")

    _splits_counts_sources(plan, counts, say, splits, asked)

    say("## The critic")
    say("")
    snapshot = version.get("label_snapshot") or {}
    say("| property | value |")
    say("|---|---|")
    say(f"| version | {version['id']} ({version['state']}) |")
    say(f"| base model | {model_display_name(version['base_model'])} |")
    say(f"| created | {version['created_at'][:19].replace('T', ' ')} UTC |")
    if snapshot:
        say(f"| trained on | {label_snapshot_sentence(snapshot)} |")
    if "n" in metrics:
        say(
            f"| held-out labels | {_n(metrics['n'])} ({_n(metrics.get('acceptable', 0))} "
            "acceptable) |"
        )
    intervals = metrics.get("intervals") or {}
    say(f"| held-out ROC-AUC | {_f(metrics.get('roc_auc'))}{_ci(intervals, 'roc_auc')} |")
    say(
        f"| held-out average precision | {_f(metrics.get('average_precision'))}"
        f"{_ci(intervals, 'average_precision')} |"
    )
    say("")
    if intervals.get("roc_auc"):
        say(
            f"The intervals are 95% bootstrap intervals: {intervals['rounds']:,} redraws of "
            f"the {_n(intervals['groups'])} held-out {intervals['by']}s."
        )
        say("")
    points = metrics.get("precision_at_recall") or []
    if points:
        say("Held-out precision at the paper's recall levels (the rec_X flags of the files):")
        say("")
        say("| target recall | threshold | precision | recall | kept fraction |")
        say("|---:|---:|---:|---:|---:|")
        for point in points:
            say(
                f"| {point['target_recall']:g} | {point['threshold']:.4f} | "
                f"{_f(point['precision'])} | {_f(point['recall'])} | "
                f"{_f(point['kept_fraction'])} |"
            )
        say("")

    say("## The threshold")
    say("")
    say(f"Threshold **{plan.threshold:.6g}**: {plan.threshold_reason()}.")
    if plan.heldout_at_threshold:
        held = plan.heldout_at_threshold
        say(
            f"On the critic's held-out labels, keeping scores ≥ {held['curve_threshold']:.4g} "
            f"(the nearest point of the stored curve) gives precision {_f(held['precision'])} "
            f"and recall {_f(held['recall'])}."
        )
    say("")
    say(
        f"Of {_n(plan.counts.candidates)} candidate triples (in the relation and source filters),"
        f" the version scored {_n(plan.counts.scored)} and "
        f"{_n(plan.counts.above_threshold)} reach the threshold."
    )
    say("")
    say("| flag | threshold |")
    say("|---|---:|")
    for name, value in plan.rec_thresholds.items():
        say(f"| {name} | {'not reached' if value is None else f'{value:.4f}'} |")
    say("")

    say("## Human labels")
    say("")
    say(f"Rule `{params.human_labels}`: {HUMAN_LABEL_RULES[params.human_labels]}.")
    say("")
    say(
        f"The corpus has {_n(plan.labels.accepted)} majority-accepted and "
        f"{_n(plan.labels.rejected)} majority-rejected triples (a tie is no label). In this "
        f"export {_n(counts.labelled.get('accepted', 0))} kept triples carry an accepting label "
        f"(`valid` = 1) and {_n(counts.labelled.get('rejected', 0))} a rejecting one "
        f"(`valid` = -1); {_n(plan.counts.kept_by_label)} were kept by their label although "
        f"below the threshold or unscored, and {_n(plan.counts.dropped_by_label)} dropped by "
        "their label although above it."
    )
    say("")

    say("## Estimated precision")
    say("")
    if estimate.precision is not None and too_few(estimate.sample):
        say(
            f"**{too_few_text(estimate.sample, estimate.sample_interval).capitalize()}.** Only "
            f"{_n(estimate.sample)} calibration triple(s) in the filters reach the threshold, "
            f"fewer than the {min_labels()} a precision estimate needs here "
            "(`SKD_CALIBRATION_MIN_LABELS`), so no point estimate is given. Rate a larger "
            "calibration campaign for one."
        )
        say("")
    elif estimate.precision is not None and estimate.interval is not None:
        assert estimate.sample_interval is not None
        say(
            f"Of the {_n(estimate.sample)} triples of calibration campaigns (uniform random "
            "samples) in the filters whose score reaches the threshold, "
            f"{_n(estimate.sample_acceptable)} were judged acceptable: "
            f"{_f(estimate.sample_precision)} (Wilson 95% interval "
            f"{_f(estimate.sample_interval[0])}–{_f(estimate.sample_interval[1])}). Counting "
            "the labelled kept triples as they were judged and the "
            f"{_n(plan.counts.kept_unlabelled)} unlabelled ones at that rate, the kept "
            f"triples' precision is **{_f(estimate.precision)}** "
            f"(95% interval {_f(estimate.interval[0])}–{_f(estimate.interval[1])})."
        )
    else:
        say(
            "Not estimated: no calibration-campaign label falls on a kept triple "
            f"({_n(estimate.calibration_labels)} calibration labels in the corpus). Open a "
            "calibration campaign (a uniform random sample) to measure it."
        )
    say("")

    _files_and_provenance(plan, counts, software, say)
    return "\n".join(out)


def _files_and_provenance(
    plan: ExportPlan, counts: WrittenCounts, software: dict[str, str], say: Any
) -> None:
    """The card's last sections, the same with and without a critic: files, how to load
    them, the parameters, how to reproduce, provenance and warnings."""
    params = plan.params
    splits = counts.split_names
    say("## Files")
    say("")
    say("| file | format | triples |")
    say("|---|---|---:|")
    for fmt in params.formats:
        for split in splits:
            say(f"| `{file_path(fmt, split)}` | {fmt} | {_n(counts.by_split[split])} |")
    say("")
    for fmt in params.formats:
        say(f"- `{fmt}`: {FORMAT_HELP[fmt]}.")
    valid = (
        "- `valid`: 1 when the majority of human raters found the triple acceptable, -1 when "
        "they did not, null without a decided label. "
    )
    if plan.version is None:
        say(
            valid + "`p_valid_model` and `rec_X`: null throughout, since no critic scored "
            "these triples (the columns are kept so the schema is ATOMIC-10X's)."
        )
    else:
        say(
            valid + "`p_valid_model`: the critic's score (null for a human-accepted triple "
            "the version did not score). `rec_X`: the score reaches the threshold at which "
            "the critic's held-out recall is X."
        )
    say(
        '- `student`: train a causal LM on `source + " " + target`; at inference give `source` '
        "and generate the tail."
    )
    say("- `SHA256SUMS`: checksums of every file (`sha256sum -c SHA256SUMS`).")
    say("")

    def files(fmt: str) -> str:
        return ", ".join(f'"{split}": "{file_path(fmt, split)}"' for split in splits)

    snippets = [
        (fmt, var, "parquet" if fmt == "parquet" else "json")
        for fmt, var in (("parquet", "graph"), ("jsonl", "graph"), ("student", "pairs"))
        if fmt in params.formats
    ]
    if snippets:
        say("```python")
        say("from datasets import load_dataset")
        shown: set[str] = set()
        for fmt, var, loader in snippets:
            if var in shown:
                continue
            shown.add(var)
            say(f'{var} = load_dataset("{loader}", data_files={{{files(fmt)}}})')
        say(f"# or, with this README beside the files ({configs_note(params.formats)}):")
        say('# load_dataset("path/to/this/folder")')
        say("```")
        say("")

    say("## Parameters")
    say("")
    say("```json")
    say(json.dumps(params.as_dict(), indent=2, ensure_ascii=False))
    say("```")
    say("")
    say("## Reproduce")
    say("")
    say("```sh")
    say(params.command())
    say("# or: skd export --params params.json")
    say("```")
    say("")
    say(
        "The same parameters on the same data give byte-identical files and archive (with the "
        "same versions of SKD Studio and pyarrow); check with `sha256sum -c SHA256SUMS`."
    )
    say("")
    say("## Provenance")
    say("")
    newest = "the newest of the critic version's creation, " if plan.version else "the newer of "
    say(
        f"- Data as of {plan.data_as_of.isoformat()}: {newest}"
        "the newest human rating and the newest kept triple. The card holds no "
        "wall-clock time, so that it stays byte-identical; SKD Studio's export list records "
        "when each export was made."
    )
    say("- Software: " + ", ".join(f"{name} {value}" for name, value in software.items()) + ".")
    if plan.version is None:
        say(
            "- Method: Symbolic Knowledge Distillation (West et al., NAACL 2022) filters a "
            "teacher-generated knowledge graph with a critic; this export skipped that filter "
            "and kept the triples as the human-label rule left them."
        )
    else:
        say(
            "- Method: Symbolic Knowledge Distillation (West et al., NAACL 2022): a critic "
            "trained on human acceptability judgements filters a teacher-generated knowledge "
            "graph."
        )
    for warning in plan.warnings:
        say(f"- Warning: {warning}.")
    say("")


def _render_no_critic_card(
    plan: ExportPlan, counts: WrittenCounts, software: dict[str, str]
) -> str:
    """The card of an export no critic filtered: it says so first, and instead of the critic,
    threshold and held-out figures it says what the human-label rule kept and dropped."""
    params = plan.params
    estimate = plan.estimate
    splits = counts.split_names
    asked = dict(params.splits)
    rule = params.human_labels
    out = _yaml_header(plan, counts)
    say = out.append

    say("")
    say("# Commonsense knowledge graph (no critic filter)")
    say("")
    relations = len(counts.by_relation)
    say(
        f"**No critic filtered this export.** **{_n(counts.total)} triples** "
        f"({_n(sum(counts.heads.values()))} heads, {relations} "
        f"relation{'s' if relations != 1 else ''}) kept from {_n(plan.counts.candidates)} "
        f"triples in the filters: {NO_CRITIC_RULES[rule]} (human-label rule `{rule}`)."
        + _estimate_headline(plan)
    )
    say("")
    say(f"Data as of {plan.data_as_of.strftime('%Y-%m-%d %H:%M:%S UTC')}. Made with SKD Studio.")
    say("")
    _splits_counts_sources(plan, counts, say, splits, asked)

    say("## The critic")
    say("")
    say(
        "No critic filtered this export: there is no critic score, no threshold and no "
        "held-out precision or recall for these triples. The `p_valid_model` and `rec_X` "
        "columns are null throughout."
    )
    say("")

    say("## Human labels")
    say("")
    say(f"Rule `{rule}`: without a critic it keeps {NO_CRITIC_RULES[rule]}.")
    say("")
    say(
        f"The corpus has {_n(plan.labels.accepted)} majority-accepted and "
        f"{_n(plan.labels.rejected)} majority-rejected triples (a tie is no label). In this "
        f"export {_n(counts.labelled.get('accepted', 0))} kept triples carry an accepting label "
        f"(`valid` = 1), {_n(counts.labelled.get('rejected', 0))} a rejecting one "
        f"(`valid` = -1) and {_n(plan.counts.kept_unlabelled)} none; "
        f"{_n(plan.counts.candidates - plan.counts.kept)} triples in the filters were left out "
        "by the rule."
    )
    say("")

    say("## Estimated precision")
    say("")
    say("There is no critic estimate: no critic filtered this export.")
    say("")
    if estimate.precision is not None and too_few(estimate.sample):
        say(
            f"**{too_few_text(estimate.sample, estimate.sample_interval).capitalize()}.** Only "
            f"{_n(estimate.sample)} calibration triple(s) are in the filters, fewer than the "
            f"{min_labels()} a precision estimate needs here (`SKD_CALIBRATION_MIN_LABELS`), "
            "so no point estimate is given. Rate a larger calibration campaign for one."
        )
    elif estimate.precision is not None and estimate.interval is not None:
        assert estimate.sample_interval is not None
        say(
            f"From human labels alone: of the {_n(estimate.sample)} triples of calibration "
            "campaigns (uniform random samples) in the filters, "
            f"{_n(estimate.sample_acceptable)} were judged acceptable: "
            f"{_f(estimate.sample_precision)} (Wilson 95% interval "
            f"{_f(estimate.sample_interval[0])}–{_f(estimate.sample_interval[1])}). Counting "
            "the labelled kept triples as they were judged and the "
            f"{_n(plan.counts.kept_unlabelled)} unlabelled ones at that rate, the kept "
            f"triples' precision is **{_f(estimate.precision)}** "
            f"(95% interval {_f(estimate.interval[0])}–{_f(estimate.interval[1])})."
        )
    else:
        say(
            "Nor an estimate from human labels: no calibration-campaign label falls in the "
            f"filters ({_n(estimate.calibration_labels)} calibration labels in the corpus). "
            "Open a calibration campaign (a uniform random sample) to measure it."
        )
    say("")
    _files_and_provenance(plan, counts, software, say)
    return "\n".join(out)


def _estimate_headline(plan: ExportPlan) -> str:
    """The estimate's sentence in the first paragraph of a card without a critic."""
    estimate = plan.estimate
    if estimate.precision is not None and too_few(estimate.sample):
        return (
            " Estimated precision from calibration labels: "
            f"{too_few_text(estimate.sample, estimate.sample_interval)}; no headline figure."
        )
    if estimate.precision is not None and estimate.interval is not None:
        return (
            f" Estimated precision from calibration labels: **{_f(estimate.precision)}** "
            f"(95% interval {_f(estimate.interval[0])}–{_f(estimate.interval[1])})."
        )
    return " There is no critic estimate, and no calibration labels to estimate the precision."


def _splits_counts_sources(
    plan: ExportPlan,
    counts: WrittenCounts,
    say: Any,
    splits: tuple[str, ...],
    asked: dict[str, float],
) -> None:
    """The splits, the counts per relation and per source (with and without a critic)."""
    params = plan.params
    say("## Splits")
    say("")
    if params.split_by == "corpus":
        say(
            "The corpus's own splits, kept as imported: each triple is in the split its import "
            "gave it (the `split` field), whatever its head. Heads may be in several splits if "
            "the corpus had them so (the warnings below say how many)."
        )
    else:
        say(
            "Split by head: no head is in two splits (heads compared ignoring case, spacing "
            f"and a final period). Heads are ordered by a hash seeded with {params.seed} and "
            "cut where each split's share of triples comes closest to the share asked."
        )
    say("")
    say("| split | asked | triples | share | heads |")
    say("|---|---:|---:|---:|---:|")
    for split in splits:
        share = counts.by_split[split] / counts.total if counts.total else 0.0
        wanted = f"{asked[split]:.3f}" if split in asked else "as imported"
        say(
            f"| {split} | {wanted} | {_n(counts.by_split[split])} | {share:.3f} | "
            f"{_n(counts.heads[split])} |"
        )
    total_asked = "1.000" if asked else "–"
    say(
        f"| **total** | {total_asked} | {_n(counts.total)} | 1.000 | "
        f"{_n(sum(counts.heads.values()))} |"
    )
    say("")

    say("## Counts per relation")
    say("")
    say("| relation | " + " | ".join(splits) + " | total |")
    say("|---|" + "---:|" * (len(splits) + 1))
    for relation in sorted(counts.by_relation):
        row = counts.by_relation[relation]
        cells = [_n(row.get(split, 0)) for split in splits]
        say(f"| {relation} | " + " | ".join(cells) + f" | {_n(sum(row.values()))} |")
    totals = [_n(counts.by_split[split]) for split in splits]
    say("| **total** | " + " | ".join(totals) + f" | {_n(counts.total)} |")
    say("")

    say("## Sources")
    say("")
    filtered = ", ".join(params.sources) if params.sources else "all sources"
    say(f"Sources asked for: {filtered}.")
    say("")
    say("| source | triples |")
    say("|---|---:|")
    for source in sorted(counts.by_source):
        say(f"| {source} | {_n(counts.by_source[source])} |")
    say("")
