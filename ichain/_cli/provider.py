"""``ape ichain provider status``: what a provider daemon did and earned, from its state file and the chain.

The daemon's SQLite state (one file per account and chain) says which tasks it had a part in, how far it got
with each and the last block it processed; the chain says what each task paid it, what it can withdraw and
what it is registered with. The daemon need not run: the state a stopped daemon left is read the same way,
and ``running`` tells the two apart (by the daemon's pid file).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import click
from ape.cli import network_option

from ichain._cli._common import get_config, get_market, market_option
from ichain._cli.options import IChainCommand, json_option, state_dir_option
from ichain._cli.output import emit
from ichain._cli.provide import daemon_report, daemon_state_file
from ichain.market import Market, Status
from ichain.market.events import ResultSubmitted, TaskEvent, TaskExpired, TaskFailed, VerdictSubmitted
from ichain.requester.format import eth

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


@click.group()
def provider():
    """A provider daemon's tasks, earnings and state."""


def resolve_address(value: str) -> str:
    """The address behind ``--account``: a plain address (read-only), ``TEST::n`` or an Ape account alias.

    Nothing is unlocked: reading a keystore account's address needs no passphrase.

    Raises:
        click.BadParameter: No such account.
    """
    from eth_utils import to_checksum_address

    if _ADDRESS.match(value):
        return str(to_checksum_address(value))
    from ape import accounts

    try:
        if value.startswith("TEST::"):
            return str(accounts.test_accounts[int(value.removeprefix("TEST::"))].address)
        return str(accounts.load(value).address)
    except Exception:  # ape raises KeyError/IndexError/ApeException subclasses for unknown accounts
        raise click.BadParameter(f"no account {value!r} (an alias, TEST::n or an 0x address)",
                                 param_hint="--account") from None


def task_pay(role: str, address: str, events: list[TaskEvent]) -> tuple[int, int]:
    """What one task paid ``address`` in ``role``, from the task's events: ``(credited, earned)`` in wei.

    ``credited`` is what the market credited the account for the task (for an accepted provider: the price
    less the burn plus its collateral back); ``earned`` leaves the collateral out, so a rejected provider
    earned minus its collateral and a provider refunded its collateral after a silent validator earned 0.
    """
    me = address.lower()
    credited = earned = 0
    collateral = 0
    ours = False  # the committed result (the last ResultSubmitted: a reorg may have replaced one) is ours
    for event in events:
        if isinstance(event, ResultSubmitted):
            ours = event.provider.lower() == me
            collateral = int(event.collateral) if ours else 0
        elif role == "provider" and isinstance(event, TaskFailed) and event.provider.lower() == me:
            credited += int(event.provider_paid)
            earned += int(event.provider_paid)
        elif isinstance(event, VerdictSubmitted):
            if role == "validator" and event.validator.lower() == me:
                credited += int(event.validator_paid)
                earned += int(event.validator_paid)
            elif role == "provider" and ours:
                credited += int(event.provider_paid)
                earned += int(event.provider_paid) - collateral
        elif role == "provider" and isinstance(event, TaskExpired) and (event.provider or "").lower() == me:
            credited += int(event.payout)
            earned += int(event.payout) - collateral
    return credited, earned


def provider_report(market: Market, address: str, report: dict[str, Any]) -> dict[str, Any]:
    """The ``provider status`` result: the daemon's state report joined with the chain (see :func:`status`)."""
    from ape import chain

    records = report["tasks"]
    onchain = {t.task_id: t for t in market.tasks(sorted({int(r["task_id"]) for r in records}))}
    events: dict[int, list[TaskEvent]] = {}
    earnings = {"provider": 0, "validator": 0}
    tasks = []
    for record in records:
        tid = int(record["task_id"])
        if tid not in events:
            events[tid] = market.task_events(tid)
        credited, earned = task_pay(record["role"], address, events[tid])
        earnings[record["role"]] = earnings.get(record["role"], 0) + earned
        tasks.append({**record, "status": onchain[tid].status.name if tid in onchain else None,
                      "credited": credited, "earned": earned})
    by_stage: dict[str, dict[str, int]] = {}
    for (role, stage), count in sorted(Counter((t["role"], t["stage"]) for t in tasks).items()):
        by_stage.setdefault(role, {})[stage] = count
    worker = market.worker(address)
    checkpoint = report.get("checkpoint")
    return {
        "address": address,
        "chain_id": int(chain.chain_id),
        "market": market.address,
        "state_file": report["file"],
        "running": bool(report.get("running")),
        "pid": report.get("pid"),
        "last_seen": report.get("last_seen"),
        "checkpoint": checkpoint,
        "checkpoint_time": int(chain.blocks[int(checkpoint)].timestamp) if checkpoint is not None else None,
        "head": int(chain.blocks.head.number),
        "worker": {
            "registered": worker.registered, "price": worker.price, "available": worker.available,
            "rating": worker.average_rating, "ratings": worker.rating_count,
            "score": round(float(worker.score), 3), "validator_score": round(float(worker.validator_score), 3),
            "missed": worker.missed,
        },
        "offer": report.get("offer"),
        "offer_published": _published(report.get("offer"), worker.offer_hash),
        "credit": int(market.credit(address)),
        "earnings": {**earnings, "total": sum(earnings.values())},
        "tasks_by_stage": by_stage,
        "tasks": tasks,
    }


