"""The daemon's event runner and transaction journal on the session's anvil (real node, real SDK)."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
from web3 import HTTPProvider, Web3

from ichain.daemon.runner import Runner
from ichain.daemon.state import DaemonState
from ichain.daemon.txs import TxSender
from ichain.market import NothingToWithdraw, TransferFailed
from ichain.transfer import KeyPair


@pytest.fixture(scope="module")
def runner_market(accounts):
    from ichain._cli._common import get_market
    from ichain.deployments import deploy

    d = deploy(accounts[9], validation_window=60, min_timeout=30, max_timeout=3600, save=False)
    market = get_market(d.market)
    for idx in (3, 4):
        if not market.worker(accounts[idx].address).registered:
            market.register(KeyPair.generate().public_bytes, 10**15, sender=accounts[idx])
    # Each trusts the other: a task to one names the other as its validator.
    market.set_trust(accounts[4].address, True, sender=accounts[3])
    market.set_trust(accounts[3].address, True, sender=accounts[4])
    return market


@pytest.fixture
def state(tmp_path):
    st = DaemonState(tmp_path / "d.sqlite")
    yield st
    st.close()


def _post(market, requester, provider, n: int):
    return market.post(n.to_bytes(32, "big"), price=10**15, validator_fee=10**15, provider=provider.address,
                       validator=_other(market, provider), locator=b"loc", timeout=60, sender=requester)


def _other(market, provider) -> str:
    """The registered worker that ``provider`` trusts (accounts 3 and 4 trust each other)."""
    from ape import accounts

    a3, a4 = accounts.test_accounts[3].address, accounts.test_accounts[4].address
    return a4 if provider.address == a3 else a3


def _runner(market, state, chain, **kw) -> tuple[Runner, list[int]]:
    seen: list[int] = []
    runner = Runner(market, state, chain.provider.web3, start_block=chain.blocks.head.number + 1, **kw)
    runner.on("TaskPosted")(lambda ev: seen.append(ev.task_id))
    return runner, seen


def test_poll_once__new_events__dispatched_in_order_and_checkpoint_advanced(runner_market, state, chain, accounts):
    runner, seen = _runner(runner_market, state, chain)
    ids = [_post(runner_market, accounts[0], accounts[3], 1000 + i).task_id for i in range(3)]
    runner.poll_once()
    assert seen == ids
    assert state.checkpoint == chain.blocks.head.number
    runner.poll_once()  # nothing new: nothing replayed
    assert seen == ids


def test_poll_once__reorg_replaced_checkpoint_block__rescans_from_safe_depth(runner_market, state, chain, accounts):
    reorgs = []
    runner, seen = _runner(runner_market, state, chain, reorg_depth=3, on_reorg=lambda: reorgs.append(state.checkpoint))
    first = _post(runner_market, accounts[0], accounts[3], 2000).task_id
    runner.poll_once()
    head = chain.blocks.head.number
    # Replace the last block with a different one (anvil_reorg: depth 1, no transactions re-added).
    chain.provider.make_request("anvil_reorg", [1, []])
    assert chain.blocks.head.number == head and state.block_hash(head) != chain.provider.web3.eth.get_block(head)[
        "hash"].hex()
    second = _post(runner_market, accounts[0], accounts[4], 2001).task_id
    runner.poll_once()
    assert state.checkpoint == chain.blocks.head.number
    assert seen[0] == first and seen[-1] == second  # the rescan found the new event; replays are harmless
    assert len(reorgs) == 1 and reorgs[0] < head  # told once, after the checkpoint went back before the reorg
    runner.poll_once()
    assert len(reorgs) == 1


class _ReorgWhileReading:
    """The market, except that the chain reorganises while the runner reads a range's events."""

    def __init__(self, market, chain, depth: int):
        self.market, self.chain, self.depth, self.fired = market, chain, depth, False

    def __getattr__(self, name):
        return getattr(self.market, name)

    def events(self, *args, **kwargs):
        found = self.market.events(*args, **kwargs)
        if not self.fired:
            self.fired = True
            self.chain.provider.make_request("anvil_reorg", [self.depth, []])
        return found


def test_poll_once__reorg_while_reading_a_range__not_taken_and_seen_next_pass(runner_market, state, chain, accounts):
    # A runner that checks its checkpoint's hash before a reorg and reads the range's end hash after it would store
    # a checkpoint on the new chain over events of the old one, and never see the reorg.
    reorgs = []
    runner, seen = _runner(runner_market, state, chain, reorg_depth=3, on_reorg=lambda: reorgs.append(1))
    _post(runner_market, accounts[0], accounts[3], 3000)
    runner.poll_once()
    before = state.checkpoint
    for i in range(2):
        _post(runner_market, accounts[0], accounts[3], 3001 + i)
    # Mid-read, the checkpoint's block and the two posts after it are replaced.
    runner.market = _ReorgWhileReading(runner_market, chain, depth=3)
    head = chain.blocks.head.number
    runner.poll_once()
    assert state.checkpoint == before == head - 2  # the mixed range was not committed
    runner.poll_once()
    assert reorgs == [1]
    assert state.checkpoint == chain.blocks.head.number
    assert state.block_hash(head) == chain.provider.web3.eth.get_block(head)["hash"].hex()


def test_run__node_unreachable__backs_off_and_stops_cleanly(runner_market, state):
    dead = Web3(HTTPProvider("http://127.0.0.1:9", request_kwargs={"timeout": 0.5}))  # nothing listens there
    runner = Runner(runner_market, state, dead, poll_interval=0.05)
    th = threading.Thread(target=runner.run, daemon=True)
    th.start()
    time.sleep(1.5)
    assert th.is_alive() and runner.errors >= 2 and "ConnectionError" in runner.last_error
    runner.stop()
    th.join(5)
    assert not th.is_alive()


