"""The requester's session: one task, from a folder on disk to a finalized, rated result.

A :class:`RequesterSession` walks a task through the market (the round with its recovery policy,
:func:`ichain.requester.flow.run_round`, drives it for ``ape ichain submit`` and the demo)::

    s = RequesterSession.prepare("examples/digits", market=market, account=acct, config=cfg)  # checks, packs
    s.post(provider="best", validator=None)      # hosts the task (sealed to the provider), posts the deposit
    s.wait_for("AwaitingValidator", "Validating", "Accepted", "Rejected")   # follow with progress
    s.choose_validator("auto")                   # re-hosts task + result for the validator
    s.wait_for("Accepted", "Rejected")
    s.fetch_result()                             # downloads, checks hash + meta, unpacks into a folder
    s.finalize(5)
    s.close()

Its state lives in ``<state_dir>/<account>/requests/<id>/session.json`` (written atomically), so a
web server can list and show sessions and a restarted process resumes one with
:meth:`RequesterSession.load`. :meth:`RequesterSession.status` returns a JSON-able snapshot with the
on-chain status, deadlines, chosen parties, and per-chunk transfer progress.
"""

from __future__ import annotations

import builtins
import json
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
from ichain.market import (
    Market, ProviderAssigned, ResultSubmitted, Status, Task, TaskCancelled, TaskExpired, TaskFinalized,
    ValidatorAssigned, VerdictSubmitted, Worker,
)
from ichain.net import free_port
from ichain.tor import TorTransport, transport_for
from ichain.transfer.envelope import Envelope

if TYPE_CHECKING:
    from ichain.transfer import ChunkHost, KeyPair
    from ichain.transfer.progress import FetchProgress

#: Statuses after which nothing more happens to a task (Rejected still waits for its rating).
TERMINAL = frozenset({Status.Completed, Status.Closed, Status.Cancelled, Status.Expired})


def _status(value: str | Status) -> Status:
    return value if isinstance(value, Status) else Status[value]


class RequestError(IChainError):
    """A requester action can't be done now (wrong stage, no provider available, no result yet...)."""