def _published(offer: dict | None, on_chain: bytes | None) -> bool:
    """Whether the offer the daemon measured last is the one the chain holds."""
    if offer is None or on_chain is None:
        return False
    from eth_utils import keccak

    from ichain.hardware import Offer, OfferError

    try:
        return keccak(Offer.decode(json.dumps(offer).encode()).encode()) == on_chain
    except OfferError:
        return False


def _text(data: dict[str, Any]) -> None:
    from datetime import datetime, timezone

    def when(ts: float | None) -> str:
        return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "never"

    w = data["worker"]
    running = f"running (pid {data['pid']})" if data["running"] else "not running"
    click.echo(f"provider {data['address']} on chain {data['chain_id']}, market {data['market']}: daemon {running}")
    click.echo(f"  state: {data['state_file']} (last written {when(data['last_seen'])})")
    click.echo(f"  last block seen: {data['checkpoint'] if data['checkpoint'] is not None else 'none'} "
               f"({when(data['checkpoint_time'])}; head {data['head']})")
    rating = f"{w['rating']:.2f} from {w['ratings']}" if w["rating"] is not None else "unrated"
    click.echo(f"  registered: {'yes' if w['registered'] else 'no'}, price {eth(w['price'])}, "
               f"{'available' if w['available'] else 'unavailable'}, rating {rating}")
    e = data["earnings"]
    if data["offer"] is not None:
        from ichain.hardware import Offer

        offer = Offer.decode(json.dumps(data["offer"]).encode())
        click.echo(f"  hardware: {offer.describe()} ({'published' if data['offer_published'] else 'not yet published'})")
    click.echo(f"  earned: {eth(e['total'])} (provider {eth(e['provider'])}, validator {eth(e['validator'])}); "
               f"withdrawable {eth(data['credit'])}")
    for role, stages in data["tasks_by_stage"].items():
        click.echo(f"  {role} tasks: " + ", ".join(f"{n} {stage}" for stage, n in stages.items()))
    for t in data["tasks"]:
        click.echo(f"    task {t['task_id']} {t['role']}: {t['stage']} ({t['status']}), earned {eth(t['earned'])}")


@provider.command(cls=IChainCommand)
@network_option()
@click.option("--account", "account", required=True, metavar="ALIAS|ADDRESS",
              help="The daemon's account: an alias, TEST::n or a plain address (nothing is unlocked).")
@state_dir_option()
@market_option()
@json_option()
def status(network, account, state_dir, market_address, as_json):
    """What the provider daemon of ACCOUNT did on the connected chain: its tasks, earnings and last block.

    Reads the daemon's state file under the state folder (the daemon need not run) and the chain. Amounts are
    in wei in the JSON form. ``--json`` keys: ``address``, ``chain_id``, ``market``, ``state_file``, ``running``
    (a daemon runs now), ``pid`` (its process id, or null), ``last_seen`` (unix time the daemon last wrote its
    state), ``checkpoint`` (last block fully processed), ``checkpoint_time`` (that block's timestamp), ``head``
    (the chain's head block), ``worker`` (``registered``, ``price``, ``available``, ``rating`` (mean, null when
    unrated), ``ratings``, ``score``, ``validator_score``, ``missed``), ``credit`` (withdrawable now),
    ``offer`` (the hardware the daemon measured last, the keys of ``providers``' ``offer``, or null),
    ``offer_published`` (the chain holds that offer), ``earnings`` (``provider``, ``validator``, ``total``: what
    the tasks paid beyond the collateral returned),
    ``tasks_by_stage`` (role → stage → count) and ``tasks`` (each: ``task_id``, ``role``, ``stage``, ``updated``,
    ``status`` on chain, ``credited`` (wei the task credited to the account), ``earned``, and what the state
    recorded of ``result_hash``, ``accepted``, ``error``, ``exit_code``, ``wall_time``, ``reason``,
    ``failed_stage``).
    """
    from ape import chain

    address = resolve_address(account)
    config = get_config(state_dir=state_dir)
    path = daemon_state_file(config, address, int(chain.chain_id))
    if path is None:
        raise click.ClickException(
            f"no daemon state for {address} on chain {int(chain.chain_id)} under {config.state_dir}: "
            "run `ape ichain provide` from this folder first, or pass its --state-dir"
        )
    report = daemon_report(path)
    # The state file belongs to one market: read that one unless told otherwise.
    bound = (report.get("binding") or {}).get("market")
    market = get_market(market_address or bound)
    data = provider_report(market, address, report)
    emit(data, as_json=as_json, text=lambda: _text(data))
