"""The SDK (ichain.market): typed pre-checks before sending, domain objects, typed events, ranking."""

from __future__ import annotations

import dataclasses
import time

import pytest

from ichain import market as m
from ichain.market import sdk
from ichain.errors import IChainError



def test_provider__ape_test__is_anvil(chain):
    assert chain.provider.name == "foundry"
    assert "anvil" in chain.provider.web3.client_version.lower()


def test_post__provider_and_validator__task_executing_with_escrow(market, requester, workers, market_contract, consts,
                                                                  new_hash):
    provider, validator, *_ = workers
    balance = market_contract.balance
    c = consts
    task = market.post(new_hash(), price=c.PRICE, validator_fee=c.FEE, provider=provider, validator=validator,
                       provider_locator=c.LOCATOR, validator_locator=c.LOCATOR, sender=requester)
    assert task.status == m.Status.Executing
    assert (task.requester, task.provider, task.validator) == (requester.address, provider.address, validator.address)
    assert (task.price, task.validator_fee, task.deposit) == (c.PRICE, c.FEE, c.PRICE + c.FEE)
    assert market_contract.balance == balance + c.PRICE + c.FEE


def test_lifecycle__happy_path__provider_and_validator_paid_rating_recorded(market, workers, task_in, consts):
    provider, validator, *_ = workers
    task, rh = task_in("Completed")
    assert task.status == m.Status.Completed
    assert market.credit(provider) == consts.PRICE
    assert market.credit(validator) == consts.FEE
    w = market.worker(provider)
    assert (w.rating_count, w.average_rating) == (1, 4.0)
    assert market.withdraw(sender=provider) == consts.PRICE
    assert market.credit(provider) == 0


# ====================================================================== pre-checks: raise before sending
@pytest.fixture
def no_tx(chain):
    """Asserts that the block body grew by no transaction while the block ran (nothing was sent)."""

    class _NoTx:
        def __enter__(self):
            self.head = chain.blocks.head.number
            return self

        def __exit__(self, *exc):
            assert chain.blocks.head.number == self.head, "a transaction was sent"
            return False

    return _NoTx


def test_register__short_key__invalid_input_before_sending(market, outsider, no_tx):
    with no_tx(), pytest.raises(m.InvalidInput, match="32 bytes"):
        market.register(b"\x01" * 31, 1, sender=outsider)


def test_register__zero_key__invalid_input(market, outsider, no_tx):
    with no_tx(), pytest.raises(m.InvalidInput, match="zero"):
        market.register(bytes(32), 1, sender=outsider)


def test_register__negative_price__invalid_input(market, outsider, new_hash, no_tx):
    with no_tx(), pytest.raises(m.InvalidInput):
        market.register(new_hash(), -1, sender=outsider)


def test_register__already_registered__typed_error(market, workers, new_hash, no_tx):
    with no_tx(), pytest.raises(m.AlreadyRegistered):
        market.register(new_hash(), 1, sender=workers[0])


def test_register__new__worker_returned(market, outsider, new_hash):
    key = new_hash()
    w = market.register(key, 42, sender=outsider, available=False)
    assert (w.address, w.enc_key, w.price, w.registered, w.available) == (outsider.address, key, 42, True, False)
    assert w.worker_id > 0 and w.average_rating is None


def test_update__not_a_worker__typed_error(market, outsider, new_hash, no_tx):
    with no_tx(), pytest.raises(m.NotAWorker):
        market.update(new_hash(), 1, sender=outsider)


def test_update__worker__changed(market, workers, new_hash):
    w = market.update(new_hash(), 77, sender=workers[0], available=False)
    assert (w.price, w.available) == (77, False)


def test_leave__not_a_worker__typed_error(market, outsider, no_tx):
    with no_tx(), pytest.raises(m.NotAWorker):
        market.leave(sender=outsider)


def test_leave__worker__unregistered(market, workers):
    market.leave(sender=workers[0])
    assert not market.worker(workers[0]).registered


