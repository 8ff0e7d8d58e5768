"""What a provider's machine has, what it offers the market, and whether that covers what a task needs.

Three small typed values, shared by the daemon (which measures and publishes), the requester (which filters
and ranks) and the web page (which shows and greys out):

- :class:`Machine`: what this machine has, measured, never declared: CPU cores and memory as the kernel grants
  them to this process (the cgroup's quota and limit when tighter than the hardware, as in a container or a
  systemd slice), and the GPUs ``nvidia-smi`` lists when it is there.
- :class:`Offer`: what a provider publishes: the runtimes it holds, the machine, and the largest limits it
  accepts. Its canonical JSON (:meth:`Offer.encode`) is the document the market's ``publishOffer`` logs; the
  chain keeps its hash, so a reader checks that the document it fetched is the current one.
- :class:`Needs`: what a task's manifest asks for (runtime, cores, memory, GPUs, GPU memory, time).

:func:`shortfalls` compares the two and says, one short line each, what is missing; an empty list means the
provider can run the task. An offer is a stranger's claim: :meth:`Offer.decode` accepts only the exact
schema, bounded, and a provider that claims hardware it lacks gains nothing the protocol pays for (it declines or
fails the task, see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ichain.errors import IChainError

MiB = 1024 * 1024
GiB = 1024 * MiB
#: The offer schema's version (a reader refuses other versions rather than guess).
OFFER_VERSION = 1
#: Longest offer document the market accepts (TaskMarket.MAX_OFFER_BYTES).
MAX_OFFER_BYTES = 2048
MAX_GPUS = 16
MAX_RUNTIMES = 16
_NAME = re.compile(r"^[a-z0-9][a-z0-9._/-]{0,63}$")
_MODEL = re.compile(r"^[ -~]{1,64}$")  # printable ASCII: a GPU model name is shown to other users
_OFFER_KEYS = {"v", "runtimes", "cpus", "memory", "gpus", "max_cpus", "max_memory", "max_gpus", "max_time_limit"}
_GPU_KEYS = {"model", "memory"}


class OfferError(IChainError):
    """An offer document that is not a valid iChain offer."""


@dataclass(frozen=True)
class GPU:
    """One GPU.

    Attributes:
        model: Its model name as the driver reports it (``NVIDIA H200``).
        memory: Its memory in bytes.
    """

    model: str
    memory: int


@dataclass(frozen=True)
class Machine:
    """What this machine grants this process.

    Attributes:
        cpus: CPU cores (fractional under a cgroup quota).
        memory: Memory in bytes.
        gpus: The GPUs ``nvidia-smi`` lists (none without the driver).
    """

    cpus: float
    memory: int
    gpus: tuple[GPU, ...] = ()


@dataclass(frozen=True)
class Needs:
    """What a task asks for (from its manifest, ``ichain.json``).

    Attributes:
        image: The runtime it runs in.
        cpus: CPU cores.
        memory: Memory in bytes.
        gpus: GPUs (0: none).
        gpu_memory: Memory each GPU must have, in bytes (0: any).
        time_limit: Seconds one run may take.
    """

    image: str
    cpus: float = 1.0
    memory: int = 512 * MiB
    gpus: int = 0
    gpu_memory: int = 0
    time_limit: float = 600.0


@dataclass(frozen=True)
class Offer:
    """What a provider offers the market.

    Attributes:
        runtimes: The runtime images it holds, ready to run.
        cpus: Its CPU cores (measured).
        memory: Its memory in bytes (measured).
        gpus: Its GPUs (measured).
        max_cpus: The most cores it gives one task.
        max_memory: The most memory it gives one task, in bytes.
        max_gpus: The most GPUs it gives one task (0 when its Docker engine cannot pass GPUs).
        max_time_limit: The longest run it accepts, in seconds.
    """

    runtimes: tuple[str, ...]
    cpus: float
    memory: int
    gpus: tuple[GPU, ...] = ()
    max_cpus: float = 1.0
    max_memory: int = 512 * MiB
    max_gpus: int = 0
    max_time_limit: int = 3600
    version: int = field(default=OFFER_VERSION)

    def to_json(self) -> dict[str, Any]:
        """The offer as a JSON object (the document's content; also the CLI's ``--json`` form)."""
        return {
            "v": self.version,
            "runtimes": list(self.runtimes),
            "cpus": self.cpus,
            "memory": self.memory,
            "gpus": [{"model": g.model, "memory": g.memory} for g in self.gpus],
            "max_cpus": self.max_cpus,
            "max_memory": self.max_memory,
            "max_gpus": self.max_gpus,
            "max_time_limit": self.max_time_limit,
        }

    def encode(self) -> bytes:
        """The canonical document (sorted keys, no spaces): equal offers give equal bytes, hence equal hashes.

        Raises:
            OfferError: The document would be longer than the market accepts (too many runtimes or GPUs).
        """
        data = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":")).encode()
        if len(data) > MAX_OFFER_BYTES:
            raise OfferError(f"the offer is {len(data)} bytes, over the market's {MAX_OFFER_BYTES}")
        return data

    @classmethod
    def decode(cls, document: bytes) -> Offer:
        """Parse a published document, strictly: the exact schema, bounded values.

        Raises:
            OfferError: Not a valid offer (the message says which field).
        """
        if len(document) > MAX_OFFER_BYTES:
            raise OfferError(f"offer longer than {MAX_OFFER_BYTES} bytes")
        try:
            data = json.loads(document.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise OfferError("offer is not JSON") from None
        if not isinstance(data, dict) or set(data) != _OFFER_KEYS:
            raise OfferError("offer does not have the iChain offer fields")
        if data["v"] != OFFER_VERSION:
            raise OfferError(f"offer version {data['v']!r} is not {OFFER_VERSION}")
        runtimes = data["runtimes"]
        if (not isinstance(runtimes, list) or len(runtimes) > MAX_RUNTIMES
                or not all(isinstance(r, str) and _NAME.match(r) for r in runtimes)):
            raise OfferError("offer runtimes must be a short list of image names")
        gpus = data["gpus"]
        if not isinstance(gpus, list) or len(gpus) > MAX_GPUS:
            raise OfferError(f"offer gpus must be a list of at most {MAX_GPUS}")
        parsed = []
        for gpu in gpus:
            if not isinstance(gpu, dict) or set(gpu) != _GPU_KEYS:
                raise OfferError("offer gpu entries must have model and memory")
            if not isinstance(gpu["model"], str) or not _MODEL.match(gpu["model"]):
                raise OfferError("offer gpu model must be printable text of at most 64 characters")
            parsed.append(GPU(gpu["model"], _count(gpu["memory"], "gpu memory")))
        return cls(
            runtimes=tuple(runtimes),
            cpus=_cores(data["cpus"], "cpus"),
            memory=_count(data["memory"], "memory"),
            gpus=tuple(parsed),
            max_cpus=_cores(data["max_cpus"], "max_cpus"),
            max_memory=_count(data["max_memory"], "max_memory"),
            max_gpus=_count(data["max_gpus"], "max_gpus", top=MAX_GPUS),
            max_time_limit=_count(data["max_time_limit"], "max_time_limit"),
        )

    def describe(self) -> str:
        """One line for people: ``2 cpus, 23.5 GiB, 1x NVIDIA H200 (141 GiB), runtimes ichain-runtime, ichain-torch``."""
        return (f"{_cores_text(self.cpus)} cpus, {size_text(self.memory)}, {gpus_text(self.gpus)}, "
                f"runtimes {', '.join(self.runtimes) or 'none'}")


def _count(value: Any, what: str, top: int = 2**63) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise OfferError(f"offer {what} must be a non-negative integer")
    return value


def _cores(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 4096:
        raise OfferError(f"offer {what} must be a number of cores")
    if isinstance(value, float) and not math.isfinite(value):
        raise OfferError(f"offer {what} must be a number of cores")
    return float(value)


def _cores_text(cpus: float) -> str:
    return f"{cpus:g}"


def size_text(size: int) -> str:
    """A byte size for people: ``512 MiB``, ``23.5 GiB``."""
    if size >= GiB:
        return f"{size / GiB:.1f} GiB".replace(".0 GiB", " GiB")
    return f"{size // MiB} MiB"


def gpus_text(gpus: tuple[GPU, ...]) -> str:
    """``no GPU``, or ``2x NVIDIA A100 (80 GiB)`` (models grouped)."""
    if not gpus:
        return "no GPU"
    groups: dict[tuple[str, int], int] = {}
    for gpu in gpus:
        groups[(gpu.model, gpu.memory)] = groups.get((gpu.model, gpu.memory), 0) + 1
    return ", ".join(f"{n}x {model} ({size_text(memory)})" for (model, memory), n in groups.items())


def shortfalls(offer: Offer, needs: Needs) -> list[str]:
    """What ``offer`` lacks to run a task with ``needs``, one short line each; empty when it can run it."""
    missing = []
    if needs.image not in offer.runtimes:
        missing.append(f"needs runtime {needs.image} (has {', '.join(offer.runtimes) or 'none'})")
    if needs.cpus > offer.max_cpus:
        missing.append(f"needs {_cores_text(needs.cpus)} cpus (gives at most {_cores_text(offer.max_cpus)})")
    if needs.memory > offer.max_memory:
        missing.append(f"needs {size_text(needs.memory)} memory (gives at most {size_text(offer.max_memory)})")
    if needs.time_limit > offer.max_time_limit:
        missing.append(f"needs {needs.time_limit:g} s per run (accepts at most {offer.max_time_limit} s)")
    if needs.gpus:
        usable = [g for g in offer.gpus if g.memory >= needs.gpu_memory]
        have = min(len(usable), offer.max_gpus)
        if have < needs.gpus:
            if not offer.gpus or not offer.max_gpus:
                missing.append(f"needs {needs.gpus} GPU(s) (has none it can pass to a task)")
            elif needs.gpu_memory:
                missing.append(f"needs {needs.gpus} GPU(s) with {size_text(needs.gpu_memory)} "
                               f"(has {have}: {gpus_text(offer.gpus)})")
            else:
                missing.append(f"needs {needs.gpus} GPU(s) (gives at most {have})")
    return missing


# ---------------------------------------------------------------------------------------------- detection
_CGROUP = Path("/sys/fs/cgroup")


def detect_machine(cgroup_root: Path = _CGROUP, proc: Path = Path("/proc")) -> Machine:
    """Measure what this process is granted: cores, memory and GPUs.

    Cores: the CPUs this process may run on, lowered by a cgroup CPU quota. Memory: ``MemTotal``, lowered by a
    cgroup memory limit. GPUs: ``nvidia-smi``'s list when it is installed and answers (none otherwise).

    Args:
        cgroup_root: Where the cgroup file system is mounted (a test points it elsewhere).
        proc: Where ``/proc`` is.
    """
    cpus = float(len(os.sched_getaffinity(0)))
    quota = _cgroup_cpu_quota(cgroup_root, proc)
    if quota is not None:
        cpus = min(cpus, quota)
    memory = _meminfo_total(proc)
    limit = _cgroup_memory_limit(cgroup_root, proc)
    if limit is not None:
        memory = min(memory, limit)
    return Machine(cpus=round(cpus, 2), memory=memory, gpus=nvidia_gpus())


def _meminfo_total(proc: Path) -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in (proc / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def _own_cgroups(proc: Path) -> list[tuple[str, str]]:
    """(controllers, path) pairs of this process's cgroups (v2 has controllers ``""``)."""
    pairs = []
    with contextlib.suppress(OSError):
        for line in (proc / "self" / "cgroup").read_text().splitlines():
            parts = line.split(":", 2)
            if len(parts) == 3:
                pairs.append((parts[1], parts[2]))
    return pairs


