"""End-to-end fixtures: the session's anvil (started by ape), a market with short windows, provider
daemons as real subprocesses (``ape ichain provide``) joining that anvil by its URI, and a
requester session in the test process. Every process a test starts is stopped by its fixture."""

from __future__ import annotations

from pathlib import Path

import pytest
from marketplace_helpers import MAX_TIMEOUT, MIN_TIMEOUT, VALIDATION_WINDOW, TcpProxy, wait_until

from ichain._cli.demo import DaemonProcess, provide_argv
from ichain.config import load_config


@pytest.fixture(scope="session")
def node_uri(chain):
    """HTTP URI of the anvil ape started for this session (daemons join it with --network URI)."""
    uri = getattr(chain.provider, "http_uri", None) or chain.provider.uri
    assert uri.startswith("http://127.0.0.1:")
    return uri


@pytest.fixture(scope="session")
def e2e_market(accounts):
    """A TaskMarket with short windows (not recorded in the shared registry), through the SDK."""
    from ichain._cli._common import get_market
    from ichain.deployments import deploy

    deployed = deploy(accounts[9], validation_window=VALIDATION_WINDOW,
                      min_timeout=MIN_TIMEOUT, max_timeout=MAX_TIMEOUT, save=False)
    return get_market(deployed.market)


@pytest.fixture
def market_address(e2e_market):
    return e2e_market.address


@pytest.fixture
def requester(accounts):
    return accounts[0]


@pytest.fixture
def requester_config(tmp_path):
    return load_config(transport="direct", state_dir=tmp_path / "requester")


@pytest.fixture
def daemons(tmp_path, node_uri, market_address, e2e_market):
    """Factory: ``daemons.start(index, price_wei, env=...)`` starts ``ape ichain provide`` for TEST::index (or for
    ``account=ALIAS``, e.g. a keystore account; ``argv`` replaces the command line up to the test's options)."""

    class Daemons:
        def __init__(self):
            self.procs: list[DaemonProcess] = []

        def start(self, index: int, price: int, *, env: dict | None = None, state: Path | None = None,
                  uri: str | None = None, wait: bool = True, extra: tuple[str, ...] = (),
                  market: str | None = None, account: str | None = None,
                  argv: list[str] | None = None) -> DaemonProcess:
            state = state or tmp_path / f"daemon-{index}"
            name = account or f"TEST::{index}"
            if argv is None:
                argv = provide_argv(uri or node_uri, name, market or market_address, state, price=str(price),
                                    extra=("--poll-interval", "0.1", *extra))
            else:
                argv = [*argv, "--market", market or market_address, "--state-dir", str(state), "--price", str(price),
                        "--poll-interval", "0.1", *extra]
            proc = DaemonProcess(name, argv, tmp_path / f"daemon-{index}.log", env)
            proc.state_dir = state
            self.procs.append(proc)
            if wait:
                self.wait_ready(proc)
            return proc

        def wait_ready(self, proc: DaemonProcess, timeout: float = 90.0) -> None:
            def ready():
                if not proc.alive():
                    pytest.fail(f"daemon {proc.name} exited {proc.proc.returncode}: {proc.tail(8)}")
                return "ready (state" in proc.log_path.read_text(errors="replace")

            wait_until(ready, timeout, f"daemon {proc.name} to start")

        def stop_all(self) -> None:
            for proc in self.procs:
                proc.stop()

    d = Daemons()
    yield d
    d.stop_all()


@pytest.fixture
def proxy(node_uri):
    p = TcpProxy(int(node_uri.rsplit(":", 1)[1]))
    p.start()
    yield p
    p.stop()
