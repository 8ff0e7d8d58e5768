"""How the requester's amounts and ratings read, in the CLI's lines and on the web page alike."""

from __future__ import annotations

from decimal import Decimal

from ichain.market import Worker

WEI_PER_ETH = Decimal(10) ** 18


def eth(wei: int | None) -> str:
    """Format an amount in wei as ether, without trailing zeros.

    Args:
        wei: The amount in wei (``None`` shows as a dash).

    Returns:
        A string such as ``"1.25 ETH"``.
    """
    if wei is None:
        return "–"
    value = (Decimal(int(wei)) / WEI_PER_ETH).quantize(Decimal("0.000001"))
    return f"{format(value.normalize(), 'f')} ETH"


def rating_text(worker: Worker) -> str:
    """A worker's average rating and how many ratings it rests on (``4.50 (2 ratings)``, ``no rating yet``)."""
    average = worker.average_rating
    if average is None:
        return "no rating yet"
    plural = "" if worker.rating_count == 1 else "s"
    return f"{average:.2f} ({worker.rating_count} rating{plural})"
