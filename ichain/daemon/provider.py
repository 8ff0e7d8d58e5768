"""The provider daemon: one process per worker account that earns by running and validating tasks.

Shape (after ApeWorX/silverback): a :class:`~ichain.daemon.runner.Runner` calls the handlers in
:mod:`ichain.daemon.handlers` for each market event; handlers only *record* what the event says
(task ids, locators) in SQLite, in the same transaction as the checkpoint. Work happens in jobs
run on a thread pool (the concurrency limit), scheduled after each pass from the recorded tasks.
Every job first re-reads the task from the chain and does only what is still needed, so a daemon
killed anywhere and restarted carries on without repeating a transaction.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ichain.config import IChainConfig
from ichain.daemon import faults
from ichain.daemon.state import DaemonState, TaskRecord
from ichain.daemon.txs import TxSender
from ichain.errors import IChainError
from ichain.files import sha256_file
from ichain.net import free_port
from ichain.tor import transport_for
from ichain.transfer.envelope import Envelope

log = logging.getLogger("ichain.daemon")

ZERO = "0x0000000000000000000000000000000000000000"


class DaemonError(IChainError):
    """The daemon can't start or go on (bad settings, state of another chain...)."""


# --- small accessors that keep the daemon independent of the SDK's exact field names -----------
def field_of(obj: Any, *names: str, default: Any = None) -> Any:
    """First attribute (or key) of ``obj`` among ``names`` that exists."""
    for name in names:
        if isinstance(obj, dict) and name in obj:
            return obj[name]
        if hasattr(obj, name):
            return getattr(obj, name)
    return default


def status_name(task: Any) -> str:
    """The task's status as a name (``Executing``...), whatever the SDK returns."""
    status = field_of(task, "status")
    name = getattr(status, "name", None) or str(status)
    return name.split(".")[-1]


def same(a: Any, b: Any) -> bool:
    """Address equality, case-insensitive, None-safe."""
    return a is not None and b is not None and str(a).lower() == str(b).lower()


def as_bytes(value: Any) -> bytes:
    """HexBytes, bytes or a 0x string -> bytes."""
    if value is None:
        return b""
    if isinstance(value, str):
        return bytes.fromhex(value[2:] if value.startswith("0x") else value)
    return bytes(value)


