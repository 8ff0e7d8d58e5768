"""Where the TaskMarket and Ratings contracts live, per network.

Deployments are recorded in JSON registries keyed by chain id, so every command finds the contracts for whatever
network it is connected to (including an anvil fork, which keeps the chain id of its upstream). A lookup reads,
in order, and takes the first registry that has the chain id:

1. ``$ICHAIN_DEPLOYMENTS`` (one file for every chain; tests use it to write into a temporary folder);
2. for public chains, the user registry ``<ape data folder>/ichain/deployments.json`` (``~/.ape`` unless
   ``APE_DATA_FOLDER`` says otherwise), where ``ape ichain deploy`` records a deployment of one's own;
   for ephemeral local chains (chain ids 1337 and 31337: anvil, ape's test provider), ``.ichain/deployments.json``
   relative to the current folder instead, because their addresses die with the chain (like the state folder);
3. for public chains, the registry packaged with iChain (``ichain/deployments.json``): the public deployments a
   release ships.

Writes go to the first of those that applies (never the packaged one), through ``NAME.part`` then ``os.replace``,
so a crash never leaves a half-written registry.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ichain.errors import IChainError

LOCAL_CHAIN_IDS = frozenset({1337, 31337})
ENV_REGISTRY = "ICHAIN_DEPLOYMENTS"
PACKAGED_REGISTRY = Path(__file__).resolve().with_name("deployments.json")


class DeploymentError(IChainError):
    """No usable deployment for the connected network, or an unreadable registry."""


@dataclass(frozen=True)
class Deployment:
    """One recorded deployment of the market.

    Attributes:
        chain_id: Chain id of the network it lives on.
        network: Ape network choice it was deployed with (``ethereum:sepolia:node``...), informative.
        market: TaskMarket address.
        ratings: Ratings address (deployed by the market).
        block: Block of the deployment (where event scans can start).
        deployer: Deployer address.
        validation_window: Constructor parameter, seconds.
        min_timeout: Constructor parameter, seconds.
        max_timeout: Constructor parameter, seconds.
        deployed_at: Unix time of the recording.
    """

    chain_id: int
    network: str
    market: str
    ratings: str
    block: int
    deployer: str = ""
    validation_window: int = 0
    min_timeout: int = 0
    max_timeout: int = 0
    deployed_at: int = 0

    @property
    def address(self) -> str:
        """The market address (what most callers want)."""
        return self.market


def user_registry() -> Path:
    """The user registry: ``<ape data folder>/ichain/deployments.json`` (honours ``APE_DATA_FOLDER``)."""
    try:
        from ape.utils import ManagerAccessMixin

        data_folder = Path(ManagerAccessMixin.config_manager.DATA_FOLDER)
    except Exception:  # ape not configured: its own default
        data_folder = Path(os.environ.get("APE_DATA_FOLDER") or Path.home() / ".ape")
    return data_folder / "ichain" / "deployments.json"


def local_registry() -> Path:
    """The registry of local chains: ``.ichain/deployments.json`` under the current folder."""
    return Path.cwd() / ".ichain" / "deployments.json"


def registry_path(chain_id: int) -> Path:
    """The registry file a deployment on ``chain_id`` is recorded in.

    Args:
        chain_id: The chain id.

    Returns:
        ``$ICHAIN_DEPLOYMENTS`` if set, else :func:`local_registry` for local chains and :func:`user_registry`
        for public ones.
    """
    override = os.environ.get(ENV_REGISTRY)
    if override:
        return Path(override)
    if int(chain_id) in LOCAL_CHAIN_IDS:
        return local_registry()
    return user_registry()


def search_path(chain_id: int) -> list[Path]:
    """The registries a lookup of ``chain_id`` reads, first match wins (see the module docstring)."""
    paths = []
    if override := os.environ.get(ENV_REGISTRY):
        paths.append(Path(override))
    if int(chain_id) in LOCAL_CHAIN_IDS:
        paths.append(local_registry())
    else:
        paths += [user_registry(), PACKAGED_REGISTRY]
    return paths


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DeploymentError(f"cannot read deployment registry {path}: {err}") from None
    if not isinstance(data, dict):
        raise DeploymentError(f"deployment registry {path} is not a JSON object")
    return data


def record(deployment: Deployment, path: Path | None = None) -> Path:
    """Record (or replace) the deployment for its chain id.

    Args:
        deployment: What was deployed.
        path: Registry file; default :func:`registry_path` of the chain id (never the packaged registry).

    Returns:
        The registry file written.
    """
    path = Path(path) if path else registry_path(deployment.chain_id)
    data = _read(path)
    entry = asdict(deployment)
    entry["deployed_at"] = entry["deployed_at"] or int(time.time())
    data[str(deployment.chain_id)] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(part, path)
    return path


def find(chain_id: int, path: Path | None = None) -> Deployment:
    """The deployment recorded for ``chain_id``.

    Args:
        chain_id: Chain id of the connected network.
        path: Read only this registry file; default :func:`search_path` of the chain id.

    Returns:
        The recorded deployment (from the first registry that has the chain id).

    Raises:
        DeploymentError: Nothing recorded for that chain id, or an unreadable registry.
    """
    paths = [Path(path)] if path else search_path(chain_id)
    for registry in paths:
        entry = _read(registry).get(str(int(chain_id)))
        if entry:
            return _entry(chain_id, registry, entry)
    where = ", ".join(str(p) for p in paths)
    raise DeploymentError(
        f"no TaskMarket recorded for chain id {chain_id} (looked in {where}) "
        "- deploy with `ape ichain deploy --network ... --account ...`"
    )


def _entry(chain_id: int, path: Path, entry: Any) -> Deployment:
    if not isinstance(entry, dict):
        raise DeploymentError(f"bad deployment entry for chain id {chain_id} in {path}: not a JSON object")
    if "review_window" in entry:
        # Protocol v1 markets had a review window; the v2 SDK cannot drive them.
        raise DeploymentError(
            f"the TaskMarket recorded for chain id {chain_id} in {path} is a protocol v1 deployment "
            "- deploy the v2 contracts with `ape ichain deploy --network ...`"
        )
    try:
        return Deployment(**entry)
    except TypeError as err:
        raise DeploymentError(f"bad deployment entry for chain id {chain_id} in {path}: {err}") from None


def connected_chain_id() -> int:
    """Chain id of the network ape is connected to.

    Raises:
        DeploymentError: Ape is not connected to a network.
    """
    from ape import chain

    try:
        return int(chain.chain_id)
    except Exception as err:  # ape raises various errors when not connected
        raise DeploymentError(f"not connected to a network ({type(err).__name__}) - pass --network") from None


def check_windows(validation_window: int, min_timeout: int, max_timeout: int) -> None:
    """Check the market's constructor parameters before anything is sent (the contract would revert).

    Raises:
        DeploymentError: They do not satisfy ``0 < min_timeout <= max_timeout < 2**24`` and
            ``0 < validation_window < 2**24``.
    """
    if not (0 < min_timeout <= max_timeout < 2**24 and 0 < validation_window < 2**24):
        raise DeploymentError(
            "windows must satisfy 0 < min_timeout <= max_timeout < 2**24 and 0 < validation window < 2**24"
        )


def deploy(
    sender: Any,
    *,
    validation_window: int = 3600,
    min_timeout: int = 60,
    max_timeout: int = 7 * 24 * 3600,
    network: str | None = None,
    path: Path | None = None,
    save: bool = True,
    **tx_kwargs: Any,
) -> Deployment:
    """Deploy TaskMarket (which deploys Ratings) from the packaged manifest on the connected network, record it.

    No compiler is involved: the creation bytecode comes from :mod:`ichain.contracts`.

    Args:
        sender: Ape account paying for the deployment.
        validation_window: Seconds a validator has for its verdict once the result is committed.
        min_timeout: Smallest per-task execution timeout.
        max_timeout: Largest per-task execution timeout (< 2**24).
        network: Network choice to write in the record (default: the connected one).
        path: Registry file (default: :func:`registry_path`).
        save: Record the deployment (False for throwaway deployments).
        **tx_kwargs: Extra transaction arguments (gas, nonce...).

    Returns:
        The deployment.

    Raises:
        DeploymentError: Invalid windows, or the protocol v1 ``review_window`` (checked before sending).
    """
    from ape import chain

    from ichain.contracts import container

    if "review_window" in tx_kwargs:
        raise DeploymentError("protocol v2 has no review window: pass validation_window, min_timeout, max_timeout")
    check_windows(validation_window, min_timeout, max_timeout)
    contract = container("TaskMarket").deploy(validation_window, min_timeout, max_timeout, sender=sender, **tx_kwargs)
    receipt = contract.creation_metadata.receipt if contract.creation_metadata else None
    block = int(receipt.block_number) if receipt is not None else int(chain.blocks.head.number)
    deployment = Deployment(
        chain_id=int(chain.chain_id),
        network=network or chain.provider.network_choice,
        market=str(contract.address),
        ratings=str(contract.ratings()),
        block=block,
        deployer=str(sender.address),
        validation_window=validation_window,
        min_timeout=min_timeout,
        max_timeout=max_timeout,
        deployed_at=int(time.time()),
    )
    if save:
        record(deployment, path)
    return deployment
