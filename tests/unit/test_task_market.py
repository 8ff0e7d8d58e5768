"""TaskMarket: every function, its success and every revert (custom errors), called on the contract directly.

Set-up goes through the SDK fixtures (tests/conftest.py); the calls under test go to the raw contract so the
contract's own checks are what is exercised (the SDK's pre-checks are tested in test_market_sdk.py).
"""

from __future__ import annotations

import ape
import pytest
from ape.api.address import BaseAddress

from ichain.market import Status

ZERO = "0x0000000000000000000000000000000000000000"


@pytest.fixture
def mc(market_contract):
    return market_contract


def terms(provider: BaseAddress | None = None, validator: BaseAddress | None = None, price: int = 10**16,
          fee: int = 10**15, timeout: int = 600) -> tuple[str, str, int, int, int]:
    """The post() terms tuple; an unnamed party is the zero address."""
    return (provider.address if provider is not None else ZERO, validator.address if validator is not None else ZERO,
            price, fee, timeout)


def status(mc, task_id) -> Status:
    return Status(int(mc.getTask(task_id).status))


# ====================================================================== constructor
@pytest.mark.parametrize("windows", [(0, 1, 1, 2), (1, 0, 1, 2), (1, 1, 0, 2), (1, 1, 3, 2), (1, 1, 1, 2**24),
                                     (2**24, 1, 1, 2), (1, 2**24, 1, 2)])
def test_constructor__invalid_windows__reverts(project, deployer, windows):
    with ape.reverts(project.TaskMarket.TaskMarket__InvalidWindows):
        project.TaskMarket.deploy(*windows, sender=deployer)


def test_constructor__valid_windows__immutables_set_and_ratings_deployed(mc, ratings_contract, consts):
    assert (mc.reviewWindow(), mc.validationWindow(), mc.minTimeout(), mc.maxTimeout()) == (
        consts.REVIEW_WINDOW, consts.VALIDATION_WINDOW, consts.MIN_TIMEOUT, consts.MAX_TIMEOUT)
    assert ratings_contract.market() == mc.address


# ====================================================================== register / update / leave
def test_register__new_worker__stored_available_and_event(mc, outsider, new_hash):
    key = new_hash()
    receipt = mc.register(key, 123, True, sender=outsider)
    w = mc.getWorker(outsider)
    assert (w.encKey, w.price, w.registered, w.available) == (key, 123, True, True)
    assert w.id > 0 and mc.workerAddress(w.id) == outsider.address
    assert outsider.address in mc.availableWorkers(0, 100)
    assert mc.creditOf(outsider) == 0
    assert [e.worker for e in receipt.decode_logs(mc.WorkerRegistered)] == [outsider.address]


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
    mc.update(key, 7, False, sender=provider)
    w = mc.getWorker(provider)
    assert (w.encKey, w.price, w.available) == (key, 7, False)
    pool = list(mc.availableWorkers(0, 100))
    assert provider.address not in pool and {validator.address, provider2.address, validator2.address} <= set(pool)
    # the worker swapped into the hole knows its new position
    for i, addr in enumerate(pool):
        assert mc.getWorker(addr).poolIndex == i
    mc.update(key, 7, True, sender=provider)
    assert provider.address in mc.availableWorkers(0, 100)


def test_update__same_availability__pool_unchanged(mc, workers, new_hash):
    provider = workers[0]
    before = list(mc.availableWorkers(0, 100))
    mc.update(new_hash(), 5, True, sender=provider)
    assert list(mc.availableWorkers(0, 100)) == before


def test_update__not_a_worker__reverts(mc, outsider, new_hash):
    with ape.reverts(mc.TaskMarket__NotAWorker, account=outsider.address):
        mc.update(new_hash(), 1, True, sender=outsider)


def test_update__zero_key__reverts(mc, workers):
    with ape.reverts(mc.TaskMarket__ZeroKey):
        mc.update(bytes(32), 1, True, sender=workers[0])


