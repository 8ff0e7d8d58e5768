"""Stateful property test of TaskMarket on anvil: random actors, calls and time jumps.

A hypothesis ``RuleBasedStateMachine`` drives the deployed contracts through a lean web3 on ape's anvil (for
speed: transactions sent as they are, a revert's custom error read from its trace, and the whole state read back
in one JSON-RPC batch per step). Blocks are exactly 1 s apart, so deadlines are judged deterministically. After
every step it checks, against the chain:

* solvency: the market's balance == the escrow of every open task (price + fee) + the collateral of every
  Validating task + every unwithdrawn credit + the burned total (+ ether forced in by selfdestruct, which is
  nobody's);
* only allowed state transitions: each successful call moves its task along the protocol's table (who may move
  it, from which state, to which, before or after the deadline; a provider's decline included), and no other
  task changes;
* money goes by rule: the credits and the burn a transition creates are exactly the escrow it releases (plus
  the collateral it takes in), to the parties the rules name (accept, reject, failure, decline, each expiry), no
  party is paid twice for a task, a silent validator's missed count grows by one, and a rating weighs the wei it
  paid;
* every revert is one of the market's own custom errors (never a panic or a bare revert), and calls the rules
  say must work (expire after a deadline, a due withdraw, the right party's due action) do work;
* a published offer lands in the worker's record (its keccak256 and the block of its event), and only a
  registered worker's 1..2048-byte document is taken.

At the end of every example all deadlines pass, an outsider settles every task with permissionless calls and
everyone withdraws: each account must receive exactly what the rules gave it and only the burned and the
forced-in ether remain.
Each example starts from an anvil snapshot and reverts to it, and every transaction is mined before the step
that sent it ends: hypothesis replays examples to shrink them, so each must start from the same chain head
(checked) and run the same way.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace

import pytest
from eth_abi import decode
from eth_utils import keccak
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from web3 import Web3

from ichain.market import commitment_of

VALIDATION, MIN_TIMEOUT, MAX_TIMEOUT = 100, 10, 300
BPS, BURN_BPS, COLLATERAL_BPS, FAILURE_BPS, MAX_REPORT, MAX_OFFER = 10_000, 100, 1000, 1000, 1024, 2048
# The floor; ICHAIN_SM_EXAMPLES lowers it for a quick local look (the figures printed say so).
EXAMPLES, STEPS = int(os.environ.get("ICHAIN_SM_EXAMPLES", 200)), 30
GAS = 1_000_000

# Status values (ITaskMarket.Status)
NONE, PENDING, EXECUTING, VALIDATING, COMPLETED, FAILED, REJECTED, RATED, CANCELLED, EXPIRED, DECLINED = range(11)
OPEN = {PENDING, EXECUTING, VALIDATING}
ZERO = "0x" + "00" * 20


def burn_of(amount: int) -> int:
    return amount * BURN_BPS // BPS


def collateral_of(price: int, fee: int) -> int:
    return fee + price * COLLATERAL_BPS // BPS


def pay_of_rated(task: dict, status: int) -> tuple[int, int]:
    """The wei a Completed / Failed task paid its provider and its validator: the weights of their ratings."""
    price, fee = task["price"], task["fee"]
    if status == COMPLETED:
        return price - burn_of(price), fee - burn_of(fee)
    failure_fee = price * FAILURE_BPS // BPS
    return failure_fee - burn_of(failure_fee), 0
TASK_KEYS = ("requester", "status", "deadline", "pool_index", "timeout", "provider", "price", "validator", "fee")
TASK_TYPE = "(address,uint8,uint32,uint32,uint24,address,uint96,address,uint96)"


@dataclass
class Env:
    """What every example shares: the web3 handle, the market and its actors."""

    w3: object
    market: object  # web3 contract
    ratings: object  # web3 contract
    feeder_abi: list
    feeder_bytecode: str
    actors: list[str]
    outsider: str
    errors: dict[bytes, str]
    stats: dict = field(default_factory=lambda: {"examples": 0, "steps": 0, "tx": 0, "reverts": 0})
    # The chain head every example must start from (set by the first one); see MarketMachine.__init__.
    start: dict = field(default_factory=dict)


def mined(w3: Web3, tx_hash: bytes) -> dict:
    """The receipt of a sent transaction, once it is mined.

    anvil answers eth_sendTransaction as soon as the transaction is in its pool and mines it a moment later
    (measured: from 1 in 12 to 1 in 300 sends are not mined yet when the answer comes back), so whatever is
    read after a send that was not waited for may or may not include it.
    """
    return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.01)


def head(w3: Web3) -> dict:
    """The chain head and the transactions waiting in anvil's pool: equal heads mean equal chain state."""
    block = w3.eth.get_block("latest")
    pool = w3.provider.make_request("txpool_status", [])["result"]
    return {"number": block["number"], "hash": block["hash"], "pending": int(pool["pending"], 16),
            "queued": int(pool["queued"], 16)}


