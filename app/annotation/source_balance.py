"""How a campaign's sample is spread over the corpus sources it covers.

A campaign that compares sources (``--purpose evaluation --source teacher --source atomic2020``)
is only as good as its smallest group: a uniform sample of a 100,000-triple teacher run and a
5,000-triple reference gives the reference about 5% of the items and an interval four times as
wide as it needs. So an evaluation sample gives each source an equal share by default; a
calibration or training sample stays proportional (it estimates the corpus as it is).

``equal_shares`` is the arithmetic: as equal as the sources' sizes allow, a source smaller
than its share gives all it has and the rest is split among the others, so the total is still
the sample size whenever the selection holds that many.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.core.models import CampaignPurpose

AUTO = "auto"
EQUAL = "equal"
PROPORTIONAL = "proportional"
BALANCES = (AUTO, EQUAL, PROPORTIONAL)
BALANCE_HELP = {
    AUTO: "equal for an evaluation campaign, proportional otherwise",
    EQUAL: "each source gets an equal share of the sample",
    PROPORTIONAL: "a uniform sample: each source in proportion to its size",
}


def check_balance(balance: str) -> str | None:
    """The message for a balance that is not one of ``BALANCES``, else None."""
    if balance in BALANCES:
        return None
    return f"use {', '.join(BALANCES)}"


def resolved_balance(balance: str, purpose: CampaignPurpose | str) -> str:
    """``equal`` or ``proportional``: what ``auto`` means for this purpose."""
    if balance != AUTO:
        return balance
    return EQUAL if purpose == CampaignPurpose.evaluation else PROPORTIONAL


def equal_shares(sizes: Mapping[str, int], total: int) -> dict[str, int]:
    """Split ``total`` over the sources as evenly as their ``sizes`` allow (source -> count).

    Smallest sources first: each takes the rounded-up even split of what is left, or all it
    has, so no source gets more than another unless the other ran out.
    """
    shares: dict[str, int] = {}
    left = max(0, total)
    ordered = sorted(sizes.items(), key=lambda item: (item[1], item[0]))
    for position, (source, size) in enumerate(ordered):
        remaining_sources = len(ordered) - position
        share = min(size, -(-left // remaining_sources))
        shares[source] = share
        left -= share
    return {source: shares[source] for source in sorted(shares)}


def describe_shares(shares: Mapping[str, int]) -> str:
    """``A 150 · B 150``: the shares as the campaign page and the CLI print them."""
    return " · ".join(f"{source} {count:,}" for source, count in shares.items())
