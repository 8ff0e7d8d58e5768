"""The requester flow, as one session object driven by the CLI (``ape ichain submit``) and the web page.

A :class:`RequesterSession` walks a task through the market::

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

import json
import os
import secrets
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

from ichain.config import IChainConfig
from ichain.transfer.envelope import Envelope
from ichain.daemon.provider import ZERO, as_bytes, field_of, same, status_name
from ichain.files import sha256_file
from ichain.net import free_port
from ichain.tor import transport_for
from ichain.errors import IChainError

TERMINAL = ("Completed", "Closed", "Cancelled", "Expired")
#: Gas limit for expire() (it costs under 60k); given explicitly so no estimate runs on a stale block.


class RequestError(IChainError):
    """A requester action can't be done now (wrong stage, no provider available, no result yet...)."""


def _write_json(path: Path, data: dict) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(part, path)


class RequesterSession:
    """One task, from a folder on disk to a finalized, rated result.

    Args:
        root: The session's folder.
        data: Its persisted state.
        market: The SDK market on the connected network.
        account: The requester's Ape account.
        config: iChain settings.
    """

    def __init__(self, root: Path, data: dict, *, market: Any, account: Any, config: IChainConfig):
        self.root = Path(root)
        self.data = data
        self.market = market
        self.account = account
        self.config = config
        self.host = None
        self.keypair = None
        self.progress: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._chain_task: Any = None
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
    def prepare(cls, task_dir: str | Path, *, market: Any, account: Any, config: IChainConfig) -> "RequesterSession":
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
            "task_name": str(field_of(spec, "name", default=task_dir.name)),
            "task_hash": digest.hex(),
            "task_size": (root / "task.tar").stat().st_size,
            "stage": "prepared",
            "created": time.time(),
            "requester": str(account.address),
            "chain_id": int(cls._web3().eth.chain_id),
            "market": cls._market_address(market),
            "history": [],
        }
        session = cls(root, data, market=market, account=account, config=config)
        session._log("prepared", f"packaged {data['task_name']} ({data['task_size']} bytes)")
        return session

    @classmethod
    def load(cls, session_id: str, *, market: Any, account: Any, config: IChainConfig) -> "RequesterSession":
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
    def list(cls, *, config: IChainConfig, address: str) -> list[dict]:
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
            _write_json(self.root / "session.json", self.data)

    def _log(self, stage: str, message: str) -> None:
        with self._lock:
            self.data["stage"] = stage
            self.data["history"].append({"t": time.time(), "stage": stage, "message": message})
            self.save()

    @staticmethod
    def _web3() -> Any:
        from ape import chain

        return chain.provider.web3

    @staticmethod
    def _market_address(market: Any) -> str:
        return str(field_of(market, "address", default="") or market.contract.address)

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

        task_id = self.data.get("task_id", self.data.get("predicted_id"))
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
        self.host = ChunkHost(self.root / "host", transport=transport_for(self.config, int(port), self.root))
        self.host.start()

    def _keypair(self) -> Any:
        from ichain.transfer import KeyPair

        if self.keypair is None:
            self.keypair = KeyPair.load_or_create(self.config.account_dir(self.account.address) / "x25519.key")
        return self.keypair

    def close(self) -> None:
        """Stop hosting (files stay on disk; :meth:`start_host` serves them again)."""
        if self.host is not None:
            try:
                self.host.stop()
                if callable(close := getattr(self.host.transport, "close", None)):
                    close()  # a TorTransport stops the tor it launched
            finally:
                self.host = None

    def _offer(self, path: Path, worker: str, role: str) -> bytes:
        key = as_bytes(field_of(self.market.worker(worker), "enc_key", "encKey"))
        self.start_host()
        sealed = self.host.offer(path, key, self.context(role))
        tid = getattr(sealed, "transfer_id", None)
        if tid:
            self.data.setdefault("uploads", {})[role] = str(tid)
            self.save()
        return sealed

    # --- choosing parties ---------------------------------------------------------------------
    def rank_providers(self, exclude: tuple[str, ...] = ()) -> list[Any]:
        """Available workers ranked by rating then price, without the requester and ``exclude``."""
        skip = {str(a).lower() for a in (self.account.address, *exclude) if a}
        return [w for w in self.market.providers() if str(field_of(w, "address")).lower() not in skip]

    def _pick(self, choice: str | None, exclude: tuple[str, ...], what: str) -> str | None:
        if choice in (None, "", "none"):
            return None
        if choice in ("best", "auto"):
            ranked = self.rank_providers(exclude)
            if not ranked:
                raise RequestError(f"no available worker to act as {what}")
            return str(field_of(ranked[0], "address"))
        return str(choice)

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
        prov = self._pick(provider, (), "provider")
        val = self._pick(validator, (prov,) if prov else (), "validator")
        if price is None:
            price = int(field_of(self.market.worker(prov), "price", default=0)) if prov else 0
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
        task_id = int(field_of(task, "task_id", "id"))
        self.data["task_id"] = task_id
        # (Another post may have taken the expected id: the envelopes name the id they were sealed for.)
        self._log("posted", f"posted task {task_id} with {int(price) + int(validator_fee)} wei deposit")
        return task_id

    def assign_provider(self, provider: str = "best") -> str:
        """Name the provider of a task posted without one."""
        tid = self._require_task()
        prov = self._pick(provider, (self.data.get("validator"),), "provider")
        loc = Envelope(self._keypair().public_bytes, (self._offer(self.root / "task.tar", prov, "task-provider"),))
        self.market.assign_provider(tid, prov, loc.encode(), sender=self.account)
        self.data["provider"] = prov
        self._log("executing", f"provider {prov} named")
        return prov

    def choose_validator(self, validator: str = "auto") -> str:
        """Name the validator after the result: re-host the task and the (verified) result for it."""
        tid = self._require_task()
        task = self.refresh()
        if status_name(task) not in ("AwaitingValidator", "Validating"):
            raise RequestError(f"task {tid} is {status_name(task)}: a validator is named after the result")
        val = self._pick(validator, (self.data.get("provider"), field_of(task, "validator")), "validator")
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
    def refresh(self) -> Any:
        """Re-read the task from chain and pick up new events (result locator, verdict)."""
        tid = self._require_task()
        task = self.market.task(tid)
        self._chain_task = task
        head = int(self._web3().eth.block_number)
        start = int(self.data.get("scanned", self.data.get("post_block", 0)))
        if head >= start:
            for ev in self.market.events(start, head):
                if int(field_of(ev, "task_id", "taskId", default=-1)) != tid:
                    continue
                name = field_of(ev, "event_name", "name")
                if name == "ResultSubmitted":
                    self.data["result_hash"] = as_bytes(field_of(ev, "result_hash", "resultHash")).hex()
                    self.data["result_locator"] = as_bytes(
                        field_of(ev, "requester_locator", "requesterLocator")).hex()
                elif name == "VerdictSubmitted":
                    self.data["accepted"] = bool(field_of(ev, "accepted"))
                elif name == "ProviderAssigned":
                    self.data["provider"] = str(field_of(ev, "provider"))
                elif name == "ValidatorAssigned":
                    self.data["validator"] = str(field_of(ev, "validator"))
                elif name in ("TaskFinalized", "TaskExpired", "TaskCancelled"):
                    self.data["settled"] = {k: (int(v) if isinstance(v, int) else str(v)) for k, v in {
                        "event": name, "refund": field_of(ev, "refund", default=0),
                        "payout": field_of(ev, "payout", "paid", default=0)}.items()}
            self.data["scanned"] = head + 1
        status = status_name(task)
        if status != self.data.get("chain_status"):
            self.data["chain_status"] = status
            self._log(self.data["stage"], f"task {tid} is {status}")
        else:
            self.save()
        return task

    def wait_for(self, *statuses: str, timeout: float = 600.0, poll: float = 0.2,
                 on_update: Callable[[dict], None] | None = None) -> str:
        """Follow the task until its status is one of ``statuses`` (or terminal); returns it.

        ``on_update`` gets the :meth:`status` snapshot each time the on-chain status changes.

        Raises:
            RequestError: Not reached within ``timeout`` seconds.
        """
        end = time.time() + timeout
        last = self.data.get("_reported")
        while True:
            status = status_name(self.refresh())
            snap = self.status()
            if on_update and status != last:
                on_update(snap)
                self.data["_reported"] = status
            last = status
            if status in statuses or status in TERMINAL:
                return status
            if time.time() > end:
                raise RequestError(f"task {self.task_id} still {status} after {timeout:.0f}s")
            time.sleep(poll)

    def overdue(self) -> bool:
        """Whether the task's current deadline has passed (by the chain's clock)."""
        task = self._chain_task or self.refresh()
        # One second of margin: the node's next block may still carry the deadline's second.
        return self.market.now() > int(field_of(task, "deadline", default=0) or 0) + 1

    # --- the result ---------------------------------------------------------------------------
    def fetch_result_archive(self, on_progress: Callable[[Any], None] | None = None) -> Path:
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

        def progress(p: Any) -> None:
            self.progress["result"] = _jsonable(p)
            if on_progress is not None:
                on_progress(p)

        # The provider's host may be restarting (its daemon resumes from its state): retry a while.
        from ichain.transfer import HostUnreachable, Stalled, TransferIncomplete

        end, delay = time.time() + self.fetch_patience, 0.5
        while True:
            try:
                self.start_host()  # its transport also fetches (Tor: our own SOCKS client)
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
        if int(field_of(meta, "task_id", default=-1)) != int(self.task_id) or not same(
            field_of(meta, "provider"), self.data.get("provider")
        ):
            raise RequestError(f"task {self.task_id}: the result was made for another task or provider")
        self.data["result_ok"] = True
        self.save()
        return path

    def fetch_result(self, dest: str | Path | None = None,
                     on_progress: Callable[[Any], None] | None = None) -> Path:
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
        """Rate the provider (1..5) and release payment (after an accept) or close (after a reject)."""
        tid = self._require_task()
        if not 1 <= int(rating) <= 5:
            raise RequestError(f"rating must be between 1 and 5, not {rating}")
        self.market.finalize(tid, int(rating), sender=self.account)
        self.data["rating"] = int(rating)
        self.refresh()
        self._log("finalized", f"rated {rating}")

    def refund(self) -> str:
        """Get the deposit back: cancel while pending, or expire a task past its deadline."""
        tid = self._require_task()
        task = self.refresh()
        status = status_name(task)
        if status == "Pending":
            self.market.cancel(tid, sender=self.account)
            how = "cancelled"
        else:
            # A fixed gas limit: estimating would run against the last block, whose timestamp on a
            # quiet automine chain is still before the deadline (the new block's is not).
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
            snap["deadline"] = int(field_of(task, "deadline", default=0) or 0)
            snap["chain_status"] = status_name(task)
        uploads = {}
        if self.host is not None:
            for role, tid in self.data.get("uploads", {}).items():
                try:
                    uploads[role] = _jsonable(self.host.progress(tid))
                except IChainError:  # no longer served
                    continue
        snap["progress"] = {"download": self.progress.get("result"), "uploads": uploads}
        return snap


def _jsonable(value: Any) -> Any:
    """Best-effort conversion of a progress object into JSON-able data."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    for attr in ("to_dict", "snapshot", "as_dict", "model_dump"):
        if callable(getattr(value, attr, None)):
            return _jsonable(getattr(value, attr)())
    if hasattr(value, "__dataclass_fields__"):
        import dataclasses

        return _jsonable(dataclasses.asdict(value))
    return str(value)


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


__all__ = ["RequestError", "RequesterSession", "TERMINAL", "read_metrics", "ZERO"]