def test_leave__registered__removed_and_id_kept_on_return(mc, workers, new_hash):
    provider = workers[0]
    worker_id = mc.getWorker(provider).id
    receipt = mc.leave(sender=provider)
    w = mc.getWorker(provider)
    assert (w.registered, w.available, w.id) == (False, False, worker_id)
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
    with ape.reverts(mc.TaskMarket__NotAWorker):
        mc.leave(sender=outsider)


# ====================================================================== post
def test_post__provider_and_validator__executing_escrowed_and_event(mc, requester, workers, new_hash, consts):
    provider, validator, *_ = workers
    task_hash = new_hash()
    receipt = mc.post(task_hash, terms(provider, validator), b"p-loc", b"v-loc", sender=requester,
                      value=10**16 + 10**15)
    tid = mc.lastTaskId()
    t = mc.getTask(tid)
    assert Status(t.status) == Status.Executing
    assert (t.requester, t.provider, t.validator) == (requester.address, provider.address, validator.address)
    assert (t.price, t.validatorFee, t.timeout) == (10**16, 10**15, 600)
    assert t.deadline == receipt.timestamp + 600
    assert tid in mc.openTasks(0, 1000)
    [event] = receipt.decode_logs(mc.TaskPosted)
    assert (event.taskId, event.taskHash, event.providerLocator, event.validatorLocator) == (
        tid, task_hash, b"p-loc", b"v-loc")
    args = event.event_arguments  # `provider` is also an attribute of ape's log objects
    assert (args["provider"], args["validator"], args["requester"]) == (provider.address, validator.address,
                                                                         requester.address)


def test_post__no_provider_no_validator__pending(mc, requester, new_hash, workers):
    mc.post(new_hash(), terms(), b"", b"", sender=requester, value=10**16 + 10**15)
    tid = mc.lastTaskId()
    assert status(mc, tid) == Status.Pending
    assert tid in mc.tasksInStatus(int(Status.Pending), 0, 1000)[0]


def test_post__zero_task_hash__reverts(mc, requester, workers):
    with ape.reverts(mc.TaskMarket__ZeroTaskHash):
        mc.post(bytes(32), terms(), b"", b"", sender=requester, value=10**16 + 10**15)


@pytest.mark.parametrize("timeout", [59, 86_401])
def test_post__timeout_out_of_bounds__reverts(mc, requester, new_hash, timeout):
    with ape.reverts(mc.TaskMarket__TimeoutOutOfBounds, timeout=timeout):
        mc.post(new_hash(), terms(timeout=timeout), b"", b"", sender=requester, value=10**16 + 10**15)


@pytest.mark.parametrize("value", [0, 10**16, 10**16 + 10**15 + 1])
def test_post__wrong_deposit__reverts(mc, requester, new_hash, value):
    with ape.reverts(mc.TaskMarket__WrongDeposit, expected=10**16 + 10**15, sent=value):
        mc.post(new_hash(), terms(), b"", b"", sender=requester, value=value)


def test_post__requester_as_provider__reverts(mc, workers, new_hash):
    provider = workers[0]
    with ape.reverts(mc.TaskMarket__InvalidProvider, provider=provider.address):
        mc.post(new_hash(), terms(provider), b"", b"", sender=provider, value=10**16 + 10**15)


def test_post__provider_is_validator__reverts(mc, requester, workers, new_hash):
    provider = workers[0]
    with ape.reverts(mc.TaskMarket__InvalidProvider):
        mc.post(new_hash(), terms(provider, provider), b"", b"", sender=requester, value=10**16 + 10**15)


def test_post__requester_as_validator__reverts(mc, workers, new_hash):
    provider, validator, *_ = workers
    with ape.reverts(mc.TaskMarket__InvalidValidator, validator=validator.address):
        mc.post(new_hash(), terms(provider, validator), b"", b"", sender=validator, value=10**16 + 10**15)


