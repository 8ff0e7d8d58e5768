"""The provider daemon on a quiet chain and through an RPC outage (a TCP proxy in front of anvil)."""

from __future__ import annotations

import socket
import time

import pytest

from ichain.market import Status
from ichain.requester import RequesterSession

from marketplace_helpers import DIGITS, REVIEW_WINDOW, task_status, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(420)]

PRICE = 10**16
IDLE_SECONDS = 100
OUTAGE_SECONDS = 30


def test_daemon__idle_chain_then_30s_rpc_outage__survives_and_serves_next_task(
    daemons, proxy, e2e_market, requester, requester_config, accounts, chain
):
    provider = accounts[1]
    proc = daemons.start(1, PRICE, uri=proxy.uri)
    head = chain.blocks.head.number

    # Minutes of no block at all (anvil automine: no transaction, no block).
    end = time.time() + IDLE_SECONDS
    while time.time() < end:
        assert proc.alive(), proc.tail(10)
        time.sleep(2)
    assert chain.blocks.head.number == head

    # The node disappears for 30 s (connections refused and dropped), then comes back.
    proxy.cut()
    with pytest.raises(ConnectionRefusedError):  # a real outage: nothing gets through to the node
        socket.create_connection(("127.0.0.1", proxy.port), timeout=2).close()
    time.sleep(OUTAGE_SECONDS)
    assert proc.alive(), proc.tail(10)
    proxy.start()

    session = RequesterSession.prepare(DIGITS, market=e2e_market, account=requester, config=requester_config)
    try:
        tid = session.post(provider=provider.address, validator=None, price=PRICE, validator_fee=0, timeout=600)
        wait_until(lambda: task_status(e2e_market, tid) == Status.AwaitingValidator, 180, "the result after the outage",
                   interval=0.5)
    finally:
        session.close()
    assert proc.alive()
    assert "pass failed" in proc.log_path.read_text()  # the outage was seen and survived


def test_daemon__reorg_drops_its_result__commits_it_again_without_waiting_for_its_timer(
    daemons, e2e_market, requester, requester_config, accounts, chain
):
    provider = accounts[1]
    proc = daemons.start(1, PRICE)
    session = RequesterSession.prepare(DIGITS, market=e2e_market, account=requester, config=requester_config)
    try:
        start = chain.blocks.head.number
        tid = session.post(provider=provider.address, validator=None, price=PRICE, validator_fee=0, timeout=600)
        wait_until(lambda: task_status(e2e_market, tid) == Status.AwaitingValidator, 180, "the result", interval=0.2)
        committed = e2e_market.result_hash(tid)
        time.sleep(3)  # the daemon checks once more right after committing, then sleeps on its review timer
        [submitted] = [e for e in e2e_market.events(start) if e.name == "ResultSubmitted" and e.task_id == tid]
        # The premise: the daemon sleeps until the review window ends by the chain's clock. (A daemon judging by
        # this machine's clock on a chain whose clock runs behind would try to claim early and retry every 2 s,
        # re-checking the task after the reorg by chance rather than by the reorg's wake-up.)
        assert "will retry" not in proc.log_path.read_text(), proc.tail(20)

        # Blocks go by (more than the daemon rescans after a reorg, so no replayed event of this task can wake
        # it), then the block holding the result and all after it are replaced: the commitment is gone.
        for _ in range(20):
            chain.provider.make_request("evm_mine", [])
        chain.provider.make_request("anvil_reorg", [chain.blocks.head.number - submitted.block_number + 1, []])
        assert task_status(e2e_market, tid) == Status.Executing

        # The daemon's own timer for this task is the review window (REVIEW_WINDOW s of chain time); the reorg
        # must wake it well before that.
        wait_until(lambda: task_status(e2e_market, tid) == Status.AwaitingValidator, REVIEW_WINDOW - 10,
                   "the daemon to commit its result again after the reorg", interval=0.2)
    finally:
        session.close()
    assert e2e_market.result_hash(tid) == committed  # the same result, from the daemon's saved work
    log = proc.log_path.read_text()
    assert "reorg or reset seen" in log, proc.tail(20)
    assert log.count("running in the sandbox") == 1 and log.count("committed") == 2, proc.tail(20)
    assert proc.alive()
