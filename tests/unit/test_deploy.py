"""Deployment: `ape run deploy` to a second anvil posing as Sepolia (chain id 11155111) records the addresses;
an anvil --fork-url of that chain finds them through the registry and runs a whole lifecycle on the fork."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from anvil_helpers import rpc, start_anvil

from ichain import deployments
from ichain.deployments import Deployment, DeploymentError

ROOT = Path(__file__).resolve().parents[2]
SEPOLIA_CHAIN_ID = 11155111
APE = str(Path(sys.executable).with_name("ape"))


def _stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _env(registry: Path) -> dict:
    env = dict(os.environ, ICHAIN_DEPLOYMENTS=str(registry))
    env["PATH"] = f"{ROOT / '.tools' / 'bin'}:{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return env


# Interval mining: an ape network recognised as Sepolia waits for 2 confirmations, so the chain must make blocks.
BLOCK_TIME = "1"


@pytest.fixture(scope="module")
def sepolia_like():
    proc, uri = start_anvil("--chain-id", str(SEPOLIA_CHAIN_ID), "--block-time", BLOCK_TIME)
    yield uri
    _stop(proc)


@pytest.fixture(scope="module")
def deployed(sepolia_like, tmp_path_factory):
    registry = tmp_path_factory.mktemp("registry") / "deployments.json"
    run = subprocess.run(
        [APE, "run", "deploy", "--network", sepolia_like, "--account", "TEST::0", "--validation-window", "100",
         "--min-timeout", "60", "--max-timeout", "3600", "-y", "--verify-dir", str(registry.parent / "verify")],
        cwd=ROOT, env=_env(registry), capture_output=True, text=True, timeout=300,
    )
    return run, registry


def test_deploy__second_anvil_posing_as_sepolia__addresses_recorded_by_chain_id(deployed, sepolia_like):
    run, registry = deployed
    assert run.returncode == 0, run.stdout[-500:] + run.stderr[-500:]
    entry = json.loads(registry.read_text())[str(SEPOLIA_CHAIN_ID)]
    assert entry["chain_id"] == SEPOLIA_CHAIN_ID and entry["network"].startswith("ethereum:sepolia")
    assert (entry["validation_window"], entry["max_timeout"]) == (100, 3600)
    assert "review_window" not in entry
    assert len(rpc(sepolia_like, "eth_getCode", [entry["market"], "latest"])) > 1000
    assert len(rpc(sepolia_like, "eth_getCode", [entry["ratings"], "latest"])) > 100
    assert f"TaskMarket {entry['market']}" in run.stdout
    assert "matches the packaged manifest" in run.stdout
    assert (registry.parent / "verify" / str(SEPOLIA_CHAIN_ID) / "TaskMarket.standard-input.json").is_file()
    assert not registry.with_name(registry.name + ".part").exists()


LIFECYCLE = r"""
import json, hashlib, sys
from ape import accounts, networks
from ichain.market import Market, TaskEvent

with networks.parse_network_choice(sys.argv[1]):
    m = Market.from_deployment()
    req, prov, val = accounts.test_accounts[1], accounts.test_accounts[2], accounts.test_accounts[3]
    for who in (prov, val):
        if not m.worker(who).registered:
            m.register(hashlib.sha256(who.address.encode()).digest(), 10**15, sender=who)
    m.set_trust(val, sender=prov)
    task = m.post(hashlib.sha256(b"fork-task").digest(), price=10**16, validator_fee=10**15, provider=prov,
                  validator=val, locator=b"p", timeout=600, sender=req)
    rh = hashlib.sha256(b"fork-result").digest()
    m.submit_result(task.task_id, rh, b"v", sender=prov)
    m.submit_verdict(task.task_id, rh, True, b"r", sender=val)
    done = m.rate(task.task_id, 5, 4, sender=req)
    names = [e.name for e in m.events(m.start_block) if isinstance(e, TaskEvent) and e.task_id == task.task_id]
    print(json.dumps({"market": m.address, "status": done.status.name, "provider_credit": m.credit(prov),
                      "validator_credit": m.credit(val), "rating": m.worker(prov).average_rating,
                      "validator_rating": m.worker(val).validator_record.average, "events": names}))
