"""Attacks on TaskMarket, on anvil, each neutralized.

* a reentrant payee (re-enters withdraw / withdrawTo from its receive hook),
* an always-reverting payee (its failed withdraw must not block anyone else),
* a force-feeder (ether pushed in by selfdestruct must not break the accounting),
* an outsider calling every state-changing function (each refused with the right custom error),
* a copier replaying another provider's result commitment.
"""

from __future__ import annotations

import ape
import pytest
from ape.api.address import BaseAddress
from ape.contracts import ContractInstance
from eth_utils import keccak

REVIEW, VALIDATION, MIN_TIMEOUT, MAX_TIMEOUT = 50, 60, 10, 300
PRICE, FEE, TIMEOUT = 10**18, 10**17, 100
ZERO = "0x" + "00" * 20


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


@pytest.fixture(scope="module")
def owner(accounts):
    return accounts[0]


@pytest.fixture(scope="module")
def requester(accounts):
    return accounts[1]


@pytest.fixture(scope="module")
def provider(accounts):
    return accounts[2]


@pytest.fixture(scope="module")
def validator(accounts):
    return accounts[3]


@pytest.fixture(scope="module")
def outsider(accounts):
    return accounts[4]


@pytest.fixture(scope="module")
def copier(accounts):
    return accounts[5]


@pytest.fixture(scope="module")
def market(project, owner, provider, validator, copier):
    m = project.TaskMarket.deploy(REVIEW, VALIDATION, MIN_TIMEOUT, MAX_TIMEOUT, sender=owner)
    for i, w in enumerate((provider, validator, copier)):
        m.register(keccak(text=f"key{i}"), 0, True, sender=w)
    return m


@pytest.fixture
def post(market, requester):
    """Factory: post a task (price + fee escrowed) naming the given provider/validator; returns its id."""

    def _post(provider: BaseAddress | None = None, validator: BaseAddress | None = None, sender=requester) -> int:
        terms = (provider.address if provider is not None else ZERO,
                 validator.address if validator is not None else ZERO, PRICE, FEE, TIMEOUT)
        market.post(keccak(text="task"), terms, b"", b"", value=PRICE + FEE, sender=sender)
        return market.lastTaskId()

    return _post


@pytest.fixture
def contract_actor(project, market, owner):
    """Factory: deploy an attack contract and register it as a worker through its `act` forwarder."""

    def _deploy(kind: str):
        actor = getattr(project, kind).deploy(market.address, sender=owner)
        actor.act(market.register.encode_input(keccak(text=kind), 0, True), sender=owner)
        return actor

    return _deploy


def accept_and_finalize(market, task_id, provider_sender, validator, requester, result=b"r"):
    """Drive a task from Executing to Completed (the provider is credited the price)."""
    h = keccak(result)
    if isinstance(provider_sender, ContractInstance):  # an attack contract: it calls through its forwarder
        provider_sender.act(market.submitResult.encode_input(task_id, h, b"", b""), sender=requester)
    else:
        market.submitResult(task_id, h, b"", b"", sender=provider_sender)
    market.submitVerdict(task_id, h, True, sender=validator)
    market.finalize(task_id, 5, sender=requester)


def test_withdraw__reentrant_payee__reentry_refused_and_paid_once(market, post, contract_actor, validator,
                                                                  requester, owner):
    attacker = contract_actor("ReentrantPayee")
    task_id = post(attacker, validator)
    accept_and_finalize(market, task_id, attacker, validator, requester)
    market.withdraw(sender=validator)
    attacker.setAttack(market.withdraw.encode_input(), sender=owner)
    before = ape.chain.provider.get_balance(attacker.address)
    market_before = ape.chain.provider.get_balance(market.address)

    attacker.act(market.withdraw.encode_input(), sender=owner)

    assert ape.chain.provider.get_balance(attacker.address) - before == PRICE
    assert market_before - ape.chain.provider.get_balance(market.address) == PRICE
    assert attacker.attempts() == 1 and attacker.successes() == 0
    assert bytes(attacker.lastError()) == selector("TaskMarket__Reentrancy()")
    assert market.creditOf(attacker.address) == 0