def _cgroup_dirs(root: Path, proc: Path, controller: str) -> list[Path]:
    """This process's cgroup folder and its ancestors, for ``controller`` (v1) or the unified tree (v2)."""
    dirs = []
    for controllers, path in _own_cgroups(proc):
        if controllers == "":
            # hybrid hosts mount the unified (v2) tree under "unified"
            base = root if (root / "cgroup.controllers").exists() or not (root / "unified").is_dir() else root / "unified"
        elif controller in controllers.split(","):
            base = root / controllers if (root / controllers).is_dir() else root / controller
        else:
            continue
        current = base / path.lstrip("/")
        while True:
            dirs.append(current)
            if current == base or current.parent == current:
                break
            current = current.parent
    return dirs


def _cgroup_cpu_quota(root: Path, proc: Path) -> float | None:
    """The tightest CPU quota (cores) on this process's cgroup path, or None when unlimited."""
    found: list[float] = []
    for folder in _cgroup_dirs(root, proc, "cpu"):
        with contextlib.suppress(OSError, ValueError):
            quota, period = (folder / "cpu.max").read_text().split()[:2]
            if quota != "max":
                found.append(int(quota) / int(period))
            continue
        with contextlib.suppress(OSError, ValueError):
            quota_us = int((folder / "cpu.cfs_quota_us").read_text())
            period_us = int((folder / "cpu.cfs_period_us").read_text())
            if quota_us > 0:
                found.append(quota_us / period_us)
    return min(found) if found else None