@pytest.mark.parametrize("role", ["provider", "validator"])
def test_post__party_not_a_worker__reverts(mc, requester, outsider, workers, new_hash, role):
    args = terms(outsider, None) if role == "provider" else terms(None, outsider)
    with ape.reverts(mc.TaskMarket__NotAWorker, account=outsider.address):
        mc.post(new_hash(), args, b"", b"", sender=requester, value=10**16 + 10**15)


@pytest.mark.parametrize("role", ["provider", "validator"])
def test_post__party_unavailable__reverts(mc, requester, workers, new_hash, role):
    worker = workers[0]
    mc.update(mc.getWorker(worker).encKey, 1, False, sender=worker)
    args = terms(worker, None) if role == "provider" else terms(None, worker)
    with ape.reverts(mc.TaskMarket__WorkerUnavailable, worker=worker.address):
        mc.post(new_hash(), args, b"", b"", sender=requester, value=10**16 + 10**15)


def test_post__price_below_asking__reverts(mc, requester, workers, new_hash):
    provider = workers[0]
    asking = mc.getWorker(provider).price
    with ape.reverts(mc.TaskMarket__PriceTooLow, worker=provider.address, asking=asking, offered=asking - 1):
        mc.post(new_hash(), terms(provider, price=asking - 1), b"", b"", sender=requester, value=asking - 1 + 10**15)


# ====================================================================== assignProvider
def test_assign_provider__pending__executing_with_fresh_deadline(mc, requester, workers, task_in, advance):
    task, _ = task_in("Pending")
    advance(50)
    receipt = mc.assignProvider(task.task_id, workers[0], b"loc", sender=requester)
    t = mc.getTask(task.task_id)
    assert (Status(t.status), t.provider) == (Status.Executing, workers[0].address)
    assert t.deadline == receipt.timestamp + t.timeout
    [event] = receipt.decode_logs(mc.ProviderAssigned)
    assert (event.taskId, event.event_arguments["provider"], event.locator) == (task.task_id, workers[0].address,
                                                                                 b"loc")


def test_assign_provider__unknown_task__reverts(mc, requester, workers):
    with ape.reverts(mc.TaskMarket__TaskNotFound, taskId=999):
        mc.assignProvider(999, workers[0], b"", sender=requester)


def test_assign_provider__not_requester__reverts(mc, outsider, workers, task_in):
    task, _ = task_in("Pending")
    with ape.reverts(mc.TaskMarket__NotRequester, taskId=task.task_id, caller=outsider.address):
        mc.assignProvider(task.task_id, workers[0], b"", sender=outsider)


def test_assign_provider__not_pending__reverts(mc, requester, workers, task_in):
    task, _ = task_in("Executing")
    with ape.reverts(mc.TaskMarket__WrongState, taskId=task.task_id, status=int(Status.Executing)):
        mc.assignProvider(task.task_id, workers[2], b"", sender=requester)


@pytest.mark.parametrize("who", ["zero", "requester", "validator"])
def test_assign_provider__invalid_party__reverts(mc, requester, workers, task_in, who):
    task, _ = task_in("Pending")  # validator named at post
    party = {"zero": ZERO, "requester": requester.address, "validator": workers[1].address}[who]
    with ape.reverts(mc.TaskMarket__InvalidProvider):
        mc.assignProvider(task.task_id, party, b"", sender=requester)


def test_assign_provider__not_a_worker__reverts(mc, requester, outsider, task_in):
    task, _ = task_in("Pending")
    with ape.reverts(mc.TaskMarket__NotAWorker):
        mc.assignProvider(task.task_id, outsider, b"", sender=requester)


def test_assign_provider__unavailable__reverts(mc, requester, workers, task_in):
    task, _ = task_in("Pending")
    mc.update(mc.getWorker(workers[2]).encKey, 1, False, sender=workers[2])
    with ape.reverts(mc.TaskMarket__WorkerUnavailable):
        mc.assignProvider(task.task_id, workers[2], b"", sender=requester)


def test_assign_provider__price_too_low__reverts(mc, requester, workers, task_in):
    task, _ = task_in("Pending")
    mc.update(mc.getWorker(workers[2]).encKey, 10**17, True, sender=workers[2])
    with ape.reverts(mc.TaskMarket__PriceTooLow):
        mc.assignProvider(task.task_id, workers[2], b"", sender=requester)


