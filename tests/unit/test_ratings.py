"""Ratings (protocol v2): two records per worker (provider, validator), weighted by the wei each task paid, a
Bayesian score; only the market writes, once per rated task.

Direct tests deploy a Ratings from the deployer account (its market is then that account), so each rule is
exercised on its own; the market-level tests rate through TaskMarket.rate.
"""

from __future__ import annotations

import ape
import pytest

PRIOR_WEIGHT_GWEI = 10_000_000
PROVIDER, VALIDATOR = 0, 1
GWEI = 10**9


def score(weight_gwei: int, weighted_gwei: int) -> int:
    """The contract's score formula (x 1000)."""
    return (3000 * PRIOR_WEIGHT_GWEI + 1000 * weighted_gwei) // (PRIOR_WEIGHT_GWEI + weight_gwei)


@pytest.fixture
def ratings(project, deployer):
    """A Ratings whose market is the deployer account."""
    return project.Ratings.deploy(sender=deployer)


def record(r, worker, role) -> tuple[int, ...]:
    rec = r.recordOf(worker, role)
    return rec.count, rec.sum, rec.weightGwei, rec.weightedGwei, rec.averageMilli, rec.scoreMilli


# ====================================================================== views of a fresh worker
def test_record_of__never_rated__zeros_and_prior_score(ratings, outsider):
    for role in (PROVIDER, VALIDATOR):
        assert record(ratings, outsider, role) == (0, 0, 0, 0, 0, 3000)
        assert ratings.scoreOf(outsider, role) == 3000
    assert tuple(ratings.stats(outsider)) == (0, 0, 0)


def test_constants__prior__as_specified(ratings):
    assert (ratings.PRIOR_WEIGHT_GWEI(), ratings.PRIOR_SCORE_MILLI()) == (PRIOR_WEIGHT_GWEI, 3000)


def test_market__deployer_of_ratings__is_the_only_writer(ratings, deployer, ratings_contract, market_contract):
    assert ratings.market() == deployer.address
    assert ratings_contract.market() == market_contract.address


# ====================================================================== track
def test_track__twice__idempotent_one_event(ratings, deployer, provider):
    first = ratings.track(provider, sender=deployer)
    second = ratings.track(provider, sender=deployer)
    assert [e.worker for e in first.decode_logs(ratings.WorkerTracked)] == [provider.address]
    assert len(second.decode_logs(ratings.WorkerTracked)) == 0
    assert record(ratings, provider, PROVIDER) == (0, 0, 0, 0, 0, 3000)  # the +1 storage trick is invisible


def test_track__not_market__reverts(ratings, outsider):
    with ape.reverts(ratings.Ratings__NotMarket, caller=outsider.address):
        ratings.track(outsider, sender=outsider)


def test_register__worker__tracked_by_market(ratings_contract, market_contract, outsider, new_hash):
    receipt = market_contract.register(new_hash(), 1, True, sender=outsider)
    assert [log.worker for log in receipt.decode_logs(ratings_contract.WorkerTracked)] == [outsider.address]


def test_register__comeback__not_tracked_again(ratings_contract, market_contract, outsider, new_hash):
    market_contract.register(new_hash(), 1, True, sender=outsider)
    market_contract.leave(sender=outsider)
    receipt = market_contract.register(new_hash(), 1, True, sender=outsider)
    assert receipt.decode_logs(ratings_contract.WorkerTracked) == []


# ====================================================================== rate (direct)
def test_rate__both_roles__weighted_records_and_score(ratings, deployer, provider, validator):
    ratings.rate(provider, 5, 3 * 10**16, validator, 2, 10**15, sender=deployer)
    pg, vg = 3 * 10**16 // GWEI, 10**15 // GWEI
    assert record(ratings, provider, PROVIDER) == (1, 5, pg, 5 * pg, 5000, score(pg, 5 * pg))
    assert record(ratings, validator, VALIDATOR) == (1, 2, vg, 2 * vg, 2000, score(vg, 2 * vg))
    # each record is its own role's: the provider has no validator record and the other way round
    assert record(ratings, provider, VALIDATOR)[0] == 0 and record(ratings, validator, PROVIDER)[0] == 0


def test_rate__untracked_worker__first_rating_recorded(ratings, deployer, provider, validator):
    """rate works on a worker track() never saw (its weight slot starts at 0, not 1)."""
    ratings.rate(provider, 4, 2 * GWEI, validator, 0, 0, sender=deployer)
    assert record(ratings, provider, PROVIDER)[:4] == (1, 4, 2, 8)


def test_rate__tracked_worker__same_record_as_untracked(ratings, deployer, provider, validator, outsider):
    ratings.track(provider, sender=deployer)
    ratings.rate(provider, 4, 2 * GWEI, validator, 0, 0, sender=deployer)
    ratings.rate(outsider, 4, 2 * GWEI, validator, 0, 0, sender=deployer)
    assert record(ratings, provider, PROVIDER) == record(ratings, outsider, PROVIDER)


