"""Exporting the filtered graph: what is kept, the splits, the files, the card, determinism,
and every refusal before any work. Runs on SQLite and PostgreSQL (SKD_TEST_BACKEND)."""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from sqlalchemy import func, select

from app.core.db import make_engine, session_scope
from app.core.jobs import run_job
from app.core.models import (
    Campaign,
    CampaignItem,
    CampaignPurpose,
    CriticState,
    CriticVersion,
    Export,
    Job,
    JobState,
    Rating,
    RatingOrigin,
    Role,
    Score,
    Triple,
    User,
)
from app.export import ExportParamError, ExportParams, preview_export, start_export
from app.export.run import run_export_job
from app.export.splits import head_key
from tests.conftest import BACKEND, PG_ADMIN_URL, ROOT

RELATIONS = ("xWant", "xNeed", "xAttr", "HinderedBy")
PR_CURVE = {
    "threshold": [0.9, 0.7, 0.5, 0.3, 0.1],
    "precision": [0.95, 0.9, 0.85, 0.8, 0.75],
    "recall": [0.2, 0.5, 0.8, 0.9, 1.0],
}


@dataclass
class Corpus:
    version_id: int
    # triple id -> (head, relation, tail, source, score or None, human label or None)
    rows: dict[int, tuple[str, str, str, str, float | None, bool | None]]
    calibration: dict[int, bool]  # triple id -> calibration label

    def expected(
        self,
        threshold: float,
        rule: str = "override",
        relations: tuple[str, ...] = (),
        sources: tuple[str, ...] = (),
    ) -> set[tuple[str, str, str]]:
        """The kept set, worked out in Python from the documented rules."""
        kept = set()
        for head, relation, tail, source, score, label in self.rows.values():
            if relations and relation not in relations:
                continue
            if sources and source not in sources:
                continue
            above = score is not None and score >= threshold
            keep = {
                "override": label is True or (label is None and above),
                "drop-rejected": above and label is not False,
                "ignore": above,
            }[rule]
            if keep:
                kept.add((head, relation, tail))
        return kept


def build_corpus(heads: int = 60, seed: int = 7, calibration: int = 0) -> Corpus:
    """Heads with 1-6 triples each over four relations and two sources; some heads written
    in two spellings (case, a final period); scores for most triples; human labels (imported)
    on some, including accepted triples below the threshold and rejected ones above it."""
    rng = random.Random(seed)
    rows: dict[int, tuple[str, str, str, str, float | None, bool | None]] = {}
    calibration_labels: dict[int, bool] = {}
    with session_scope(write=True) as session:
        version = CriticVersion(
            base_model="tiny",
            state=CriticState.active,
            metrics={
                "n": 200,
                "acceptable": 150,
                "roc_auc": 0.81,
                "average_precision": 0.88,
                "intervals": {
                    "confidence": 0.95,
                    "rounds": 1000,
                    "by": "head",
                    "groups": 1234,
                    "roc_auc": [0.7812, 0.8391],
                    "average_precision": [0.85, 0.91],
                },
                "pr_curve": PR_CURVE,
                "precision_at_recall": [
                    {
                        "target_recall": 0.8,
                        "threshold": 0.5,
                        "precision": 0.85,
                        "recall": 0.8,
                        "kept_fraction": 0.7,
                    }
                ],
            },
            label_snapshot={"labels": 200},
        )
        session.add(version)
        session.flush()
        triples: list[Triple] = []
        for h in range(heads):
            base = f"PersonX bakes bread {h}"
            for t in range(rng.randint(1, 6)):
                spelling = base
                if h % 7 == 0 and t % 2:
                    spelling = base.lower() + "."  # the same head, loosely
                triples.append(
                    Triple(
                        head=spelling,
                        relation=rng.choice(RELATIONS),
                        tail=f"to eat slice {h}-{t}" + (" ünïcode" if t == 3 else ""),
                        norm_hash=uuid.uuid4().hex,
                        source="teacher" if rng.random() < 0.8 else "human",
                    )
                )
        session.add_all(triples)
        session.flush()
        annotator = User(role=Role.annotator, platform="prolific", external_id=uuid.uuid4().hex)
        session.add(annotator)
        campaign = Campaign(
            name="cal",
            purpose=CampaignPurpose.calibration,
            answer_scale=[],
            selection={},
            share_token=uuid.uuid4().hex,
        )
        session.add(campaign)
        session.flush()
        for index, triple in enumerate(triples):
            score = None if index % 23 == 5 else round(rng.random(), 6)
            if score is not None:
                session.add(
                    Score(critic_version_id=version.id, triple_id=triple.id, p_accept=score)
                )
            label: bool | None = None
            if index < calibration:
                label = rng.random() < 0.8
                item = CampaignItem(
                    campaign_id=campaign.id,
                    triple_id=triple.id,
                    ratings_needed=1,
                    ratings_done=1,
                )
                session.add(item)
                session.flush()
                session.add(
                    Rating(
                        triple_id=triple.id,
                        item_id=item.id,
                        annotator_id=annotator.id,
                        answer=2 if label else -1,
                        submission_id=uuid.uuid4().hex,
                    )
                )
                calibration_labels[triple.id] = label
            elif index % 9 == 4:
                label = rng.random() < 0.6
                session.add(
                    Rating(
                        triple_id=triple.id,
                        origin=RatingOrigin.imported,
                        answer=1 if label else -2,
                        submission_id=uuid.uuid4().hex,
                    )
                )
            rows[triple.id] = (
                triple.head,
                triple.relation,
                triple.tail,
                triple.source,
                score,
                label,
            )
        return Corpus(version.id, rows, calibration_labels)


