"""What the web page reads and does, on the same SDK and state as the CLI.

:class:`WebService` holds the selected account, the market SDK (:mod:`ichain.market`), the requester
sessions (:mod:`ichain.requester`) and, for the provider dashboard, a report of a provider daemon's state
that its caller supplies (``ape ichain web`` reads it through the daemon's command; the page never
opens a daemon's files itself). It implements no rule of its own: every action is an SDK or requester-session call, whose typed
pre-checks raise an ``IChainError`` before a doomed transaction is sent; the page shows that line.
Reads are turned into plain dicts for the templates and the JSON endpoints.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable

from eth_utils import is_address, to_checksum_address

from ichain.errors import IChainError
from ichain.market import Status, Task, Worker
from ichain.requester.format import eth
from ichain.sandbox import PackageError, unpack_upload
from ichain.web.errors import NoAccount, NotReady, WebInputError
from ichain.web.format import parse_eth, user_message
from ichain.web.providers import EventTally, provider_view
from ichain.web.sessions import Sessions

if TYPE_CHECKING:
    from ichain.market import Market

#: Largest upload accepted (the task archive), and its unpacked size.
MAX_UPLOAD = 256 * 1024 * 1024
MAX_UNPACKED = 1024 * 1024 * 1024

#: Items listed per pool (the count shows the total).
POOL_SHOWN = 25

#: The pools shown by the viewer, in lifecycle order (keys of :meth:`WebService.pools`).
POOLS = [("pending", "Pending tasks"), ("available", "Available workers"), ("executing", "Executing"),
         ("validating", "Validating")]


@dataclass
class Staged:
    """An uploaded task archive unpacked into a private folder."""

    name: str
    folder: Path


class WebService:
    """The page's model: reads as dicts, actions through the SDK and the requester sessions.

    Args:
        account: The Ape account that signs (``None``: read-only page, actions explain why not).
        market_factory: Returns the connected :class:`ichain.market.Market`; called lazily so that a
            network without a deployment shows its error on the page instead of stopping the server.
        config: iChain settings (state dir, transport...), from :func:`ichain.config.load_config`.
        tasks_root: Folder whose sub-folders are offered as task folders (default ``./examples``).
        daemon_state: Reports the state of the provider daemon of an address on this machine, or None when it
            has none: a dict with ``file``, ``checkpoint``, ``port``, ``last_seen`` (Unix time), ``tasks``
            (``task_id``, ``role``, ``stage``, ``updated``) and ``transactions`` (a list). It may raise an
            ``IChainError`` when the state can't be read. Without it the dashboard shows no daemon.
        cache_seconds: How long a rendered read is reused across live clients.
    """

    def __init__(
        self,
        *,
        account: Any = None,
        market_factory: Callable[[], Any] | None = None,
        config: Any = None,
        tasks_root: str | Path | None = None,
        daemon_state: Callable[[str], dict[str, Any] | None] | None = None,
        cache_seconds: float = 0.3,
    ) -> None:
        if config is None:
            from ichain.config import load_config

            config = load_config()
        self.account = account
        self.config = config
        self.tasks_root = Path(tasks_root) if tasks_root else Path.cwd() / "examples"
        self.daemon_state = daemon_state
        self._market_factory = market_factory
        self._market: Market | None = None
        self._lock = threading.RLock()
        self._act_lock = threading.Lock()  # one signed action at a time (nonces)
        self._cache: dict[Any, tuple[float, Any]] = {}
        self._cache_seconds = cache_seconds
        self._generation = 0
        self._chain_cache: dict[Any, tuple[int, Any]] = {}
        self.uploads_dir = Path(config.state_dir) / "web-uploads"
        #: Workers' counts and earnings folded from the market's events (the provider dashboard's).
        self.tally = EventTally()
        self.sessions = Sessions(self)

    # ---- connection --------------------------------------------------------------------------
    def market(self) -> Market:
        """The market SDK for the connected network.

        Raises:
            IChainError: No deployment on this network (the wrong network), node unreachable.
        """
        with self._lock:
            if self._market is None:
                if self._market_factory is not None:
                    self._market = self._market_factory()
                else:
                    from ichain.market import Market

                    self._market = Market.from_deployment()
            return self._market

    def network(self) -> dict:
        """Name and chain id of the connected network, and the market address or the error."""
        info: dict[str, Any] = {"name": "not connected", "chain_id": None, "market": None, "error": None}
        try:
            from ape import chain, networks

            provider = networks.active_provider
            if provider is not None:
                info["name"] = provider.network.name if provider.network.name != "custom" else provider.uri
                info["name"] = f"{provider.network.ecosystem.name}:{info['name']}"
                info["chain_id"] = chain.chain_id
        except Exception as err:  # the node went away: say so, keep serving
            info["error"] = f"Cannot reach the Ethereum node: {type(err).__name__}"
            return info
        try:
            info["market"] = str(self.market().address)
        except IChainError as err:
            info["error"] = str(err)
        return info

    def require_account(self) -> Any:
        """The signing account, or a clear error when the page was started without one."""
        if self.account is None:
            raise NoAccount()
        return self.account

    def _cached(self, key: Any, compute: Callable[[], Any]) -> Any:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit and now - hit[0] < self._cache_seconds:
            return hit[1]
        generation = self._generation
        value = compute()
        if generation == self._generation:  # a read that overlapped an action is not reused
            self._cache[key] = (now, value)
        return value

    def at_head(self, key: Any, compute: Callable[[], Any]) -> Any:
        """A chain read reused until the next block (chain state only changes with blocks).

        One ``eth_blockNumber`` per refresh replaces the dozens of calls the pools, workers,
        balances and task records take, so many open pages cost little on a quiet chain.
        """
        from ape import chain

        head = chain.blocks.height
        with self._lock:
            hit = self._chain_cache.get(key)
            if hit is not None and hit[0] == head:
                return hit[1]
        value = compute()
        with self._lock:
            if len(self._chain_cache) > 4096:
                self._chain_cache.clear()
            self._chain_cache[key] = (head, value)
        return value

    def chain_task(self, task_id: int) -> Task:
        """The SDK's record of a task, read once per block."""
        return self.at_head(("task", int(task_id)), lambda: self.market().task(int(task_id)))

    def invalidate(self) -> None:
        """Forget cached reads (after an action, so the page shows its effect at once)."""
        self._generation += 1
        self._cache.clear()

    # ---- reads -------------------------------------------------------------------------------
    def overview(self) -> dict:
        """Network, account address, balance and withdrawable credit."""
        net = self.network()
        account = None
        if self.account is not None:
            address = str(self.account.address)
            balance = self.at_head(("balance", address), lambda: int(self.account.balance))
            account = {"address": address, "balance": balance, "credit": 0}
            if not net["error"]:
                account["credit"] = self.at_head(("credit", address),
                                                 lambda: int(self.market().credit(address)))
        return {"net": net, "account": account}

    def providers(self) -> list[dict]:
        """Available workers ranked by provider score (count-aware, the SDK's ranking), then price."""
        try:
            market = self.market()
        except IChainError:
            return []
        return self.at_head("providers", lambda: self._provider_rows(market))

    def _provider_rows(self, market: Market) -> list[dict]:
        """Each available worker's row with its published hardware (``hardware``: one line, ``offer``: the
        offer's JSON or None) and ``unfit``: folder path -> why it cannot run the task in that folder."""
        from ichain.requester.matching import NO_OFFER, assess, lacks
        from ichain.sandbox import TaskFormatError, load_task

        workers = market.providers()
        found = assess(market, workers, None)
        needs = {}
        for folder in self.task_folders():
            try:
                needs[folder["path"]] = load_task(folder["path"]).needs()
            except TaskFormatError:
                continue  # an invalid folder is refused with its own line when posted
        rows = []
        for c in found:
            unfit = {}
            for path, need in needs.items():
                missing = "; ".join(lacks(c.offer, need))
                if missing:
                    unfit[path] = f"it {missing}" if missing == NO_OFFER else missing
            rows.append({**self.worker_row(c.worker), "offer": c.offer.to_json() if c.offer else None,
                         "hardware": c.offer.describe() if c.offer else "no hardware offer published",
                         "unfit": unfit})
        return rows

    def validators(self) -> list[dict]:
        """Available workers ranked by their own validator record (score, fewer missed verdicts, price), each
        with the providers that trust it (``trusted_by``)."""
        from ichain.requester import validator_rank_key

        try:
            market = self.market()
        except IChainError:
            return []

        def compute() -> list[dict]:
            workers = market.providers()
            trusted_by: dict[str, list[str]] = {w.address: [] for w in workers}
            for w in workers:
                for v in market.trusted_validators(w.address):
                    if v in trusted_by and v != w.address:
                        trusted_by[v].append(w.address)
            return [{**self.worker_row(w), "trusted_by": trusted_by[w.address]}
                    for w in sorted(workers, key=validator_rank_key)]

        return self.at_head("validators", compute)

    @staticmethod
    def worker_row(worker: Worker) -> dict:
        """A worker as the page shows it: ``score`` is its provider ranking score in stars (count-aware; the
        prior when never rated), ``ratings`` their count and ``rating`` their plain mean (None until rated);
        the validator record has its own score, count and missed verdicts."""
        prec, vrec = worker.provider_record, worker.validator_record
        return {
            "address": worker.address,
            "price": worker.price,
            "score": float(prec.score),
            "rating": (prec.sum / prec.count) if prec.count else None,
            "ratings": int(prec.count),
            "validator_score": float(vrec.score),
            "validator_ratings": int(vrec.count),
            "missed": int(worker.missed),
            "available": worker.available,
        }

    def pools(self) -> dict:
        """The pools, each ``{"items": [...], "total": n}``; items have ``key``, ``label``, ``detail``, ``mine``."""
        empty = {name: {"items": [], "total": 0} for name, _ in POOLS}
        try:
            market = self.market()
        except IChainError:
            return empty
        return self.at_head("pools", lambda: self._pools(market))

    def _pools(self, market: Market) -> dict:
        pools = market.pools()
        me = str(self.account.address) if self.account is not None else ""
        workers = {w["address"]: w for w in self.providers()}

        def task_item(task: Task) -> dict:
            # The party the task waits for in its pool.
            party, who = ((task.validator, "validator") if task.status == Status.Validating
                          else (task.provider, "provider"))
            detail = f"by {task.requester[:6]}…{task.requester[-4:]}"
            if party:
                detail += f" · {who} {party[:6]}…{party[-4:]}"
            return {"key": f"task-{task.task_id}", "label": f"Task #{task.task_id}", "detail": detail,
                    "mine": task.requester == me}

        def worker_item(address: str) -> dict:
            row = workers.get(address) or self.worker_row(market.worker(address))
            rating = f"score {row['score']:.2f} ({row['ratings']})"
            return {"key": f"worker-{address}", "label": f"{address[:6]}…{address[-4:]}",
                    "detail": f"{eth(row['price'])} · {rating}", "mine": address == me}

        task_pools = {"pending": pools.pending, "executing": pools.executing, "validating": pools.validating}
        shown = {name: ids[:POOL_SHOWN] for name, ids in task_pools.items()}  # bounded reads, however full
        task_ids = [tid for ids in shown.values() for tid in ids]
        tasks = dict(zip(task_ids, market.tasks(task_ids)))  # every task shown, in one round trip
        out = {name: {"items": [task_item(tasks[t]) for t in ids], "total": len(task_pools[name])}
               for name, ids in shown.items()}
        out["available"] = {"items": [worker_item(a) for a in pools.available[:POOL_SHOWN]],
                            "total": len(pools.available)}
        return {name: out[name] for name, _ in POOLS}

    def task_folders(self) -> list[dict]:
        """Task folders offered on the server (sub-folders of ``tasks_root``)."""
        root = self.tasks_root
        if not root.is_dir():
            return []
        return [{"name": p.name, "path": str(p)} for p in sorted(root.iterdir())
                if p.is_dir() and not p.name.startswith((".", "_"))]

    def tasks(self) -> list[dict]:
        """Tasks submitted from this page (newest first), with their status."""
        return self.sessions.list()

    def task(self, task_id: int) -> dict:
        """One task's snapshot: status, lifecycle steps, parties, per-chunk transfer progress, actions."""
        return self.sessions.snapshot(task_id)

    def provider_view(self, address: str | None) -> dict | None:
        """A provider's dashboard: market record, rating, earnings, daemon state and history."""
        if not address:
            return None
        address = address.strip()
        if not is_address(address):
            raise WebInputError(f"Provider address: {address!r} is not an Ethereum address")
        address = to_checksum_address(address)
        return provider_view(self, address)

    def context(self, *, view: str, task_id: int | None = None, provider: str | None = None) -> dict:
        """Everything the templates of one view need (cached briefly across live clients)."""
        return self._cached((view, task_id, provider), lambda: self._context(view, task_id, provider))

    def _context(self, view: str, task_id: int | None, provider: str | None) -> dict:
        ov = self.overview()
        ctx: dict[str, Any] = {
            **ov, "alert": None, "pools": {name: {"items": [], "total": 0} for name, _ in POOLS},
            "tasks": [], "task": None, "providers": [], "validators": [], "folders": self.task_folders(),
            "tasks_root": str(self.tasks_root), "provider_view": None,
            "default_price": "0.01", "default_fee": "0.001",
        }
        if ov["net"]["error"]:  # wrong network / node gone: the banner says it, nothing else to read
            return ctx
        try:
            if view in ("requester", "pools"):
                ctx["pools"] = self.pools()
            if view == "requester":
                ctx["tasks"] = self.tasks()
                if task_id is None and ctx["tasks"]:
                    task_id = ctx["tasks"][0]["id"]
                ctx["providers"] = self.providers()
                ctx["validators"] = self.validators()
                if ctx["providers"]:
                    # A fee must reach the validator's asking price (protocol v2): offer the lowest one asked.
                    best = min(p["price"] for p in ctx["providers"])
                    ctx["default_price"] = _ether_text(max(best, 1))
                    ctx["default_fee"] = _ether_text(max(best, 1))
                ctx["task"] = self.task(task_id) if task_id is not None else None
            if view == "provider":
                if provider is None and self.account is not None:
                    provider = str(self.account.address)
                ctx["provider_view"] = self.provider_view(provider)
        except IChainError as err:
            ctx["alert"] = user_message(err)
        return ctx

    # ---- uploads -----------------------------------------------------------------------------
    def stage_upload(self, filename: str, stream: IO[bytes]) -> Staged:
        """Save an uploaded .zip/.tar(.gz) and unpack it safely into a private folder.

        Raises:
            WebInputError: Not an archive, too big, or an entry escaping the folder.
        """
        name = Path(filename).name
        lower = name.lower()
        if not lower.endswith((".zip", ".tar", ".tar.gz", ".tgz")):
            raise WebInputError(f"Upload {name!r}: send the task folder as a .zip, .tar or .tar.gz")
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="task-", dir=self.uploads_dir))
        archive = workdir / "upload.part"
        size = 0
        with open(archive, "wb") as out:
            while chunk := stream.read(1 << 20):
                size += len(chunk)
                if size > MAX_UPLOAD:
                    shutil.rmtree(workdir, ignore_errors=True)
                    raise WebInputError(f"Upload {name!r} is larger than {MAX_UPLOAD >> 20} MiB")
                out.write(chunk)
        stem = name
        for suffix in (".tar.gz", ".tgz", ".zip", ".tar"):
            if lower.endswith(suffix):
                stem = name[: -len(suffix)] or "task"
                break
        dest = workdir / "task.part"
        try:
            unpack_upload(archive, dest, max_bytes=MAX_UNPACKED)
        except PackageError as err:
            shutil.rmtree(workdir, ignore_errors=True)
            raise WebInputError(f"Upload: {err}") from None
        archive.unlink()
        # A single top-level folder in the archive is the task folder itself.
        entries = [p for p in dest.iterdir() if not p.name.startswith("__MACOSX")]
        root = entries[0] if len(entries) == 1 and entries[0].is_dir() else dest
        final = workdir / "task"
        os.replace(root, final)
        return Staged(name=stem, folder=final)

    # ---- actions -----------------------------------------------------------------------------
    def submit(self, *, folder: str = "", staged: Staged | None = None, price: str = "",
               validator_fee: str = "", provider: str = "", validator: str = "") -> int:
        """Post a task from a server folder or an upload (see :meth:`Sessions.submit`)."""
        account = self.require_account()
        if staged is None and not folder:
            raise WebInputError("Task: choose a task folder or upload an archive")
        if staged is not None and folder:
            raise WebInputError("Task: choose a folder OR upload an archive, not both")
        if staged is None:
            path = Path(folder)
            allowed = {f["path"] for f in self.task_folders()}
            if str(path) not in allowed:
                raise WebInputError(f"Task folder {folder!r} is not one of the folders offered")
            name = path.name
        else:
            path, name = staged.folder, staged.name
        price_wei = parse_eth(price, "Price")
        fee_wei = parse_eth(validator_fee, "Validator fee")
        try:
            with self._act_lock:
                task_id = self.sessions.submit(
                    account, path, name=name, price=price_wei, validator_fee=fee_wei,
                    provider=_choice(provider, "best"), validator=_choice(validator, "auto"))
        except IChainError as err:
            if staged is not None and str(staged.folder) in str(err):
                # Name the upload, not the server's private staging folder.
                try:
                    renamed = type(err)(str(err).replace(str(staged.folder), f"the upload {staged.name!r}"))
                except Exception:
                    raise err from None
                raise renamed from None
            raise
        finally:
            if staged is not None:  # the session keeps its own packed copy
                shutil.rmtree(staged.folder.parent, ignore_errors=True)
        self.invalidate()
        return task_id

    def choose_provider(self, task_id: int, provider: str) -> None:
        """Name the provider of a pending task (the task is then sealed to its key and hosted)."""
        self.require_account()
        if not provider.strip():
            raise WebInputError("Provider: choose one in the list")
        with self._act_lock:
            self.sessions.get(task_id).assign_provider(provider.strip())
        self.invalidate()

    def stop(self, task_id: int) -> str:
        """Stop a task: cancel while pending, or expire it after its deadline (refund)."""
        self.require_account()
        with self._act_lock:
            message = self.sessions.get(task_id).stop()
        self.invalidate()
        return message

    def rate(self, task_id: int, rating: str, validator_rating: str = "") -> None:
        """Rate a Completed or Failed task: the provider 1 to 5 (required: never a default), the validator 1 to 5
        or not at all."""
        self.require_account()
        try:
            value = int(rating)
        except (TypeError, ValueError):
            raise WebInputError("Rating: choose 1 to 5 stars for the provider") from None
        try:
            vvalue = int(validator_rating) if str(validator_rating or "").strip() else 0
        except (TypeError, ValueError):
            raise WebInputError("Validator rating: choose 1 to 5 stars, or none") from None
        with self._act_lock:
            self.sessions.get(task_id).rate(value, vvalue)  # the SDK refuses a rating outside its range
        self.invalidate()

    def result_file(self, task_id: int) -> Path:
        """The verified result archive of a task, for download."""
        path = self.sessions.get(task_id).result_path()
        if path is None or not Path(path).is_file():
            raise NotReady(f"Task {task_id} has no result yet")
        return Path(path)

    def withdraw(self) -> int:
        """Withdraw the account's credit; returns the amount paid out (wei)."""
        account = self.require_account()
        with self._act_lock:
            amount = int(self.market().withdraw(sender=account))
        self.invalidate()
        return amount

    def close(self) -> None:
        """Stop the requester sessions' hosts and followers."""
        self.sessions.close()


def _choice(value: str, default: str) -> str | None:
    """A party chosen in the form: an address, ``best``/``auto``, or ``none`` (leave the task pending)."""
    value = (value or "").strip()
    if not value:
        return default
    return None if value == "none" else value


def _ether_text(wei: int) -> str:
    """An amount in wei as plain ether digits for a form field (``"0.01"``)."""
    from decimal import Decimal

    return format((Decimal(wei) / Decimal(10**18)).normalize(), "f")


__all__ = ["WebService", "Staged", "POOLS", "POOL_SHOWN"]
