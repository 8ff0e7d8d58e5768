"""Helpers for the tests that run ``ape ichain`` as a user would: a subprocess, or one at a pseudo-terminal."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path
from typing import Any

APE = str(Path(sys.executable).with_name("ape"))
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def run(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``ape ichain ARGS`` without a terminal (stdin closed), stdout and stderr apart."""
    return subprocess.run([APE, "ichain", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


class Terminal:
    """``ape ichain ARGS`` with stdin, stdout and stderr on a pseudo-terminal, as a person at a shell runs it."""

    def __init__(self, *args: str, env: dict | None = None):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([APE, "ichain", *args], stdin=slave, stdout=slave, stderr=slave,
                                     close_fds=True, env={**os.environ, **(env or {})})
        os.close(slave)
        self.output = ""

    def _read(self, wait: float) -> bool:
        """Read what is there within ``wait`` s; False once the terminal is closed (the process exited)."""
        ready, _, _ = select.select([self.master], [], [], wait)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every writer closed the terminal
            return False
        if not chunk:
            return False
        self.output += chunk.decode(errors="replace").replace("\r\n", "\n")
        return True

    def expect(self, text: str, timeout: float = 60) -> None:
        """Wait until ``text`` appears in the output (fails with the output so far)."""
        end = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < end and self._read(0.2), f"no {text!r} in:\n{self.output[-3000:]}"

    def expect_hidden_input(self, timeout: float = 30) -> None:
        """Wait until the program turned the terminal's echo off (it reads a secret now)."""
        end = time.monotonic() + timeout
        while termios.tcgetattr(self.master)[3] & termios.ECHO:
            assert time.monotonic() < end and self._read(0.05), f"echo still on:\n{self.output[-3000:]}"

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def interrupt(self) -> None:
        """Ctrl-C as the terminal sends it: SIGINT to the process."""
        self.proc.send_signal(signal.SIGINT)

    def wait(self, timeout: float = 60) -> int:
        """Read until the process exits; its exit code."""
        end = time.monotonic() + timeout
        while self._read(0.2):
            if self.proc.poll() is not None and not select.select([self.master], [], [], 0)[0]:
                break
            assert time.monotonic() < end, self.output[-3000:]
        rc = self.proc.wait(max(1.0, end - time.monotonic()))
        os.close(self.master)
        return rc

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def error_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("Error")]


def workers(market: Any, provider: Any, validator: Any, price: int = 10**15) -> dict:
    """``provider`` (trusting ``validator``) and ``validator`` registered at ``price``; their key pairs."""
    from ichain.transfer import KeyPair

    keys = {}
    for worker in (provider, validator):
        keys[worker.address] = KeyPair.generate()
        if not market.worker(worker.address).registered:
            market.register(keys[worker.address].public_bytes, price, sender=worker)
        else:
            market.update(keys[worker.address].public_bytes, price, True, sender=worker)
    if not market.trusts(provider.address, validator.address):
        market.set_trust(validator.address, True, sender=provider)
    return keys


def readme_json_keys() -> dict[str, tuple[set[str], set[str]]]:
    """The keys the README's "Machine-readable output and exit codes" section lists, per command: (always
    present, present only with an option).

    A bullet ``- `ape ichain CMD [TASK] --json`: ...`` lists the top-level keys in code type; the parts in
    parentheses (nested keys, remarks) are left out; "the keys of `OTHER`" stands for OTHER's keys; a key
    followed by "only with" is optional. ``status TASK`` and ``status`` are two entries.
    """
    text = README.read_text()
    section = text.split("## Machine-readable output and exit codes", 1)[1].split("\n## ", 1)[0]
    raw: dict[str, str] = {}
    for item in re.split(r"\n(?=- )", section):
        item = item.split("\n\n", 1)[0]  # a paragraph after the list is not part of its last item
        m = re.match(r"- `ape ichain ([a-z ]+?)( TASK)? --json`[^:]*: (.*)", item, re.S)
        if m:
            body = m.group(3)
            while re.search(r"\([^()]*\)", body):
                body = re.sub(r"\([^()]*\)", "", body)
            raw[m.group(1) + (m.group(2) or "")] = " ".join(body.split())

    def keys(name: str) -> tuple[set[str], set[str]]:
        body = raw[name]
        required: set[str] = set()
        for other in re.findall(r"the keys of `([a-z ]+)`", body):
            required |= keys(other)[0]
        body = re.sub(r"the keys of `[a-z ]+`", "", body)
        optional = set(re.findall(r"`([a-z_]+)` only with", body))
        return required | (set(re.findall(r"`([a-z_]+)`", body)) - optional), optional

    return {name: keys(name) for name in raw}
