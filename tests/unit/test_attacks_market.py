"""Attacks on TaskMarket (protocol v2), on anvil, each neutralized on chain.

One named test per on-chain path of the fair-exchange attack table (1a, 1b, 1d, 1e, 2a, 2b, 2c, M5; the
off-chain paths H3, 1c, 2d, H4 are the daemon's and are tested there), each checking the new outcome. Every
docstring says what the landed v1 contract did on the same path: there the attack succeeded, so the assertion
that shows the new outcome fails on it (v1 also lacks setTrust, collateral and rate, so these calls revert there
before reaching it).

The abuses of decline (a provider gives back a task it cannot run: the requester is refunded in full) and of
published offers (a document the contract cannot verify), each shown to pay nobody.

Then the generic attacks that still apply:
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

from ichain.market import commitment_of

VALIDATION, MIN_TIMEOUT, MAX_TIMEOUT = 60, 10, 300
PRICE, FEE, TIMEOUT = 10**18, 10**17, 100
ASKING = 10**16  # every worker's asking price (for a run and for a verdict)
COLLATERAL = FEE + PRICE // 10
REPORT = b"\x01sealed failure report"
ZERO = "0x" + "00" * 20
BPS = 10_000
PRIOR_WEIGHT_GWEI = 10_000_000
COMPLETED, FAILED, REJECTED, RATED, EXPIRED, DECLINED = 4, 5, 6, 7, 9, 10
VALIDATING = 3


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def burn(amount: int) -> int:
    return amount * 100 // BPS


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
def accomplice(accounts):
    """A second address of a cheating party (the requester's own validator, a farm's requester)."""
    return accounts[6]


@pytest.fixture(scope="module")
def market(project, owner, provider, validator, copier, accomplice):
    """provider, validator, copier and accomplice registered; provider and copier trust validator only."""
    m = project.TaskMarket.deploy(VALIDATION, MIN_TIMEOUT, MAX_TIMEOUT, sender=owner)
    for i, w in enumerate((provider, validator, copier, accomplice)):
        m.register(keccak(text=f"key{i}"), ASKING, True, sender=w)
    for p in (provider, copier):
        m.setTrust(validator, True, sender=p)
    return m


@pytest.fixture(scope="module")
def ratings(project, market):
    return project.Ratings.at(market.ratings())


def as_address(x: BaseAddress | str | None) -> str:
    return ZERO if x is None else (x if isinstance(x, str) else x.address)


@pytest.fixture
def post(market, requester):
    """Factory: post a task (price + fee escrowed) naming the given provider / validator; returns its id."""

    def _post(provider=None, validator=None, sender=requester, price=PRICE, fee=FEE) -> int:
        terms = (as_address(provider), as_address(validator), price, fee, TIMEOUT)
        market.post(keccak(text="task"), terms, b"", value=price + fee, sender=sender)
        return market.lastTaskId()

    return _post


@pytest.fixture
def contract_actor(project, market, owner, validator):
    """Factory: deploy an attack contract, register it as a worker trusting `validator` through its forwarder."""

    def _deploy(kind: str):
        actor = getattr(project, kind).deploy(market.address, sender=owner)
        actor.act(market.register.encode_input(keccak(text=kind), 0, True), sender=owner)
        actor.act(market.setTrust.encode_input(validator.address, True), sender=owner)
        return actor

    return _deploy


def submit(market, task_id, provider_sender, result=b"r", owner=None) -> bytes:
    """The provider commits keccak(result) with its collateral; returns the hash."""
    h = keccak(result)
    t = market.getTask(task_id)
    collateral = market.collateralFor(t.price, t.validatorFee)
    if isinstance(provider_sender, ContractInstance):  # an attack contract: it calls through its forwarder
        provider_sender.act(market.submitResult.encode_input(task_id, h, b""), value=collateral, sender=owner)
    else:
        market.submitResult(task_id, h, b"", value=collateral, sender=provider_sender)
    return h


def accept(market, task_id, provider_sender, validator, owner=None) -> None:
    """Drive a task from Executing to Completed (the provider is credited price - 1% + collateral)."""
    h = submit(market, task_id, provider_sender, owner=owner)
    market.submitVerdict(task_id, h, True, b"loc", sender=validator)


def solvent(market, accounts, forced: int = 0) -> bool:
    """balance == open escrow + collateral of Validating tasks + every credit + burned (+ forced-in wei)."""
    held = 0
    for tid in market.openTasks(0, 10_000):
        t = market.getTask(tid)
        held += t.price + t.validatorFee + (market.collateralFor(t.price, t.validatorFee) if t.status == 3 else 0)
    owed = sum(market.creditOf(a) for a in accounts)
    return ape.chain.provider.get_balance(market.address) == held + owed + market.burned() + forced


# ====================================================================== the attack table (on-chain paths)
def test_attack_1a__requester_names_its_own_validator__refused_and_a_reject_buys_nothing(
        market, post, requester, provider, validator, accomplice, accounts):
    """1a: the requester names a validator it controls, which rejects: the result for free.

    v1: the post went through, the accomplice rejected, the price came back and the requester held the result
    (delivered at submitResult). v2: the provider never trusted the accomplice, so the post (and a later
    assignProvider) reverts; with the provider's trusted validator, a reject refunds a requester that never
    received the result (no requester locator exists before an accept), and the collateral pays the judge.
    """
    with ape.reverts(market.TaskMarket__ValidatorNotTrusted, provider=provider.address,
                     validator=accomplice.address):
        post(provider, accomplice)
    pending = post(None, accomplice)  # a pending task can name it, but no provider that distrusts it takes it
    with ape.reverts(market.TaskMarket__ValidatorNotTrusted):
        market.assignProvider(pending, provider, b"", sender=requester)

    task = post(provider, validator)
    h = keccak(b"r")
    committed = market.submitResult(task, h, b"for-v", value=COLLATERAL, sender=provider)
    [result] = committed.decode_logs(market.ResultSubmitted)
    locators = [k for k, v in result.event_arguments.items() if isinstance(v, bytes) and len(v) != 32]
    assert locators == ["validatorLocator"]  # nothing sealed to the requester before the verdict
    receipt = market.submitVerdict(task, h, False, b"the locator", sender=validator)
    [verdict] = receipt.decode_logs(market.VerdictSubmitted)
    assert verdict.requesterLocator == b""  # a reject releases nothing
    assert market.creditOf(validator) == FEE - burn(FEE)  # the loser's collateral paid the judge
    assert market.creditOf(accomplice) == 0
    assert solvent(market, accounts)


def test_attack_1b__silent_validator__refund_without_the_result_validator_loses_fee_and_record(
        market, post, requester, provider, validator, outsider, accounts):
    """1b: the validator stays silent and anyone expires Validating: the result for free.

    v1: price + fee refunded after the window, with the result already delivered at submitResult. v2: the
    requester's own validator is refused (1a); a trusted validator's silence refunds a requester that holds
    nothing that opens the result, returns the provider's collateral, pays the validator nothing and records
    the missed verdict.
    """
    task = post(provider, validator)
    submit(market, task, provider)
    ape.chain.pending_timestamp = market.getTask(task).deadline + 1
    receipt = market.expire(task, sender=outsider)
    assert market.getTask(task).status == EXPIRED
    assert market.creditOf(requester) == PRICE + FEE
    assert market.creditOf(provider) == COLLATERAL  # the provider loses nothing but its gas
    assert market.creditOf(validator) == 0 and market.getWorker(validator).missed == 1
    assert receipt.decode_logs(market.VerdictSubmitted) == []
    assert solvent(market, accounts)


def test_attack_1d__rigged_validate_mode__provider_reports_failure_and_keeps_the_failure_fee(
        market, post, requester, provider, validator, accounts):
    """1d: the requester ships a validate mode that rejects any result (and a fee of 0).

    v1: an honest validator rejected the honest result and the requester got a full refund, having held the
    result. v2: the provider's own pre-check runs the rigged validate mode first and ends the task with a
    failure report: it keeps 10% of the price (less the 1% burn) and the requester pays for the grind; the
    fee-0 half of the trick is M5 (refused, see below).
    """
    task = post(provider, validator)
    receipt = market.reportFailure(task, REPORT, sender=provider)
    failure_fee = PRICE * 1000 // BPS
    assert market.getTask(task).status == FAILED
    assert market.creditOf(provider) == failure_fee - burn(failure_fee) > 0
    assert market.creditOf(requester) == PRICE + FEE - failure_fee  # the requester paid the failure fee
    assert receipt.decode_logs(market.TaskFailed)[0].report == REPORT
    assert solvent(market, accounts)


def test_attack_1e__reject_and_rate_1_against_a_competitor__unratable_and_costly(
        market, ratings, post, requester, provider, validator, accounts):
    """1e: ten reject-and-rate-1 tasks against a competitor.

    v1: each rejected task took a 1-star rating (finalize on Rejected) for gas only: 5.0 -> 3.0. v2: a Rejected
    task cannot be rated (only Completed / Failed, whose price was paid); the only rating left to buy is on a
    Failed task, which costs the attacker the failure fee (paid to its victim) and weighs only that fee.
    """
    provider_before = ratings.scoreOf(provider, 0)
    rejected = []
    for i in range(3):
        task = post(provider, validator)
        h = submit(market, task, provider, result=f"r{i}".encode())
        market.submitVerdict(task, h, False, b"", sender=validator)
        rejected.append(task)
    for task in rejected:
        with ape.reverts(market.TaskMarket__WrongState, taskId=task, status=REJECTED):
            market.rate(task, 1, 0, sender=requester)
    assert ratings.recordOf(provider, 0).count == 0
    assert ratings.scoreOf(provider, 0) == provider_before == 3000

    # the only rating left to buy: fail-and-rate, each paying the competitor its failure fee
    for _ in range(10):
        task = post(provider, validator, price=ASKING, fee=ASKING)
        market.reportFailure(task, REPORT, sender=provider)
        market.rate(task, 1, 0, sender=requester)
    failure_fee = ASKING * 1000 // BPS
    assert ratings.recordOf(provider, 0).count == 10
    assert ratings.recordOf(provider, 0).weightGwei == 10 * (failure_fee - burn(failure_fee)) // 10**9
    assert ratings.scoreOf(provider, 0) < 3000
    # the attack cost the attacker 10 failure fees, which went to its victim (less the burn)
    assert market.creditOf(provider) == 10 * (failure_fee - burn(failure_fee))
    assert market.creditOf(requester) == 3 * (PRICE + FEE) + 10 * (2 * ASKING - failure_fee)
    assert solvent(market, accounts)


def test_attack_2a__rating_farm__costs_the_burn_and_buys_little_score(
        market, ratings, post, provider, validator, accomplice, accounts):
    """2a: a provider's own requester posts to it and rates 5 (a rating farm).

    v1: ~0.2M gas per 5-star rating and no ether lost; the raw mean said 5.0 after one. v2: each farmed task
    burns 1% of the price and of the fee, and a rating weighs only the wei it paid, against a prior of 3 stars
    weighing 0.01 ether: five cheap farmed tasks leave the score near the prior, and a score only moves with
    paid volume, 1% of which is burned.
    """
    cheap = 10**14
    for w in (provider, validator):  # the farm asks little of itself
        market.update(market.getWorker(w).encKey, cheap, True, sender=w)
    farm_before = sum(a.balance for a in (provider, validator, accomplice))
    gas = 0
    for i in range(5):
        tid = post(provider, validator, sender=accomplice, price=cheap, fee=cheap)
        h = keccak(f"farm{i}".encode())
        r1 = market.submitResult(tid, h, b"", value=market.collateralFor(cheap, cheap), sender=provider)
        r2 = market.submitVerdict(tid, h, True, b"", sender=validator)
        r3 = market.rate(tid, 5, 5, sender=accomplice)
        gas += sum(r.total_fees_paid for r in (r1, r2, r3))
    for w in (provider, validator):
        gas += market.withdraw(sender=w).total_fees_paid
    burned = market.burned()
    assert burned == 5 * (burn(cheap) + burn(cheap))
    farm_after = sum(a.balance for a in (provider, validator, accomplice))
    # (the accomplice's post transactions paid gas too: the farm lost at least the burn)
    assert farm_before - farm_after >= burned + gas
    assert ratings.stats(provider)[2] == 5000  # the raw mean is bought ...
    assert ratings.scoreOf(provider, 0) < 3100  # ... the score is not
    assert ratings.scoreOf(validator, 1) < 3100
    # the score follows the paid volume, and every farmed wei of it burned 1%
    volume_gwei = 5 * (cheap - burn(cheap)) // 10**9
    assert ratings.scoreOf(provider, 0) == (3000 * PRIOR_WEIGHT_GWEI + 5000 * volume_gwei) // (
        PRIOR_WEIGHT_GWEI + volume_gwei)
    assert solvent(market, accounts)


def test_attack_2b__sybil_pair_top_rank__bought_in_proportion_and_undone_by_one_paying_victim(
        market, ratings, post, requester, provider, validator, accomplice, accounts):
    """2b: a Sybil provider + validator farm the top-2 ranks, then accept a random hash from a victim.

    v1: the raw-mean ranking put the pair first after a handful of free ratings, and the CLI's best/auto picked
    both. v2 on chain: buying a validator and provider score costs the burn on every wei of weight, and the
    victim's 1-star ratings weigh the price it really paid, so one victimised task of the farm's volume puts
    both back to the prior (the requester side ranks by this score; a provider's validator comes from its
    trusted set).
    """
    # farm: the accomplice requester pays the pair 0.05 ether of work, rated 5/5
    farm_volume = 0
    for i in range(5):
        tid = post(provider, validator, sender=accomplice, price=ASKING, fee=ASKING)
        h = keccak(f"sybil{i}".encode())
        market.submitResult(tid, h, b"", value=market.collateralFor(ASKING, ASKING), sender=provider)
        market.submitVerdict(tid, h, True, b"", sender=validator)
        market.rate(tid, 5, 5, sender=accomplice)
        farm_volume += ASKING - burn(ASKING)
    farmed_provider, farmed_validator = ratings.scoreOf(provider, 0), ratings.scoreOf(validator, 1)
    assert farmed_provider > 3000 and farmed_validator > 3000
    assert market.burned() == 5 * 2 * burn(ASKING)  # every farmed wei of weight burned 1%

    # the victim pays the same volume once for a random hash the Sybil validator accepts, and rates 1/1
    tid = post(provider, validator, price=5 * ASKING, fee=5 * ASKING)
    h = keccak(b"garbage")
    market.submitResult(tid, h, b"", value=market.collateralFor(5 * ASKING, 5 * ASKING), sender=provider)
    market.submitVerdict(tid, h, True, b"", sender=validator)
    market.rate(tid, 1, 1, sender=requester)
    assert ratings.scoreOf(provider, 0) <= 3000 and ratings.scoreOf(validator, 1) <= 3000
    assert solvent(market, accounts)


def test_attack_2c__accepted_task_left_to_expire__no_such_state_rating_always_possible(
        market, ratings, post, requester, provider, validator, outsider):
    """2c: the provider lets the Accepted task expire so that no rating is recorded.

    v1: the daemon expired Accepted at deadline + 1 and was paid with no rating; a late finalize reverted. v2:
    the accept pays at once and leaves the task Completed, which has no deadline and cannot be expired; the
    requester rates it whenever it likes.
    """
    task = post(provider, validator)
    accept(market, task, provider, validator)
    ape.chain.pending_timestamp = ape.chain.pending_timestamp + 10 * MAX_TIMEOUT
    with ape.reverts(market.TaskMarket__WrongState, taskId=task, status=COMPLETED):
        market.expire(task, sender=outsider)
    with ape.reverts(market.TaskMarket__WrongState):
        market.expire(task, sender=provider)
    market.rate(task, 2, 3, sender=requester)
    assert market.getTask(task).status == RATED
    assert ratings.recordOf(provider, 0).count == 1 and ratings.recordOf(validator, 1).count == 1


def test_attack_m5__validator_drafted_without_consent__refused(market, post, requester, provider, validator,
                                                               outsider):
    """M5: the requester names any registered worker as validator with a fee of 0.

    v1: accepted; the drafted worker's daemon validated for nothing. v2: a fee below the validator's asking
    price reverts (its asking price is its consent), and the provider must trust it too; an unregistered account
    cannot be drafted at all.
    """
    with ape.reverts(market.TaskMarket__PriceTooLow, worker=validator.address, asking=ASKING, offered=0):
        post(provider, validator, fee=0)
    with ape.reverts(market.TaskMarket__PriceTooLow, worker=validator.address, asking=ASKING, offered=ASKING - 1):
        post(None, validator, fee=ASKING - 1)
    with ape.reverts(market.TaskMarket__NotAWorker, account=outsider.address):
        post(None, outsider, fee=0)
    market.update(market.getWorker(validator).encKey, ASKING, False, sender=validator)  # not taking work
    with ape.reverts(market.TaskMarket__WorkerUnavailable, worker=validator.address):
        post(provider, validator)


# ====================================================================== decline and offers
def test_attack_decline__commit_garbage_then_decline__collateral_stays_bound(
        market, post, requester, provider, validator, accounts):
    """A provider commits a garbage result, sees it will be rejected, and declines to take its collateral back.

    Decline is open only while Executing: once the result is committed the collateral is bound to the verdict,
    so the reject still pays the validator out of it and burns the rest.
    """
    task = post(provider, validator)
    h = submit(market, task, provider, result=b"garbage")
    with ape.reverts(market.TaskMarket__WrongState, taskId=task, status=VALIDATING):
        market.decline(task, b"changed my mind", sender=provider)
    market.submitVerdict(task, h, False, b"", sender=validator)
    assert market.getTask(task).status == REJECTED
    assert market.creditOf(provider) == 0  # the collateral went to the judge and the burn
    assert market.creditOf(validator) == FEE - burn(FEE)
    assert solvent(market, accounts)


def test_attack_decline__requester_and_provider_one_party__refund_only_no_rating_nothing_gained(
        market, ratings, post, requester, accomplice, validator, accounts):
    """The requester's own second address is the provider and declines: a free way to move its escrow around,
    to dodge the burn, or to earn a rating?

    A decline credits exactly price + fee to the requester and nothing to anybody else; it burns nothing because
    nothing was paid; a Declined task cannot be rated, so no record moves; only gas was spent.
    """
    market.setTrust(validator, True, sender=accomplice)
    burned, credit = market.burned(), market.creditOf(requester)
    record = ratings.recordOf(accomplice, 0)
    task = post(accomplice, validator)
    market.decline(task, b"sybil", sender=accomplice)
    assert market.getTask(task).status == DECLINED
    assert market.creditOf(requester) - credit == PRICE + FEE
    assert market.creditOf(accomplice) == 0 and market.creditOf(validator) == 0
    assert market.burned() == burned
    with ape.reverts(market.TaskMarket__WrongState, taskId=task, status=DECLINED):
        market.rate(task, 5, 0, sender=requester)
    assert ratings.recordOf(accomplice, 0) == record
    assert solvent(market, accounts)


def test_attack_decline__decline_then_expire_or_cancel__refunded_once(
        market, post, requester, provider, validator, outsider, accounts):
    """The requester (or anyone) tries a second refund of a declined task through expire or cancel."""
    task = post(provider, validator)
    credit = market.creditOf(requester)
    market.decline(task, b"no GPU", sender=provider)
    ape.chain.pending_timestamp = ape.chain.pending_timestamp + 10 * MAX_TIMEOUT
    with ape.reverts(market.TaskMarket__WrongState, taskId=task, status=DECLINED):
        market.expire(task, sender=outsider)
    with ape.reverts(market.TaskMarket__WrongState, taskId=task, status=DECLINED):
        market.cancel(task, sender=requester)
    with ape.reverts(market.TaskMarket__WrongState, taskId=task, status=DECLINED):
        market.decline(task, b"again", sender=provider)
    assert market.creditOf(requester) - credit == PRICE + FEE
    assert solvent(market, accounts)


def test_attack_decline__late_provider__cannot_decline_after_the_deadline(
        market, post, requester, provider, validator, outsider):
    """A provider that let the deadline pass declines anyway (to look like it declined rather than stayed silent).

    After the deadline only expire settles the task: the same refund, but the chain shows a silence.
    """
    task = post(provider, validator)
    deadline = market.getTask(task).deadline
    ape.chain.pending_timestamp = deadline + 1
    with ape.reverts(market.TaskMarket__DeadlinePassed, taskId=task, deadline=deadline):
        market.decline(task, b"late", sender=provider)
    market.expire(task, sender=outsider)
    assert market.getTask(task).status == EXPIRED


def test_attack_offer__accomplice_publishes_an_offer_naming_another_worker__only_its_own_record(
        market, provider, accomplice):
    """A worker publishes a flattering document that claims to be another worker's offer.

    An offer is bound to its sender: the event's indexed worker and the record written are the caller's own, so
    a reader of the other worker (its record: no offer) finds nothing; the contract checks no hardware claim,
    it only binds the document to the worker that signed it.
    """
    from ichain.market import Market

    forged = b'{"worker": "' + provider.address.encode() + b'", "gpus": ["8x NVIDIA H200"]}'
    receipt = market.publishOffer(forged, sender=accomplice)
    assert market.getWorker(provider).offerHash == bytes(32)
    assert market.getWorker(accomplice).offerHash == keccak(forged)
    [event] = receipt.decode_logs(market.WorkerOffered)
    assert event.worker == accomplice.address
    sdk = Market(market.address)
    assert sdk.offer_documents(sdk.workers([provider, accomplice])) == {accomplice.address: forged}


def test_attack_offer__stranger_or_departed_worker__refused(market, provider, outsider):
    """An address that is not a registered worker (never was, or left) cannot leave an offer in the registry."""
    with ape.reverts(market.TaskMarket__NotAWorker, account=outsider.address):
        market.publishOffer(b"{}", sender=outsider)
    market.publishOffer(b'{"gpu": "H200"}', sender=provider)
    market.leave(sender=provider)
    assert (market.getWorker(provider).offerHash, market.getWorker(provider).offerBlock) == (bytes(32), 0)
    with ape.reverts(market.TaskMarket__NotAWorker, account=provider.address):
        market.publishOffer(b'{"gpu": "H200"}', sender=provider)


# ====================================================================== generic attacks
def test_withdraw__reentrant_payee__reentry_refused_and_paid_once(market, post, contract_actor, validator, owner):
    attacker = contract_actor("ReentrantPayee")
    task_id = post(attacker, validator)
    accept(market, task_id, attacker, validator, owner=owner)
    owed = market.creditOf(attacker.address)
    assert owed == PRICE - burn(PRICE) + COLLATERAL
    attacker.setAttack(market.withdraw.encode_input(), sender=owner)
    before = ape.chain.provider.get_balance(attacker.address)
    market_before = ape.chain.provider.get_balance(market.address)

    attacker.act(market.withdraw.encode_input(), sender=owner)

    assert ape.chain.provider.get_balance(attacker.address) - before == owed
    assert market_before - ape.chain.provider.get_balance(market.address) == owed
    assert attacker.attempts() == 1 and attacker.successes() == 0
    assert bytes(attacker.lastError()) == selector("TaskMarket__Reentrancy()")
    assert market.creditOf(attacker.address) == 0


def test_withdraw_to__reentrant_payee__reentry_refused(market, post, contract_actor, validator, owner):
    attacker = contract_actor("ReentrantPayee")
    task_id = post(attacker, validator)
    accept(market, task_id, attacker, validator, owner=owner)
    attacker.setAttack(market.withdrawTo.encode_input(attacker.address), sender=owner)

    attacker.act(market.withdrawTo.encode_input(attacker.address), sender=owner)

    assert attacker.attempts() == 1 and attacker.successes() == 0
    assert bytes(attacker.lastError()) == selector("TaskMarket__Reentrancy()")
    assert market.creditOf(attacker.address) == 0


def test_withdraw__reverting_payee__fails_alone_and_recovers_via_withdraw_to(
        market, post, contract_actor, validator, owner, outsider):
    payee = contract_actor("RevertingPayee")
    task_id = post(payee, validator)
    accept(market, task_id, payee, validator, owner=owner)
    owed = market.creditOf(payee.address)

    with ape.reverts(market.TaskMarket__TransferFailed, to=payee.address, amount=owed):
        payee.act(market.withdraw.encode_input(), sender=owner)
    assert market.creditOf(payee.address) == owed  # nothing lost

    before = validator.balance
    receipt = market.withdraw(sender=validator)  # unaffected by the stuck payee
    assert validator.balance - before + receipt.total_fees_paid == FEE - burn(FEE)

    before = outsider.balance
    payee.act(market.withdrawTo.encode_input(outsider.address), sender=owner)
    assert outsider.balance - before == owed
    assert market.creditOf(payee.address) == 0


def test_force_feed__selfdestruct__accounting_unbroken(project, market, post, provider, validator, requester,
                                                       owner, accounts):
    market_start = ape.chain.provider.get_balance(market.address)
    task_id = post(provider, validator)
    feeder = project.ForceFeeder.deploy(value=3 * 10**18, sender=owner)
    feeder.feed(market.address, sender=owner)
    assert ape.chain.provider.get_balance(market.address) == market_start + PRICE + FEE + 3 * 10**18
    assert solvent(market, accounts, forced=3 * 10**18)

    h = submit(market, task_id, provider, result=b"forced")
    assert solvent(market, accounts, forced=3 * 10**18)
    market.submitVerdict(task_id, h, False, b"", sender=validator)
    assert market.creditOf(requester) == PRICE + FEE  # the escrow came back, the forced ether is nobody's credit
    assert solvent(market, accounts, forced=3 * 10**18)
    for account in (requester, validator, provider):
        if market.creditOf(account):
            market.withdraw(sender=account)
    assert ape.chain.provider.get_balance(market.address) == market_start + 3 * 10**18 + market.burned()
    with ape.reverts(market.TaskMarket__NothingToWithdraw):
        market.withdraw(sender=owner)


def test_submit_result__copier_replays_commitment__bound_to_its_own_task(
        market, post, provider, copier, validator, requester):
    """A copier replaying a seen result hash commits it to its own task only: the honest task keeps its
    commitment and is paid; the copier's task is judged on its own (the package names another task, so an
    honest validator rejects it) and the copier loses its collateral."""
    honest = post(provider, validator)
    copied = post(copier, validator)
    h = submit(market, honest, provider, result=b"honest result")
    assert submit(market, copied, copier, result=b"honest result") == h  # same hash, another task: no collision
    assert market.resultOf(honest) == market.resultOf(copied) == commitment_of(h)
    # once per task, and only by the task's own provider
    with ape.reverts(market.TaskMarket__WrongState, taskId=copied):
        market.submitResult(copied, keccak(b"copier's second try"), b"", value=COLLATERAL, sender=copier)
    with ape.reverts(market.TaskMarket__NotProvider, taskId=honest, caller=copier.address):
        market.submitResult(honest, keccak(b"copier's own"), b"", value=COLLATERAL, sender=copier)
    with ape.reverts(market.TaskMarket__WrongResult, taskId=copied, resultHash=keccak(b"other")):
        market.submitVerdict(copied, keccak(b"other"), True, b"", sender=validator)

    provider_before, copier_before = market.creditOf(provider), market.creditOf(copier)
    requester_before = market.creditOf(requester)
    market.submitVerdict(honest, h, True, b"loc", sender=validator)
    market.submitVerdict(copied, h, False, b"", sender=validator)  # meta.json names the honest task: rejected
    assert market.creditOf(provider) - provider_before == PRICE - burn(PRICE) + COLLATERAL
    assert market.creditOf(copier) == copier_before  # its collateral paid the validator and was burned
    assert market.creditOf(requester) - requester_before == PRICE + FEE  # the copied task's escrow came back


def test_submit_result__copier_front_runs_commitment__honest_provider_still_commits(
        market, post, provider, copier, validator, accomplice):
    honest = post(provider, validator)
    # the accomplice posts a cheap task naming the copier, so the copier has something to commit to
    decoy = post(copier, validator, sender=accomplice, price=ASKING, fee=ASKING)
    h = keccak(b"honest result seen in the mempool")
    market.submitResult(decoy, h, b"", value=market.collateralFor(ASKING, ASKING), sender=copier)  # mined first

    market.submitResult(honest, h, b"", value=COLLATERAL, sender=provider)  # the commitment is per task
    assert market.getTask(honest).status == 3
    assert market.resultOf(honest) == market.resultOf(decoy) == commitment_of(h)


OUTSIDER_CALLS = {
    # name: (call, expected error) -- the task is Executing, posted by `requester`
    "assignProvider": (lambda m, t, o: m.assignProvider(t, o.address, b"", sender=o), "TaskMarket__NotRequester"),
    "submitResult": (lambda m, t, o: m.submitResult(t, keccak(b"x"), b"", value=COLLATERAL, sender=o),
                     "TaskMarket__NotProvider"),
    "reportFailure": (lambda m, t, o: m.reportFailure(t, REPORT, sender=o), "TaskMarket__NotProvider"),
    "decline": (lambda m, t, o: m.decline(t, b"not mine", sender=o), "TaskMarket__NotProvider"),
    "publishOffer": (lambda m, t, o: m.publishOffer(b"{}", sender=o), "TaskMarket__NotAWorker"),
    "submitVerdict": (lambda m, t, o: m.submitVerdict(t, keccak(b"x"), True, b"", sender=o),
                      "TaskMarket__NotValidator"),
    "rate": (lambda m, t, o: m.rate(t, 5, 5, sender=o), "TaskMarket__NotRequester"),
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


def test_set_trust__outsider__changes_only_its_own_set(market, provider, validator, outsider):
    """setTrust is open to anyone by design: it writes the caller's own set, never another provider's."""
    market.setTrust(validator, False, sender=outsider)
    market.setTrust(provider, True, sender=outsider)
    assert market.trusts(provider, validator)
    assert market.trusts(outsider, provider) and not market.trusts(provider, outsider)


def test_ratings__outsider__refused_with_custom_error(ratings, provider, outsider):
    with ape.reverts(ratings.Ratings__NotMarket, caller=outsider.address):
        ratings.rate(provider.address, 1, 1, outsider.address, 5, 1, sender=outsider)
    with ape.reverts(ratings.Ratings__NotMarket, caller=outsider.address):
        ratings.track(outsider.address, sender=outsider)


def test_outsider_calls__cover_every_state_changing_function(market):
    """The table above names every non-view function of the market except those open to anyone by design."""
    open_to_anyone = {"post", "register", "setTrust"}  # anyone may post, register, or choose whom it trusts
    mutable = {abi.name for abi in market.contract_type.mutable_methods}
    assert mutable - open_to_anyone == set(OUTSIDER_CALLS)
