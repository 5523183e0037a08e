"""The paper's table for an evaluation campaign: how acceptable each system's inferences are.

The unit is one inference (a distinct triple a system wrote for the campaign). Its label is the
campaign's aggregated label (``app.annotation.quality.item_labels``): the majority of the usable
accept/reject ratings; "too unfamiliar" answers and excluded annotators do not vote, and a tie
or an unrated item is *undecided* and left out of the proportions (its count is shown). A
triple that several systems wrote counts once for each of them.

- **Acceptability** per system and per (system, relation): accepted / decided, with a 95%
  Wilson score interval.
- **Differences** between every pair of systems: p₁ − p₂ with Newcombe's hybrid score interval
  (method 10, built from the two Wilson intervals), and a two-sided **two-proportion z-test**
  (pooled). The test treats the two systems' inferences as independent samples; a triple both
  wrote is in both, which makes the test conservative rather than optimistic.
- **Systems** are the writers recorded with the campaign's inferences (a student evaluation:
  ``student-N``, ``teacher``, references); a campaign opened on corpus sources instead (a
  teacher run's "Rate this run", or any evaluation campaign with ``--source``) compares its
  sources, each source's items being its inferences.
- **Length** (mean words per inference) and **diversity**: distinct-1 and distinct-2, the
  share of a system's unigrams and bigrams (over all its inferences, lower-cased words) that
  are distinct.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.annotation.quality import item_labels
from app.core.models import Campaign, CampaignItem, CampaignPurpose, EvaluationOutput, Triple

Z95 = 1.959963984540054


def wilson(accepted: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of accepted/n (0, 0 for n == 0 is never asked: callers check)."""
    if n == 0:
        return (0.0, 1.0)
    p = accepted / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def newcombe(a1: int, n1: int, a2: int, n2: int) -> tuple[float, float]:
    """Newcombe's hybrid score interval (method 10) for p1 - p2."""
    p1, p2 = a1 / n1, a2 / n2
    l1, u1 = wilson(a1, n1)
    l2, u2 = wilson(a2, n2)
    d = p1 - p2
    return (
        d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
        d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
    )


