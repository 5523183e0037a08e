"""Reading corpus files: every format, gzip, normalization, and errors that say where."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from app.corpus.formats import CorpusFormatError, ParseStats, detect_format, read_triples
from app.corpus.normalize import clean, triple_hash
from app.corpus.relations import ATOMIC2020_RELATIONS
from tests.conftest import shared_file

RELATIONS = frozenset(ATOMIC2020_RELATIONS)


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        text = text.encode("utf-8")
    if name.endswith(".gz"):
        text = gzip.compress(text)
    path.write_bytes(text)
    return path


def read(path: Path, **kwargs):  # type: ignore[no-untyped-def]
    stats = ParseStats()
    rows = list(read_triples(path, kwargs.pop("relations", RELATIONS), stats=stats, **kwargs))
    return rows, stats


def test_atomic_tsv_cleans_whitespace_skips_none_and_canonicalizes_relations(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "a.tsv",
        "PersonX  bakes\u00a0bread\txWant\t to eat it \n"
        "PersonX bakes bread\txwant\tnone\n"
        "\n"
        "PersonX bakes bread\tisafter\tPersonX buys flour\r\n",
    )
    rows, stats = read(path)
    assert [(r.head, r.relation, r.tail, r.line) for r in rows] == [
        ("PersonX bakes bread", "xWant", "to eat it", 1),
        ("PersonX bakes bread", "isAfter", "PersonX buys flour", 4),
    ]
    assert stats.skipped == {"'none' tail": 1, "blank line": 1}
    assert stats.lines == 4


def test_atomic_tsv_optional_label_column_and_header(tmp_path: Path) -> None:
    path = write(
        tmp_path, "l.tsv", "head\trelation\ttail\tlabel\nA eats\txNeed\tfood\t2\nB\txAttr\tc\t\n"
    )
    rows, stats = read(path)
    assert [(r.head, r.label) for r in rows] == [("A eats", 2), ("B", None)]
    assert stats.skipped == {"header line": 1}


def test_gzip_is_detected_from_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, "a.tsv.gz", "PersonX runs\txEffect\tgets tired\n")
    rows, _ = read(path)
    assert rows[0].tail == "gets tired"


def test_comet_tsv_splits_tails(tmp_path: Path) -> None:
    path = write(tmp_path, "c.tsv", "PersonX sings @@ xReact\thappy| proud|none|\n")
    assert detect_format(path) == "comet-tsv"
    rows, stats = read(path)
    assert [(r.head, r.relation, r.tail) for r in rows] == [
        ("PersonX sings", "xReact", "happy"),
        ("PersonX sings", "xReact", "proud"),
    ]
    assert stats.skipped == {"'none' tail": 1, "empty tail": 1}


def test_atomic10x_jsonl_keeps_split_label_and_extra_fields(tmp_path: Path) -> None:
    record = {
        "head": "PersonX adopts a cat",
        "relation": "xIntent",
        "tail": "to have a pet",
        "split": "train",
        "valid": 1,
        "p_valid_model": 0.93,
        "rec_0.5": True,
    }
    other = {"head": "PersonX naps", "relation": "xReact", "inference": "rested", "valid": None}
    path = write(tmp_path, "x.jsonl", json.dumps(record) + "\n" + json.dumps(other) + "\n")
    rows, _ = read(path)
    assert rows[0].label == 1 and rows[0].split == "train"
    assert rows[0].meta == {"p_valid_model": 0.93, "rec_0.5": True}
    assert (rows[1].tail, rows[1].label) == ("rested", None)


def write_parquet(path: Path, records: list[dict], row_group_size: int = 2) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(records), path, row_group_size=row_group_size)
    return path


def test_parquet_reads_like_the_atomic10x_jsonl(tmp_path: Path) -> None:
    """Columns as the JSONL fields, over several row groups; extra columns become metadata,
    with types JSON lacks written as text."""
    from datetime import date

    records = [
        {
            "head": f"PersonX adopts cat {i}",
            "relation": "xIntent",
            "tail": f"to have a pet {i}" if i != 3 else "none",
            "split": "train" if i % 2 else "test",
            "valid": [1, -1, None, 2, None][i],
            "p_valid_model": 0.5 + i / 10,
            "made": date(2026, 11, i + 1),
        }
        for i in range(5)
    ]
    path = write_parquet(tmp_path / "x.parquet", records)
    assert detect_format(path) == "parquet"
    progress: list[int] = []
    stats = ParseStats()
    rows = list(read_triples(path, RELATIONS, stats=stats, on_bytes=progress.append))
    assert [r.line for r in rows] == [1, 2, 3, 5]  # row 4's tail is "none"
    assert [(r.label, r.split) for r in rows] == [
        (1, "test"),
        (-1, "train"),
        (None, "test"),
        (None, "test"),
    ]
    assert rows[0].meta == {"p_valid_model": 0.5, "made": "2026-11-01"}
    assert stats.lines == 5 and stats.skipped["'none' tail"] == 1
    assert progress[-1] == path.stat().st_size


@pytest.mark.parametrize(
    ("records", "where", "field", "words"),
    [
        ([{"head": "A", "tail": "b"}], "", "relation", "missing from the columns"),
        (
            [{"head": "A", "relation": "xNeed", "tail": "b", "valid": 1}] * 2
            + [{"head": "A", "relation": "xNeed", "tail": "c", "valid": 7}],
            ":3",
            "valid",
            "answer scale",
        ),
        (
            [
                {"head": "A", "relation": "xNeed", "tail": "b"},
                {"head": "A", "relation": "nope", "tail": "c"},
            ],
            ":2",
            "relation",
            "unknown relation",
        ),
    ],
)
def test_bad_parquet_names_file_row_and_field(
    tmp_path: Path, records: list[dict], where: str, field: str, words: str
) -> None:
    path = write_parquet(tmp_path / "bad.parquet", records)
    with pytest.raises(CorpusFormatError) as caught:
        read(path)
    assert str(caught.value).startswith(f"{path}{where}: ")
    assert caught.value.field == field and words in str(caught.value)


def test_a_file_named_parquet_that_is_not_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, "fake.parquet", "head\trelation\ttail\n")
    with pytest.raises(CorpusFormatError, match=r"fake\.parquet: not a readable Parquet file"):
        read(path)


def test_jsonl_with_tail_lists_gives_one_triple_each(tmp_path: Path) -> None:
    record = {
        "head": "PersonX cooks",
        "relation": "xNeed",
        "tails": ["a pan", "none"],
        "generations": ["food", "a pan"],
    }
    rows, stats = read(write(tmp_path, "g.jsonl", json.dumps(record) + "\n"))
    assert [(r.tail, r.meta["field"]) for r in rows] == [
        ("a pan", "tails"),
        ("food", "generations"),
        ("a pan", "generations"),
    ]
    assert stats.skipped == {"'none' tail": 1}


def test_csv_with_header_any_column_order_and_quotes(tmp_path: Path) -> None:
    text = (
        "relation,tail,head,valid,note\n"
        'xAttr,"kind, generous",PersonX helps,2,x\n'
        'xWant,rest,"PersonX ""naps""",,\n'
    )
    rows, _ = read(write(tmp_path, "t.csv", text))
    assert [(r.head, r.tail, r.label, r.meta) for r in rows] == [
        ("PersonX helps", "kind, generous", 2, {"note": "x"}),
        ('PersonX "naps"', "rest", None, None),
    ]