# ====================================================================== submitResult
def test_submit_result__with_validator__validating_and_event(mc, workers, task_in, new_hash, consts):
    provider, validator, *_ = workers
    task, _ = task_in("Executing")
    rh = new_hash()
    receipt = mc.submitResult(task.task_id, rh, b"r-loc", b"v-loc", sender=provider)
    t = mc.getTask(task.task_id)
    assert Status(t.status) == Status.Validating
    assert t.deadline == receipt.timestamp + consts.VALIDATION_WINDOW
    assert mc.resultOf(task.task_id) == rh
    [event] = receipt.decode_logs(mc.ResultSubmitted)
    assert (event.resultHash, event.validator, event.requesterLocator, event.validatorLocator) == (
        rh, validator.address, b"r-loc", b"v-loc")


def test_submit_result__no_validator__awaiting_validator(mc, workers, task_in, new_hash, consts):
    task, _ = task_in("Executing", validator=None)
    receipt = mc.submitResult(task.task_id, new_hash(), b"r", b"", sender=workers[0])
    t = mc.getTask(task.task_id)
    assert (Status(t.status), t.deadline) == (Status.AwaitingValidator, receipt.timestamp + consts.REVIEW_WINDOW)
    assert receipt.decode_logs(mc.ResultSubmitted)[0].validator == ZERO


def test_submit_result__unknown_task__reverts(mc, workers, new_hash):
    with ape.reverts(mc.TaskMarket__TaskNotFound):
        mc.submitResult(999, new_hash(), b"", b"", sender=workers[0])


@pytest.mark.parametrize("who", ["outsider", "other_worker", "requester"])
def test_submit_result__not_provider__reverts(mc, requester, outsider, workers, task_in, new_hash, who):
    task, _ = task_in("Executing")
    caller = {"outsider": outsider, "other_worker": workers[2], "requester": requester}[who]
    with ape.reverts(mc.TaskMarket__NotProvider, taskId=task.task_id, caller=caller.address):
        mc.submitResult(task.task_id, new_hash(), b"", b"", sender=caller)


def test_submit_result__twice__reverts(mc, workers, task_in, new_hash):
    task, _ = task_in("Validating")
    with ape.reverts(mc.TaskMarket__WrongState, status=int(Status.Validating)):
        mc.submitResult(task.task_id, new_hash(), b"", b"", sender=workers[0])


def test_submit_result__after_deadline__reverts(mc, workers, task_in, new_hash, past_deadline):
    task, _ = task_in("Executing")
    past_deadline(task.task_id)
    with ape.reverts(mc.TaskMarket__DeadlinePassed):
        mc.submitResult(task.task_id, new_hash(), b"", b"", sender=workers[0])


def test_submit_result__zero_hash__reverts(mc, workers, task_in):
    task, _ = task_in("Executing")
    with ape.reverts(mc.TaskMarket__ZeroResultHash):
        mc.submitResult(task.task_id, bytes(32), b"", b"", sender=workers[0])


def test_submit_result__copier_replays_commitment__bound_to_its_own_task(mc, workers, task_in, post_task):
    """A second provider replaying another task's result hash commits it to its own task only: the commitment is
    keyed by the task, so the original task keeps its own and nothing collides."""
    task, rh = task_in("Validating")
    copied = post_task(provider=workers[2], validator=workers[1])
    mc.submitResult(copied.task_id, rh, b"", b"", sender=workers[2])
    assert (mc.resultOf(task.task_id), mc.resultOf(copied.task_id)) == (rh, rh)
    assert Status(mc.getTask(task.task_id).status) == Status.Validating


def test_result_of__uncommitted_task__zero(mc, task_in):
    task, _ = task_in("Executing")
    assert mc.resultOf(task.task_id) == bytes(32)
    assert mc.resultOf(999) == bytes(32)


