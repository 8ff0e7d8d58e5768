"""The requester's session: one task, from a folder on disk to a verified, rated result (protocol v2).

A :class:`RequesterSession` walks a task through the market (the round with its recovery policy,
:func:`ichain.requester.flow.run_round`, drives it for ``ape ichain submit`` and the demo)::

    s = RequesterSession.prepare("examples/digits", market=market, account=acct, config=cfg)  # checks, packs
    s.post(provider="best", validator="auto")    # hosts the task for the provider only, posts the deposit
    s.wait_for("Completed")                      # Executing -> Validating -> Completed | Failed | Rejected | Expired
                                                 # (or Executing -> Declined: the provider gave it back)
    s.fetch_result()                             # opens the accept's locator, fetches, checks resultOf, unpacks
    s.rate(5, 4)                                 # explicit only: never a default rating
    s.close()

The provider is picked by its count-aware score, the validator from THAT provider's trusted set (the provider
consented to it on chain) with a fee of at least its asking price. Nothing opens the result before the accepting
verdict: the requester locator in ``VerdictSubmitted`` holds the validator's verified copy, sealed to the
requester. A failed run ends at once with a sealed report (:meth:`RequesterSession.failure`).

Its state lives in ``<state_dir>/<account>/requests/<id>/session.json`` (written atomically), so a
web server can list and show sessions and a restarted process resumes one with
:meth:`RequesterSession.load`. :meth:`RequesterSession.status` returns a JSON-able snapshot with the
on-chain status, deadlines, chosen parties, and per-chunk transfer progress.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import logging
import os
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ichain.config import IChainConfig
from ichain.errors import IChainError
from ichain.files import sha256_file, write_json_atomic
from ichain.hardware import Needs
from ichain.market import (
    Market, ProviderAssigned, ResultSubmitted, Status, Task, TaskCancelled, TaskDeclined, TaskExpired, TaskFailed,
    TaskRated, VerdictSubmitted, Worker,
)
from ichain.net import free_port
from ichain.requester.matching import assess
from ichain.tor import TorTransport, transport_for
from ichain.text import neutralize, one_line
from ichain.transfer.envelope import Envelope

if TYPE_CHECKING:
    from ichain.transfer import ChunkHost, KeyPair
    from ichain.transfer.progress import FetchProgress

#: Statuses whose escrow is settled: the round is over (Completed and Failed may still be rated once).
SETTLED = frozenset({Status.Completed, Status.Failed, Status.Rejected, Status.Rated, Status.Cancelled,
                     Status.Expired, Status.Declined})
#: Statuses after which nothing more happens to a task.
TERMINAL = frozenset({Status.Rejected, Status.Rated, Status.Cancelled, Status.Expired, Status.Declined})
#: Statuses the requester may rate (once).
RATEABLE = frozenset({Status.Completed, Status.Failed})

#: Largest result archive fetched (a provider or validator cannot fill the requester's disk).
MAX_RESULT_SIZE = 1024 * 1024 * 1024

#: The requester's step lines (shown by ``--verbosity DEBUG``).
log = logging.getLogger("ichain.requester")


def _status(value: str | Status) -> Status:
    return value if isinstance(value, Status) else Status[value]


def _wei(amount: int | None) -> str:
    return "any price" if amount is None else f"{int(amount)} wei"


def validator_rank_key(worker: Worker) -> tuple:
    """How validators rank: validator score (count-aware, best first), fewer missed verdicts, lower price."""
    return (-worker.validator_record.score_milli, worker.missed, worker.price, worker.address.lower())


class RequestError(IChainError):
    """A requester action can't be done now (wrong stage, no provider available, no result yet...)."""


