"""TaskMarket (protocol v2): every function, its success, every revert (custom errors) and the money of each path.

Set-up goes through the SDK fixtures (tests/conftest.py: ``workers``, ``post_task``, ``task_in``); the calls under
test go to the raw contract, so the contract's own checks are what is exercised (the SDK's pre-checks would
refuse most of these calls before a transaction; they are tested in test_market_sdk.py).

Decline (the provider gives back a task it cannot run) refunds price + fee and pays nobody; publishOffer keeps
only the offer's hash and block on chain, the document itself is in the event.

Amounts with the fixtures' PRICE = 1e16 and FEE = 1e15 (BURN 1%, COLLATERAL fee + 10% of the price, FAILURE 10%):
collateral 2e15; accept: provider price - 1% + collateral, validator fee - 1%, burned 1% of both; reject: requester
price + fee, validator fee - 1% out of the collateral, the rest of the collateral burned; failure: provider
10% of the price - 1% of that, requester the rest, burned 1% of the failure fee.
"""

from __future__ import annotations

from typing import Any

import ape
import pytest
from ape.api.address import BaseAddress

from eth_utils import keccak

from ichain.market import Status, commitment_of

ZERO = "0x0000000000000000000000000000000000000000"
BPS = 10_000


@pytest.fixture
def mc(market_contract):
    return market_contract


def terms(provider: BaseAddress | str | None = None, validator: BaseAddress | str | None = None,
          price: int = 10**16, fee: int = 10**15, timeout: int = 600) -> tuple[str, str, int, int, int]:
    """The post() terms tuple (provider, validator, price, fee, timeout); an unnamed party is the zero address."""

    def addr(x: BaseAddress | str | None) -> str:
        return ZERO if x is None else (x if isinstance(x, str) else x.address)

    return addr(provider), addr(validator), price, fee, timeout


def status(mc, task_id) -> Status:
    return Status(int(mc.getTask(task_id).status))


def collateral(price: int, fee: int) -> int:
    return fee + price * 1000 // BPS


def burn(amount: int) -> int:
    return amount * 100 // BPS


def credits(mc, *who: Any) -> list[int]:
    return [mc.creditOf(w) for w in who]


def escrow_held(mc) -> int:
    """What the open tasks hold: price + fee each, plus the collateral of those Validating."""
    total = 0
    for tid in mc.openTasks(0, 10_000):
        t = mc.getTask(tid)
        total += t.price + t.validatorFee
        if Status(int(t.status)) == Status.Validating:
            total += collateral(t.price, t.validatorFee)
    return total


def assert_solvent(mc, accounts) -> None:
    """balance == open escrow + collateral + every credit + burned (the test accounts hold every credit)."""
    balance = ape.chain.provider.get_balance(mc.address)
    owed = sum(mc.creditOf(a) for a in accounts)
    assert balance == escrow_held(mc) + owed + mc.burned()


# ====================================================================== constructor
@pytest.mark.parametrize("windows", [(0, 1, 2), (1, 0, 2), (1, 3, 2), (1, 1, 2**24), (2**24, 1, 2)])
def test_constructor__invalid_windows__reverts(project, deployer, windows):
    with ape.reverts(project.TaskMarket.TaskMarket__InvalidWindows):
        project.TaskMarket.deploy(*windows, sender=deployer)


def test_constructor__valid_windows__immutables_set_and_ratings_deployed(mc, ratings_contract, consts):
    assert (mc.validationWindow(), mc.minTimeout(), mc.maxTimeout()) == (
        consts.VALIDATION_WINDOW, consts.MIN_TIMEOUT, consts.MAX_TIMEOUT)
    assert ratings_contract.market() == mc.address
    assert (mc.BURN_BPS(), mc.COLLATERAL_BPS(), mc.FAILURE_BPS(), mc.MAX_REPORT_BYTES()) == (100, 1000, 1000, 1024)
    assert mc.burned() == 0


def test_constructor__edge_windows__accepted(project, deployer):
    m = project.TaskMarket.deploy(2**24 - 1, 2**24 - 1, 2**24 - 1, sender=deployer)
    assert (m.validationWindow(), m.minTimeout(), m.maxTimeout()) == (2**24 - 1,) * 3


# ====================================================================== register / update / leave
def test_register__new_worker__stored_available_and_event(mc, outsider, new_hash):
    key = new_hash()
    receipt = mc.register(key, 123, True, sender=outsider)
    w = mc.getWorker(outsider)
    assert (w.encKey, w.price, w.registered, w.available, w.missed) == (key, 123, True, True, 0)
    assert w.id > 0 and mc.workerAddress(w.id) == outsider.address
    assert outsider.address in mc.availableWorkers(0, 100)
    assert mc.creditOf(outsider) == 0
    [event] = receipt.decode_logs(mc.WorkerRegistered)
    assert (event.worker, event.encKey, event.price, event.available) == (outsider.address, key, 123, True)


def test_register__unavailable__not_in_pool(mc, outsider, new_hash):
    count = mc.availableWorkerCount()
    mc.register(new_hash(), 1, False, sender=outsider)
    assert mc.availableWorkerCount() == count
    assert outsider.address not in mc.availableWorkers(0, 100)


def test_register__zero_key__reverts(mc, outsider):
    with ape.reverts(mc.TaskMarket__ZeroKey):
        mc.register(bytes(32), 1, True, sender=outsider)


def test_register__twice__reverts(mc, outsider, new_hash):
    mc.register(new_hash(), 1, True, sender=outsider)
    with ape.reverts(mc.TaskMarket__AlreadyRegistered, worker=outsider.address):
        mc.register(new_hash(), 1, True, sender=outsider)


def test_update__registered__fields_changed_and_pool_membership_follows(mc, workers, new_hash):
    provider, validator, provider2, validator2 = workers
    key = new_hash()
    receipt = mc.update(key, 7, False, sender=provider)
    w = mc.getWorker(provider)
    assert (w.encKey, w.price, w.available, w.poolIndex) == (key, 7, False, 0)
    assert not receipt.decode_logs(mc.WorkerUpdated)[0].available
    pool = list(mc.availableWorkers(0, 100))
    assert provider.address not in pool and {validator.address, provider2.address, validator2.address} <= set(pool)
    for i, addr in enumerate(pool):  # the worker swapped into the hole knows its new position
        assert mc.getWorker(addr).poolIndex == i
    mc.update(key, 7, True, sender=provider)
    assert provider.address in mc.availableWorkers(0, 100)


def test_update__last_in_pool_leaves__no_swap_needed(mc, outsider, new_hash):
    mc.register(new_hash(), 1, True, sender=outsider)
    count = mc.availableWorkerCount()
    assert mc.availableWorkers(count - 1, 1)[0] == outsider.address
    mc.update(new_hash(), 1, False, sender=outsider)
    assert mc.availableWorkerCount() == count - 1 and outsider.address not in mc.availableWorkers(0, 100)


def test_update__same_availability__pool_unchanged(mc, workers, new_hash):
    before = list(mc.availableWorkers(0, 100))
    mc.update(new_hash(), 5, True, sender=workers[0])
    assert list(mc.availableWorkers(0, 100)) == before


def test_update__unavailable_stays_unavailable__pool_unchanged(mc, outsider, new_hash):
    mc.register(new_hash(), 1, False, sender=outsider)
    before = list(mc.availableWorkers(0, 100))
    mc.update(new_hash(), 2, False, sender=outsider)
    assert list(mc.availableWorkers(0, 100)) == before


def test_update__not_a_worker__reverts(mc, outsider, new_hash):
    with ape.reverts(mc.TaskMarket__NotAWorker, account=outsider.address):
        mc.update(new_hash(), 1, True, sender=outsider)


def test_update__zero_key__reverts(mc, workers):
    with ape.reverts(mc.TaskMarket__ZeroKey):
        mc.update(bytes(32), 1, True, sender=workers[0])