# ====================================================================== assignValidator
def test_assign_validator__awaiting__validating_and_event(mc, requester, workers, task_in, consts):
    task, rh = task_in("AwaitingValidator")
    receipt = mc.assignValidator(task.task_id, workers[3], rh, b"v", sender=requester)
    t = mc.getTask(task.task_id)
    assert (Status(t.status), t.validator) == (Status.Validating, workers[3].address)
    assert t.deadline == receipt.timestamp + consts.VALIDATION_WINDOW
    [event] = receipt.decode_logs(mc.ValidatorAssigned)
    assert (event.resultHash, event.locator, event.validatorFee) == (rh, b"v", consts.FEE)


def test_assign_validator__silent_validator_after_deadline__replaced(mc, requester, workers, task_in,
                                                                      past_deadline):
    task, rh = task_in("Validating")
    past_deadline(task.task_id)
    mc.assignValidator(task.task_id, workers[3], rh, b"", sender=requester)
    t = mc.getTask(task.task_id)
    assert (Status(t.status), t.validator) == (Status.Validating, workers[3].address)
    mc.submitVerdict(task.task_id, rh, True, sender=workers[3])
    assert status(mc, task.task_id) == Status.Accepted


def test_assign_validator__validating_before_deadline__reverts(mc, requester, workers, task_in):
    task, rh = task_in("Validating")
    with ape.reverts(mc.TaskMarket__DeadlineNotReached):
        mc.assignValidator(task.task_id, workers[3], rh, b"", sender=requester)


def test_assign_validator__awaiting_after_review_window__reverts(mc, requester, workers, task_in, past_deadline):
    task, rh = task_in("AwaitingValidator")
    past_deadline(task.task_id)
    with ape.reverts(mc.TaskMarket__DeadlinePassed):
        mc.assignValidator(task.task_id, workers[3], rh, b"", sender=requester)


def test_assign_validator__unknown_task__reverts(mc, requester, workers, new_hash):
    with ape.reverts(mc.TaskMarket__TaskNotFound):
        mc.assignValidator(999, workers[3], new_hash(), b"", sender=requester)


def test_assign_validator__not_requester__reverts(mc, outsider, workers, task_in):
    task, rh = task_in("AwaitingValidator")
    with ape.reverts(mc.TaskMarket__NotRequester):
        mc.assignValidator(task.task_id, workers[3], rh, b"", sender=outsider)


def test_assign_validator__executing__reverts(mc, requester, workers, task_in, new_hash):
    task, _ = task_in("Executing")
    with ape.reverts(mc.TaskMarket__WrongState, status=int(Status.Executing)):
        mc.assignValidator(task.task_id, workers[3], new_hash(), b"", sender=requester)


@pytest.mark.parametrize("who", ["zero", "requester", "provider", "current"])
def test_assign_validator__invalid_party__reverts(mc, requester, workers, task_in, past_deadline, who):
    task, rh = task_in("Validating" if who == "current" else "AwaitingValidator")
    if who == "current":
        past_deadline(task.task_id)
    party = {"zero": ZERO, "requester": requester.address, "provider": workers[0].address,
             "current": workers[1].address}[who]
    with ape.reverts(mc.TaskMarket__InvalidValidator):
        mc.assignValidator(task.task_id, party, rh, b"", sender=requester)


def test_assign_validator__not_a_worker__reverts(mc, requester, outsider, task_in):
    task, rh = task_in("AwaitingValidator")
    with ape.reverts(mc.TaskMarket__NotAWorker):
        mc.assignValidator(task.task_id, outsider, rh, b"", sender=requester)


def test_assign_validator__unavailable__reverts(mc, requester, workers, task_in):
    task, rh = task_in("AwaitingValidator")
    mc.update(mc.getWorker(workers[3]).encKey, 1, False, sender=workers[3])
    with ape.reverts(mc.TaskMarket__WorkerUnavailable):
        mc.assignValidator(task.task_id, workers[3], rh, b"", sender=requester)


