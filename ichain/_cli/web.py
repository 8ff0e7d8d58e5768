"""``ape ichain web``: serve the requester / provider / pool web page on localhost."""

from __future__ import annotations

import socket

import click
from ape.cli import account_option, network_option

from ichain._cli.options import IChainCommand, state_dir_option, transport_option


def bind_localhost(port: int = 0) -> socket.socket:
    """Bind a listening socket on 127.0.0.1 (port 0: the OS picks a free one).

    The page signs with the selected account, so it only ever listens on the loopback interface.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as err:
        sock.close()
        from ichain.web.errors import WebError

        raise WebError(f"cannot listen on 127.0.0.1:{port}: {err.strerror} (try --port 0)") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@click.command(cls=IChainCommand)
@network_option()
@account_option(prompt=False)
@state_dir_option()
@transport_option()
@click.option("--port", type=int, default=0, show_default=True,
              help="Port on 127.0.0.1 (0 = a free one, printed at start).")
@click.option("--tasks-dir", type=click.Path(file_okay=False), default=None,
              help="Folder whose sub-folders are offered as tasks (default ./examples).")
def web(network, account, state_dir, transport, port, tasks_dir):
    """Serve the iChain web page (requester, provider, pools) on 127.0.0.1.

    Prints the URL to open, ``http://127.0.0.1:PORT/?token=SECRET``: the secret is new at each launch
    and every request without it (another site's form or script, a DNS-rebound name) is refused.
    """
    import uvicorn

    from ichain.config import load_config
    from ichain.web import create_app
    from ichain.web.server import Server
    from ichain.web.service import WebService

    from ichain._cli.provide import daemon_report, daemon_state_file
    from ichain._cli.signing import is_keystore, unlock_for_unattended_signing

    config = load_config(state_dir=state_dir, transport=transport)
    if is_keystore(account):
        # The page's buttons sign in a server thread, where no prompt can be answered: the keystore account is
        # unlocked once, here (a click on the page is the user's consent to each transaction). Its passphrase
        # comes from passphrase_file, APE_ACCOUNTS_<alias>_PASSPHRASE or the terminal; with none, one line.
        unlock_for_unattended_signing(account, autosign=True, passphrase_file=config.passphrase_file)
        click.echo(f"{account.alias} unlocked: the page signs what you click with it", err=True)
    from ape import chain

    def daemon_state(address: str) -> dict | None:
        path = daemon_state_file(config, address, int(chain.chain_id))
        return daemon_report(path) if path is not None else None

    service = WebService(account=account, config=config, tasks_root=tasks_dir, daemon_state=daemon_state)
    app = create_app(service)
    sock = bind_localhost(port)
    guard = app.state.guard
    guard.bind(sock.getsockname()[1])
    who = account.address if account is not None else "no account (read-only)"
    # The URL carries this launch's secret: whoever opens it can sign with the account, so it is
    # printed here only (the page moves it into a cookie and out of the address bar at once).
    click.echo(f"iChain web page on {guard.url('/')} ({network.choice}, {who}); Ctrl-C to stop")
    server = Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    try:
        server.run(sockets=[sock])
    finally:
        service.close()
        sock.close()