def test_leave__registered__removed_key_cleared_and_id_kept_on_return(mc, workers, new_hash):
    provider = workers[0]
    worker_id = mc.getWorker(provider).id
    receipt = mc.leave(sender=provider)
    w = mc.getWorker(provider)
    assert (w.registered, w.available, w.id, w.encKey, w.price) == (False, False, worker_id, bytes(32), 0)
    assert provider.address not in mc.availableWorkers(0, 100)
    assert len(receipt.decode_logs(mc.WorkerLeft)) == 1
    mc.register(new_hash(), 1, True, sender=provider)
    assert mc.getWorker(provider).id == worker_id


def test_leave__unavailable_worker__pool_untouched(mc, outsider, new_hash):
    mc.register(new_hash(), 1, False, sender=outsider)
    count = mc.availableWorkerCount()
    mc.leave(sender=outsider)
    assert mc.availableWorkerCount() == count


def test_leave__not_a_worker__reverts(mc, outsider):
    with ape.reverts(mc.TaskMarket__NotAWorker, account=outsider.address):
        mc.leave(sender=outsider)


def test_leave__open_task__carries_on_and_settles(mc, workers, task_in, requester, consts):
    provider, validator, *_ = workers
    task, rh = task_in("Validating")
    mc.leave(sender=provider)
    mc.leave(sender=validator)
    mc.submitVerdict(task.task_id, rh, True, consts.LOCATOR, sender=validator)
    assert status(mc, task.task_id) == Status.Completed
    assert mc.creditOf(provider) > 0


# ====================================================================== setTrust / trusts
def test_set_trust__trust_then_untrust__stored_and_events(mc, outsider, workers):
    validator = workers[1]
    receipt = mc.setTrust(validator, True, sender=outsider)
    assert mc.trusts(outsider, validator)
    [event] = receipt.decode_logs(mc.TrustChanged)
    assert (event.event_arguments["provider"], event.validator, event.trusted) == (
        outsider.address, validator.address, True)
    mc.setTrust(validator, False, sender=outsider)
    assert not mc.trusts(outsider, validator)


def test_set_trust__directional__validator_does_not_trust_back(mc, workers):
    provider, validator, *_ = workers
    assert mc.trusts(provider, validator) and not mc.trusts(validator, provider)


@pytest.mark.parametrize("who", ["zero", "self"])
def test_set_trust__zero_or_self__reverts(mc, outsider, who):
    target = ZERO if who == "zero" else outsider.address
    with ape.reverts(mc.TaskMarket__InvalidValidator, validator=target):
        mc.setTrust(target, True, sender=outsider)


def test_set_trust__untrust_after_post__running_task_keeps_its_validator(mc, workers, task_in, consts):
    provider, validator, *_ = workers
    task, rh = task_in("Validating")
    mc.setTrust(validator, False, sender=provider)
    mc.submitVerdict(task.task_id, rh, True, consts.LOCATOR, sender=validator)
    assert status(mc, task.task_id) == Status.Completed


# ====================================================================== post
def test_post__provider_and_validator__executing_escrowed_and_event(mc, requester, workers, new_hash, consts):
    provider, validator, *_ = workers
    task_hash = new_hash()
    receipt = mc.post(task_hash, terms(provider, validator), b"p-loc", sender=requester,
                      value=consts.PRICE + consts.FEE)
    tid = mc.lastTaskId()
    t = mc.getTask(tid)
    assert Status(t.status) == Status.Executing
    assert (t.requester, t.provider, t.validator) == (requester.address, provider.address, validator.address)
    assert (t.price, t.validatorFee, t.timeout) == (consts.PRICE, consts.FEE, 600)
    assert t.deadline == receipt.timestamp + 600
    assert tid in mc.openTasks(0, 1000) and mc.getTask(tid).poolIndex == mc.openTaskCount() - 1
    assert mc.resultOf(tid) == bytes(32)
    [event] = receipt.decode_logs(mc.TaskPosted)
    assert (event.taskId, event.taskHash, event.locator, event.price, event.validatorFee, event.deadline) == (
        tid, task_hash, b"p-loc", consts.PRICE, consts.FEE, t.deadline)
    args = event.event_arguments  # `provider` is also an attribute of ape's log objects
    assert (args["provider"], args["validator"], args["requester"]) == (provider.address, validator.address,
                                                                         requester.address)


def test_post__no_provider__pending_with_validator(mc, requester, workers, new_hash, consts):
    validator = workers[1]
    mc.post(new_hash(), terms(None, validator), b"", sender=requester, value=consts.PRICE + consts.FEE)
    tid = mc.lastTaskId()
    t = mc.getTask(tid)
    assert (Status(t.status), t.provider, t.validator) == (Status.Pending, ZERO, validator.address)
    assert tid in mc.tasksInStatus(int(Status.Pending), 0, 1000)[0]


def test_post__zero_task_hash__reverts(mc, requester, workers):
    with ape.reverts(mc.TaskMarket__ZeroTaskHash):
        mc.post(bytes(32), terms(None, workers[1]), b"", sender=requester, value=10**16 + 10**15)


@pytest.mark.parametrize("timeout", [59, 86_401])
def test_post__timeout_out_of_bounds__reverts(mc, requester, workers, new_hash, timeout, consts):
    with ape.reverts(mc.TaskMarket__TimeoutOutOfBounds, timeout=timeout, minTimeout=consts.MIN_TIMEOUT,
                     maxTimeout=consts.MAX_TIMEOUT):
        mc.post(new_hash(), terms(None, workers[1], timeout=timeout), b"", sender=requester, value=10**16 + 10**15)


@pytest.mark.parametrize("timeout", [60, 86_400])
def test_post__timeout_at_bounds__accepted(mc, requester, workers, new_hash, timeout):
    mc.post(new_hash(), terms(None, workers[1], timeout=timeout), b"", sender=requester, value=10**16 + 10**15)
    assert mc.getTask(mc.lastTaskId()).timeout == timeout


@pytest.mark.parametrize("value", [0, 10**16, 10**16 + 10**15 + 1])
def test_post__wrong_deposit__reverts(mc, requester, workers, new_hash, value):
    with ape.reverts(mc.TaskMarket__WrongDeposit, expected=10**16 + 10**15, sent=value):
        mc.post(new_hash(), terms(None, workers[1]), b"", sender=requester, value=value)


@pytest.mark.parametrize("who", ["zero", "requester"])
def test_post__no_or_self_validator__reverts(mc, workers, requester, new_hash, who):
    sender = workers[1] if who == "requester" else requester
    target = ZERO if who == "zero" else workers[1].address
    with ape.reverts(mc.TaskMarket__InvalidValidator, validator=target):
        mc.post(new_hash(), terms(None, target), b"", sender=sender, value=10**16 + 10**15)


def test_post__validator_not_a_worker__reverts(mc, requester, outsider, workers, new_hash):
    with ape.reverts(mc.TaskMarket__NotAWorker, account=outsider.address):
        mc.post(new_hash(), terms(None, outsider), b"", sender=requester, value=10**16 + 10**15)


def test_post__validator_unavailable__reverts(mc, requester, workers, new_hash):
    validator = workers[1]
    mc.update(mc.getWorker(validator).encKey, 1, False, sender=validator)
    with ape.reverts(mc.TaskMarket__WorkerUnavailable, worker=validator.address):
        mc.post(new_hash(), terms(None, validator), b"", sender=requester, value=10**16 + 10**15)


def test_post__fee_below_validator_asking__reverts(mc, requester, workers, new_hash, consts):
    """M5: a validator is never drafted below its asking price (a fee of 0 against a paid validator)."""
    validator = workers[1]
    with ape.reverts(mc.TaskMarket__PriceTooLow, worker=validator.address, asking=consts.ASKING, offered=0):
        mc.post(new_hash(), terms(None, validator, fee=0), b"", sender=requester, value=10**16)


def test_post__fee_equal_to_asking__accepted(mc, requester, workers, new_hash, consts):
    mc.post(new_hash(), terms(None, workers[1], fee=consts.ASKING), b"", sender=requester,
            value=10**16 + consts.ASKING)
    assert status(mc, mc.lastTaskId()) == Status.Pending