def test_assign_validator__wrong_result_hash__reverts(mc, requester, workers, task_in, new_hash):
    task, _ = task_in("AwaitingValidator")
    with ape.reverts(mc.TaskMarket__WrongResult):
        mc.assignValidator(task.task_id, workers[3], new_hash(), b"", sender=requester)


# ====================================================================== submitVerdict
def test_submit_verdict__accept__accepted_validator_credited(mc, workers, task_in, consts):
    task, rh = task_in("Validating")
    receipt = mc.submitVerdict(task.task_id, rh, True, sender=workers[1])
    t = mc.getTask(task.task_id)
    assert (Status(t.status), t.deadline) == (Status.Accepted, receipt.timestamp + consts.REVIEW_WINDOW)
    assert mc.creditOf(workers[1]) == consts.FEE
    assert task.task_id in mc.openTasks(0, 1000)
    [event] = receipt.decode_logs(mc.VerdictSubmitted)
    assert (event.accepted, event.resultHash, event.validatorFee) == (True, rh, consts.FEE)


def test_submit_verdict__reject__requester_refunded_validator_paid_task_closed_to_escrow(
        mc, requester, workers, task_in, consts):
    task, rh = task_in("Validating")
    mc.submitVerdict(task.task_id, rh, False, sender=workers[1])
    assert status(mc, task.task_id) == Status.Rejected
    assert mc.creditOf(requester) == consts.PRICE
    assert mc.creditOf(workers[1]) == consts.FEE
    assert mc.creditOf(workers[0]) == 0
    assert task.task_id not in mc.openTasks(0, 1000)


def test_submit_verdict__unknown_task__reverts(mc, workers, new_hash):
    with ape.reverts(mc.TaskMarket__TaskNotFound):
        mc.submitVerdict(999, new_hash(), True, sender=workers[1])


@pytest.mark.parametrize("who", ["outsider", "provider", "requester"])
def test_submit_verdict__not_validator__reverts(mc, requester, outsider, workers, task_in, who):
    task, rh = task_in("Validating")
    caller = {"outsider": outsider, "provider": workers[0], "requester": requester}[who]
    with ape.reverts(mc.TaskMarket__NotValidator):
        mc.submitVerdict(task.task_id, rh, True, sender=caller)


def test_submit_verdict__twice__reverts(mc, workers, task_in):
    task, rh = task_in("Accepted")
    with ape.reverts(mc.TaskMarket__WrongState, status=int(Status.Accepted)):
        mc.submitVerdict(task.task_id, rh, False, sender=workers[1])


def test_submit_verdict__after_deadline__reverts(mc, workers, task_in, past_deadline):
    task, rh = task_in("Validating")
    past_deadline(task.task_id)
    with ape.reverts(mc.TaskMarket__DeadlinePassed):
        mc.submitVerdict(task.task_id, rh, True, sender=workers[1])


def test_submit_verdict__other_commitment__reverts(mc, workers, task_in):
    task, _ = task_in("Validating")
    _, other_rh = task_in("Validating")
    with ape.reverts(mc.TaskMarket__WrongResult):
        mc.submitVerdict(task.task_id, other_rh, True, sender=workers[1])


# ====================================================================== finalize
def test_finalize__accepted__provider_paid_rated_and_closed(mc, ratings_contract, requester, workers, task_in,
                                                            consts):
    task, _ = task_in("Accepted")
    receipt = mc.finalize(task.task_id, 5, sender=requester)
    assert status(mc, task.task_id) == Status.Completed
    assert mc.creditOf(workers[0]) == consts.PRICE
    assert task.task_id not in mc.openTasks(0, 1000)
    assert tuple(ratings_contract.stats(workers[0])) == (5, 1, 5000)
    [event] = receipt.decode_logs(mc.TaskFinalized)
    assert (event.rating, event.paid, event.event_arguments["provider"]) == (5, consts.PRICE, workers[0].address)
    [rated] = receipt.decode_logs(ratings_contract.Rated)
    assert (rated.worker, rated.taskId, rated.rater, rated.rating) == (workers[0].address, task.task_id,
                                                                       requester.address, 5)


