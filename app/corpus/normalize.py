"""Text normalization and the dedup key of a triple.

Stored text keeps the author's casing with whitespace collapsed. The dedup key is looser: it
also ignores case and a final period, so "PersonX eats." and "personx eats" are one triple.
"""

from __future__ import annotations

import unicodedata
from hashlib import blake2b as _blake2b


def clean(text: str) -> str:
    """Unicode NFC with every run of whitespace (tabs, newlines, NBSP) collapsed to one space."""
    if "\x00" in text:  # PostgreSQL text cannot hold NUL; it is never meaningful here
        text = text.replace("\x00", " ")
    if text.isascii():
        return " ".join(text.split())
    return " ".join(unicodedata.normalize("NFC", text).split())


def _key_part(text: str) -> str:
    return text.casefold().rstrip(". ")


def triple_hash(head: str, relation: str, tail: str) -> str:
    """128-bit hex key of an already cleaned triple; equal for triples that differ only in case,
    whitespace or a trailing period."""
    # _key_part written out: this runs once per imported triple.
    key = f"{head.casefold().rstrip('. ')}\x1f{relation}\x1f{tail.casefold().rstrip('. ')}"
    return _blake2b(key.encode("utf-8"), digest_size=16).hexdigest()


def is_none_tail(tail: str) -> bool:
    """ATOMIC marks "no inference" with the tail ``none``; such rows are skipped on import."""
    return tail.casefold() in {"none", "none."}