def _abi_json(contract_type) -> list[dict]:
    return [entry.model_dump(mode="json", by_alias=True) for entry in contract_type.abi]


def _error_selectors(abi: list[dict]) -> dict[bytes, str]:
    def canonical(t: dict) -> str:
        if t["type"].startswith("tuple"):
            return "(" + ",".join(canonical(c) for c in t["components"]) + ")" + t["type"][5:]
        return t["type"]

    return {
        keccak(text=f'{e["name"]}({",".join(canonical(i) for i in e["inputs"])})')[:4]: e["name"]
        for e in abi
        if e["type"] == "error"
    }


@pytest.fixture(scope="module")
def env(project, accounts, chain):
    """A market with short windows and 6 funded actors, 5 of them registered workers each trusting the others."""
    owner = accounts[0]
    # A lean web3 on ape's anvil: without ape's middlewares (ENS lookups, gas strategies) a call costs ~5x less.
    w3 = Web3(Web3.HTTPProvider(chain.provider.web3.provider.endpoint_uri))
    w3.middleware_onion.clear()
    # Blocks exactly 1 s apart whatever the wall clock: deadlines are judged deterministically.
    w3.provider.make_request("anvil_setBlockTimestampInterval", [1])
    # Raw eth_sendTransaction from the test accounts, whichever of them anvil holds keys for.
    w3.provider.make_request("anvil_autoImpersonateAccount", [True])
    deployed = project.TaskMarket.deploy(VALIDATION, MIN_TIMEOUT, MAX_TIMEOUT, sender=owner)
    abi = _abi_json(deployed.contract_type)
    ratings_abi = _abi_json(project.Ratings.contract_type)
    abi += [e for e in ratings_abi if e["type"] == "error"]  # errors raised through the market's calls
    market = w3.eth.contract(address=deployed.address, abi=abi)
    ratings = w3.eth.contract(address=deployed.ratings(), abi=ratings_abi)
    actors = [a.address for a in accounts[1:7]]
    for i, a in enumerate(actors[:5]):
        # Mined before the first example's snapshot: one still pooled would be mined into the first example only.
        tx = market.functions.register(keccak(text=f"key{i}"), i * 10**15, True).transact({"from": a, "gas": GAS})
        assert mined(w3, tx)["status"] == 1, f"actor {i} could not register"
    for a in actors[:5]:  # a provider can only be paired with a validator it trusts: start from full trust
        for v in actors[:5]:
            if v != a:
                tx = market.functions.setTrust(v, True).transact({"from": a, "gas": GAS})
                assert mined(w3, tx)["status"] == 1, "setTrust failed"
    feeder = project.ForceFeeder.contract_type
    yield Env(
        w3=w3,
        market=market,
        ratings=ratings,
        feeder_abi=_abi_json(feeder),
        feeder_bytecode=feeder.deployment_bytecode.bytecode,
        actors=actors,
        outsider=accounts[8].address,
        errors=_error_selectors(abi),
    )
    w3.provider.make_request("anvil_removeBlockTimestampInterval", [])
    w3.provider.make_request("anvil_autoImpersonateAccount", [False])