def test_finalize__rejected__rating_only_no_payment(mc, ratings_contract, requester, workers, task_in):
    task, _ = task_in("Rejected")
    receipt = mc.finalize(task.task_id, 1, sender=requester)
    assert status(mc, task.task_id) == Status.Closed
    assert mc.creditOf(workers[0]) == 0
    assert tuple(ratings_contract.stats(workers[0])) == (1, 1, 1000)
    assert receipt.decode_logs(mc.TaskFinalized)[0].paid == 0


def test_finalize__unknown_task__reverts(mc, requester):
    with ape.reverts(mc.TaskMarket__TaskNotFound):
        mc.finalize(999, 5, sender=requester)


def test_finalize__not_requester__reverts(mc, outsider, task_in):
    task, _ = task_in("Accepted")
    with ape.reverts(mc.TaskMarket__NotRequester):
        mc.finalize(task.task_id, 5, sender=outsider)


@pytest.mark.parametrize("rating", [0, 6, 255])
def test_finalize__rating_out_of_range__reverts(mc, requester, task_in, rating):
    task, _ = task_in("Accepted")
    with ape.reverts(mc.TaskMarket__InvalidRating, rating=rating):
        mc.finalize(task.task_id, rating, sender=requester)


@pytest.mark.parametrize("state", ["Executing", "Validating", "Completed", "Closed"])
def test_finalize__wrong_state__reverts(mc, requester, task_in, state):
    task, _ = task_in(state)
    with ape.reverts(mc.TaskMarket__WrongState):
        mc.finalize(task.task_id, 3, sender=requester)


# ====================================================================== cancel
def test_cancel__pending__refunded_and_removed(mc, requester, task_in, consts):
    task, _ = task_in("Pending")
    receipt = mc.cancel(task.task_id, sender=requester)
    assert status(mc, task.task_id) == Status.Cancelled
    assert mc.creditOf(requester) == consts.PRICE + consts.FEE
    assert task.task_id not in mc.openTasks(0, 1000)
    assert receipt.decode_logs(mc.TaskCancelled)[0].refund == consts.PRICE + consts.FEE


def test_cancel__unknown_task__reverts(mc, requester):
    with ape.reverts(mc.TaskMarket__TaskNotFound):
        mc.cancel(999, sender=requester)


def test_cancel__not_requester__reverts(mc, outsider, task_in):
    task, _ = task_in("Pending")
    with ape.reverts(mc.TaskMarket__NotRequester):
        mc.cancel(task.task_id, sender=outsider)


def test_cancel__executing__reverts(mc, requester, task_in):
    task, _ = task_in("Executing")
    with ape.reverts(mc.TaskMarket__WrongState):
        mc.cancel(task.task_id, sender=requester)


# ====================================================================== expire
@pytest.mark.parametrize("state,refund,payout", [
    ("Pending", "price+fee", 0),  # nobody picked it up
    ("Executing", "price+fee", 0),  # silent provider
    ("AwaitingValidator", "fee", "price"),  # requester named no validator: provider paid, fee back
    ("Validating", "price+fee", 0),  # silent validator
    ("Accepted", 0, "price"),  # silent requester after accept: provider paid
])
def test_expire__after_deadline__escrow_settled_by_anyone(mc, requester, outsider, workers, task_in, past_deadline,
                                                          consts, state, refund, payout):
    amounts = {0: 0, "fee": consts.FEE, "price": consts.PRICE, "price+fee": consts.PRICE + consts.FEE}
    task, _ = task_in(state)
    before = (mc.creditOf(requester), mc.creditOf(workers[0]))
    past_deadline(task.task_id)
    receipt = mc.expire(task.task_id, sender=outsider)
    assert status(mc, task.task_id) == Status.Expired
    assert mc.creditOf(requester) - before[0] == amounts[refund]
    assert mc.creditOf(workers[0]) - before[1] == amounts[payout]
    assert task.task_id not in mc.openTasks(0, 1000)
    [event] = receipt.decode_logs(mc.TaskExpired)
    assert (event.previousStatus, event.refund, event.payout) == (int(Status[state]), amounts[refund],
                                                                  amounts[payout])


