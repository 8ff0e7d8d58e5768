"""``ape ichain demo``: a whole marketplace round on this machine (what ``make demo`` runs).

On the embedded defaults: the local network (ape-foundry starts anvil on a free port), the direct
transport, the Docker sandbox. It deploys the contracts with short windows, starts two provider
daemons as subprocesses, makes each trust the other as its validator (protocol v2: a verdict comes from
a party the provider consented to), submits ``examples/digits`` as a requester (the best provider, and
the best validator THAT provider trusts), and prints the result, the accuracy, the verdict and the payment.
The rating is the user's: ``--rating N``, or a prompt at a terminal; without either the task stays unrated.
Everything it starts is stopped on exit, Ctrl-C or error (daemons, tor, anvil, temp files).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from typing import Any

import click

from ichain._cli.options import IChainCommand, json_option, transport_option
from ichain._cli.output import emit, step_echo
from ichain.errors import IChainError
from ichain.market import Market
from ichain.requester.format import eth, rating_text


class DemoError(IChainError):
    """The demo could not run (a daemon died, the sandbox image is missing...)."""


def deploy_market(sender: Any, *, validation_window: int = 60, min_timeout: int = 30,
                  max_timeout: int = 3600) -> Market:
    """Deploy TaskMarket (which deploys Ratings) with the given windows, unrecorded; returns the SDK market."""
    return Market.deploy(sender, save=False, validation_window=validation_window, min_timeout=min_timeout,
                         max_timeout=max_timeout)


class DaemonProcess:
    """A provider daemon in a subprocess (``ape ichain provide``), its log in a file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict | None = None):
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})}, start_new_session=True)

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.proc.poll() is None

    def tail(self, lines: int = 15) -> str:
        """The end of its log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM (graceful), then SIGKILL after ``timeout``; always reaps the process."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def provide_argv(uri: str, account: str, market: str, state_dir: Path, *, price: str, transport: str = "direct",
                 extra: tuple[str, ...] = ()) -> list[str]:
    """The command line of a provider daemon joining the node at ``uri``."""
    ape = str(Path(sys.executable).with_name("ape"))
    return [ape, "ichain", "provide", "--network", uri, "--account", account, "--market", market,
            "--state-dir", str(state_dir), "--transport", transport, "--price", price, *extra]


def wait_registered(market: Market, daemons: dict[str, DaemonProcess], timeout: float = 120.0) -> None:
    """Wait until every daemon's account is a registered worker (or fail with its log)."""
    end = time.time() + timeout
    pending = dict(daemons)
    while pending:
        for addr, proc in list(pending.items()):
            if not proc.alive():
                raise DemoError(f"daemon {proc.name} exited ({proc.proc.returncode}): {proc.tail(3)}")
            if market.worker(addr).registered:
                del pending[addr]
        if time.time() > end:
            raise DemoError(f"daemons not registered after {timeout:.0f}s: {', '.join(p.name for p in pending.values())}")
        time.sleep(0.3)


