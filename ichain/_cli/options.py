"""Options and the command class shared by the ``ape ichain`` groups.

Every marketplace command is an :class:`IChainCommand`: Ape's ``ConnectedProviderCommand`` (so it
takes ``--network``, including a bare ``http://127.0.0.1:PORT`` to join a node that is already
running) that turns user errors into a one-line abort instead of a traceback. The commands that need no
node (``account new``, ``sandbox build``/``check``) are :class:`IChainLocalCommand` with the same handling.
Both add Ape's ``--verbosity/-v LEVEL`` (:func:`verbosity_option`), so every ``ape ichain`` command takes it.

Exit codes (the README's "Machine-readable output and exit codes"): 0 success, 1 an error printed as one line
``Error: ...``, 2 a usage error (click), 130 interrupted (Ctrl-C), printed as one line ``Interrupted.``.
"""

from __future__ import annotations

import logging
import signal
import sys
from typing import Any, Callable

import click
from ape.cli import ConnectedProviderCommand, account_option, network_option

from ichain.errors import IChainError

#: The exit code of a command stopped by Ctrl-C (SIGINT), as shells report a process killed by it.
INTERRUPTED = 128 + signal.SIGINT


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 400 else text[:397] + "..."


class Interrupted(IChainError):
    """The command was stopped by Ctrl-C after it shut down what it had started (exit 130)."""

    def __init__(self, message: str = "Interrupted."):
        super().__init__(message)


def _invoke(invoke: Callable[[click.Context], Any], ctx: click.Context) -> Any:
    """Run a command, ending user errors as ``Error: <one line>`` (exit 1) and Ctrl-C as one line (exit 130)."""
    from ape.exceptions import ApeException

    try:
        return invoke(ctx)
    except (KeyboardInterrupt, Interrupted) as err:
        # Everything the command started is stopped by its own ``finally`` blocks by now.
        click.echo(str(err) if isinstance(err, Interrupted) else "Interrupted.", err=True)
        ctx.exit(INTERRUPTED)
    except SystemExit as err:
        if err.code == INTERRUPTED:  # Ape's own SIGINT handler exits with 130 instead of raising KeyboardInterrupt
            click.echo("Interrupted.", err=True)
        raise
    except IChainError as err:
        raise click.ClickException(_one_line(err)) from None
    except ApeException as err:  # node unreachable, unknown account, reverted call...
        raise click.ClickException(f"{type(err).__name__}: {_one_line(err)}") from None


class IChainCommand(ConnectedProviderCommand):
    """A connected Ape command whose user errors end as ``Error: <one line>`` (exit 1); takes ``--verbosity``."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        _add_verbosity(self)

    def invoke(self, ctx: click.Context) -> Any:
        return _invoke(super().invoke, ctx)


class IChainLocalCommand(click.Command):
    """A command that needs no node (accounts, the sandbox), with :class:`IChainCommand`'s errors and verbosity."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        _add_verbosity(self)

    def invoke(self, ctx: click.Context) -> Any:
        return _invoke(super().invoke, ctx)


def _add_verbosity(command: click.Command) -> None:
    if not any(getattr(p, "name", None) == "verbosity" for p in command.params):
        verbosity_option()(command)


class _StderrHandler(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is when a record comes (a test runner swaps it per test)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


#: Where ``ichain.*`` log lines go (set up once, on the first command that parses ``--verbosity``).
_handler: logging.Handler | None = None


def set_log_level(level: int) -> None:
    """Send the ``ichain.*`` loggers' records at ``level`` and above to stderr (one handler, installed once).

    Other libraries' records stay at Python's default (warnings and above), so ``DEBUG`` shows iChain's steps
    without web3's or urllib3's.
    """
    global _handler
    root = logging.getLogger("ichain")
    if _handler is None:
        _handler = _StderrHandler()
        _handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(_handler)
    root.setLevel(level)


def _verbosity(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Check a ``--verbosity`` value (a bad one is a usage error) and apply it to the ``ichain`` loggers too."""
    from ape.logging import LogLevel

    names = {lvl.name: lvl.value for lvl in LogLevel}
    if isinstance(value, LogLevel):
        level = value.value
    elif isinstance(value, int):
        level = value
    elif isinstance(value, str) and value.isdigit():
        level = int(value)
    elif isinstance(value, str) and value.upper() in names:
        level = names[value.upper()]
    elif isinstance(value, str) and value.upper() in ("DISABLE", "NONE"):
        level = logging.CRITICAL + 1
    else:
        raise click.BadParameter(f"{value!r} is not one of {', '.join(names)}", ctx=ctx, param=param)
    set_log_level(level)
    return value


def verbosity_option() -> Callable:
    """Ape's ``--verbosity/-v LEVEL`` (ERROR, WARNING, SUCCESS, INFO, DEBUG), applied to Ape's logger and to the
    ``ichain.*`` loggers (the daemon's and the requester's step lines)."""
    from ape.cli import verbosity_option as ape_verbosity_option

    return ape_verbosity_option(callback=_verbosity)


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


def _ape_log_to_stderr(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    """With ``--json``, send Ape's own log lines (``INFO: Connecting to a 'anvil' node.``...) to stderr: stdout is
    the result's one JSON document. Ape's handler prints them on stdout otherwise."""
    if value:
        from ape.logging import ClickHandler, LogLevel, logger

        for handler in logger._logger.handlers:
            if isinstance(handler, ClickHandler):
                handler.echo_kwargs = {lvl.name.lower(): {"err": True} for lvl in LogLevel}
    return value


def json_option() -> Callable:
    """``--json``: print the result as one JSON document (see :func:`ichain._cli.output.emit`)."""
    return click.option("--json", "as_json", is_flag=True, is_eager=True, callback=_ape_log_to_stderr,
                        help="Print the result as JSON (keys: see the README).")


def yes_option() -> Callable:
    """``-y/--yes``: answer yes to every confirmation (Ape's own option, so the name matches ``ape``'s commands)."""
    from ape.cli import skip_confirmation_option

    return skip_confirmation_option(help="Do not ask for confirmation.")


def serve_until_signal(run: Callable[[], None], stop: Callable[[], None]) -> None:
    """Run a long-lived loop until SIGTERM or SIGINT asks it to stop (gracefully, through ``stop``).

    SIGTERM (how a service manager stops it) ends with exit 0; Ctrl-C ends with :class:`Interrupted` (exit 130),
    after ``run`` has returned, i.e. after the loop shut down what it had started.

    Args:
        run: The loop; it must not install its own SIGINT/SIGTERM handlers.
        stop: Asks the loop to stop (safe from a signal handler).
    """
    got: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        got.append(signum)
        stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if signal.SIGINT in got:
        raise Interrupted()
