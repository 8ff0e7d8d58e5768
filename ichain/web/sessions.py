"""The requester sessions the page drives, and the view of one task it shows.

The requester flow itself (package + encrypt + post, host the task for the provider, open the accept's locator,
fetch + verify the result, open a failure report, rate) is :mod:`ichain.requester`, the same one the CLI uses.
This module only keeps the sessions started from the page, moves each one forward in a background thread (so a
result is fetched, or a failure report opened, within seconds even while nobody looks at the page), and turns
the chain's view of a task plus the session's transfer progress into what the templates show.

A party that stays silent is handled by the requester's recovery policy (:mod:`ichain.requester.policy`),
the one ``ape ichain submit`` applies by itself: the refund once the awaited party's deadline has passed. The
page's user clicks it: the page signs only what its user asks for (and never rates on the user's behalf).
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ichain.errors import IChainError
from ichain.market import Status
from ichain.requester import RATEABLE, SETTLED, TERMINAL, Recovery, RequesterSession, assess
from ichain.web.errors import UnknownTask

if TYPE_CHECKING:
    from ichain.web.service import WebService

log = logging.getLogger("ichain.web")

#: Seconds between two steps of a session's follower thread, and the longest wait after errors.
FOLLOW_INTERVAL = 0.25
MAX_BACKOFF = 8.0

STEPS = [("Pending", "Pending"), ("Executing", "Executing"), ("Validating", "Validating"),
         ("Completed", "Completed"), ("Rated", "Rated")]
ENDINGS = {"Failed": "Failed at the provider", "Rejected": "Rejected (dispute)", "Cancelled": "Stopped, refunded",
           "Expired": "Expired, refunded", "Declined": "Declined by the provider, refunded"}
LABELS = {
    "Pending": "waiting for a provider",
    "Executing": "running at the provider",
    "Validating": "being validated",
    "Completed": "completed: rate it",
    "Rated": "completed and rated",
    "Failed": "failed: see the report",
    "Rejected": "rejected: refunded",
    "Cancelled": "stopped: refunded",
    "Expired": "expired: refunded",
    "Declined": "declined by the provider: refunded",
}


def steps_for(status: str, rated_failure: bool = False) -> list[dict]:
    """The lifecycle stepper: which steps are done, current, or where the task ended."""
    order = [s for s, _ in STEPS]
    if status == "Rated" and rated_failure:
        status = "Failed"
    out: list[dict] = []
    if status in order:
        at = order.index(status)
        for i, (key, label) in enumerate(STEPS):
            cls = "done" if i < at else ("current" if i == at else "")
            if status in ("Completed", "Rated") and i == at:
                cls = "done"
            out.append({"label": label, "cls": cls})
        return out
    # An ending: everything before where it stopped is done, then the ending is marked.
    reached = {"Failed": 2, "Rejected": 3, "Cancelled": 1, "Expired": 2, "Declined": 2}.get(status, 0)
    out = [{"label": label, "cls": "done"} for _, label in STEPS[:reached]]
    out.append({"label": ENDINGS.get(status, status), "cls": "failed"})
    return out


#: What each upload of a requester session is (keys of its ``progress.uploads``), in lifecycle order.
_UPLOAD_LABELS = {"task-provider": "Task sent to the provider"}
_UPLOAD_ORDER = {k: i for i, k in enumerate(_UPLOAD_LABELS)}

#: Per-chunk states of a fetch (ichain.transfer.progress map letters) as percent done.
_FETCH_PCT = {"p": 0, "f": 50, "r": 25, "v": 100, "u": 100, "x": 0}


def transfers_view(snap: dict) -> list[dict]:
    """Per-chunk progress bars from a requester snapshot (``progress.uploads`` / ``progress.download``)."""
    out = []
    progress = snap.get("progress") or {}
    for key, up in sorted((progress.get("uploads") or {}).items(), key=lambda kv: _UPLOAD_ORDER.get(kv[0], 9)):
        if not isinstance(up, dict):
            continue
        pcts = [100 if n else 0 for n in up.get("served") or []]
        size = _size(int(up.get("size") or 0))
        what = _UPLOAD_LABELS.get(key, f"Served to a worker ({key})")
        out.append(_bar(f"upload-{key}", f"{what} · {size}", pcts))
    down = progress.get("download")
    if isinstance(down, dict):
        pcts = [_FETCH_PCT.get(c, 0) for c in down.get("map", "")]
        if down.get("finished"):
            pcts = [100] * len(pcts)
        out.append(_bar("download", "Result downloaded and verified", pcts))
    return out


def _size(size: int) -> str:
    n = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _short_paths(text: str | None) -> str | None:
    """Show only the last part of absolute paths in a status note (the page is not a file browser)."""
    if not text:
        return text
    return re.sub(r"(?<![\w.])/(?:[^\s/]+/)+([^\s/]+)", r"…/\1", text)


def _bar(role: str, label: str, pcts: list[int]) -> dict:
    total = len(pcts)
    return {"role": role, "label": label, "chunks": pcts, "total": total,
            "done": sum(1 for p in pcts if p >= 100), "percent": int(sum(pcts) / total) if total else 0}


#: What the task panel says about the recovery policy's advice.
_RECOVERY_TEXT = {
    Recovery.REFUND: "{reason}: claim the refund below to get the whole deposit back.",
}


class Session:
    """One posted task of the requester: its :class:`~ichain.requester.RequesterSession`, kept hosting,
    plus a follower thread that fetches and verifies the result as soon as it is committed."""

    def __init__(self, req: RequesterSession) -> None:
        self.req = req
        self.task_id = int(req.data["task_id"])  # only posted sessions are followed
        self.name = str(req.data.get("task_name") or req.data["id"])
        self.error: str | None = None
        self.lock = threading.RLock()  # the requester session is not meant for concurrent calls
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name=f"ichain-web-task-{self.task_id}", daemon=True)

    def start(self) -> Session:
        """Serve the task's files again (after a restart) and follow the task."""
        status = self.req.data.get("chain_status")
        if status is None or Status[status] not in TERMINAL:
            try:
                with self.lock:
                    self.req.start_host()
            except (IChainError, OSError) as err:  # e.g. the CLI still hosts it on that port
                self.error = f"cannot host the task's files here: {' '.join(str(err).split())[:200]}"
        self._thread.start()
        return self

    def _follow(self) -> None:
        delay = FOLLOW_INTERVAL
        while not self._stop.wait(delay):
            delay = min(delay * 2, MAX_BACKOFF) if self.error else FOLLOW_INTERVAL
            try:
                with self.lock:
                    status = self.req.refresh().status  # a failure report is opened as its event comes in
                    if self.req.data.get("accepted") and not self.req.data.get("result_dir"):
                        self.req.fetch_result()  # open the accept's locator, download, check resultOf, unpack
                self.error = None
                if status in TERMINAL:
                    return
            except IChainError as err:
                self.error = str(err)
            except Exception as err:  # a node hiccup must not kill the follower
                log.exception("requester session %s", self.task_id)
                self.error = f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"

    def assign_provider(self, provider: str) -> None:
        """Name the provider: the task is sealed to its key, hosted, and the provider assigned on chain."""
        with self.lock:
            self.req.assign_provider(provider)


    def stop(self) -> str:
        """Cancel while pending, else expire after the deadline (the SDK says when it is too early)."""
        with self.lock:
            how = self.req.refund()
        return f"Task {self.task_id} {how}: the deposit is back in your credit (Withdraw to get it)"

    def rate(self, rating: int, validator_rating: int = 0) -> None:
        """Rate the provider (and optionally the validator) of a Completed or Failed task."""
        with self.lock:
            self.req.rate(rating, validator_rating)

    def result_path(self) -> Path | None:
        """The verified result archive, once fetched."""
        if not self.req.data.get("result_ok"):
            return None
        path = self.req.root / "result.tar"
        return path if path.is_file() else None

    def close(self) -> None:
        """Stop following and stop hosting (files stay: a restart serves them again)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self.lock:
            self.req.close()


class Sessions:
    """The requester's sessions on this chain and market (those of the CLI too: same state folder)."""

    def __init__(self, service: WebService) -> None:
        self.service = service
        self._by_id: dict[int, Session] = {}
        self._lock = threading.RLock()
        self._closed = False

    def _scan(self) -> None:
        """Pick up every posted session of the account on this market (new ones from the CLI too)."""
        account = self.service.account
        if account is None or self._closed:
            return
        market = self.service.market()
        from ape import chain

        chain_id = int(chain.chain_id)
        for data in RequesterSession.list(config=self.service.config, address=str(account.address)):
            tid = data.get("task_id")
            if tid is None or int(tid) in self._by_id:
                continue
            if data["chain_id"] != chain_id or data["market"] != market.address:
                continue
            req = RequesterSession.load(data["id"], market=market, account=account, config=self.service.config)
            self._by_id[int(tid)] = Session(req).start()

    def submit(self, account: Any, folder: Path, *, name: str, price: int, validator_fee: int,
               provider: str | None, validator: str | None) -> int:
        """Check and package the folder, host the task, post it with its deposit; returns the task id.

        The task is posted pending (no provider) unless one is given: the page then offers the
        ranked list to choose from. A failed post (a pre-check refused it) leaves nothing behind.
        """
        market = self.service.market()
        req = RequesterSession.prepare(folder, market=market, account=account, config=self.service.config)
        req.data["task_name"] = name
        try:
            task_id = req.post(provider=provider, validator=validator, price=price, validator_fee=validator_fee)
        except IChainError:
            req.close()
            if req.task_id is None:  # refused before sending: drop the packaged copy
                shutil.rmtree(req.root, ignore_errors=True)
            raise
        with self._lock:
            self._by_id[int(task_id)] = Session(req).start()
        return int(task_id)

    def get(self, task_id: int) -> Session:
        """The session of one of the requester's tasks."""
        with self._lock:
            if int(task_id) not in self._by_id:
                self._scan()
            try:
                return self._by_id[int(task_id)]
            except KeyError:
                raise UnknownTask(task_id) from None

    def list(self) -> list[dict]:
        """The requester's tasks, newest first, with their on-chain status."""
        with self._lock:
            self._scan()
            sessions = sorted(self._by_id.values(), key=lambda s: -s.task_id)
        out = []
        for s in sessions:
            status = self.service.chain_task(s.task_id).status.name
            out.append({"id": s.task_id, "name": s.name, "status": status, "status_label": LABELS.get(status, status)})
        return out

    def snapshot(self, task_id: int) -> dict:
        """Everything the task panel shows: chain state (status, parties, deadline) and the session's."""
        session = self.get(task_id)
        task = self.service.chain_task(task_id)
        status = task.status.name
        snap = session.req.status()
        advice = assess(session.req, task)
        past = self.service.market().now() > task.deadline
        result = session.result_path()
        metrics = snap.get("metrics") or {}
        view = {
            "id": task_id,
            "name": session.name,
            "status": status,
            "status_label": LABELS.get(status, status),
            "steps": steps_for(status, rated_failure=snap.get("failure") is not None),
            "provider": task.provider,
            "validator": task.validator,
            "price": task.price,
            "validator_fee": task.validator_fee,
            "deadline": (time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(task.deadline))
                         + (" (passed)" if past else "")) if task.status not in SETTLED else None,
            "result_hash": ("0x" + snap["result_hash"]) if snap.get("result_hash") else None,
            "accepted": snap.get("accepted"),
            "failure": snap.get("failure"),
            "declined": snap.get("declined"),
            "settled": snap.get("settled") or {},
            "collateral": snap.get("collateral"),
            "rating": snap.get("rating"),
            "validator_rating": snap.get("validator_rating"),
            "transfers": transfers_view(snap),
            "note": _short_paths((snap.get("history") or [{}])[-1].get("message")),
            "error": session.error,
            "recovery": (_RECOVERY_TEXT[advice.action].format(reason=advice.reason.capitalize())
                         if advice.action is not Recovery.NONE else None),
            "metrics": metrics,
        }
        # A pending task's provider must trust its validator: only those are offered.
        view["trusting"] = ([w.address for w in session.req.rank_providers((task.validator,))
                             if task.validator and self.service.market().trusts(w.address, task.validator)]
                            if task.status == Status.Pending else [])
        view["can"] = {
            "choose_provider": task.status == Status.Pending,
            # Getting the deposit back: cancel while pending; after a missed deadline, expire
            # (before it, the SDK's pre-check says when). Every timeout refunds the requester.
            "stop": task.status in (Status.Pending, Status.Executing, Status.Validating),
            "rate": task.status in RATEABLE,
            "rate_validator": task.status == Status.Completed,
            "download": result is not None,
        }
        if task.status == Status.Pending:
            view["stop_label"], view["stop_hint"] = "Stop and refund", "Nobody works on it yet: full refund."
        else:
            view["stop_label"] = "Claim refund"
            if advice.action is Recovery.REFUND:
                view["stop_hint"] = "The deadline passed: the whole deposit comes back."
            elif past:
                view["stop_hint"] = "The deadline passed: settle the escrow."
            else:
                view["stop_hint"] = f"Allowed once the deadline passes ({view['deadline']})."
        return view

    def close(self) -> None:
        """Stop every session's follower and host."""
        with self._lock:
            self._closed = True
            for s in self._by_id.values():
                s.close()
