"""Quality numbers a researcher would check by hand: majority labels, leave-one-out agreement,
gold accuracy, speeders, Krippendorff's alpha, exclusion, and the downloads that carry them.

Campaigns are built through the real rating loop (``next_item`` / ``submit_rating``), with
each annotator's answers written out per item so every expected number can be worked out on
paper (the comments do that).
"""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
import uuid
from pathlib import Path

import krippendorff
import numpy as np
import pytest
from sqlalchemy import func, select, update

from app.annotation.access import admit
from app.annotation.agreement import campaign_agreement
from app.annotation.annotators import annotator_flags, annotator_quality, set_excluded
from app.annotation.assign import next_item, skip_item, submit_rating
from app.annotation.campaigns import CampaignSpec, create_campaign
from app.annotation.quality import LABEL_FIELDS, item_labels
from app.annotation.rating_rows import RATING_FIELDS
from app.core.db import session_scope
from app.core.models import Campaign, CampaignItem, Rating, RatingOrigin, Role, Triple, User
from tests.conftest import login, make_staff

NAN = math.nan
TRICKY_HEAD = 'PersonX says "hi", then leaves'  # a comma and quotes: CSV quoting must hold


def make_triples(n: int) -> list[int]:
    with session_scope(write=True) as session:
        triples = [
            Triple(
                head=TRICKY_HEAD if i == 0 else f"PersonX does thing {i}",
                relation="xWant",
                tail=f"to rest {i}",
                norm_hash=f"{i:032x}",
                source="t",
            )
            for i in range(n)
        ]
        session.add_all(triples)
        session.flush()
        return [t.id for t in triples]


def make_annotators(*names: str) -> dict[str, int]:
    with session_scope(write=True) as session:
        users = {
            name: User(role=Role.annotator, platform="prolific", external_id=f"w{name}")
            for name in names
        }
        session.add_all(users.values())
        session.flush()
        return {name: user.id for name, user in users.items()}


def make_campaign(ratings_per_item: int, gold: dict[int, int] | None = None) -> int:
    """A campaign over every triple; ``gold`` (triple id -> answer) turns items into gold."""
    with session_scope(write=True) as session:
        campaign_id = create_campaign(
            session, CampaignSpec(name="q", ratings_per_item=ratings_per_item)
        ).id
        for triple_id, answer in (gold or {}).items():
            session.execute(
                update(CampaignItem)
                .where(CampaignItem.campaign_id == campaign_id, CampaignItem.triple_id == triple_id)
                .values(is_gold=True, gold_answer=answer, ratings_needed=32000)
            )
        if gold:  # gold is served only to campaigns with a gold rate
            session.execute(
                update(Campaign).where(Campaign.id == campaign_id).values(gold_rate=0.5)
            )
        return campaign_id


def rate(
    campaign_id: int,
    annotator_id: int,
    answers: dict[int, int],
    seconds: list[float | None] | None = None,
) -> None:
    """Work through the campaign as this annotator: answer the triples in ``answers`` (triple id
    -> answer), skip the rest. ``seconds`` are used in the order the answers are given."""
    times = list(seconds or [])
    while True:
        with session_scope(write=True) as session:
            admit(session, campaign_id, annotator_id, "link")  # entered by its link
            item = next_item(session, campaign_id, annotator_id)
            if item is None:
                return
            triple_id = session.get(CampaignItem, item.item_id).triple_id
            if triple_id in answers:
                spent = times.pop(0) if times else 3.0
                submit_rating(
                    session,
                    campaign_id,
                    annotator_id,
                    item.item_id,
                    answers[triple_id],
                    uuid.uuid4().hex,
                    spent,
                )
            else:
                skip_item(session, campaign_id, annotator_id, item.item_id)


# The main example: three annotators, five items (t3 is mostly "too unfamiliar", -9).
#        t0   t1   t2    t3   t4
#   A     2   -2    2    -9    1
#   B    -1   -1   -2     2    1
#   C    -1   -1  skip   -9   -1
TABLE = {
    "A": [2, -2, 2, -9, 1],
    "B": [-1, -1, -2, 2, 1],
    "C": [-1, -1, None, -9, -1],
}


