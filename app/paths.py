"""Where templates and static files are: the source checkout, or inside the installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def _resolve(name: str) -> Path:
    checkout = _PACKAGE.parent / name  # editable install / source checkout: top-level folder
    if checkout.is_dir():
        return checkout
    return _PACKAGE / f"_{name}"  # wheel: force-included under app/_<name>


TEMPLATES_DIR = _resolve("templates")
STATIC_DIR = _resolve("static")
DEMO_CORPUS = _PACKAGE / "corpus" / "demo" / "demo_corpus.jsonl"