@pytest.mark.parametrize("state", ["Pending", "Executing", "AwaitingValidator", "Validating", "Accepted"])
def test_expire__before_deadline__reverts(mc, outsider, task_in, state):
    task, _ = task_in(state)
    with ape.reverts(mc.TaskMarket__DeadlineNotReached):
        mc.expire(task.task_id, sender=outsider)


@pytest.mark.parametrize("state", ["Rejected", "Completed", "Closed", "Cancelled"])
def test_expire__settled_task__reverts(mc, outsider, task_in, advance, state):
    task, _ = task_in(state)
    advance(100_000)
    with ape.reverts(mc.TaskMarket__WrongState):
        mc.expire(task.task_id, sender=outsider)


def test_expire__expired_task__reverts(mc, outsider, task_in, past_deadline):
    task, _ = task_in("Executing")
    past_deadline(task.task_id)
    mc.expire(task.task_id, sender=outsider)
    with ape.reverts(mc.TaskMarket__WrongState, status=int(Status.Expired)):
        mc.expire(task.task_id, sender=outsider)


def test_expire__unknown_task__reverts(mc, outsider):
    with ape.reverts(mc.TaskMarket__TaskNotFound):
        mc.expire(999, sender=outsider)


# ====================================================================== withdraw / withdrawTo
def test_withdraw__credit__paid_and_zeroed(mc, workers, task_in, consts):
    task_in("Completed")
    provider = workers[0]
    balance = provider.balance
    receipt = mc.withdraw(sender=provider)
    assert provider.balance == balance + consts.PRICE - receipt.total_fees_paid
    assert mc.creditOf(provider) == 0
    assert receipt.decode_logs(mc.Withdrawn)[0].amount == consts.PRICE


def test_withdraw__no_credit__reverts(mc, outsider):
    with ape.reverts(mc.TaskMarket__NothingToWithdraw, account=outsider.address):
        mc.withdraw(sender=outsider)


def test_withdraw__registered_worker_without_credit__reverts(mc, workers):
    with ape.reverts(mc.TaskMarket__NothingToWithdraw):
        mc.withdraw(sender=workers[0])


def test_withdraw_to__other_address__paid_there(mc, workers, outsider, task_in, consts):
    task_in("Completed")
    balance = outsider.balance
    mc.withdrawTo(outsider, sender=workers[0])
    assert outsider.balance == balance + consts.PRICE
    assert mc.creditOf(workers[0]) == 0


def test_withdraw_to__recipient_refuses_ether__reverts_and_credit_kept(mc, ratings_contract, workers, task_in,
                                                                      consts):
    task_in("Completed")
    # Ratings has no receive function: a recipient that always refuses ether
    with ape.reverts(mc.TaskMarket__TransferFailed):
        mc.withdrawTo(ratings_contract.address, sender=workers[0])
    assert mc.creditOf(workers[0]) == consts.PRICE


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


def test_open_tasks__cursor_past_end__empty(mc, task_in):
    task_in("Pending")
    assert list(mc.openTasks(mc.openTaskCount(), 10)) == []
    assert list(mc.openTasks(10**6, 10)) == []
    assert list(mc.tasksInStatus(1, 10**6, 10)[0]) == []
    assert list(mc.availableWorkers(10**6, 10)) == []


def test_open_tasks__removal_in_middle__moved_task_index_updated(mc, requester, task_in):
    tasks = [task_in("Pending")[0].task_id for _ in range(3)]
    mc.cancel(tasks[0], sender=requester)
    ids = list(mc.openTasks(0, 1000))
    assert tasks[0] not in ids and set(tasks[1:]) <= set(ids)
    for position, tid in enumerate(ids):
        assert mc.getTask(tid).poolIndex == position


def test_get_task__unknown__status_none(mc):
    t = mc.getTask(12345)
    assert Status(t.status) == Status.None_ and t.requester == ZERO