class RequesterSession:
    """One task, from a folder on disk to a verified, rated result.

    Args:
        root: The session's folder.
        data: Its persisted state.
        market: The SDK market on the connected network.
        account: The requester's Ape account.
        config: iChain settings.
    """

    def __init__(self, root: Path, data: dict, *, market: Market, account: Any, config: IChainConfig):
        self.root = Path(root)
        self.data = data
        self.market = market
        self.account = account
        self.config = config
        self.host: ChunkHost | None = None
        self.keypair: KeyPair | None = None
        self.progress: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._chain_task: Task | None = None
        #: Seconds to keep retrying a result fetch while the hosts are unreachable.
        self.fetch_patience = 120.0
        #: Largest result archive accepted.
        self.max_result_size = MAX_RESULT_SIZE

    # --- creation and persistence ---------------------------------------------------------
    @staticmethod
    def sessions_dir(config: IChainConfig, address: str) -> Path:
        """Where the sessions of one account live."""
        path = config.account_dir(address) / "requests"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @classmethod
    def prepare(cls, task_dir: str | Path, *, market: Market, account: Any, config: IChainConfig) -> RequesterSession:
        """Check and package a task folder; nothing is sent and no deposit is taken.

        Raises:
            TaskFormatError: The folder is not a valid task (one-line reason).
        """
        from ichain.sandbox import load_task, pack_task

        task_dir = Path(task_dir)
        spec = load_task(task_dir)  # raises TaskFormatError before anything else happens
        sid = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
        root = cls.sessions_dir(config, account.address) / sid
        root.mkdir(parents=True)
        part = root / "task.tar.part"
        digest = pack_task(task_dir, part)
        os.replace(part, root / "task.tar")
        data = {
            "id": sid,
            "task_dir": str(task_dir.resolve()),
            "task_name": task_dir.name,
            "task_hash": digest.hex(),
            "task_size": (root / "task.tar").stat().st_size,
            "needs": dataclasses.asdict(spec.needs()),
            "stage": "prepared",
            "created": time.time(),
            "requester": str(account.address),
            "chain_id": int(cls._web3().eth.chain_id),
            "market": market.address,
            "history": [],
        }
        session = cls(root, data, market=market, account=account, config=config)
        session._log("prepared", f"packaged {data['task_name']} ({data['task_size']} bytes)")
        return session

    @classmethod
    def load(cls, session_id: str, *, market: Market, account: Any, config: IChainConfig) -> RequesterSession:
        """Resume a session from disk (by id, or by on-chain task id as ``#N`` or ``N``)."""
        base = cls.sessions_dir(config, account.address)
        root = base / session_id
        if not (root / "session.json").exists():
            wanted = session_id.lstrip("#")
            for path in sorted(base.glob("*/session.json")):
                data = json.loads(path.read_text())
                if str(data.get("task_id")) == wanted:
                    root = path.parent
                    break
            else:
                raise RequestError(f"no request session {session_id!r} for {account.address} in {base}")
        data = json.loads((root / "session.json").read_text())
        return cls(root, data, market=market, account=account, config=config)

    @classmethod
    def for_task(cls, task_id: int, *, market: Market, account: Any,
                 config: IChainConfig) -> RequesterSession | None:
        """The session that posted ``task_id`` on this chain and market, or None (a task posted elsewhere)."""
        chain_id = int(cls._web3().eth.chain_id)
        for data in cls.list(config=config, address=account.address):
            if (data.get("task_id") == int(task_id) and data.get("chain_id") == chain_id
                    and data.get("market") == market.address):
                return cls.load(data["id"], market=market, account=account, config=config)
        return None

    @classmethod
    def list(cls, *, config: IChainConfig, address: str) -> builtins.list[dict]:
        """The persisted sessions of an account (newest first), as JSON-able dicts."""
        out = []
        for path in sorted(cls.sessions_dir(config, address).glob("*/session.json"), reverse=True):
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError):
                continue
        return out

    def save(self) -> None:
        """Persist the session (atomically)."""
        with self._lock:
            write_json_atomic(self.root / "session.json", self.data)

    def _log(self, stage: str, message: str) -> None:
        with self._lock:
            self.data["stage"] = stage
            self.data["history"].append({"t": time.time(), "stage": stage, "message": message})
            self.save()
        log.debug("session %s: %s: %s", self.data["id"], stage, message)

    @staticmethod
    def _web3() -> Any:
        from ape import chain

        return chain.provider.web3

    @property
    def task_id(self) -> int | None:
        """The on-chain task id once posted."""
        return self.data.get("task_id")

    def _require_task(self) -> int:
        if self.task_id is None:
            raise RequestError("the task is not posted yet")
        return int(self.task_id)

    def context(self, role: str, *, sender_key: bytes | None = None, task_id: int | None = None) -> Any:
        """The transfer context of this task for ``role``, bound to this requester and the sealing party's key.

        Args:
            role: What the transfer is (``task-provider``, ``result-requester``, ``failure-report``).
            sender_key: The X25519 key of the party that seals (default: this requester's own key).
            task_id: The id bound in (default: the task's; 0 for the task locator sealed before the post).
        """
        from ichain.transfer import TransferContext

        tid = task_id if task_id is not None else self._require_task()
        key = sender_key if sender_key is not None else self._keypair().public_bytes
        return TransferContext(self.data["chain_id"], self.data["market"], int(tid), role,
                               self.data["requester"], bytes(key))

    # --- hosting ----------------------------------------------------------------------------
    def start_host(self) -> None:
        """Start (or restart on the same port) the chunk host that serves this task's files."""
        from ichain.transfer import ChunkHost, KeyPair

        if self.host is not None:
            return
        self.keypair = KeyPair.load_or_create(self.config.account_dir(self.account.address) / "x25519.key")
        port = self.config.port or self.data.get("port") or free_port(self.config.host)
        self.data["port"] = int(port)
        self.save()
        host = ChunkHost(self.root / "host", transport=transport_for(self.config, int(port), self.root))
        host.start()
        self.host = host

    def _keypair(self) -> KeyPair:
        from ichain.transfer import KeyPair

        if self.keypair is None:
            self.keypair = KeyPair.load_or_create(self.config.account_dir(self.account.address) / "x25519.key")
        return self.keypair

    def close(self) -> None:
        """Stop hosting (files stay on disk; :meth:`start_host` serves them again)."""
        if self.host is not None:
            try:
                self.host.stop()
                if isinstance(self.host.transport, TorTransport):
                    self.host.transport.close()  # stops the tor it launched
            finally:
                self.host = None

    def _offer(self, path: Path, worker: str, role: str, *, task_id: int | None = None) -> bytes:
        key = self.market.worker(worker).enc_key
        self.start_host()
        assert self.host is not None
        sealed = self.host.offer(path, key, self.context(role, task_id=task_id))
        self.data.setdefault("uploads", {})[role] = sealed.transfer_id
        self.save()
        return sealed

    # --- choosing parties ---------------------------------------------------------------------
    @property
    def needs(self) -> Needs | None:
        """What the task asks of its provider and validator (None for a session saved before manifests said)."""
        raw = self.data.get("needs")
        return Needs(**raw) if raw else None

    def _fitting(self, workers: builtins.list[Worker]) -> builtins.list[Worker]:
        """``workers`` (order kept) whose published offers cover the task's needs."""
        needs = self.needs
        if needs is None or not workers:
            return workers
        return [c.worker for c in assess(self.market, workers, needs) if c.fits]

    def why_not(self, address: str) -> str | None:
        """One line saying why the worker at ``address`` cannot run this task (None when it can)."""
        [found] = assess(self.market, [self.market.worker(address)], self.needs)
        return None if found.fits else f"{found.worker.address} cannot run this task: {'; '.join(found.shortfalls)}"

    def rank_providers(self, exclude: tuple[str | None, ...] = ()) -> builtins.list[Worker]:
        """Available workers that can run the task (their published hardware covers its manifest), ranked by
        provider score (count-aware, the SDK's ranking), without the requester and ``exclude``."""
        skip = {a.lower() for a in (str(self.account.address), *exclude) if a}
        return self._fitting([w for w in self.market.providers() if w.address.lower() not in skip])

    def rank_validators(self, provider: str, fee: int | None = None) -> builtins.list[Worker]:
        """The validators ``provider`` trusts that could judge a task now, best first.

        A candidate is registered and available, is neither the provider nor the requester, and asks at most
        ``fee`` (any asking price when ``fee`` is None: the fee then defaults to it). Ranked by the validator
        record's score (count-aware), then fewer missed verdicts, then the lower price.
        """
        skip = {str(self.account.address).lower(), provider.lower()}
        trusted = [a for a in self.market.trusted_validators(provider) if a.lower() not in skip]
        workers = self.market.workers(trusted) if trusted else []
        ok = [w for w in workers if w.registered and w.available and (fee is None or w.price <= fee)]
        # The validator re-runs the task: it needs the same runtime and hardware as the provider.
        return sorted(self._fitting(ok), key=validator_rank_key)

    def choose_parties(self, provider: str | None = "best", validator: str | None = "auto", *,
                       price: int | None = None, validator_fee: int | None = None) -> tuple[str | None, str]:
        """The provider and validator a post names.

        ``best`` is the top provider by score that asks at most ``price`` and trusts at least one validator that
        could take the task; ``auto`` is the top validator of THAT provider's trusted set asking at most
        ``validator_fee``. A provider is never its own validator (the contract refuses it too).

        Args:
            provider: An address, ``best``, or None (leave the task pending; the validator must then be named
                or ``auto``: the best validator any available provider trusts).
            validator: An address or ``auto``.
            price: Wei offered to the provider (None: any asking price).
            validator_fee: Wei offered to the validator (None: any asking price).

        Raises:
            RequestError: No provider or validator fits.
        """
        if provider in ("", "none"):
            provider = None
        if validator in (None, "", "none", "later"):
            raise RequestError("name a validator: an address or 'auto' (a verdict needs one the provider trusts)")
        if provider is not None and provider not in ("best", "auto"):
            prov = str(provider)
            if validator in ("best", "auto"):
                ranked = self.rank_validators(prov, validator_fee)
                if not ranked:
                    raise RequestError(f"provider {prov} trusts no available validator asking at most "
                                       f"{_wei(validator_fee)}")
                return prov, ranked[0].address
            return prov, str(validator)
        explicit = None if validator in ("best", "auto") else str(validator)
        for w in self.rank_providers((explicit,)):
            if price is not None and w.price > price:
                continue
            if explicit is not None:
                if self.market.trusts(w.address, explicit):
                    return (w.address if provider else None), explicit
                continue
            ranked = self.rank_validators(w.address, validator_fee)
            if ranked:
                return (w.address if provider else None), ranked[0].address
        self._none_can_run()
        what = f"trusting {explicit}" if explicit else "with a trusted validator available"
        raise RequestError(f"no available provider {what} (asking at most {_wei(price)})")

    def _none_can_run(self) -> None:
        """Raise with what the best-ranked provider lacks when no available provider can run the task at all.

        Raises:
            RequestError: No available provider's offer covers the task's needs.
        """
        skip = str(self.account.address).lower()
        workers = [w for w in self.market.providers() if w.address.lower() != skip]
        if self.needs is None or not workers:
            return
        found = assess(self.market, workers, self.needs)
        if any(c.fits for c in found):
            return
        # What even the nearest miss lacks: a worker with an offer says more than one without any.
        closest = min(found, key=lambda c: (c.offer is None, len(c.shortfalls)))
        raise RequestError(f"no available provider can run this task: {'; '.join(closest.shortfalls)} "
                           f"({len(found)} checked; 'ape ichain providers TASK_DIR' lists those that can)")

    # --- posting ------------------------------------------------------------------------------
    def post(
        self,
        *,
        provider: str | None = "best",
        validator: str | None = "auto",
        price: int | None = None,
        validator_fee: int | None = None,
        timeout: int | None = None,
        confirm: Callable[[dict[str, Any]], bool] | None = None,
    ) -> int:
        """Host the task for the chosen provider only and post it with its deposit and its validator.

        Args:
            provider: An address, ``best`` (top of the ranking) or None (leave it pending).
            validator: An address or ``auto`` (the best validator the provider trusts); required.
            price: Wei for the provider (default: its asking price).
            validator_fee: Wei for the validator (default: its asking price).
            timeout: Seconds the provider has once named (default: the SDK's).
            confirm: Asked with the terms once every pre-check passed, before the deposit is sent (see
                :meth:`Market.post`); False sends nothing and raises ``NotConfirmed``.

        Returns:
            The on-chain task id.
        """
        if self.data["stage"] != "prepared":
            raise RequestError(f"session {self.data['id']} is already {self.data['stage']}")
        prov, val = self.choose_parties(provider, validator, price=price, validator_fee=validator_fee)
        if price is None:
            price = self.market.worker(prov).price if prov else self.market.worker(val).price
        if validator_fee is None:
            validator_fee = self.market.worker(val).price
        # Sealed before the id exists: a task locator at post time is bound to task id 0, and to this requester
        # and this key, so a copy re-posted by someone else does not open for the provider.
        loc = Envelope(self._keypair().public_bytes,
                       (self._offer(self.root / "task.tar", prov, "task-provider", task_id=0),)).encode() if prov else b""
        self.data.update(provider=prov, validator=val, price=int(price), validator_fee=int(validator_fee),
                         post_block=int(self._web3().eth.block_number))
        self.save()
        kwargs = {"timeout": timeout} if timeout is not None else {}
        task = self.market.post(
            bytes.fromhex(self.data["task_hash"]), validator=val, price=int(price), validator_fee=int(validator_fee),
            provider=prov, locator=loc, sender=self.account, confirm=confirm, **kwargs,
        )
        self.data["task_id"] = task.task_id
        self._log("posted", f"posted task {task.task_id} with {int(price) + int(validator_fee)} wei deposit")
        return int(task.task_id)

    def assign_provider(self, provider: str = "best") -> str:
        """Name the provider of a task posted without one (it must trust the task's validator)."""
        tid = self._require_task()
        task = self.refresh()
        if task.status != Status.Pending:
            raise RequestError(f"task {tid} is {task.status.name}: a provider is named while it is Pending")
        val = str(task.validator or self.data.get("validator"))
        if provider in ("best", "auto"):
            ranked = [w for w in self.rank_providers((val,))
                      if w.price <= task.price and self.market.trusts(w.address, val)]
            if not ranked:
                raise RequestError(f"no available provider trusts validator {val} at {_wei(task.price)}")
            provider = ranked[0].address
        # Task id 0 as at post time: the provider opens every task locator in that context (the requester and
        # this key are bound in, and it checks the archive against the task hash of the event).
        loc = Envelope(self._keypair().public_bytes,
                       (self._offer(self.root / "task.tar", provider, "task-provider", task_id=0),)).encode()
        self.market.assign_provider(tid, provider, loc, sender=self.account)
        self.data["provider"] = provider
        self._log("executing", f"provider {provider} named")
        return provider

    # --- following --------------------------------------------------------------------------
    def refresh(self) -> Task:
        """Re-read the task from chain and pick up new events (result, verdict, failure report, settlement)."""
        tid = self._require_task()
        task = self.market.task(tid)
        self._chain_task = task
        head = int(self._web3().eth.block_number)
        start = int(self.data.get("scanned", self.data.get("post_block", 0)))
        if head >= start:
            for ev in self.market.events(start, head):
                if getattr(ev, "task_id", None) == tid:
                    self._apply(ev)
            self.data["scanned"] = head + 1
        status = task.status.name
        if status != self.data.get("chain_status"):
            self.data["chain_status"] = status
            self._log(self.data["stage"], f"task {tid} is {status}")
        else:
            self.save()
        return task

    def _apply(self, ev: Any) -> None:
        """Fold one of this task's events into the session."""
        if isinstance(ev, ProviderAssigned):
            self.data["provider"] = ev.provider
        elif isinstance(ev, ResultSubmitted):
            self.data["result_hash"] = bytes(ev.result_hash).hex()
            self.data["collateral"] = int(ev.collateral)
            try:  # the provider's envelope key: the context of a provider-sealed item after the accept
                self.data["provider_key"] = Envelope.decode(bytes(ev.validator_locator)).sender_key.hex()
            except IChainError:
                self.data["provider_key"] = None
        elif isinstance(ev, VerdictSubmitted):
            self.data["accepted"] = bool(ev.accepted)
            self.data["requester_locator"] = bytes(ev.requester_locator).hex()
            refund = 0 if ev.accepted else int(self.data.get("price", 0)) + int(self.data.get("validator_fee", 0))
            self.data["settled"] = {"event": ev.name, "refund": refund, "payout": int(ev.provider_paid),
                                    "validator_paid": int(ev.validator_paid), "burned": int(ev.burned)}
        elif isinstance(ev, TaskFailed):
            self.data["settled"] = {"event": ev.name, "refund": int(ev.refund), "payout": int(ev.provider_paid),
                                    "burned": int(ev.burned)}
            self.data["failure"] = self._open_failure(bytes(ev.report))
        elif isinstance(ev, TaskRated):
            self.data["rating"] = int(ev.provider_rating)
            self.data["validator_rating"] = int(ev.validator_rating)
        elif isinstance(ev, TaskExpired):
            self.data["settled"] = {"event": ev.name, "refund": int(ev.refund), "payout": int(ev.payout)}
        elif isinstance(ev, TaskCancelled):
            self.data["settled"] = {"event": ev.name, "refund": int(ev.refund), "payout": 0}
        elif isinstance(ev, TaskDeclined):
            # decline refunds the whole escrow (the event carries no amount); the reason is the provider's own text
            refund = int(self.data.get("price", 0)) + int(self.data.get("validator_fee", 0))
            self.data["settled"] = {"event": ev.name, "refund": refund, "payout": 0}
            self.data["declined"] = one_line(bytes(ev.reason).decode(errors="replace"), 300)

    def _open_failure(self, report: bytes) -> dict:
        """Open the provider's sealed failure report; every text field neutralised for terminals and pages.

        Only the task's provider can emit TaskFailed, so the sender key written in the report is the context's.
        """
        from ichain.transfer.report import open_report, report_sender

        try:
            opened = open_report(report, self._keypair(),
                                 self.context("failure-report", sender_key=report_sender(report)))
        except Exception as err:  # a report we cannot open still ends the task: say so, never crash the follower
            return {"exit_code": None, "stage": None, "stderr_tail": "", "error_line": "",
                    "error": one_line(f"the failure report did not open: {type(err).__name__}: {err}", 300)}
        return {"exit_code": int(opened.exit_code), "stage": one_line(str(opened.stage), 20),
                "stderr_tail": neutralize(opened.stderr_tail.rstrip(), 4000, tail=True),
                "error_line": one_line(opened.error_line, 300)}

    def wait_for(self, *statuses: str | Status, timeout: float = 600.0, poll: float = 0.2,
                 on_update: Callable[[dict], None] | None = None) -> str:
        """Follow the task until its status is one of ``statuses`` (or settled); returns its name.

        ``on_update`` gets the :meth:`status` snapshot each time the on-chain status changes.

        Raises:
            RequestError: Not reached within ``timeout`` seconds.
        """
        wanted = {_status(s) for s in statuses}
        end = time.time() + timeout
        last = self.data.get("_reported")
        while True:
            status = self.refresh().status
            snap = self.status()
            if on_update and status.name != last:
                on_update(snap)
                self.data["_reported"] = status.name
            last = status.name
            if status in wanted or status in SETTLED:
                return status.name
            if time.time() > end:
                raise RequestError(f"task {self.task_id} still {status.name} after {timeout:.0f}s")
            time.sleep(poll)

    # --- the result ---------------------------------------------------------------------------
    def _result_items(self) -> builtins.list[tuple[str, bytes, bytes]]:
        """The requester locator's items with the sender key each was sealed with: item 0, the validator's verified
        copy (the envelope's key). A further item would be sealed by the provider (the key of its ResultSubmitted
        envelope); the daemon sends none, since nothing sealed to the requester may be on chain before the
        accept."""
        env = Envelope.decode(bytes.fromhex(self.data["requester_locator"]))
        keys = [("validator", env.sender_key)]
        if self.data.get("provider_key"):
            keys.append(("provider", bytes.fromhex(self.data["provider_key"])))
        return [(who, key, sealed) for (who, key), sealed in zip(keys, env.sealed)]

    def fetch_result_archive(self, on_progress: Callable[[FetchProgress], None] | None = None) -> Path:
        """Download the result (released by the accepting verdict) and check it against ``resultOf``.

        The validator's copy is tried (then any further copy the envelope holds); the first whose SHA-256 is the
        hash the chain bound and whose metadata names this task and its provider is kept.

        Args:
            on_progress: Also called with each fetch progress update (e.g. a CLI progress bar).

        Raises:
            RequestError: No accept yet, or no copy could be fetched and verified.
        """
        from ichain.transfer import HostUnreachable, Stalled, TransferError, TransferIncomplete, fetch

        path = self.root / "result.tar"
        if path.exists() and self.data.get("result_ok"):
            return path
        if not self.data.get("requester_locator"):
            self.refresh()
        if not self.data.get("accepted") or not self.data.get("requester_locator"):
            raise RequestError(f"task {self.task_id} has no result yet (it is released by an accepting verdict)")
        committed = bytes(self.market.result_of(self._require_task()) or b"").hex()

        def progress(p: FetchProgress) -> None:
            self.progress["result"] = p.snapshot()
            if on_progress is not None:
                on_progress(p)

        problems: builtins.list[str] = []
        # A host may be restarting (a daemon resumes from its state): retry each copy a while.
        end, delay = time.time() + self.fetch_patience, 0.5
        while True:
            for who, key, sealed in self._result_items():
                try:
                    self.start_host()  # its transport also fetches (Tor: our own SOCKS client)
                    assert self.host is not None
                    fetch(sealed, self._keypair(), self.context("result-requester", sender_key=key), path,
                          transport=self.host.transport, progress=progress, max_size=self.max_result_size)
                except (HostUnreachable, Stalled, TransferIncomplete) as err:
                    problems.append(f"{who}: {err}")
                    continue
                except (TransferError, OSError) as err:  # a copy that does not open: try the other one
                    problems.append(f"{who}: {err}")
                    continue
                if self._verify(path, committed):
                    self.data["result_from"] = who
                    self.data["result_ok"] = True
                    self.save()
                    return path
                problems.append(f"{who}: the copy does not match the commitment on chain")
            if time.time() + delay > end:
                raise RequestError(f"task {self.task_id}: result not fetched: {'; '.join(problems[-2:])}")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _verify(self, path: Path, committed: str) -> bool:
        """Whether the fetched archive is the committed result, made for this task by its provider."""
        from ichain.sandbox import PackageError, read_result_meta

        if not path.exists() or sha256_file(path).hex() != committed or committed != self.data.get("result_hash"):
            path.unlink(missing_ok=True)
            return False
        try:
            meta = read_result_meta(path)
        except PackageError:
            path.unlink(missing_ok=True)
            return False
        provider = self.data.get("provider")
        if meta.task_id != self.task_id or provider is None or meta.provider.lower() != provider.lower():
            path.unlink(missing_ok=True)
            return False
        return True

    def fetch_result(self, dest: str | Path | None = None,
                     on_progress: Callable[[FetchProgress], None] | None = None) -> Path:
        """Download, verify and unpack the result into ``dest`` (default: the session's ``result/``)."""
        from ichain.sandbox import unpack_result

        archive = self.fetch_result_archive(on_progress)
        dest = Path(dest) if dest else self.root / "result"
        part = dest.with_name(dest.name + ".part")
        shutil.rmtree(part, ignore_errors=True)
        unpack_result(archive, part)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(part, dest)
        self.data["result_dir"] = str(dest)
        self.data["metrics"] = read_metrics(dest)
        self._log("fetched", f"result in {dest}")
        return dest

    def failure(self) -> dict | None:
        """The opened failure report of a Failed task (exit code, stage, neutralised stderr tail), or None."""
        if self.data.get("failure") is None and self.task_id is not None:
            self.refresh()
        return self.data.get("failure")

    # --- settling -----------------------------------------------------------------------------
    def rate(self, provider_rating: int, validator_rating: int = 0,
             confirm: Callable[[], bool] | None = None) -> None:
        """Rate the provider (1..5) and, optionally, the validator (1..5; 0: not rated; 0 on a failed task).

        There is no default: the requester gives the rating itself (``--rating``, a prompt, the page).
        ``confirm`` is asked once the SDK's checks passed, before sending (False: ``NotConfirmed``, nothing sent).

        Raises:
            InvalidRating: A rating out of range (the SDK's check, before anything is sent).
        """
        tid = self._require_task()
        self.market.rate(tid, int(provider_rating), int(validator_rating), sender=self.account, confirm=confirm)
        self.data["rating"] = int(provider_rating)
        self.data["validator_rating"] = int(validator_rating)
        self.refresh()
        self._log("rated", f"rated provider {provider_rating}"
                  + (f", validator {validator_rating}" if validator_rating else ""))

    def refund(self) -> str:
        """Get the deposit back: cancel while pending, or expire a task past its deadline."""
        tid = self._require_task()
        if self.refresh().status == Status.Pending:
            self.market.cancel(tid, sender=self.account)
            how = "cancelled"
        else:
            self.market.expire(tid, sender=self.account)
            how = "expired"
        self.refresh()
        self._log("refunded", f"task {tid} {how}")
        return how

    # --- the snapshot ---------------------------------------------------------------------------
    def status(self) -> dict:
        """A JSON-able snapshot: stage, on-chain status and deadline, parties, amounts, progress."""
        with self._lock:
            snap = {k: v for k, v in self.data.items() if k not in ("requester_locator",)}
        task = self._chain_task
        if task is not None:
            snap["deadline"] = task.deadline
            snap["chain_status"] = task.status.name
        uploads: dict[str, dict] = {}
        if self.host is not None:
            for role, tid in self.data.get("uploads", {}).items():
                try:
                    uploads[role] = self.host.progress(tid)
                except IChainError:  # no longer served
                    continue
        snap["progress"] = {"download": self.progress.get("result"), "uploads": uploads}
        return snap


def read_metrics(folder: Path) -> dict:
    """The metrics a task wrote (any ``*.json`` with numbers at the top of its output), for display."""
    out: dict = {}
    for path in sorted(Path(folder).rglob("*.json"))[:5]:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            out.update({k: v for k, v in data.items() if isinstance(v, (int, float, str, bool))})
    return out


__all__ = ["RATEABLE", "RequestError", "RequesterSession", "SETTLED", "TERMINAL", "read_metrics",
           "validator_rank_key"]
