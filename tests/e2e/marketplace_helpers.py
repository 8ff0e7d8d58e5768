"""Helpers for the marketplace end-to-end tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Callable

import pytest

from ichain.market import Market, Status
from ichain.net import free_port

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "digits"

# Windows short enough for tests; time is moved with the chain where a test waits for one.
VALIDATION_WINDOW = 60
MIN_TIMEOUT = 30
MAX_TIMEOUT = 3600


#: A task whose script raises in execute mode, its stderr carrying a stranger's escape sequences and markup.
RAISING_SCRIPT = r"""import sys
if sys.argv[1] == "0":
    print("loading the data", flush=True)
    sys.stderr.write("\x1b]0;pwned\x07\x1b[2J\x1b[1;31m<script>alert(1)</script>\u202eevil\x1b[0m\n")
    sys.stderr.flush()
    raise ValueError("boom: <b>bold</b> \x1b[5mthe script failed on purpose")
"""


def raising_task(root: Path, name: str = "raising") -> Path:
    """A task folder whose execute mode raises (a short time limit, no scientific stack: a quick run)."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "task.py").write_text(RAISING_SCRIPT)
    (folder / "ichain.json").write_text('{"time_limit": 30, "memory": "128m"}')
    return folder


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.25,
               check: Callable[[], None] | None = None) -> object:
    """Poll ``predicate`` until truthy; fail the test naming ``what`` after ``timeout`` seconds."""
    end = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if check:
            check()
        if time.time() > end:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def task_status(market: Market, task_id: int) -> Status:
    """The task's status on chain (a :class:`Status`; compares equal to its name only through ``.name``)."""
    return market.task(task_id).status


def move_time(chain, seconds: int) -> None:
    """Advance the chain clock and mine a block (anvil evm_increaseTime + evm_mine)."""
    chain.provider.make_request("evm_increaseTime", [int(seconds)])
    chain.provider.make_request("evm_mine", [])


class TcpProxy:
    """A TCP forwarder in front of the node that a test can cut (an RPC outage) and restore."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.up = False

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        self._server = srv
        self.up = True
        threading.Thread(target=self._accept, args=(srv,), daemon=True).start()

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                client, _ = srv.accept()
            except OSError:
                return
            if not self.up or srv is not self._server:
                # Accepted by a call that was already blocked when the proxy was cut: an outage
                # refuses it, or the "outage" would silently carry a fresh keep-alive connection.
                client.close()
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        self.up = False
        if self._server:
            # shutdown() wakes the accept() blocked in the proxy thread; close() alone does not on
            # Linux, and that pending accept would let one more connection through the outage.
            try:
                self._server.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._server.close()
            self._server = None
        with self._lock:
            for s in self._conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self._conns.clear()

    def stop(self) -> None:
        self.cut()