@pytest.fixture
def example(engine):  # type: ignore[no-untyped-def]
    triples = make_triples(5)
    people = make_annotators("A", "B", "C")
    campaign_id = make_campaign(ratings_per_item=3)
    for name, row in TABLE.items():
        answers = {t: a for t, a in zip(triples, row, strict=True) if a is not None}
        rate(campaign_id, people[name], answers)
    return campaign_id, triples, people


def test_majority_labels_with_a_tie_and_unfamiliar(example) -> None:  # type: ignore[no-untyped-def]
    campaign_id, triples, _ = example
    with session_scope() as session:
        labels = item_labels(session, campaign_id)
    by_triple = {label.triple_id: label for label in labels}
    assert [by_triple[t].label for t in triples] == [False, False, None, True, True]
    t0, t1, t2, t3, t4 = (by_triple[t] for t in triples)
    assert (t0.accept, t0.reject, t0.n, t0.mean_score) == (1, 2, 3, 0.0)
    assert (t1.n, t1.mean_score) == (3, pytest.approx(-4 / 3))
    assert (t2.accept, t2.reject, t2.label) == (1, 1, None)  # the tie: no label
    assert (t3.n, t3.accept, t3.unfamiliar, t3.mean_score) == (1, 1, 2, 2.0)
    assert (t4.accept, t4.reject, t4.mean_score) == (2, 1, pytest.approx(1 / 3))
    assert t0.head == TRICKY_HEAD and t0.relation == "xWant" and t0.campaign_id == campaign_id
    assert all(label.item_id is not None for label in labels)


def test_leave_one_out_agreement(example) -> None:  # type: ignore[no-untyped-def]
    campaign_id, _, people = example
    with session_scope() as session:
        quality = {q.user_id: q for q in annotator_quality(session, campaign_id)}
    # A: t0 others (B-, C-) say reject, A accepts: miss; t1 hit; t2 others (B-): miss;
    #    t3 A is unfamiliar; t4 others (B+, C-) tie: not counted.            -> 1/3
    # B: t0 others (A+, C-) tie; t1 hit; t2 others (A+) miss; t3 others all unfamiliar;
    #    t4 others (A+, C-) tie.                                             -> 1/2
    # C: t0 others (A+, B-) tie; t1 hit; t4 others (A+, B+) miss.            -> 1/2
    assert quality[people["A"]].agreement == pytest.approx(1 / 3)
    assert quality[people["B"]].agreement == pytest.approx(1 / 2)
    assert quality[people["C"]].agreement == pytest.approx(1 / 2)
    assert [q.ratings for q in quality.values()] == [5, 5, 4]  # most ratings first
    a = quality[people["A"]]
    assert a.label == "prolific:wA" and a.platform == "prolific" and not a.excluded
    assert a.gold_answered == 0 and a.gold_accuracy is None and a.flags == []
    assert a.median_seconds == 3.0


def test_alpha_matches_krippendorff_on_the_same_matrix(example) -> None:  # type: ignore[no-untyped-def]
    campaign_id, _, _ = example
    with session_scope() as session:
        agreement = campaign_agreement(session, campaign_id)
    # Raters x items, -9 and skips missing.
    ordinal = [[2, -2, 2, NAN, 1], [-1, -1, -2, 2, 1], [-1, -1, NAN, NAN, -1]]
    nominal = [[1, 0, 1, NAN, 1], [0, 0, 0, 1, 1], [0, 0, NAN, NAN, 0]]
    expected_ordinal = krippendorff.alpha(
        reliability_data=ordinal, value_domain=[-2, -1, 1, 2], level_of_measurement="ordinal"
    )
    expected_nominal = krippendorff.alpha(reliability_data=nominal, level_of_measurement="nominal")
    assert agreement.alpha_ordinal == pytest.approx(expected_ordinal)
    assert agreement.alpha_nominal == pytest.approx(expected_nominal)
    assert (agreement.items, agreement.ratings) == (4, 11)  # t3 has one usable rating only