class MarketMachine(RuleBasedStateMachine):
    """Random walk over the market; see the module docstring for what is checked."""

    env: Env  # set by the test before running

    def __init__(self) -> None:
        super().__init__()
        e = self.env
        self.w3, self.m = e.w3, e.market
        # Hypothesis replays an example to shrink it and expects the same run: every example starts from the
        # same chain state, with nothing pooled that would be mined into it.
        start = head(self.w3)
        assert start["pending"] == start["queued"] == 0, f"transactions left in anvil's pool: {start}"
        e.start = e.start or start
        assert start == e.start, f"example starts from chain head {start}, not {e.start}"
        self.snapshot = self.w3.provider.make_request("evm_snapshot", [])["result"]
        e.stats["examples"] += 1
        self.entitled: dict[str, int] = {a: 0 for a in e.actors}  # every wei the rules gave each actor
        self.received: dict[str, int] = {a: 0 for a in e.actors}  # every wei each actor withdrew
        self.forced = 0
        self.tasks: dict[int, tuple] = {}  # last seen chain state of each task
        self.results: dict[int, bytes] = {}
        self.committed: list[bytes] = []
        self.paid: dict[tuple[int, str], int] = {}  # (task, role) -> payouts
        self.nonce = 0
        # chain state as read by the last invariant check (nothing changes between it and the next rule)
        self.last = 0
        self.seen: list[dict] = []
        self.time = 0

    # ------------------------------------------------------------------ plumbing

    def now(self) -> int:
        return self.w3.eth.get_block("latest")["timestamp"]

    def task(self, task_id: int) -> dict:
        return dict(zip(TASK_KEYS, self.m.functions.getTask(task_id).call()))

    def read_all(self, last: int) -> tuple[list[dict], dict[str, int], int, int, int]:
        """Every task, every actor's credit, the burned total, the open-task count and the balance, in one
        JSON-RPC batch."""
        m = self.m

        def call(name: str, *args) -> tuple[str, list]:
            return "eth_call", [{"to": m.address, "data": m.encode_abi(name, list(args))}, "latest"]

        requests = [call("getTask", i) for i in range(1, last + 1)]
        requests += [call("creditOf", a) for a in self.env.actors]
        requests += [call("burned"), call("openTaskCount"), ("eth_getBalance", [m.address, "latest"])]
        requests += [("eth_getBlockByNumber", ["latest", False])]
        answers = [r["result"] for r in self.w3.provider.make_batch_request(requests)]
        self.time = int(answers.pop()["timestamp"], 16)
        balance = int(answers.pop(), 16)
        out = [bytes.fromhex(a[2:]) for a in answers]
        tasks = [dict(zip(TASK_KEYS, decode([TASK_TYPE], raw)[0])) for raw in out[:last]]
        for t in tasks:  # same spelling as web3's own decoding (checksummed addresses)
            for k in ("requester", "provider", "validator"):
                t[k] = self.w3.to_checksum_address(t[k])
        credits = {a: int.from_bytes(raw, "big") for a, raw in zip(self.env.actors, out[last:-2])}
        return tasks, credits, int.from_bytes(out[-2], "big"), int.from_bytes(out[-1], "big"), balance

    def send(self, fn, sender: str, value: int = 0) -> tuple[bool, str | None, dict]:
        """Send the transaction (mined even when it reverts); returns (ok, custom error name, receipt).

        Sending first and reading a revert's data from its trace (rather than eth_call then send) judges the
        call in the very block it lands in, so deadline edges can't differ between the two.
        """
        tx_hash = fn.transact({"from": sender, "value": value, "gas": GAS})
        receipt = mined(self.w3, tx_hash)
        self.env.stats["tx"] += 1
        if receipt["status"] == 1:
            return True, None, receipt
        trace = self.w3.provider.make_request(
            "debug_traceTransaction", [self.w3.to_hex(tx_hash), {"tracer": "callTracer"}])["result"]
        data = bytes.fromhex(trace.get("output", "0x")[2:])
        name = self.env.errors.get(data[:4], f"no custom error (revert data 0x{data.hex()})")
        assert name.startswith(("TaskMarket__", "Ratings__")), f"{fn.fn_name} reverted with {name}"
        self.env.stats["reverts"] += 1
        return False, name, receipt

    def cached(self, task_id: int) -> dict:
        return self.seen[task_id - 1]

    def pick_task(self, seed: int) -> int | None:
        last = self.last
        if last == 0:
            return None
        if seed % 3 and last > 3:
            return last - (seed // 3) % 3  # mostly recent tasks, so lifecycles get far
        return 1 + seed % last

    def credit(self, account: str) -> int:
        return self.m.functions.creditOf(account).call()

    # ------------------------------------------------------------------ the rules of the protocol

    def settle(self, task_id: int, before: dict, caller: str, op: str, deposit: int = 0,
               burned_before: int = 0, extra: dict | None = None) -> None:
        """Check a successful call's transition, then book the money it moved (``deposit``: wei it took in)."""
        after = self.task(task_id)
        f, t = before["status"], after["status"]
        deadline_passed = self.now() > before["deadline"]
        allowed = {
            "post": f == NONE and after["requester"] == caller
            and t == (PENDING if int(after["provider"], 16) == 0 else EXECUTING)
            and after["validator"] not in (ZERO, caller, after["provider"])
            and (t == PENDING or self.trusts(after["provider"], after["validator"])),
            "assign_provider": f == PENDING and t == EXECUTING and caller == before["requester"]
            and after["provider"] not in (before["requester"], after["validator"])
            and self.trusts(after["provider"], after["validator"]),
            "submit_result": f == EXECUTING and t == VALIDATING and caller == before["provider"]
            and not deadline_passed,
            "report_failure": f == EXECUTING and t == FAILED and caller == before["provider"] and not deadline_passed,
            "decline": f == EXECUTING and t == DECLINED and caller == before["provider"] and not deadline_passed,
            "submit_verdict": f == VALIDATING and caller == before["validator"] and not deadline_passed
            and t == (COMPLETED if (extra or {}).get("accept") else REJECTED),
            "rate": caller == before["requester"] and f in (COMPLETED, FAILED) and t == RATED,
            "cancel": f == PENDING and t == CANCELLED and caller == before["requester"],
            "expire": f in OPEN and deadline_passed and t == EXPIRED,
        }[op]
        assert allowed, f"illegal transition {f} -> {t} by {op} from {caller}"
        if f != NONE:
            assert (after["requester"], after["price"], after["fee"], after["validator"]) == (
                before["requester"], before["price"], before["fee"], before["validator"]), \
                "a task's requester, amounts or validator changed"

        price, fee = before["price"], before["fee"]
        coll = collateral_of(price, fee)
        failure_fee = price * FAILURE_BPS // BPS
        pay = {"requester": 0, "provider": 0, "validator": 0}
        burn = 0
        if t in (CANCELLED, DECLINED):
            pay["requester"] = price + fee
        elif (f, t) == (VALIDATING, COMPLETED):
            pay["provider"] = price - burn_of(price) + coll
            pay["validator"] = fee - burn_of(fee)
            burn = burn_of(price) + burn_of(fee)
        elif t == REJECTED:
            pay["requester"] = price + fee
            pay["validator"] = fee - burn_of(fee)
            burn = coll - pay["validator"]
        elif t == FAILED:
            pay["provider"] = failure_fee - burn_of(failure_fee)
            pay["requester"] = price + fee - failure_fee
            burn = burn_of(failure_fee)
        elif t == EXPIRED:
            pay["requester"] = price + fee
            if f == VALIDATING:
                pay["provider"] = coll  # the silent validator's task: the provider's collateral back
        if op == "post":
            assert self.escrow(after) == after["price"] + after["fee"] == deposit, "post: escrow != deposit"
            self.tasks[task_id] = self.fingerprint(after)
            return
        burned = self.m.functions.burned().call()
        assert burned - burned_before == burn, f"{op}: burned {burned - burned_before} != {burn} by the rules"
        released = self.escrow(before) + deposit - self.escrow(after)
        assert released == sum(pay.values()) + burn, (
            f"{op}: escrow released {released} != credited {sum(pay.values())} + burned {burn}")
        for role, amount in pay.items():
            if amount:
                key = (task_id, role)
                self.paid[key] = self.paid.get(key, 0) + 1
                assert self.paid[key] == 1, f"task {task_id} paid its {role} twice"
                self.entitled[before[role]] = self.entitled.get(before[role], 0) + amount
        if extra and "missed" in extra:  # expire: the validator's record counts a silence, only a silence
            grew = self.m.functions.getWorker(before["validator"]).call()[6] - extra["missed"]
            assert grew == (1 if f == VALIDATING else 0), f"expire from {f}: missed grew by {grew}"
        if extra and "records" in extra:  # rate: each record weighs the wei the task paid
            weights = {"provider": pay_of_rated(before, extra["status"])[0],
                       "validator": pay_of_rated(before, extra["status"])[1]}
            for role, idx in (("provider", 0), ("validator", 1)):
                rec = self.env.ratings.functions.recordOf(before[role], idx).call()
                old = extra["records"][role]
                rated = extra["ratings"][idx] != 0
                assert rec[0] - old[0] == rated, f"rate: {role} count moved by {rec[0] - old[0]}"
                assert rec[2] - old[2] == (weights[role] // 10**9 if rated else 0), f"rate: {role} weight wrong"
        self.tasks[task_id] = self.fingerprint(after)

    def trusts(self, provider: str, validator: str) -> bool:
        return self.m.functions.trusts(provider, validator).call()

    @staticmethod
    def fingerprint(t: dict) -> tuple:
        return tuple(v for k, v in t.items() if k != "pool_index")

    @staticmethod
    def escrow(t: dict) -> int:
        """What a task holds: price + fee while open, plus the provider's collateral while Validating."""
        if t["status"] not in OPEN:
            return 0
        held = t["price"] + t["fee"]
        return held + (collateral_of(t["price"], t["fee"]) if t["status"] == VALIDATING else 0)

    def act(self, op: str, task_id: int, caller: str, fn, must_work: bool, value: int = 0,
            extra: dict | None = None) -> bool:
        before = self.cached(task_id) if task_id <= self.last else self.task(task_id)
        burned_before = self.m.functions.burned().call()
        ok, error, _ = self.send(fn, caller, value)
        if ok:
            self.settle(task_id, before, caller, op, deposit=value, burned_before=burned_before, extra=extra)
            done = self.env.stats.setdefault("done", {})
            key = op if op != "submit_verdict" else ("accept" if (extra or {}).get("accept") else "reject")
            done[key] = done.get(key, 0) + 1
        else:
            assert not must_work, f"{op} on task {task_id} by {caller} was refused: {error}"
        return ok

    # ------------------------------------------------------------------ rules (random actions)

    actor = st.integers(0, 5)
    seed = st.integers(0, 2**16)

    # Amounts around the workers' asking prices (0 .. 4e15, moved by worker_op): hypothesis favours small
    # integers, and a uniform draw would make nearly every post fail on a fee below the validator's price.
    amount = st.sampled_from([0, 10**15, 4 * 10**15, 10**16, 3 * 10**16, 10**18])

    @rule(who=actor, prov=st.integers(0, 7), val=st.integers(0, 6), price=amount, fee=amount,
          timeout=st.integers(5, 320))
    def post(self, who, prov, val, price, fee, timeout):
        a = self.env.actors
        requester = a[who]
        provider = ZERO if prov > 5 else a[prov]
        validator = ZERO if val > 5 else a[val]
        task_id = self.m.functions.lastTaskId().call() + 1
        fn = self.m.functions.post(keccak(text=f"task{task_id}"), (provider, validator, price, fee, timeout), b"")
        self.act("post", task_id, requester, fn, must_work=False, value=price + fee)

    @rule(who=actor, prov=st.integers(0, 4), val=st.integers(0, 4), named=st.booleans(),
          timeout=st.integers(MIN_TIMEOUT, 120))
    def post_paired(self, who, prov, val, named, timeout):
        """A post that the rules allow unless trust or prices moved: three distinct registered parties."""
        a = self.env.actors
        parties = [x for x in a[:5] if x != a[who]]
        provider = parties[prov % len(parties)]
        validator = [x for x in parties if x != provider][val % (len(parties) - 1)]
        task_id = self.m.functions.lastTaskId().call() + 1
        terms = (provider if named else ZERO, validator, 10**17, 3 * 10**16, timeout)
        fn = self.m.functions.post(keccak(text=f"task{task_id}"), terms, b"")
        self.act("post", task_id, a[who], fn, must_work=False, value=10**17 + 3 * 10**16)

    # Task rules: ``who`` above 5 is the task's own party (half of the draws), else any actor.
    @rule(task=seed, who=st.integers(0, 11), prov=actor)
    def assign_provider(self, task, who, prov):
        if (tid := self.pick_task(task)) is None:
            return
        t = self.cached(tid)
        caller = t["requester"] if who > 5 else self.env.actors[who]
        self.act("assign_provider", tid, caller,
                 self.m.functions.assignProvider(tid, self.env.actors[prov], b"loc"), must_work=False)

    @rule(who=actor, val=actor, trusted=st.booleans())
    def set_trust(self, who, val, trusted):
        a = self.env.actors
        ok, error, _ = self.send(self.m.functions.setTrust(a[val], trusted), a[who])
        assert ok == (who != val), f"setTrust by {who} of {val}: {error}"
        if ok:
            assert self.trusts(a[who], a[val]) == trusted

    @rule(task=seed, who=st.integers(0, 11), copy=st.booleans(), pick=seed, short=st.booleans())
    def submit_result(self, task, who, copy, pick, short):
        if (tid := self.pick_task(task)) is None:
            return
        t = self.cached(tid)
        # (a Pending task has no provider: the zero address cannot send, an outsider stands in)
        caller = t["provider"] if who > 5 and t["provider"] != ZERO else self.env.actors[who % 6]
        replay = copy and bool(self.committed)
        self.nonce += 1
        h = self.committed[pick % len(self.committed)] if replay else keccak(text=f"result{tid}.{self.nonce}")
        coll = collateral_of(t["price"], t["fee"])
        value = coll - 1 if short and coll else coll
        # A commitment binds only its own task: the assigned provider may commit any hash, a copied one too
        # (the validator rejects a copied package, whose meta names another task); it never touches the source.
        # (blocks are 1 s apart: the transaction lands at now() + 1)
        must = (caller == t["provider"] and t["status"] == EXECUTING and self.time < t["deadline"]
                and value == coll)
        source = next((o for o, hh in self.results.items() if hh == h and o != tid), None) if replay else None
        ok = self.act("submit_result", tid, caller, self.m.functions.submitResult(tid, h, b"v"), must, value=value)
        assert not ok or value == coll, "a result was committed with the wrong collateral"
        if ok:
            self.results[tid] = h
            self.committed.append(h)
        if ok and source is not None:
            shown = bytes(self.m.functions.resultOf(source).call())  # zero once the source left Validating
            assert shown in (bytes(32), commitment_of(h)), "a copier's replay changed another task's commitment"

    @rule(task=seed, who=st.integers(0, 11), length=st.sampled_from([0, 1, 7, MAX_REPORT, MAX_REPORT + 1]))
    def report_failure(self, task, who, length):
        if (tid := self.pick_task(task)) is None:
            return
        t = self.cached(tid)
        # (a Pending task has no provider: the zero address cannot send, an outsider stands in)
        caller = t["provider"] if who > 5 and t["provider"] != ZERO else self.env.actors[who % 6]
        must = (caller == t["provider"] and t["status"] == EXECUTING and self.time < t["deadline"]
                and 1 <= length <= MAX_REPORT)
        ok = self.act("report_failure", tid, caller, self.m.functions.reportFailure(tid, b"\x01" * length), must)
        assert not ok or 1 <= length <= MAX_REPORT, f"a report of {length} bytes was accepted"

    @rule(task=seed, who=st.integers(0, 11), length=st.sampled_from([0, 1, 60, MAX_REPORT, MAX_REPORT + 1]))
    def decline(self, task, who, length):
        if (tid := self.pick_task(task)) is None:
            return
        t = self.cached(tid)
        # (a Pending task has no provider: the zero address cannot send, an outsider stands in)
        caller = t["provider"] if who > 5 and t["provider"] != ZERO else self.env.actors[who % 6]
        must = (caller == t["provider"] and t["status"] == EXECUTING and self.time < t["deadline"]
                and 1 <= length <= MAX_REPORT)
        ok = self.act("decline", tid, caller, self.m.functions.decline(tid, b"n" * length), must)
        assert not ok or 1 <= length <= MAX_REPORT, f"a decline reason of {length} bytes was accepted"

    def publish_offer(self, sender: str, length: int, salt: int) -> None:
        """An offer (worker_op's fifth kind, so the task rules keep their share of the draws)."""
        document = ((salt % 2**24).to_bytes(3, "big") * length)[:length]
        registered = self.m.functions.getWorker(sender).call()[4]
        ok, error, receipt = self.send(self.m.functions.publishOffer(document), sender)
        assert ok == (registered and 1 <= length <= MAX_OFFER), f"publishOffer of {length} bytes: {error}"
        if ok:
            record = self.m.functions.getWorker(sender).call()
            assert (record[7], bytes(record[8])) == (receipt["blockNumber"], keccak(document)), "offer not recorded"

    @rule(task=seed, who=st.integers(0, 11), accept=st.booleans(), wrong=st.booleans())
    def submit_verdict(self, task, who, accept, wrong):
        if (tid := self.pick_task(task)) is None:
            return
        t = self.cached(tid)
        caller = t["validator"] if who > 5 else self.env.actors[who]
        h = keccak(text=f"wrong{tid}") if wrong else self.results.get(tid, b"\0" * 32)
        must = (not wrong and caller == t["validator"] and t["status"] == VALIDATING and self.time < t["deadline"])
        self.act("submit_verdict", tid, caller, self.m.functions.submitVerdict(tid, h, accept, b"r-loc"), must,
                 extra={"accept": accept})

    @rule(task=seed, who=st.integers(0, 11), provider_rating=st.integers(0, 6), validator_rating=st.integers(0, 6))
    def rate(self, task, who, provider_rating, validator_rating):
        if (tid := self.pick_task(task)) is None:
            return
        t = self.cached(tid)
        caller = t["requester"] if who > 5 else self.env.actors[who]
        must = (caller == t["requester"] and t["status"] in (COMPLETED, FAILED) and 1 <= provider_rating <= 5
                and validator_rating <= 5 and (validator_rating == 0 or t["status"] == COMPLETED))
        r = self.env.ratings.functions
        records = {"provider": r.recordOf(t["provider"], 0).call(), "validator": r.recordOf(t["validator"], 1).call()}
        self.act("rate", tid, caller, self.m.functions.rate(tid, provider_rating, validator_rating), must,
                 extra={"records": records, "ratings": (provider_rating, validator_rating), "status": t["status"]})

    @rule(task=seed, who=st.integers(0, 11))
    def cancel(self, task, who):
        if (tid := self.pick_task(task)) is None:
            return
        t = self.cached(tid)
        caller = t["requester"] if who > 5 else self.env.actors[who]
        must = caller == t["requester"] and t["status"] == PENDING
        self.act("cancel", tid, caller, self.m.functions.cancel(tid), must)

    @rule(task=seed, who=st.integers(0, 6))
    def expire(self, task, who):
        if (tid := self.pick_task(task)) is None:
            return
        t = self.cached(tid)
        caller = self.env.outsider if who == 6 else self.env.actors[who]
        # the transaction lands at now() + 1 (blocks 1 s apart), so "passed" is judged against that
        must = t["status"] in OPEN and self.time >= t["deadline"]
        missed = self.m.functions.getWorker(t["validator"]).call()[6]
        self.act("expire", tid, caller, self.m.functions.expire(tid), must, extra={"missed": missed})

    @rule(task=seed, choice=st.integers(0, 3))
    def progress(self, task, choice):
        """The due action of the right party on a task (random callers rarely are the right one): assign a
        provider, commit or report a failure, accept or reject, rate. The other rules try everyone else (and
        the decline rule's own provider declines)."""
        if (tid := self.pick_task(task)) is None:
            return
        t = self.cached(tid)
        status = t["status"]
        if status == PENDING:
            others = [x for x in self.env.actors[:5] if x not in (t["requester"], t["validator"])]
            self.assign_provider(task, 6, self.env.actors.index(others[choice % len(others)]))
        elif status == EXECUTING and choice == 3:
            self.report_failure(task, 6, 7)
        elif status == EXECUTING:
            self.submit_result(task, 6, False, 0, False)
        elif status == VALIDATING:
            self.submit_verdict(task, 6, choice % 2 == 0, False)
        elif status in (COMPLETED, FAILED):
            self.rate(task, 6, 1 + choice, choice if status == COMPLETED else 0)

    @rule(who=actor)
    def withdraw(self, who):
        self.withdraw_all(self.env.actors[who], must=False)

    @rule(who=actor, kind=st.integers(0, 4), price=st.integers(0, 2 * 10**16))
    def worker_op(self, who, kind, price):
        a = self.env.actors[who]
        if kind == 4:  # an offer, from a worker or (one time in seven) an outsider, of a length around the bounds
            sender = self.env.outsider if price % 7 == 0 else a
            self.publish_offer(sender, [0, 1, 300, MAX_OFFER, MAX_OFFER + 1][price % 5], price)
            return
        key = keccak(text=f"k{who}.{price}")
        fn = {0: self.m.functions.leave(), 1: self.m.functions.register(key, price, True),
              2: self.m.functions.update(key, price, True), 3: self.m.functions.update(key, price, False)}[kind]
        self.send(fn, a)

    @rule(amount=st.integers(1, 10**18))
    def force_feed(self, amount):
        e = self.env
        factory = self.w3.eth.contract(abi=e.feeder_abi, bytecode=e.feeder_bytecode)
        tx = factory.constructor().transact({"from": e.outsider, "value": amount, "gas": GAS})
        created = mined(self.w3, tx)
        assert created["status"] == 1, "the force-feeder could not be deployed"
        feeder = self.w3.eth.contract(address=created["contractAddress"], abi=e.feeder_abi)
        # Booked once mined: the invariant after this step reads the market's balance.
        fed = mined(self.w3, feeder.functions.feed(self.m.address).transact({"from": e.outsider, "gas": GAS}))
        assert fed["status"] == 1, "the force-feeder could not selfdestruct into the market"
        self.forced += amount

    @rule(secs=st.integers(1, 250))
    def warp(self, secs):
        self.jump(secs)

    def jump(self, secs: int) -> None:
        self.w3.provider.make_request("evm_setNextBlockTimestamp", [self.now() + secs])
        self.w3.provider.make_request("evm_mine", [])

    def withdraw_all(self, account: str, must: bool) -> None:
        credit = self.credit(account)
        balance = self.w3.eth.get_balance(account)
        ok, error, receipt = self.send(self.m.functions.withdraw(), account)
        assert ok or not (must or credit), f"withdraw of {credit} by {account} refused: {error}"
        gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
        if ok:
            assert self.w3.eth.get_balance(account) - balance + gas == credit, "withdraw paid the wrong amount"
            assert self.credit(account) == 0, "credit left after withdraw"
            self.received[account] += credit

    # ------------------------------------------------------------------ invariants (after every step)

    @invariant()
    def solvent_and_consistent(self):
        self.env.stats["steps"] += 1
        last = self.m.functions.lastTaskId().call()
        tasks, credits, burned, open_pool, balance = self.read_all(last)
        self.last, self.seen = last, tasks
        escrow, open_count = 0, 0
        for tid, t in enumerate(tasks, start=1):
            seen = self.tasks.get(tid)
            # (a task's pool index may move when another task leaves the pool: swap-and-pop)
            assert seen is None or seen == self.fingerprint(t), f"task {tid} changed without a call to it"
            assert t["status"] not in OPEN or t["pool_index"] < open_pool, f"task {tid}: pool index out of the pool"
            escrow += self.escrow(t)
            open_count += t["status"] in OPEN
        total = sum(credits.values())
        assert balance == escrow + total + burned + self.forced, (
            f"balance {balance} != escrow {escrow} + credits {total} + burned {burned} + forced {self.forced}")
        assert open_pool == open_count, "open-task pool out of step"
        for a in self.env.actors:  # owed by rule == withdrawn + still credited
            assert self.entitled[a] == self.received[a] + credits[a], f"{a}'s credit differs from the rules"

    def teardown(self):
        try:
            self.sweep()
        finally:
            self.w3.provider.make_request("evm_revert", [self.snapshot])

    def sweep(self) -> None:
        """All deadlines pass; an outsider settles every open task; everyone withdraws."""
        last = self.m.functions.lastTaskId().call()
        self.jump(MAX_TIMEOUT + VALIDATION + 1)
        for tid in range(1, last + 1):
            if self.task(tid)["status"] in OPEN:
                before = self.task(tid)
                burned = self.m.functions.burned().call()
                missed = self.m.functions.getWorker(before["validator"]).call()[6]
                ok, error, _ = self.send(self.m.functions.expire(tid), self.env.outsider)
                assert ok, f"task {tid} could not be expired after all deadlines: {error}"
                self.settle(tid, before, self.env.outsider, "expire", burned_before=burned, extra={"missed": missed})
        assert self.m.functions.openTaskCount().call() == 0, "tasks still open after all deadlines"
        for a in self.env.actors:
            if self.credit(a):
                self.withdraw_all(a, must=True)
        for a in self.env.actors:
            assert self.received[a] == self.entitled[a], f"{a} received {self.received[a]} != owed {self.entitled[a]}"
        left = self.w3.eth.get_balance(self.m.address)
        assert left == self.forced + self.m.functions.burned().call(), "ether left beyond the burned and forced-in"


def test_force_feed_rule__invariant_read_right_after__balance_includes_the_fed_ether(env: Env) -> None:
    """The invariant after a force-feed reads the market's balance: the feed must be mined when the rule returns."""
    MarketMachine.env = replace(env, stats={"examples": 0, "steps": 0, "tx": 0, "reverts": 0}, start={})
    machine = MarketMachine()
    w3, market = env.w3, env.market.address
    try:
        # anvil leaves up to 1 in 300 sends unmined when it answers: 400 feeds catch a rule that does not wait
        for amount in range(1, 401):
            before = w3.eth.get_balance(market)
            machine.force_feed(amount)
            assert w3.eth.get_balance(market) == before + amount, f"force_feed({amount}) returned before its feed"
        machine.solvent_and_consistent()
    finally:
        machine.teardown()
        MarketMachine.env = env


# ~6,000 steps on a shared 2-core machine: above the suite's default 600 s timeout when the machine is loaded.
@pytest.mark.timeout(1800)
def test_market__random_calls_actors_and_time__invariants_hold(env):
    """200 examples x 30 steps (the issue's floor); figures printed for the audit report."""
    MarketMachine.env = env
    started = time.monotonic()
    run_state_machine_as_test(
        MarketMachine,
        settings=settings(
            max_examples=EXAMPLES,
            # hypothesis ends a few examples early (buffer limits): ask for more so the total clears 200 x 30
            stateful_step_count=STEPS + 10,
            deadline=None,
            database=None,
            # One fixed sequence of examples: the campaign must walk every transition, and a random seed would
            # make that check pass or fail by luck from run to run. The forge campaign explores at random.
            derandomize=True,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    s = env.stats
    steps = s["steps"] - s["examples"]  # invariant checks minus the one before each example's first step
    print(f"\nstate machine: {s['examples']} examples, {steps} steps ({steps / s['examples']:.1f} per example; "
          f"{s['tx']} transactions, {s['reverts']} refused calls) in {time.monotonic() - started:.1f} s; "
          f"successful calls: {dict(sorted(s.get('done', {}).items()))}")
    assert s["examples"] >= EXAMPLES and steps >= EXAMPLES * STEPS
    # (which transitions were walked is printed above; not asserted: the draws are random, a test must not be
    # flaky, and test_task_market.py takes every transition deterministically)