def export(params: dict, destination: Path | None = None) -> Path:
    """Run an export in-process (as ``skd export`` does) and return its folder."""
    started = start_export(ExportParams.from_dict(params), destination=destination)
    result = run_job(started.job_id, run_export_job)
    return Path(result["path"])


def rows_of(folder: Path, fmt: str = "jsonl") -> dict[str, list[dict]]:
    """split -> records of one format, read back the way a user would."""
    result: dict[str, list[dict]] = {}
    for path in sorted((folder / fmt).iterdir()):
        split = path.name.split(".")[0]
        if fmt == "parquet":
            result[split] = pq.read_table(path).to_pylist()
        elif fmt == "atomic-tsv":
            result[split] = [
                dict(zip(("head", "relation", "tail"), line.split("\t"), strict=True))
                for line in path.read_text(encoding="utf-8").splitlines()
            ]
        else:
            result[split] = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    return result


# --- what is kept -----------------------------------------------------------------------------


def test_human_labels_rules_and_the_atomic10x_fields(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    corpus = build_corpus()
    for rule in ("override", "drop-rejected", "ignore"):
        folder = export(
            {"threshold": 0.5, "human_labels": rule, "formats": ["jsonl"]}, tmp_path / rule
        )
        records = [r for rs in rows_of(folder).values() for r in rs]
        assert {(r["head"], r["relation"], r["tail"]) for r in records} == corpus.expected(
            0.5, rule
        )
        by_triple = {(h, r, t): (s, lab) for h, r, t, _src, s, lab in corpus.rows.values()}
        for record in records:
            score, label = by_triple[record["head"], record["relation"], record["tail"]]
            assert record["p_valid_model"] == score
            assert record["valid"] == (None if label is None else 1 if label else -1)
            # rec_X: the score reaches the threshold where held-out recall is X.
            assert record["rec_0.5"] == (None if score is None else score >= 0.7)
            assert record["rec_0.8"] == (None if score is None else score >= 0.5)
            assert record["rec_0.9"] == (None if score is None else score >= 0.3)
            assert list(record)[:6] == [
                "head",
                "relation",
                "tail",
                "split",
                "p_valid_model",
                "valid",
            ]
    # The default keeps human-accepted triples below the threshold, even unscored ones.
    override = corpus.expected(0.5, "override")
    assert any(
        lab is True and (s is None or s < 0.5) and (h, r, t) in override
        for h, r, t, _src, s, lab in corpus.rows.values()
    )


def test_filters_and_threshold_rules(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    corpus = build_corpus()
    plan = preview_export(ExportParams.from_dict({"target_recall": 0.8}))
    assert (plan.threshold, plan.threshold_rule) == (0.5, "recall")
    plan = preview_export(ExportParams.from_dict({"target_precision": 0.9}))
    assert plan.threshold == 0.7  # the lowest threshold whose precision reaches 0.9
    # Kept fraction: of the scored triples in the filters, not of the whole corpus.
    plan = preview_export(ExportParams.from_dict({"kept_fraction": 0.25, "relations": ["xWant"]}))
    scores = sorted(
        (s for _h, r, _t, _src, s, _l in corpus.rows.values() if r == "xWant" and s is not None),
        reverse=True,
    )
    assert plan.threshold == scores[round(0.25 * len(scores)) - 1]
    folder = export(
        {"threshold": 0.4, "relations": ["xWant", "xNeed"], "sources": ["teacher"]},
        tmp_path / "filtered",
    )
    records = {(r["head"], r["relation"], r["tail"]) for rs in rows_of(folder).values() for r in rs}
    assert records == corpus.expected(0.4, relations=("xWant", "xNeed"), sources=("teacher",))


# --- splits -----------------------------------------------------------------------------------


def test_no_head_is_in_two_splits_and_sizes_are_as_asked(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    build_corpus(heads=400, seed=3)
    folder = export(
        {"threshold": 0.0, "splits": "train=0.7,val=0.2,test=0.1", "formats": ["atomic-tsv"]},
        tmp_path / "splits",
    )
    splits = rows_of(folder, "atomic-tsv")
    assert set(splits) == {"train", "val", "test"}
    heads = {name: {head_key(r["head"]) for r in rows} for name, rows in splits.items()}
    assert not heads["train"] & heads["val"]
    assert not heads["train"] & heads["test"]
    assert not heads["val"] & heads["test"]
    # "PersonX bakes bread 7" and "personx bakes bread 7." are one head: one split.
    spellings = {
        r["head"] for rows in splits.values() for r in rows if head_key(r["head"]).endswith(" 7")
    }
    assert len(spellings) == 2
    total = sum(len(rows) for rows in splits.values())
    for name, share in (("train", 0.7), ("val", 0.2), ("test", 0.1)):
        # Whole heads of at most 6 triples: within a few triples of the share.
        assert abs(len(splits[name]) - share * total) <= 6, (name, len(splits[name]), total)
    # Another seed gives other splits, the same sizes give or take a head.
    other = export(
        {
            "threshold": 0.0,
            "splits": "train=0.7,val=0.2,test=0.1",
            "formats": ["atomic-tsv"],
            "seed": 11,
        },
        tmp_path / "seed11",
    )
    assert rows_of(other, "atomic-tsv")["test"] != splits["test"]


def test_a_zero_ratio_leaves_a_split_out(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    build_corpus(heads=20)
    folder = export({"threshold": 0.0, "splits": {"train": 0.9, "test": 0.1, "val": 0}})
    assert sorted(p.name for p in (folder / "jsonl").iterdir()) == ["test.jsonl", "train.jsonl"]


# --- the card ---------------------------------------------------------------------------------


def _table(card: str, heading: str) -> list[list[str]]:
    """The rows of the first Markdown table under ``## heading`` (header and rule skipped)."""
    section = card.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip().strip("*`") for cell in line.strip("|").split("|")] for line in lines[2:]]


def _n(text: str) -> int:
    return int(text.replace(",", ""))


def test_card_numbers_equal_counts_from_the_files(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    corpus = build_corpus(heads=150, calibration=60)
    folder = export({"target_recall": 0.8}, tmp_path / "card")
    card = (folder / "README.md").read_text(encoding="utf-8")
    formats = {fmt: rows_of(folder, fmt) for fmt in ("atomic-tsv", "jsonl", "parquet", "student")}
    jsonl = formats["jsonl"]
    # Every format holds the same number of rows per split.
    for fmt, splits in formats.items():
        assert {k: len(v) for k, v in splits.items()} == {k: len(v) for k, v in jsonl.items()}, fmt
    # Splits table: triples and heads per split.
    for name, _asked, triples, _share, heads in _table(card, "Splits")[:-1]:
        assert _n(triples) == len(jsonl[name])
        assert _n(heads) == len({head_key(r["head"]) for r in jsonl[name]})
    # Relations table: every cell.
    section = card.split("## Counts per relation\n", 1)[1]
    header = next(line for line in section.splitlines() if line.startswith("|"))
    split_names = [cell.strip() for cell in header.strip("|").split("|")][1:-1]
    rows = _table(card, "Counts per relation")
    for row in rows[:-1]:
        relation, cells, total = row[0], row[1:-1], row[-1]
        for split, cell in zip(split_names, cells, strict=True):
            assert _n(cell) == sum(r["relation"] == relation for r in jsonl[split])
        assert _n(total) == sum(r["relation"] == relation for rs in jsonl.values() for r in rs)
    assert _n(rows[-1][-1]) == sum(len(rs) for rs in jsonl.values())
    # Sources table, from the database (the files don't carry the source).
    kept = corpus.expected(0.5)
    sources = Counter(src for h, r, t, src, _s, _l in corpus.rows.values() if (h, r, t) in kept)
    assert {row[0]: _n(row[1]) for row in _table(card, "Sources")} == dict(sources)
    # The summary line: the kept count and the estimated precision with its interval.
    assert f"**{len(kept):,} triples**" in card
    match = re.search(
        r"precision of the kept triples: \*\*([\d.]+)\*\* \(95% interval ([\d.]+)", card
    )
    assert match, card
    # The estimate, recomputed: calibration triples above the threshold in the sample.
    sample = [
        label
        for triple_id, label in corpus.calibration.items()
        if (score := corpus.rows[triple_id][4]) is not None and score >= 0.5
    ]
    labelled_ok = sum(
        1 for h, r, t, _src, _s, lab in corpus.rows.values() if (h, r, t) in kept and lab is True
    )
    unlabelled = sum(
        1 for h, r, t, _src, _s, lab in corpus.rows.values() if (h, r, t) in kept and lab is None
    )
    share = sum(sample) / len(sample)
    assert float(match.group(1)) == pytest.approx(
        (labelled_ok + unlabelled * share) / len(kept), abs=5e-4
    )
    # Held-out metrics, the threshold and how it was chosen, the parameters, the command.
    assert "| held-out ROC-AUC | 0.810 (95% interval 0.781–0.839) |" in card
    assert "1,000 redraws of the 1,234 held-out heads" in card
    assert "highest threshold whose held-out recall reaches 0.8" in card
    params = json.loads((folder / "params.json").read_text())
    assert params["version"] == corpus.version_id and params["target_recall"] == 0.8
    assert f"skd export --version {corpus.version_id} --target-recall 0.8" in card
    # The YAML header names the files, so datasets finds the splits by itself.
    assert "  - split: train\n    path: parquet/train.parquet" in card
    # The checksums hold.
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        import hashlib

        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest


def test_parquet_reads_back_with_pyarrow_like_the_jsonl(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    build_corpus(heads=80)
    folder = export({"threshold": 0.3}, tmp_path / "pq")
    table = pq.read_table(folder / "parquet" / "train.parquet")
    assert table.schema.names == [
        "head",
        "relation",
        "tail",
        "split",
        "p_valid_model",
        "valid",
        "rec_0.5",
        "rec_0.6",
        "rec_0.7",
        "rec_0.8",
        "rec_0.9",
    ]
    assert str(table.schema.field("valid").type) == "int8"
    assert rows_of(folder, "parquet") == rows_of(folder, "jsonl")
    student = rows_of(folder, "student")["train"][0]
    first = rows_of(folder, "jsonl")["train"][0]
    source = f"<head> {first['head']} </head> <relation> {first['relation']} </relation> [GEN]"
    assert student == {"source": source, "target": first["tail"]}
    try:
        import datasets  # noqa: F401
    except ImportError:
        return
    from datasets import load_dataset

    loaded = load_dataset("parquet", data_files={"train": str(folder / "parquet/train.parquet")})
    assert loaded["train"].num_rows == table.num_rows


# --- determinism ------------------------------------------------------------------------------


def test_same_parameters_same_data_give_byte_identical_files(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    build_corpus(heads=120, calibration=30)
    params = {"target_recall": 0.8, "splits": "train=0.8,val=0.1,test=0.1", "seed": 5}
    first = export(params, tmp_path / "one")
    second = export(params, tmp_path / "two")
    names = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
    assert names == sorted(
        p.relative_to(second).as_posix() for p in second.rglob("*") if p.is_file()
    )
    assert len(names) == 3 + 4 * 3  # README, params, SHA256SUMS + 4 formats x 3 splits
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    archive_one = (tmp_path / "one.tar.gz").read_bytes()
    assert archive_one == (tmp_path / "two.tar.gz").read_bytes()
    assert archive_one[4:8] == b"\0\0\0\0"  # gzip header mtime 0
    with tarfile.open(tmp_path / "one.tar.gz") as tar:
        members = tar.getmembers()
    roots = {m.name.split("/")[0] for m in members}
    assert len(roots) == 1 and roots.pop().startswith("skd-kg-v")
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
    assert len({m.mtime for m in members}) == 1
    assert gzip.decompress(archive_one)  # a valid gzip stream


# --- round trip -------------------------------------------------------------------------------


def _fresh_database(tmp_path: Path):  # type: ignore[no-untyped-def]
    if BACKEND == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh.sqlite'}", None
    import psycopg

    name = f"skd_roundtrip_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return f"{base}/{name}", drop


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_round_trip_import_into_a_fresh_database_gives_exactly_the_kept_triples(  # type: ignore[no-untyped-def]
    engine, tmp_path: Path, fmt: str
) -> None:
    corpus = build_corpus(heads=100)
    folder = export({"threshold": 0.45}, tmp_path / "export")
    kept = corpus.expected(0.45)
    url, drop = _fresh_database(tmp_path)
    env = {
        **os.environ,
        "SKD_DATABASE_URL": url,
        "SKD_DATA_DIR": str(tmp_path / "fresh-data"),
        "COLUMNS": "200",
        "PYTHONPATH": str(ROOT),
    }

    def skd(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    try:
        skd("db", "upgrade")
        skd("import", *map(str, sorted((folder / fmt).iterdir())), "--source", "export")
        fresh = make_engine(url)
        try:
            with fresh.connect() as conn:
                imported = set(conn.execute(select(Triple.head, Triple.relation, Triple.tail)))
                labels = dict(
                    conn.execute(
                        select(Triple.tail, Rating.answer).join(
                            Rating, Rating.triple_id == Triple.id
                        )
                    ).all()
                )
            assert imported == kept
            # The human labels travel too (valid: 1 / -1 on the paper's scale).
            expected = {t: (1 if lab else -1) for h, r, t, _s, _p, lab in corpus.rows.values()}
            assert labels == {t: expected[t] for _h, _r, t in kept if t in labels}
            assert len(labels) == sum(
                1
                for h, r, t, _s, _p, lab in corpus.rows.values()
                if (h, r, t) in kept and lab is not None
            )
            # The TSV holds the same triples: importing it adds nothing new.
            tsv = skd("import", *map(str, sorted((folder / "atomic-tsv").iterdir())))
            with fresh.connect() as conn:
                assert conn.scalar(select(func.count()).select_from(Triple)) == len(kept)
            assert "already in corpus" in tsv.stdout
        finally:
            fresh.dispose()
    finally:
        if drop:
            drop()


# --- refusals ---------------------------------------------------------------------------------


def _refused(params: dict) -> dict[str, str]:
    """The errors of an export that must be refused before anything is recorded or written."""
    with session_scope() as session:
        before = (
            session.scalar(select(func.count()).select_from(Export)),
            session.scalar(select(func.count()).select_from(Job)),
        )
    with pytest.raises(ExportParamError) as caught:
        start_export(ExportParams.from_dict(params))
    with session_scope() as session:
        after = (
            session.scalar(select(func.count()).select_from(Export)),
            session.scalar(select(func.count()).select_from(Job)),
        )
    assert after == before, "a refused export recorded something"
    return caught.value.errors


def test_bad_parameters_are_refused_before_any_work(engine, settings) -> None:  # type: ignore[no-untyped-def]
    corpus = build_corpus(heads=30)
    exports_dir = settings.data_dir / "exports"
    files_before = sorted(exports_dir.rglob("*")) if exports_dir.exists() else []

    assert "no critic version 999" in _refused({"version": 999})["version"]
    assert "outside [0, 1]" in _refused({"threshold": 1.5})["threshold"]
    assert "outside [0, 1]" in _refused({"threshold": -0.1})["threshold"]
    errors = _refused({"target_precision": 0.99})
    assert "no threshold of critic version" in errors["target_precision"]
    assert "best is 0.950" in errors["target_precision"]
    errors = _refused({"threshold": 0.999999, "human_labels": "ignore", "relations": ["xWant"]})
    assert "nothing is kept" in errors["result"]
    assert "give one way" in _refused({"threshold": 0.5, "target_recall": 0.8})["target_recall"]
    assert "add up to 1" in _refused({"splits": "train=0.8,test=0.1"})["splits"]
    assert "unknown relation" in _refused({"relations": ["xWnat"]})["relations"]
    assert "no triples from source" in _refused({"sources": ["nope"]})["sources"]
    assert "not one of" in _refused({"formats": ["csv"]})["formats"]
    assert "not one of" in _refused({"human_labels": "maybe"})["human_labels"]
    # Several mistakes at once: all of them named.
    errors = _refused({"threshold": 2, "seed": "x", "splits": "train=1.5"})
    assert set(errors) == {"threshold", "seed", "splits"}
    # A version that is not usable, or that scored nothing.
    with session_scope(write=True) as session:
        failed = CriticVersion(base_model="m", state=CriticState.failed)
        unscored = CriticVersion(base_model="m", state=CriticState.ready)
        session.add_all([failed, unscored])
        session.flush()
        ids = failed.id, unscored.id
    assert "is failed" in _refused({"version": ids[0]})["version"]
    assert "has not scored" in _refused({"version": ids[1]})["version"]
    # No active version and none given.
    with session_scope(write=True) as session:
        session.get(CriticVersion, corpus.version_id).state = CriticState.retired
    assert "no critic version is active" in _refused({})["version"]
    files_after = sorted(exports_dir.rglob("*")) if exports_dir.exists() else []
    assert files_after == files_before


def test_the_job_reports_progress_and_records_the_export(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    build_corpus(heads=50)
    params = ExportParams.from_dict({"threshold": 0.5})
    kept = preview_export(params).counts.kept
    started = start_export(params, destination=tmp_path / "x")
    with session_scope() as session:  # recorded before any work, with its parameters
        record = session.get(Export, started.export_id)
        assert record.path is None and record.params["threshold"] == 0.5
        assert session.get(Job, started.job_id).state == JobState.queued
    run_job(started.job_id, run_export_job)
    with session_scope() as session:
        job = session.get(Job, started.job_id)
        record = session.get(Export, started.export_id)
        assert job.state == JobState.succeeded and job.done == job.total == 2 * kept
        assert record.path == str(tmp_path / "x")
        assert record.counts["total"] == kept
        assert record.summary["archive_sha256"]
        assert record.summary["estimate"]["precision"] is None  # no calibration campaign
    assert not list(tmp_path.glob(".tmp-*"))  # no workspace left behind


def test_jsonl_lines_are_exactly_what_json_dumps_writes(tmp_path: Path) -> None:
    """The writers assemble lines by hand for speed; they must equal the general encoder's."""
    from app.export.writers import Atomic10xJsonlWriter, StudentWriter

    names = ("rec_0.5", "rec_0.8")
    cases = [
        ('PersonX says "hi"\\', "xWant", "to go\tback ünïcode \u2028 \x01", 0.25, 1, (False, True)),
        ("PersonX", "xNeed", "none of it", None, None, (None, None)),
        ("PersonX", "HinderedBy", "x", 1e-07, -1, (True, True)),
    ]
    jsonl = Atomic10xJsonlWriter(tmp_path, ("train",), names)
    student = StudentWriter(tmp_path, ("train",), names)
    for head, relation, tail, score, valid, recs in cases:
        jsonl.write(0, head, relation, tail, score, valid, recs)
        student.write(0, head, relation, tail, score, valid, recs)
    jsonl.close()
    student.close()
    expected = [
        json.dumps(
            {"head": h, "relation": r, "tail": t, "split": "train", "p_valid_model": s, "valid": v}
            | dict(zip(names, recs, strict=True)),
            ensure_ascii=False,
        )
        for h, r, t, s, v, recs in cases
    ]
    assert (tmp_path / "jsonl" / "train.jsonl").read_text("utf-8").split("\n")[:-1] == expected
    pairs = [
        json.dumps(
            {"source": f"<head> {h} </head> <relation> {r} </relation> [GEN]", "target": t},
            ensure_ascii=False,
        )
        for h, r, t, *_ in cases
    ]
    assert (tmp_path / "student" / "train.jsonl").read_text("utf-8").split("\n")[:-1] == pairs


# --- deleting ---------------------------------------------------------------------------------


def test_delete_removes_folder_archive_and_row_all_or_nothing(  # type: ignore[no-untyped-def]
    engine, tmp_path: Path, monkeypatch
) -> None:
    from app.export.remove import ExportBusy, delete_export
    from app.export.run import archive_path

    build_corpus(heads=30)
    folder = export({"threshold": 0.5, "formats": ["jsonl"]}, tmp_path / "old")
    archive = archive_path(folder)
    with session_scope() as session:
        export_id = session.scalar(select(Export.id).where(Export.path == str(folder)))
        job_id = session.get(Export, export_id).job_id

    # A failure half-way (the archive cannot be moved) puts the folder back: nothing changed.
    real_rename = Path.rename

    def failing_rename(self: Path, target):  # type: ignore[no-untyped-def]
        if self == archive:
            raise PermissionError(f"cannot move {self}")
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", failing_rename)
    with pytest.raises(PermissionError):
        delete_export(export_id)
    monkeypatch.undo()
    assert (folder / "jsonl" / "train.jsonl").is_file() and archive.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old", "old.tar.gz"]
    with session_scope() as session:
        assert session.get(Export, export_id) is not None

    deleted = delete_export(export_id)
    assert deleted.removed == [str(folder), str(archive)] and deleted.freed_bytes > 0
    assert list(tmp_path.iterdir()) == []  # nothing left, not even the set-aside names
    with session_scope() as session:
        assert session.get(Export, export_id) is None
        assert session.get(Job, job_id).state == JobState.succeeded  # the job history stays
    with pytest.raises(LookupError, match=f"no export {export_id}"):
        delete_export(export_id)

    # An export whose job has not run yet is refused and stays.
    started = start_export(ExportParams.from_dict({"threshold": 0.5}), destination=tmp_path / "q")
    with pytest.raises(ExportBusy, match="still queued"):
        delete_export(started.export_id)
    with session_scope() as session:
        assert session.get(Export, started.export_id) is not None


# --- the corpus's own splits ------------------------------------------------------------------


def _give_splits(rule) -> None:  # type: ignore[no-untyped-def]
    """Set every triple's imported split with ``rule(triple id, head) -> split name``."""
    with session_scope(write=True) as session:
        for triple in session.scalars(select(Triple)):
            triple.split = rule(triple.id, triple.head)


def test_keeping_the_corpus_splits(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    corpus = build_corpus(heads=60)
    params = {"threshold": 0.45, "split_by": "corpus", "formats": ["jsonl", "atomic-tsv"]}

    # Triples without a split of their own are refused before any work, one of them named.
    with pytest.raises(ExportParamError) as refused:
        start_export(ExportParams.from_dict(params), destination=tmp_path / "none")
    assert "have no split of their own" in refused.value.errors["split_by"]
    assert "bakes bread" in refused.value.errors["split_by"]  # the first one, named
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Export)) == 0

    # Split by the head's number, as a published corpus would be; a "dev" split too.
    def by_head(_id: int, head: str) -> str:
        number = int(head.rstrip(".").rsplit(" ", 1)[1])
        return ("dev", "test", "train", "train", "train")[number % 5]

    _give_splits(by_head)
    folder = export(params, tmp_path / "own")
    assert sorted(p.name for p in (folder / "jsonl").iterdir()) == [
        "dev.jsonl",
        "test.jsonl",
        "train.jsonl",
    ]
    written = rows_of(folder)
    assert {(r["head"], r["relation"], r["tail"]) for rs in written.values() for r in rs} == (
        corpus.expected(0.45)
    )
    for split, records in written.items():
        assert all(by_head(0, r["head"]) == split == r["split"] for r in records)
    assert rows_of(folder, "atomic-tsv").keys() == written.keys()
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "The corpus's own splits, kept as imported" in card and "as imported" in card
    # The usual order: train, then dev, then test (the YAML header lists them so).
    header = card.split("---")[1]
    assert header.index("split: train") < header.index("split: dev") < header.index("split: test")
    assert "more than one of the corpus's own splits" not in card
    saved = json.loads((folder / "params.json").read_text())
    assert saved["split_by"] == "corpus" and "splits" not in saved
    assert ExportParams.from_dict(saved).command().count("--split-by corpus") == 1

    # A head whose triples the corpus put in two splits stays so, and the card says it.
    _give_splits(lambda triple_id, head: "train" if triple_id % 2 else "test")
    mixed = export(params, tmp_path / "mixed")
    assert "heads have triples in more than one of the corpus's own splits" in (
        (mixed / "README.md").read_text(encoding="utf-8")
    )


def test_split_shares_do_not_go_with_the_corpus_splits() -> None:
    with pytest.raises(ExportParamError) as refused:
        ExportParams.from_dict({"split_by": "corpus", "splits": "train=0.5,test=0.5"})
    assert "don't apply" in refused.value.errors["splits"]
    with pytest.raises(ExportParamError) as unknown:
        ExportParams.from_dict({"split_by": "relation"})
    assert "head, corpus" in unknown.value.errors["split_by"]
    default = ExportParams.from_dict({})
    assert "split_by" not in default.as_dict()  # a split-by-head export's params are unchanged
