"""Markdown for campaign guidelines, rendered safely (raw HTML in the source is escaped)."""

from __future__ import annotations

from markdown_it import MarkdownIt
from markupsafe import Markup

_md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def render_markdown(text: str | None) -> Markup:
    """HTML for ``text``; safe to insert into a template without ``|safe``."""
    return Markup(_md.render(text or ""))