class ProviderDaemon:
    """Runs, validates and gets paid for tasks on behalf of one worker account.

    Args:
        market: The SDK :class:`ichain.market.Market` on the connected network.
        account: The worker's Ape account (signs every transaction).
        config: iChain settings (state dir, transport, host/port, concurrency, polling).
        price: Asking price in wei registered on chain (None keeps the registered one).
        available: Whether to offer work (registered availability).
        sandbox: A :class:`ichain.sandbox.Sandbox` (default: a fresh one on the default image).
        web3: web3 on the node (default: Ape's provider's).
        ws_uri: Websocket for head notifications (default: derived from the provider's HTTP URI).
    """

    def __init__(
        self,
        market: Any,
        account: Any,
        config: IChainConfig,
        *,
        price: int | None = None,
        available: bool = True,
        sandbox: Any = None,
        web3: Any = None,
        ws_uri: str | None = None,
    ):
        self.market = market
        self.account = account
        self.address = str(account.address)
        self.config = config
        self.price = price
        self.available = available
        self._sandbox = sandbox
        if web3 is None:
            from ape import chain

            web3 = chain.provider.web3
        self.web3 = web3
        self.ws_uri = ws_uri if ws_uri is not None else self._guess_ws_uri()
        self.home = config.account_dir(self.address)
        self.files = self.home / "files"
        self.files.mkdir(exist_ok=True)
        self.chain_id = int(self.web3.eth.chain_id)
        self.market_address = str(field_of(market, "address", default="") or market.contract.address)
        self.state = DaemonState(self.home / f"daemon-{self.chain_id}.sqlite")
        self.state.bind(self.chain_id, self.market_address)
        self.txs = TxSender(self.state, self.address, self.web3)
        self.keypair = None
        self.host = None
        self.runner = None
        self.pool = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="ichain-job")
        self.jobs: dict[tuple[int, str], Future] = {}
        self.next_check: dict[tuple[int, str], float] = {}
        self.started_at = time.time()
        self.reaction: list[float] = []  # seconds from block timestamp to job start (bench)

    # --- set-up ---------------------------------------------------------------------------
    def _guess_ws_uri(self) -> str | None:
        try:
            from ape import chain

            uri = getattr(chain.provider, "ws_uri", None) or getattr(chain.provider, "http_uri", None)
        except Exception:
            return None
        if not uri:
            return None
        return uri.replace("https://", "wss://").replace("http://", "ws://")

    @property
    def sandbox(self) -> Any:
        """The sandbox that runs tasks (created on first use)."""
        if self._sandbox is None:
            from ichain.sandbox import Sandbox

            self._sandbox = Sandbox()
        return self._sandbox

    def start(self) -> None:
        """Load the X25519 key, start the chunk host, register or update the worker on chain."""
        from ichain.transfer import ChunkHost, KeyPair

        self.keypair = KeyPair.load_or_create(self.home / "x25519.key")
        port = self.config.port or self.state.get_meta("port") or free_port(self.config.host)
        # Locators already on chain name this port: keep it across restarts.
        self.state.set_meta("port", int(port))
        self.host = ChunkHost(self.home / "host", transport=transport_for(self.config, int(port), self.home))
        self.host.start()
        self._register()
        from ichain.daemon.handlers import register_handlers
        from ichain.daemon.runner import Runner

        start_block = int(field_of(self.market, "deploy_block", "start_block", default=0) or 0)
        self.runner = register_handlers(
            Runner(
                self.market,
                self.state,
                self.web3,
                start_block=start_block,
                poll_interval=self.config.poll_interval,
                reorg_depth=self.config.reorg_depth,
                ws_uri=self.ws_uri,
                on_tick=self.schedule,
                on_reorg=self.wake_all,
            ),
            self,
        )

    def _register(self) -> None:
        key = self.keypair.public_bytes
        worker = self.market.worker(self.address)
        registered = bool(field_of(worker, "registered", default=False))
        price = self.price if self.price is not None else int(field_of(worker, "price", default=0) or 0)
        if not registered:
            self.txs.send(
                "register",
                lambda: not bool(field_of(self.market.worker(self.address), "registered", default=False)),
                lambda nonce: self.market.register(key, price, sender=self.account, available=self.available,
                                                   nonce=nonce),
            )
            log.info("registered %s at %d wei", self.address, price)
            return
        same_key = as_bytes(field_of(worker, "enc_key", "encKey")) == key
        if same_key and int(field_of(worker, "price", default=0)) == price and bool(
            field_of(worker, "available", default=True)
        ) == self.available:
            return
        action = f"update:{key.hex()[:16]}:{price}:{int(self.available)}:{int(time.time())}"
        self.txs.send(
            action,
            lambda: True,
            lambda nonce: self.market.update(key, price, sender=self.account, available=self.available, nonce=nonce),
        )
        log.info("updated worker %s: price %d wei, available %s", self.address, price, self.available)

    # --- the loop ---------------------------------------------------------------------------
    def run(self, install_signals: bool = True) -> None:
        """Run until SIGTERM/SIGINT (or :meth:`stop`), then shut down gracefully."""
        if self.runner is None:
            self.start()
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
        log.info("provider daemon %s watching market %s on chain %d", self.address, self.market_address,
                 self.chain_id)
        try:
            self.runner.run()
        finally:
            self.shutdown()

    def stop(self) -> None:
        """Ask the daemon to stop after its current pass (safe from a signal handler)."""
        if self.runner:
            self.runner.stop()

    def shutdown(self) -> None:
        """Wait for running jobs (they are restartable), stop hosting, close the state."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        if self.host:
            try:
                self.host.stop()
                if callable(close := getattr(self.host.transport, "close", None)):
                    close()  # a TorTransport stops the tor it launched
            except Exception as err:  # already stopped / transport gone
                log.debug("host stop: %s", err)
        self.state.close()
        log.info("provider daemon stopped")

    def schedule(self) -> None:
        """Start a job for every active task that is due and not already running."""
        now = time.time()
        for key, fut in list(self.jobs.items()):
            if fut.done():
                del self.jobs[key]
                if (err := fut.exception()) is not None:
                    log.warning("task %s (%s): %s; will retry", key[0], key[1], " ".join(str(err).split()))
                    self.next_check[key] = now + 2.0
        for record in self.state.tasks(active_only=True):
            key = (record.task_id, record.role)
            if key in self.jobs or self.next_check.get(key, 0) > now:
                continue
            if self.pool._shutdown:
                return
            self.jobs[key] = self.pool.submit(self._job, record)

    def wake(self, task_id: int, role: str) -> None:
        """Make a task due now (an event said something changed)."""
        self.next_check.pop((int(task_id), role), None)

    def wake_all(self) -> None:
        """Make every task due now: after a reorg, any of them may have gone back a step (a result or a
        verdict of ours dropped with its block) and must be re-derived from the chain before its timer."""
        self.next_check.clear()

    def _job(self, record: TaskRecord) -> None:
        faults.point("job-start")
        if record.role == "provider":
            self._provider_job(record)
        else:
            self._validator_job(record)

    def later(self, record: TaskRecord, seconds: float) -> None:
        """Check this task again in ``seconds`` (or earlier if an event wakes it)."""
        self.next_check[(record.task_id, record.role)] = time.time() + seconds

    # --- helpers ------------------------------------------------------------------------------
    def context(self, task_id: int, role: str) -> Any:
        """The transfer context of one file of one task."""
        from ichain.transfer import TransferContext

        return TransferContext(self.chain_id, self.market_address, int(task_id), role)

    def _fetch_task(self, record: TaskRecord, sealed_hex: str, context_id: int = 0) -> Path:
        """Fetch, verify against the on-chain task hash, and unpack a task; returns its folder."""
        from ichain.sandbox import unpack
        from ichain.transfer import fetch

        work = self.files / f"{record.task_id}-{record.role}"
        work.mkdir(parents=True, exist_ok=True)
        archive, folder = work / "task.tar", work / "task"
        if folder.is_dir() and (work / "task.ok").exists():
            return folder
        faults.point("task-fetch-start")
        if not archive.exists():
            ctx = self.context(context_id or record.task_id, f"task-{record.role}")
            fetch(bytes.fromhex(sealed_hex), self.keypair, ctx, archive,
                  transport=self.host.transport if self.host else None)
        faults.point("task-fetched")
        want = record.data.get("task_hash")
        if want and sha256_file(archive).hex() != want:
            archive.unlink()
            raise DaemonError(f"task {record.task_id}: the fetched archive does not match the task hash on chain")
        if folder.exists():
            shutil.rmtree(folder)
        tmp = work / "task.part"
        shutil.rmtree(tmp, ignore_errors=True)
        unpack(archive, tmp)
        os.replace(tmp, folder)
        (work / "task.ok").touch()
        faults.point("task-unpacked")
        return folder

    def _withdraw(self, task_id: int) -> None:
        credit = int(self.market.credit(self.address))
        if credit <= 0:
            return
        self.txs.send(
            f"withdraw:{task_id}",
            lambda: int(self.market.credit(self.address)) > 0,
            lambda nonce: self.market.withdraw(sender=self.account, nonce=nonce),
            fault="withdraw",
        )
        log.info("withdrew %d wei", credit)

    # --- provider side --------------------------------------------------------------------------
    def _provider_job(self, record: TaskRecord) -> None:
        task = self.market.task(record.task_id)
        status = status_name(task)
        if not same(field_of(task, "provider"), self.address):
            self.state.set_stage(record.task_id, "provider", "skipped", note="not our task (anymore)")
            return
        if status == "Executing" and record.stage == "failed":
            self.later(record, 30.0)  # the run failed: nothing to submit, wait for the deadline
        elif status == "Executing":
            self._execute_and_submit(record, task)
        elif status in ("AwaitingValidator", "Accepted"):
            deadline = int(field_of(task, "deadline", default=0))
            now = self.market.now()
            if now <= deadline:
                # The chain settles only in a block after the deadline: wait that long on the chain's clock.
                self.later(record, max(0.5, deadline + 1 - now))
                return
            # The requester stayed silent past the review window: claim payment.
            self.state.set_stage(record.task_id, "provider", "claiming")
            self.txs.send(
                f"expire:{record.task_id}",
                lambda: status_name(self.market.task(record.task_id)) in ("AwaitingValidator", "Accepted"),
                # Fixed gas: an estimate would run on the last block, still before the deadline on a
                # quiet automine chain, and revert.
                lambda nonce: self.market.expire(record.task_id, sender=self.account, nonce=nonce),
                fault="claim",
            )
            self.wake(record.task_id, "provider")
        elif status == "Validating":
            self.later(record, 2.0)  # the verdict event wakes us
        elif status in ("Completed", "Closed", "Rejected", "Expired", "Cancelled"):
            self._withdraw(record.task_id)
            faults.point("done")
            self.state.set_stage(record.task_id, "provider", "done", final_status=status)
        else:  # Pending (another provider?) / None
            self.later(record, 2.0)

    def _execute_and_submit(self, record: TaskRecord, task: Any) -> None:
        from ichain.sandbox import pack_result

        env = Envelope.decode(bytes.fromhex(record.data["locator"]))
        work = self.files / f"{record.task_id}-provider"
        result = work / "result.tar"
        if not record.data.get("result_hash") or not result.exists():
            folder = self._fetch_task(record, env.sealed[0].hex(), env.context_id)
            out = work / "output"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            log.info("task %d: running in the sandbox", record.task_id)
            run = self.sandbox.execute(folder, out)
            faults.point("executed")
            if run.sandbox_fault:
                # This machine's problem (engine down, image missing), not the task's: retry later.
                raise DaemonError(f"task {record.task_id}: sandbox unavailable: {run.error}")
            if not run.ok:
                # A failed run is not submitted: the requester gets the refund at the deadline.
                self.state.set_stage(record.task_id, "provider", "failed", exit_code=run.exit_code,
                                     error=(run.error or run.stderr_tail)[-300:])
                log.warning("task %d failed in the sandbox (exit %s, %s); not submitting", record.task_id,
                            run.exit_code, run.error or "see stderr")
                return
            meta = {"chain_id": self.chain_id, "market": self.market_address, "task_id": record.task_id,
                    "provider": self.address}
            part = work / "result.tar.part"
            digest = pack_result(out, part, meta)
            os.replace(part, result)
            record = self.state.set_stage(record.task_id, "provider", "packed", result_hash=digest.hex(),
                                          wall_time=run.wall_time, exit_code=0)
            faults.point("result-packed")
        result_hash = bytes.fromhex(record.data["result_hash"])
        validator = field_of(task, "validator")
        req_loc = record.data.get("requester_locator")
        val_loc = record.data.get("validator_locator", "")
        if not req_loc:
            sealed = self.host.offer(result, env.sender_key, self.context(record.task_id, "result-requester"))
            req_loc = Envelope(self.keypair.public_bytes, (sealed,)).encode().hex()
            if validator and not same(validator, ZERO):
                vkey = as_bytes(field_of(self.market.worker(validator), "enc_key", "encKey"))
                val_res = self.host.offer(result, vkey, self.context(record.task_id, "result-validator"))
                val_loc = Envelope(self.keypair.public_bytes, (val_res,)).encode().hex()
            record = self.state.set_stage(record.task_id, "provider", "offered", requester_locator=req_loc,
                                          validator_locator=val_loc)
            faults.point("result-offered")

        def needed() -> bool:
            now = self.market.task(record.task_id)
            return status_name(now) == "Executing" and same(field_of(now, "provider"), self.address)

        self.txs.send(
            f"submitResult:{record.task_id}",
            needed,
            lambda nonce: self.market.submit_result(record.task_id, result_hash, bytes.fromhex(req_loc),
                                                    bytes.fromhex(val_loc) if val_loc else b"",
                                                    sender=self.account, nonce=nonce),
            fault="submit",
        )
        faults.point("submitted")
        log.info("task %d: result %s committed", record.task_id, result_hash.hex()[:16])
        self.state.set_stage(record.task_id, "provider", "submitted")
        self.later(record, 1.0)

    # --- validator side -------------------------------------------------------------------------
    def _validator_job(self, record: TaskRecord) -> None:
        task = self.market.task(record.task_id)
        status = status_name(task)
        if not same(field_of(task, "validator"), self.address):
            if status in ("Validating", "AwaitingValidator", "Executing", "Pending"):
                self.later(record, 2.0)
                return
            self._withdraw(record.task_id)
            self.state.set_stage(record.task_id, "validator", "done", final_status=status)
            return
        if status in ("Pending", "Executing", "AwaitingValidator"):
            self.later(record, 2.0)  # the ResultSubmitted / ValidatorAssigned event wakes us
            return
        if status != "Validating":
            self._withdraw(record.task_id)
            self.state.set_stage(record.task_id, "validator", "done", final_status=status)
            return
        accept, reason = self._judge(record, task)
        result_hash = as_bytes(field_of(task, "result_hash", "resultHash", default=None)) or bytes.fromhex(
            record.data["result_hash"])

        def needed() -> bool:
            now = self.market.task(record.task_id)
            return status_name(now) == "Validating" and same(field_of(now, "validator"), self.address)

        self.txs.send(
            f"verdict:{record.task_id}",
            needed,
            lambda nonce: self.market.submit_verdict(record.task_id, result_hash, accept, sender=self.account,
                                                     nonce=nonce),
            fault="verdict",
        )
        self.state.set_stage(record.task_id, "validator", "judged", accepted=accept, reason=reason)
        log.info("task %d: verdict %s (%s)", record.task_id, "accept" if accept else "reject", reason)
        self._withdraw(record.task_id)
        self.state.set_stage(record.task_id, "validator", "done")

    def _judge(self, record: TaskRecord, task: Any) -> tuple[bool, str]:
        """Fetch task and result, check the commitment and its meta, run validate mode."""
        from ichain.sandbox import read_result_meta, unpack_result
        from ichain.transfer import fetch

        if "accepted" in record.data:
            return bool(record.data["accepted"]), str(record.data.get("reason", ""))
        task_loc = record.data.get("locator")
        result_loc = record.data.get("result_locator")
        if not task_loc or not result_loc:
            raise DaemonError(f"task {record.task_id}: locators not seen yet")
        task_env = Envelope.decode(bytes.fromhex(task_loc))
        result_env = Envelope.decode(bytes.fromhex(result_loc))
        folder = self._fetch_task(record, task_env.sealed[0].hex(), task_env.context_id)
        work = self.files / f"{record.task_id}-validator"
        result = work / "result.tar"
        if not result.exists():
            sealed = result_env.sealed[-1]
            fetch(sealed, self.keypair, self.context(record.task_id, "result-validator"), result,
                  transport=self.host.transport if self.host else None)
        committed = as_bytes(field_of(task, "result_hash", "resultHash", default=None)) or bytes.fromhex(
            record.data.get("result_hash", ""))
        verdict: tuple[bool, str]
        if sha256_file(result) != committed:
            verdict = (False, "result does not match the commitment on chain")
        else:
            meta = read_result_meta(result)
            expect = {"chain_id": self.chain_id, "market": self.market_address.lower(),
                      "task_id": record.task_id, "provider": str(field_of(task, "provider")).lower()}
            got = {"chain_id": int(field_of(meta, "chain_id", default=-1)),
                   "market": str(field_of(meta, "market", default="")).lower(),
                   "task_id": int(field_of(meta, "task_id", default=-1)),
                   "provider": str(field_of(meta, "provider", default="")).lower()}
            if got != expect:
                verdict = (False, "result meta names another chain, market, task or provider")
            else:
                out = work / "result"
                if not (work / "result.ok").exists():
                    shutil.rmtree(out, ignore_errors=True)
                    unpack_result(result, out)
                    (work / "result.ok").touch()
                run = self.sandbox.validate(folder, out)
                if run.sandbox_fault:  # our machine's problem: never reject a result for it
                    raise DaemonError(f"task {record.task_id}: sandbox unavailable: {run.error}")
                verdict = (run.accepted, f"validate exit {run.exit_code}{' ' + run.error if run.error else ''}")
        self.state.set_stage(record.task_id, "validator", "judging", accepted=verdict[0], reason=verdict[1])
        return verdict
