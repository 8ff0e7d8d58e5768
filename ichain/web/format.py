"""Formatting helpers for the web page (amounts, addresses, ratings), also used as Jinja filters."""

from __future__ import annotations

import re
import time
from decimal import Decimal

from ichain.requester.format import WEI_PER_ETH, eth

__all__ = ["eth", "parse_eth", "short", "stars", "user_message"]


def parse_eth(text: str | None, field: str) -> int:
    """Parse an ether amount typed in a form into wei.

    Args:
        text: What the user typed, e.g. ``"0.01"``.
        field: The field's name, for the error message.

    Returns:
        The amount in wei.

    Raises:
        WebInputError: When the text is not a non-negative number.
    """
    from ichain.web.errors import WebInputError

    try:
        value = Decimal((text or "").strip())
    except Exception:
        raise WebInputError(f"{field}: {text!r} is not a number of ether (e.g. 0.01)") from None
    if not value.is_finite() or value < 0:
        raise WebInputError(f"{field}: must be a positive amount of ether")
    wei = value * WEI_PER_ETH
    if wei != wei.to_integral_value():
        raise WebInputError(f"{field}: more than 18 decimals")
    return int(wei)


def short(address: str | None) -> str:
    """Shorten an address for narrow places (``0x1234…abcd``)."""
    if not address:
        return "–"
    address = str(address)
    return address if len(address) <= 14 else f"{address[:6]}…{address[-4:]}"


def stars(average: float | None) -> str:
    """Show an average rating (1..5) as five stars, filled to the rounded average (None: never rated)."""
    if average is None:
        return "no rating yet"
    full = int(round(average))
    return "★" * full + "☆" * (5 - full)


def user_message(exc: BaseException) -> str:
    """The one line the page shows for a user error.

    Typed SDK / sandbox errors get their kind as a title ("Insufficient deposit: ..."), and amounts
    in wei are shown in ether, so the line reads well on a page; the wording is the SDK's own.
    """
    text = " ".join(str(exc).split())
    module = type(exc).__module__
    if module.startswith(("ichain.market", "ichain.sandbox")):
        title = re.sub(r"(?<!^)(?=[A-Z])", " ", type(exc).__name__).capitalize()
        if not text.lower().startswith(title.lower()):
            text = f"{title}: {text}"
    text = re.sub(r"\b(\d{4,}) wei\b", lambda m: eth(int(m.group(1))), text)
    # Unix times in SDK messages ("can be expired after 1795641436") as readable UTC times.
    return re.sub(r"\b(after|before|at|until) (1\d{9})\b",
                  lambda m: f"{m.group(1)} {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(int(m.group(2))))}",
                  text)
