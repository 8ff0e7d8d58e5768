"""iChain as a user installs it: the wheel in a fresh venv outside the repository (no ape-solidity, no ape-foundry,
no node on PATH), every command run from empty folders against a real anvil posing as Sepolia (its chain id), the
contracts deployed from the packaged manifest with ``ape ichain deploy``, then a whole task round: two
``ape ichain provide`` daemons trusting each other as validators and ``ape ichain submit examples/digits``.

One module-scoped venv (the install is the slow part); the tests run in file order and build on each other's
chain state (the deployment, then the daemons' registrations). The README's "Use from Python or a notebook" block
is executed here too, in the fresh venv, against the same chain.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from wheel_helpers import ROOT, Background, build_wheel, fresh_venv, rpc, start_anvil, stop, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.docker, pytest.mark.timeout(900)]

SEPOLIA = 11155111
NETWORK = "ethereum:sepolia:node"
# The default test mnemonic's first accounts (anvil funds them; ape's TEST::n are the same keys).
REQUESTER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
PROVIDER_1 = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
PROVIDER_2 = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    base = tmp_path_factory.mktemp("fresh")
    wheel = build_wheel(base / "dist")
    return fresh_venv(base, wheel)


@pytest.fixture(scope="module")
def sepolia():
    # Interval mining: ape waits for Sepolia's 2 confirmations, so the chain must make blocks on its own.
    proc, uri = start_anvil("--chain-id", str(SEPOLIA), "--block-time", "1")
    yield uri
    stop(proc)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, sepolia):
    """Factory of empty user folders holding only an ape-config.yaml that points Sepolia's node at the anvil."""

    def make(name: str) -> Path:
        folder = tmp_path_factory.mktemp(name)
        (folder / "ape-config.yaml").write_text(f"node:\n  ethereum:\n    sepolia:\n      uri: {sepolia}\n")
        return folder

    return make


def _ok(run) -> str:
    assert run.returncode == 0, f"exit {run.returncode}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    return run.stdout


def test_wheel__fresh_venv__no_compiler_no_node_and_listed_as_ape_plugin(venv, folders):
    folder = folders("empty")
    probe = venv.run(["python", "-c", "import importlib.util as u, ichain, json; print(json.dumps(["
                      "u.find_spec('ape_solidity') is None, u.find_spec('ape_foundry') is None, ichain.__file__]))"],
                     folder)
    no_solidity, no_foundry, location = json.loads(_ok(probe))
    assert no_solidity and no_foundry
    assert Path(location).is_relative_to(venv.root) and not Path(location).is_relative_to(ROOT)
    assert shutil.which("node", path=venv.path) is None and shutil.which("solc", path=venv.path) is None
    listed = _ok(venv.run(["ape", "plugins", "list"], folder))
    assert re.search(r"^\s*ichain\s+0\.1\.0", listed, re.M), listed
    helped = _ok(venv.run(["ape", "ichain", "--help"], folder))
    for command in ("deploy", "provide", "submit", "providers"):
        assert command in helped


def test_wheel_deploy__no_terminal_without_yes__one_line_refusal_nothing_sent(venv, folders, sepolia):
    nonce = rpc(sepolia, "eth_getTransactionCount", [REQUESTER, "latest"])
    run = venv.run(["ape", "ichain", "deploy", "--network", NETWORK, "--account", "TEST::0"], folders("refuse"))
    assert run.returncode == 1, run.stdout + run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "pass -y" in errors[0], run.stderr
    assert "Traceback" not in run.stderr
    assert rpc(sepolia, "eth_getTransactionCount", [REQUESTER, "latest"]) == nonce