def test_withdraw_to__reentrant_payee__reentry_refused(market, post, contract_actor, validator, requester, owner):
    attacker = contract_actor("ReentrantPayee")
    task_id = post(attacker, validator)
    accept_and_finalize(market, task_id, attacker, validator, requester)
    attacker.setAttack(market.withdrawTo.encode_input(attacker.address), sender=owner)

    attacker.act(market.withdrawTo.encode_input(attacker.address), sender=owner)

    assert attacker.attempts() == 1 and attacker.successes() == 0
    assert bytes(attacker.lastError()) == selector("TaskMarket__Reentrancy()")
    assert market.creditOf(attacker.address) == 0


def test_withdraw__reverting_payee__fails_alone_and_recovers_via_withdraw_to(
        market, post, contract_actor, validator, requester, owner, outsider):
    payee = contract_actor("RevertingPayee")
    task_id = post(payee, validator)
    accept_and_finalize(market, task_id, payee, validator, requester)

    with ape.reverts(market.TaskMarket__TransferFailed, to=payee.address, amount=PRICE):
        payee.act(market.withdraw.encode_input(), sender=owner)
    assert market.creditOf(payee.address) == PRICE  # nothing lost

    before = validator.balance
    receipt = market.withdraw(sender=validator)  # unaffected by the stuck payee
    assert validator.balance - before + receipt.total_fees_paid == FEE

    before = outsider.balance
    payee.act(market.withdrawTo.encode_input(outsider.address), sender=owner)
    assert outsider.balance - before == PRICE
    assert market.creditOf(payee.address) == 0


def test_force_feed__selfdestruct__accounting_unbroken(project, market, post, provider, validator, requester,
                                                       owner):
    market_start = ape.chain.provider.get_balance(market.address)
    task_id = post(provider, validator)
    feeder = project.ForceFeeder.deploy(value=3 * 10**18, sender=owner)
    feeder.feed(market.address, sender=owner)
    assert ape.chain.provider.get_balance(market.address) == market_start + PRICE + FEE + 3 * 10**18

    h = keccak(b"forced")
    market.submitResult(task_id, h, b"", b"", sender=provider)
    market.submitVerdict(task_id, h, False, sender=validator)
    market.finalize(task_id, 1, sender=requester)
    assert market.creditOf(requester) >= PRICE  # the price came back, the forced ether is nobody's credit
    for account in (requester, validator, provider):
        if market.creditOf(account):
            market.withdraw(sender=account)
    assert ape.chain.provider.get_balance(market.address) == market_start + 3 * 10**18
    with ape.reverts(market.TaskMarket__NothingToWithdraw):
        market.withdraw(sender=owner)


def test_submit_result__copier_replays_commitment__bound_to_its_own_task(
        market, post, provider, copier, validator, requester):
    """A copier replaying a seen result hash commits it to its own task only: the honest task keeps its
    commitment and is paid; the copier's task is judged on its own (the package names another task, so an
    honest validator rejects it) and the copier gets nothing."""
    honest = post(provider)
    copied = post(copier)
    h = keccak(b"honest result")
    market.submitResult(honest, h, b"", b"", sender=provider)
    market.submitResult(copied, h, b"", b"", sender=copier)  # same hash, another task: no collision
    assert market.resultOf(honest) == market.resultOf(copied) == h
    # once per task, and only by the task's own provider
    with ape.reverts(market.TaskMarket__WrongState, taskId=copied):
        market.submitResult(copied, keccak(b"copier's second try"), b"", b"", sender=copier)
    with ape.reverts(market.TaskMarket__NotProvider, taskId=honest, caller=copier.address):
        market.submitResult(honest, keccak(b"copier's own"), b"", b"", sender=copier)
    # each task is bound to its own commitment only
    with ape.reverts(market.TaskMarket__WrongResult, taskId=honest, resultHash=keccak(b"copier's own")):
        market.assignValidator(honest, validator, keccak(b"copier's own"), b"", sender=requester)
    market.assignValidator(honest, validator, h, b"", sender=requester)
    market.assignValidator(copied, validator, h, b"", sender=requester)
    with ape.reverts(market.TaskMarket__WrongResult, taskId=copied, resultHash=keccak(b"other")):
        market.submitVerdict(copied, keccak(b"other"), True, sender=validator)

    provider_before, copier_before = market.creditOf(provider), market.creditOf(copier)
    requester_before = market.creditOf(requester)
    market.submitVerdict(honest, h, True, sender=validator)
    market.submitVerdict(copied, h, False, sender=validator)  # meta.json names the honest task: rejected
    market.finalize(honest, 5, sender=requester)
    market.finalize(copied, 1, sender=requester)
    assert market.creditOf(provider) - provider_before == PRICE
    assert market.creditOf(copier) == copier_before
    assert market.creditOf(requester) - requester_before == PRICE  # the copied task's price came back