def test_excluding_changes_labels_and_agreement_but_keeps_ratings(example) -> None:  # type: ignore[no-untyped-def]
    campaign_id, triples, people = example
    with session_scope(write=True) as session:
        set_excluded(session, people["C"], True)
    with session_scope() as session:
        labels = {label.triple_id: label for label in item_labels(session, campaign_id)}
        quality = {q.user_id: q for q in annotator_quality(session, campaign_id)}
        agreement = campaign_agreement(session, campaign_id)
        kept = session.scalar(
            select(func.count()).select_from(Rating).where(Rating.annotator_id == people["C"])
        )
    assert kept == 4
    # Without C: t0 becomes a tie (A+, B-); C's "unfamiliar" on t3 no longer counts.
    assert [labels[t].label for t in triples] == [None, False, None, True, True]
    assert labels[triples[3]].unfamiliar == 1 and labels[triples[0]].n == 2
    # A and B now only have each other: A misses t0 and t2, hits t1 and t4 (no more ties).
    assert quality[people["A"]].agreement == pytest.approx(1 / 2)
    assert quality[people["B"]].agreement == pytest.approx(1 / 2)
    # C's own figures are still shown (against A and B), flagged as excluded.
    assert quality[people["C"]].excluded and quality[people["C"]].ratings == 4
    assert quality[people["C"]].agreement == pytest.approx(1 / 2)
    expected = krippendorff.alpha(
        reliability_data=[[2, -2, 2, NAN, 1], [-1, -1, -2, 2, 1]],
        value_domain=[-2, -1, 1, 2],
        level_of_measurement="ordinal",
    )
    assert agreement.alpha_ordinal == pytest.approx(expected) and agreement.items == 4
    with session_scope(write=True) as session:
        set_excluded(session, people["C"], False)
    with session_scope() as session:
        assert item_labels(session, campaign_id)[0].label is False
        with pytest.raises(LookupError):
            set_excluded(session, 10_000, True)


def test_perfect_agreement_is_one_and_too_little_data_is_none(engine) -> None:  # type: ignore[no-untyped-def]
    triples = make_triples(3)
    people = make_annotators("A", "B")
    campaign_id = make_campaign(ratings_per_item=2)
    for name in people:
        rate(campaign_id, people[name], dict(zip(triples, [2, -2, 1], strict=True)))
    lonely = make_campaign(ratings_per_item=2)
    rate(lonely, people["A"], {triples[0]: 2})
    with session_scope() as session:
        perfect = campaign_agreement(session, campaign_id)
        nothing = campaign_agreement(session, lonely)
        (label,) = [x for x in item_labels(session, lonely) if x.triple_id == triples[1]]
    assert perfect.alpha_ordinal == 1.0 and perfect.alpha_nominal == 1.0
    assert (perfect.items, perfect.ratings) == (3, 6)
    assert nothing.alpha_ordinal is None and nothing.alpha_nominal is None
    assert nothing.items == 0
    assert (label.n, label.label, label.mean_score) == (0, None, None)  # unrated item


def test_gold_accuracy_speeders_and_median_seconds(engine) -> None:  # type: ignore[no-untyped-def]
    g0, g1, g2, g3, *plain = make_triples(9)
    people = make_annotators("P", "Q", "S", "T")
    campaign_id = make_campaign(ratings_per_item=4, gold={g0: 2, g1: -2, g2: 1, g3: -1})
    # P: gold wrong, wrong, wrong, right (3 of 4 wrong) -> 0.25 < 0.7 after >= 3 answers.
    rate(campaign_id, people["P"], {g0: -1, g1: 2, g2: -2, g3: -1, plain[0]: 2, plain[1]: 2})
    # Q: "too unfamiliar" on g0 is no answer; two wrong answers are too few to flag.
    rate(campaign_id, people["Q"], {g0: -9, g1: 1, g2: -1}, [None, None, None])
    # S: five ratings, median 1.0 s < 2.0 s -> speeder.
    rate(campaign_id, people["S"], dict.fromkeys(plain, 1), [0.5, 0.8, 1.0, 9.0, 12.0])
    # T: as fast, but only four ratings: not flagged. Even count: median of 0.2 and 0.4.
    rate(campaign_id, people["T"], dict.fromkeys(plain[:4], 1), [0.1, 0.2, 0.4, 1.0])
    with session_scope() as session:
        rows = annotator_quality(session, campaign_id)
        labels = item_labels(session, campaign_id)
        flags_only = annotator_flags(session, campaign_id)  # the people page's lighter query
    assert flags_only == {row.user_id: row.flags for row in rows if row.flags}
    assert sorted(flags_only.values()) == [["low gold accuracy"], ["speeder"]]
    by_name = {row.label.removeprefix("prolific:w"): row for row in rows}
    assert [row.label for row in rows] == [f"prolific:w{n}" for n in "PSTQ"]  # ratings desc
    p, q, s, t = (by_name[n] for n in "PQST")
    assert (p.ratings, p.gold_answered, p.gold_accuracy) == (6, 4, 0.25)
    assert p.flags == ["low gold accuracy"] and p.median_seconds == 3.0
    assert (q.ratings, q.gold_answered, q.gold_accuracy, q.flags) == (3, 2, 0.0, [])
    assert q.median_seconds is None
    assert (s.median_seconds, s.flags) == (1.0, ["speeder"])
    assert t.median_seconds == pytest.approx(0.3) and t.flags == []
    assert {label.triple_id for label in labels} == set(plain)  # gold items are not labels