def two_proportion_z(a1: int, n1: int, a2: int, n2: int) -> tuple[float, float]:
    """(z, two-sided p) of the pooled two-proportion z-test."""
    pooled = (a1 + a2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    d = a1 / n1 - a2 / n2
    if se == 0:
        return (0.0, 1.0)
    z = d / se
    return (z, math.erfc(abs(z) / math.sqrt(2)))


def distinct_n(tails: list[str], n: int) -> float | None:
    grams: list[tuple[str, ...]] = []
    for tail in tails:
        words = tail.lower().split()
        grams += [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


@dataclass
class Cell:
    """Acceptability of one group of inferences."""

    inferences: int
    decided: int
    accepted: int

    def as_dict(self) -> dict[str, Any]:
        p = self.accepted / self.decided if self.decided else None
        low, high = wilson(self.accepted, self.decided) if self.decided else (None, None)
        return {
            "inferences": self.inferences,
            "decided": self.decided,
            "undecided": self.inferences - self.decided,
            "accepted": self.accepted,
            "acceptability": p,
            "ci_low": low,
            "ci_high": high,
        }


def _cell(labels: list[bool | None]) -> Cell:
    decided = [label for label in labels if label is not None]
    return Cell(len(labels), len(decided), sum(decided))


def evaluation_table(session: Session, campaign_id: int) -> dict[str, Any]:
    """Every figure of the table (JSON-ready). Raises LookupError / ValueError for a campaign
    that is missing or not an evaluation."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise LookupError(f"there is no campaign {campaign_id}")
    if campaign.purpose != CampaignPurpose.evaluation:
        raise ValueError(f"campaign {campaign_id} is a {campaign.purpose.value} campaign")
    labels_read = item_labels(session, campaign_id)
    label_of = {row.triple_id: row.label for row in labels_read}
    ratings = {row.triple_id: row.n for row in labels_read}
    rows = session.execute(
        select(EvaluationOutput.system, Triple.id, Triple.relation, Triple.tail)
        .join(Triple, Triple.id == EvaluationOutput.triple_id)
        .where(EvaluationOutput.campaign_id == campaign_id)
        .order_by(EvaluationOutput.system, Triple.id)
    ).all()
    compared = "systems"
    if not rows:
        # A campaign opened on corpus sources (a teacher run's "Rate this run", or
        # `skd campaign create --purpose evaluation --source A --source B`): each source is
        # a system, its non-gold items its inferences.
        compared = "sources"
        rows = session.execute(
            select(Triple.source, Triple.id, Triple.relation, Triple.tail)
            .join(CampaignItem, CampaignItem.triple_id == Triple.id)
            .where(CampaignItem.campaign_id == campaign_id, CampaignItem.is_gold.is_(False))
            .order_by(Triple.source, Triple.id)
        ).all()
    systems: list[str] = list(campaign.selection.get(compared) or [])
    systems += sorted({system for system, *_ in rows} - set(systems))
    labels: dict[str, list[bool | None]] = defaultdict(list)
    by_relation: dict[tuple[str, str], list[bool | None]] = defaultdict(list)
    tails: dict[str, list[str]] = defaultdict(list)
    for system, triple_id, relation, tail in rows:
        label = label_of.get(triple_id)
        labels[system].append(label)
        by_relation[(system, relation)].append(label)
        tails[system].append(tail)
    # How many of the evaluation's queries each system said something for (recorded when the
    # campaign opened; none for a campaign on corpus sources or from before it was recorded).
    queries = campaign.selection.get("queries") if compared == "systems" else None
    answered = dict(campaign.selection.get("answered") or {}) if queries else {}
    per_system = []
    for system in systems:
        words = [len(tail.split()) for tail in tails[system]]
        per_system.append(
            {
                "system": system,
                "queries": queries if system in answered else None,
                "queries_answered": answered.get(system),
                **_cell(labels[system]).as_dict(),
                "mean_words": sum(words) / len(words) if words else None,
                "distinct_1": distinct_n(tails[system], 1),
                "distinct_2": distinct_n(tails[system], 2),
            }
        )
    relations = sorted({relation for _s, relation in by_relation})
    per_relation = [
        {"system": system, "relation": relation, **_cell(by_relation[(system, relation)]).as_dict()}
        for relation in relations
        for system in systems
        if (system, relation) in by_relation
    ]
    differences = []
    cells = {row["system"]: row for row in per_system}
    for i, first in enumerate(systems):
        for second in systems[i + 1 :]:
            a, b = cells[first], cells[second]
            entry: dict[str, Any] = {"system": first, "versus": second}
            if a["decided"] and b["decided"]:
                low, high = newcombe(a["accepted"], a["decided"], b["accepted"], b["decided"])
                z, p_value = two_proportion_z(
                    a["accepted"], a["decided"], b["accepted"], b["decided"]
                )
                entry |= {
                    "difference": a["acceptability"] - b["acceptability"],
                    "ci_low": low,
                    "ci_high": high,
                    "z": z,
                    "p_value": p_value,
                    "significant": p_value < 0.05,
                }
            else:
                entry |= dict.fromkeys(
                    ("difference", "ci_low", "ci_high", "z", "p_value", "significant")
                )
            differences.append(entry)
    shared = _shared(rows)
    return {
        "campaign_id": campaign_id,
        "name": campaign.name,
        "systems": systems,
        "compared": compared,
        "rated_items": sum(1 for n in ratings.values() if n),
        "item_count": len(label_of),
        "shared_triples": shared,
        "per_system": per_system,
        "per_relation": per_relation,
        "differences": differences,
        "method": {
            "unit": "one inference (distinct triple) per system; label = majority of usable "
            "ratings, ties and unrated items undecided",
            "interval": "95% Wilson score interval",
            "difference": "Newcombe hybrid score interval (method 10)",
            "test": "two-sided pooled two-proportion z-test",
        },
    }


def ratings_by_source(
    session: Session, source: str | None = None, among: Iterable[str] | None = None
) -> dict[str, list[dict[str, Any]]]:
    """How people rated each corpus source (a teacher run's output) in the evaluation
    campaigns that compare sources, newest campaign first: the source's row of each table,
    with its rows per relation. One table per campaign, whatever the number of sources;
    with ``source``, only the campaigns that name it are read, with ``among`` only those that
    name one of them (the runs a page lists)."""
    wanted = {source} if source else (set(among) if among is not None else None)
    campaigns = session.scalars(
        select(Campaign)
        .where(Campaign.purpose == CampaignPurpose.evaluation)
        .order_by(Campaign.id.desc())
    ).all()
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for campaign in campaigns:
        named = campaign.selection.get("sources") or []
        if campaign.selection.get("systems") or not named:
            continue  # a student evaluation (its systems are recorded)
        if wanted is not None and not wanted.intersection(named):
            continue  # none of the sources asked for
        table = evaluation_table(session, campaign.id)
        if table["compared"] != "sources":
            continue
        for row in table["per_system"]:
            found[row["system"]].append(
                {
                    "campaign_id": campaign.id,
                    "campaign": campaign.name,
                    "state": campaign.state.value,
                    "rated_items": table["rated_items"],
                    "item_count": table["item_count"],
                    **row,
                    "per_relation": [
                        r for r in table["per_relation"] if r["system"] == row["system"]
                    ],
                }
            )
    return dict(found)


def source_ratings(session: Session, source: str) -> list[dict[str, Any]]:
    """``ratings_by_source`` for one source."""
    return ratings_by_source(session, source).get(source, [])


def _shared(rows: list[Any]) -> int:
    """How many triples more than one system wrote (rated once, credited to each)."""
    writers: dict[int, set[str]] = defaultdict(set)
    for system, triple_id, _relation, _tail in rows:
        writers[triple_id].add(system)
    return sum(1 for names in writers.values() if len(names) > 1)


CSV_FIELDS = [
    "table",
    "system",
    "versus",
    "relation",
    "queries",
    "queries_answered",
    "inferences",
    "decided",
    "accepted",
    "acceptability",
    "ci_low",
    "ci_high",
    "difference",
    "z",
    "p_value",
    "mean_words",
    "distinct_1",
    "distinct_2",
]


def table_csv(table: dict[str, Any]) -> str:
    """The table as one CSV: a ``table`` column says which part each row belongs to."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in table["per_system"]:
        writer.writerow({"table": "system", **row})
    for row in table["per_relation"]:
        writer.writerow({"table": "relation", **row})
    for row in table["differences"]:
        writer.writerow({"table": "difference", **row})
    return out.getvalue()
