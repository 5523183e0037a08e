"""Text cells that a spreadsheet would run as formulas, made inert (CSV/TSV downloads).

OWASP's CSV injection guidance: a cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return is read as a formula by Excel, LibreOffice and Google Sheets, so a tail or a
worker id such as ``=HYPERLINK(...)`` would run on a researcher's machine. Such a cell is
written with a leading single quote, which the spreadsheets show as text and do not display.
The full-width forms are included because some spreadsheets fold them to the ASCII ones.
Only text is touched: numbers (``-1`` as an answer) stay numbers, and JSONL and Parquet stay
verbatim (they are read by programs, not spreadsheets).
"""

from __future__ import annotations

FORMULA_STARTS = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")


def neutralize_formula(text: str) -> str:
    """``text``, with a leading ``'`` if a spreadsheet would otherwise treat it as a formula."""
    if text and text[0] in FORMULA_STARTS:
        return "'" + text
    return text
