"""Helpers for the tests that install iChain the way a user does: a wheel in a fresh venv outside the repository.

The fresh venv's processes run with a minimal environment: its own bin plus a folder of symlinks to a few system
tools (no node, no solc, no repository on PYTHONPATH), ``APE_DATA_FOLDER`` in a temporary folder (the user
registry and ape's caches isolated), and a cwd that is an empty folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from anvil_helpers import rpc, start_anvil  # noqa: F401  (re-exported for the wheel tests)

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements.lock"
#: System tools the installed package runs (the sandbox cleans up with rm) or a shell needs.
SYSTEM_TOOLS = ("rm", "sh", "env", "tar")


def build_wheel(out: Path) -> Path:
    """Build the ape-ichain wheel of this checkout into ``out``; returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    run = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    wheels = sorted(out.glob("ape_ichain-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@dataclass
class FreshVenv:
    """A venv outside the repository with the wheel installed, and the environment its processes get."""

    root: Path
    data_folder: Path
    tools: Path

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    @property
    def ape(self) -> str:
        return str(self.bin / "ape")

    @property
    def python(self) -> str:
        return str(self.bin / "python")

    @property
    def path(self) -> str:
        return f"{self.bin}:{self.tools}"

    def env(self, **extra: str) -> dict[str, str]:
        """A minimal environment: HOME, the minimal PATH, the isolated ape data folder, nothing of the repo."""
        env = {"HOME": os.environ.get("HOME", "/root"), "PATH": self.path, "LANG": "C.UTF-8",
               "APE_DATA_FOLDER": str(self.data_folder)}
        for name in ("DOCKER_HOST", "TMPDIR"):
            if os.environ.get(name):
                env[name] = os.environ[name]
        env.update(extra)
        return env

    def run(self, args: list[str], cwd: Path, *, timeout: float = 300, env: dict[str, str] | None = None,
            stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess:
        """Run ``args`` (``ape`` and ``python`` resolve to the venv's) in ``cwd``; returns the completed process."""
        exe = {"ape": self.ape, "python": self.python}.get(args[0], args[0])
        return subprocess.run([exe, *args[1:]], cwd=cwd, env=env or self.env(), capture_output=True, text=True,
                              timeout=timeout, stdin=stdin)


def fresh_venv(base: Path, wheel: Path) -> FreshVenv:
    """Create a venv under ``base`` (outside the repository) and pip install ``wheel`` with the lock as constraints."""
    assert not base.resolve().is_relative_to(ROOT), "the fresh venv must live outside the repository"
    root = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=120)
    pip = subprocess.run([str(root / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                          "-c", str(LOCK), str(wheel)], capture_output=True, text=True, timeout=900,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-2000:]
    tools = base / "tools"
    tools.mkdir()
    for name in SYSTEM_TOOLS:
        found = shutil.which(name)
        assert found, f"system tool {name} not found"
        (tools / name).symlink_to(found)
    data = base / "ape-data"
    data.mkdir()
    return FreshVenv(root, data, tools)


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.2) -> object:
    """Poll ``predicate`` until truthy; raise AssertionError naming ``what`` after ``timeout`` seconds."""
    end = time.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.time() > end:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def stop(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGTERM its process group (graceful), then SIGKILL after ``timeout``; always reaps it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM) if _own_group(proc) else proc.terminate()
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL) if _own_group(proc) else proc.kill()
            except ProcessLookupError:
                pass
            proc.wait()


def _own_group(proc: subprocess.Popen) -> bool:
    try:
        return os.getpgid(proc.pid) == proc.pid
    except ProcessLookupError:
        return False


class Background:
    """A long-running command of the fresh venv (a provider daemon), its output in a log file."""

    def __init__(self, venv: FreshVenv, args: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None):
        self.log = log
        self._out = open(log, "ab")
        exe = {"ape": venv.ape, "python": venv.python}.get(args[0], args[0])
        self.proc = subprocess.Popen([exe, *args[1:]], cwd=cwd, env=env or venv.env(), stdout=self._out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        stop(self.proc)
        self._out.close()