@pytest.mark.parametrize("timeout", [1, 10**7])
def test_post__timeout_out_of_bounds__typed_error(market, requester, new_hash, no_tx, timeout):
    with no_tx(), pytest.raises(m.TimeoutOutOfBounds):
        market.post(new_hash(), price=1, validator_fee=1, timeout=timeout, sender=requester)


def test_post__requester_as_provider__typed_error(market, workers, new_hash, no_tx):
    with no_tx(), pytest.raises(m.InvalidProvider):
        market.post(new_hash(), price=10**16, validator_fee=1, provider=workers[0], sender=workers[0])


def test_post__provider_is_validator__typed_error(market, requester, workers, new_hash, no_tx):
    with no_tx(), pytest.raises(m.InvalidProvider):
        market.post(new_hash(), price=10**16, validator_fee=1, provider=workers[0], validator=workers[0],
                    sender=requester)


def test_post__requester_as_validator__typed_error(market, workers, new_hash, no_tx):
    with no_tx(), pytest.raises(m.InvalidValidator):
        market.post(new_hash(), price=10**16, validator_fee=1, validator=workers[1], sender=workers[1])


def test_post__provider_not_a_worker__typed_error(market, requester, outsider, new_hash, no_tx):
    with no_tx(), pytest.raises(m.NotAWorker):
        market.post(new_hash(), price=10**16, validator_fee=1, provider=outsider, sender=requester)


def test_post__provider_unavailable__typed_error(market, requester, workers, new_hash, no_tx):
    market.update(new_hash(), 1, sender=workers[0], available=False)
    with no_tx(), pytest.raises(m.WorkerUnavailable):
        market.post(new_hash(), price=10**16, validator_fee=1, provider=workers[0], sender=requester)


def test_post__price_below_asking__typed_error(market, requester, workers, new_hash, no_tx):
    with no_tx(), pytest.raises(m.PriceTooLow):
        market.post(new_hash(), price=1, validator_fee=1, provider=workers[0], sender=requester)


def test_post__deposit_above_balance__insufficient_deposit(market, requester, new_hash, no_tx):
    with no_tx(), pytest.raises(m.InsufficientDeposit):
        market.post(new_hash(), price=2**95, validator_fee=2**95, sender=requester)


def test_post__amount_too_large__invalid_input(market, requester, new_hash, no_tx):
    with no_tx(), pytest.raises(m.InvalidInput):
        market.post(new_hash(), price=2**96, validator_fee=0, sender=requester)


def test_post__default_timeout__clamped_one_hour(market, requester, new_hash, consts):
    task = market.post(new_hash(), price=1, validator_fee=1, sender=requester)
    assert task.timeout == min(max(3600, consts.MIN_TIMEOUT), consts.MAX_TIMEOUT)
    assert task.status == m.Status.Pending and task.provider is None and task.validator is None


def test_assign_provider__not_requester__typed_error(market, outsider, workers, task_in, no_tx):
    task, _ = task_in("Pending")
    with no_tx(), pytest.raises(m.NotRequester):
        market.assign_provider(task.task_id, workers[0], b"", sender=outsider)


def test_assign_provider__executing__wrong_state(market, requester, workers, task_in, no_tx):
    task, _ = task_in("Executing")
    with no_tx(), pytest.raises(m.WrongState, match="Executing, not Pending"):
        market.assign_provider(task.task_id, workers[2], b"", sender=requester)


def test_assign_provider__pending__executing(market, requester, workers, task_in):
    task, _ = task_in("Pending")
    task = market.assign_provider(task.task_id, workers[2], b"loc", sender=requester)
    assert (task.status, task.provider) == (m.Status.Executing, workers[2].address)


