"""Published hardware offers for workers a test plays without a daemon (a daemon measures and publishes its own)."""

from __future__ import annotations

from ichain.hardware import GiB, Offer

#: Both runtimes, 2 cores, 4 GiB per task: covers every example task folder.
RUNTIMES = ("ichain-runtime", "ichain-torch")


def offer(*runtimes: str, max_memory: int = 4 * GiB) -> Offer:
    """A CPU-only offer holding ``runtimes`` (default: both), as a small provider would publish it."""
    return Offer(runtimes=runtimes or RUNTIMES, cpus=2.0, memory=8 * GiB, max_cpus=2.0, max_memory=max_memory,
                 max_time_limit=3600)


def publish(market, who, *runtimes: str) -> None:
    """Publish ``offer(*runtimes)`` for ``who`` unless the chain already holds that very offer."""
    from eth_utils import keccak

    document = offer(*runtimes).encode()
    if market.worker(who.address).offer_hash != keccak(document):
        market.publish_offer(document, sender=who)
