"""Helpers shared by the marketplace command groups (market lookup, settings, tables, the terminal)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from ichain.config import IChainConfig, load_config

if TYPE_CHECKING:
    from ichain.market import Market


def get_market(address: str | None = None) -> Market:
    """The SDK market on the connected network: at ``address`` or from the deployment registry."""
    from ichain.market import Market

    if address:
        return Market.at(address)
    return Market.from_deployment()


def get_config(**overrides: Any) -> IChainConfig:
    """Settings from ape-config.yaml merged with the command line."""
    return load_config(**overrides)


def echo_table(rows: list[list[str]], headers: list[str]) -> None:
    """Print a plain aligned table."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)] if rows else [len(h) for h in headers]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    click.echo(line.format(*headers))
    for row in rows:
        click.echo(line.format(*[str(x) for x in row]))


def market_option() -> Any:
    """``--market ADDR``: use this TaskMarket instead of the recorded deployment."""
    return click.option("--market", "market_address", default=None, envvar="ICHAIN_MARKET",
                        help="TaskMarket address (default: the deployment recorded for this network).")


def stdin_is_terminal() -> bool:
    """Whether a question could be answered: stdin is an open terminal (a closed or piped stdin is not)."""
    try:
        return sys.stdin is not None and not sys.stdin.closed and sys.stdin.isatty()
    except (OSError, ValueError):
        return False