OUTSIDER_CALLS = {
    # name: (call, expected error, error inputs) -- task 1 is Executing, posted by `requester`
    "assignProvider": (lambda m, t, o: m.assignProvider(t, o.address, b"", sender=o), "TaskMarket__NotRequester"),
    "assignValidator": (lambda m, t, o: m.assignValidator(t, o.address, b"\0" * 32, b"", sender=o),
                        "TaskMarket__NotRequester"),
    "submitResult": (lambda m, t, o: m.submitResult(t, keccak(b"x"), b"", b"", sender=o), "TaskMarket__NotProvider"),
    "submitVerdict": (lambda m, t, o: m.submitVerdict(t, keccak(b"x"), True, sender=o), "TaskMarket__NotValidator"),
    "finalize": (lambda m, t, o: m.finalize(t, 5, sender=o), "TaskMarket__NotRequester"),
    "cancel": (lambda m, t, o: m.cancel(t, sender=o), "TaskMarket__NotRequester"),
    "expire": (lambda m, t, o: m.expire(t, sender=o), "TaskMarket__DeadlineNotReached"),
    "withdraw": (lambda m, t, o: m.withdraw(sender=o), "TaskMarket__NothingToWithdraw"),
    "withdrawTo": (lambda m, t, o: m.withdrawTo(o.address, sender=o), "TaskMarket__NothingToWithdraw"),
    "update": (lambda m, t, o: m.update(keccak(b"k"), 0, True, sender=o), "TaskMarket__NotAWorker"),
    "leave": (lambda m, t, o: m.leave(sender=o), "TaskMarket__NotAWorker"),
}


@pytest.mark.parametrize("name", sorted(OUTSIDER_CALLS))
def test_every_function__outsider__refused_with_custom_error(market, post, provider, validator, outsider, name):
    task_id = post(provider, validator)
    escrow = ape.chain.provider.get_balance(market.address)
    call, error = OUTSIDER_CALLS[name]
    with ape.reverts(getattr(market, error)):
        call(market, task_id, outsider)
    assert market.getTask(task_id).status == 2  # still Executing
    assert ape.chain.provider.get_balance(market.address) == escrow


def test_ratings__outsider__refused_with_custom_error(project, market, provider, outsider):
    ratings = project.Ratings.at(market.ratings())
    with ape.reverts(ratings.Ratings__NotMarket, caller=outsider.address):
        ratings.rate(provider.address, 1, outsider.address, 5, sender=outsider)
    with ape.reverts(ratings.Ratings__NotMarket, caller=outsider.address):
        ratings.track(outsider.address, sender=outsider)


def test_outsider_calls__cover_every_state_changing_function(market):
    """The table above names every non-view function of the market except those open to anyone by design."""
    open_to_anyone = {"post", "register"}  # anyone may post a task or register as a worker
    mutable = {abi.name for abi in market.contract_type.mutable_methods}
    assert mutable - open_to_anyone == set(OUTSIDER_CALLS)


def test_submit_result__copier_front_runs_commitment__honest_provider_still_commits(
        market, post, provider, copier, accounts):
    honest = post(provider)
    accomplice = accounts[6]  # posts a free task naming the copier, so the copier has something to commit to
    market.post(keccak(text="decoy"), (copier.address, ZERO, 0, 0, TIMEOUT), b"", b"", value=0, sender=accomplice)
    decoy = market.lastTaskId()
    h = keccak(b"honest result seen in the mempool")
    market.submitResult(decoy, h, b"", b"", sender=copier)  # mined first: same hash, the copier's own task

    market.submitResult(honest, h, b"", b"", sender=provider)  # the commitment is per task: no collision
    assert market.getTask(honest).status == 3
    assert market.resultOf(honest) == market.resultOf(decoy) == h
