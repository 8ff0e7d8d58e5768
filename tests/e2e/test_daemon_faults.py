"""Fault injection: the provider daemon is SIGKILLed at 20 different points of its work and restarted.

Every point in :data:`ichain.daemon.faults.POINTS` is armed; each fires once (the daemon logs it
before killing itself), a supervisor loop restarts the daemon every time it dies. Three tasks go
through: two validated and finalized, one whose requester stays silent (the provider claims
after the review window). Afterwards: every task is settled, the provider sent no transaction
twice and none reverted, and once everyone withdrew, the market holds 0 wei.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter

import pytest

from ichain._cli._common import get_market
from ichain.daemon import faults
from ichain.deployments import deploy
from ichain.market import Status
from ichain.requester import RequesterSession

from marketplace_helpers import DIGITS, MAX_TIMEOUT, MIN_TIMEOUT, REVIEW_WINDOW, VALIDATION_WINDOW, move_time, task_status, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(600)]

PRICE, FEE = 10**16, 2 * 10**15


@pytest.fixture
def fresh_market(accounts):
    deployed = deploy(accounts[9], review_window=REVIEW_WINDOW, validation_window=VALIDATION_WINDOW,
                      min_timeout=MIN_TIMEOUT, max_timeout=MAX_TIMEOUT, save=False)
    return get_market(deployed.market), deployed


def _provider_txs(chain, address: str, start: int) -> list[tuple[str, int | None, int]]:
    """(selector, first uint argument or None, receipt status) of every tx the address sent since ``start``."""
    web3 = chain.provider.web3
    out = []
    for n in range(start, web3.eth.block_number + 1):
        for tx in web3.eth.get_block(n, full_transactions=True)["transactions"]:
            if str(tx["from"]).lower() != address.lower():
                continue
            data = bytes(tx["input"])
            arg = int.from_bytes(data[4:36], "big") if len(data) >= 36 else None
            status = web3.eth.get_transaction_receipt(tx["hash"])["status"]
            out.append((data[:4].hex(), arg, status))
    return out


def test_provider_daemon__sigkilled_at_20_points__tasks_settle_without_duplicates_or_stuck_wei(
    daemons, fresh_market, accounts, requester, chain, tmp_path
):
    market, deployed = fresh_market
    provider, validator = accounts[8], accounts[2]
    kill_log = tmp_path / "kills.log"
    env = {"ICHAIN_KILL_AT": ",".join(faults.POINTS), "ICHAIN_KILL_LOG": str(kill_log)}
    daemons.start(2, FEE, market=deployed.market)
    state_dir = tmp_path / "faulty"
    proc = daemons.start(8, PRICE, env=env, state=state_dir, market=deployed.market, wait=False)
    restarts = 0
    stop = threading.Event()
    crashes: list[str] = []

    def supervise() -> None:
        """Restart the daemon whenever it died of one of our kills (in the background)."""
        nonlocal proc, restarts
        while not stop.is_set():
            if not proc.alive():
                if proc.proc.returncode != -signal.SIGKILL:
                    crashes.append(proc.tail(10))  # a real crash, not an injected kill
                    return
                proc.stop()
                restarts += 1
                proc = daemons.start(8, PRICE, env=env, state=state_dir, market=deployed.market, wait=False)
            time.sleep(0.2)

    supervisor = threading.Thread(target=supervise, daemon=True)
    supervisor.start()

    def check() -> None:
        assert not crashes, crashes[0]

    wait_until(lambda: market.worker(provider.address).registered, 120,
               "the provider to register", check=check)
    config = __import__("ichain.config", fromlist=["load_config"]).load_config(state_dir=tmp_path / "req")
    sessions = [RequesterSession.prepare(DIGITS, market=market, account=requester, config=config) for _ in range(3)]
    try:
        ids = [s.post(provider=provider.address, validator=validator.address if i < 2 else None, price=PRICE,
                      validator_fee=FEE, timeout=MAX_TIMEOUT) for i, s in enumerate(sessions)]
        for s in sessions[:2]:
            wait_until(lambda s=s: task_status(market, s.task_id) in (Status.Accepted, Status.Rejected), 300,
                       f"task {s.task_id} verdict", interval=0.5, check=check)
            s.fetch_result(tmp_path / f"result-{s.task_id}")
            s.finalize(5)
        # The requester stays silent on the third task: the provider claims after its review window. That window
        # runs on the chain's clock while the other two are validated, so it may be over (and claimed) already.
        wait_until(lambda: task_status(market, ids[2]) in (Status.AwaitingValidator, Status.Expired), 300,
                   "the third result", interval=0.5, check=check)
        if task_status(market, ids[2]) == Status.AwaitingValidator:
            move_time(chain, REVIEW_WINDOW + 5)
        wait_until(lambda: task_status(market, ids[2]) == Status.Expired, 300, "the provider's claim", interval=0.5,
                   check=check)
        wait_until(lambda: int(market.credit(provider.address)) == 0, 120, "the provider's withdrawal",
                   interval=0.5, check=check)
        fired = kill_log.read_text().split() if kill_log.exists() else []
        # Let the daemon reach the remaining points (done) before judging.
        wait_until(lambda: len(set(kill_log.read_text().split())) >= 20, 120, "all 20 kill points", interval=0.5,
                   check=check)
        fired = kill_log.read_text().split()
    finally:
        for s in sessions:
            s.close()
        stop.set()
        supervisor.join(10)

    assert len(set(fired)) == 20 and restarts >= 19, (fired, restarts)
    assert [task_status(market, i) for i in ids] == [Status.Completed, Status.Completed, Status.Expired]
    txs = _provider_txs(chain, provider.address, deployed.block)
    assert all(status == 1 for _, _, status in txs), txs  # nothing reverted
    per_action = Counter((sel, arg) for sel, arg, _ in txs if arg is not None)
    assert per_action and max(per_action.values()) == 1, per_action  # no action sent twice
    # Everyone takes what is theirs: the market is left with 0 wei.
    for who in (requester, validator):
        if int(market.credit(who.address)) > 0:
            market.withdraw(sender=who)
    wait_until(lambda: chain.provider.get_balance(deployed.market) == 0, 60, "the market to be empty",
               check=check)
