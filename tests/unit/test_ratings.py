"""Ratings: only the market writes; one rating per finalized task; average and count in one call."""

from __future__ import annotations

import ape
import pytest


def test_stats__never_rated__zeros(ratings_contract, outsider):
    assert tuple(ratings_contract.stats(outsider)) == (0, 0, 0)


def test_stats__several_finalized_tasks__sum_count_average(ratings_contract, market, requester, workers, task_in):
    for rating in (5, 4, 2):
        task, _ = task_in("Accepted")
        market.finalize(task.task_id, rating, sender=requester)
    assert tuple(ratings_contract.stats(workers[0])) == (11, 3, 3666)
    assert market.worker(workers[0]).average_rating == pytest.approx(11 / 3)


def test_rate__not_market__reverts(ratings_contract, outsider, provider):
    with ape.reverts(ratings_contract.Ratings__NotMarket, caller=outsider.address):
        ratings_contract.rate(provider, 1, outsider, 5, sender=outsider)


def test_track__not_market__reverts(ratings_contract, outsider):
    with ape.reverts(ratings_contract.Ratings__NotMarket):
        ratings_contract.track(outsider, sender=outsider)


def test_market__deployer_of_ratings__is_the_only_writer(project, deployer, outsider, provider):
    ratings = project.Ratings.deploy(sender=deployer)  # the deployer is its market
    assert ratings.market() == deployer.address
    ratings.rate(provider, 1, outsider, 3, sender=deployer)
    assert tuple(ratings.stats(provider)) == (3, 1, 3000)


@pytest.mark.parametrize("rating", [0, 6])
def test_rate__out_of_range__reverts(project, deployer, provider, outsider, rating):
    ratings = project.Ratings.deploy(sender=deployer)
    with ape.reverts(ratings.Ratings__InvalidRating, rating=rating):
        ratings.rate(provider, 1, outsider, rating, sender=deployer)


def test_track__twice__idempotent_one_event(project, deployer, provider):
    ratings = project.Ratings.deploy(sender=deployer)
    first = ratings.track(provider, sender=deployer)
    second = ratings.track(provider, sender=deployer)
    assert len(first.decode_logs(ratings.WorkerTracked)) == 1
    assert len(second.decode_logs(ratings.WorkerTracked)) == 0
    assert tuple(ratings.stats(provider)) == (0, 0, 0)


def test_register__worker__tracked_by_market(ratings_contract, market, outsider, new_hash):
    receipt = market.contract.register(new_hash(), 1, True, sender=outsider)
    assert [log.worker for log in receipt.decode_logs(ratings_contract.WorkerTracked)] == [outsider.address]


def test_finalize__same_task_twice__one_rating_only(ratings_contract, market, requester, workers, task_in):
    task, _ = task_in("Completed")  # finalized with rating 4
    with ape.reverts(market.contract.TaskMarket__WrongState):
        market.contract.finalize(task.task_id, 5, sender=requester)
    assert tuple(ratings_contract.stats(workers[0]))[:2] == (4, 1)
