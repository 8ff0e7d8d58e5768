"""Sending a daemon's transactions so that a crash never duplicates one or burns a nonce.

The rule, per action (``submitResult:7``, ``verdict:9``, ``expire:7``, ``withdraw:...``):

1. Re-derive from chain state whether the action is still needed (the chain is the truth). If not,
   the action is *moot* (someone, maybe our previous life, already did it).
2. If the journal holds this action with a nonce the account has not used yet, re-send it with
   that same nonce: a replacement of a transaction the node may still hold, never a second one.
3. Otherwise take the account's next nonce, journal (action, nonce) *before* sending, send, then
   record the outcome: the transaction's hash and whether it was mined, reverted or refused.

Sends are serialised per account (one lock), so nonces are allocated in order even with several
tasks in flight.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, TypedDict

from web3.exceptions import TransactionNotFound

from ichain.daemon import faults
from ichain.daemon.state import DaemonState
from ichain.errors import IChainError
from ichain.market import MarketError

log = logging.getLogger("ichain.daemon")


class JournalError(IChainError):
    """A journaled send did not make exactly one transaction (the wrapped call is not one SDK send)."""


class TxArgs(TypedDict):
    """The transaction keywords a journaled send passes to the SDK method it wraps (``**tx``).

    Attributes:
        nonce: The nonce the journal allocated.
        on_receipt: Receives the transaction's receipt (the SDK's ``on_receipt`` keyword).
    """

    nonce: int
    on_receipt: Callable[[Any], None]


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

    def _nonce(self, block: str) -> int:
        return int(self.web3.eth.get_transaction_count(self.address, block))

    def send(
        self, action: str, needed: Callable[[], bool], send: Callable[[TxArgs], object], fault: str | None = None
    ) -> str:
        """Send ``action`` once, if the chain says it is still needed.

        Args:
            action: A stable name for the action (the journal key): the same intended transaction gets the
                same name in every life of the daemon, so a restart re-sends it with its journaled nonce.
            needed: Re-derives from chain state whether the action must still happen.
            send: Calls one sending SDK method with ``**tx`` (its nonce and receipt hook); raises the SDK's
                :class:`~ichain.market.MarketError` when the transaction is refused or reverts.
            fault: Prefix of the fault-injection points around the send (crash tests).

        Returns:
            ``"sent"`` or ``"moot"``.

        Raises:
            MarketError: The transaction was refused or reverted (journaled as such first).
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
            receipts: list[Any] = []
            try:
                send(TxArgs(nonce=nonce, on_receipt=receipts.append))
            except Exception as err:
                if receipts:  # mined; what failed came after it (the SDK's read of the new state)
                    self._journal_receipt(action, receipts[0])
                elif isinstance(err, MarketError):
                    self._journal_failure(action, err)
                raise
            if fault:
                faults.point(f"{fault}-after-send")
            if len(receipts) != 1:
                # Left as "sending": the next attempt re-derives the need and replaces by nonce if still needed.
                raise JournalError(f"{action}: the send made {len(receipts)} transactions, not one")
            self._journal_receipt(action, receipts[0])
            return "sent"

    def _journal_receipt(self, action: str, receipt: Any) -> None:
        self.state.journal_result(action, "reverted" if receipt.failed else "mined", str(receipt.txn_hash))

    def _journal_failure(self, action: str, err: MarketError) -> None:
        """Journal how a send that raised ended, from the chain: reverted (mined, nonce used) or refused."""
        if err.transaction_hash is None:
            # Nothing was signed (a pre-check or the gas estimate failed): the nonce is still free.
            self.state.journal_result(action, "refused")
            return
        try:
            status = int(self.web3.eth.get_transaction_receipt(err.transaction_hash)["status"])
        except TransactionNotFound:  # not mined: the node refused it or still holds it; the nonce stays journaled
            log.info("%s: transaction %s not mined (%s)", action, err.transaction_hash, err)
            self.state.journal_result(action, "sending", err.transaction_hash)
            return
        self.state.journal_result(action, "reverted" if status == 0 else "mined", err.transaction_hash)
