"""The file formats of an export, each written row by row, one file per split.

All writers receive the same stream (one pass over the database feeds every format) and keep
at most a bounded buffer: text formats go through a 1 MiB file buffer; Parquet collects
``PARQUET_ROWS_PER_GROUP`` rows per split and writes them as one row group. Output is a pure
function of the rows, in order, so the same rows give byte-identical files.

Layout under the export folder (``<split>`` is each split's name, e.g. train, val, test)::

    atomic-tsv/<split>.tsv      head<TAB>relation<TAB>tail, no header (ATOMIC 2020)
    jsonl/<split>.jsonl         ATOMIC-10X: head, relation, tail, split, p_valid_model, valid,
                                rec_0.5 ... rec_0.9
    parquet/<split>.parquet     the same columns, zstd-compressed
    student/<split>.jsonl       {"source": "<head> h </head> <relation> r </relation> [GEN]",
                                 "target": tail}
"""

from __future__ import annotations

from json.encoder import encode_basestring  # json's own (C) string encoder, non-ASCII kept
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from app.core.cells import neutralize_formula

if TYPE_CHECKING:
    import pyarrow as pa


PARQUET_ROWS_PER_GROUP = 50000
_TEXT_BUFFER = 1 << 20
# Stored text is already cleaned (one space between words), so tabs and line breaks cannot
# occur; mapped to spaces anyway, because a stray one would silently shift a TSV's columns.
_TSV_SAFE = str.maketrans({"\t": " ", "\n": " ", "\r": " "})
_JSON_CONSTANTS = {True: "true", False: "false", None: "null"}


def student_source(head: str, relation: str) -> str:
    """The student's input for (head, relation); the tail follows after one space."""
    return f"<head> {head} </head> <relation> {relation} </relation> [GEN]"


class FormatWriter:
    """One format: ``write`` a kept triple into its split's file, ``close`` when done."""

    folder = ""
    extension = ""

    def __init__(self, root: Path, split_names: tuple[str, ...], rec_names: tuple[str, ...]):
        self.directory = root / self.folder
        self.directory.mkdir(parents=True, exist_ok=True)
        self.split_names = split_names
        self.rec_names = rec_names
        self.paths = [self.directory / f"{name}.{self.extension}" for name in split_names]

    def write(
        self,
        split: int,
        head: str,
        relation: str,
        tail: str,
        p_valid: float | None,
        valid: int | None,
        recs: tuple[bool | None, ...],
    ) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class _TextWriter(FormatWriter):
    def __init__(self, root: Path, split_names: tuple[str, ...], rec_names: tuple[str, ...]):
        super().__init__(root, split_names, rec_names)
        self.handles: list[IO[str]] = [
            path.open("w", encoding="utf-8", newline="\n", buffering=_TEXT_BUFFER)
            for path in self.paths
        ]

    def close(self) -> None:
        for handle in self.handles:
            handle.close()


class AtomicTsvWriter(_TextWriter):
    folder, extension = "atomic-tsv", "tsv"

    def write(self, split, head, relation, tail, p_valid, valid, recs) -> None:  # type: ignore[no-untyped-def]
        # A spreadsheet opens TSV too: formula-like cells are made inert (app.core.cells).
        head = neutralize_formula(head.translate(_TSV_SAFE))
        tail = neutralize_formula(tail.translate(_TSV_SAFE))
        self.handles[split].write(f"{head}\t{relation}\t{tail}\n")


class Atomic10xJsonlWriter(_TextWriter):
    """ATOMIC-10X's fields. ``valid``: 1 when the majority of human raters found the triple
    acceptable, -1 when they did not, null without a decided label (on the paper's scale,
    > 0 is acceptable, so the file imports back with its labels). ``rec_X``: the score reaches
    the threshold at which the critic's held-out recall is X (null when no threshold does).

    Each line is exactly what ``json.dumps(record, ensure_ascii=False)`` writes, assembled
    from the same C string encoder: this runs once per exported triple, and building a dict
    for the general encoder was most of the time of writing the file.
    """

    folder, extension = "jsonl", "jsonl"

    def __init__(self, root: Path, split_names: tuple[str, ...], rec_names: tuple[str, ...]):
        super().__init__(root, split_names, rec_names)
        self.split_json = [encode_basestring(name) for name in split_names]
        self.rec_keys = [encode_basestring(name) for name in rec_names]
        self.rec_json: dict[tuple[bool | None, ...], str] = {}
        self.relation_json: dict[str, str] = {}

    def _recs(self, recs: tuple[bool | None, ...]) -> str:
        text = "".join(
            f", {key}: {_JSON_CONSTANTS[flag]}"
            for key, flag in zip(self.rec_keys, recs, strict=True)
        )
        self.rec_json[recs] = text
        return text

    def write(self, split, head, relation, tail, p_valid, valid, recs) -> None:  # type: ignore[no-untyped-def]
        relation_json = self.relation_json.get(relation)
        if relation_json is None:
            relation_json = self.relation_json[relation] = encode_basestring(relation)
        score = "null" if p_valid is None else float.__repr__(p_valid)
        label = "null" if valid is None else int.__repr__(valid)
        recs_json = self.rec_json.get(recs)
        if recs_json is None:
            recs_json = self._recs(recs)
        self.handles[split].write(
            f'{{"head": {encode_basestring(head)}, "relation": {relation_json}, '
            f'"tail": {encode_basestring(tail)}, "split": {self.split_json[split]}, '
            f'"p_valid_model": {score}, "valid": {label}{recs_json}}}\n'
        )


