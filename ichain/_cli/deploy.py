"""``ape ichain deploy``: deploy TaskMarket (and its Ratings) from the packaged manifest, check, record, prepare
the explorer verification.

No compiler is needed: the creation bytecode comes from the manifest in :mod:`ichain.contracts`. After the
deployment the command reads back the runtime code of both contracts and compares it with the manifest's (the
immutables, set by the constructor, masked); a mismatch is an error and nothing is recorded. Then it records the
addresses where every command looks (:mod:`ichain.deployments`: the user registry for a public chain, the
cwd-relative ``.ichain/`` one for a local chain) and writes, per contract, the solc standard-JSON input and the
verification details (compiler version, ABI-encoded constructor arguments) a block explorer asks for.

On a public chain it asks for confirmation at a terminal (``-y`` skips); without a terminal and without ``-y`` it
stops at once with one line.

``--json`` prints one object with the keys: ``chain_id``, ``network``, ``market``, ``ratings``, ``block``,
``deployer``, ``validation_window``, ``min_timeout``, ``max_timeout`` (seconds), ``registry`` (the file the
deployment is recorded in), ``runtime_verified`` (always true: a mismatch fails the command), ``compiler_version``,
``verify_dir`` (the folder of the verification files) and ``verification`` (per contract name, the paths
``standard_input`` and ``verify``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from ape.cli import account_option, network_option

from ichain._cli._common import stdin_is_terminal
from ichain._cli.options import IChainCommand, json_option, yes_option
from ichain._cli.output import emit, note
from ichain.errors import IChainError

DEFAULT_VERIFY_DIR = Path("ichain-verify")


class DeployRefused(IChainError):
    """A deployment to a public chain was not confirmed."""


def run_deploy(sender: Any, *, validation_window: int, min_timeout: int, max_timeout: int,
               registry: Path | None = None, verify_dir: Path = DEFAULT_VERIFY_DIR,
               confirm: bool = True) -> dict[str, Any]:
    """Deploy on the connected network, verify the runtime code, record it, write the verification files.

    Args:
        sender: Ape account paying for the deployment.
        validation_window: Seconds a validator has for its verdict once the result is committed.
        min_timeout: Smallest per-task execution timeout (s).
        max_timeout: Largest per-task execution timeout (s, < 2**24).
        registry: Registry file to record into (default: :func:`ichain.deployments.registry_path`).
        verify_dir: Base folder of the verification files (a sub-folder per chain id).
        confirm: Ask before deploying to a public chain (at a terminal; without one, refuse).

    Returns:
        The result (keys: see the module docstring).

    Raises:
        IChainError: Invalid windows, not confirmed, or the deployed code is not the manifest's.
    """
    from ape import chain
    from eth_abi import encode

    from ichain import contracts, deployments

    chain_id = int(chain.chain_id)
    network = chain.provider.network_choice
    verify_dir = Path(verify_dir).resolve()  # printed and written into the result: absolute
    deployments.check_windows(validation_window, min_timeout, max_timeout)
    if confirm and chain_id not in deployments.LOCAL_CHAIN_IDS:
        question = (f"deploy TaskMarket and Ratings to {network} (chain id {chain_id}) from {sender.address}, "
                    "paying the gas?")
        if not stdin_is_terminal():
            raise DeployRefused(f"{question.rstrip('?')} needs a confirmation: run at a terminal or pass -y")
        if not click.confirm(question, default=False, err=True):
            raise DeployRefused("not deployed")
    found = deployments.deploy(sender, validation_window=validation_window, min_timeout=min_timeout,
                               max_timeout=max_timeout, network=network, save=False)
    contracts.verify_runtime("TaskMarket", found.market, bytes(chain.provider.get_code(found.market)))
    contracts.verify_runtime("Ratings", found.ratings, bytes(chain.provider.get_code(found.ratings)))
    path = deployments.record(found, registry)
    args = encode(["uint256", "uint256", "uint256"], [validation_window, min_timeout, max_timeout])
    files = contracts.verification_files(verify_dir, chain_id, {"TaskMarket": found.market, "Ratings": found.ratings},
                                         {"TaskMarket": args, "Ratings": b""})
    return {
        "chain_id": found.chain_id, "network": found.network, "market": found.market, "ratings": found.ratings,
        "block": found.block, "deployer": found.deployer, "validation_window": found.validation_window,
        "min_timeout": found.min_timeout, "max_timeout": found.max_timeout, "registry": str(path),
        "runtime_verified": True, "compiler_version": contracts.packaged().compiler_version,
        "verify_dir": str(Path(verify_dir) / str(chain_id)), "verification": files,
    }


def print_result(result: dict[str, Any]) -> None:
    """The text form of :func:`run_deploy`'s result."""
    click.echo(f"TaskMarket {result['market']}")
    click.echo(f"Ratings {result['ratings']}")
    click.echo(f"chain id {result['chain_id']}, block {result['block']}, recorded in {result['registry']}")
    click.echo("runtime bytecode of both contracts matches the packaged manifest (immutables masked)")
    click.echo(f"explorer verification inputs ({result['compiler_version']}) in {result['verify_dir']}")


def window_options(func: Any) -> Any:
    """``--validation-window``, ``--min-timeout``, ``--max-timeout`` (the market's constructor parameters)."""
    func = click.option("--max-timeout", type=int, default=7 * 24 * 3600, show_default=True,
                        help="Largest per-task timeout (s, < 2**24).")(func)
    func = click.option("--min-timeout", type=int, default=60, show_default=True,
                        help="Smallest per-task timeout (s).")(func)
    func = click.option("--validation-window", type=int, default=3600, show_default=True,
                        help="Seconds a validator has for its verdict once the result is committed.")(func)
    return func


@click.command(cls=IChainCommand, short_help="Deploy the market from the packaged contracts and record it")
@network_option()
@account_option()
@window_options
@click.option("--verify-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_VERIFY_DIR,
              show_default=True, help="Where the block-explorer verification inputs go (a folder per chain id).")
@yes_option()
@json_option()
def deploy(network, account, validation_window, min_timeout, max_timeout, verify_dir, skip_confirmation, as_json):
    """Deploy TaskMarket (which deploys Ratings) from the packaged manifest: no compiler needed.

    Checks the deployed runtime bytecode against the manifest, records the addresses (the user registry in Ape's
    data folder for a public chain, .ichain/deployments.json for a local one) and writes the standard-JSON input
    a block explorer verifies the source with. Asks before spending gas on a public chain (-y: do not ask).
    """
    result = run_deploy(account, validation_window=validation_window, min_timeout=min_timeout,
                        max_timeout=max_timeout, verify_dir=verify_dir, confirm=not skip_confirmation)
    if as_json:
        note(f"recorded in {result['registry']}")
    emit(result, as_json=as_json, text=lambda: print_result(result))
