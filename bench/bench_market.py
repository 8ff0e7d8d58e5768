"""Adversarial market benchmark on anvil -> bench/results/market.json.

Every cheating strategy of the fair-exchange note (docs/ARCHITECTURE.md, "The attacks") plays beside its honest
counterpart in one market: the real TaskMarket and Ratings on a local anvil, driven through the SDK. Each
cheater and its honest twin get the same number of chances (tasks), against the same counterparties, in the same
run, so their nets compare directly.

What each party does off chain is what the daemon does (its tests show it with real daemons, sandboxes and
transfers): a provider that cannot open, fetch or finish a task in time, whose run fails, or whose pre-check of
the task's validate mode rejects its own result, ends the task with ``reportFailure``; an honest validator
accepts a result that validates and rejects one that does not, or that the provider does not serve.

Net result of a party, in wei: its balance change over the run (deposits, collateral, payouts after a final
withdrawal, and every transaction's gas at its real price), plus, for a requester, every validated result it
received counted as worth its price. A sybil group (a farmer's own requester, provider and validator) is one
party. The honest provider's earnings per task are also reported against the price it asked.

Run: ``.venv/bin/python bench/bench_market.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.chdir(ROOT)

RESULTS = ROOT / "bench" / "results" / "market.json"
PRICE = 10**16  # 0.01 ether: what every provider asks
FEE = 5 * 10**14  # 0.0005 ether: what every validator asks (5% of the price)
TASKS = 10  # chances per party per scenario
TIMEOUT = 600
FUND = 10**20
# Locator sizes as the daemon makes them (direct transport): the task for the provider, the bundle + the
# pass-through for the validator, the two result copies for the requester.
TASK_LOCATOR = 223
VALIDATOR_LOCATOR = 400
REQUESTER_LOCATOR = 400
RNG = random.Random(20261202)


def _h(*parts: object) -> bytes:
    return hashlib.sha256(b"|".join(str(p).encode() for p in parts)).digest()


def _blob(size: int) -> bytes:
    return bytes(RNG.getrandbits(8) for _ in range(size))


@dataclass
class Party:
    """One party (or a sybil group) whose net result is measured."""

    name: str
    accounts: list[Any]
    value_wei: int = 0  # validated results received, each worth its price
    tasks: int = 0
    start: int = 0
    notes: list[str] = field(default_factory=list)

    def balance(self) -> int:
        return sum(int(a.balance) for a in self.accounts)


class Bench:
    """The market, the actors and the bookkeeping."""

    def __init__(self) -> None:
        from ape import accounts, chain

        from ichain.market import Market
        from ichain.transfer import KeyPair

        self.chain = chain
        self._accounts = accounts
        deployer = self.new_account()
        self.market = Market.deploy(deployer, save=False, validation_window=600, min_timeout=60,
                                    max_timeout=3600)
        self.keypair = KeyPair
        self.parties: dict[str, Party] = {}

    # ------------------------------------------------------------------ actors
    def new_account(self) -> Any:
        account = self._accounts.test_accounts.generate_test_account()
        self.chain.set_balance(account.address, FUND)
        return account

    def worker(self, price: int) -> Any:
        account = self.new_account()
        self.market.register(self.keypair.generate().public_bytes, price, sender=account)
        return account

    def party(self, name: str, *accounts: Any) -> Party:
        party = Party(name, list(accounts))
        party.start = party.balance()
        self.parties[name] = party
        return party

    def net(self, party: Party) -> int:
        for account in party.accounts:
            if self.market.credit(account) > 0:
                self.market.withdraw(sender=account)
        return party.balance() - party.start + party.value_wei

    # ------------------------------------------------------------------ protocol steps
    def post(self, requester: Any, provider: Any, validator: Any, *, price: int = PRICE, fee: int = FEE,
             task_hash: bytes | None = None, locator: bytes | None = None) -> int:
        task = self.market.post(task_hash or _h("task", RNG.random()), validator=validator, price=price,
                                validator_fee=fee, provider=provider, timeout=TIMEOUT,
                                locator=locator if locator is not None else _blob(TASK_LOCATOR), sender=requester)
        return task.task_id

    def result(self, task_id: int, provider: Any, good: bool = True) -> bytes:
        digest = _h("good" if good else "garbage", task_id, RNG.random())
        self.market.submit_result(task_id, digest, _blob(VALIDATOR_LOCATOR), sender=provider)
        return digest

    def verdict(self, task_id: int, validator: Any, digest: bytes, accept: bool) -> None:
        self.market.submit_verdict(task_id, digest, accept, _blob(REQUESTER_LOCATOR) if accept else b"",
                                   sender=validator)

    def fail(self, task_id: int, provider: Any) -> None:
        self.market.report_failure(task_id, _blob(300), sender=provider)

    def refused_on_chain(self, requester: Any, provider: Any, validator: Any, fee: int) -> str:
        """Send a post the contract must refuse, skipping the SDK's pre-checks (a cheater would): the sender
        pays the gas of the reverted transaction. Returns the revert reason."""
        from ape.exceptions import ContractLogicError

        terms = (provider.address, validator.address, PRICE, fee, TIMEOUT)
        try:
            receipt = self.market.contract.post(_h("cheat", RNG.random()), terms, _blob(TASK_LOCATOR),
                                                sender=requester, value=PRICE + fee, gas_limit=400_000,
                                                raise_on_revert=False)
        except ContractLogicError as err:  # some providers refuse to mine a doomed transaction
            return str(err).splitlines()[0]
        if not receipt.failed:
            raise AssertionError("the contract accepted a post it must refuse")
        return str(getattr(receipt, "error", "") or "reverted").splitlines()[0]

    def honest_task(self, requester: Party, r: Any, p: Any, v: Any, *, rate: tuple[int, int] = (5, 5)) -> int:
        tid = self.post(r, p, v)
        digest = self.result(tid, p)
        self.verdict(tid, v, digest, True)
        requester.value_wei += PRICE
        self.market.rate(tid, rate[0], rate[1], sender=r)
        return tid

    def pass_time(self, seconds: int) -> None:
        self.chain.mine(1, timestamp=self.market.now() + seconds)


def run() -> dict:
    from ape import networks

    t0 = time.perf_counter()
    with networks.parse_network_choice("ethereum:local:foundry"):
        b = Bench()
        m = b.market
        # The honest core of the market: providers that trust the honest validators only.
        hp = [b.worker(PRICE) for _ in range(2)]
        hv = [b.worker(FEE) for _ in range(2)]
        for p in hp:
            for v in hv:
                m.set_trust(v, True, sender=p)
        rows: dict[str, dict[str, Any]] = {}

        def compare(name: str, role: str, cheat: Party, honest: Party, what: str) -> None:
            rows[name] = {"role": role, "what": what, "tasks": cheat.tasks, "net_wei": b.net(cheat),
                          "honest_net_wei": b.net(honest), "notes": cheat.notes}

        # ---------------------------------------------------------------- requesters
        honest_r = b.new_account()
        hr = b.party("honest_requester", honest_r)
        for i in range(TASKS):
            b.honest_task(hr, honest_r, hp[i % 2], hv[i % 2])
            hr.tasks += 1

        def requester_scenario(name: str, what: str, cheat_once: Callable[[Party, Any, int], None]) -> None:
            account = b.new_account()
            cheat = b.party(name, account)
            twin_account = b.new_account()
            twin = b.party(name + "/honest", twin_account)
            for i in range(TASKS):
                cheat_once(cheat, account, i)
                cheat.tasks += 1
                b.honest_task(twin, twin_account, hp[i % 2], hv[i % 2])
                twin.tasks += 1
            compare(name, "requester", cheat, twin, what)

        own_validator = b.worker(FEE)  # a cheater's second address: no provider trusts it

        def refused_then_honest(party: Party, account: Any, i: int, fee: int = FEE, v: Any = None) -> None:
            reason = b.refused_on_chain(account, hp[i % 2], v or own_validator, fee)
            if i == 0:
                party.notes.append(f"on chain: {reason}")
            b.honest_task(party, account, hp[i % 2], hv[i % 2])  # it still wants its result

        requester_scenario("1a_own_validator_rejects", "names a validator it controls, which would reject",
                           refused_then_honest)
        requester_scenario("1b_own_validator_silent", "names a validator it controls, which would stay silent",
                           refused_then_honest)
        requester_scenario("1e_reject_and_rate_1", "rejects through its own validator to rate a competitor 1",
                           refused_then_honest)
        requester_scenario("M5_draft_validator_fee_0", "drafts an honest validator for a fee of 0",
                           lambda party, account, i: refused_then_honest(party, account, i, fee=0, v=hv[i % 2]))

        def failure_paid(party: Party, account: Any, i: int) -> None:
            tid = b.post(account, hp[i % 2], hv[i % 2])
            b.fail(tid, hp[i % 2])  # the provider's daemon ends the task at once, with a sealed report

        requester_scenario("1c_stops_hosting", "stops hosting the task before the provider fetched it "
                           "(after the fetch it changes nothing: the validator fetches from the provider)",
                           failure_paid)
        requester_scenario("1d_rigged_validate_mode", "a validate mode that rejects every result: the "
                           "provider's pre-check catches it", failure_paid)

        victim_posts: list[tuple[bytes, bytes]] = []

        def copier(party: Party, account: Any, i: int) -> None:
            # copy an honest requester's public task hash and locator; it does not open under another requester
            task_hash, locator = _h("victim", i), _blob(TASK_LOCATOR)
            victim_posts.append((task_hash, locator))
            tid = b.post(account, hp[i % 2], hv[i % 2], task_hash=task_hash, locator=locator)
            b.fail(tid, hp[i % 2])

        requester_scenario("H3_copied_locator", "re-posts another requester's task hash and locator", copier)
        requester_scenario("H4_time_limit_beyond_deadline", "a 24 h time limit on a 600 s on-chain timeout: "
                           "the provider refuses it at once", failure_paid)

        # ---------------------------------------------------------------- providers
        def provider_scenario(name: str, what: str, cheat_party: Party, serve: Callable[[int, Any, Any], None],
                              cheat_provider: Any, with_validator: bool = False) -> None:
            """The cheater and an honest twin provider serve the same honest requesters. A cheater that is a
            provider and a validator at once is compared with an honest provider and validator pair."""
            twin_p = b.worker(PRICE)
            twin_vs = [b.worker(FEE)] if with_validator else hv
            for v in twin_vs:
                m.set_trust(v, True, sender=twin_p)
            twin = b.party(name + "/honest", twin_p, *(twin_vs if with_validator else ()))
            for i in range(TASKS):
                r = b.new_account()
                serve(i, r, cheat_provider)
                cheat_party.tasks += 1
                honest_party = Party("r", [r])
                b.honest_task(honest_party, r, twin_p, twin_vs[i % len(twin_vs)])
                twin.tasks += 1
            compare(name, "provider", cheat_party, twin, what)

        def farm(group: Party, p: Any, v: Any, r: Any, n: int) -> None:
            for _ in range(n):
                b.honest_task(Party("self", [r]), r, p, v)  # self-dealt: its own requester and validator
            rec = m.worker(p).provider_record
            group.notes.append(f"after {n} self-dealt 5-star tasks: score {rec.score_milli / 1000:.3f} "
                               f"(count {rec.count}), {m.burned()} wei burned in the market so far")

        # 2a: a rating farm, then honest work
        fp, fv, fr = b.worker(PRICE), b.worker(FEE), b.new_account()
        for v in (*hv, fv):
            m.set_trust(v, True, sender=fp)
        farmer = b.party("2a_rating_farm", fp, fv, fr)
        farm(farmer, fp, fv, fr, TASKS)

        def serve_honestly(i: int, r: Any, p: Any) -> None:
            b.honest_task(Party("r", [r]), r, p, hv[i % 2])

        provider_scenario("2a_rating_farm", "farms 5-star ratings with its own requester and validator, then "
                          "works honestly", farmer, serve_honestly, fp)

        # 2b: sybil provider + validator at the top of the ranking, then garbage accepted by its own validator
        sp, sv, sr = b.worker(PRICE), b.worker(FEE), b.new_account()
        m.set_trust(sv, True, sender=sp)
        sybil = b.party("2b_sybil_top2", sp, sv, sr)
        farm(sybil, sp, sv, sr, TASKS)

        def serve_garbage_to_sybil_validator(i: int, r: Any, p: Any) -> None:
            tid = b.post(r, p, sv)  # the requester must take a validator the provider trusts: its sybil
            digest = b.result(tid, p, good=False)
            b.verdict(tid, sv, digest, True)
            m.rate(tid, 1, 1, sender=r)  # the requester sees garbage: both ranks pay for it

        provider_scenario("2b_sybil_top2", "farms a top rank for itself and its validator, then sells garbage "
                          "its own validator accepts", sybil, serve_garbage_to_sybil_validator, sp,
                          with_validator=True)
        rec = m.worker(sp).provider_record
        sybil.notes.append(f"after {TASKS} garbage sales rated 1: score {rec.score_milli / 1000:.3f}")

        def garbage_rejected(i: int, r: Any, p: Any) -> None:
            tid = b.post(r, p, hv[i % 2])
            digest = b.result(tid, p, good=False)
            b.verdict(tid, hv[i % 2], digest, False)

        for name, what in (("2c_garbage_dodging_rating", "commits a garbage result and hopes the rating never "
                            "comes (it is paid only at the accept, and the rating has no deadline)"),
                           ("2d_hosts_nothing", "commits a hash and serves nothing: the validator cannot fetch "
                            "and rejects before its deadline")):
            cp = b.worker(PRICE)
            for v in hv:
                m.set_trust(v, True, sender=cp)
            provider_scenario(name, what, b.party(name, cp), garbage_rejected, cp)

        def fake_failure(i: int, r: Any, p: Any) -> None:
            tid = b.post(r, p, hv[i % 2])
            b.fail(tid, p)
            m.rate(tid, 1, 0, sender=r)

        ffp = b.worker(PRICE)
        for v in hv:
            m.set_trust(v, True, sender=ffp)
        provider_scenario("fake_failure_reports", "claims every run failed to keep the failure fee without "
                          "computing", b.party("fake_failure_reports", ffp), fake_failure, ffp)

        # ---------------------------------------------------------------- validators
        def validator_scenario(name: str, what: str, behave: Callable[[int, Any, bytes, bool], bool]) -> None:
            """Requesters choose between the cheating and an honest validator by the validator ranking (score,
            then fewest missed verdicts); providers (one honest, one sending garbage) trust both."""
            cheat_v, honest_v = b.worker(FEE), b.worker(FEE)
            good_p, bad_p = b.worker(PRICE), b.worker(PRICE)
            for p in (good_p, bad_p):
                for v in (cheat_v, honest_v):
                    m.set_trust(v, True, sender=p)
            cheat, twin = b.party(name, cheat_v), b.party(name + "/honest", honest_v)
            for i in range(3 * TASKS):
                r = b.new_account()
                good = i % 2 == 0
                p = good_p if good else bad_p
                # a requester cannot tell validators apart by less than a quarter of a star: it takes turns
                # among those near the best score with the fewest missed verdicts
                records = {v.address: m.worker(v) for v in (cheat_v, honest_v)}
                best = max(w.validator_record.score_milli for w in records.values())
                fewest = min(w.missed for w in records.values())
                band = [v for v in (cheat_v, honest_v) if records[v.address].missed == fewest
                        and records[v.address].validator_record.score_milli >= best - 250]
                v = RNG.choice(band)
                tid = b.post(r, p, v)
                digest = b.result(tid, p, good=good)
                if v is honest_v:
                    twin.tasks += 1
                    b.verdict(tid, v, digest, good)
                    if good:
                        m.rate(tid, 5, 5, sender=r)
                    continue
                cheat.tasks += 1
                if not behave(tid, v, digest, good):
                    b.pass_time(601)
                    m.expire(tid, sender=r)
                elif good:
                    m.rate(tid, 5, 5, sender=r)
                else:
                    m.rate(tid, 1, 1, sender=r)  # garbage accepted: the requester rates the validator too
            compare(name, "validator", cheat, twin, what)

        def lazy(tid: int, v: Any, digest: bytes, good: bool) -> bool:
            b.verdict(tid, v, digest, True)  # never runs the validate mode
            return True

        validator_scenario("lazy_validator_always_accepts", "accepts every result without validating", lazy)
        validator_scenario("silent_validator", "never answers", lambda tid, v, digest, good: False)

        twin = next(r for r in rows.values() if r["role"] == "provider")
        rows["honest"] = {"role": "provider", "what": "does the work, as asked (a provider twin above)",
                          "tasks": TASKS, "net_wei": twin["honest_net_wei"], "honest_net_wei": twin["honest_net_wei"]}
        rows["honest_requester"] = {"role": "requester", "what": "posts, pays, gets its result, rates",
                                    "tasks": hr.tasks, "net_wei": b.net(hr), "honest_net_wei": None}
        rows["honest_requester"]["honest_net_wei"] = rows["honest_requester"]["net_wei"]
        total_tasks = int(m.last_task_id())
        burned = int(m.burned())

    earnings = _provider_earnings(rows)
    for name, row in rows.items():
        row["below_honest"] = name.startswith("honest") or row["net_wei"] < row["honest_net_wei"]
    return {
        "strategies": rows,
        "tasks": total_tasks,
        "price_wei": PRICE,
        "validator_fee_wei": FEE,
        "burned_wei": burned,
        "honest_provider_earnings_per_task_ratio_to_price": earnings,
        "goals_met": {
            "tasks_at_least_200": total_tasks >= 200,
            "every_cheater_below_honest": all(r["below_honest"] for r in rows.values()),
            "honest_provider_earns_at_least_95_percent": earnings >= 0.95,
        },
        "seconds": round(time.perf_counter() - t0, 1),
        "method": __doc__.split("\n\n")[1].replace("\n", " "),
    }


def _provider_earnings(rows: dict[str, dict[str, Any]]) -> float:
    """Net per task of the honest provider twins (each served TASKS tasks alone), against the asked price."""
    twins = [r["honest_net_wei"] / TASKS for r in rows.values() if r.get("role") == "provider"
             and "tasks" in r and r["tasks"] == TASKS]
    return round(min(twins) / PRICE, 4) if twins else 0.0


def _table(result: dict) -> str:
    lines = [f"{'strategy':36} {'role':10} {'tasks':>5} {'net (ether)':>14} {'honest (ether)':>14}  below"]
    for name, row in result["strategies"].items():
        lines.append(f"{name:36} {row['role']:10} {row.get('tasks', ''):>5} {row['net_wei'] / 1e18:>14.6f} "
                     f"{row['honest_net_wei'] / 1e18:>14.6f}  {'yes' if row['below_honest'] else 'NO'}")
    return "\n".join(lines)


def main() -> dict:
    result = run()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    part = RESULTS.with_name(RESULTS.name + ".part")
    part.write_text(json.dumps(result, indent=2) + "\n")
    part.replace(RESULTS)
    print(_table(result))
    print(json.dumps(result["goals_met"]))
    return result


if __name__ == "__main__":
    main()
