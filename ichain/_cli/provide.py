"""``ape ichain provide``: run the provider daemon for one worker account."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ichain._cli._common import get_config, get_market, market_option
from ichain._cli.options import IChainCommand, ether_amount, host_options, ichain_options, serve_until_signal
from ichain.config import IChainConfig


@click.command(cls=IChainCommand)
@ichain_options
@host_options
@market_option()
@click.option("--price", default=None, help="Asking price (e.g. '0.01 ether'; default: keep the registered one, else 0).")
@click.option("--concurrency", type=int, default=None, help="Tasks worked on at once (default 2).")
@click.option("--unavailable", is_flag=True, help="Register but take no new work.")
@click.option("--poll-interval", type=float, default=None, help="Seconds between head checks when polling.")
@click.option("--trust", "trust", multiple=True, metavar="ADDRESS",
              help="Trust this validator (repeatable; added to ape-config.yaml ichain: trusted_validators). "
                   "Requesters can only pair this provider with a validator it trusts.")
@click.option("--min-fee", default=None, help="Least validator fee to judge a task for (default: the asking price).")
def provide(account, transport, state_dir, host, port, market_address, price, concurrency, unavailable,
            poll_interval, trust, min_fee):
    """Register (or update) this worker and serve tasks until SIGTERM/Ctrl-C.

    The daemon puts its trusted validators in its on-chain trusted set, runs tasks it is named
    provider for (after checking the validator, the price and that the task's time limits fit
    before its deadline), reports a failing run at once, validates those it is named validator
    for (after checking the fee) and withdraws. Killed at any point, it resumes where it was from
    its SQLite state (the chain is the truth).

    A server, not a result: no --json (`ape ichain status --account A --json` reads its state). Its log lines go
    to stderr at --verbosity (default INFO; DEBUG: every step). SIGTERM stops it (exit 0), Ctrl-C too (exit 130).
    """
    from ichain.daemon.provider import ProviderDaemon

    config = get_config(transport=transport, state_dir=state_dir, host=host, port=port,
                        concurrency=concurrency, poll_interval=poll_interval, min_validator_fee=ether_amount(min_fee))
    if trust:
        for address in trust:
            if not isinstance(address, str) or len(address) != 42 or not address.startswith("0x"):
                raise click.BadParameter(f"not an address: {address!r}", param_hint="--trust")
        config = config.replace(trusted_validators=(*config.trusted_validators, *trust))
    market = get_market(market_address)
    daemon = ProviderDaemon(market, account, config, price=ether_amount(price), available=not unavailable)
    daemon.start()
    click.echo(f"provider {account.address} ready (state {daemon.state.path}); Ctrl-C to stop", err=True)
    serve_until_signal(lambda: daemon.run(install_signals=False), daemon.stop)


def daemon_state_file(config: IChainConfig, address: str, chain_id: int) -> Path | None:
    """Where the daemon of ``address`` keeps its state for ``chain_id`` under the state folder, if it ran here."""
    from ichain.daemon.state import state_file

    path = state_file(config.state_dir / address.lower(), chain_id)
    return path if path.is_file() else None


def daemon_report(path: Path) -> dict[str, Any]:
    """A daemon's state file as a JSON-able report: :meth:`DaemonState.summary` plus ``file`` and ``last_seen``
    (when the daemon last wrote it, by the file's and its write-ahead log's times).

    Raises:
        StateError: The file can't be read.
    """
    from ichain.daemon.state import DaemonState

    state = DaemonState(path)
    try:
        report = state.summary()
    finally:
        state.close()
    wal = path.with_name(path.name + "-wal")
    report["file"] = str(path)
    report["last_seen"] = max(p.stat().st_mtime for p in (path, wal) if p.exists())
    return report


def daemon_summary(config: IChainConfig, address: str) -> dict[str, Any] | None:
    """The state of this account's daemon on the connected chain (``ape ichain status``), or None."""
    from ape import chain

    path = daemon_state_file(config, address, int(chain.chain_id))
    return daemon_report(path) if path is not None else None