def test_labels_over_everything_include_imported_labels(example) -> None:  # type: ignore[no-untyped-def]
    campaign_id, triples, _ = example
    (only_imported,) = make_triples_extra(1)
    with session_scope(write=True) as session:
        for triple_id, answer in ((triples[0], -2), (only_imported, 1)):
            session.add(
                Rating(
                    triple_id=triple_id,
                    answer=answer,
                    submission_id=f"import:{triple_id}",
                    origin=RatingOrigin.imported,
                )
            )
    with session_scope() as session:
        labels = {label.triple_id: label for label in item_labels(session)}
    assert set(labels) == {*triples, only_imported}
    # t0: the campaign's A+, B-, C- and the imported -2 -> 1 accept, 3 rejects.
    t0 = labels[triples[0]]
    assert (t0.accept, t0.reject, t0.label, t0.mean_score) == (1, 3, False, -0.5)
    assert t0.item_id is None and t0.campaign_id is None  # two sources
    imported = labels[only_imported]
    assert (imported.item_id, imported.campaign_id, imported.label) == (None, None, True)
    assert labels[triples[3]].campaign_id == campaign_id  # one campaign item: named


def make_triples_extra(n: int) -> list[int]:
    with session_scope(write=True) as session:
        triples = [
            Triple(
                head=f"PersonY imported {i}",
                relation="xNeed",
                tail=f"a label {i}",
                norm_hash=f"e{i:031x}",
                source="file",
            )
            for i in range(n)
        ]
        session.add_all(triples)
        session.flush()
        return [t.id for t in triples]


# --- downloads and admin ---------------------------------------------------------------------


def test_ratings_download_csv_and_jsonl(example, staff_client) -> None:  # type: ignore[no-untyped-def]
    campaign_id, triples, people = example
    response = staff_client.get(f"/campaigns/{campaign_id}/ratings.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert (
        response.headers["content-disposition"]
        == f'attachment; filename="campaign-{campaign_id}-ratings.csv"'
    )
    reader = csv.DictReader(io.StringIO(response.text))
    assert reader.fieldnames == RATING_FIELDS
    rows = list(reader)
    assert len(rows) == 14
    (first,) = [
        r
        for r in rows
        if r["triple_id"] == str(triples[0]) and r["annotator_id"] == str(people["A"])
    ]
    assert first["head"] == TRICKY_HEAD
    assert (first["answer"], first["answer_label"], first["acceptable"]) == (
        "2",
        "always/often",
        "true",
    )
    assert (first["annotator"], first["platform"], first["external_id"]) == (
        "prolific:wA",
        "prolific",
        "wA",
    )
    assert (first["seconds"], first["is_gold"], first["excluded"]) == ("3.0", "false", "false")
    assert first["created_at"][:4].isdigit()
    unfamiliar = [r for r in rows if r["answer"] == "-9"]
    assert len(unfamiliar) == 2 and {r["acceptable"] for r in unfamiliar} == {""}

    lines = staff_client.get(f"/campaigns/{campaign_id}/ratings.jsonl").text.splitlines()
    objects = [json.loads(line) for line in lines]
    assert len(objects) == 14 and list(objects[0]) == RATING_FIELDS
    assert {o["acceptable"] for o in objects} == {True, False, None}
    assert staff_client.get("/campaigns/999/ratings.csv").status_code == 404
    assert staff_client.get(f"/campaigns/{campaign_id}/ratings.xml").status_code == 422


