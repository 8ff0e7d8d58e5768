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
from typing import TYPE_CHECKING, Any

from ichain.config import IChainConfig
from ichain.daemon import faults
from ichain.daemon.handlers import register_handlers
from ichain.daemon.runner import Runner
from ichain.daemon.state import DaemonState, TaskRecord, state_file
from ichain.daemon.txs import TxSender
from ichain.errors import IChainError
from ichain.files import sha256_file
from ichain.market import Market, Status, Task
from ichain.net import free_port
from ichain.tor import TorTransport, transport_for
from ichain.transfer import ChunkHost, KeyPair, TransferContext
from ichain.transfer.envelope import Envelope

if TYPE_CHECKING:
    from ichain.sandbox import Sandbox

log = logging.getLogger("ichain.daemon")

#: Statuses after which a task holds no more work for the daemon than withdrawing.
SETTLED = (Status.Completed, Status.Closed, Status.Rejected, Status.Expired, Status.Cancelled)


class DaemonError(IChainError):
    """The daemon can't start or go on (bad settings, state of another chain...)."""


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
        market: Market,
        account: Any,
        config: IChainConfig,
        *,
        price: int | None = None,
        available: bool = True,
        sandbox: Sandbox | None = None,
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
        self.market_address = market.address
        self.state = DaemonState(state_file(self.home, self.chain_id))
        self.state.bind(self.chain_id, self.market_address)
        self.txs = TxSender(self.state, self.address, self.web3)
        self.keypair = KeyPair.load_or_create(self.home / "x25519.key")
        self.host: ChunkHost | None = None
        self.runner: Runner | None = None
        self.pool = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="ichain-job")
        self.jobs: dict[tuple[int, str], Future[None]] = {}
        self.next_check: dict[tuple[int, str], float] = {}

    # --- set-up ---------------------------------------------------------------------------
    def _guess_ws_uri(self) -> str | None:
        from ape import chain

        # ProviderAPI's URIs are None where the provider has none (an in-process test chain).
        uri = chain.provider.ws_uri or chain.provider.http_uri
        if not uri:
            return None
        return str(uri).replace("https://", "wss://").replace("http://", "ws://")

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox that runs tasks (created on first use)."""
        if self._sandbox is None:
            from ichain.sandbox import Sandbox

            self._sandbox = Sandbox()
        return self._sandbox

    def start(self) -> None:
        """Start the chunk host, register or update the worker on chain, set up the event runner."""
        port = self.config.port or self.state.get_meta("port") or free_port(self.config.host)
        # Locators already on chain name this port: keep it across restarts.
        self.state.set_meta("port", int(port))
        self.host = ChunkHost(self.home / "host", transport=transport_for(self.config, int(port), self.home))
        self.host.start()
        self._register()
        runner = Runner(
            self.market,
            self.state,
            self.web3,
            start_block=self.market.start_block,
            poll_interval=self.config.poll_interval,
            reorg_depth=self.config.reorg_depth,
            ws_uri=self.ws_uri,
            on_tick=self.schedule,
            on_reorg=self.wake_all,
        )
        register_handlers(runner, self.address, self.state, self.wake)
        self.runner = runner

    def _wanted(self) -> tuple[bytes, int, bool]:
        """The (key, price, availability) this daemon's worker should have on chain."""
        price = self.price if self.price is not None else self.market.worker(self.address).price
        return self.keypair.public_bytes, price, self.available

    def _register(self) -> None:
        key, price, available = self._wanted()
        if not self.market.worker(self.address).registered:
            self.txs.send(
                "register",
                lambda: not self.market.worker(self.address).registered,
                lambda tx: self.market.register(key, price, sender=self.account, available=available, **tx),
            )
            log.info("registered %s at %d wei", self.address, price)
            return

        def needed() -> bool:
            worker = self.market.worker(self.address)
            return (worker.enc_key, worker.price, worker.available) != (key, price, available)

        if not needed():
            return
        # Named by what it sets: a daemon restarted with the same settings finds its journaled attempt and
        # re-sends it with the same nonce instead of sending a second update.
        self.txs.send(
            f"update:{key.hex()}:{price}:{int(available)}",
            needed,
            lambda tx: self.market.update(key, price, sender=self.account, available=available, **tx),
        )
        log.info("updated worker %s: price %d wei, available %s", self.address, price, available)

    # --- the loop ---------------------------------------------------------------------------
    def run(self, install_signals: bool = True) -> None:
        """Run until SIGTERM/SIGINT (or :meth:`stop`), then shut down gracefully."""
        if self.runner is None:
            self.start()
        assert self.runner is not None  # start() sets it
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
                if isinstance(self.host.transport, TorTransport):
                    self.host.transport.close()  # stops the tor it launched
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
            try:
                self.jobs[key] = self.pool.submit(self._job, record)
            except RuntimeError:  # the pool is shutting down: no new jobs
                return

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
    def context(self, task_id: int, role: str) -> TransferContext:
        """The transfer context of one file of one task."""
        return TransferContext(self.chain_id, self.market_address, int(task_id), role)

    def _hosting(self) -> ChunkHost:
        if self.host is None:
            raise DaemonError("the daemon is not started: no chunk host")
        return self.host

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
            fetch(bytes.fromhex(sealed_hex), self.keypair, ctx, archive, transport=self._hosting().transport)
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
            lambda tx: self.market.withdraw(sender=self.account, **tx),
            fault="withdraw",
        )
        log.info("withdrew %d wei", credit)

    # --- provider side --------------------------------------------------------------------------
    def _provider_job(self, record: TaskRecord) -> None:
        task = self.market.task(record.task_id)
        if task.provider != self.address:
            self.state.set_stage(record.task_id, "provider", "skipped", note="not our task (anymore)")
            return
        if task.status == Status.Executing and record.stage == "failed":
            self.later(record, 30.0)  # the run failed: nothing to submit, wait for the deadline
        elif task.status == Status.Executing:
            self._execute_and_submit(record, task)
        elif task.status in (Status.AwaitingValidator, Status.Accepted):
            now = self.market.now()
            if now <= task.deadline:
                # The chain settles only in a block after the deadline: wait that long on the chain's clock.
                self.later(record, max(0.5, task.deadline + 1 - now))
                return
            # The requester stayed silent past the review window: claim payment.
            self.state.set_stage(record.task_id, "provider", "claiming")
            self.txs.send(
                f"expire:{record.task_id}",
                lambda: self.market.task(record.task_id).status in (Status.AwaitingValidator, Status.Accepted),
                lambda tx: self.market.expire(record.task_id, sender=self.account, **tx),
                fault="claim",
            )
            self.wake(record.task_id, "provider")
        elif task.status == Status.Validating:
            self.later(record, 2.0)  # the verdict event wakes us
        elif task.status in SETTLED:
            self._withdraw(record.task_id)
            faults.point("done")
            self.state.set_stage(record.task_id, "provider", "done", final_status=task.status.name)
        else:  # Pending (another provider?) / None
            self.later(record, 2.0)

    def _execute_and_submit(self, record: TaskRecord, task: Task) -> None:
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
        req_loc = record.data.get("requester_locator")
        val_loc = record.data.get("validator_locator", "")
        if not req_loc:
            host = self._hosting()
            sealed = host.offer(result, env.sender_key, self.context(record.task_id, "result-requester"))
            req_loc = Envelope(self.keypair.public_bytes, (sealed,)).encode().hex()
            if task.validator is not None:
                vkey = self.market.worker(task.validator).enc_key
                val_res = host.offer(result, vkey, self.context(record.task_id, "result-validator"))
                val_loc = Envelope(self.keypair.public_bytes, (val_res,)).encode().hex()
            record = self.state.set_stage(record.task_id, "provider", "offered", requester_locator=req_loc,
                                          validator_locator=val_loc)
            faults.point("result-offered")

        def needed() -> bool:
            now = self.market.task(record.task_id)
            return now.status == Status.Executing and now.provider == self.address

        self.txs.send(
            f"submitResult:{record.task_id}",
            needed,
            lambda tx: self.market.submit_result(record.task_id, result_hash, bytes.fromhex(req_loc),
                                                 bytes.fromhex(val_loc) if val_loc else b"",
                                                 sender=self.account, **tx),
            fault="submit",
        )
        faults.point("submitted")
        log.info("task %d: result %s committed", record.task_id, result_hash.hex()[:16])
        self.state.set_stage(record.task_id, "provider", "submitted")
        self.later(record, 1.0)

    # --- validator side -------------------------------------------------------------------------
    def _validator_job(self, record: TaskRecord) -> None:
        task = self.market.task(record.task_id)
        if task.validator != self.address:
            if task.status in (Status.Validating, Status.AwaitingValidator, Status.Executing, Status.Pending):
                self.later(record, 2.0)
                return
            self._withdraw(record.task_id)
            self.state.set_stage(record.task_id, "validator", "done", final_status=task.status.name)
            return
        if task.status in (Status.Pending, Status.Executing, Status.AwaitingValidator):
            self.later(record, 2.0)  # the ResultSubmitted / ValidatorAssigned event wakes us
            return
        if task.status != Status.Validating:
            self._withdraw(record.task_id)
            self.state.set_stage(record.task_id, "validator", "done", final_status=task.status.name)
            return
        committed = self.market.result_of(record.task_id)
        if committed is None:
            raise DaemonError(f"task {record.task_id} is Validating without a committed result")
        if record.data.get("result_hash") != committed.hex():
            # The locator we hold came with another result than the one on chain (its event was replaced in a
            # reorg, or the current one is not ingested yet): judging it would reject an honest provider. The
            # event that carries this commitment brings the matching locator and wakes us.
            log.info("task %d: waiting for the event of the committed result %s", record.task_id,
                     committed.hex()[:16])
            self.later(record, 2.0)
            return
        accept, reason = self._judge(record, task, committed)

        def needed() -> bool:
            now = self.market.task(record.task_id)
            return (now.status == Status.Validating and now.validator == self.address
                    and self.market.result_of(record.task_id) == committed)

        self.txs.send(
            f"verdict:{record.task_id}",
            needed,
            lambda tx: self.market.submit_verdict(record.task_id, committed, accept, sender=self.account, **tx),
            fault="verdict",
        )
        self.state.set_stage(record.task_id, "validator", "judged", accepted=accept, reason=reason)
        log.info("task %d: verdict %s (%s)", record.task_id, "accept" if accept else "reject", reason)
        self._withdraw(record.task_id)
        self.state.set_stage(record.task_id, "validator", "done")

    def _judge(self, record: TaskRecord, task: Task, committed: bytes) -> tuple[bool, str]:
        """Fetch task and result, check the result against the on-chain commitment and its meta, run validate
        mode. A verdict reached before (a restart between judging and sending) is reused for the same result."""
        from ichain.sandbox import read_result_meta, unpack_result
        from ichain.transfer import fetch

        if record.data.get("judged") == committed.hex():
            return bool(record.data["accepted"]), str(record.data.get("reason", ""))
        task_loc = record.data.get("locator")
        result_loc = record.data.get("result_locator")
        if not task_loc or not result_loc:
            raise DaemonError(f"task {record.task_id}: locators not seen yet")
        task_env = Envelope.decode(bytes.fromhex(task_loc))
        result_env = Envelope.decode(bytes.fromhex(result_loc))
        folder = self._fetch_task(record, task_env.sealed[0].hex(), task_env.context_id)
        work = self.files / f"{record.task_id}-validator"
        # Named by the commitment: a file fetched for a result a reorg replaced is never judged as this one.
        result = work / f"result-{committed.hex()}.tar"
        if not result.exists():
            fetch(result_env.sealed[-1], self.keypair, self.context(record.task_id, "result-validator"), result,
                  transport=self._hosting().transport)
        verdict: tuple[bool, str]
        if sha256_file(result) != committed:
            verdict = (False, "result does not match the commitment on chain")
        else:
            meta = read_result_meta(result)
            expect = (self.chain_id, self.market_address.lower(), record.task_id, str(task.provider).lower())
            if (meta.chain_id, meta.market.lower(), meta.task_id, meta.provider.lower()) != expect:
                verdict = (False, "result meta names another chain, market, task or provider")
            else:
                out = work / f"result-{committed.hex()}"
                if not (work / f"{out.name}.ok").exists():
                    shutil.rmtree(out, ignore_errors=True)
                    unpack_result(result, out)
                    (work / f"{out.name}.ok").touch()
                run = self.sandbox.validate(folder, out)
                if run.sandbox_fault:  # our machine's problem: never reject a result for it
                    raise DaemonError(f"task {record.task_id}: sandbox unavailable: {run.error}")
                verdict = (run.accepted, f"validate exit {run.exit_code}{' ' + run.error if run.error else ''}")
        self.state.set_stage(record.task_id, "validator", "judging", accepted=verdict[0], reason=verdict[1],
                             judged=committed.hex())
        return verdict
