"""Sending a daemon's transactions so that a crash never duplicates one or burns a nonce.

The rule, per action (``submitResult:7``, ``verdict:9``, ``expire:7``, ``withdraw:...``):

1. Re-derive from chain state whether the action is still needed (the chain is the truth). If not,
   the action is *moot* (someone, maybe our previous life, already did it).
2. If the journal holds this action with a nonce the account has not used yet, re-send it with
   that same nonce: a replacement of a transaction the node may still hold, never a second one.
3. Otherwise take the account's next nonce, journal (action, nonce) *before* sending, send, then
   record the outcome.

Sends are serialised per account (one lock), so nonces are allocated in order even with several
tasks in flight.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from ichain.daemon import faults
from ichain.daemon.state import DaemonState

log = logging.getLogger("ichain.daemon")


class TxSender:
    """Journaled, nonce-disciplined sending for one account.

    Args:
        state: The daemon state holding the journal.
        address: The sending account's address.
        web3: A web3 instance on the node (nonces, receipts).
    """

    def __init__(self, state: DaemonState, address: str, web3: Any):
        self.state = state
        self.address = address
        self.web3 = web3
        self.lock = threading.Lock()
        self.sent = 0

    def _nonce(self, block: str) -> int:
        return int(self.web3.eth.get_transaction_count(self.address, block))

    def send(
        self, action: str, needed: Callable[[], bool], send: Callable[[int], Any], fault: str | None = None
    ) -> str:
        """Send ``action`` once, if the chain says it is still needed.

        Args:
            action: A stable name for the action (the journal key).
            needed: Re-derives from chain state whether the action must still happen.
            send: Sends the transaction with the given nonce and returns its receipt (raising on
                failure; the SDK's typed pre-checks raise before a doomed send).
            fault: Prefix of the fault-injection points around the send (crash tests).

        Returns:
            ``"sent"`` or ``"moot"``.
        """
        with self.lock:
            if not needed():
                entry = self.state.journal(action)
                if entry and entry["status"] == "sending":
                    self.state.journal_result(action, "moot")
                return "moot"
            if fault:
                faults.point(f"{fault}-before-journal")
            entry = self.state.journal(action)
            latest = self._nonce("latest")
            if entry and entry["status"] == "sending" and entry["nonce"] >= latest:
                nonce = entry["nonce"]  # our earlier attempt may still be in the node: replace it
                log.info("re-sending %s with its journaled nonce %d", action, nonce)
            else:
                nonce = max(self._nonce("pending"), latest)
                self.state.journal_intent(action, nonce)
            if fault:
                faults.point(f"{fault}-after-journal")
            receipt = send(nonce)
            if fault:
                faults.point(f"{fault}-after-send")
            tx_hash = getattr(receipt, "txn_hash", None)
            if isinstance(tx_hash, bytes):
                tx_hash = "0x" + tx_hash.hex()
            failed = bool(getattr(receipt, "failed", False))
            self.state.journal_result(action, "reverted" if failed else "mined", str(tx_hash) if tx_hash else None)
            self.sent += 1
            return "sent"
