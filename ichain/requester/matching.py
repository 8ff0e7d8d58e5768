"""Which workers can run a task: their published offers against the task's needs.

A provider publishes what it has (:class:`ichain.hardware.Offer`) through the market; the chain keeps the
document's hash and the block of its log, so :meth:`ichain.market.Market.offer_documents` fetches exactly the
current documents. A task's manifest states what it needs (:meth:`ichain.sandbox.TaskSpec.needs`). :func:`assess` pairs each worker
with its offer and what it lacks; the requester's ranking keeps only those that lack nothing, and the web page
greys out the rest with the reason.

A worker that published no offer (or whose document does not parse) is never matched: nothing says it has the
task's runtime, and a task sent to a provider that cannot run it only comes back declined.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ichain.hardware import Needs, Offer, OfferError, shortfalls
from ichain.market import Market, Worker

#: Why a worker without a readable offer is never matched.
NO_OFFER = "has published no hardware offer"


@dataclass(frozen=True)
class Candidate:
    """A worker with its published offer and what it lacks for one task.

    Attributes:
        worker: The worker as on chain.
        offer: Its current offer (None when it published none, or an unreadable one).
        shortfalls: What it lacks to run the task, one short line each (empty: it can run it).
    """

    worker: Worker
    offer: Offer | None
    shortfalls: tuple[str, ...] = field(default_factory=tuple)

    @property
    def fits(self) -> bool:
        """True when the worker can run the task."""
        return not self.shortfalls


def offers(market: Market, workers: Iterable[Worker]) -> dict[str, Offer]:
    """The current, readable offers of ``workers`` (checksummed address -> offer; absent when none)."""
    parsed = {}
    for address, document in market.offer_documents(list(workers)).items():
        try:
            parsed[address] = Offer.decode(document)
        except OfferError:
            continue  # a malformed document is a worker we cannot match, not an error of the requester's
    return parsed


def lacks(offer: Offer | None, needs: Needs) -> tuple[str, ...]:
    """What a worker with ``offer`` (None: it published none) lacks to run a task with ``needs``."""
    return (NO_OFFER,) if offer is None else tuple(shortfalls(offer, needs))


def assess(market: Market, workers: Sequence[Worker], needs: Needs | None) -> list[Candidate]:
    """Each worker (in the given order) with its offer and, when ``needs`` is given, what it lacks."""
    known = offers(market, workers)
    out = []
    for w in workers:
        offer = known.get(w.address)
        out.append(Candidate(w, offer, () if needs is None else lacks(offer, needs)))
    return out


__all__ = ["Candidate", "NO_OFFER", "assess", "lacks", "offers"]
