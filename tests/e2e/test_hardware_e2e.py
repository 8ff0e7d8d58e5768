"""Real ML work and hardware matching end to end: the paper's Figure 8 CNN (examples/mnist-cnn, PyTorch on the
ichain-torch runtime) through ``ape ichain submit`` with two provider daemons, a provider that tampers with its
weights rejected by the validator daemon, tasks no local provider can run (a GPU, 64 GiB) never offered and
declined when named anyway, and the hardware a daemon measured shown as is by ``ape ichain providers --json``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from ichain.daemon.state import DaemonState, state_file
from ichain.hardware import Offer, detect_machine
from ichain.market import Status
from ichain.sandbox import load_task, pack_result
from ichain.transfer import KeyPair

from marketplace_helpers import ROOT, task_status, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(600)]

MNIST = ROOT / "examples" / "mnist-cnn"
PRICE = 10**16
FEE = 2 * 10**15
APE = str(Path(sys.executable).with_name("ape"))


def _index(who) -> int:
    from ape import accounts

    return [str(a.address) for a in accounts.test_accounts[:10]].index(str(who.address))


def _pair(daemons, market, prov, val, *, env: dict | None = None):
    """The provider's daemon (trusting ``val``) and the validator's daemon; both offers published."""
    val_proc = daemons.start(_index(val), FEE)
    prov_proc = daemons.start(_index(prov), PRICE, env=env, extra=("--trust", val.address), wait=env is None)
    wait_until(lambda: market.trusts(prov.address, val.address), 90, "the provider to trust its validator")
    wait_until(lambda: all(market.worker(w.address).offer_hash for w in (prov, val)), 90, "both offers")
    return prov_proc, val_proc


def _ape(*args: str, timeout: float = 480) -> subprocess.CompletedProcess:
    return subprocess.run([APE, "ichain", *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def _submit(tmp_path, node_uri, market_address, task: Path, *extra: str) -> subprocess.CompletedProcess:
    return _ape("submit", str(task), "--network", node_uri, "--account", "TEST::0", "--market", market_address,
                "--state-dir", str(tmp_path / "requester"), "--price", str(PRICE), "--validator-fee", str(FEE),
                "--timeout", "900", "--wait-timeout", "420", "--rating", "5", *extra)


def _chain_id() -> int:
    from ape import chain

    return int(chain.chain_id)


def _heavy_task(root: Path, name: str, manifest: dict) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "task.py").write_text("import sys\nopen('result.txt', 'w').write('1')\n")
    (folder / "ichain.json").write_text(json.dumps({"time_limit": 60, **manifest}))
    return folder


def test_mnist_cnn__submit_with_two_daemons__accepted_paid_and_weights_delivered(
    daemons, tmp_path, node_uri, market_address, e2e_market, accounts
):
    prov, val = accounts[3], accounts[4]
    _pair(daemons, e2e_market, prov, val)
    before = int(e2e_market.credit(prov.address)) + prov.balance
    proc = _submit(tmp_path, node_uri, market_address, MNIST, "--provider", prov.address, "--validator",
                   val.address, "--out", str(tmp_path / "result"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "accepted" in out.lower(), out[-3000:]
    metrics = json.loads((tmp_path / "result" / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.75, metrics
    assert (tmp_path / "result" / "model.pt").stat().st_size > 100_000
    # Paid: the provider's daemon withdraws its earnings (price less the 1% burn) after the accept.
    wait_until(lambda: int(e2e_market.credit(prov.address)) + prov.balance > before, 120, "the provider's pay")


def _forge_weights(path: Path) -> None:
    """Rewrite one tensor's bytes inside a torch.save zip: a file that loads and fits, with wrong weights."""
    with zipfile.ZipFile(path) as src:
        entries = [(info, src.read(info.filename)) for info in src.infolist()]
    blobs = [i for i, (info, data) in enumerate(entries) if "/data/" in info.filename and len(data) >= 4096]
    assert blobs, [info.filename for info, _ in entries]
    biggest = max(blobs, key=lambda i: len(entries[i][1]))
    info, data = entries[biggest]
    entries[biggest] = (info, bytes(reversed(data)))  # same size, same dtype, scrambled values
    tmp = path.with_suffix(".forged")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as dst:
        for info, payload in entries:
            dst.writestr(info, payload)
    tmp.replace(path)


