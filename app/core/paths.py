"""Where templates and static files are: the source checkout, or inside the installed wheel."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent  # the `app` package


def _resolve(name: str) -> Path:
    root = _PACKAGE.parent
    # Source checkout or editable install: the top-level folder beside pyproject.toml (the
    # check keeps an unrelated site-packages/templates from being picked up).
    if (root / "pyproject.toml").is_file() and (root / name).is_dir():
        return root / name
    return _PACKAGE / f"_{name}"  # wheel: force-included under app/_<name>


TEMPLATES_DIR = _resolve("templates")
STATIC_DIR = _resolve("static")
DEMO_CORPUS = _PACKAGE / "corpus" / "demo" / "demo_corpus.jsonl"