def _cgroup_memory_limit(root: Path, proc: Path) -> int | None:
    """The tightest memory limit (bytes) on this process's cgroup path, or None when unlimited."""
    found: list[int] = []
    for folder in _cgroup_dirs(root, proc, "memory"):
        for name in ("memory.max", "memory.limit_in_bytes"):
            with contextlib.suppress(OSError, ValueError):
                text = (folder / name).read_text().strip()
                # cgroup v1 writes "unlimited" as a huge page-rounded number
                if text != "max" and int(text) < 2**60:
                    found.append(int(text))
    return min(found) if found else None


def nvidia_gpus(timeout: float = 10.0) -> tuple[GPU, ...]:
    """The GPUs ``nvidia-smi`` lists (name and total memory), or none when it is absent or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=True)
    except (OSError, subprocess.SubprocessError):
        return ()
    return parse_nvidia_smi(out.stdout)


def parse_nvidia_smi(text: str) -> tuple[GPU, ...]:
    """Parse ``nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits`` (memory in MiB)."""
    gpus = []
    for line in text.splitlines():
        name, _, memory = line.rpartition(",")
        name = " ".join(name.split())[:64]
        with contextlib.suppress(ValueError):
            if name and _MODEL.match(name):
                gpus.append(GPU(name, int(float(memory.strip())) * MiB))
    return tuple(gpus[:MAX_GPUS])


__all__ = ["GPU", "MAX_OFFER_BYTES", "Machine", "Needs", "OFFER_VERSION", "Offer", "OfferError", "detect_machine",
           "gpus_text", "nvidia_gpus", "parse_nvidia_smi", "shortfalls", "size_text"]
