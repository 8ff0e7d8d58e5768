"""The provider daemon on a quiet chain and through an RPC outage (a TCP proxy in front of anvil)."""

from __future__ import annotations

import socket
import time

import pytest

from ichain.requester import RequesterSession

from marketplace_helpers import DIGITS, task_status, wait_until

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
        wait_until(lambda: task_status(e2e_market, tid) == "AwaitingValidator", 180, "the result after the outage",
                   interval=0.5)
    finally:
        session.close()
    assert proc.alive()
    assert "pass failed" in proc.log_path.read_text()  # the outage was seen and survived