def test_post__requester_as_provider__reverts(mc, workers, new_hash):
    provider, validator, *_ = workers
    with ape.reverts(mc.TaskMarket__InvalidProvider, provider=provider.address):
        mc.post(new_hash(), terms(provider, validator), b"", sender=provider, value=10**16 + 10**15)


def test_post__provider_is_validator__reverts(mc, requester, workers, new_hash):
    validator = workers[1]
    with ape.reverts(mc.TaskMarket__InvalidProvider, provider=validator.address):
        mc.post(new_hash(), terms(validator, validator), b"", sender=requester, value=10**16 + 10**15)


def test_post__provider_not_a_worker__reverts(mc, requester, outsider, workers, new_hash):
    with ape.reverts(mc.TaskMarket__NotAWorker, account=outsider.address):
        mc.post(new_hash(), terms(outsider, workers[1]), b"", sender=requester, value=10**16 + 10**15)


def test_post__provider_unavailable__reverts(mc, requester, workers, new_hash):
    provider, validator, *_ = workers
    mc.update(mc.getWorker(provider).encKey, 1, False, sender=provider)
    with ape.reverts(mc.TaskMarket__WorkerUnavailable, worker=provider.address):
        mc.post(new_hash(), terms(provider, validator), b"", sender=requester, value=10**16 + 10**15)


def test_post__price_below_provider_asking__reverts(mc, requester, workers, new_hash):
    provider, validator, *_ = workers
    asking = mc.getWorker(provider).price
    with ape.reverts(mc.TaskMarket__PriceTooLow, worker=provider.address, asking=asking, offered=asking - 1):
        mc.post(new_hash(), terms(provider, validator, price=asking - 1), b"", sender=requester,
                value=asking - 1 + 10**15)


def test_post__provider_does_not_trust_validator__reverts(mc, requester, workers, new_hash):
    """2: the provider's consent: a requester cannot pair it with a validator outside its trusted set."""
    provider, _, _, validator2 = workers
    with ape.reverts(mc.TaskMarket__ValidatorNotTrusted, provider=provider.address, validator=validator2.address):
        mc.post(new_hash(), terms(provider, validator2), b"", sender=requester, value=10**16 + 10**15)


def test_post__trust_withdrawn__reverts(mc, requester, workers, new_hash):
    provider, validator, *_ = workers
    mc.setTrust(validator, False, sender=provider)
    with ape.reverts(mc.TaskMarket__ValidatorNotTrusted):
        mc.post(new_hash(), terms(provider, validator), b"", sender=requester, value=10**16 + 10**15)


# ====================================================================== assignProvider
def test_assign_provider__pending__executing_with_fresh_deadline(mc, requester, workers, task_in, advance):
    task, _ = task_in("Pending")
    advance(50)
    receipt = mc.assignProvider(task.task_id, workers[0], b"loc", sender=requester)
    t = mc.getTask(task.task_id)
    assert (Status(t.status), t.provider) == (Status.Executing, workers[0].address)
    assert t.deadline == receipt.timestamp + t.timeout
    [event] = receipt.decode_logs(mc.ProviderAssigned)
    assert (event.taskId, event.event_arguments["provider"], event.requester, event.price, event.deadline,
            event.locator) == (task.task_id, workers[0].address, requester.address, t.price, t.deadline, b"loc")


def test_assign_provider__unknown_task__reverts(mc, requester, workers):
    with ape.reverts(mc.TaskMarket__TaskNotFound, taskId=999):
        mc.assignProvider(999, workers[0], b"", sender=requester)


def test_assign_provider__not_requester__reverts(mc, outsider, workers, task_in):
    task, _ = task_in("Pending")
    with ape.reverts(mc.TaskMarket__NotRequester, taskId=task.task_id, caller=outsider.address):
        mc.assignProvider(task.task_id, workers[0], b"", sender=outsider)


@pytest.mark.parametrize("state", ["Executing", "Cancelled"])
def test_assign_provider__not_pending__reverts(mc, requester, workers, task_in, state):
    task, _ = task_in(state)
    with ape.reverts(mc.TaskMarket__WrongState, taskId=task.task_id, status=int(Status[state])):
        mc.assignProvider(task.task_id, workers[0], b"", sender=requester)


@pytest.mark.parametrize("who", ["zero", "requester", "validator"])
def test_assign_provider__invalid_party__reverts(mc, requester, workers, task_in, who):
    task, _ = task_in("Pending")  # validator named at post
    party = {"zero": ZERO, "requester": requester.address, "validator": workers[1].address}[who]
    with ape.reverts(mc.TaskMarket__InvalidProvider, provider=party):
        mc.assignProvider(task.task_id, party, b"", sender=requester)


def test_assign_provider__not_a_worker__reverts(mc, requester, outsider, task_in):
    task, _ = task_in("Pending")
    with ape.reverts(mc.TaskMarket__NotAWorker, account=outsider.address):
        mc.assignProvider(task.task_id, outsider, b"", sender=requester)


def test_assign_provider__unavailable__reverts(mc, requester, workers, task_in):
    task, _ = task_in("Pending")
    mc.update(mc.getWorker(workers[0]).encKey, 1, False, sender=workers[0])
    with ape.reverts(mc.TaskMarket__WorkerUnavailable, worker=workers[0].address):
        mc.assignProvider(task.task_id, workers[0], b"", sender=requester)


def test_assign_provider__price_too_low__reverts(mc, requester, workers, task_in):
    task, _ = task_in("Pending")
    mc.update(mc.getWorker(workers[0]).encKey, 10**17, True, sender=workers[0])
    with ape.reverts(mc.TaskMarket__PriceTooLow, worker=workers[0].address, asking=10**17, offered=task.price):
        mc.assignProvider(task.task_id, workers[0], b"", sender=requester)


def test_assign_provider__provider_does_not_trust_validator__reverts(mc, requester, workers, task_in):
    task, _ = task_in("Pending")  # validator = workers[1], trusted by workers[0] only
    with ape.reverts(mc.TaskMarket__ValidatorNotTrusted, provider=workers[2].address, validator=workers[1].address):
        mc.assignProvider(task.task_id, workers[2], b"", sender=requester)


# ====================================================================== submitResult
def test_submit_result__executing__validating_collateral_held_and_event(mc, requester, workers, task_in, new_hash,
                                                                       consts):
    provider, validator, *_ = workers
    task, _ = task_in("Executing")
    rh = new_hash()
    balance = ape.chain.provider.get_balance(mc.address)
    receipt = mc.submitResult(task.task_id, rh, b"v-loc", sender=provider, value=consts.COLLATERAL)
    t = mc.getTask(task.task_id)
    assert Status(t.status) == Status.Validating
    assert t.deadline == receipt.timestamp + consts.VALIDATION_WINDOW
    assert mc.resultOf(task.task_id) == commitment_of(rh)  # the first 24 bytes (the open-task slot keeps them)
    assert ape.chain.provider.get_balance(mc.address) == balance + consts.COLLATERAL
    [event] = receipt.decode_logs(mc.ResultSubmitted)
    args = event.event_arguments
    assert (args["provider"], args["validator"], args["requester"]) == (provider.address, validator.address,
                                                                         requester.address)
    assert (event.resultHash, event.collateral, event.deadline, event.validatorLocator) == (
        rh, consts.COLLATERAL, t.deadline, b"v-loc")


def test_submit_result__event__carries_nothing_for_the_requester(mc, workers, task_in, new_hash, consts):
    """1: the requester gets nothing that opens the result before the accept: the event has one locator, the
    validator's, and the task's view holds only the hash."""
    task, _ = task_in("Executing")
    receipt = mc.submitResult(task.task_id, new_hash(), b"only-for-v", sender=workers[0], value=consts.COLLATERAL)
    [event] = receipt.decode_logs(mc.ResultSubmitted)
    assert [k for k, v in event.event_arguments.items() if isinstance(v, bytes) and len(v) != 32] == [
        "validatorLocator"]