def test_assign_validator__result_hash_omitted__looked_up_from_result_of(market, requester, workers, task_in):
    task, rh = task_in("AwaitingValidator")
    assert market.result_hash(task.task_id) == rh
    assert market.result_of(task.task_id) == rh
    task = market.assign_validator(task.task_id, workers[3], b"loc", sender=requester)
    assert (task.status, task.validator) == (m.Status.Validating, workers[3].address)


def test_assign_validator__validator_still_in_window__deadline_not_reached(market, requester, workers, task_in,
                                                                            no_tx):
    task, _ = task_in("Validating")
    with no_tx(), pytest.raises(m.DeadlineNotReached):
        market.assign_validator(task.task_id, workers[3], b"", sender=requester)


def test_assign_validator__review_window_over__deadline_passed(market, requester, workers, task_in, past_deadline,
                                                              no_tx):
    task, _ = task_in("AwaitingValidator")
    past_deadline(task.task_id)
    with no_tx(), pytest.raises(m.DeadlinePassed):
        market.assign_validator(task.task_id, workers[3], b"", sender=requester)


def test_assign_validator__provider_as_validator__typed_error(market, requester, workers, task_in, no_tx):
    task, _ = task_in("AwaitingValidator")
    with no_tx(), pytest.raises(m.InvalidValidator):
        market.assign_validator(task.task_id, workers[0], b"", sender=requester)


def test_submit_result__not_provider__typed_error(market, workers, task_in, new_hash, no_tx):
    task, _ = task_in("Executing")
    with no_tx(), pytest.raises(m.NotProvider):
        market.submit_result(task.task_id, new_hash(), b"", sender=workers[2])


def test_result_of__uncommitted__none_and_result_hash_wrong_state(market, task_in):
    task, _ = task_in("Executing")
    assert market.result_of(task.task_id) is None
    with pytest.raises(m.WrongState):
        market.result_hash(task.task_id)


def test_submit_result__copied_commitment__bound_to_its_own_task(market, workers, task_in, post_task):
    """A hash committed on another task does not block this one (the commitment is per task)."""
    task, rh = task_in("Validating")
    copy = post_task(provider=workers[2])
    copy = market.submit_result(copy.task_id, rh, b"", sender=workers[2])
    assert copy.status == m.Status.Validating
    assert market.result_of(copy.task_id) == market.result_of(task.task_id) == rh


def test_submit_result__after_deadline__typed_error(market, workers, task_in, new_hash, past_deadline, no_tx):
    task, _ = task_in("Executing")
    past_deadline(task.task_id)
    with no_tx(), pytest.raises(m.DeadlinePassed):
        market.submit_result(task.task_id, new_hash(), b"", sender=workers[0])


def test_submit_verdict__not_validator__typed_error(market, workers, task_in, no_tx):
    task, rh = task_in("Validating")
    with no_tx(), pytest.raises(m.NotValidator):
        market.submit_verdict(task.task_id, rh, True, sender=workers[0])


def test_submit_verdict__other_commitment__wrong_result(market, workers, task_in, new_hash, no_tx):
    task, _ = task_in("Validating")
    with no_tx(), pytest.raises(m.WrongResult):
        market.submit_verdict(task.task_id, new_hash(), True, sender=workers[1])


@pytest.mark.parametrize("rating", [0, 6, 2.5, "5", True])
def test_finalize__bad_rating__typed_error(market, requester, task_in, no_tx, rating):
    task, _ = task_in("Accepted")
    with no_tx(), pytest.raises(m.InvalidRating):
        market.finalize(task.task_id, rating, sender=requester)


def test_finalize__executing__wrong_state(market, requester, task_in, no_tx):
    task, _ = task_in("Executing")
    with no_tx(), pytest.raises(m.WrongState):
        market.finalize(task.task_id, 5, sender=requester)


def test_finalize__rejected__closed_rating_only(market, requester, workers, task_in):
    task, _ = task_in("Rejected")
    task = market.finalize(task.task_id, 2, sender=requester)
    assert task.status == m.Status.Closed and market.credit(workers[0]) == 0


