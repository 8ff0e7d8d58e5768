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
                       locator=c.LOCATOR, sender=requester)
    assert task.status == m.Status.Executing
    assert (task.requester, task.provider, task.validator) == (requester.address, provider.address, validator.address)
    assert (task.price, task.validator_fee, task.deposit) == (c.PRICE, c.FEE, c.PRICE + c.FEE)
    assert market_contract.balance == balance + c.PRICE + c.FEE


def test_lifecycle__happy_path__paid_less_burn_collateral_back_rating_recorded(market, requester, workers, task_in,
                                                                               consts):
    provider, validator, *_ = workers
    burned = market.burned()
    task, rh = task_in("Completed")
    assert task.status == m.Status.Completed
    provider_paid = consts.PRICE - m.burn_of(consts.PRICE)
    assert market.credit(provider) == provider_paid + consts.COLLATERAL
    assert market.credit(validator) == consts.FEE - m.burn_of(consts.FEE)
    assert market.burned() == burned + m.burn_of(consts.PRICE) + m.burn_of(consts.FEE)
    task = market.rate(task.task_id, 4, 5, sender=requester)
    assert task.status == m.Status.Rated
    w, v = market.workers([provider, validator])
    assert (w.rating_count, w.average_rating, w.provider_record.weight_gwei) == (1, 4.0, provider_paid // 10**9)
    assert (v.validator_record.count, v.validator_record.average) == (1, 5.0)
    assert v.provider_record.count == 0
    assert market.withdraw(sender=provider) == provider_paid + consts.COLLATERAL
    assert market.credit(provider) == 0


def test_lifecycle__failure_reported__failure_fee_kept_rest_refunded(market, requester, workers, task_in, consts,
                                                                    chain):
    provider, *_ = workers
    start = chain.blocks.head.number + 1
    task, _ = task_in("Failed")
    assert task.status == m.Status.Failed
    fee = consts.PRICE * m.FAILURE_BPS // m.BPS
    [failed] = [e for e in market.events(start) if isinstance(e, m.TaskFailed)]
    assert (failed.task_id, failed.provider, failed.requester, failed.report) == (
        task.task_id, provider.address, requester.address, consts.REPORT)
    assert failed.provider_paid == fee - m.burn_of(fee) == market.credit(provider)
    assert failed.refund == consts.PRICE + consts.FEE - fee == market.credit(requester)
    assert failed.burned == m.burn_of(fee)


def test_lifecycle__rejected__requester_refunded_collateral_pays_validator_rest_burned(market, requester, workers,
                                                                                     task_in, consts, chain):
    provider, validator, *_ = workers
    burned = market.burned()
    start = chain.blocks.head.number + 1
    task, rh = task_in("Rejected")
    assert task.status == m.Status.Rejected
    assert market.credit(requester) == consts.PRICE + consts.FEE
    assert market.credit(validator) == consts.FEE - m.burn_of(consts.FEE)
    assert market.credit(provider) == 0
    assert market.burned() == burned + consts.COLLATERAL - market.credit(validator)
    [verdict] = [e for e in market.events(start) if isinstance(e, m.VerdictSubmitted)]
    assert (verdict.accepted, verdict.provider_paid, verdict.requester_locator) == (False, 0, b"")


def test_lifecycle__silent_validator__expired_provider_collateral_back_missed_counted(market, requester, workers,
                                                                                    task_in, consts):
    provider, validator, *_ = workers
    task, _ = task_in("Expired", expire_from="Validating")
    assert task.status == m.Status.Expired
    assert market.credit(requester) == consts.PRICE + consts.FEE
    assert market.credit(provider) == consts.COLLATERAL
    assert market.worker(validator).missed == 1


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
def test_post__timeout_out_of_bounds__typed_error(market, requester, workers, new_hash, no_tx, timeout):
    with no_tx(), pytest.raises(m.TimeoutOutOfBounds):
        market.post(new_hash(), price=1, validator_fee=10**16, validator=workers[1], timeout=timeout,
                    sender=requester)


@pytest.mark.parametrize("validator", [None, "0x" + "00" * 20])
def test_post__no_validator__invalid_validator(market, requester, new_hash, no_tx, validator):
    with no_tx(), pytest.raises(m.InvalidValidator, match="needs a validator"):
        market.post(new_hash(), price=1, validator_fee=1, validator=validator, sender=requester)


def test_post__requester_as_provider__typed_error(market, workers, new_hash, no_tx):
    with no_tx(), pytest.raises(m.InvalidProvider):
        market.post(new_hash(), price=10**16, validator_fee=10**16, provider=workers[0], validator=workers[1],
                    sender=workers[0])


def test_post__provider_is_validator__typed_error(market, requester, workers, new_hash, no_tx):
    with no_tx(), pytest.raises(m.InvalidProvider):
        market.post(new_hash(), price=10**16, validator_fee=10**16, provider=workers[0], validator=workers[0],
                    sender=requester)


def test_post__requester_as_validator__typed_error(market, workers, new_hash, no_tx):
    with no_tx(), pytest.raises(m.InvalidValidator):
        market.post(new_hash(), price=10**16, validator_fee=10**16, validator=workers[1], sender=workers[1])


def test_post__provider_not_a_worker__typed_error(market, requester, outsider, workers, new_hash, no_tx):
    with no_tx(), pytest.raises(m.NotAWorker):
        market.post(new_hash(), price=10**16, validator_fee=10**16, provider=outsider, validator=workers[1],
                    sender=requester)


def test_post__validator_not_a_worker__typed_error(market, requester, outsider, new_hash, no_tx):
    with no_tx(), pytest.raises(m.NotAWorker, match="validator"):
        market.post(new_hash(), price=10**16, validator_fee=10**16, validator=outsider, sender=requester)


def test_post__provider_unavailable__typed_error(market, requester, workers, new_hash, no_tx):
    market.update(new_hash(), 1, sender=workers[0], available=False)
    with no_tx(), pytest.raises(m.WorkerUnavailable):
        market.post(new_hash(), price=10**16, validator_fee=10**16, provider=workers[0], validator=workers[1],
                    sender=requester)


def test_post__validator_unavailable__typed_error(market, requester, workers, new_hash, no_tx):
    market.update(new_hash(), 1, sender=workers[1], available=False)
    with no_tx(), pytest.raises(m.WorkerUnavailable, match="validator"):
        market.post(new_hash(), price=10**16, validator_fee=10**16, validator=workers[1], sender=requester)


def test_post__price_below_asking__typed_error(market, requester, workers, new_hash, no_tx):
    with no_tx(), pytest.raises(m.PriceTooLow, match="provider"):
        market.post(new_hash(), price=1, validator_fee=10**16, provider=workers[0], validator=workers[1],
                    sender=requester)


def test_post__fee_below_validator_asking__price_too_low(market, requester, workers, new_hash, no_tx, consts):
    # M5: a validator is never drafted without its consent to the fee
    with no_tx(), pytest.raises(m.PriceTooLow, match="validator"):
        market.post(new_hash(), price=10**16, validator_fee=consts.ASKING - 1, validator=workers[1],
                    sender=requester)


def test_post__provider_does_not_trust_validator__validator_not_trusted(market, requester, workers, new_hash, no_tx):
    provider, _, _, validator2 = workers
    with no_tx(), pytest.raises(m.ValidatorNotTrusted):
        market.post(new_hash(), price=10**16, validator_fee=10**16, provider=provider, validator=validator2,
                    locator=b"l", sender=requester)


def test_post__deposit_above_balance__insufficient_deposit(market, requester, workers, new_hash, no_tx):
    with no_tx(), pytest.raises(m.InsufficientDeposit):
        market.post(new_hash(), price=2**95, validator_fee=2**95, validator=workers[1], sender=requester)


def test_post__amount_too_large__invalid_input(market, requester, workers, new_hash, no_tx):
    with no_tx(), pytest.raises(m.InvalidInput):
        market.post(new_hash(), price=2**96, validator_fee=0, validator=workers[1], sender=requester)


def test_post__default_timeout__clamped_one_hour(market, requester, workers, new_hash, consts):
    task = market.post(new_hash(), price=1, validator_fee=consts.ASKING, validator=workers[1], sender=requester)
    assert task.timeout == min(max(3600, consts.MIN_TIMEOUT), consts.MAX_TIMEOUT)
    assert task.status == m.Status.Pending and task.provider is None and task.validator == workers[1].address


def test_assign_provider__not_requester__typed_error(market, outsider, workers, task_in, no_tx):
    task, _ = task_in("Pending")
    with no_tx(), pytest.raises(m.NotRequester):
        market.assign_provider(task.task_id, workers[0], b"", sender=outsider)


def test_assign_provider__executing__wrong_state(market, requester, workers, task_in, no_tx):
    task, _ = task_in("Executing")
    with no_tx(), pytest.raises(m.WrongState, match="Executing, not Pending"):
        market.assign_provider(task.task_id, workers[2], b"", sender=requester)


def test_assign_provider__pending__executing(market, requester, workers, task_in):
    task, _ = task_in("Pending", validator=workers[3])
    task = market.assign_provider(task.task_id, workers[2], b"loc", sender=requester)
    assert (task.status, task.provider) == (m.Status.Executing, workers[2].address)


def test_assign_provider__untrusted_validator__validator_not_trusted(market, requester, workers, task_in, no_tx):
    task, _ = task_in("Pending")  # validator: workers[1], which provider2 does not trust
    with no_tx(), pytest.raises(m.ValidatorNotTrusted):
        market.assign_provider(task.task_id, workers[2], b"loc", sender=requester)


def test_assign_provider__validator_itself__invalid_provider(market, requester, workers, task_in, no_tx):
    task, _ = task_in("Pending")
    with no_tx(), pytest.raises(m.InvalidProvider):
        market.assign_provider(task.task_id, workers[1], b"loc", sender=requester)


# ====================================================================== trust
def test_set_trust__add_then_remove__trusts_and_trusted_validators_follow(market, workers, outsider, new_hash):
    provider, validator, provider2, validator2 = workers
    assert market.trusted_validators(provider) == [validator.address]
    assert market.set_trust(validator2, sender=provider) is True
    assert market.trusts(provider, validator2) and not market.trusts(validator2, provider)
    assert market.trusted_validators(provider) == [validator.address, validator2.address]
    assert market.set_trust(validator, False, sender=provider) is False
    assert market.trusted_validators(provider) == [validator2.address]
    assert market.trusted_validators(outsider) == []


def test_set_trust__itself__invalid_validator_before_sending(market, workers, no_tx):
    with no_tx(), pytest.raises(m.InvalidValidator):
        market.set_trust(workers[0], sender=workers[0])


def test_set_trust__event__typed(market, workers, chain):
    start = chain.blocks.head.number + 1
    market.set_trust(workers[3], sender=workers[0])
    [event] = [e for e in market.events(start) if isinstance(e, m.TrustChanged)]
    assert (event.provider, event.validator, event.trusted) == (workers[0].address, workers[3].address, True)


def test_validators__of_a_provider__its_trusted_set_ranked_never_itself(market, workers):
    provider, validator, provider2, validator2 = workers
    market.set_trust(validator2, sender=provider)
    assert {w.address for w in market.validators(provider)} == {validator.address, validator2.address}
    assert [w.address for w in market.validators(provider, exclude=[validator])] == [validator2.address]


def test_submit_result__not_provider__typed_error(market, workers, task_in, new_hash, no_tx):
    task, _ = task_in("Executing")
    with no_tx(), pytest.raises(m.NotProvider):
        market.submit_result(task.task_id, new_hash(), b"", sender=workers[2])


def test_submit_result__executing__collateral_sent_and_in_event(market, market_contract, workers, task_in, new_hash,
                                                               consts, chain):
    provider, validator, *_ = workers
    task, _ = task_in("Executing")
    balance = market_contract.balance
    start = chain.blocks.head.number + 1
    rh = new_hash()
    task = market.submit_result(task.task_id, rh, b"vloc", sender=provider)
    assert task.status == m.Status.Validating and task.collateral == consts.COLLATERAL
    assert market_contract.balance == balance + consts.COLLATERAL
    assert market.collateral_for(consts.PRICE, consts.FEE) == market_contract.collateralFor(consts.PRICE, consts.FEE)
    [event] = [e for e in market.events(start) if isinstance(e, m.ResultSubmitted)]
    assert (event.result_hash, event.collateral, event.validator, event.validator_locator) == (
        rh, consts.COLLATERAL, validator.address, b"vloc")
    assert market.result_of(task.task_id) == market.result_hash(task.task_id) == rh


def test_submit_result__collateral_above_balance__insufficient_deposit(market, requester, workers, task_in, new_hash,
                                                                      no_tx, chain):
    provider = workers[0]
    task, _ = task_in("Executing")
    chain.provider.set_balance(provider.address, task.collateral - 1)
    with no_tx(), pytest.raises(m.InsufficientDeposit, match="collateral"):
        market.submit_result(task.task_id, new_hash(), b"", sender=provider)


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


@pytest.mark.parametrize("length", [0, 1025])
def test_report_failure__bad_length__invalid_report_before_sending(market, workers, task_in, no_tx, length):
    task, _ = task_in("Executing")
    with no_tx(), pytest.raises(m.InvalidReport):
        market.report_failure(task.task_id, b"r" * length, sender=workers[0])


def test_report_failure__longest_report__failed(market, workers, task_in):
    task, _ = task_in("Executing")
    assert market.report_failure(task.task_id, b"r" * m.MAX_REPORT, sender=workers[0]).status == m.Status.Failed


def test_report_failure__not_provider__typed_error(market, workers, task_in, no_tx, consts):
    task, _ = task_in("Executing")
    with no_tx(), pytest.raises(m.NotProvider):
        market.report_failure(task.task_id, consts.REPORT, sender=workers[1])


def test_report_failure__validating__wrong_state(market, workers, task_in, no_tx, consts):
    task, _ = task_in("Validating")
    with no_tx(), pytest.raises(m.WrongState):
        market.report_failure(task.task_id, consts.REPORT, sender=workers[0])


def test_report_failure__after_deadline__deadline_passed(market, workers, task_in, past_deadline, no_tx, consts):
    task, _ = task_in("Executing")
    past_deadline(task.task_id)
    with no_tx(), pytest.raises(m.DeadlinePassed):
        market.report_failure(task.task_id, consts.REPORT, sender=workers[0])


def test_submit_verdict__not_validator__typed_error(market, workers, task_in, no_tx):
    task, rh = task_in("Validating")
    with no_tx(), pytest.raises(m.NotValidator):
        market.submit_verdict(task.task_id, rh, True, sender=workers[0])


def test_submit_verdict__other_commitment__wrong_result(market, workers, task_in, new_hash, no_tx):
    task, _ = task_in("Validating")
    with no_tx(), pytest.raises(m.WrongResult):
        market.submit_verdict(task.task_id, new_hash(), True, sender=workers[1])


def test_submit_verdict__after_deadline__deadline_passed(market, workers, task_in, past_deadline, no_tx):
    task, rh = task_in("Validating")
    past_deadline(task.task_id)
    with no_tx(), pytest.raises(m.DeadlinePassed):
        market.submit_verdict(task.task_id, rh, True, b"loc", sender=workers[1])


def test_submit_verdict__accept__requester_locator_released_in_event(market, workers, task_in, chain, consts):
    task, rh = task_in("Validating")
    start = chain.blocks.head.number + 1
    market.submit_verdict(task.task_id, rh, True, b"sealed-to-requester", sender=workers[1])
    [verdict] = [e for e in market.events(start) if isinstance(e, m.VerdictSubmitted)]
    assert (verdict.accepted, verdict.result_hash, verdict.requester_locator) == (True, rh, b"sealed-to-requester")
    assert market.credit(workers[0]) == consts.PRICE - m.burn_of(consts.PRICE) + consts.COLLATERAL
    assert verdict.validator_paid == consts.FEE - m.burn_of(consts.FEE)


@pytest.mark.parametrize("rating", [0, 6, 2.5, "5", True])
def test_rate__bad_provider_rating__typed_error(market, requester, task_in, no_tx, rating):
    task, _ = task_in("Completed")
    with no_tx(), pytest.raises(m.InvalidRating):
        market.rate(task.task_id, rating, 3, sender=requester)


@pytest.mark.parametrize("rating", [-1, 6, True])
def test_rate__bad_validator_rating__typed_error(market, requester, task_in, no_tx, rating):
    task, _ = task_in("Completed")
    with no_tx(), pytest.raises(m.InvalidRating):
        market.rate(task.task_id, 3, rating, sender=requester)


def test_rate__failed_task_with_validator_rating__invalid_rating(market, requester, task_in, no_tx):
    task, _ = task_in("Failed")
    with no_tx(), pytest.raises(m.InvalidRating, match="failed"):
        market.rate(task.task_id, 2, 3, sender=requester)


def test_rate__failed_task__provider_rated_weighted_by_failure_fee(market, requester, workers, task_in, consts):
    task, _ = task_in("Failed")
    assert market.rate(task.task_id, 2, sender=requester).status == m.Status.Rated
    fee = consts.PRICE * m.FAILURE_BPS // m.BPS
    record = market.worker(workers[0]).provider_record
    assert (record.count, record.sum, record.weight_gwei) == (1, 2, (fee - m.burn_of(fee)) // 10**9)
    assert market.worker(workers[1]).validator_record.count == 0


@pytest.mark.parametrize("status", ["Executing", "Validating", "Rejected", "Rated", "Expired"])
def test_rate__not_completed_or_failed__wrong_state(market, requester, task_in, no_tx, status):
    task, _ = task_in(status)
    with no_tx(), pytest.raises(m.WrongState):
        market.rate(task.task_id, 5, sender=requester)


def test_rate__not_requester__typed_error(market, outsider, task_in, no_tx):
    task, _ = task_in("Completed")
    with no_tx(), pytest.raises(m.NotRequester):
        market.rate(task.task_id, 5, sender=outsider)


def test_rate__validator_unrated__only_provider_record_moves(market, requester, workers, task_in):
    task, _ = task_in("Completed")
    market.rate(task.task_id, 5, sender=requester)
    provider, validator = market.workers(workers[:2])
    assert (provider.provider_record.count, validator.validator_record.count) == (1, 0)
    assert provider.score > 3.0 and validator.validator_score == 3.0


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


@pytest.mark.parametrize("status", ["Completed", "Failed", "Rejected", "Rated", "Cancelled", "Expired"])
def test_expire__settled__wrong_state(market, outsider, task_in, no_tx, status):
    task, _ = task_in(status)
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
    owed = market.credit(workers[0])
    assert owed == consts.PRICE - m.burn_of(consts.PRICE) + consts.COLLATERAL
    assert market.withdraw(sender=workers[0], to=outsider) == owed
    assert outsider.balance == balance + owed


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
    task, rh = task_in("Rated", rating=(4, 5))
    events = [e for e in market.events(start) if isinstance(e, m.TaskEvent) and e.task_id == task.task_id]
    assert [e.name for e in events] == ["TaskPosted", "ResultSubmitted", "VerdictSubmitted", "TaskRated"]
    posted, result, verdict, rated = events
    assert isinstance(posted, m.TaskPosted) and posted.provider == workers[0].address
    assert (posted.price, posted.validator_fee, posted.locator) == (consts.PRICE, consts.FEE, consts.LOCATOR)
    assert (result.result_hash, result.validator, result.requester) == (rh, workers[1].address, requester.address)
    assert (result.collateral, result.validator_locator) == (consts.COLLATERAL, consts.LOCATOR)
    assert verdict.accepted is True and verdict.requester_locator == consts.LOCATOR
    assert verdict.validator_paid == consts.FEE - m.burn_of(consts.FEE)
    assert verdict.burned == m.burn_of(consts.PRICE) + m.burn_of(consts.FEE)
    assert (rated.provider, rated.validator, rated.provider_rating, rated.validator_rating) == (
        workers[0].address, workers[1].address, 4, 5)
    blocks = [(e.block_number, e.log_index) for e in events]
    assert blocks == sorted(blocks)


def test_events__pending_task__provider_none_not_zero_address(market, chain, task_in):
    start = chain.blocks.head.number + 1
    task, _ = task_in("Pending")
    [posted] = [e for e in market.events(start) if isinstance(e, m.TaskPosted)]
    assert posted.provider is None and posted.validator == task.validator and posted.locator == b""


def test_events__expired_silent_validator__payout_is_collateral(market, chain, task_in, consts):
    start = chain.blocks.head.number + 1
    task, _ = task_in("Expired", expire_from="Validating")
    [expired] = [e for e in market.events(start) if isinstance(e, m.TaskExpired)]
    assert (expired.previous_status, expired.refund, expired.payout) == (
        m.Status.Validating, consts.PRICE + consts.FEE, consts.COLLATERAL)


def test_events__empty_or_reversed_range__empty_list(market, chain):
    head = chain.blocks.head.number
    assert market.events(head + 10, head + 20) == []
    assert market.events(head, head - 1) == []


def test_pools__tasks_in_each_state__listed(market, task_in, workers):
    ids = {s: task_in(s)[0].task_id for s in ("Pending", "Executing", "Validating")}
    done = [task_in(s)[0].task_id for s in ("Completed", "Failed", "Rejected")]
    pools = market.pools()
    assert ids["Pending"] in pools.pending and ids["Executing"] in pools.executing
    assert ids["Validating"] in pools.validating
    assert not set(done) & set(pools.pending + pools.executing + pools.validating)
    assert {w.address for w in workers} <= set(pools.available)


def test_providers__ratings_and_prices__ranked_by_score_then_cheapest(market, requester, workers, task_in,
                                                                       new_hash):
    provider, validator, provider2, validator2 = workers
    for who, rating in ((provider, 2), (provider2, 5)):
        task, _ = task_in("Completed", provider=who)
        market.rate(task.task_id, rating, sender=requester)
    market.update(new_hash(), 1, sender=validator2)  # unrated (the 3-star prior) but cheapest
    ranked = [w.address for w in market.providers()]
    assert ranked.index(provider2.address) < ranked.index(validator2.address) < ranked.index(provider.address)
    assert ranked.index(validator2.address) < ranked.index(validator.address)  # both unrated: cheaper first


def test_rank_key__one_cheap_five_star__below_much_paid_four_stars():
    # the raw mean would put one self-dealt 5-star above forty paid 4-stars; the Bayesian score does not
    def worker(address, count, total, weight_gwei):
        prior = m.PRIOR_WEIGHT_GWEI
        weighted = weight_gwei * total // count
        score = (m.PRIOR_SCORE_MILLI * prior + 1000 * weighted) // (prior + weight_gwei)
        record = m.Record(count=count, sum=total, weight_gwei=weight_gwei, weighted_gwei=weighted,
                          average_milli=1000 * total // count, score_milli=score)
        return m.Worker(address=address, worker_id=1, enc_key=b"k" * 32, price=1, registered=True, available=True,
                        provider_record=record)

    farmed = worker("0x" + "01" * 20, 1, 5, 1_000)  # one 5-star on a 1000-gwei task
    honest = worker("0x" + "02" * 20, 40, 160, 400_000_000)  # forty 4-stars on 0.01-ether tasks
    assert farmed.average_rating > honest.average_rating
    assert sorted([farmed, honest], key=m.rank_key)[0] is honest
    # neither was rated as a validator: the prior ties them, the address decides
    assert sorted([honest, farmed], key=lambda w: m.rank_key(w, m.Role.Validator))[0] is farmed


def test_validators__scores__ranked_by_validator_record(market, requester, workers, task_in):
    provider, validator, provider2, validator2 = workers
    market.set_trust(validator2, sender=provider)
    for who, rating in ((validator, 1), (validator2, 5)):
        task, _ = task_in("Completed", provider=provider, validator=who)
        market.rate(task.task_id, 3, rating, sender=requester)
    assert [w.address for w in market.validators(provider)] == [validator2.address, validator.address]


def _one_by_one(market_contract, ratings_contract, task_ids, addresses):
    """What ape's own per-call path returns, for comparing with the batched reads."""
    tasks = [market_contract.getTask(i) for i in task_ids]
    workers = [(market_contract.getWorker(a), ratings_contract.recordOf(a, 0), ratings_contract.recordOf(a, 1))
               for a in addresses]
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
    task_in("Rated")  # gives the provider and the validator a rating
    addresses = [w.address for w in workers] + [outsider.address]
    ours = market.workers(addresses)
    _, theirs = _one_by_one(market_contract, ratings_contract, [], addresses)
    assert [(w.worker_id, w.price, w.registered, w.available, w.missed) for w in ours] == [
        (r.id, r.price, r.registered, r.available, r.missed) for r, _, _ in theirs]
    assert [(w.provider_record.count, w.provider_record.weighted_gwei, w.provider_record.score_milli,
             w.validator_record.count, w.validator_record.score_milli) for w in ours] == [
        (p.count, p.weightedGwei, p.scoreMilli, v.count, v.scoreMilli) for _, p, v in theirs]
    assert ours[0].rating_count == 1 and ours[1].validator_record.count == 1 and ours[-1].registered is False
    assert ours[-1].provider_record == m.Record()


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
    assert single.count("getTask") == 2 and single.count("ratings.recordOf") == 2 * len(workers)


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


def test_task_transactions__rated_task__four_txs_two_from_requester_gas_from_receipts(market, task_in,
                                                                                     requester, workers, chain):
    provider, validator, *_ = workers
    start = chain.blocks.head.number + 1
    task, _ = task_in("Rated")
    txs = market.task_transactions(task.task_id, start_block=start)
    assert [(tx.sender, tx.events) for tx in txs] == [
        (requester.address, ("TaskPosted",)), (provider.address, ("ResultSubmitted",)),
        (validator.address, ("VerdictSubmitted",)), (requester.address, ("TaskRated",))]
    for tx in txs:
        assert tx.gas_used == chain.provider.web3.eth.get_transaction_receipt(tx.transaction_hash)["gasUsed"] > 21_000


def test_task_transactions__unknown_task__empty(market, chain):
    assert market.task_transactions(10**6, start_block=chain.blocks.head.number) == []


def test_events__hand_rolled_decoder__matches_ape_decoding(market, market_contract, requester, workers, new_hash,
                                                          chain):
    start = chain.blocks.head.number + 1
    receipt = market_contract.post(new_hash(), (workers[0].address, workers[1].address, 10**16, 10**15, 600),
                                   b"\x01" * 77, sender=requester, value=10**16 + 10**15)
    [theirs] = receipt.decode_logs(market_contract.TaskPosted)
    [ours] = [e for e in market.events(start) if isinstance(e, m.TaskPosted)]
    args = theirs.event_arguments
    assert (ours.task_id, ours.provider, ours.validator, ours.requester) == (
        args["taskId"], args["provider"], args["validator"], args["requester"])
    assert (ours.task_hash, ours.price, ours.validator_fee, ours.deadline) == (
        args["taskHash"], args["price"], args["validatorFee"], args["deadline"])
    assert ours.locator == b"\x01" * 77
    assert (ours.block_number, ours.log_index) == (theirs.block_number, theirs.log_index)


@pytest.mark.parametrize("address", ["0x" + "55" * 20, "not-an-address"])
def test_market__no_contract_at_address__one_line_market_error(address):
    with pytest.raises(m.MarketError) as info:
        m.Market.at(address)
    assert "no TaskMarket" in str(info.value) and "\n" not in str(info.value)


# ====================================================================== v2: reverts, receipts, records
def test_send__untrusted_pair_bypassing_precheck__validator_not_trusted(market, requester, workers, new_hash):
    # a race (the provider dropped its trust between the SDK's check and the block) comes back typed
    terms = (workers[0].address, workers[3].address, 10**16, 10**16, 600)
    with pytest.raises(m.ValidatorNotTrusted, match="ValidatorNotTrusted") as info:
        market._send("post", new_hash(), terms, b"", sender=requester, value=2 * 10**16)
    assert "\n" not in str(info.value)


def test_send__empty_report_bypassing_precheck__invalid_report(market, workers, task_in):
    task, _ = task_in("Executing")
    with pytest.raises(m.InvalidReport, match="length=0"):
        market._send("reportFailure", task.task_id, b"", sender=workers[0])


def test_send__mined_revert__typed_error_keeps_transaction_hash(market, requester, chain):
    # a fixed gas limit skips the estimate, so the doomed transaction is signed, mined and reverts
    with pytest.raises(m.TaskNotFound) as info:
        market._send("cancel", 10**9, sender=requester, gas=100_000)
    assert info.value.transaction_hash is not None
    assert chain.provider.web3.eth.get_transaction_receipt(info.value.transaction_hash)["status"] == 0


def test_precheck__nothing_signed__transaction_hash_none(market, requester, task_in):
    task, _ = task_in("Executing")
    with pytest.raises(m.WrongState) as info:
        market.cancel(task.task_id, sender=requester)
    assert info.value.transaction_hash is None


@pytest.mark.parametrize("status", ["Failed", "Completed", "Rated"])
def test_sending_methods__on_receipt__gets_the_mined_receipt(market, requester, workers, post_task, new_hash,
                                                             consts, status):
    got = []
    task = post_task()
    provider, validator, *_ = workers
    if status == "Failed":
        market.report_failure(task.task_id, consts.REPORT, sender=provider, on_receipt=got.append)
    else:
        rh = new_hash()
        market.submit_result(task.task_id, rh, b"v", sender=provider, on_receipt=got.append)
        market.submit_verdict(task.task_id, rh, True, b"r", sender=validator, on_receipt=got.append)
        if status == "Rated":
            market.rate(task.task_id, 5, 5, sender=requester, on_receipt=got.append)
    assert got and all(r.status == 1 for r in got)
    assert market.task(task.task_id).status == m.Status[status]


def test_set_trust__on_receipt__forwarded(market, workers):
    got = []
    market.set_trust(workers[3], sender=workers[0], on_receipt=got.append)
    assert len(got) == 1 and got[0].status == 1


def test_records__after_ratings__score_matches_the_contract_and_the_formula(market, requester, workers, task_in,
                                                                            ratings_contract):
    provider, validator, *_ = workers
    for rating in (5, 2):
        task, _ = task_in("Completed")
        market.rate(task.task_id, rating, rating, sender=requester)
    p, v = market.workers([provider, validator])
    assert p.provider_record.score_milli == ratings_contract.scoreOf(provider, int(m.Role.Provider))
    assert v.validator_record.score_milli == ratings_contract.scoreOf(validator, int(m.Role.Validator))
    r = p.provider_record
    assert r.score_milli == (m.PRIOR_SCORE_MILLI * m.PRIOR_WEIGHT_GWEI + 1000 * r.weighted_gwei) // (
        m.PRIOR_WEIGHT_GWEI + r.weight_gwei)
    assert (r.count, r.sum, r.average, r.average_milli) == (2, 7, 3.5, 3500)
    assert 3.0 < r.score < 3.5  # two small tasks pull the 3-star prior only part of the way
    assert p.record(m.Role.Validator) == p.validator_record and v.validator_record.count == 2


def test_worker__silent_validator_twice__missed_counts_both(market, workers, task_in):
    for _ in range(2):
        task_in("Expired", expire_from="Validating")
    assert market.worker(workers[1]).missed == 2 and market.worker(workers[0]).missed == 0


def test_events__expired_pending__provider_none(market, chain, task_in, consts):
    start = chain.blocks.head.number + 1
    task, _ = task_in("Expired", expire_from="Pending")
    [expired] = [e for e in market.events(start) if isinstance(e, m.TaskExpired)]
    assert (expired.provider, expired.previous_status, expired.payout) == (None, m.Status.Pending, 0)


def test_trusted_validators__removed_then_trusted_again__listed_once(market, workers):
    provider, validator, _, validator2 = workers
    market.set_trust(validator, False, sender=provider)
    market.set_trust(validator2, sender=provider)
    market.set_trust(validator, sender=provider)
    assert market.trusted_validators(provider) == [validator.address, validator2.address]


def test_validators__unavailable_trusted_validator__left_out(market, workers, new_hash):
    provider, validator, *_ = workers
    market.update(new_hash(), 1, sender=validator, available=False)
    assert market.validators(provider) == []
    assert validator.address not in {w.address for w in market.validators()}


@pytest.mark.parametrize("status", [
    "Pending", "Executing", "Validating", "Completed", "Failed", "Rejected", "Rated", "Cancelled", "Expired",
    "Declined"])
def test_task_in__every_v2_state__reached(market, task_in, status):
    task, rh = task_in(status)
    assert market.task(task.task_id).status == m.Status[status] == task.status
    assert (rh is not None) == (status in ("Validating", "Completed", "Rejected", "Rated"))


def test_status__open_and_settled__partition_the_states():
    assert set(m.OPEN_STATUSES) | set(m.SETTLED_STATUSES) == set(m.Status) - {m.Status.None_}
    assert all(s.is_open for s in m.OPEN_STATUSES) and not any(s.is_open for s in m.SETTLED_STATUSES)
    assert [s for s in m.Status if s.is_rateable] == [m.Status.Completed, m.Status.Failed]


@pytest.mark.parametrize("status, names", [
    ("Rated", ["TaskPosted", "ResultSubmitted", "VerdictSubmitted", "TaskRated"]),
    ("Failed", ["TaskPosted", "TaskFailed"]),
    ("Expired", ["TaskPosted", "TaskExpired"]),
])
def test_task_events__one_task_among_others__only_its_events_in_order(market, task_in, status, names):
    task, _ = task_in(status)
    task_in("Completed")  # another task's events come after it
    events = market.task_events(task.task_id)
    assert [e.name for e in events] == names and {e.task_id for e in events} == {task.task_id}


def test_task_events__pending_then_assigned__provider_assigned_with_its_locator(market, requester, workers, task_in):
    task, _ = task_in("Pending")
    market.assign_provider(task.task_id, workers[0], b"sealed-to-p", sender=requester)
    posted, assigned = market.task_events(task.task_id)
    assert isinstance(assigned, m.ProviderAssigned)
    assert (posted.locator, assigned.locator, assigned.provider) == (b"", b"sealed-to-p", workers[0].address)


# ====================================================================== decline
def test_decline__executing__declined_requester_credited_full_escrow(market, requester, workers, task_in, consts):
    task, _ = task_in("Executing")
    credit, burned = market.credit(requester), market.burned()
    declined = market.decline(task.task_id, consts.DECLINE_REASON, sender=workers[0])
    assert declined.status == m.Status.Declined and not declined.is_open
    assert market.credit(requester) == credit + consts.PRICE + consts.FEE
    assert (market.credit(workers[0]), market.credit(workers[1]), market.burned()) == (0, 0, burned)


def test_decline__not_provider__typed_error_before_sending(market, requester, task_in, no_tx):
    task, _ = task_in("Executing")
    with no_tx(), pytest.raises(m.NotProvider, match="decline"):
        market.decline(task.task_id, "not mine", sender=requester)


@pytest.mark.parametrize("status", ["Pending", "Validating", "Failed", "Expired", "Declined"])
def test_decline__not_executing__typed_error_before_sending(market, workers, task_in, no_tx, status):
    task, _ = task_in(status)
    expected = m.NotProvider if status == "Pending" else m.WrongState  # a pending task has no provider
    with no_tx(), pytest.raises(expected):
        market.decline(task.task_id, "x", sender=workers[0])


def test_decline__after_deadline__deadline_passed_before_sending(market, workers, task_in, past_deadline, no_tx):
    task, _ = task_in("Executing")
    past_deadline(task.task_id)
    with no_tx(), pytest.raises(m.DeadlinePassed, match="too late to decline"):
        market.decline(task.task_id, "late", sender=workers[0])


@pytest.mark.parametrize("reason", ["", "é" * 513, b"bytes are not text", None])
def test_decline__bad_reason__invalid_report_before_sending(market, workers, task_in, no_tx, reason):
    # 513 two-byte characters: 1026 bytes once encoded, over the contract's 1024 even though 513 characters
    task, _ = task_in("Executing")
    with no_tx(), pytest.raises(m.InvalidReport):
        market.decline(task.task_id, reason, sender=workers[0])


def test_decline__longest_reason_in_utf8__declined_and_in_the_event(market, workers, task_in):
    task, _ = task_in("Executing")
    reason = "é" * 512  # 1024 bytes
    market.decline(task.task_id, reason, sender=workers[0])
    [_, declined] = market.task_events(task.task_id)
    assert isinstance(declined, m.TaskDeclined)
    assert (declined.provider, declined.reason.decode()) == (workers[0].address, reason)


def test_send__empty_reason_bypassing_precheck__invalid_report(market, workers, task_in):
    task, _ = task_in("Executing")
    with pytest.raises(m.InvalidReport, match="length=0"):
        market._send("decline", task.task_id, b"", sender=workers[0])


def test_task_events__declined__posted_then_declined(market, task_in, consts):
    task, _ = task_in("Declined")
    events = market.task_events(task.task_id)
    assert [e.name for e in events] == ["TaskPosted", "TaskDeclined"]
    assert events[1].reason == consts.DECLINE_REASON.encode()


def test_task_transactions__declined__post_then_the_providers_decline(market, task_in, requester, workers, chain):
    start = chain.blocks.head.number + 1
    task, _ = task_in("Declined")
    txs = market.task_transactions(task.task_id, start_block=start)
    assert [(tx.sender, tx.events) for tx in txs] == [
        (requester.address, ("TaskPosted",)), (workers[0].address, ("TaskDeclined",))]


def test_events__task_declined_and_worker_offered__typed_like_ape_decodes_them(market, market_contract, workers,
                                                                                task_in, chain):
    start = chain.blocks.head.number + 1
    task, _ = task_in("Declined")
    market.publish_offer(b'{"gpu": "H200"}', sender=workers[1])
    ours = [e for e in market.events(start) if isinstance(e, (m.TaskDeclined, m.WorkerOffered))]
    assert [type(e) for e in ours] == [m.TaskDeclined, m.WorkerOffered]
    declined, offered = ours
    [ape_declined] = list(market_contract.TaskDeclined.range(start, chain.blocks.head.number + 1))
    [ape_offered] = list(market_contract.WorkerOffered.range(start, chain.blocks.head.number + 1))
    assert (declined.task_id, declined.provider, declined.reason) == (
        ape_declined.taskId, ape_declined.event_arguments["provider"], ape_declined.reason)
    assert (offered.worker, offered.offer_hash, offered.offer) == (
        ape_offered.worker, ape_offered.offerHash, ape_offered.offer)
    assert offered.matches and offered.block_number == ape_offered.block_number


# ====================================================================== published offers
OFFER = b'{"gpus": [{"name": "NVIDIA H200", "memory_gib": 139}], "runtimes": ["ichain-torch"]}'


def test_publish_offer__worker__hash_and_block_in_its_record(market, workers, chain):
    from eth_utils import keccak

    w = market.publish_offer(OFFER, sender=workers[0])
    assert (w.offer_hash, w.offer_block) == (keccak(OFFER), chain.blocks.head.number)
    assert market.worker(workers[0]) == w


def test_worker__never_published__offer_hash_none_block_zero(market, workers, outsider):
    for who in (workers[0], outsider):
        w = market.worker(who)
        assert (w.offer_hash, w.offer_block) == (None, 0)


def test_worker__left__offer_cleared(market, workers):
    market.publish_offer(OFFER, sender=workers[0])
    market.leave(sender=workers[0])
    w = market.worker(workers[0])
    assert (w.offer_hash, w.offer_block) == (None, 0)
    assert market.offer_document(w) is None


@pytest.mark.parametrize("document", [b"", b"o" * 2049, "text is not bytes", None])
def test_publish_offer__empty_too_long_or_not_bytes__invalid_offer_before_sending(market, workers, no_tx, document):
    with no_tx(), pytest.raises(m.InvalidOffer):
        market.publish_offer(document, sender=workers[0])


def test_publish_offer__not_registered__not_a_worker_before_sending(market, outsider, no_tx):
    with no_tx(), pytest.raises(m.NotAWorker, match="register"):
        market.publish_offer(OFFER, sender=outsider)


def test_send__too_long_offer_bypassing_precheck__invalid_offer(market, workers):
    with pytest.raises(m.InvalidOffer, match="length=2049"):
        market._send("publishOffer", b"o" * 2049, sender=workers[0])


def _count_log_calls(market, monkeypatch) -> list[tuple[int, int]]:
    """Record the block range of every eth_getLogs offer_documents sends (the calls still go to the node)."""
    ranges: list[tuple[int, int]] = []
    real = market._offer_logs
    monkeypatch.setattr(market, "_offer_logs", lambda g, a, b: ranges.append((a, b)) or real(g, a, b))
    return ranges


def test_offer_documents__several_workers_in_several_blocks__all_found_in_one_get_logs(market, workers, outsider,
                                                                                      chain, monkeypatch):
    docs = {w.address: b'{"worker": %d}' % i for i, w in enumerate(workers[:3])}
    for w in workers[:3]:
        market.publish_offer(docs[w.address], sender=w)
        chain.mine(2)  # offers in blocks apart, with other blocks between
    ranges = _count_log_calls(market, monkeypatch)
    records = market.workers([*workers, outsider])  # workers[3] never published, outsider is not registered
    assert market.offer_documents(records) == docs
    assert len(ranges) == 1


def test_offer_documents__replaced_offer__only_the_current_document(market, workers, chain):
    market.publish_offer(b'{"v": 1}', sender=workers[0])
    market.publish_offer(b'{"v": 2}', sender=workers[0])
    assert market.offer_document(market.worker(workers[0])) == b'{"v": 2}'


def test_offer_documents__record_not_matching_the_log__absent_never_an_error(market, workers, chain):
    from eth_utils import keccak

    market.publish_offer(OFFER, sender=workers[0])
    market.publish_offer(b'{"other": 1}', sender=workers[1])
    honest, other = market.workers(workers[:2])
    forged_hash = dataclasses.replace(honest, offer_hash=keccak(b'{"gpus": ["8x H200"]}'))
    wrong_block = dataclasses.replace(honest, offer_block=honest.offer_block - 1)
    future_block = dataclasses.replace(honest, offer_block=chain.blocks.head.number + 1000)
    assert market.offer_documents([forged_hash, wrong_block, future_block, other]) == {other.address: b'{"other": 1}'}
    for stale in (forged_hash, wrong_block, future_block):
        assert market.offer_document(stale) is None


def test_offer_documents__blocks_further_apart_than_a_span__one_call_per_span(market, workers, chain, monkeypatch):
    for i, w in enumerate(workers[:3]):
        market.publish_offer(b'{"i": %d}' % i, sender=w)
        if i == 1:
            chain.mine(5)
    monkeypatch.setattr(sdk, "OFFER_LOG_SPAN", 1)  # the first two are 1 block apart, the third 6 blocks on
    ranges = _count_log_calls(market, monkeypatch)
    found = market.offer_documents(market.workers(workers[:3]))
    assert found == {w.address: b'{"i": %d}' % i for i, w in enumerate(workers[:3])}
    assert len(ranges) == 2


def test_offer_documents__node_refuses_block_ranges__one_call_per_block_same_documents(market, workers, chain,
                                                                                      monkeypatch):
    from ape.exceptions import ProviderError

    for i, w in enumerate(workers[:3]):
        market.publish_offer(b'{"i": %d}' % i, sender=w)
    records = market.workers(workers[:3])
    expected = market.offer_documents(records)
    real = market._offer_logs
    ranges: list[tuple[int, int]] = []

    def single_blocks_only(group, start, stop):
        ranges.append((start, stop))
        if start != stop:
            raise ProviderError("query exceeds max block range 1")
        return real(group, start, stop)

    monkeypatch.setattr(market, "_offer_logs", single_blocks_only)
    assert market.offer_documents(records) == expected and len(expected) == 3
    assert ranges[0][0] != ranges[0][1] and all(a == b for a, b in ranges[1:]) and len(ranges) == 4


def test_offer_documents__no_worker_with_an_offer__empty_without_any_call(market, workers, monkeypatch):
    ranges = _count_log_calls(market, monkeypatch)
    assert market.offer_documents(market.workers(workers)) == {} and ranges == []