def test_collateral_for__formula__fee_plus_tenth_of_price(mc, consts):
    assert mc.collateralFor(consts.PRICE, consts.FEE) == consts.COLLATERAL == collateral(consts.PRICE, consts.FEE)
    assert mc.collateralFor(0, 0) == 0
    assert mc.collateralFor(9, 5) == 5  # rounds down
    assert mc.collateralFor(2**96 - 1, 2**96 - 1) == collateral(2**96 - 1, 2**96 - 1)


@pytest.mark.parametrize("delta", [-1, 1, "zero"])
def test_submit_result__wrong_collateral__reverts(mc, workers, task_in, new_hash, consts, delta):
    task, _ = task_in("Executing")
    sent = 0 if delta == "zero" else consts.COLLATERAL + delta
    with ape.reverts(mc.TaskMarket__WrongDeposit, expected=consts.COLLATERAL, sent=sent):
        mc.submitResult(task.task_id, new_hash(), b"", sender=workers[0], value=sent)


def test_submit_result__zero_hash__reverts(mc, workers, task_in, consts):
    task, _ = task_in("Executing")
    with ape.reverts(mc.TaskMarket__ZeroResultHash):
        mc.submitResult(task.task_id, bytes(32), b"", sender=workers[0], value=consts.COLLATERAL)


def test_submit_result__unknown_task__reverts(mc, workers, new_hash):
    with ape.reverts(mc.TaskMarket__TaskNotFound, taskId=999):
        mc.submitResult(999, new_hash(), b"", sender=workers[0])


@pytest.mark.parametrize("who", ["outsider", "other_worker", "requester", "validator"])
def test_submit_result__not_provider__reverts(mc, requester, outsider, workers, task_in, new_hash, consts, who):
    task, _ = task_in("Executing")
    caller = {"outsider": outsider, "other_worker": workers[2], "requester": requester, "validator": workers[1]}[who]
    with ape.reverts(mc.TaskMarket__NotProvider, taskId=task.task_id, caller=caller.address):
        mc.submitResult(task.task_id, new_hash(), b"", sender=caller, value=consts.COLLATERAL)


def test_submit_result__pending_task_unregistered_caller__not_provider(mc, outsider, task_in, new_hash):
    """A Pending task's provider id is 0: an account never registered (id 0) is not its provider."""
    task, _ = task_in("Pending")
    with ape.reverts(mc.TaskMarket__NotProvider, taskId=task.task_id, caller=outsider.address):
        mc.submitResult(task.task_id, new_hash(), b"", sender=outsider)


@pytest.mark.parametrize("state", ["Validating", "Failed", "Completed", "Rejected"])
def test_submit_result__not_executing__reverts(mc, workers, task_in, new_hash, consts, state):
    task, _ = task_in(state)
    with ape.reverts(mc.TaskMarket__WrongState, taskId=task.task_id, status=int(Status[state])):
        mc.submitResult(task.task_id, new_hash(), b"", sender=workers[0], value=consts.COLLATERAL)


def test_submit_result__after_deadline__reverts(mc, workers, task_in, new_hash, past_deadline, consts):
    task, _ = task_in("Executing")
    past_deadline(task.task_id)
    deadline = mc.getTask(task.task_id).deadline
    with ape.reverts(mc.TaskMarket__DeadlinePassed, taskId=task.task_id, deadline=deadline):
        mc.submitResult(task.task_id, new_hash(), b"", sender=workers[0], value=consts.COLLATERAL)


def test_submit_result__at_deadline__accepted(mc, workers, task_in, new_hash, consts, chain):
    task, _ = task_in("Executing")
    chain.pending_timestamp = mc.getTask(task.task_id).deadline
    mc.submitResult(task.task_id, new_hash(), b"", sender=workers[0], value=consts.COLLATERAL)
    assert status(mc, task.task_id) == Status.Validating


# ====================================================================== reportFailure
def test_report_failure__executing__failed_fee_kept_rest_refunded_and_event(mc, requester, workers, task_in, consts,
                                                                         accounts):
    provider = workers[0]
    task, _ = task_in("Executing")
    burned, (r0, p0) = mc.burned(), credits(mc, requester, provider)
    receipt = mc.reportFailure(task.task_id, consts.REPORT, sender=provider)
    failure_fee = consts.PRICE * 1000 // BPS
    paid, burnt = failure_fee - burn(failure_fee), burn(failure_fee)
    refund = consts.PRICE + consts.FEE - failure_fee
    assert status(mc, task.task_id) == Status.Failed
    assert mc.creditOf(provider) - p0 == paid
    assert mc.creditOf(requester) - r0 == refund
    assert mc.burned() - burned == burnt
    assert mc.creditOf(workers[1]) == 0  # the validator did nothing and gets nothing
    assert task.task_id not in mc.openTasks(0, 1000)
    [event] = receipt.decode_logs(mc.TaskFailed)
    assert (event.taskId, event.event_arguments["provider"], event.requester, event.providerPaid, event.refund,
            event.burned, event.report) == (task.task_id, provider.address, requester.address, paid, refund,
                                            burnt, consts.REPORT)
    assert_solvent(mc, accounts)


@pytest.mark.parametrize("length", [1, 1024])
def test_report_failure__report_at_length_bounds__accepted(mc, workers, task_in, length):
    task, _ = task_in("Executing")
    mc.reportFailure(task.task_id, b"r" * length, sender=workers[0])
    assert status(mc, task.task_id) == Status.Failed


@pytest.mark.parametrize("length", [0, 1025])
def test_report_failure__report_length_out_of_bounds__reverts(mc, workers, task_in, length):
    task, _ = task_in("Executing")
    with ape.reverts(mc.TaskMarket__InvalidReport, length=length):
        mc.reportFailure(task.task_id, b"r" * length, sender=workers[0])


def test_report_failure__unknown_task__reverts(mc, workers, consts):
    with ape.reverts(mc.TaskMarket__TaskNotFound, taskId=999):
        mc.reportFailure(999, consts.REPORT, sender=workers[0])


@pytest.mark.parametrize("who", ["outsider", "requester", "validator"])
def test_report_failure__not_provider__reverts(mc, requester, outsider, workers, task_in, consts, who):
    task, _ = task_in("Executing")
    caller = {"outsider": outsider, "requester": requester, "validator": workers[1]}[who]
    with ape.reverts(mc.TaskMarket__NotProvider, taskId=task.task_id, caller=caller.address):
        mc.reportFailure(task.task_id, consts.REPORT, sender=caller)


@pytest.mark.parametrize("state", ["Validating", "Failed", "Expired"])
def test_report_failure__not_executing__reverts(mc, workers, task_in, consts, state):
    """Once the result is committed (Validating) the provider cannot back out with a cheaper failure."""
    task, _ = task_in(state)
    with ape.reverts(mc.TaskMarket__WrongState, taskId=task.task_id, status=int(Status[state])):
        mc.reportFailure(task.task_id, consts.REPORT, sender=workers[0])


def test_report_failure__after_deadline__reverts(mc, workers, task_in, past_deadline, consts):
    task, _ = task_in("Executing")
    past_deadline(task.task_id)
    with ape.reverts(mc.TaskMarket__DeadlinePassed):
        mc.reportFailure(task.task_id, consts.REPORT, sender=workers[0])


def test_report_failure__zero_price__nothing_paid_fee_refunded(mc, requester, workers, post_task, consts, outsider,
                                                              new_hash):
    provider, validator, *_ = workers
    mc.update(mc.getWorker(provider).encKey, 0, True, sender=provider)
    task = post_task(price=0)
    r0 = mc.creditOf(requester)
    receipt = mc.reportFailure(task.task_id, consts.REPORT, sender=provider)
    event = receipt.decode_logs(mc.TaskFailed)[0]
    assert (event.providerPaid, event.refund, event.burned) == (0, consts.FEE, 0)
    assert mc.creditOf(requester) - r0 == consts.FEE