def test_cancel__executing__wrong_state(market, requester, task_in, no_tx):
    task, _ = task_in("Executing")
    with no_tx(), pytest.raises(m.WrongState):
        market.cancel(task.task_id, sender=requester)


def test_cancel__pending__refund_credited(market, requester, task_in, consts):
    task, _ = task_in("Pending")
    assert market.cancel(task.task_id, sender=requester).status == m.Status.Cancelled
    assert market.credit(requester) == consts.PRICE + consts.FEE


def test_expire__before_deadline__typed_error(market, outsider, task_in, no_tx):
    task, _ = task_in("Executing")
    with no_tx(), pytest.raises(m.DeadlineNotReached):
        market.expire(task.task_id, sender=outsider)


def test_expire__completed__wrong_state(market, outsider, task_in, no_tx):
    task, _ = task_in("Completed")
    with no_tx(), pytest.raises(m.WrongState):
        market.expire(task.task_id, sender=outsider)


def test_expire__silent_provider__requester_refunded(market, requester, outsider, task_in, past_deadline, consts):
    task, _ = task_in("Executing")
    past_deadline(task.task_id)
    assert market.expire(task.task_id, sender=outsider).status == m.Status.Expired
    assert market.credit(requester) == consts.PRICE + consts.FEE


@pytest.mark.parametrize("status", [s.name for s in m.OPEN_STATUSES])
def test_expire__every_open_state__gas_well_under_expire_gas(market, outsider, task_in, past_deadline, status):
    # expire is sent with the fixed limit EXPIRE_GAS, not an estimate: every branch must fit it with room
    task, _ = task_in(status)
    past_deadline(task.task_id)
    market.expire(task.task_id, sender=outsider)
    expired = market.task_transactions(task.task_id)[-1]
    assert expired.events[-1] == "TaskExpired"
    assert expired.gas_used <= sdk.EXPIRE_GAS // 2


def test_withdraw__nothing__typed_error(market, outsider, no_tx):
    with no_tx(), pytest.raises(m.NothingToWithdraw):
        market.withdraw(sender=outsider)


def test_withdraw__to_other_address__paid_there(market, workers, outsider, task_in, consts):
    task_in("Completed")
    balance = outsider.balance
    assert market.withdraw(sender=workers[0], to=outsider) == consts.PRICE
    assert outsider.balance == balance + consts.PRICE


def test_task__unknown__task_not_found(market):
    with pytest.raises(m.TaskNotFound):
        market.task(10**9)


# ====================================================================== reverts translated
def test_send__doomed_transaction__custom_error_becomes_typed_error(market, requester):
    # bypasses the pre-checks, as a race would: the contract's custom error comes back typed
    with pytest.raises(m.TaskNotFound) as info:
        market._send("cancel", 10**9, sender=requester)
    assert "TaskNotFound" in str(info.value) and "\n" not in str(info.value)


def test_send__custom_error_with_arguments__arguments_in_the_message(market, requester, task_in):
    task, _ = task_in("Completed")
    with pytest.raises(m.WrongState) as info:
        market._send("cancel", task.task_id, sender=requester)
    assert str(info.value) == (f"transaction reverted: WrongState (taskId={task.task_id}, "
                               f"status={int(m.Status.Completed)})")


def test_error_from_revert__not_a_custom_error__transaction_failed_first_line():
    from ape.exceptions import ContractLogicError

    err = m.error_from_revert(ContractLogicError("out of gas\ntrace follows"))
    assert type(err) is m.TransactionFailed and str(err) == "transaction failed: out of gas"


def test_send__refusing_recipient__transfer_failed(market, workers, task_in, ratings_contract):
    task_in("Completed")
    with pytest.raises(m.TransferFailed):
        market.withdraw(sender=workers[0], to=ratings_contract.address)
    assert market.credit(workers[0]) > 0