class RequesterSession:
    """One task, from a folder on disk to a finalized, rated result.

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
        #: Seconds to keep retrying a result fetch while the provider's host is unreachable.
        self.fetch_patience = 120.0

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
        load_task(task_dir)  # raises TaskFormatError before anything else happens
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

    def context(self, role: str) -> Any:
        """The transfer context of this task for ``role``."""
        from ichain.transfer import TransferContext

        task_id = self.data["task_id"] if self.task_id is not None else self.data["predicted_id"]
        return TransferContext(self.data["chain_id"], self.data["market"], int(task_id), role)

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

    def _offer(self, path: Path, worker: str, role: str) -> bytes:
        key = self.market.worker(worker).enc_key
        self.start_host()
        assert self.host is not None
        sealed = self.host.offer(path, key, self.context(role))
        self.data.setdefault("uploads", {})[role] = sealed.transfer_id
        self.save()
        return sealed

    # --- choosing parties ---------------------------------------------------------------------
    def rank_providers(self, exclude: tuple[str | None, ...] = ()) -> builtins.list[Worker]:
        """Available workers ranked by rating then price, without the requester and ``exclude``."""
        skip = {a.lower() for a in (str(self.account.address), *exclude) if a}
        return [w for w in self.market.providers() if w.address.lower() not in skip]

    def pick(self, choice: str | None, exclude: tuple[str | None, ...], what: str) -> str | None:
        """The worker ``choice`` names: an address, ``best``/``auto`` (top of the ranking without
        ``exclude``), or None (``None``, ``""``, ``"none"``: nobody yet).

        Raises:
            RequestError: ``best``/``auto`` and no available worker is left.
        """
        if choice in (None, "", "none"):
            return None
        if choice in ("best", "auto"):
            ranked = self.rank_providers(exclude)
            if not ranked:
                raise RequestError(f"no available worker to act as {what}")
            return ranked[0].address
        return str(choice)

    def _pick_one(self, choice: str, exclude: tuple[str | None, ...], what: str) -> str:
        picked = self.pick(choice, exclude, what)
        if picked is None:
            raise RequestError(f"name a {what}: an address or 'auto'")
        return picked

    # --- posting ------------------------------------------------------------------------------
    def post(
        self,
        *,
        provider: str | None = "best",
        validator: str | None = None,
        price: int | None = None,
        validator_fee: int = 0,
        timeout: int | None = None,
    ) -> int:
        """Host the task for the chosen provider (and validator) and post it with its deposit.

        Args:
            provider: An address, ``best`` (top of the ranking) or None (leave it pending).
            validator: An address, ``auto`` (best other worker) or None (choose after the result).
            price: Wei for the provider (default: its asking price).
            validator_fee: Wei for the validator.
            timeout: Seconds the provider has once named (default: the contract's minimum or SDK default).

        Returns:
            The on-chain task id.
        """
        if self.data["stage"] != "prepared":
            raise RequestError(f"session {self.data['id']} is already {self.data['stage']}")
        prov = self.pick(provider, (), "provider")
        val = self.pick(validator, (prov,), "validator")
        if price is None:
            price = self.market.worker(prov).price if prov else 0
        self.data["predicted_id"] = int(self.market.last_task_id()) + 1
        task_file = self.root / "task.tar"
        me = self._keypair().public_bytes
        # Sealed before the id exists: the envelope names the id the context was made for.
        pid = self.data["predicted_id"]
        prov_loc = Envelope(me, (self._offer(task_file, prov, "task-provider"),), pid).encode() if prov else b""
        val_loc = Envelope(me, (self._offer(task_file, val, "task-validator"),), pid).encode() if val else b""
        self.data.update(provider=prov, validator=val, price=int(price), validator_fee=int(validator_fee),
                         post_block=int(self._web3().eth.block_number))
        self.save()
        kwargs = {"timeout": timeout} if timeout is not None else {}
        task = self.market.post(
            bytes.fromhex(self.data["task_hash"]), price=int(price), validator_fee=int(validator_fee),
            provider=prov, validator=val, provider_locator=prov_loc, validator_locator=val_loc,
            sender=self.account, **kwargs,
        )
        task_id = task.task_id
        self.data["task_id"] = task_id
        # Another post may have taken the expected id: the envelopes name the id they were sealed for.
        self._log("posted", f"posted task {task_id} with {int(price) + int(validator_fee)} wei deposit")
        return task_id

    def assign_provider(self, provider: str = "best") -> str:
        """Name the provider of a task posted without one."""
        tid = self._require_task()
        prov = self._pick_one(provider, (self.data.get("validator"),), "provider")
        loc = Envelope(self._keypair().public_bytes, (self._offer(self.root / "task.tar", prov, "task-provider"),))
        self.market.assign_provider(tid, prov, loc.encode(), sender=self.account)
        self.data["provider"] = prov
        self._log("executing", f"provider {prov} named")
        return prov

    def choose_validator(self, validator: str = "auto") -> str:
        """Name the validator after the result: re-host the task and the (verified) result for it."""
        tid = self._require_task()
        task = self.refresh()
        if task.status not in (Status.AwaitingValidator, Status.Validating):
            raise RequestError(f"task {tid} is {task.status.name}: a validator is named after the result")
        val = self._pick_one(validator, (task.provider, task.validator), "validator")
        result = self.fetch_result_archive()
        loc = Envelope(self._keypair().public_bytes, (
            self._offer(self.root / "task.tar", val, "task-validator"),
            self._offer(result, val, "result-validator"),
        ))
        self.market.assign_validator(tid, val, loc.encode(), sender=self.account)
        self.data["validator"] = val
        self._log("validating", f"validator {val} named")
        return val

    # --- following --------------------------------------------------------------------------
    def refresh(self) -> Task:
        """Re-read the task from chain and pick up new events (result locator, verdict)."""
        tid = self._require_task()
        task = self.market.task(tid)
        self._chain_task = task
        head = int(self._web3().eth.block_number)
        start = int(self.data.get("scanned", self.data.get("post_block", 0)))
        if head >= start:
            for ev in self.market.events(start, head):
                if isinstance(ev, ResultSubmitted) and ev.task_id == tid:
                    self.data["result_hash"] = ev.result_hash.hex()
                    self.data["result_locator"] = ev.requester_locator.hex()
                elif isinstance(ev, VerdictSubmitted) and ev.task_id == tid:
                    self.data["accepted"] = ev.accepted
                elif isinstance(ev, ProviderAssigned) and ev.task_id == tid:
                    self.data["provider"] = ev.provider
                elif isinstance(ev, ValidatorAssigned) and ev.task_id == tid:
                    self.data["validator"] = ev.validator
                elif isinstance(ev, TaskFinalized) and ev.task_id == tid:
                    self.data["settled"] = {"event": ev.name, "refund": 0, "payout": ev.paid}
                elif isinstance(ev, TaskExpired) and ev.task_id == tid:
                    self.data["settled"] = {"event": ev.name, "refund": ev.refund, "payout": ev.payout}
                elif isinstance(ev, TaskCancelled) and ev.task_id == tid:
                    self.data["settled"] = {"event": ev.name, "refund": ev.refund, "payout": 0}
            self.data["scanned"] = head + 1
        status = task.status.name
        if status != self.data.get("chain_status"):
            self.data["chain_status"] = status
            self._log(self.data["stage"], f"task {tid} is {status}")
        else:
            self.save()
        return task

    def wait_for(self, *statuses: str | Status, timeout: float = 600.0, poll: float = 0.2,
                 on_update: Callable[[dict], None] | None = None) -> str:
        """Follow the task until its status is one of ``statuses`` (or terminal); returns its name.

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
            if status in wanted or status in TERMINAL:
                return status.name
            if time.time() > end:
                raise RequestError(f"task {self.task_id} still {status.name} after {timeout:.0f}s")
            time.sleep(poll)

    # --- the result ---------------------------------------------------------------------------
    def fetch_result_archive(self, on_progress: Callable[[FetchProgress], None] | None = None) -> Path:
        """Download the result archive (sealed to us), check it against the on-chain commitment.

        Args:
            on_progress: Also called with each fetch progress update (e.g. a CLI progress bar).
        """
        from ichain.transfer import fetch

        path = self.root / "result.tar"
        if path.exists() and self.data.get("result_ok"):
            return path
        if not self.data.get("result_locator"):
            self.refresh()
        if not self.data.get("result_locator"):
            raise RequestError(f"task {self.task_id} has no result yet")
        env = Envelope.decode(bytes.fromhex(self.data["result_locator"]))

        def progress(p: FetchProgress) -> None:
            self.progress["result"] = p.snapshot()
            if on_progress is not None:
                on_progress(p)

        # The provider's host may be restarting (its daemon resumes from its state): retry a while.
        from ichain.transfer import HostUnreachable, Stalled, TransferIncomplete

        end, delay = time.time() + self.fetch_patience, 0.5
        while True:
            try:
                self.start_host()  # its transport also fetches (Tor: our own SOCKS client)
                assert self.host is not None
                fetch(env.sealed[0], self._keypair(), self.context("result-requester"), path,
                      transport=self.host.transport, progress=progress)
                break
            except (HostUnreachable, Stalled, TransferIncomplete) as err:
                if time.time() + delay > end:
                    raise RequestError(f"task {self.task_id}: result not fetched: {err}") from None
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        if sha256_file(path).hex() != self.data["result_hash"]:
            path.unlink()
            raise RequestError(f"task {self.task_id}: the result does not match the commitment on chain")
        from ichain.sandbox import read_result_meta

        meta = read_result_meta(path)
        provider = self.data.get("provider")
        if meta.task_id != self.task_id or provider is None or meta.provider.lower() != provider.lower():
            raise RequestError(f"task {self.task_id}: the result was made for another task or provider")
        self.data["result_ok"] = True
        self.save()
        return path

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

    # --- settling -----------------------------------------------------------------------------
    def finalize(self, rating: int) -> None:
        """Rate the provider (1..5) and release payment (after an accept) or close (after a reject).

        Raises:
            InvalidRating: Not an integer in 1..5 (the SDK's check, before anything is sent).
        """
        tid = self._require_task()
        self.market.finalize(tid, rating, sender=self.account)
        self.data["rating"] = rating
        self.refresh()
        self._log("finalized", f"rated {rating}")

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
            snap = {k: v for k, v in self.data.items() if k not in ("result_locator",)}
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


__all__ = ["RequestError", "RequesterSession", "TERMINAL", "read_metrics"]
