"""Tor processes owned by iChain, driven through stem.

A :class:`TorProcess` is either *launched* by us (a private ``tor`` with its own data directory, a
control socket with cookie authentication and a SOCKS port chosen by tor itself) or *attached* to a
system tor through its control port. A launched tor is owned twice over: ``__OwningControllerProcess``
makes it exit if our process dies before we connect, and stem then issues ``TAKEOWNERSHIP`` so it exits
as soon as our control connection closes (even on SIGKILL). :meth:`TorProcess.stop` closes that
connection and waits for the PID, so no tor is ever left behind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Mapping, Sequence, Union

import stem
import stem.connection
from stem.control import Controller, Listener

from ichain.tor.errors import TorControlError, TorNotFound, TorStartError

ConfigValue = Union[str, int, Sequence[Union[str, int]]]


def find_tor(tor_cmd: str = "tor") -> str:
    """Return the path of the tor executable.

    Raises:
        TorNotFound: tor is not installed.
    """
    path = shutil.which(tor_cmd) or (tor_cmd if os.access(tor_cmd, os.X_OK) else None)
    if path is None and os.access("/usr/sbin/tor", os.X_OK) and tor_cmd == "tor":
        path = "/usr/sbin/tor"  # Debian puts tor in sbin, often not on a user's PATH
    if path is None:
        raise TorNotFound(f"tor executable {tor_cmd!r} not found — install it (make setup, step tor)")
    return path


def write_torrc(path: Path, config: Mapping[str, ConfigValue]) -> None:
    """Write a torrc: one ``Key value`` line per value (lists give repeated keys)."""
    lines: list[str] = []
    for key, value in config.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        lines.extend(f"{key} {v}" for v in values)
    tmp = path.with_name(path.name + ".part")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, path)


class TorProcess:
    """One tor: a launched private process we own, or a system tor we attach to.

    Attributes:
        name: a label for logs and errors.
        data_dir: its data directory (None when attached to a system tor).
        controller: an authenticated stem Controller.
        owned: True when we launched it (and stop() kills it).
    """

    def __init__(self, name: str, controller: Controller, popen: subprocess.Popen | None = None,
                 data_dir: Path | None = None):
        self.name = name
        self.controller = controller
        self.popen = popen
        self.data_dir = data_dir
        self.owned = popen is not None

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def launch(cls, data_dir: Path | str, config: Mapping[str, ConfigValue] | None = None, *,
               name: str = "tor", tor_cmd: str = "tor", socks: bool = True,
               timeout: float = 30.0) -> "TorProcess":
        """Launch a private tor we own (control socket + cookie auth in ``data_dir``).

        Args:
            data_dir: directory for tor's state, keys, logs and control socket (created 0700).
            config: extra torrc options (lists give repeated keys).
            name: label used in errors.
            tor_cmd: the tor executable.
            socks: open a SOCKS port (``auto``: tor picks a free one) when True.
            timeout: seconds to wait for the control socket.

        Returns:
            The running, authenticated TorProcess (not necessarily bootstrapped: see
            :meth:`wait_bootstrapped`).

        Raises:
            TorNotFound: no tor executable.
            TorStartError: tor exited or its control socket did not appear in time.
        """
        exe = find_tor(tor_cmd)
        data_dir = Path(data_dir).absolute()
        data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(data_dir, 0o700)
        sock = data_dir / "control.sock"
        if sock.exists():
            sock.unlink()
        torrc: dict[str, ConfigValue] = {
            "DataDirectory": str(data_dir),
            "ControlSocket": str(sock),
            "CookieAuthentication": 1,
            "SocksPort": "127.0.0.1:auto ExtendedErrors" if socks else 0,
            "Log": f"notice file {data_dir / 'notice.log'}",
            "GeoIPFile": '""',
            "GeoIPv6File": '""',
            "AvoidDiskWrites": 1,
            # Exit if we die before taking ownership over the control connection.
            "__OwningControllerProcess": os.getpid(),
        }
        torrc.update(config or {})
        write_torrc(data_dir / "torrc", torrc)
        (data_dir / "torrc-defaults").write_text("")
        out = open(data_dir / "stdout.log", "wb")
        try:
            popen = subprocess.Popen(
                [exe, "-f", str(data_dir / "torrc"), "--defaults-torrc", str(data_dir / "torrc-defaults")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        finally:
            out.close()
        deadline = time.monotonic() + timeout
        while not sock.exists():
            if popen.poll() is not None:
                raise TorStartError(f"{name}: tor exited with code {popen.returncode}: {_last_error(data_dir)}")
            if time.monotonic() > deadline:
                _kill(popen)
                raise TorStartError(f"{name}: tor's control socket did not appear within {timeout:.0f}s")
            time.sleep(0.05)
        try:
            controller = _connect(lambda: Controller.from_socket_file(str(sock)), deadline)
        except TorControlError:
            _kill(popen)
            raise
        return cls(name, controller, popen, data_dir)

    @classmethod
    def attach(cls, control: str | int = 9051, *, password: str | None = None,
               name: str = "system tor", timeout: float = 10.0) -> "TorProcess":
        """Attach to a running (system) tor through its control port or socket (cookie or password auth).

        Args:
            control: a control port number on 127.0.0.1, or the path of a control socket.
            password: the control password when tor uses HashedControlPassword.
            name: label used in errors.
            timeout: seconds to keep trying to connect.

        Raises:
            TorControlError: nothing listens there or authentication failed.
        """
        deadline = time.monotonic() + timeout
        if isinstance(control, int) or str(control).isdigit():
            make = lambda: Controller.from_port("127.0.0.1", int(control))  # noqa: E731
        else:
            make = lambda: Controller.from_socket_file(str(control))  # noqa: E731
        return cls(name, _connect(make, deadline, password), None, None)

    # -- state --------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """PID of the tor process (None when attached to a system tor we don't own)."""
        if self.popen is not None:
            return self.popen.pid
        try:
            return int(self.controller.get_info("process/pid"))
        except (stem.ControllerError, ValueError):
            return None

    def alive(self) -> bool:
        """True while the tor process runs."""
        if self.popen is not None:
            return self.popen.poll() is None
        return self.controller.is_alive()

    @property
    def socks_port(self) -> int:
        """The SOCKS port tor listens on (127.0.0.1)."""
        try:
            listeners = self.controller.get_listeners(Listener.SOCKS)
        except stem.ControllerError as exc:
            raise TorControlError(f"{self.name}: cannot read its SOCKS port: {exc}") from None
        if not listeners:
            raise TorControlError(f"{self.name}: tor has no SOCKS port (set SocksPort in its torrc)")
        return int(listeners[0][1])

    def bootstrap_progress(self) -> int:
        """Tor's bootstrap percentage (0-100)."""
        phase = self.controller.get_info("status/bootstrap-phase", "")
        m = re.search(r"PROGRESS=(\d+)", phase)
        return int(m.group(1)) if m else 0

    def wait_bootstrapped(self, timeout: float = 60.0) -> None:
        """Block until tor reports 100% bootstrap.

        Raises:
            TorStartError: not bootstrapped within ``timeout`` seconds, or tor died.
        """
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise TorStartError(f"{self.name}: tor exited while bootstrapping: {_last_error(self.data_dir)}")
            progress = self.bootstrap_progress()
            if progress >= 100:
                return
            if time.monotonic() > deadline:
                raise TorStartError(f"{self.name}: tor bootstrapped only {progress}% within {timeout:.0f}s")
            time.sleep(0.2)

    # -- teardown -----------------------------------------------------------------------------

    def stop(self, timeout: float = 10.0) -> None:
        """Stop an owned tor (closing the owning control connection makes it exit) and reap it.

        For an attached system tor only the control connection is closed.
        """
        try:
            self.controller.close()
        except Exception:  # noqa: BLE001 - closing a dead connection must not mask the stop
            pass
        if self.popen is not None and self.popen.poll() is None:
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                _kill(self.popen)

    def kill(self) -> None:
        """SIGKILL an owned tor at once (fault injection: a relay dying mid-transfer)."""
        if self.popen is not None:
            _kill(self.popen)
        try:
            self.controller.close()
        except Exception:  # noqa: BLE001
            pass

    def __enter__(self) -> "TorProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"TorProcess({self.name!r}, pid={self.pid}, owned={self.owned})"


def pid_running(pid: int) -> bool:
    """True if ``pid`` is a live process (a zombie awaiting its parent's wait() does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


def _connect(make, deadline: float, password: str | None = None) -> Controller:
    """Connect and authenticate a controller, retrying until the deadline."""
    last: Exception | None = None
    while True:
        try:
            controller = make()
        except stem.SocketError as exc:
            last = exc
        else:
            try:
                controller.authenticate(password=password)
                return controller
            except (stem.connection.AuthenticationFailure, stem.ControllerError) as exc:
                controller.close()
                raise TorControlError(f"cannot authenticate to tor's control port: {exc}") from None
        if time.monotonic() > deadline:
            raise TorControlError(f"cannot connect to tor's control port: {last}")
        time.sleep(0.1)


def _kill(popen: subprocess.Popen) -> None:
    if popen.poll() is None:
        popen.kill()
    try:
        popen.wait(5)
    except subprocess.TimeoutExpired:
        pass


def _last_error(data_dir: Path | None) -> str:
    """The last [err]/[warn] line tor wrote (for a one-line error)."""
    if data_dir is None:
        return "no log"
    lines: list[str] = []
    for log in ("stdout.log", "notice.log"):
        try:
            lines += (data_dir / log).read_text(errors="replace").splitlines()
        except OSError:
            pass
    bad = [l for l in lines if "[err]" in l or "[warn]" in l]
    pick = (bad or lines or ["no output"])[-1]
    return pick.split("] ", 1)[-1].strip()