@click.command(cls=IChainCommand)
@transport_option()
@click.option("--task", "task_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("examples/digits"), show_default=True, help="Task folder to submit.")
@click.option("--keep", is_flag=True, help="Keep the demo's state folder (logs, files) for inspection.")
@click.option("--rating", type=click.IntRange(1, 5), default=None,
              help="Your rating of the provider (none given: asked at a terminal, else left unrated).")
@click.option("--validator-rating", type=click.IntRange(0, 5), default=0, show_default=True,
              help="Your rating of the validator with --rating (0: not rated).")
@json_option()
def demo(transport, task_dir, keep, rating, validator_rating, as_json):
    """Deploy, start two provider daemons, submit a task, print the outcome; leave nothing running.

    JSON (at the end; the steps go to stderr): the keys of ``submit --json`` plus ``chain_id``, ``market``,
    ``verdict`` (Accepted, Rejected or the final status), ``accuracy`` and ``requester_transactions``.
    """
    from ape import accounts, chain

    from ichain.config import load_config
    from ichain.requester import RequesterSession, run_round

    echo = step_echo(as_json)
    transport = transport or "direct"
    uri = chain.provider.http_uri
    if not uri:
        raise DemoError("the demo needs a local node with an HTTP endpoint (the default local network)")
    work = Path(tempfile.mkdtemp(prefix="ichain-demo-"))
    daemons: dict[str, DaemonProcess] = {}
    tor_net = None
    session = None
    try:
        requester, prov_a, prov_b = accounts.test_accounts[0], accounts.test_accounts[1], accounts.test_accounts[2]
        echo(f"chain {chain.chain_id} at {uri}; deploying the market...")
        market = deploy_market(requester)
        market_address = market.address
        echo(f"TaskMarket at {market_address}")
        env = {}
        tor_opts = {}
        if transport == "tor":
            from ichain.tor.testnet import PrivateTorNetwork

            echo("starting a private Tor network (about 20-40 s)...")
            tor_net = PrivateTorNetwork(work / "tor")
            tor_net.start()
            net_file = work / "tor-network.json"
            tor_net.save(net_file)
            env["ICHAIN_TOR_NETWORK"] = str(net_file)
            tor_opts = {"tor_network": str(net_file)}
        for name, acct, idx, price in (("provider-a", prov_a, 1, "0.01 ether"), ("provider-b", prov_b, 2, "0.02 ether")):
            argv = provide_argv(uri, f"TEST::{idx}", market_address, work / "state", price=price, transport=transport)
            daemons[str(acct.address)] = DaemonProcess(name, argv, work / f"{name}.log", env)
        echo("starting two provider daemons...")
        wait_registered(market, daemons)
        # Each provider consents to the other as its validator (its on-chain trusted set).
        for prov, val in ((prov_a, prov_b), (prov_b, prov_a)):
            if not market.trusts(prov.address, val.address):
                market.set_trust(val.address, True, sender=prov)
        echo(f"trust: {prov_a.address} <-> {prov_b.address}")
        config = load_config(transport=transport, state_dir=work / "state", tor=tor_opts or None)
        session = RequesterSession.prepare(task_dir, market=market, account=requester, config=config)
        echo(f"submitting {task_dir} as requester {requester.address}")
        out = Path(".ichain") / "demo" / f"result-{session.data['id']}"  # .ichain/ is gitignored
        out.parent.mkdir(parents=True, exist_ok=True)
        from ichain._cli.request import _interactive, _prompt_rating, round_json

        outcome = run_round(session, provider="best", validator="auto", wait_timeout=600, out=out, echo=echo,
                            rating=rating, validator_rating=validator_rating,
                            ask_rating=functools.partial(_prompt_rating, err=as_json) if _interactive(as_json)
                            else None)
        echo("")
        echo("== demo outcome")
        echo(f"result folder : {outcome.result_dir}")
        acc = next((v for k, v in outcome.metrics.items() if "acc" in k.lower()), None)
        echo(f"accuracy      : {acc if acc is not None else outcome.metrics}")
        verdict = session.data.get("accepted")
        ended = outcome.status.name
        echo(f"verdict       : {ended if verdict is None else ('Accepted' if verdict else 'Rejected')}")
        echo(f"payment       : {eth(outcome.paid)} to {session.data.get('provider')}, "
             f"fee {eth(session.data.get('settled', {}).get('validator_paid', 0))} to "
             f"{session.data.get('validator')}")
        echo(f"your rating   : {outcome.rating if outcome.rating is not None else 'none given'}")
        echo(f"new rating    : {rating_text(market.worker(session.data['provider']))}")
        txs = market.task_transactions(int(session.data["task_id"]))
        mine = sum(1 for tx in txs if tx.sender == str(requester.address))
        echo(f"chain cost    : {sum(tx.gas_used for tx in txs):,} gas in {len(txs)} transactions "
             f"({mine} sent by the requester)")
        for addr, proc in daemons.items():
            if not proc.alive():
                raise DemoError(f"daemon {proc.name} died during the demo: {proc.tail(3)}")
        emit({**round_json(session, outcome, market), "chain_id": int(chain.chain_id), "market": market_address,
              "verdict": ended if verdict is None else ("Accepted" if verdict else "Rejected"), "accuracy": acc,
              "requester_transactions": mine}, as_json=as_json)
    finally:
        if session is not None:
            session.close()
        for proc in daemons.values():
            proc.stop()
        if tor_net is not None:
            tor_net.stop()
        if keep:
            step_echo(as_json)(f"demo files kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