def test_package__every_public_name__in_all_and_importable():
    # the names other code imports from ichain.market; each module of the package holds some of them
    names = {
        "Market", "rank_key", "EXPIRE_GAS", "PAGE", "UINT96_MAX", "ZERO_ADDRESS", "OPEN_STATUSES", "Status", "Task",
        "Worker", "Pools", "TaskTransaction", "MarketError", "WrongDeposit", "error_from_revert", "MarketEvent",
        "TaskEvent", "EVENT_TYPES", *(cls.__name__ for cls in m.MarketError.__subclasses__()), *m.EVENT_TYPES,
    }
    assert names <= set(m.__all__)
    assert all(hasattr(m, name) for name in m.__all__)
    assert m.WrongDeposit is m.InsufficientDeposit


def test_errors__every_market_error__one_line_ichain_error():
    for cls in m.MarketError.__subclasses__():
        err = cls("first line\nsecond line")
        assert isinstance(err, IChainError) and "\n" not in str(err)


# ====================================================================== events, pools, ranking
def test_task_event__every_event_with_a_task_id__is_a_task_event():
    # task_transactions finds a task's transactions by TaskEvent: an event outside it would be missed
    for cls in m.EVENT_TYPES.values():
        assert ("task_id" in {f.name for f in dataclasses.fields(cls)}) == issubclass(cls, m.TaskEvent), cls


def test_events__lifecycle_range__typed_in_chain_order(market, chain, requester, workers, task_in, consts):
    start = chain.blocks.head.number + 1
    task, rh = task_in("Completed")
    events = [e for e in market.events(start) if isinstance(e, m.TaskEvent) and e.task_id == task.task_id]
    assert [e.name for e in events] == ["TaskPosted", "ResultSubmitted", "VerdictSubmitted", "TaskFinalized",
                                        "Rated"]
    posted, result, verdict, final, rated = events
    assert isinstance(posted, m.TaskPosted) and posted.provider == workers[0].address
    assert (posted.price, posted.validator_fee, posted.provider_locator) == (consts.PRICE, consts.FEE,
                                                                             consts.LOCATOR)
    assert (result.result_hash, result.validator, result.requester) == (rh, workers[1].address, requester.address)
    assert verdict.accepted is True and final.paid == consts.PRICE and rated.rating == 4
    blocks = [(e.block_number, e.log_index) for e in events]
    assert blocks == sorted(blocks)


def test_events__unnamed_parties__none_not_zero_address(market, chain, task_in):
    start = chain.blocks.head.number + 1
    task, _ = task_in("Pending", validator=None)
    [posted] = [e for e in market.events(start) if isinstance(e, m.TaskPosted)]
    assert posted.provider is None and posted.validator is None


def test_events__empty_or_reversed_range__empty_list(market, chain):
    head = chain.blocks.head.number
    assert market.events(head + 10, head + 20) == []
    assert market.events(head, head - 1) == []


def test_pools__tasks_in_each_state__listed(market, task_in, workers):
    ids = {s: task_in(s)[0].task_id for s in ("Pending", "Executing", "AwaitingValidator", "Validating",
                                              "Accepted")}
    done = task_in("Completed")[0].task_id
    pools = market.pools()
    assert ids["Pending"] in pools.pending and ids["Executing"] in pools.executing
    assert ids["AwaitingValidator"] in pools.awaiting_validator and ids["Validating"] in pools.validating
    assert ids["Accepted"] in pools.accepted
    assert done not in pools.pending + pools.executing + pools.validating + pools.accepted
    assert {w.address for w in workers} <= set(pools.available)


