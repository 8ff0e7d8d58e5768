"""Where the TaskMarket and Ratings contracts live, per network.

Deployments are recorded in a JSON registry keyed by chain id, so every command finds the contracts for
whatever network it is connected to (including an anvil fork, which keeps the chain id of its upstream):

- public networks (any chain id but the local ones) go to ``deployments.json`` at the project root, which is
  committed;
- ephemeral local chains (chain ids 1337 and 31337: anvil, ape's test provider) go to
  ``.ichain/deployments.json``, which is gitignored, because their addresses die with the chain.

``ICHAIN_DEPLOYMENTS`` overrides the registry file for both (tests use it to write into a temporary folder).
Writes go to ``NAME.part`` then ``os.replace``, so a crash never leaves a half-written registry.
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
PROJECT_ROOT = Path(__file__).resolve().parent.parent


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


def registry_path(chain_id: int) -> Path:
    """The registry file that holds deployments for ``chain_id``.

    Args:
        chain_id: The chain id.

    Returns:
        ``$ICHAIN_DEPLOYMENTS`` if set, else ``.ichain/deployments.json`` for local chains and
        ``deployments.json`` for public ones (both under the project root).
    """
    override = os.environ.get(ENV_REGISTRY)
    if override:
        return Path(override)
    if int(chain_id) in LOCAL_CHAIN_IDS:
        return PROJECT_ROOT / ".ichain" / "deployments.json"
    return PROJECT_ROOT / "deployments.json"


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
        path: Registry file; default :func:`registry_path` of the chain id.

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
        path: Registry file; default :func:`registry_path` of the chain id.

    Returns:
        The recorded deployment.

    Raises:
        DeploymentError: Nothing recorded for that chain id.
    """
    path = Path(path) if path else registry_path(chain_id)
    entry = _read(path).get(str(int(chain_id)))
    if not entry:
        raise DeploymentError(
            f"no TaskMarket recorded for chain id {chain_id} in {path} - deploy with `ape run deploy --network ...`"
        )
    if "review_window" in entry:
        # Protocol v1 markets had a review window; the v2 SDK cannot drive them.
        raise DeploymentError(
            f"the TaskMarket recorded for chain id {chain_id} in {path} is a protocol v1 deployment "
            "- deploy the v2 contracts with `ape run deploy --network ...`"
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
    """Deploy TaskMarket (which deploys Ratings) on the connected network and record it.

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
    from ape import chain, project

    if "review_window" in tx_kwargs:
        raise DeploymentError("protocol v2 has no review window: pass validation_window, min_timeout, max_timeout")
    if not (0 < min_timeout <= max_timeout < 2**24 and 0 < validation_window < 2**24):
        raise DeploymentError(
            "windows must satisfy 0 < min_timeout <= max_timeout < 2**24 and 0 < validation window < 2**24"
        )
    contract = project.TaskMarket.deploy(validation_window, min_timeout, max_timeout, sender=sender, **tx_kwargs)
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
