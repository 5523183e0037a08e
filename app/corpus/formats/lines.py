"""Bytes to numbered text lines: gzip detection, bounded blocks, decoding errors with file and
line."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from app.corpus.formats.base import (
    CorpusFormatError,
    ParseStats,
)


class _open_binary:
    """Open a file for binary line iteration, transparently gunzipping; also yields the raw
    file so progress can follow the (compressed) byte position."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> tuple[IO[bytes], IO[bytes]]:
        self.raw = open(self.path, "rb")  # noqa: SIM115 - closed in __exit__
        magic = self.raw.read(2)
        self.raw.seek(0)
        self.stream: IO[bytes] = (
            gzip.GzipFile(fileobj=self.raw, mode="rb") if magic == b"\x1f\x8b" else self.raw
        )
        return self.stream, self.raw

    def __exit__(self, *exc: object) -> None:
        if self.stream is not self.raw:
            self.stream.close()
        self.raw.close()


_BLOCK_BYTES = 1 << 20


def _line_blocks(stream: IO[bytes]) -> Iterator[bytes]:
    """The stream in blocks of whole lines (each ends with a newline, except perhaps the last)."""
    pending: list[bytes] = []
    while block := stream.read(_BLOCK_BYTES):
        end = block.rfind(b"\n") + 1
        if end == 0:
            pending.append(block)
            continue
        if pending:
            pending.append(block[:end])
            yield b"".join(pending)
            pending = []
        else:
            yield block[:end] if end < len(block) else block
        if end < len(block):
            pending.append(block[end:])
    if pending:
        yield b"".join(pending)


def _decoded_lines(stream: IO[bytes], file: str, stats: ParseStats) -> Iterator[tuple[int, str]]:
    """(line number, text without line ending); undecodable bytes are an error at their line.

    Lines are the ``\\n``-separated pieces of the bytes, as binary line iteration gives them,
    but decoded a block at a time: per-line decoding was a large part of reading a big file.
    """
    number = 0
    for block in _line_blocks(stream):
        error: UnicodeDecodeError | None = None
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError as exc:
            error = exc
            bad_line_start = block.rfind(b"\n", 0, exc.start) + 1
            text = block[:bad_line_start].decode("utf-8")  # the good lines before it
        lines = text.split("\n")
        if text.endswith("\n") or not text:
            lines.pop()  # split's empty piece after the final newline
        if number == 0 and lines:
            lines[0] = lines[0].removeprefix("\ufeff")
        strip = "\r" in text
        for line in lines:
            number += 1
            stats.lines = number
            yield number, line.rstrip("\r\n") if strip else line
        if error is not None:
            number += 1
            stats.lines = number
            raise CorpusFormatError(
                file,
                number,
                None,
                f"not valid UTF-8 (byte {error.start - bad_line_start + 1} of the line)",
            )
