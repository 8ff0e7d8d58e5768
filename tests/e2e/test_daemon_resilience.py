"""The provider daemon on a quiet chain and through an RPC outage (a TCP proxy in front of anvil), and after a
reorg that drops its result."""

from __future__ import annotations

import socket
import time

import pytest

from daemon_helpers import OK_TASK, Requester, task_folder
from ichain.market import Status
from ichain.transfer import KeyPair

from marketplace_helpers import VALIDATION_WINDOW, task_status, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(420)]

PRICE, FEE = 10**16, 10**15
IDLE_SECONDS = 100
OUTAGE_SECONDS = 30


@pytest.fixture
def requester(e2e_market, accounts, chain, tmp_path):
    r = Requester(e2e_market, accounts[0], tmp_path / "requester", int(chain.chain_id)).start()
    yield r
    r.stop()


@pytest.fixture
def validator(e2e_market, accounts):
    """A registered validator without a daemon: results stay Validating (the tests watch the provider)."""
    acct = accounts[2]
    if not e2e_market.worker(acct.address).registered:
        e2e_market.register(KeyPair.generate().public_bytes, FEE, sender=acct)
    return acct


def test_daemon__idle_chain_then_30s_rpc_outage__survives_and_serves_next_task(
    daemons, proxy, e2e_market, requester, validator, accounts, chain, tmp_path
):
    provider = accounts[1]
    proc = daemons.start(1, PRICE, uri=proxy.uri, extra=("--trust", validator.address))
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

    tid = requester.post(task_folder(tmp_path, "ok", OK_TASK), provider=provider.address,
                         validator=validator.address, price=PRICE, fee=FEE, timeout=600)
    wait_until(lambda: task_status(e2e_market, tid) == Status.Validating, 180, "the result after the outage",
               interval=0.5)
    assert proc.alive()
    assert "pass failed" in proc.log_path.read_text()  # the outage was seen and survived


def test_daemon__reorg_drops_its_result__commits_it_again_without_waiting_for_its_timer(
    daemons, e2e_market, requester, validator, accounts, chain, tmp_path
):
    provider = accounts[1]
    proc = daemons.start(1, PRICE, extra=("--trust", validator.address))
    start = chain.blocks.head.number
    tid = requester.post(task_folder(tmp_path, "ok", OK_TASK), provider=provider.address,
                         validator=validator.address, price=PRICE, fee=FEE, timeout=600)
    wait_until(lambda: task_status(e2e_market, tid) == Status.Validating, 180, "the result", interval=0.2)
    committed = e2e_market.result_of(tid)
    time.sleep(3)  # the daemon checks once more right after committing, then sleeps on its validation timer
    [submitted] = [e for e in e2e_market.events(start) if e.event_name == "ResultSubmitted" and e.task_id == tid]
    # The premise: the daemon sleeps until the validation window ends by the chain's clock.
    assert "will retry" not in proc.log_path.read_text(), proc.tail(20)

    # Blocks go by (more than the daemon rescans after a reorg, so no replayed event of this task can wake it),
    # then the block holding the result and all after it are replaced: the commitment is gone.
    for _ in range(20):
        chain.provider.make_request("evm_mine", [])
    chain.provider.make_request("anvil_reorg", [chain.blocks.head.number - submitted.block_number + 1, []])
    assert task_status(e2e_market, tid) == Status.Executing

    # The daemon's own timer for this task is the validation window; the reorg must wake it well before that.
    wait_until(lambda: task_status(e2e_market, tid) == Status.Validating, VALIDATION_WINDOW - 10,
               "the daemon to commit its result again after the reorg", interval=0.2)
    # The same result, from the daemon's saved work (its salt is in the saved package: no second run, same hash).
    assert e2e_market.result_of(tid) == committed
    # The daemon logs the commitment once the SDK has read the receipt, a moment after the block.
    wait_until(lambda: proc.log_path.read_text().count("committed") == 2, 15, "the daemon's second commitment log")
    log = proc.log_path.read_text()
    assert "reorg or reset seen" in log, proc.tail(20)
    assert log.count("running in the sandbox") == 1 and log.count("committed") == 2, proc.tail(20)
    assert proc.alive()
