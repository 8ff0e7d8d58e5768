"""What this provider offers the market: its runtimes, its machine as measured, and the limits it accepts.

The daemon measures at start and again every :data:`REMEASURE_S` seconds (an image built or a GPU added while it
runs is offered without a restart) and publishes only when the canonical document changed, so an unchanged
machine costs no transaction. The limits are the sandbox's ceilings lowered to what the machine has: a provider
never offers more memory or cores than the kernel grants it, nor GPUs its Docker engine cannot pass.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eth_utils import keccak

from ichain.hardware import Machine, Needs, Offer, detect_machine, shortfalls

if TYPE_CHECKING:
    from ichain.sandbox import Sandbox

#: Seconds between two measurements of a running daemon.
REMEASURE_S = 300.0


def measure_offer(sandbox: Sandbox, machine: Machine | None = None) -> Offer:
    """This provider's offer now.

    Args:
        sandbox: The sandbox that runs its tasks (its runtimes, GPU support and ceilings).
        machine: The measured machine (default: :func:`ichain.hardware.detect_machine`).

    Raises:
        EngineUnavailable: The Docker engine does not answer.
    """
    machine = machine or detect_machine()
    gpus = machine.gpus if sandbox.gpu_support() else ()
    return Offer(
        runtimes=tuple(sorted(sandbox.runtimes())),
        cpus=machine.cpus,
        memory=machine.memory,
        gpus=machine.gpus,
        max_cpus=min(float(sandbox.max_cpus), machine.cpus),
        max_memory=min(int(sandbox.max_memory), machine.memory),
        max_gpus=len(gpus),
        max_time_limit=int(sandbox.max_time_limit),
    )


def offer_hash(offer: Offer) -> bytes:
    """keccak256 of the canonical document: what the market stores for it."""
    return keccak(offer.encode())


def why_not(offer: Offer, needs: Needs, who: str = "this provider") -> str | None:
    """One line saying why ``who`` cannot run a task with ``needs`` (None when it can)."""
    missing = shortfalls(offer, needs)
    return f"{who} cannot run this task: {'; '.join(missing)}" if missing else None


__all__ = ["REMEASURE_S", "measure_offer", "offer_hash", "why_not"]