@pytest.mark.parametrize(
    ("name", "text", "where", "field", "words"),
    [
        ("bad.tsv", "A\txNeed\tb\nA\txNeed\n", "bad.tsv:2", None, "3 tab-separated columns"),
        (
            "bad.tsv",
            "A\txNeed\tb\nA\txFeels\tc\n",
            "bad.tsv:2",
            "relation",
            "unknown relation 'xFeels'",
        ),
        ("bad.tsv", "A\txNeed\t  \n", "bad.tsv:1", "tail", "missing or empty"),
        ("bad.tsv", "A\txNeed\tb\t7\n", "bad.tsv:1", "label", "not on the answer scale"),
        (
            "bad.jsonl",
            '{"head": "A", "relation": "xNeed", "tail": "b"}\n{"head": "A",\n',
            "bad.jsonl:2",
            None,
            "invalid JSON",
        ),
        ("bad.jsonl", '["A", "xNeed", "b"]\n', "bad.jsonl:1", None, "expected a JSON object"),
        (
            "bad.jsonl",
            '{"head": "A", "relation": "xNeed"}\n',
            "bad.jsonl:1",
            "tail (or inference)",
            "missing",
        ),
        (
            "bad.jsonl",
            '{"head": 3, "relation": "xNeed", "tail": "b"}\n',
            "bad.jsonl:1",
            "head",
            "expected text",
        ),
        (
            "bad.jsonl",
            '{"head": "A", "relation": "xNeed", "tail": "b", "valid": "yes"}\n',
            "bad.jsonl:1",
            "valid",
            "answer scale",
        ),
        ("bad.csv", "head,tail\nA,b\n", "bad.csv:1", "relation", "missing from the header"),
        (
            "bad.csv",
            "head,relation,tail\nA,xNeed,b\nA,xNeed\n",
            "bad.csv:3",
            None,
            "expected 3 columns",
        ),
        ("bad.tsv", "PersonX @@ xNeed\tb\tc\n", "bad.tsv:1", None, "found 3 columns"),
        ("bad.tsv.gz", "A\txNeed\tb\nA\tnope\tc\n", "bad.tsv.gz:2", "relation", "unknown relation"),
    ],
)
def test_bad_input_names_file_line_and_field(
    tmp_path: Path, name: str, text: str, where: str, field: str | None, words: str
) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(CorpusFormatError) as caught:
        read(path)
    error = caught.value
    assert str(error).startswith(str(tmp_path / where))
    assert error.field == field
    assert words in str(error)