# ====================================================================== decline
def test_decline__executing__declined_full_escrow_refunded_nothing_burned_and_event(mc, requester, workers, task_in,
                                                                                  consts, accounts):
    provider, validator, *_ = workers
    task, _ = task_in("Executing")
    burned, (r0, p0, v0) = mc.burned(), credits(mc, requester, provider, validator)
    reason = consts.DECLINE_REASON.encode()
    receipt = mc.decline(task.task_id, reason, sender=provider)
    assert status(mc, task.task_id) == Status.Declined
    assert credits(mc, requester, provider, validator) == [r0 + consts.PRICE + consts.FEE, p0, v0]
    assert mc.burned() == burned
    assert task.task_id not in mc.openTasks(0, 1000)
    [event] = receipt.decode_logs(mc.TaskDeclined)
    assert (event.taskId, event.event_arguments["provider"], event.reason) == (task.task_id, provider.address, reason)
    assert_solvent(mc, accounts)


def test_decline__refunds_full_escrow__withdrawn_by_the_requester(mc, requester, workers, task_in, consts):
    task, _ = task_in("Executing")
    owed = mc.creditOf(requester)
    mc.decline(task.task_id, b"no GPU here", sender=workers[0])
    assert mc.creditOf(requester) == owed + consts.PRICE + consts.FEE
    receipt = mc.withdraw(sender=requester)
    assert receipt.decode_logs(mc.Withdrawn)[0].amount == owed + consts.PRICE + consts.FEE


def test_decline__named_provider__availability_and_pool_unchanged(mc, workers, task_in):
    """Naming a provider never takes it out of the available pool, so a decline puts nothing back there."""
    provider = workers[0]
    task, _ = task_in("Executing")
    pool, before = list(mc.availableWorkers(0, 100)), mc.getWorker(provider)
    mc.decline(task.task_id, b"busy", sender=provider)
    after = mc.getWorker(provider)
    assert list(mc.availableWorkers(0, 100)) == pool
    assert (after.available, after.poolIndex, after.missed) == (before.available, before.poolIndex, before.missed)


@pytest.mark.parametrize("length", [1, 1024])
def test_decline__reason_at_length_bounds__accepted(mc, workers, task_in, length):
    task, _ = task_in("Executing")
    mc.decline(task.task_id, b"r" * length, sender=workers[0])
    assert status(mc, task.task_id) == Status.Declined


@pytest.mark.parametrize("length", [0, 1025])
def test_decline__reason_length_out_of_bounds__reverts(mc, workers, task_in, length):
    task, _ = task_in("Executing")
    with ape.reverts(mc.TaskMarket__InvalidReport, length=length):
        mc.decline(task.task_id, b"r" * length, sender=workers[0])


def test_decline__unknown_task__reverts(mc, workers):
    with ape.reverts(mc.TaskMarket__TaskNotFound, taskId=999):
        mc.decline(999, b"x", sender=workers[0])


@pytest.mark.parametrize("who", ["outsider", "requester", "validator", "other_worker"])
def test_decline__not_provider__reverts(mc, requester, outsider, workers, task_in, who):
    """Only the named provider may give a task back: nobody else can end it early (or take its refund path)."""
    task, _ = task_in("Executing")
    caller = {"outsider": outsider, "requester": requester, "validator": workers[1], "other_worker": workers[2]}[who]
    with ape.reverts(mc.TaskMarket__NotProvider, taskId=task.task_id, caller=caller.address):
        mc.decline(task.task_id, b"x", sender=caller)
    assert status(mc, task.task_id) == Status.Executing


def test_decline__pending__not_provider(mc, workers, task_in):
    """A pending task has no provider yet: no worker can decline it (the requester cancels it)."""
    task, _ = task_in("Pending")
    with ape.reverts(mc.TaskMarket__NotProvider, taskId=task.task_id, caller=workers[0].address):
        mc.decline(task.task_id, b"x", sender=workers[0])


@pytest.mark.parametrize("state", ["Validating", "Failed", "Completed", "Rejected", "Expired", "Declined"])
def test_decline__not_executing__reverts(mc, workers, task_in, state):
    """Once the result is committed (Validating) the provider cannot back out and take its collateral back;
    a settled task (a second decline included) cannot be refunded again."""
    task, _ = task_in(state)
    with ape.reverts(mc.TaskMarket__WrongState, taskId=task.task_id, status=int(Status[state])):
        mc.decline(task.task_id, b"x", sender=workers[0])


def test_decline__after_deadline__reverts(mc, workers, task_in, past_deadline):
    task, _ = task_in("Executing")
    past_deadline(task.task_id)
    with ape.reverts(mc.TaskMarket__DeadlinePassed, taskId=task.task_id, deadline=task.deadline):
        mc.decline(task.task_id, b"x", sender=workers[0])


def test_decline__at_deadline__accepted(mc, workers, task_in, chain):
    task, _ = task_in("Executing")
    chain.pending_timestamp = mc.getTask(task.task_id).deadline
    mc.decline(task.task_id, b"x", sender=workers[0])
    assert status(mc, task.task_id) == Status.Declined


def test_decline__then_expire__refused_and_refunded_once(mc, requester, outsider, workers, task_in, past_deadline,
                                                         consts, accounts):
    task, _ = task_in("Executing")
    r0 = mc.creditOf(requester)
    mc.decline(task.task_id, b"x", sender=workers[0])
    past_deadline(task.task_id)
    with ape.reverts(mc.TaskMarket__WrongState, taskId=task.task_id, status=int(Status.Declined)):
        mc.expire(task.task_id, sender=outsider)
    with ape.reverts(mc.TaskMarket__WrongState, taskId=task.task_id, status=int(Status.Declined)):
        mc.cancel(task.task_id, sender=requester)
    assert mc.creditOf(requester) == r0 + consts.PRICE + consts.FEE
    assert_solvent(mc, accounts)


def test_decline__zero_price__fee_refunded(mc, requester, workers, post_task, consts):
    provider = workers[0]
    mc.update(mc.getWorker(provider).encKey, 0, True, sender=provider)
    task = post_task(price=0)
    r0 = mc.creditOf(requester)
    mc.decline(task.task_id, b"x", sender=provider)
    assert mc.creditOf(requester) - r0 == consts.FEE


# ====================================================================== publishOffer
OFFER = b'{"gpus": [{"name": "NVIDIA H200", "memory_gib": 139}], "runtimes": ["ichain-torch"]}'


def test_publish_offer__worker__hash_and_block_stored_document_in_the_event(mc, workers, chain):
    provider = workers[0]
    before = mc.getWorker(provider)
    receipt = mc.publishOffer(OFFER, sender=provider)
    w = mc.getWorker(provider)
    assert (w.offerHash, w.offerBlock) == (keccak(OFFER), receipt.block_number)
    # the rest of the record (the packed slot the block shares) is untouched
    assert (w.encKey, w.price, w.poolIndex, w.id, w.registered, w.available, w.missed) == (
        before.encKey, before.price, before.poolIndex, before.id, before.registered, before.available, before.missed)
    [event] = receipt.decode_logs(mc.WorkerOffered)
    assert (event.worker, event.offerHash, event.offer) == (provider.address, keccak(OFFER), OFFER)


def test_publish_offer__twice__latest_replaces_the_first(mc, workers):
    provider = workers[0]
    mc.publishOffer(OFFER, sender=provider)
    receipt = mc.publishOffer(b'{"gpus": []}', sender=provider)
    w = mc.getWorker(provider)
    assert (w.offerHash, w.offerBlock) == (keccak(b'{"gpus": []}'), receipt.block_number)


def test_publish_offer__longest__accepted(mc, workers):
    mc.publishOffer(b"o" * 2048, sender=workers[0])
    assert mc.getWorker(workers[0]).offerHash == keccak(b"o" * 2048)


def test_publish_offer__too_long__reverts(mc, workers):
    with ape.reverts(mc.TaskMarket__InvalidOffer, length=2049):
        mc.publishOffer(b"o" * 2049, sender=workers[0])


def test_publish_offer__empty__reverts(mc, workers):
    with ape.reverts(mc.TaskMarket__InvalidOffer, length=0):
        mc.publishOffer(b"", sender=workers[0])