def test_rate__validator_rating_zero__validator_not_rated(ratings, deployer, provider, validator):
    ratings.rate(provider, 3, GWEI, validator, 0, 10**18, sender=deployer)
    assert record(ratings, validator, VALIDATOR) == (0, 0, 0, 0, 0, 3000)


def test_rate__several__sum_count_average_and_stats(ratings, deployer, provider, validator):
    for r in (5, 4, 2):
        ratings.rate(provider, r, 10**16, validator, 0, 0, sender=deployer)
    assert tuple(ratings.stats(provider)) == (11, 3, 3666)
    w = 3 * 10**16 // GWEI
    assert ratings.scoreOf(provider, PROVIDER) == score(w, 11 * 10**16 // GWEI)


def test_rate__sub_gwei_payment__counts_but_weighs_nothing(ratings, deployer, provider, validator):
    ratings.rate(provider, 5, GWEI - 1, validator, 5, 0, sender=deployer)
    assert record(ratings, provider, PROVIDER) == (1, 5, 0, 0, 5000, 3000)
    assert record(ratings, validator, VALIDATOR) == (1, 5, 0, 0, 5000, 3000)


def test_score__heavy_paid_work__approaches_the_weighted_mean(ratings, deployer, provider, validator):
    ratings.rate(provider, 5, 10**21, validator, 0, 0, sender=deployer)  # 1000 ether of paid work
    assert 4990 < ratings.scoreOf(provider, PROVIDER) < 5000


def test_score__prior_weight_of_paid_work__halfway(ratings, deployer, provider, validator):
    ratings.rate(provider, 5, PRIOR_WEIGHT_GWEI * GWEI, validator, 0, 0, sender=deployer)
    assert ratings.scoreOf(provider, PROVIDER) == 4000


def test_score__weights_not_counts__one_big_task_beats_many_tiny(ratings, deployer, provider, validator, outsider):
    """2a/1e: ten cheap 1-star ratings barely move a worker whose 5 stars came with real paid work."""
    ratings.rate(provider, 5, 10**18, validator, 0, 0, sender=deployer)
    for _ in range(10):
        ratings.rate(provider, 1, 10**14, validator, 0, 0, sender=deployer)
    assert ratings.scoreOf(provider, PROVIDER) > 4900
    # the raw mean says otherwise: it is what the ranking must not use
    assert ratings.stats(provider)[2] < 1500


@pytest.mark.parametrize("rating", [0, 6, 255])
def test_rate__provider_rating_out_of_range__reverts(ratings, deployer, provider, validator, rating):
    with ape.reverts(ratings.Ratings__InvalidRating, rating=rating):
        ratings.rate(provider, rating, 1, validator, 0, 0, sender=deployer)


@pytest.mark.parametrize("rating", [6, 255])
def test_rate__validator_rating_out_of_range__reverts(ratings, deployer, provider, validator, rating):
    with ape.reverts(ratings.Ratings__InvalidRating, rating=rating):
        ratings.rate(provider, 5, 1, validator, rating, 0, sender=deployer)


@pytest.mark.parametrize("rating", [1, 5])
def test_rate__ratings_at_bounds__accepted(ratings, deployer, provider, validator, rating):
    ratings.rate(provider, rating, GWEI, validator, rating, GWEI, sender=deployer)
    assert record(ratings, provider, PROVIDER)[1] == record(ratings, validator, VALIDATOR)[1] == rating


def test_rate__not_market__reverts(ratings_contract, outsider, provider):
    with ape.reverts(ratings_contract.Ratings__NotMarket, caller=outsider.address):
        ratings_contract.rate(provider, 1, 1, outsider, 5, 1, sender=outsider)


# ====================================================================== through the market
def test_market_rate__several_tasks__records_follow_the_paid_wei(ratings_contract, market, requester, workers,
                                                                 task_in, consts):
    for rating in (5, 4, 2):
        task, _ = task_in("Completed")
        market.contract.rate(task.task_id, rating, rating, sender=requester)
    provider, validator = workers[0], workers[1]
    pw = (consts.PRICE - consts.PRICE // 100) // GWEI
    vw = (consts.FEE - consts.FEE // 100) // GWEI
    assert record(ratings_contract, provider, PROVIDER)[:4] == (3, 11, 3 * pw, 11 * pw)
    assert record(ratings_contract, validator, VALIDATOR)[:4] == (3, 11, 3 * vw, 11 * vw)
    assert tuple(ratings_contract.stats(provider)) == (11, 3, 3666)


def test_market_rate__same_task_twice__one_rating_only(ratings_contract, market, requester, workers, task_in):
    task, _ = task_in("Rated", rating=(4, 4))
    with ape.reverts(market.contract.TaskMarket__WrongState):
        market.contract.rate(task.task_id, 5, 5, sender=requester)
    assert tuple(ratings_contract.stats(workers[0]))[:2] == (4, 1)
