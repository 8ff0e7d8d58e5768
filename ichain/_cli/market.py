"""``ape ichain pools``, ``providers``, ``validators``, ``withdraw``: the market at a glance, and getting paid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ichain._cli._common import echo_table, get_market, market_option
from ichain._cli.options import IChainCommand, ichain_options, json_option, read_only_options
from ichain._cli.output import emit
from ichain.hardware import Offer
from ichain.market import Worker
from ichain.requester.format import eth
from ichain.text import neutralize


def _record_json(record: Any) -> dict:
    """A role's record for ``--json``: the ranking score in stars, the count, the plain mean (null unrated)."""
    count = int(record.count)
    return {"score": round(float(record.score), 3), "ratings": count,
            "mean": (record.sum / count) if count else None}


def _worker_json(w: Worker, offer: Offer | None = None) -> dict:
    """A worker for ``--json``: provider and validator records, missed verdicts, its published hardware offer
    (null when none); the price is in wei."""
    return {"address": w.address, "price": w.price, "provider": _record_json(w.provider_record),
            "validator": _record_json(w.validator_record), "missed": w.missed,
            "offer": offer.to_json() if offer is not None else None}


def _hardware(offer: Offer | None) -> str:
    return neutralize(offer.describe()) if offer is not None else "no offer published"


@click.command(cls=IChainCommand)
@read_only_options
@market_option()
@click.argument("task_dir", required=False, type=click.Path(file_okay=False, path_type=Path))
@json_option()
def providers(account, state_dir, market_address, task_dir, as_json):
    """Available workers ranked by provider score (count-aware, value-weighted), then price, with the hardware
    each published. With TASK_DIR: only those that can run that task (its manifest's runtime, cpus, memory,
    gpus, gpu_memory and time limit against their offers).

    JSON: a list of workers, each ``address``, ``price`` (wei), ``provider`` and ``validator`` (each ``score``,
    ``ratings``, ``mean``), ``missed``, ``offer`` (``runtimes``, ``cpus``, ``memory`` and ``max_memory`` in
    bytes, ``gpus`` (each ``model``, ``memory``), ``max_cpus``, ``max_gpus``, ``max_time_limit``; null when the
    worker published none).
    """
    from ichain.requester.matching import assess
    from ichain.sandbox import load_task

    needs = load_task(task_dir).needs() if task_dir is not None else None
    market = get_market(market_address)
    found = assess(market, market.providers(), needs)
    ranked = [c for c in found if c.fits]
    left = len(found) - len(ranked)

    def text() -> None:
        echo_table([[c.worker.address, f"{c.worker.provider_record.score:.2f}", str(c.worker.provider_record.count),
                     eth(c.worker.price), _hardware(c.offer)] for c in ranked],
                   ["provider", "score", "ratings", "price", "hardware"])
        if needs is not None:
            click.echo(f"{len(ranked)} of {len(found)} available provider(s) can run {task_dir}"
                       + (f"; {left} cannot (see 'ape ichain providers' for their hardware)" if left else ""))

    emit([_worker_json(c.worker, c.offer) for c in ranked], as_json=as_json, text=text)


@click.command(cls=IChainCommand)
@read_only_options
@market_option()
@click.option("--provider", "of_provider", default=None, help="Only the validators this provider trusts.")
@json_option()
def validators(account, state_dir, market_address, of_provider, as_json):
    """Available workers ranked by their own validator record (score, then fewer missed verdicts, then price).

    JSON: a list of workers with the keys of ``providers``.
    """
    from ichain.requester import validator_rank_key
    from ichain.requester.matching import offers

    market = get_market(market_address)
    if of_provider:
        pool = [w for w in market.workers(market.trusted_validators(of_provider)) if w.available]
    else:
        pool = market.providers()
    ranked = sorted((w for w in pool if w.address.lower() != str(of_provider or "").lower()), key=validator_rank_key)
    known = offers(market, ranked)
    emit([_worker_json(w, known.get(w.address)) for w in ranked], as_json=as_json, text=lambda: echo_table(
        [[w.address, f"{w.validator_record.score:.2f}", str(w.validator_record.count), str(w.missed), eth(w.price)]
         for w in ranked], ["validator", "score", "ratings", "missed", "fee asked"]))


@click.command(cls=IChainCommand)
@read_only_options
@market_option()
@json_option()
def pools(account, state_dir, market_address, as_json):
    """Pending tasks, available workers, executing and validating tasks.

    JSON: ``pending``, ``available``, ``executing``, ``validating`` (lists of task ids, addresses for available).
    """
    p = get_market(market_address).pools()
    data: dict[str, list] = {"pending": p.pending, "available": p.available, "executing": p.executing,
                             "validating": p.validating}

    def text() -> None:
        for name, items in data.items():
            click.echo(f"{name} ({len(items)}): " + (", ".join(str(i) for i in items) or "-"))

    emit(data, as_json=as_json, text=text)


@click.command(cls=IChainCommand)
@ichain_options
@market_option()
@json_option()
def withdraw(account, transport, state_dir, market_address, as_json):
    """Pay out this account's credits (earnings, fees, refunds).

    JSON: ``address``, ``amount`` (wei paid out; 0 when nothing was owed, and then nothing is sent).
    """
    market = get_market(market_address)
    credit = int(market.credit(account.address))
    amount = int(market.withdraw(sender=account)) if credit else 0
    emit({"address": str(account.address), "amount": amount}, as_json=as_json,
         text=f"withdrew {eth(amount)} to {account.address}" if amount else f"{account.address} has nothing to withdraw")