def test_providers__ratings_and_prices__ranked_best_average_then_cheapest(market, requester, workers, post_task,
                                                                           new_hash):
    provider, validator, provider2, validator2 = workers
    for who, rating in ((provider, 3), (provider2, 5)):
        task = post_task(provider=who, validator=validator)
        rh = new_hash()
        market.submit_result(task.task_id, rh, b"", b"", sender=who)
        market.submit_verdict(task.task_id, rh, True, sender=validator)
        market.finalize(task.task_id, rating, sender=requester)
    market.update(new_hash(), 1, sender=validator2)  # unrated but cheapest
    ranked = [w.address for w in market.providers()]
    assert ranked.index(provider2.address) < ranked.index(provider.address) < ranked.index(validator2.address)
    assert ranked.index(validator2.address) < ranked.index(validator.address)  # unrated: cheaper first


def _one_by_one(market_contract, ratings_contract, task_ids, addresses):
    """What ape's own per-call path returns, for comparing with the batched reads."""
    tasks = [market_contract.getTask(i) for i in task_ids]
    workers = [(market_contract.getWorker(a), tuple(ratings_contract.stats(a))) for a in addresses]
    return tasks, workers


def test_tasks__several_ids__one_round_trip_same_records_as_ape(market, task_in, market_contract, ratings_contract,
                                                                workers, monkeypatch):
    ids = [task_in(s)[0].task_id for s in ("Pending", "Executing", "Completed")]
    sent = []
    real = market._call_one
    monkeypatch.setattr(market, "_call_one", lambda *a: sent.append(a) or real(*a))
    batched = market.tasks(ids)
    theirs, _ = _one_by_one(market_contract, ratings_contract, ids, [])
    assert sent == []  # nothing fell back to one call per item
    assert [t.task_id for t in batched] == ids
    assert [(t.requester, int(t.status), t.deadline, t.price, t.validator_fee, t.timeout) for t in batched] == [
        (r.requester, int(r.status), r.deadline, r.price, r.validatorFee, r.timeout) for r in theirs]
    assert [t.status for t in batched] == [m.Status.Pending, m.Status.Executing, m.Status.Completed]


def test_tasks__unknown_id_among_known__task_not_found(market, task_in):
    known = task_in("Pending")[0].task_id
    with pytest.raises(m.TaskNotFound, match=f"task {known + 1000} does not exist"):
        market.tasks([known, known + 1000])


def test_workers__several__same_stats_as_ape(market, task_in, workers, market_contract, ratings_contract, outsider):
    task_in("Completed")  # gives the provider a rating
    addresses = [w.address for w in workers] + [outsider.address]
    ours = market.workers(addresses)
    _, theirs = _one_by_one(market_contract, ratings_contract, [], addresses)
    assert [(w.worker_id, w.price, w.registered, w.available, w.rating_sum, w.rating_count) for w in ours] == [
        (r.id, r.price, r.registered, r.available, s[0], s[1]) for r, s in theirs]
    assert ours[0].rating_count == 1 and ours[-1].registered is False


def test_read_many__node_refuses_batches__same_answers_one_by_one(market, task_in, workers, monkeypatch):
    ids = [task_in("Pending")[0].task_id, task_in("Executing")[0].task_id]
    batched = (market.tasks(ids), market.workers(workers), market.pools())
    w3, _ = market._web3_contracts()

    def refuse():
        raise ValueError("batch requests are not supported by this node")

    monkeypatch.setattr(w3, "batch_requests", refuse)
    single = []
    real = market._call_one
    monkeypatch.setattr(market, "_call_one", lambda *a: single.append(a[0]) or real(*a))
    assert (market.tasks(ids), market.workers(workers), market.pools()) == batched
    assert single.count("getTask") == 2 and single.count("ratings.stats") == len(workers)


def test_pools__more_tasks_than_a_page__every_id_listed(market, post_task, workers, monkeypatch):
    posted = [post_task().task_id for _ in range(5)]
    monkeypatch.setattr(sdk, "PAGE", 2)  # five executing tasks and four workers take several pages
    pools = market.pools()
    assert set(posted) <= set(pools.executing)
    assert {w.address for w in workers} <= set(pools.available)
    assert market.tasks_in(m.Status.Executing) == pools.executing
    assert market.available_workers() == pools.available