def test_wheel_deploy__anvil_posing_as_sepolia__verified_recorded_and_found_from_another_folder(
        venv, folders, sepolia):
    folder = folders("deployer")
    run = venv.run(["ape", "ichain", "deploy", "--network", NETWORK, "--account", "TEST::0", "--validation-window",
                    "60", "--min-timeout", "30", "--max-timeout", "3600", "-y", "--json"], folder)
    result = json.loads(_ok(run))
    # The README's "Machine-readable output" keys of `deploy --json`.
    assert set(result) == {"chain_id", "network", "market", "ratings", "block", "deployer", "validation_window",
                           "min_timeout", "max_timeout", "registry", "runtime_verified", "compiler_version",
                           "verify_dir", "verification"}
    assert (result["chain_id"], result["runtime_verified"]) == (SEPOLIA, True)
    assert result["network"].startswith("ethereum:sepolia:")
    # A public chain id: the user registry in ape's data folder, never the repository or the cwd.
    assert Path(result["registry"]) == venv.data_folder / "ichain" / "deployments.json"
    assert json.loads(Path(result["registry"]).read_text())[str(SEPOLIA)]["market"] == result["market"]
    standard = json.loads(Path(result["verification"]["TaskMarket"]["standard_input"]).read_text())
    assert set(standard["sources"]) >= {"contracts/TaskMarket.sol", "contracts/Ratings.sol"}
    assert standard["settings"]["evmVersion"] == "cancun" and standard["settings"]["optimizer"]["runs"] == 10000
    details = json.loads(Path(result["verification"]["TaskMarket"]["verify"]).read_text())
    assert details["compiler_version"].startswith("v0.8.28+commit.")
    assert details["constructor_arguments"] == "0x" + "".join(f"{v:064x}" for v in (60, 30, 3600))
    assert Path(result["verify_dir"]) == (folder / "ichain-verify" / str(SEPOLIA)).resolve()
    assert len(rpc(sepolia, "eth_getCode", [result["ratings"], "latest"])) > 100

    elsewhere = _ok(venv.run(["ape", "ichain", "providers", "--network", NETWORK], folders("elsewhere")))
    assert "Error" not in elsewhere


def _daemon(venv, folder: Path, index: int, trust: str, price: str) -> Background:
    return Background(venv, ["ape", "ichain", "provide", "--network", NETWORK, "--account", f"TEST::{index}",
                             "--price", price, "--trust", trust, "--poll-interval", "0.1",
                             "--state-dir", str(folder / f"state-{index}")], folder, folder / f"daemon-{index}.log")


@pytest.fixture(scope="module")
def daemons(venv, folders):
    folder = folders("providers")
    started = [_daemon(venv, folder, 1, PROVIDER_2, "0.01 ether"), _daemon(venv, folder, 2, PROVIDER_1, "0.02 ether")]
    try:
        for proc in started:
            def ready(proc=proc):
                assert proc.alive(), f"daemon exited {proc.proc.returncode}: {proc.text()[-2000:]}"
                return "ready (state" in proc.text()

            wait_for(ready, 180, "a provider daemon to register")
        yield started
    finally:
        for proc in started:
            proc.stop()


def test_wheel_round__two_daemons_and_submit__accepted_result_fetched_provider_paid(venv, folders, daemons):
    folder = folders("requester")
    task = folder / "digits"
    shutil.copytree(ROOT / "examples" / "digits", task)
    run = venv.run(["ape", "ichain", "submit", str(task), "--network", NETWORK, "--account", "TEST::0",
                    "--provider", "best", "--validator", "auto", "--rating", "5", "--out", str(folder / "result"),
                    "--state-dir", str(folder / "state"), "--wait-timeout", "300"], folder, timeout=600)
    out = _ok(run)
    assert "verdict: accepted by validator" in out, out[-3000:]
    paid = re.search(r"provider paid ([0-9.]+) ETH", out)
    assert paid and float(paid.group(1)) > 0, out[-3000:]
    assert "rated provider 5" in out, out[-3000:]
    assert (folder / "result").is_dir() and any((folder / "result").iterdir())
    for proc in daemons:
        assert proc.alive(), proc.text()[-2000:]


def readme_python_block() -> str:
    """The python block of the README's "Use from Python or a notebook" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Use from Python or a notebook", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_notebook_block__fresh_venv__market_read_and_requester_round_rated(venv, folders, daemons):
    """The README's block as written, but for one line: the test's funded account instead of a keystore alias."""
    block = readme_python_block()
    assert 'accounts.load("my-account")' in block
    code = block.replace('accounts.load("my-account")', "accounts.test_accounts[0]")
    folder = folders("notebook")
    shutil.copytree(ROOT / "examples" / "digits", folder / "digits")
    out = _ok(venv.run(["python", "-c", code], folder, timeout=600))
    assert f"market on chain {SEPOLIA}" in out, out[-3000:]
    assert re.search(r"^Rated .*accuracy.* paid [1-9][0-9]* wei to the provider$", out, re.M), out[-3000:]
