"""``make demo`` (``ape ichain demo``): prints the outcome and leaves nothing running, even on Ctrl-C.

Every process the demo starts inherits a marker in its environment; after the demo exits, no
process on the machine may carry it (checked by PID through /proc, so other users' anvils and
daemons are never mistaken for ours)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
APE = str(Path(sys.executable).with_name("ape"))


def _marked(mark: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"ICHAIN_DEMO_MARK={mark}".encode() in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def _start(mark: str, transport: str = "direct", *extra: str) -> subprocess.Popen:
    return subprocess.Popen([APE, "ichain", "demo", "--transport", transport, *extra], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                            env={**os.environ, "ICHAIN_DEMO_MARK": mark})


def _gone(mark: str, timeout: float = 20) -> list[int]:
    end = time.time() + timeout
    while (left := _marked(mark)) and time.time() < end:
        time.sleep(0.5)
    return left


def test_demo__rating_given__v2_round_accepted_rated_and_leaves_nothing_running():
    """The protocol-v2 round: post (requester), submitResult (provider, with collateral), submitVerdict
    (validator: pays and releases), rate (requester): 4 task transactions, 2 of them the requester's."""
    mark = uuid.uuid4().hex
    proc = _start(mark, "direct", "--rating", "5", "--validator-rating", "4")
    out, _ = proc.communicate(timeout=540)
    assert proc.returncode == 0, out[-3000:]
    for field in ("trust: ", "accuracy", "verdict       : Accepted", "payment", "your rating   : 5",
                  "new rating    : score"):
        assert field in out, out[-3000:]
    assert "in 4 transactions (2 sent by the requester)" in out, out[-3000:]
    assert _gone(mark) == []


def test_demo__no_rating_and_no_terminal__never_rates_for_the_user():
    """Run with --json: the steps go to stderr and stdout is one JSON document with the README's keys
    (tests/unit/test_cli_conventions.py names this test as the demo's --json check)."""
    sys.path.insert(0, str(ROOT / "tests" / "unit"))
    from cli_helpers import readme_json_keys

    mark = uuid.uuid4().hex
    proc = subprocess.Popen([APE, "ichain", "demo", "--transport", "direct", "--json"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env={**os.environ, "ICHAIN_DEMO_MARK": mark})
    out, err = proc.communicate(timeout=540)
    assert proc.returncode == 0, err[-3000:]
    assert "verdict       : Accepted" in err and "your rating   : none given" in err, err[-3000:]
    assert "not rated: rate it with `ape ichain rate" in err, err[-3000:]
    assert "in 3 transactions (1 sent by the requester)" in err, err[-3000:]
    result = json.loads(out)  # all of stdout: one document
    assert (result["verdict"], result["status"], result["rating"]) == ("Accepted", "Completed", None)
    assert (result["transactions"], result["requester_transactions"]) == (3, 1) and result["gas_used"] > 0
    required, optional = readme_json_keys()["demo"]
    assert required <= set(result) <= required | optional
    assert _gone(mark) == []


def test_demo__ctrl_c_while_daemons_run__stops_everything():
    mark = uuid.uuid4().hex
    proc = _start(mark)
    seen = ""
    end = time.time() + 300
    while "submitting" not in seen and time.time() < end:  # daemons registered, task about to be posted
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    assert "submitting" in seen, seen[-2000:]
    assert len(_marked(mark)) >= 4  # demo, anvil, two daemons
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-2000:]
    assert out.rstrip().splitlines()[-1] == "Interrupted." and "Traceback" not in out, out[-2000:]
    assert _gone(mark) == []


@pytest.mark.tor
def test_demo__tor_transport__round_over_onion_services_and_leaves_nothing_running():
    """`make demo TRANSPORT=tor`: the same round with every file moved through a private Tor network."""
    mark = uuid.uuid4().hex
    proc = _start(mark, "tor", "--rating", "5")
    out, _ = proc.communicate(timeout=540)
    assert proc.returncode == 0, out[-3000:]
    hosted = [line for line in out.splitlines() if line.startswith("task hosted (encrypted, for the provider only) at ")]
    assert hosted and hosted[0].rstrip().endswith(".onion"), out[-3000:]
    for field in ("accuracy", "verdict       : Accepted", "payment", "new rating    : "):
        assert field in out, out[-3000:]
    assert _gone(mark, timeout=40) == []  # anvil, daemons and every tor process of the private network