"""


def test_deploy__fork_of_recorded_deployment__lifecycle_completes_on_fork(deployed, sepolia_like):
    run, registry = deployed
    assert run.returncode == 0, run.stderr[-500:]
    entry = json.loads(registry.read_text())[str(SEPOLIA_CHAIN_ID)]
    fork, fork_uri = start_anvil("--fork-url", sepolia_like, "--block-time", BLOCK_TIME)
    try:
        assert int(rpc(fork_uri, "eth_chainId"), 16) == SEPOLIA_CHAIN_ID  # a fork keeps its upstream's chain id
        out = subprocess.run([sys.executable, "-c", LIFECYCLE, fork_uri], cwd=ROOT, env=_env(registry),
                             capture_output=True, text=True, timeout=400)
    finally:
        _stop(fork)
    assert out.returncode == 0, out.stderr[-1500:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["market"] == entry["market"]
    collateral = 10**15 + 10**16 // 10
    assert (result["status"], result["provider_credit"], result["validator_credit"]) == (
        "Rated", 10**16 * 99 // 100 + collateral, 10**15 * 99 // 100)
    assert (result["rating"], result["validator_rating"]) == (5.0, 4.0)
    assert result["events"] == ["TaskPosted", "ResultSubmitted", "VerdictSubmitted", "TaskRated"]
    # the fork's transactions never reached the upstream chain
    assert int(rpc(sepolia_like, "eth_call", [{"to": entry["market"], "data": "0x6d488b6a"}, "latest"]), 16) == 0


def test_deploy__invalid_windows__one_line_error_nothing_sent(sepolia_like, tmp_path):
    registry = tmp_path / "deployments.json"
    run = subprocess.run(
        [APE, "run", "deploy", "--network", sepolia_like, "--account", "TEST::0", "--min-timeout", "0", "-y"],
        cwd=ROOT, env=_env(registry), capture_output=True, text=True, timeout=300,
    )
    assert run.returncode != 0
    assert "Traceback" not in run.stderr + run.stdout
    assert "windows must satisfy" in run.stderr + run.stdout
    assert not registry.exists()


# ------------------------------------------------------------------ registry (no chain needed)
def _deployment(chain_id: int, market: str = "0x" + "11" * 20) -> Deployment:
    return Deployment(chain_id=chain_id, network="ethereum:test", market=market, ratings="0x" + "22" * 20, block=7)


def test_record__then_find__same_deployment(tmp_path):
    path = tmp_path / "d.json"
    deployments.record(_deployment(5), path)
    deployments.record(_deployment(6, "0x" + "33" * 20), path)
    found = deployments.find(6, path)
    assert (found.market, found.block, found.address) == ("0x" + "33" * 20, 7, "0x" + "33" * 20)
    assert deployments.find(5, path).market == "0x" + "11" * 20
    assert not (tmp_path / "d.json.part").exists()


def test_find__unknown_chain__one_line_deployment_error(tmp_path):
    with pytest.raises(DeploymentError) as info:
        deployments.find(424242, tmp_path / "none.json")
    assert "424242" in str(info.value) and "\n" not in str(info.value)


def test_find__protocol_v1_entry__one_line_error_asks_for_a_new_deployment(tmp_path):
    path = tmp_path / "d.json"
    entry = {"chain_id": 5, "network": "n", "market": "0x" + "11" * 20, "ratings": "0x" + "22" * 20, "block": 1,
             "review_window": 3600}
    path.write_text(json.dumps({"5": entry}))
    with pytest.raises(DeploymentError, match="protocol v1") as info:
        deployments.find(5, path)
    assert "\n" not in str(info.value)


def test_deploy__review_window__one_line_error_before_sending(chain, accounts):
    head = chain.blocks.head.number
    with pytest.raises(DeploymentError, match="no review window"):
        deployments.deploy(accounts[9], review_window=30, save=False)
    assert chain.blocks.head.number == head


def test_deploy__v2_windows__market_has_them(accounts):
    from ichain.market import Market

    m = Market.deploy(accounts[9], validation_window=70, min_timeout=30, max_timeout=900)
    assert m.windows == {"validation_window": 70, "min_timeout": 30, "max_timeout": 900} == m.windows()
    assert m.burned() == 0


def test_find__corrupt_registry__one_line_deployment_error(tmp_path):
    path = tmp_path / "d.json"
    path.write_text("{not json")
    with pytest.raises(DeploymentError, match="cannot read deployment registry"):
        deployments.find(1, path)


def test_registry_path__local_vs_public_chain__cwd_local_file_and_user_registry(monkeypatch, tmp_path):
    monkeypatch.delenv(deployments.ENV_REGISTRY, raising=False)
    monkeypatch.chdir(tmp_path)
    assert deployments.registry_path(31337) == tmp_path / ".ichain" / "deployments.json"
    assert deployments.registry_path(SEPOLIA_CHAIN_ID) == deployments.user_registry()
    assert deployments.user_registry().parts[-2:] == ("ichain", "deployments.json")
    monkeypatch.setenv(deployments.ENV_REGISTRY, "/tmp/x.json")
    assert deployments.registry_path(1) == Path("/tmp/x.json")


def test_from_deployment__recorded_address_without_code__one_line_error(tmp_path, chain):
    from ichain.market import Market

    path = tmp_path / "d.json"
    deployments.record(_deployment(chain.chain_id, "0x" + "44" * 20), path)
    with pytest.raises(DeploymentError, match="no contract code"):
        Market.from_deployment(path=path)


def test_from_deployment__recorded_market__sdk_bound_to_it(tmp_path, market_contract, chain):
    from ichain.market import Market

    path = tmp_path / "d.json"
    deployments.record(Deployment(chain_id=chain.chain_id, network="ethereum:local", market=market_contract.address,
                                  ratings=market_contract.ratings(), block=3), path)
    m = Market.from_deployment(path=path)
    assert (m.address, m.start_block) == (market_contract.address, 3)