def test_publish_offer__not_a_worker__reverts(mc, outsider):
    with ape.reverts(mc.TaskMarket__NotAWorker, account=outsider.address):
        mc.publishOffer(OFFER, sender=outsider)


def test_publish_offer__worker_that_left__reverts(mc, workers):
    mc.leave(sender=workers[0])
    with ape.reverts(mc.TaskMarket__NotAWorker, account=workers[0].address):
        mc.publishOffer(OFFER, sender=workers[0])


def test_get_worker__never_published__no_offer(mc, workers):
    w = mc.getWorker(workers[0])
    assert (w.offerHash, w.offerBlock) == (bytes(32), 0)


def test_leave__offer_cleared__comeback_starts_without_one(mc, workers, new_hash):
    provider = workers[0]
    mc.publishOffer(OFFER, sender=provider)
    mc.leave(sender=provider)
    assert (mc.getWorker(provider).offerHash, mc.getWorker(provider).offerBlock) == (bytes(32), 0)
    mc.register(new_hash(), 1, True, sender=provider)
    assert (mc.getWorker(provider).offerHash, mc.getWorker(provider).offerBlock) == (bytes(32), 0)
    receipt = mc.publishOffer(OFFER, sender=provider)
    assert mc.getWorker(provider).offerBlock == receipt.block_number


def test_publish_offer__then_update__offer_kept(mc, workers, new_hash):
    """The block shares the packed slot update rewrites: a key, price or availability change keeps the offer."""
    receipt = mc.publishOffer(OFFER, sender=workers[0])
    mc.update(new_hash(), 2, False, sender=workers[0])
    w = mc.getWorker(workers[0])
    assert (w.offerHash, w.offerBlock, w.price, w.available) == (keccak(OFFER), receipt.block_number, 2, False)


def test_publish_offer__silent_validator_expired__missed_counted_offer_kept(mc, outsider, workers, task_in,
                                                                          past_deadline):
    """expire() writes the missed count into the slot the offer block shares: both survive."""
    validator = workers[1]
    receipt = mc.publishOffer(OFFER, sender=validator)
    missed = mc.getWorker(validator).missed
    task, _ = task_in("Validating")
    past_deadline(task.task_id)
    mc.expire(task.task_id, sender=outsider)
    w = mc.getWorker(validator)
    assert (w.missed, w.offerHash, w.offerBlock) == (missed + 1, keccak(OFFER), receipt.block_number)


# ====================================================================== submitVerdict
def test_submit_verdict__accept__completed_paid_burned_and_locator_released(mc, requester, workers, task_in, consts,
                                                                          accounts):
    provider, validator, *_ = workers
    task, rh = task_in("Validating")
    burned, (r0, p0, v0) = mc.burned(), credits(mc, requester, provider, validator)
    receipt = mc.submitVerdict(task.task_id, rh, True, b"r-loc", sender=validator)
    provider_paid = consts.PRICE - burn(consts.PRICE) + consts.COLLATERAL
    validator_paid = consts.FEE - burn(consts.FEE)
    burnt = burn(consts.PRICE) + burn(consts.FEE)
    assert status(mc, task.task_id) == Status.Completed
    assert credits(mc, requester, provider, validator) == [r0, p0 + provider_paid, v0 + validator_paid]
    assert mc.burned() - burned == burnt
    assert task.task_id not in mc.openTasks(0, 1000)
    [event] = receipt.decode_logs(mc.VerdictSubmitted)
    assert (event.taskId, event.validator, event.requester, event.resultHash, event.accepted, event.providerPaid,
            event.validatorPaid, event.burned, event.requesterLocator) == (
        task.task_id, validator.address, requester.address, rh, True, provider_paid, validator_paid, burnt, b"r-loc")
    assert_solvent(mc, accounts)


def test_submit_verdict__reject__requester_refunded_validator_paid_from_collateral_rest_burned(
        mc, requester, workers, task_in, consts, accounts):
    provider, validator, *_ = workers
    task, rh = task_in("Validating")
    burned, (r0, p0, v0) = mc.burned(), credits(mc, requester, provider, validator)
    receipt = mc.submitVerdict(task.task_id, rh, False, b"ignored", sender=validator)
    validator_paid = consts.FEE - burn(consts.FEE)
    burnt = consts.COLLATERAL - validator_paid
    assert status(mc, task.task_id) == Status.Rejected
    assert credits(mc, requester, provider, validator) == [r0 + consts.PRICE + consts.FEE, p0, v0 + validator_paid]
    assert mc.burned() - burned == burnt
    assert task.task_id not in mc.openTasks(0, 1000)
    [event] = receipt.decode_logs(mc.VerdictSubmitted)
    assert (event.accepted, event.providerPaid, event.validatorPaid, event.burned, event.requesterLocator) == (
        False, 0, validator_paid, burnt, b"")  # a reject releases nothing to the requester
    assert_solvent(mc, accounts)


def test_submit_verdict__unknown_task__reverts(mc, workers, new_hash):
    with ape.reverts(mc.TaskMarket__TaskNotFound, taskId=999):
        mc.submitVerdict(999, new_hash(), True, b"", sender=workers[1])


@pytest.mark.parametrize("who", ["outsider", "provider", "requester", "other_validator"])
def test_submit_verdict__not_validator__reverts(mc, requester, outsider, workers, task_in, who):
    task, rh = task_in("Validating")
    caller = {"outsider": outsider, "provider": workers[0], "requester": requester,
              "other_validator": workers[3]}[who]
    with ape.reverts(mc.TaskMarket__NotValidator, taskId=task.task_id, caller=caller.address):
        mc.submitVerdict(task.task_id, rh, True, b"", sender=caller)


@pytest.mark.parametrize("state", ["Executing", "Completed", "Rejected", "Failed"])
def test_submit_verdict__not_validating__reverts(mc, workers, task_in, new_hash, state):
    task, rh = task_in(state)
    with ape.reverts(mc.TaskMarket__WrongState, taskId=task.task_id, status=int(Status[state])):
        mc.submitVerdict(task.task_id, rh or new_hash(), False, b"", sender=workers[1])


def test_submit_verdict__after_deadline__reverts(mc, workers, task_in, past_deadline):
    task, rh = task_in("Validating")
    past_deadline(task.task_id)
    deadline = mc.getTask(task.task_id).deadline
    with ape.reverts(mc.TaskMarket__DeadlinePassed, taskId=task.task_id, deadline=deadline):
        mc.submitVerdict(task.task_id, rh, True, b"", sender=workers[1])


def test_submit_verdict__at_deadline__accepted(mc, workers, task_in, chain):
    task, rh = task_in("Validating")
    chain.pending_timestamp = mc.getTask(task.task_id).deadline
    mc.submitVerdict(task.task_id, rh, False, b"", sender=workers[1])
    assert status(mc, task.task_id) == Status.Rejected


def test_submit_verdict__other_commitment__reverts(mc, workers, task_in, new_hash):
    task, _ = task_in("Validating")
    other = new_hash()
    with ape.reverts(mc.TaskMarket__WrongResult, taskId=task.task_id, resultHash=other):
        mc.submitVerdict(task.task_id, other, True, b"", sender=workers[1])


# ====================================================================== rate
def test_rate__completed__rated_weighted_by_wei_paid_and_event(mc, ratings_contract, requester, workers, task_in,
                                                             consts):
    provider, validator, *_ = workers
    task, _ = task_in("Completed")
    receipt = mc.rate(task.task_id, 5, 4, sender=requester)
    assert status(mc, task.task_id) == Status.Rated
    p = ratings_contract.recordOf(provider, 0)
    v = ratings_contract.recordOf(validator, 1)
    provider_gwei = (consts.PRICE - burn(consts.PRICE)) // 10**9
    validator_gwei = (consts.FEE - burn(consts.FEE)) // 10**9
    assert (p.count, p.sum, p.weightGwei, p.weightedGwei) == (1, 5, provider_gwei, 5 * provider_gwei)
    assert (v.count, v.sum, v.weightGwei, v.weightedGwei) == (1, 4, validator_gwei, 4 * validator_gwei)
    assert ratings_contract.recordOf(provider, 1).count == 0 and ratings_contract.recordOf(validator, 0).count == 0
    [event] = receipt.decode_logs(mc.TaskRated)
    assert (event.taskId, event.event_arguments["provider"], event.requester, event.validator,
            event.providerRating, event.validatorRating) == (task.task_id, provider.address, requester.address,
                                                             validator.address, 5, 4)