def test_label_downloads(example, staff_client) -> None:  # type: ignore[no-untyped-def]
    campaign_id, triples, _ = example
    response = staff_client.get(f"/campaigns/{campaign_id}/labels.csv")
    assert 'filename="campaign-' in response.headers["content-disposition"]
    reader = csv.DictReader(io.StringIO(response.text))
    assert reader.fieldnames == LABEL_FIELDS
    rows = {int(r["triple_id"]): r for r in reader}
    assert [rows[t]["label"] for t in triples] == ["false", "false", "", "true", "true"]
    assert rows[triples[0]]["head"] == TRICKY_HEAD and rows[triples[2]]["mean_score"] == "0.0"
    everything = staff_client.get("/labels.jsonl")
    assert everything.headers["content-disposition"] == 'attachment; filename="labels.jsonl"'
    objects = [json.loads(line) for line in everything.text.splitlines()]
    assert [o["label"] for o in objects] == [False, False, None, True, True]
    assert list(objects[0]) == LABEL_FIELDS
    assert staff_client.get("/labels.csv").text.count("\n") == 6  # header + 5


def test_only_admins_exclude_and_csrf_is_checked(example, client) -> None:  # type: ignore[no-untyped-def]
    campaign_id, triples, people = example
    target = people["C"]
    assert client.post(f"/admin/annotators/{target}/exclude").status_code in (401, 403)
    make_staff("ada")
    client.headers["X-CSRF-Token"] = login(client, "ada")
    assert client.post(f"/admin/annotators/{target}/exclude").status_code == 403  # researcher
    client.post("/logout")
    client.headers.pop("X-CSRF-Token")
    make_staff("root", role="admin")
    token = login(client, "root")
    assert client.post(f"/admin/annotators/{target}/exclude").status_code == 403  # no CSRF
    client.headers["X-CSRF-Token"] = token
    reply = client.post(f"/admin/annotators/{target}/exclude")
    assert reply.status_code == 200 and reply.json() == {"user_id": target, "excluded": True}
    with session_scope() as session:
        assert session.get(User, target).excluded
        assert item_labels(session, campaign_id)[0].label is None  # t0 is now a tie
    fragment = client.post(f"/admin/annotators/{target}/include", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and fragment.headers["content-type"].startswith("text/html")
    assert f'hx-post="/admin/annotators/{target}/exclude"' in fragment.text
    assert 'hx-swap="outerHTML"' in fragment.text and "Exclude" in fragment.text
    with session_scope() as session:
        assert not session.get(User, target).excluded
    excluded_again = client.post(
        f"/admin/annotators/{target}/exclude", headers={"HX-Request": "true"}
    )
    assert f'hx-post="/admin/annotators/{target}/include"' in excluded_again.text
    assert client.post("/admin/annotators/10000/exclude").status_code == 404


def test_cli_exports(example, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    campaign_id, triples, _ = example

    def skd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, timeout=120
        )

    ratings = tmp_path / "ratings.jsonl"
    done = skd("ratings", "export", str(campaign_id), "--format", "jsonl", "--out", str(ratings))
    assert done.returncode == 0, done.stderr
    assert "wrote 14 ratings" in done.stderr
    assert len(ratings.read_text().splitlines()) == 14
    labels = tmp_path / "labels.csv"
    done = skd("labels", "export", "--campaign", str(campaign_id), "--out", str(labels))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(labels.open(newline="")))
    assert [r["label"] for r in rows] == ["false", "false", "", "true", "true"]
    everything = skd("labels", "export", "--out", "-", "--format", "jsonl")
    assert len(everything.stdout.splitlines()) == 5
    missing = skd("ratings", "export", "999", "--out", str(tmp_path / "x.csv"))
    assert missing.returncode == 1 and "no campaign 999" in missing.stderr
    assert not (tmp_path / "x.csv").exists()


def test_alpha_helper_agrees_with_reliability_matrix_on_random_data() -> None:
    """The value-count route into krippendorff.alpha equals the raters x items route."""
    from app.annotation.agreement import _alpha

    rng = np.random.default_rng(7)
    domain = [-2, -1, 1, 2]
    data = rng.choice([*domain, NAN], size=(6, 40), p=[0.3, 0.2, 0.2, 0.2, 0.1])
    counts = np.stack([(data == v).sum(axis=0) for v in domain], axis=1)
    expected = krippendorff.alpha(
        reliability_data=data, value_domain=domain, level_of_measurement="ordinal"
    )
    assert _alpha(counts, domain, "ordinal") == pytest.approx(expected)