class StudentWriter(_TextWriter):
    """One pair per triple: the student reads ``source``, learns to write ``target``; a causal
    LM trains on ``source + " " + target`` (the paper's GPT-2 input, then the tail). Lines are
    ``json.dumps(pair, ensure_ascii=False)``, assembled like the JSONL's."""

    folder, extension = "student", "jsonl"

    def write(self, split, head, relation, tail, p_valid, valid, recs) -> None:  # type: ignore[no-untyped-def]
        self.handles[split].write(
            f'{{"source": {encode_basestring(student_source(head, relation))}, '
            f'"target": {encode_basestring(tail)}}}\n'
        )


def parquet_schema(rec_names: tuple[str, ...]) -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            ("head", pa.string()),
            ("relation", pa.string()),
            ("tail", pa.string()),
            ("split", pa.string()),
            ("p_valid_model", pa.float64()),
            ("valid", pa.int8()),
            *[(name, pa.bool_()) for name in rec_names],
        ]
    )


class ParquetWriter(FormatWriter):
    """The JSONL's columns in Parquet; ``datasets.load_dataset("parquet", data_files=...)``
    and pandas read it as is.

    Memory: Python objects cost ~600 bytes a row, Arrow ~100. So rows are held as Python
    lists only ``_ROWS_PER_BATCH`` at a time, then converted to an Arrow batch; the batches of
    a split are written as one row group once they reach ``PARQUET_ROWS_PER_GROUP`` rows.
    """

    folder, extension = "parquet", "parquet"
    _ROWS_PER_BATCH = 4096

    def __init__(self, root: Path, split_names: tuple[str, ...], rec_names: tuple[str, ...]):
        # pyarrow is imported here, not with the module: it is a third of the process's
        # memory, and an export without Parquet has no use for it.
        import pyarrow.parquet as pq

        super().__init__(root, split_names, rec_names)
        self.schema = parquet_schema(rec_names)
        self.writers = [
            pq.ParquetWriter(path, self.schema, compression="zstd") for path in self.paths
        ]
        self.buffers: list[list[list[Any]]] = [self._empty() for _ in split_names]
        self.batches: list[list[Any]] = [[] for _ in split_names]  # Arrow batches per split
        self.batched_rows = [0 for _ in split_names]

    def _empty(self) -> list[list[Any]]:
        return [[] for _ in range(5 + len(self.rec_names))]

    def write(self, split, head, relation, tail, p_valid, valid, recs) -> None:  # type: ignore[no-untyped-def]
        columns = self.buffers[split]
        columns[0].append(head)
        columns[1].append(relation)
        columns[2].append(tail)
        columns[3].append(p_valid)
        columns[4].append(valid)
        for index, flag in enumerate(recs, 5):
            columns[index].append(flag)
        if len(columns[0]) >= self._ROWS_PER_BATCH:
            self._to_arrow(split)
            if self.batched_rows[split] >= PARQUET_ROWS_PER_GROUP:
                self._write_group(split)

    def _to_arrow(self, split: int) -> None:
        import pyarrow as pa

        columns = self.buffers[split]
        rows = len(columns[0])
        if not rows:
            return
        types = [field.type for field in self.schema]
        arrays = [
            pa.array(columns[0], pa.string()),
            pa.array(columns[1], pa.string()),
            pa.array(columns[2], pa.string()),
            pa.array([self.split_names[split]] * rows, pa.string()),
            pa.array(columns[3], pa.float64()),
            pa.array(columns[4], pa.int8()),
            *[pa.array(values, types[6 + i]) for i, values in enumerate(columns[5:])],
        ]
        self.batches[split].append(pa.record_batch(arrays, schema=self.schema))
        self.batched_rows[split] += rows
        self.buffers[split] = self._empty()

    def _write_group(self, split: int) -> None:
        import pyarrow as pa

        if self.batches[split]:
            table = pa.Table.from_batches(self.batches[split], schema=self.schema)
            self.writers[split].write_table(table, row_group_size=max(1, table.num_rows))
        self.batches[split] = []
        self.batched_rows[split] = 0

    def close(self) -> None:
        for split, writer in enumerate(self.writers):
            self._to_arrow(split)
            self._write_group(split)
            writer.close()


WRITERS: dict[str, type[FormatWriter]] = {
    "atomic-tsv": AtomicTsvWriter,
    "jsonl": Atomic10xJsonlWriter,
    "parquet": ParquetWriter,
    "student": StudentWriter,
}