def test_mnist_cnn__provider_tampers_with_weights__validator_daemon_rejects_requester_refunded(
    daemons, tmp_path, node_uri, market_address, e2e_market, accounts, requester
):
    """The provider's daemon is stopped right after packing its honest result; its weights are then forged and
    the result repacked under a new hash in its own journal, so the restarted daemon commits the forgery. The
    validator's daemon runs the task's validate mode on it and rejects: the requester gets everything back."""
    prov, val = accounts[1], accounts[2]
    kill_log = tmp_path / "kills.log"
    env = {"ICHAIN_KILL_AT": "result-packed", "ICHAIN_KILL_LOG": str(kill_log)}
    prov_proc, _ = _pair(daemons, e2e_market, prov, val, env=env)
    credit_before = int(e2e_market.credit(requester.address))
    submit = subprocess.Popen(
        [APE, "ichain", "submit", str(MNIST), "--network", node_uri, "--account", "TEST::0", "--market",
         market_address, "--state-dir", str(tmp_path / "requester"), "--price", str(PRICE), "--validator-fee",
         str(FEE), "--timeout", "900", "--wait-timeout", "420", "--rating", "5", "--provider", prov.address,
         "--validator", val.address],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: not prov_proc.alive(), 300, "the provider to pack its result")
        assert kill_log.read_text().split() == ["result-packed"], prov_proc.tail(20)
        state = DaemonState(state_file(prov_proc.state_dir / prov.address.lower(), _chain_id()))
        [record] = [r for r in state.tasks() if r.role == "provider" and r.stage == "packed"]
        work = prov_proc.state_dir / prov.address.lower() / "files" / f"{record.task_id}-provider"
        _forge_weights(work / "output" / "model.pt")
        meta = {"chain_id": _chain_id(), "market": e2e_market.address, "task_id": record.task_id,
                "provider": prov.address}
        digest = pack_result(work / "output", work / "result.tar", meta)
        state.set_stage(record.task_id, "provider", "packed", result_hash=digest.hex())
        state.close()
        daemons.start(_index(prov), PRICE, state=prov_proc.state_dir, extra=("--trust", val.address))
        wait_until(lambda: task_status(e2e_market, record.task_id) == Status.Rejected, 300,
                   "the validator's verdict", interval=0.5)
        out, _ = submit.communicate(timeout=120)
    finally:
        if submit.poll() is None:
            submit.kill()
    assert int(e2e_market.credit(requester.address)) >= credit_before + PRICE + FEE, out[-3000:]
    assert "rejected" in out.lower(), out[-3000:]


@pytest.mark.parametrize("manifest, why", [({"gpus": 1}, "GPU"), ({"memory": "64g"}, "64 GiB memory")])
def test_unrunnable_task__not_offered_and_a_named_daemon_declines_before_the_deadline(
    manifest, why, daemons, tmp_path, node_uri, market_address, e2e_market, accounts, requester
):
    prov, val = accounts[5], accounts[6]
    _pair(daemons, e2e_market, prov, val)
    if not e2e_market.worker(accounts[9].address).registered:  # the cheapest worker, with no offer at all
        e2e_market.register(KeyPair.generate().public_bytes, 1, sender=accounts[9])
    task = _heavy_task(tmp_path, "heavy", manifest)
    # Not offered: no provider's published hardware covers it.
    listed = _ape("providers", str(task), "--network", node_uri, "--market", market_address, "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert json.loads(listed.stdout) == []
    assert prov.address in [w["address"] for w in json.loads(
        _ape("providers", "--network", node_uri, "--market", market_address, "--json").stdout)]
    best = _submit(tmp_path, node_uri, market_address, task, "--provider", "best", "--validator", "auto")
    assert best.returncode == 1, best.stdout[-2000:] + best.stderr[-2000:]
    [line] = [ln for ln in best.stderr.splitlines() if ln.strip()][-1:]
    assert "can run this task" in line and why in line, best.stderr[-2000:]
    assert "Traceback" not in best.stderr
    # Named anyway: the daemon fetches it, sees it cannot run it, and gives it back at once.
    credit_before = int(e2e_market.credit(requester.address))
    named = _submit(tmp_path, node_uri, market_address, task, "--provider", prov.address, "--validator",
                    val.address)
    out = named.stdout + named.stderr
    assert named.returncode == 1, out[-3000:]
    assert "declined" in out and why in out, out[-3000:]
    tid = e2e_market.last_task_id()
    task_now = e2e_market.task(tid)
    assert task_now.status == Status.Declined
    assert int(e2e_market.credit(requester.address)) == credit_before + PRICE + FEE


def test_providers_json__shows_the_hardware_the_daemon_measured(
    daemons, tmp_path, node_uri, market_address, e2e_market, accounts
):
    prov, val = accounts[7], accounts[8]
    prov_proc, _ = _pair(daemons, e2e_market, prov, val)
    state = DaemonState(state_file(prov_proc.state_dir / prov.address.lower(), _chain_id()))
    measured = state.get_meta("offer")
    state.close()
    assert measured is not None
    listed = _ape("providers", "--network", node_uri, "--market", market_address, "--json")
    assert listed.returncode == 0, listed.stderr[-2000:]
    [row] = [w for w in json.loads(listed.stdout) if w["address"] == prov.address]
    assert row["offer"] == measured
    offer = Offer.decode(json.dumps(measured).encode())
    machine = detect_machine()
    assert (offer.cpus, offer.memory, offer.gpus) == (machine.cpus, machine.memory, machine.gpus)
    assert set(offer.runtimes) == {"ichain-runtime", "ichain-torch"}
    # Each task folder it can run is listed for it, the mnist task included.
    fits = _ape("providers", str(MNIST), "--network", node_uri, "--market", market_address, "--json")
    assert prov.address in [w["address"] for w in json.loads(fits.stdout)]
    assert load_task(MNIST).image == "ichain-torch"
