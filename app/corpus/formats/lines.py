"""Bytes to numbered text lines: gzip detection, bounded blocks, decoding errors with file and
line, and limits that keep memory bounded whatever the file holds.

A line longer than ``SKD_MAX_LINE_BYTES`` is refused as soon as that many bytes of it have been
read (a 400 MB line in a 400 KB gzip never reaches memory whole), and so is a file that
decompresses to more than ``SKD_MAX_DECOMPRESSED_BYTES`` (a gzip bomb). Both errors name the
file and the line.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterator
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


class _Oversize(Exception):
    """A limit was crossed; ``_decoded_lines`` turns it into an error naming file and line."""


def _line_blocks(
    stream: IO[bytes], max_line: int | None = None, max_total: int | None = None
) -> Iterator[bytes]:
    """The stream in blocks of whole lines (each ends with a newline, except perhaps the last).

    Raises ``_Oversize`` once an unfinished line exceeds ``max_line`` bytes or the stream
    ``max_total`` bytes, so at most about ``max_line`` plus one block is ever held.
    """
    pending: list[bytes] = []
    pending_size = 0
    total = 0
    while block := stream.read(_BLOCK_BYTES):
        total += len(block)
        if max_total is not None and total > max_total:
            raise _Oversize(
                f"decompressed size exceeds {max_total:,} bytes (SKD_MAX_DECOMPRESSED_BYTES)"
            )
        end = block.rfind(b"\n") + 1
        if end == 0:
            pending.append(block)
            pending_size += len(block)
            if max_line is not None and pending_size > max_line:
                raise _Oversize(f"line longer than {max_line:,} bytes (SKD_MAX_LINE_BYTES)")
            continue
        if pending:
            pending.append(block[:end])
            yield b"".join(pending)
            pending = []
            pending_size = 0
        else:
            yield block[:end] if end < len(block) else block
        if end < len(block):
            pending.append(block[end:])
            pending_size = len(block) - end
    if pending:
        yield b"".join(pending)


def _decoded_lines(
    stream: IO[bytes],
    file: str,
    stats: ParseStats,
    *,
    max_line: int | None = None,
    max_total: int | None = None,
    on_block: Callable[[], None] | None = None,
) -> Iterator[tuple[int, str]]:
    """(line number, text without line ending); undecodable bytes are an error at their line.

    Lines are the ``\\n``-separated pieces of the bytes, as binary line iteration gives them,
    but decoded a block at a time: per-line decoding was a large part of reading a big file.
    ``on_block`` is called after each block (about 1 MiB), so a long read keeps reporting
    progress (and its job's heartbeat) even where no line gives a triple.
    """
    number = 0
    try:
        for number, line in _numbered_lines(stream, file, stats, max_line, max_total, on_block):
            yield number, line
    except _Oversize as exc:
        stats.lines = number + 1
        raise CorpusFormatError(file, number + 1, None, str(exc)) from None


def _numbered_lines(
    stream: IO[bytes],
    file: str,
    stats: ParseStats,
    max_line: int | None,
    max_total: int | None,
    on_block: Callable[[], None] | None,
) -> Iterator[tuple[int, str]]:
    number = 0
    for block in _line_blocks(stream, max_line, max_total):
        if on_block is not None:
            on_block()
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
        long_lines = max_line is not None and len(block) > max_line
        for line in lines:
            number += 1
            stats.lines = number
            if long_lines and len(line.encode("utf-8")) > max_line:  # type: ignore[operator]
                raise CorpusFormatError(
                    file, number, None, f"line longer than {max_line:,} bytes (SKD_MAX_LINE_BYTES)"
                )
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