def test_invalid_utf8_is_reported_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "u.tsv", b"A\txNeed\tb\nA\txNeed\t\xff\xfe\n")
    with pytest.raises(CorpusFormatError, match=r"u\.tsv:2: not valid UTF-8"):
        read(path)


def test_unknown_extension_asks_for_format(tmp_path: Path) -> None:
    path = write(tmp_path, "data.xlsx", "x")
    with pytest.raises(CorpusFormatError, match="--format"):
        read(path)
    rows, _ = read(write(tmp_path, "data.dat", "A\txNeed\tb\n"), fmt="atomic-tsv")
    assert len(rows) == 1


def test_extra_relations_are_accepted_when_configured(tmp_path: Path) -> None:
    path = write(tmp_path, "e.tsv", "A\tCustomRel\tb\n")
    with pytest.raises(CorpusFormatError):
        read(path)
    rows, _ = read(path, relations=RELATIONS | {"CustomRel"})
    assert rows[0].relation == "CustomRel"


def test_hash_ignores_case_space_and_final_period_only() -> None:
    assert triple_hash(clean(" PersonX  Eats. "), "xNeed", "Food.") == triple_hash(
        "personx eats", "xNeed", "food"
    )
    assert triple_hash("personx eats", "xNeed", "food") != triple_hash(
        "personx eats", "xWant", "food"
    )
    assert triple_hash("a", "xNeed", "b c") != triple_hash("a b", "xNeed", "c")


def test_real_atomic2020_sample_parses_completely() -> None:
    path = shared_file("atomic2020_sample.tsv")
    rows, stats = read(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    none_tails = sum(1 for line in lines if line.split("\t")[2].strip().lower() == "none")
    assert len(rows) == len(lines) - none_tails
    assert stats.skipped["'none' tail"] == none_tails
    assert {r.relation for r in rows} <= RELATIONS


def test_real_comet_generations_give_human_and_machine_tails() -> None:
    path = shared_file("comet_bart_generations.jsonl")
    rows, _ = read(path)
    first = json.loads(path.open(encoding="utf-8").readline())
    expected = [t for t in first["tails"] + first["generations"] if t.strip().lower() != "none"]
    assert [r.tail for r in rows if r.line == 1] == [clean(t) for t in expected]
