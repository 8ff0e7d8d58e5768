"""How the requester's amounts and ratings read, in the CLI's lines and on the web page alike."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

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


def record_text(record: Any) -> str:
    """A role's record: its ranking score and how many ratings it rests on (``score 3.42 (2 ratings)``).

    The score is the count-aware (Bayesian, value-weighted) one the ranking uses: a worker never rated shows the
    prior (3.00) with ``no ratings yet``.
    """
    count = int(record.count)
    if not count:
        return f"score {record.score:.2f} (no ratings yet)"
    return f"score {record.score:.2f} ({count} rating{'' if count == 1 else 's'}, mean {record.sum / count:.2f})"


def rating_text(worker: Worker) -> str:
    """A worker's provider record (``score 4.10 (2 ratings, mean 4.50)``)."""
    return record_text(worker.provider_record)


def validator_text(worker: Worker) -> str:
    """A worker's validator record, with the verdicts it let expire (``score 3.00 (no ratings yet), 0 missed``)."""
    return f"{record_text(worker.validator_record)}, {worker.missed} missed"


__all__ = ["eth", "rating_text", "record_text", "validator_text"]