def _resend_own_settings(market, acct):
    """A send through the SDK that always succeeds: update the worker to the settings it has."""
    worker = market.worker(acct.address)
    return lambda tx: market.update(worker.enc_key, worker.price, sender=acct, **tx)


def _credit_of(market, acct) -> None:
    """Give ``acct`` a credit in the market: post a task with nobody named and cancel it (refund)."""
    task_hash = hashlib.sha256(f"credit {acct.address} {acct.nonce}".encode()).digest()
    from ape import accounts

    task = market.post(task_hash, price=10**15, validator_fee=10**15, validator=accounts.test_accounts[4].address,
                       timeout=60, sender=acct)
    market.cancel(task.task_id, sender=acct)


def test_send__action_no_longer_needed__moot_and_no_transaction(state, chain, accounts):
    sender = TxSender(state, accounts[5].address, chain.provider.web3)
    nonce = accounts[5].nonce
    assert sender.send("expire:1", lambda: False, lambda tx: pytest.fail("must not send")) == "moot"
    assert accounts[5].nonce == nonce and state.journal("expire:1") is None


def test_send__sdk_method__journals_mined_with_its_transaction_hash(runner_market, state, chain, accounts):
    acct = accounts[3]
    web3 = chain.provider.web3
    sender = TxSender(state, acct.address, web3)
    assert sender.send("update:same", lambda: True, _resend_own_settings(runner_market, acct)) == "sent"
    entry = state.journal("update:same")
    assert entry["status"] == "mined" and entry["tx_hash"], entry
    receipt = web3.eth.get_transaction_receipt(entry["tx_hash"])
    sent = web3.eth.get_transaction(entry["tx_hash"])
    assert (receipt["status"], sent["from"], sent["nonce"]) == (1, acct.address, entry["nonce"])


def test_send__read_after_the_send_fails__journals_mined_with_its_hash(runner_market, state, chain, accounts):
    acct = accounts[3]
    send = _resend_own_settings(runner_market, acct)

    def send_then_lose_the_node(tx):
        send(tx)
        raise ConnectionError("node gone while reading the new state")

    with pytest.raises(ConnectionError):
        TxSender(state, acct.address, chain.provider.web3).send("update:same", lambda: True, send_then_lose_the_node)
    entry = state.journal("update:same")
    assert entry["status"] == "mined" and entry["tx_hash"], entry


def test_send__transaction_reverts_on_chain__journals_reverted_with_its_hash_and_raises(
    runner_market, state, chain, accounts
):
    acct = accounts[5]
    web3 = chain.provider.web3
    _credit_of(runner_market, acct)
    sender = TxSender(state, acct.address, web3)
    # The market itself takes no ether: paying the credit to it passes the SDK's pre-checks and reverts on chain
    # (a fixed gas limit: no estimate could refuse it first), as a race lost between pre-check and block does.
    with pytest.raises(TransferFailed):
        sender.send("withdraw:9", lambda: True,
                    lambda tx: runner_market.withdraw(sender=acct, to=runner_market.address, gas=200_000, **tx))
    entry = state.journal("withdraw:9")
    assert entry["status"] == "reverted" and entry["tx_hash"], entry
    assert web3.eth.get_transaction_receipt(entry["tx_hash"])["status"] == 0
    assert acct.nonce == entry["nonce"] + 1  # the nonce is spent: the next attempt takes a fresh one


def test_send__refused_before_signing__journals_refused_and_keeps_the_nonce(runner_market, state, chain, accounts):
    acct = accounts[7]
    assert runner_market.credit(acct.address) == 0
    sender = TxSender(state, acct.address, chain.provider.web3)
    nonce = acct.nonce
    with pytest.raises(NothingToWithdraw):  # the SDK's pre-check: nothing is signed or sent
        sender.send("withdraw:10", lambda: True, lambda tx: runner_market.withdraw(sender=acct, **tx))
    entry = state.journal("withdraw:10")
    assert (entry["status"], entry["tx_hash"], entry["nonce"]) == ("refused", None, nonce)
    assert acct.nonce == nonce


def test_send__journaled_but_unsent__resent_with_same_nonce(runner_market, state, chain, accounts):
    acct = accounts[3]
    sender = TxSender(state, acct.address, chain.provider.web3)
    state.journal_intent("withdraw:7", acct.nonce)  # a previous life journaled, then died before sending
    used: list[int] = []
    send = _resend_own_settings(runner_market, acct)

    def record(tx):
        used.append(tx["nonce"])
        return send(tx)

    assert sender.send("withdraw:7", lambda: True, record) == "sent"
    assert used == [state.journal("withdraw:7")["nonce"]]
    assert state.journal("withdraw:7")["status"] == "mined"


def test_send__journaled_nonce_already_used__takes_a_fresh_nonce(runner_market, state, chain, accounts):
    acct = accounts[3]
    sender = TxSender(state, acct.address, chain.provider.web3)
    state.journal_intent("verdict:3", acct.nonce)
    acct.transfer(accounts[6], 1)  # that nonce went to another transaction
    used: list[int] = []
    send = _resend_own_settings(runner_market, acct)
    sender.send("verdict:3", lambda: True, lambda tx: used.append(tx["nonce"]) or send(tx))
    assert used == [acct.nonce - 1]