def test_now__anvil_clock_behind_wall_clock__follows_the_chain(market, chain):
    # anvil rewinds its clock by the time spent between a snapshot and its revert, so after a long test session
    # the chain runs behind this machine. The daemon once judged deadlines by max(latest block, its own clock):
    # it claimed too early, the SDK refused, and it retried every 2 s instead of sleeping until the deadline.
    web3 = chain.provider.web3
    snapshot = chain.provider.make_request("evm_snapshot", [])
    time.sleep(3)
    chain.provider.make_request("evm_revert", [snapshot])

    def pending() -> int:
        return int(web3.eth.get_block("pending")["timestamp"])

    # Each clock is read between two reads of the node's own pending timestamp, so a pause of this
    # process between reads cannot make the comparison fail.
    before = pending()
    assert before <= time.time() - 2  # the premise: the chain's clock is behind ours
    ours = market.now()
    apes = chain.pending_timestamp  # ape's clock, read a moment later, agrees
    after = pending()
    assert before <= ours <= apes <= after
    chain.provider.make_request("evm_mine", [])
    assert after <= int(web3.eth.get_block("latest")["timestamp"]) <= pending()


def test_now__after_time_travel__the_pending_block_timestamp_as_ape_gives_it(market, chain):
    # a fixed next-block timestamp, so the chain's clock does not tick between the reads compared
    target = int(time.time()) + 3 * 3600
    chain.pending_timestamp = target
    assert market.now() == chain.pending_timestamp == target
    chain.mine()
    assert chain.blocks.head.timestamp == target


def test_task_transactions__completed_task__four_txs_two_from_requester_gas_from_receipts(market, task_in,
                                                                                         requester, workers, chain):
    provider, validator, *_ = workers
    start = chain.blocks.head.number + 1
    task, _ = task_in("Completed")
    txs = market.task_transactions(task.task_id, start_block=start)
    assert [(tx.sender, tx.events) for tx in txs] == [
        (requester.address, ("TaskPosted",)), (provider.address, ("ResultSubmitted",)),
        (validator.address, ("VerdictSubmitted",)), (requester.address, ("TaskFinalized", "Rated"))]
    for tx in txs:
        assert tx.gas_used == chain.provider.web3.eth.get_transaction_receipt(tx.transaction_hash)["gasUsed"] > 21_000


def test_task_transactions__unknown_task__empty(market, chain):
    assert market.task_transactions(10**6, start_block=chain.blocks.head.number) == []


def test_events__hand_rolled_decoder__matches_ape_decoding(market, market_contract, requester, workers, new_hash,
                                                          chain):
    start = chain.blocks.head.number + 1
    receipt = market_contract.post(new_hash(), (workers[0].address, workers[1].address, 10**16, 10**15, 600),
                                   b"\x01" * 77, b"", sender=requester, value=10**16 + 10**15)
    [theirs] = receipt.decode_logs(market_contract.TaskPosted)
    [ours] = [e for e in market.events(start) if isinstance(e, m.TaskPosted)]
    args = theirs.event_arguments
    assert (ours.task_id, ours.provider, ours.validator, ours.requester) == (
        args["taskId"], args["provider"], args["validator"], args["requester"])
    assert (ours.task_hash, ours.price, ours.validator_fee, ours.deadline) == (
        args["taskHash"], args["price"], args["validatorFee"], args["deadline"])
    assert (ours.provider_locator, ours.validator_locator) == (b"\x01" * 77, b"")
    assert (ours.block_number, ours.log_index) == (theirs.block_number, theirs.log_index)


@pytest.mark.parametrize("address", ["0x" + "55" * 20, "not-an-address"])
def test_market__no_contract_at_address__one_line_market_error(address):
    with pytest.raises(m.MarketError) as info:
        m.Market.at(address)
    assert "no TaskMarket" in str(info.value) and "\n" not in str(info.value)
