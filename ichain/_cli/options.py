"""Options and the command class shared by the ``ape ichain`` groups.

Every marketplace command is an :class:`IChainCommand`: Ape's ``ConnectedProviderCommand`` (so it
takes ``--network``, including a bare ``http://127.0.0.1:PORT`` to join a node that is already
running) that turns user errors into a one-line abort instead of a traceback.
"""

from __future__ import annotations

from typing import Any, Callable

import click
from ape.cli import ConnectedProviderCommand, account_option, network_option

from ichain.errors import IChainError


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 400 else text[:397] + "..."


class IChainCommand(ConnectedProviderCommand):
    """A connected Ape command whose user errors end as ``Error: <one line>`` (exit 1)."""

    def invoke(self, ctx: click.Context) -> Any:
        from ape.exceptions import ApeException

        try:
            return super().invoke(ctx)
        except IChainError as err:
            raise click.ClickException(_one_line(err)) from None
        except ApeException as err:  # node unreachable, unknown account, reverted call...
            raise click.ClickException(f"{type(err).__name__}: {_one_line(err)}") from None


def transport_option() -> Callable:
    """``--transport direct|tor`` (default from ape-config.yaml ``ichain: transport``)."""
    return click.option(
        "--transport",
        type=click.Choice(["direct", "tor"]),
        default=None,
        help="How files move: direct HTTP or Tor onion services (default: ape-config.yaml, else direct).",
    )


def state_dir_option() -> Callable:
    """``--state-dir PATH`` (default from ape-config.yaml, else .ichain)."""
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Folder for iChain state: SQLite, keys, task and result files (default .ichain).",
    )


def host_options(func: Callable) -> Callable:
    """``--host`` and ``--port`` of the local chunk host."""
    func = click.option("--port", type=int, default=None, help="Chunk host port (0 = pick a free one once).")(func)
    func = click.option("--host", default=None, help="Interface the chunk host binds (default 127.0.0.1).")(func)
    return func


def ichain_options(func: Callable) -> Callable:
    """The options every connected marketplace command shares: network, account, transport, state dir."""
    func = state_dir_option()(func)
    func = transport_option()(func)
    func = account_option()(func)
    func = network_option()(func)
    return func


def read_only_options(func: Callable) -> Callable:
    """Network (and an optional account) for commands that only read."""
    func = state_dir_option()(func)
    func = account_option(prompt=False)(func)
    func = network_option()(func)
    return func


def ether_amount(value: str | int | None) -> int | None:
    """Parse ``1 ether``, ``0.1 ether``, ``1000 gwei`` or plain wei into an int (None stays None)."""
    if value is None:
        return None
    from ape.utils import ManagerAccessMixin

    try:
        return int(ManagerAccessMixin.conversion_manager.convert(str(value), int))
    except Exception:
        raise click.BadParameter(f"not an amount: {value!r} (use e.g. '0.01 ether' or wei)") from None


def json_option() -> Callable:
    """``--json``: print the result as one JSON document (see :func:`ichain._cli.output.emit`)."""
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (keys: see the README).")


def yes_option() -> Callable:
    """``-y/--yes``: answer yes to every confirmation (Ape's own option, so the name matches ``ape``'s commands)."""
    from ape.cli import skip_confirmation_option

    return skip_confirmation_option(help="Do not ask for confirmation.")
