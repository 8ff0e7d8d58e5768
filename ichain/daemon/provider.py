"""The provider daemon: one process per worker account that earns by running and validating tasks.

Shape (after ApeWorX/silverback): a :class:`~ichain.daemon.runner.Runner` calls the handlers in
:mod:`ichain.daemon.handlers` for each market event; handlers only *record* what the event says
(task ids, locators) in SQLite, in the same transaction as the checkpoint. Work happens in jobs
run on a thread pool (the concurrency limit), scheduled after each pass from the recorded tasks.
Every job first re-reads the task from the chain and does only what is still needed, so a daemon
killed anywhere and restarted carries on without repeating a transaction.

Protocol v2 (fair exchange), as a provider: before any compute, the task's validator must be in our
on-chain trusted set and the price at least ours; the task locator opens only with the event's
requester and the envelope's key (a copied locator does not: H3); every fetch has a size cap; a task
whose time limits cannot end before its deadline, whose locator does not open, whose archive is not
the posted one or that its requester does not serve is ended at once with a "refused" report (so the
requester pays the failure fee: H3, H4, 1c). A failing run (execute, or the task's own validate mode on
our result) is reported at once with a sealed report (exit code, stderr tail). Otherwise the result is
packed with a random salt, one bundle (task + result) is hosted for the validator only (nothing sealed
to the requester reaches the chain before the accept), and the result is committed with collateral. As a validator: the fee must meet our policy before any compute; the bundle comes from
the provider (never the requester: 1c); the task and result are checked against the chain, validate
mode decides; on accept our verified copy is hosted for the requester and its locator goes in the
verdict. A provider that serves nothing is rejected before our deadline (2d).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ichain.config import IChainConfig
from ichain.daemon import faults
from ichain.daemon.handlers import register_handlers
from ichain.daemon.offer import REMEASURE_S, measure_offer, offer_hash, why_not
from ichain.daemon.pidfile import pid_file, remove_pid, write_pid
from ichain.daemon.runner import Runner
from ichain.daemon.state import DaemonState, TaskRecord, state_file
from ichain.daemon.txs import TxSender
from ichain.errors import IChainError
from ichain.files import sha256_file
from ichain.hardware import Offer, OfferError
from ichain.market import MAX_REPORT, Market, Status, Task
from ichain.net import free_port
from ichain.tor import TorTransport, transport_for
from ichain.transfer import ChunkHost, KeyPair, TransferContext, TransportError
from ichain.transfer.envelope import Envelope, EnvelopeError

if TYPE_CHECKING:
    from ichain.sandbox import Sandbox, TaskSpec

log = logging.getLogger("ichain.daemon")

#: Statuses after which a task holds no more work for the daemon than withdrawing.
SETTLED = (Status.Completed, Status.Failed, Status.Rejected, Status.Rated, Status.Expired, Status.Cancelled,
           Status.Declined)

#: Seconds before measuring and publishing the offer again after a failed attempt (engine or node down).
OFFER_RETRY = 30.0

#: Seconds between attempts to put the configured validators in our trusted set (one may not be registered yet).
TRUST_RETRY = 5.0


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
        self.pid_path = pid_file(self.home, self.chain_id)
        self.txs = TxSender(self.state, self.address, self.web3)
        self.keypair = KeyPair.load_or_create(self.home / "x25519.key")
        self.host: ChunkHost | None = None
        self.runner: Runner | None = None
        self.pool = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="ichain-job")
        self.jobs: dict[tuple[int, str], Future[None]] = {}
        self.next_check: dict[tuple[int, str], float] = {}
        self._trust_pending = False
        self._trust_checked = 0.0
        self._offer_measured = 0.0

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
        # `ape ichain provider status` tells a running daemon from the state a stopped one left.
        write_pid(self.pid_path)
        port = self.config.port or self.state.get_meta("port") or free_port(self.config.host)
        # Locators already on chain name this port: keep it across restarts.
        self.state.set_meta("port", int(port))
        self.host = ChunkHost(self.home / "host", transport=transport_for(self.config, int(port), self.home))
        self.host.start()
        self._register()
        self._refresh_offer()
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
        self._ensure_trust()

    def _ensure_trust(self) -> bool:
        """Put every configured validator in our on-chain trusted set (once each; journaled like any send).

        Returns:
            True when every configured validator is trusted on chain. A validator that is not registered yet
            is tried again on a later tick.
        """
        from eth_utils import to_checksum_address

        self._trust_checked = time.time()
        done = True
        for raw in self.config.trusted_validators:
            validator = str(to_checksum_address(raw))
            if validator == self.address or self.market.trusts(self.address, validator):
                continue
            try:
                self._trust(validator)
                log.info("trusting validator %s", validator)
            except IChainError as err:
                done = False
                log.warning("cannot trust validator %s yet: %s", validator, " ".join(str(err).split()))
        self._trust_pending = not done
        return done

    def _trust(self, validator: str) -> None:
        self.txs.send(
            f"trust:{validator.lower()}",
            lambda: not self.market.trusts(self.address, validator),
            lambda tx: self.market.set_trust(validator, True, sender=self.account, **tx),
        )

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

    def _refresh_offer(self) -> None:
        """Measure and publish the offer; when the engine or the node is down, try again in OFFER_RETRY s."""
        try:
            self._publish_offer()
        except Exception as trouble:  # a provider without its engine still serves its validator jobs' retries
            log.warning("offer: %s; will retry", " ".join(str(trouble).split()))
            self._offer_measured = time.time() - REMEASURE_S + OFFER_RETRY

    def _publish_offer(self) -> Offer:
        """Measure what this provider offers and publish it when the chain holds another document (or none).

        The measured offer is kept in the state (``offer``), where ``ape ichain provider status`` reads it.
        """
        offer = measure_offer(self.sandbox)
        self._offer_measured = time.time()
        self.state.set_meta("offer", offer.to_json())
        document = offer.encode()
        digest = offer_hash(offer)

        def needed() -> bool:
            return self.market.worker(self.address).offer_hash != digest

        if self.txs.send(f"offer:{digest.hex()}", needed,
                         lambda tx: self.market.publish_offer(document, sender=self.account, **tx)) == "sent":
            log.info("published offer: %s", offer.describe())
        return offer

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
        remove_pid(self.pid_path)
        log.info("provider daemon stopped")

    def schedule(self) -> None:
        """Start a job for every active task that is due and not already running."""
        now = time.time()
        if now - self._offer_measured > REMEASURE_S:
            self._refresh_offer()
        if self._trust_pending and now - self._trust_checked > TRUST_RETRY:
            try:
                self._ensure_trust()
            except Exception as trouble:  # the node is down: the runner's next pass notices
                log.debug("trust retry: %s", trouble)
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
    def context(self, task_id: int, role: str, requester: str, sender_key: bytes) -> TransferContext:
        """The transfer context of one file of one task: bound to its requester and to the sealing party's key."""
        return TransferContext(self.chain_id, self.market_address, int(task_id), role, str(requester).lower(),
                               bytes(sender_key))

    def _hosting(self) -> ChunkHost:
        if self.host is None:
            raise DaemonError("the daemon is not started: no chunk host")
        return self.host

    def _work(self, record: TaskRecord) -> Path:
        work = self.files / f"{record.task_id}-{record.role}"
        work.mkdir(parents=True, exist_ok=True)
        return work

    def _unpack_task(self, record: TaskRecord, archive: Path) -> Path:
        """Check a task archive against the task hash on chain and unpack it once; returns its folder.

        Raises:
            Refused: The archive is not the task posted on chain.
        """
        from ichain.sandbox import unpack

        work = self._work(record)
        folder = work / "task"
        if folder.is_dir() and (work / "task.ok").exists():
            return folder
        want = record.data.get("task_hash")
        if not want or sha256_file(archive).hex() != want:
            archive.unlink()
            raise RequesterFault("the task archive does not match the task hash on chain")
        if folder.exists():
            shutil.rmtree(folder)
        tmp = work / "task.part"
        shutil.rmtree(tmp, ignore_errors=True)
        unpack(archive, tmp, max_bytes=self.config.max_fetch_bytes)
        os.replace(tmp, folder)
        (work / "task.ok").touch()
        faults.point("task-unpacked")
        return folder

    def _reload(self, record: TaskRecord) -> TaskRecord:
        """The record as the state holds it now (a step of this job may have added to it)."""
        return self.state.task(record.task_id, record.role) or record

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

    def _refuse(self, record: TaskRecord, reason: str) -> None:
        """Give a task up before (or instead of) any compute.

        As its provider we decline it on chain, so the requester is refunded now instead of at the deadline; as
        its validator the task settles without us (its deadline refunds the requester).
        """
        log.warning("task %d (%s): refused: %s", record.task_id, record.role, reason)
        if record.role == "provider":
            self._decline(record.task_id, reason)
        self.state.set_stage(record.task_id, record.role, "refused", reason=reason)

    def _decline(self, task_id: int, reason: str) -> None:
        """Hand an executing task of ours back with ``reason`` while its deadline allows (full refund)."""
        text = reason.encode()[:MAX_REPORT].decode(errors="ignore")

        def needed() -> bool:
            task = self.market.task(task_id)
            return (task.status == Status.Executing and task.provider == self.address
                    and self.market.now() < task.deadline)

        if self.txs.send(f"decline:{task_id}", needed,
                         lambda tx: self.market.decline(task_id, text, sender=self.account, **tx)) == "sent":
            log.info("task %d: declined: %s", task_id, text)

    def _check_fits(self, spec: TaskSpec, task: Task) -> None:
        """Before any compute: this provider, and the validator that will re-run the task, can run it.

        Raises:
            Refused: Our runtimes, limits or GPUs do not cover the task's manifest, or the validator's published
                offer does not (a validator that cannot run the task could only let its window pass).
        """
        needs = spec.needs()
        if (why := why_not(measure_offer(self.sandbox), needs)) is not None:
            raise Refused(why)
        assert task.validator is not None  # _precheck_terms refused a task without one
        document = self.market.offer_document(self.market.worker(task.validator))
        if document is None:
            log.warning("task %d: the validator %s published no offer; running anyway", task.task_id, task.validator)
            return
        try:
            theirs = Offer.decode(document)
        except OfferError as err:
            log.warning("task %d: the validator's offer is unreadable (%s); running anyway", task.task_id, err)
            return
        if (why := why_not(theirs, needs, f"the validator {task.validator}")) is not None:
            raise Refused(why)

    # --- provider side --------------------------------------------------------------------------
    def _provider_job(self, record: TaskRecord) -> None:
        task = self.market.task(record.task_id)
        if task.provider != self.address:
            if task.status == Status.Pending:
                self.later(record, 2.0)  # posted to the pool: ProviderAssigned naming us wakes us
            else:
                self.state.set_stage(record.task_id, "provider", "skipped", note="not our task (anymore)")
            return
        if task.status == Status.Executing:
            if self.market.now() > task.deadline:
                # Too late for a result or a report: the requester's expire() refunds it.
                self.state.set_stage(record.task_id, "provider", "missed", reason="the execution deadline passed")
                self.later(record, 30.0)
                return
            try:
                self._execute_and_submit(record, task)
            except RequesterFault as err:
                self._fail(self._reload(record), "refused", None, str(err))
            except Refused as err:
                self._refuse(record, str(err))
        elif task.status == Status.Validating:
            now = self.market.now()
            if now <= task.deadline:
                # The verdict event wakes us; else the chain settles only in a block after the deadline.
                self.later(record, max(0.5, task.deadline + 1 - now))
                return
            # The validator stayed silent past its window: expire() gives the collateral back, counts its miss.
            self.state.set_stage(record.task_id, "provider", "claiming")
            self.txs.send(
                f"expire:{record.task_id}",
                lambda: self.market.task(record.task_id).status == Status.Validating,
                lambda tx: self.market.expire(record.task_id, sender=self.account, **tx),
                fault="claim",
            )
            self.wake(record.task_id, "provider")
        elif task.status in SETTLED:
            self._withdraw(record.task_id)
            faults.point("done")
            self.state.set_stage(record.task_id, "provider", "done", final_status=task.status.name)
        else:  # None: not mined yet, or dropped by a reorg
            self.later(record, 2.0)

    def _precheck_terms(self, task: Task) -> None:
        """Before any fetch or compute: the verdict comes from a validator we trust, and the price is ours.

        Raises:
            Refused: The validator is not in our trusted set on chain, or the price is below our asking price.
        """
        if task.validator is None or not self.market.trusts(self.address, task.validator):
            raise Refused(f"the validator {task.validator} is not in our trusted set")
        asking = int(self.market.worker(self.address).price)
        if int(task.price) < asking:
            raise Refused(f"the price {task.price} wei is below our asking price {asking} wei")

    def _fetch_task(self, record: TaskRecord, task: Task) -> Path:
        """Open the task locator with the event's requester and the envelope's key, fetch (size cap), verify
        against the task hash, unpack; returns the task folder.

        Raises:
            Refused: The locator does not open for this task's requester (a copied locator: H3), the archive is
                too large, or it is not the posted task.
            TransferError: The requester's host is unreachable (retried).
        """
        from ichain.transfer import ContextInvalid, LocatorInvalid, TransferTooLarge, WrongKey, fetch

        work = self._work(record)
        archive = work / "task.tar"
        if (work / "task.ok").exists():
            return work / "task"
        requester = record.data.get("requester") or task.requester
        try:
            env = Envelope.decode(bytes.fromhex(record.data.get("locator", "")))
        except (EnvelopeError, ValueError):
            raise Refused("the task locator is not an iChain envelope") from None
        if not env.sealed:
            raise Refused("the task locator holds no task")
        if not record.data.get("claimed_key"):
            # Not yet authenticated (the fetch proves it): only used to seal a failure report to whoever posted.
            self.state.upsert_task(record.task_id, "provider", claimed_key=env.sender_key.hex())
        faults.point("task-fetch-start")
        if not archive.exists():
            # Task id 0: the requester sealed before the post, when the id was not known. The requester and
            # its key are bound in: a locator copied under another requester (or another key) does not open.
            ctx = self.context(0, "task-provider", requester, env.sender_key)
            try:
                fetch(env.sealed[0], self.keypair, ctx, archive, transport=self._hosting().transport,
                      max_size=self.config.max_fetch_bytes)
            except (WrongKey, LocatorInvalid, ContextInvalid):
                raise RequesterFault(f"the task locator does not open for requester {requester} and its key") from None
            except TransferTooLarge as err:
                raise RequesterFault(str(err)) from None
            except TransportError as err:
                # The requester does not serve its task (down, or it stopped hosting on purpose): retried until a
                # grace period of the execution window has passed, then the task ends with a failure report.
                started = task.deadline - task.timeout
                grace = min(self.config.fetch_grace, task.timeout / 4)
                if self.market.now() < started + grace:
                    raise
                raise RequesterFault(f"the task could not be fetched from the requester for {grace:.0f} s: "
                                     f"{' '.join(str(err).split())}") from None
        self.state.upsert_task(record.task_id, "provider", requester_key=env.sender_key.hex())
        faults.point("task-fetched")
        return self._unpack_task(record, archive)

    def _check_time(self, folder: Path, task: Task) -> float:
        """The run time limit, refused when execute + the validate pre-check cannot end before the deadline (H4).

        Raises:
            Refused: The limits do not fit before the on-chain deadline with the configured margin.
        """
        limit = self.sandbox.time_limit(folder)
        now = self.market.now()
        needed = 2 * limit + self.config.deadline_margin
        if now + needed > task.deadline:
            raise RequesterFault(f"the task's time limit ({limit:.0f} s per run, two runs, {self.config.deadline_margin:.0f} s"
                          f" margin) does not fit before its deadline ({task.deadline - now} s left)")
        return limit

    def _execute_and_submit(self, record: TaskRecord, task: Task) -> None:
        from ichain.sandbox import PackageError, TaskFormatError, load_task, pack_bundle, pack_result

        if record.data.get("report"):
            self._report_failure(record)  # a failure sealed in an earlier life: send that same report
            return
        work = self._work(record)
        result = work / "result.tar"
        if not record.data.get("result_hash") or not result.exists():
            self._precheck_terms(task)
            try:
                folder = self._fetch_task(record, task)
            except PackageError as err:
                # The posted archive itself is unsafe or corrupt (its hash matched): the requester's fault, said at once.
                self._fail(self._reload(record), "execute", None, f"the task archive cannot be unpacked: {err}")
                return
            record = self._reload(record)  # the requester key the locator opened with is recorded now
            try:
                self._check_time(folder, task)
                self._check_fits(load_task(folder), task)
            except TaskFormatError as err:
                self._fail(record, "execute", None, f"the task is not a valid iChain task: {err}")
                return
            out = work / "output"
            shutil.rmtree(out, ignore_errors=True)
            log.info("task %d: running in the sandbox", record.task_id)
            run = self.sandbox.execute(folder, out)
            faults.point("executed")
            if run.sandbox_fault:
                # This machine's problem (engine down, image missing), not the task's: retry later.
                raise DaemonError(f"task {record.task_id}: sandbox unavailable: {run.error}")
            if not run.ok:
                self._fail(record, "execute", run.exit_code, _tail(run.stderr_tail, run.error))
                return
            # The task's own validate mode on our own result, before committing anything: a validate mode that
            # rejects (rigged or broken) ends the task now, with the failure fee, instead of losing our collateral.
            check = self.sandbox.validate(folder, out)
            faults.point("prechecked")
            if check.sandbox_fault:
                raise DaemonError(f"task {record.task_id}: sandbox unavailable: {check.error}")
            if not check.accepted:
                self._fail(record, "validate", check.exit_code, _tail(check.stderr_tail, check.error))
                return
            meta = {"chain_id": self.chain_id, "market": self.market_address, "task_id": record.task_id,
                    "provider": self.address}
            part = work / "result.tar.part"
            digest = pack_result(out, part, meta)  # a fresh random salt inside: the hash reveals nothing
            os.replace(part, result)
            record = self.state.set_stage(record.task_id, "provider", "packed", result_hash=digest.hex(),
                                          wall_time=run.wall_time, exit_code=0)
            faults.point("result-packed")
        result_hash = bytes.fromhex(record.data["result_hash"])
        val_loc = record.data.get("validator_locator")
        if not val_loc:
            host = self._hosting()
            requester = record.data.get("requester") or task.requester
            bundle = work / "bundle.tar"
            pack_bundle(work / "task.tar", result, bundle)
            assert task.validator is not None  # _precheck_terms refused a task without one
            vkey = self.market.worker(task.validator).enc_key
            mine = self.keypair.public_bytes
            # One item, for the validator: task + result, so it never depends on the requester still hosting. Nothing
            # sealed to the requester goes on chain before the accept: the validator releases its own verified copy.
            for_validator = host.offer(bundle, vkey, self.context(record.task_id, "bundle-validator", requester, mine))
            val_loc = Envelope(mine, (for_validator,)).encode().hex()
            record = self.state.set_stage(record.task_id, "provider", "offered", validator_locator=val_loc)
            faults.point("result-offered")

        self.txs.send(
            f"submitResult:{record.task_id}",
            self._executing_ours(record.task_id),
            lambda tx: self.market.submit_result(record.task_id, result_hash, bytes.fromhex(val_loc),
                                                 sender=self.account, **tx),
            fault="submit",
        )
        faults.point("submitted")
        log.info("task %d: result %s committed", record.task_id, result_hash.hex()[:16])
        self.state.set_stage(record.task_id, "provider", "submitted")
        self.later(record, 1.0)

    def _executing_ours(self, task_id: int) -> Callable[[], bool]:
        """The journal's re-check before a result or a failure report is sent: the task is still ours to end."""

        def needed() -> bool:
            now = self.market.task(task_id)
            return now.status == Status.Executing and now.provider == self.address

        return needed

    def _fail(self, record: TaskRecord, stage: str, exit_code: int | None, stderr_tail: str) -> None:
        """Seal a failure report to the requester (kept, so a restart sends the same one) and report it."""
        from ichain.transfer.report import seal_report

        code = -1 if exit_code is None else int(exit_code)
        requester = record.data.get("requester") or self.market.task(record.task_id).requester
        key = record.data.get("requester_key") or record.data.get("claimed_key")
        if not key:
            raise DaemonError(f"task {record.task_id}: no requester key to seal the failure report to")
        ctx = self.context(record.task_id, "failure-report", requester, self.keypair.public_bytes)
        report = seal_report(bytes.fromhex(key), ctx, code, stage, stderr_tail, self.keypair)
        log.warning("task %d failed in %s mode (exit %s); reporting the failure", record.task_id, stage, code)
        record = self.state.set_stage(record.task_id, "provider", "failing", report=bytes(report).hex(),
                                      failed_stage=stage, exit_code=code, error=stderr_tail[-300:])
        self._report_failure(record)

    def _report_failure(self, record: TaskRecord) -> None:
        report = bytes.fromhex(record.data["report"])

        self.txs.send(
            f"reportFailure:{record.task_id}",
            self._executing_ours(record.task_id),
            lambda tx: self.market.report_failure(record.task_id, report, sender=self.account, **tx),
            fault="report",
        )
        log.info("task %d: failure reported (%s mode, exit %s)", record.task_id, record.data.get("failed_stage"),
                 record.data.get("exit_code"))
        self.state.set_stage(record.task_id, "provider", "reported")
        self.later(record, 1.0)

    # --- validator side -------------------------------------------------------------------------
    def _validator_job(self, record: TaskRecord) -> None:
        task = self.market.task(record.task_id)
        if task.validator != self.address:
            if task.status in (Status.Validating, Status.Executing, Status.Pending):
                self.later(record, 2.0)
                return
            self._withdraw(record.task_id)
            self.state.set_stage(record.task_id, "validator", "done", final_status=task.status.name)
            return
        if task.status in (Status.Pending, Status.Executing, Status.None_):
            self.later(record, 2.0)  # the ResultSubmitted event wakes us
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
        if record.data.get("judged") != committed.hex():
            # Our policy before any compute: a verdict is worth our asking price (and our floor) or nothing.
            floor = max(int(self.market.worker(self.address).price), self.config.min_validator_fee)
            if int(task.validator_fee) < floor:
                self._refuse(record, f"the validator fee {task.validator_fee} wei is below our policy ({floor} wei)")
                return
        verdict = self._judge(record, task, committed)
        if verdict is None:
            self.later(record, 2.0)  # the bundle is not fetchable yet; retried until near the deadline
            return
        accept, reason = verdict
        req_loc = b""
        if accept:
            req_loc = self._offer_to_requester(record, task, committed)

        def needed() -> bool:
            now = self.market.task(record.task_id)
            return (now.status == Status.Validating and now.validator == self.address
                    and self.market.result_of(record.task_id) == committed)

        self.txs.send(
            f"verdict:{record.task_id}",
            needed,
            lambda tx: self.market.submit_verdict(record.task_id, committed, accept, req_loc, sender=self.account,
                                                  **tx),
            fault="verdict",
        )
        self.state.set_stage(record.task_id, "validator", "judged", accepted=accept, reason=reason)
        log.info("task %d: verdict %s (%s)", record.task_id, "accept" if accept else "reject", reason)
        self._withdraw(record.task_id)
        self.state.set_stage(record.task_id, "validator", "done")

    def _offer_to_requester(self, record: TaskRecord, task: Task, committed: bytes) -> bytes:
        """Host our verified copy of the result for the requester; the requester locator (offered once, kept)."""
        offered = record.data.get("requester_locator")
        if offered and record.data.get("offered_for") == committed.hex():
            return bytes.fromhex(offered)
        result = self._work(record) / f"result-{committed.hex()}.tar"
        mine = self.keypair.public_bytes
        key = record.data.get("requester_key")
        if not key:
            # Accepting without a copy the requester can open would take its money for nothing: wait for the key
            # (it is in the requester's own TaskPosted/ProviderAssigned envelope).
            raise DaemonError(f"task {record.task_id}: the requester's key is not known yet; no verdict before it is")
        ctx = self.context(record.task_id, "result-requester", record.data.get("requester") or task.requester, mine)
        ours = bytes(self._hosting().offer(result, bytes.fromhex(key), ctx))
        locator = Envelope(mine, (ours,)).encode()
        self.state.upsert_task(record.task_id, "validator", requester_locator=locator.hex(),
                               offered_for=committed.hex())
        return locator

    def _judge(self, record: TaskRecord, task: Task, committed: bytes) -> tuple[bool, str] | None:
        """Fetch the bundle from the provider (size cap), check the task against its hash, the result against the
        commitment and its meta, run validate mode. None: the bundle is not fetchable yet and the deadline is not
        near (try again). A verdict reached before (a restart between judging and sending) is reused for the same
        result."""
        if record.data.get("judged") == committed.hex():
            return bool(record.data["accepted"]), str(record.data.get("reason", ""))
        verdict = self._verdict(record, task, committed)
        if verdict is not None:
            self.state.set_stage(record.task_id, "validator", "judging", accepted=verdict[0], reason=verdict[1],
                                 judged=committed.hex())
        return verdict

    def _verdict(self, record: TaskRecord, task: Task, committed: bytes) -> tuple[bool, str] | None:
        from ichain.sandbox import PackageError, read_result_meta, unpack_bundle, unpack_result
        from ichain.transfer import ContextInvalid, LocatorInvalid, TransferError, TransferTooLarge, WrongKey, fetch

        work = self._work(record)
        # Named by the commitment: a file fetched for a result a reorg replaced is never judged as this one.
        result = work / f"result-{committed.hex()}.tar"
        bundle_dir = work / f"bundle-{committed.hex()}"
        if not result.exists():
            try:
                env = Envelope.decode(bytes.fromhex(record.data.get("result_locator", "")))
            except (EnvelopeError, ValueError):
                return False, "the provider's locator is not an iChain envelope"
            if not env.sealed:
                return False, "the provider's locator holds no bundle"
            bundle = work / f"bundle-{committed.hex()}.tar"
            if not bundle.exists():
                requester = record.data.get("requester") or task.requester
                ctx = self.context(record.task_id, "bundle-validator", requester, env.sender_key)
                try:
                    fetch(env.sealed[0], self.keypair, ctx, bundle, transport=self._hosting().transport,
                          max_size=2 * self.config.max_fetch_bytes, attempts=2)
                except (WrongKey, LocatorInvalid, ContextInvalid):
                    return False, "the provider's bundle locator does not open for this task"
                except TransferTooLarge as err:
                    return False, f"the provider's bundle is too large: {err}"
                except TransferError as err:
                    # The provider does not serve what it committed to (2d): a reject before our deadline, so a
                    # provider that hosts nothing loses its collateral instead of stalling us to the timeout.
                    left = task.deadline - self.market.now()
                    if left > self.config.deadline_margin:
                        log.info("task %d: bundle not fetchable yet (%s); %d s left", record.task_id, err, left)
                        return None
                    return False, f"result unavailable from the provider: {err}"
            shutil.rmtree(bundle_dir, ignore_errors=True)
            try:
                task_tar, result_tar = unpack_bundle(bundle, bundle_dir, max_bytes=2 * self.config.max_fetch_bytes)
            except PackageError as err:
                return False, f"the provider's bundle is malformed: {err}"
            if sha256_file(task_tar).hex() != record.data.get("task_hash"):
                return False, "the task in the bundle is not the task posted on chain"
            # Only what matches the commitment is kept under the commitment's name.
            os.replace(result_tar, result)
            if not (work / "task.tar").exists():
                os.replace(task_tar, work / "task.tar")
        if sha256_file(result) != committed:
            return False, "result does not match the commitment on chain"
        try:
            folder = self._unpack_task(record, work / "task.tar")
        except (Refused, PackageError) as err:
            return False, str(err)
        try:
            meta = read_result_meta(result)
        except PackageError as err:
            return False, f"not a result package: {err}"
        expect = (self.chain_id, self.market_address.lower(), record.task_id, str(task.provider).lower())
        if (meta.chain_id, meta.market.lower(), meta.task_id, meta.provider.lower()) != expect:
            return False, "result meta names another chain, market, task or provider"
        out = work / f"result-{committed.hex()}"
        if not (work / f"{out.name}.ok").exists():
            shutil.rmtree(out, ignore_errors=True)
            try:
                unpack_result(result, out)
            except PackageError as err:
                return False, f"the result package is unsafe or malformed: {err}"
            (work / f"{out.name}.ok").touch()
        run = self.sandbox.validate(folder, out)
        if run.sandbox_fault:  # our machine's problem: never reject a result for it
            raise DaemonError(f"task {record.task_id}: sandbox unavailable: {run.error}")
        return run.accepted, f"validate exit {run.exit_code}{' ' + run.error if run.error else ''}"


class Refused(DaemonError):
    """A task this daemon will not work on (its terms, its locator or its limits), decided before any compute."""


class RequesterFault(Refused):
    """A task that cannot run through its requester's doing (a locator that does not open for it, a task it does not
    serve, an archive that is not the posted task, limits that cannot end before its deadline).

    Such a task is ended at once with a failure report, so the requester pays the failure fee: posting unrunnable
    tasks (copied locators, tasks never hosted, impossible limits) is not a free way to tie providers up.
    """


def _tail(stderr_tail: str, error: str) -> str:
    """The stderr tail a failure report carries, with the sandbox's one-line reason (time limit, memory) last."""
    return f"{stderr_tail.rstrip()}\n{error}".strip() if error else stderr_tail
