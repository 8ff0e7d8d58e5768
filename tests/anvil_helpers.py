"""A real anvil of a test's own (beside the session's): started on a free port, spoken to over raw JSON-RPC.

For the tests that need a second chain (an anvil posing as a public testnet by its chain id, a fork), where
going through ape would connect the test process itself to it.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ANVIL = ROOT / ".tools" / "bin" / "anvil"


def rpc(uri: str, method: str, params: list | None = None):
    """One JSON-RPC call to a node."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}).encode()
    request = urllib.request.Request(uri, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["result"]


def start_anvil(*args: str) -> tuple[subprocess.Popen, str]:
    """A real anvil (from .tools/bin) of our own on a free port; returns (process, uri) once it answers."""
    from ichain.net import free_port

    last = ""
    for _ in range(3):  # the free port may be taken between the probe and anvil's bind
        port = free_port()
        proc = subprocess.Popen([str(ANVIL), "--port", str(port), *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        uri = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while time.time() < deadline and proc.poll() is None:
            try:
                rpc(uri, "eth_chainId")
                return proc, uri
            except OSError:
                time.sleep(0.1)
        proc.kill()
        proc.wait()
        last = proc.stderr.read().decode()[-300:] if proc.stderr else ""
    raise AssertionError(f"anvil {' '.join(args)} did not start: {last}")
