"""A checkpointed event loop over ``market.events(start, stop)`` (silverback-style handlers).

Why not ape's ``poll_logs``: on local networks it gives up after 10 s without a new block and does
not sleep. This loop:

- wakes on a websocket ``newHeads`` subscription when the node offers one (anvil does, on the same
  port), and otherwise polls the head every ``poll_interval`` seconds;
- reads events from the block after the checkpoint up to the head, calls the handlers registered
  for each event name, then advances the checkpoint (handlers record into SQLite; the caller
  makes handlers idempotent, since a block range is replayed after a crash or a reorg);
- notices a reorg (the hash of the checkpoint block changed) and rescans from a safe depth;
- never dies on a quiet chain or an RPC outage: errors are logged and retried with backoff;
- runs ``on_tick`` after every pass (the daemon schedules its jobs there: deadlines move even
  when no block comes).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import defaultdict
from typing import Any, Callable, Iterable

from ichain.daemon import faults
from ichain.daemon.state import DaemonState
from ichain.market import Market, MarketEvent

log = logging.getLogger("ichain.daemon")

#: Called with one decoded event of the name it was registered for (typed as that event's class).
Handler = Callable[[Any], None]


class HeadWatcher:
    """Wakes the runner on new heads through a websocket subscription, when the node has one.

    Args:
        ws_uri: ``ws://host:port`` of the node (anvil serves it on its HTTP port).
        wake: Set on every new head.
    """

    def __init__(self, ws_uri: str, wake: threading.Event):
        self.ws_uri = ws_uri
        self.wake = wake
        self.connected = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ichain-heads", daemon=True)

    def start(self) -> None:
        """Start the background subscription (reconnects with backoff; never raises)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the subscription."""
        self._stop.set()

    def _run(self) -> None:
        from websockets.sync.client import connect

        delay = 0.2
        while not self._stop.is_set():
            try:
                with connect(self.ws_uri, open_timeout=3, close_timeout=1) as ws:
                    ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe",
                                        "params": ["newHeads"]}))
                    reply = json.loads(ws.recv(timeout=3))
                    if "error" in reply:
                        log.info("node has no newHeads subscription; polling only")
                        return
                    self.connected = True
                    delay = 0.2
                    while not self._stop.is_set():
                        try:
                            ws.recv(timeout=1.0)
                        except TimeoutError:
                            continue
                        self.wake.set()
            except Exception as err:  # node down or no websocket: the poller carries on
                self.connected = False
                log.debug("head subscription lost (%s); retrying in %.1fs", err, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)


class Runner:
    """The event loop of a daemon.

    Args:
        market: The SDK (its ``events(start, stop)``).
        state: The daemon's SQLite state (checkpoint, block hashes).
        web3: A web3 instance connected to the node (head number, block hashes).
        start_block: First block to scan when there is no checkpoint yet.
        poll_interval: Seconds between head checks (also the maximum wait with a websocket).
        reorg_depth: Blocks rescanned after a reorg.
        max_range: Largest block range asked in one ``events`` call.
        ws_uri: Websocket URI for head notifications, if any.
        on_tick: Called after every pass (schedule jobs, check deadlines).
        on_reorg: Called after a reorg was seen and the checkpoint rewound (re-check every job).
    """

    def __init__(
        self,
        market: Market,
        state: DaemonState,
        web3: Any,
        *,
        start_block: int = 0,
        poll_interval: float = 0.1,
        reorg_depth: int = 12,
        max_range: int = 2000,
        ws_uri: str | None = None,
        on_tick: Callable[[], None] | None = None,
        on_reorg: Callable[[], None] | None = None,
    ):
        self.market = market
        self.state = state
        self.web3 = web3
        self.start_block = int(start_block)
        self.poll_interval = float(poll_interval)
        self.reorg_depth = int(reorg_depth)
        self.max_range = int(max_range)
        self.on_tick = on_tick
        self.on_reorg = on_reorg
        self.handlers: dict[str, list[Handler]] = defaultdict(list)
        self.stop_event = threading.Event()
        self.wake = threading.Event()
        self.watcher = HeadWatcher(ws_uri, self.wake) if ws_uri else None
        self.errors = 0
        self.last_error: str | None = None
        self.head: int | None = None

    def on(self, *names: str) -> Callable[[Handler], Handler]:
        """Register a handler for one or more event names (decorator)."""

        def register(func: Handler) -> Handler:
            for name in names:
                self.handlers[name].append(func)
            return func

        return register

    def stop(self) -> None:
        """Ask the loop to finish its current pass and return."""
        self.stop_event.set()
        self.wake.set()

    def dispatch(self, events: Iterable[MarketEvent]) -> int:
        """Call the handlers of each event in order; returns how many events had handlers."""
        handled = 0
        for event in events:
            funcs = self.handlers.get(event.event_name, [])
            for func in funcs:
                func(event)
            handled += bool(funcs)
        return handled

    def _block_hash(self, number: int) -> str:
        return self.web3.eth.get_block(number)["hash"].hex()

    def poll_once(self) -> int:
        """One pass: check for a reorg, ingest new events, advance the checkpoint.

        Returns:
            The number of blocks processed.
        """
        head = int(self.web3.eth.block_number)
        self.head = head
        checkpoint = self.state.checkpoint
        if checkpoint is None:
            checkpoint = self.start_block - 1
        elif checkpoint > head or (
            (known := self.state.block_hash(checkpoint)) is not None and known != self._block_hash(checkpoint)
        ):
            safe = max(self.start_block - 1, min(checkpoint, head) - self.reorg_depth)
            log.warning("reorg or reset seen at block %s: rescanning from %s", checkpoint, safe + 1)
            self.state.rewind(safe)
            checkpoint = safe
            if self.on_reorg:
                self.on_reorg()
        processed = 0
        while checkpoint < head and not self.stop_event.is_set():
            stop = min(head, checkpoint + self.max_range)
            stop_hash = self._block_hash(stop)
            events = self.market.events(checkpoint + 1, stop)
            # A reorg while reading mixes two chains in one range (the checkpoint checked on the old, the end on
            # the new): take the range only if both ends are unchanged, else the next pass sees the reorg.
            known = self.state.block_hash(checkpoint)
            if self._block_hash(stop) != stop_hash or (known is not None and self._block_hash(checkpoint) != known):
                log.info("the chain changed while reading blocks %s-%s; reading them again", checkpoint + 1, stop)
                break
            # Handlers' writes and the checkpoint commit together: all of a range or none of it.
            with self.state.transaction():
                handled = self.dispatch(events)
                if handled:
                    faults.point("ingest-before-commit")
                self.state.advance(stop, stop_hash, keep=max(64, self.reorg_depth * 2))
            if handled:
                faults.point("ingest-after-commit")
            processed += stop - checkpoint
            checkpoint = stop
        return processed

    def run(self) -> None:
        """Loop until :meth:`stop`: ingest, tick, wait for the next head (or the poll interval)."""
        if self.watcher:
            self.watcher.start()
        delay = self.poll_interval
        try:
            while not self.stop_event.is_set():
                try:
                    self.poll_once()
                    if self.on_tick:
                        self.on_tick()
                    if self.errors:
                        log.info("node reachable again after %d failed attempt(s)", self.errors)
                    self.errors, self.last_error, delay = 0, None, self.poll_interval
                except Exception as err:  # RPC outage, node restart...: back off, never die
                    self.errors += 1
                    self.last_error = f"{type(err).__name__}: {err}"
                    log.warning("pass failed (%s); retrying in %.1fs", self.last_error.splitlines()[0], delay)
                    self.stop_event.wait(delay)
                    delay = min(delay * 2, 3.0)
                    continue
                wait = max(self.poll_interval, 1.0) if (self.watcher and self.watcher.connected) else self.poll_interval
                self.wake.wait(wait)
                self.wake.clear()
        finally:
            if self.watcher:
                self.watcher.stop()