def test_rate__completed_validator_unrated__only_provider_record(mc, ratings_contract, requester, workers, task_in):
    task, _ = task_in("Completed")
    mc.rate(task.task_id, 3, 0, sender=requester)
    assert ratings_contract.recordOf(workers[0], 0).count == 1
    assert ratings_contract.recordOf(workers[1], 1).count == 0


def test_rate__failed__provider_weighted_by_failure_fee_validator_untouched(mc, ratings_contract, requester,
                                                                           workers, task_in, consts):
    task, _ = task_in("Failed")
    mc.rate(task.task_id, 2, 0, sender=requester)
    failure_fee = consts.PRICE * 1000 // BPS
    p = ratings_contract.recordOf(workers[0], 0)
    assert (p.count, p.sum, p.weightGwei) == (1, 2, (failure_fee - burn(failure_fee)) // 10**9)
    assert ratings_contract.recordOf(workers[1], 1).count == 0
    assert status(mc, task.task_id) == Status.Rated


def test_rate__failed_with_validator_rating__reverts(mc, requester, task_in):
    task, _ = task_in("Failed")
    with ape.reverts(mc.TaskMarket__InvalidRating, rating=3):
        mc.rate(task.task_id, 4, 3, sender=requester)


@pytest.mark.parametrize("ratings", [(0, 0), (6, 0), (255, 1)])
def test_rate__provider_rating_out_of_range__reverts(mc, requester, task_in, ratings):
    task, _ = task_in("Completed")
    with ape.reverts(mc.TaskMarket__InvalidRating, rating=ratings[0]):
        mc.rate(task.task_id, *ratings, sender=requester)


@pytest.mark.parametrize("validator_rating", [6, 255])
def test_rate__validator_rating_out_of_range__reverts(mc, requester, task_in, validator_rating):
    task, _ = task_in("Completed")
    with ape.reverts(mc.TaskMarket__InvalidRating, rating=validator_rating):
        mc.rate(task.task_id, 5, validator_rating, sender=requester)


@pytest.mark.parametrize("ratings", [(1, 1), (5, 5)])
def test_rate__ratings_at_bounds__accepted(mc, requester, task_in, ratings):
    task, _ = task_in("Completed")
    mc.rate(task.task_id, *ratings, sender=requester)
    assert status(mc, task.task_id) == Status.Rated


def test_rate__twice__reverts(mc, requester, task_in):
    task, _ = task_in("Rated")
    with ape.reverts(mc.TaskMarket__WrongState, taskId=task.task_id, status=int(Status.Rated)):
        mc.rate(task.task_id, 5, 5, sender=requester)


def test_rate__unknown_task__reverts(mc, requester):
    with ape.reverts(mc.TaskMarket__TaskNotFound, taskId=999):
        mc.rate(999, 5, 0, sender=requester)


@pytest.mark.parametrize("who", ["outsider", "provider", "validator"])
def test_rate__not_requester__reverts(mc, outsider, workers, task_in, who):
    task, _ = task_in("Completed")
    caller = {"outsider": outsider, "provider": workers[0], "validator": workers[1]}[who]
    with ape.reverts(mc.TaskMarket__NotRequester, taskId=task.task_id, caller=caller.address):
        mc.rate(task.task_id, 5, 0, sender=caller)


@pytest.mark.parametrize("state", ["Pending", "Executing", "Validating", "Rejected", "Cancelled", "Expired",
                                   "Declined"])
def test_rate__unpaid_or_open_task__reverts(mc, requester, task_in, state):
    """Only a task whose price was paid (Completed, or Failed with its failure fee) takes a rating."""
    task, _ = task_in(state)
    with ape.reverts(mc.TaskMarket__WrongState, taskId=task.task_id, status=int(Status[state])):
        mc.rate(task.task_id, 1, 0, sender=requester)


def test_rate__completed_long_after__still_accepted(mc, requester, task_in, advance):
    """2c: a Completed task has no deadline to dodge its rating by: the requester rates whenever it likes."""
    task, _ = task_in("Completed")
    advance(10 * 86_400)
    with ape.reverts(mc.TaskMarket__WrongState):
        mc.expire(task.task_id, sender=requester)
    mc.rate(task.task_id, 1, 0, sender=requester)
    assert status(mc, task.task_id) == Status.Rated


# ====================================================================== cancel
def test_cancel__pending__refunded_and_removed(mc, requester, task_in, consts, accounts):
    task, _ = task_in("Pending")
    r0 = mc.creditOf(requester)
    receipt = mc.cancel(task.task_id, sender=requester)
    assert status(mc, task.task_id) == Status.Cancelled
    assert mc.creditOf(requester) - r0 == consts.PRICE + consts.FEE
    assert task.task_id not in mc.openTasks(0, 1000)
    [event] = receipt.decode_logs(mc.TaskCancelled)
    assert (event.taskId, event.requester, event.refund) == (task.task_id, requester.address,
                                                             consts.PRICE + consts.FEE)
    assert_solvent(mc, accounts)


def test_cancel__unknown_task__reverts(mc, requester):
    with ape.reverts(mc.TaskMarket__TaskNotFound, taskId=999):
        mc.cancel(999, sender=requester)


def test_cancel__not_requester__reverts(mc, outsider, task_in):
    task, _ = task_in("Pending")
    with ape.reverts(mc.TaskMarket__NotRequester, taskId=task.task_id, caller=outsider.address):
        mc.cancel(task.task_id, sender=outsider)


@pytest.mark.parametrize("state", ["Executing", "Validating", "Cancelled"])
def test_cancel__not_pending__reverts(mc, requester, task_in, state):
    task, _ = task_in(state)
    with ape.reverts(mc.TaskMarket__WrongState, taskId=task.task_id, status=int(Status[state])):
        mc.cancel(task.task_id, sender=requester)


# ====================================================================== expire
@pytest.mark.parametrize("state", ["Pending", "Executing", "Validating"])
def test_expire__after_deadline__settled_against_the_silent_party_by_anyone(
        mc, requester, outsider, workers, task_in, past_deadline, consts, accounts, state):
    provider, validator, *_ = workers
    task, _ = task_in(state)
    (r0, p0, v0), missed = credits(mc, requester, provider, validator), mc.getWorker(validator).missed
    burned = mc.burned()
    past_deadline(task.task_id)
    receipt = mc.expire(task.task_id, sender=outsider)
    payout = consts.COLLATERAL if state == "Validating" else 0  # a silent validator: the provider's collateral back
    assert status(mc, task.task_id) == Status.Expired
    assert credits(mc, requester, provider, validator) == [r0 + consts.PRICE + consts.FEE, p0 + payout, v0]
    assert mc.getWorker(validator).missed == missed + (state == "Validating")  # the silent validator's record
    assert mc.burned() == burned
    assert task.task_id not in mc.openTasks(0, 1000)
    [event] = receipt.decode_logs(mc.TaskExpired)
    assert (event.taskId, event.requester, event.event_arguments["provider"], event.previousStatus, event.refund,
            event.payout) == (task.task_id, requester.address, ZERO if state == "Pending" else provider.address,
                              int(Status[state]), consts.PRICE + consts.FEE, payout)
    assert_solvent(mc, accounts)


@pytest.mark.parametrize("state", ["Pending", "Executing", "Validating"])
def test_expire__at_deadline__reverts(mc, outsider, task_in, chain, state):
    task, _ = task_in(state)
    deadline = mc.getTask(task.task_id).deadline
    chain.pending_timestamp = deadline
    with ape.reverts(mc.TaskMarket__DeadlineNotReached, taskId=task.task_id, deadline=deadline):
        mc.expire(task.task_id, sender=outsider)


@pytest.mark.parametrize("state", ["Completed", "Failed", "Rejected", "Rated", "Cancelled", "Expired", "Declined"])
def test_expire__settled_task__reverts(mc, outsider, task_in, advance, state):
    task, _ = task_in(state)
    advance(100_000)
    with ape.reverts(mc.TaskMarket__WrongState, taskId=task.task_id, status=int(Status[state])):
        mc.expire(task.task_id, sender=outsider)


def test_expire__unknown_task__reverts(mc, outsider):
    with ape.reverts(mc.TaskMarket__TaskNotFound, taskId=999):
        mc.expire(999, sender=outsider)


def test_expire__validating_twice_missed__counted_per_verdict_and_kept_across_leave(
        mc, outsider, workers, task_in, past_deadline, new_hash):
    validator = workers[1]
    for _ in range(2):
        task, _ = task_in("Validating")
        past_deadline(task.task_id)
        mc.expire(task.task_id, sender=outsider)
    assert mc.getWorker(validator).missed == 2
    mc.leave(sender=validator)
    mc.register(new_hash(), 1, True, sender=validator)
    assert mc.getWorker(validator).missed == 2


# ====================================================================== withdraw / withdrawTo
def test_withdraw__credit__paid_zeroed_and_event(mc, workers, task_in, consts):
    task_in("Completed")
    provider = workers[0]
    credit = mc.creditOf(provider)
    assert credit == consts.PRICE - burn(consts.PRICE) + consts.COLLATERAL
    balance = provider.balance
    receipt = mc.withdraw(sender=provider)
    assert provider.balance == balance + credit - receipt.total_fees_paid
    assert mc.creditOf(provider) == 0
    [event] = receipt.decode_logs(mc.Withdrawn)
    assert (event.account, event.to, event.amount) == (provider.address, provider.address, credit)


def test_withdraw__twice__second_reverts(mc, workers, task_in):
    task_in("Completed")
    mc.withdraw(sender=workers[0])
    with ape.reverts(mc.TaskMarket__NothingToWithdraw, account=workers[0].address):
        mc.withdraw(sender=workers[0])


def test_withdraw__no_credit__reverts(mc, outsider):
    with ape.reverts(mc.TaskMarket__NothingToWithdraw, account=outsider.address):
        mc.withdraw(sender=outsider)


def test_withdraw__registered_worker_without_credit__reverts(mc, workers):
    with ape.reverts(mc.TaskMarket__NothingToWithdraw, account=workers[0].address):
        mc.withdraw(sender=workers[0])


def test_withdraw_to__other_address__paid_there(mc, workers, outsider, task_in):
    task_in("Completed")
    credit = mc.creditOf(workers[0])
    balance = outsider.balance
    receipt = mc.withdrawTo(outsider, sender=workers[0])
    assert outsider.balance == balance + credit
    assert mc.creditOf(workers[0]) == 0
    assert receipt.decode_logs(mc.Withdrawn)[0].to == outsider.address


def test_withdraw_to__no_credit__reverts(mc, outsider):
    with ape.reverts(mc.TaskMarket__NothingToWithdraw, account=outsider.address):
        mc.withdrawTo(outsider, sender=outsider)


def test_withdraw_to__recipient_refuses_ether__reverts_and_credit_kept(mc, ratings_contract, workers, task_in):
    task_in("Completed")
    credit = mc.creditOf(workers[0])
    # Ratings has no receive function: a recipient that always refuses ether
    with ape.reverts(mc.TaskMarket__TransferFailed, to=ratings_contract.address, amount=credit):
        mc.withdrawTo(ratings_contract.address, sender=workers[0])
    assert mc.creditOf(workers[0]) == credit


def test_withdraw__every_party_after_every_path__only_burned_wei_left(mc, requester, workers, task_in, accounts,
                                                                    past_deadline, outsider):
    """Money of each path, end to end: after every party withdraws, the market holds exactly the burned wei."""
    start = ape.chain.provider.get_balance(mc.address)
    assert start == escrow_held(mc) + sum(mc.creditOf(a) for a in accounts) + mc.burned()
    for state in ("Completed", "Rejected", "Failed", "Rated", "Cancelled", "Declined"):
        task_in(state)
    for origin in ("Pending", "Executing", "Validating"):
        task_in("Expired", expire_from=origin)
    assert mc.openTaskCount() == 0
    for a in accounts:
        if mc.creditOf(a):
            mc.withdraw(sender=a)
    assert ape.chain.provider.get_balance(mc.address) == mc.burned() > 0


def test_receive__plain_ether__reverts(mc, outsider):
    with ape.reverts():
        outsider.transfer(mc.address, 1)


# ====================================================================== views
def test_tasks_in_status__pagination__every_open_task_found_once(mc, task_in):
    ids = {s: [task_in(s)[0].task_id for _ in range(2)] for s in ("Pending", "Executing", "Validating")}
    for s, expected in ids.items():
        found, cursor = [], 0
        while cursor < mc.openTaskCount():
            page, cursor = mc.tasksInStatus(int(Status[s]), cursor, 2)
            found.extend(page)
        assert sorted(found) == sorted(expected)


def test_open_tasks__cursor_past_end__empty(mc, task_in, workers):
    task_in("Pending")
    assert list(mc.openTasks(mc.openTaskCount(), 10)) == []
    assert list(mc.openTasks(10**6, 10)) == []
    assert list(mc.tasksInStatus(1, 10**6, 10)[0]) == []
    assert mc.tasksInStatus(1, 10**6, 10)[1] == 10**6
    assert list(mc.availableWorkers(10**6, 10)) == []


def test_open_tasks__limit_smaller_than_rest__page_cut(mc, task_in):
    tasks = [task_in("Pending")[0].task_id for _ in range(3)]
    count = mc.openTaskCount()
    assert list(mc.openTasks(count - 3, 2)) == tasks[:2]
    assert list(mc.openTasks(count - 3, 0)) == []


def test_open_tasks__removal_in_middle__moved_task_index_updated(mc, requester, task_in):
    tasks = [task_in("Pending")[0].task_id for _ in range(3)]
    mc.cancel(tasks[0], sender=requester)
    ids = list(mc.openTasks(0, 1000))
    assert tasks[0] not in ids and set(tasks[1:]) <= set(ids)
    for position, tid in enumerate(ids):
        assert mc.getTask(tid).poolIndex == position


def test_get_task__unknown__status_none(mc):
    t = mc.getTask(12345)
    assert Status(t.status) == Status.None_ and t.requester == ZERO and t.provider == ZERO


def test_worker_address__unknown_id__zero(mc):
    assert mc.workerAddress(0) == ZERO and mc.workerAddress(2**32 - 1) == ZERO


def test_result_of__before_during_and_after_validation__zero_then_commitment_then_zero(mc, market, task_in):
    task, _ = task_in("Executing")
    assert mc.resultOf(task.task_id) == bytes(32)
    task2, rh = task_in("Validating")
    assert mc.resultOf(task2.task_id) == commitment_of(rh)
    done, rh3 = task_in("Completed")
    assert mc.resultOf(done.task_id) == bytes(32)  # the position (and its slot) went back to the set
    assert market.result_of(done.task_id) == rh3  # the SDK reads the hash the verdict named


def test_pages__limit_past_the_end__cut_at_the_set_size(mc, task_in, workers):
    """A page whose limit reaches past the end stops at the last element (never reads beyond the set)."""
    task_in("Pending")
    count = mc.openTaskCount()
    assert list(mc.openTasks(count - 1, 10)) == [mc.openTasks(0, count)[-1]]
    ids, cursor = mc.tasksInStatus(int(Status.Pending), count - 1, 10)
    assert cursor == count and len(ids) == 1
    workers_count = mc.availableWorkerCount()
    assert list(mc.availableWorkers(workers_count - 1, 10)) == [mc.availableWorkers(0, workers_count)[-1]]
