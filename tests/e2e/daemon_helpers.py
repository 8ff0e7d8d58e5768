"""A minimal protocol-v2 requester for the daemon's end-to-end tests: it posts a task as the spec says (hosted for
the provider only, sealed under task id 0 with the requester and its key bound in), opens failure reports and
fetches an accepted result from the accept's locator. The tests drive real daemons (``ape ichain provide``)
against it, so they depend on the spec's formats only, not on the requester package."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ichain.market import Market
from ichain.sandbox import pack_task
from ichain.transfer import ChunkHost, DirectTransport, KeyPair, TransferContext, fetch
from ichain.transfer.envelope import Envelope
from ichain.transfer.report import FailureReport, open_report, report_sender

#: A task whose execute mode writes a result its validate mode accepts (no scientific stack: quick runs).
OK_TASK = """import sys
if sys.argv[1] == "0":
    open("result.txt", "w").write("42\\n")
else:
    sys.exit(0 if open("result.txt").read() == "42\\n" else 1)
"""

#: A task whose script raises in execute mode.
RAISING_TASK = """import sys
if sys.argv[1] == "0":
    print("loading the data", flush=True)
    raise ValueError("boom: the script failed on purpose")
"""

#: A task whose validate mode rejects any result (1d: a rigged validate mode).
REJECTING_TASK = """import sys
if sys.argv[1] == "0":
    open("result.txt", "w").write("42\\n")
else:
    print("claim_offset says no", file=sys.stderr)
    sys.exit(3)
"""


def task_folder(root: Path, name: str, script: str, time_limit: int = 30) -> Path:
    """A task folder holding ``script`` as task.py and a manifest with a short time limit."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "task.py").write_text(script)
    (folder / "ichain.json").write_text(f'{{"time_limit": {time_limit}, "memory": "128m"}}')
    return folder


@dataclass
class Requester:
    """One requester account with its X25519 key and its own chunk host."""

    market: Market
    account: object
    root: Path
    chain_id: int
    keypair: KeyPair = field(default_factory=KeyPair.generate)
    host: ChunkHost | None = None
    uploads: dict[int, str] = field(default_factory=dict)

    def start(self) -> Requester:
        self.host = ChunkHost(self.root / "host", transport=DirectTransport())
        self.host.start()
        return self

    def stop(self) -> None:
        if self.host is not None:
            self.host.stop()

    @property
    def address(self) -> str:
        return str(self.account.address)  # type: ignore[attr-defined]

    def context(self, task_id: int, role: str, sender_key: bytes) -> TransferContext:
        return TransferContext(self.chain_id, self.market.address, task_id, role, self.address, sender_key)

    def post(self, folder: Path, *, provider: str, validator: str, price: int, fee: int, timeout: int) -> int:
        """Pack, host for the provider only, post; returns the task id."""
        assert self.host is not None
        archive = self.root / f"{folder.name}.tar"
        task_hash = pack_task(folder, archive)
        sealed = self.host.offer(archive, self.market.worker(provider).enc_key,
                                 self.context(0, "task-provider", self.keypair.public_bytes))
        locator = Envelope(self.keypair.public_bytes, (sealed,)).encode()
        task = self.market.post(task_hash, validator=validator, price=price, validator_fee=fee, timeout=timeout,
                                provider=provider, locator=locator, sender=self.account)
        self.uploads[task.task_id] = sealed.transfer_id
        return int(task.task_id)

    def fetched(self, task_id: int) -> bool:
        """Whether the provider fetched every chunk of the task."""
        assert self.host is not None
        return bool(self.host.progress(self.uploads[task_id])["complete"])

    def event(self, task_id: int, name: str):
        found = [e for e in self.market.events(0) if e.event_name == name and e.task_id == task_id]
        return found[-1] if found else None

    def opens_before_accept(self, task_id: int) -> list[str]:
        """What of the provider's ResultSubmitted envelope opens for us (the requester), in any role: must be
        nothing, or the requester would hold the result before the verdict."""
        from ichain.transfer import TransferError, open_locator

        env = Envelope.decode(bytes(self.event(task_id, "ResultSubmitted").validator_locator))
        opened = []
        for role in ("result-requester", "bundle-validator", "task-provider"):
            for sealed in env.sealed:
                try:
                    open_locator(sealed, self.keypair, self.context(task_id, role, env.sender_key))
                    opened.append(role)
                except TransferError:
                    pass
        return opened

    def failure(self, task_id: int) -> FailureReport:
        """Open the task's failure report (sealed to us by the provider)."""
        report = bytes(self.event(task_id, "TaskFailed").report)
        return open_report(report, self.keypair, self.context(task_id, "failure-report", report_sender(report)))

    def result(self, task_id: int, dest: Path) -> Path:
        """Fetch the accepted result and check it against the commitment: the accept's locator holds the
        validator's copy (sealed under the verdict envelope's key)."""
        env = Envelope.decode(bytes(self.event(task_id, "VerdictSubmitted").requester_locator))
        fetch(env.sealed[0], self.keypair, self.context(task_id, "result-requester", env.sender_key), dest,
              max_size=1 << 30)
        assert hashlib.sha256(dest.read_bytes()).digest() == self.market.result_of(task_id)
        return dest
