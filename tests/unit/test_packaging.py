"""The packaged contracts and settings: the committed manifest against a fresh compile of contracts/, the
runtime-bytecode check (immutables masked, another contract's code refused), the deployment registry's lookup
order, and the ``ichain:`` PluginConfig (``APE_ICHAIN_*`` overrides, unknown keys)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ichain import contracts, deployments
from ichain.contracts import BytecodeMismatch

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ manifest
def test_manifest__fresh_compile_of_contracts__committed_manifest_up_to_date(project):
    """Fails when contracts/ changed and `make manifest` was not run (and committed)."""
    packaged = contracts.packaged()
    for name in contracts.CONTRACT_NAMES:
        compiled = project.get_contract(name).contract_type
        shipped = packaged.contract_type(name)
        hint = f"{name}: the packaged manifest is stale - run `make manifest` and commit ichain/contracts/manifest.json"
        assert shipped.abi == compiled.abi, hint
        assert shipped.deployment_bytecode.bytecode == compiled.deployment_bytecode.bytecode, hint
        assert shipped.runtime_bytecode.bytecode == compiled.runtime_bytecode.bytecode, hint
    sources = packaged.standard_input["sources"]
    for source_id, source in sources.items():
        assert source["content"] == (ROOT / source_id).read_text(), f"{source_id} changed: run `make manifest`"
    assert {"contracts/TaskMarket.sol", "contracts/Ratings.sol"} <= set(sources)


def test_manifest_standard_input__compiled_by_solc__reproduces_the_packaged_bytecode():
    """What an explorer's verifier does with the written standard-JSON input: the same creation bytecode."""
    import solcx
    from ape import compilers

    packaged = contracts.packaged()
    version = compilers.registered_compilers[".sol"].get_version_map([ROOT / "contracts" / "TaskMarket.sol"])
    binary = solcx.install.get_executable(version=next(iter(version)))
    standard = json.loads(json.dumps(packaged.standard_input))
    standard["settings"]["outputSelection"] = {"*": {"*": ["evm.bytecode.object"]}}
    output = solcx.compile_standard(standard, solc_binary=binary, base_path=str(ROOT))
    for name in contracts.CONTRACT_NAMES:
        built = output["contracts"][f"contracts/{name}.sol"][name]["evm"]["bytecode"]["object"]
        assert "0x" + built == packaged.contract_type(name).deployment_bytecode.bytecode
    assert packaged.compiler_version.startswith("v0.8.28+commit.")


# ------------------------------------------------------------------ runtime bytecode check
@pytest.fixture(scope="module")
def packaged_market(accounts):
    """A market deployed from the packaged manifest (not the project's compile) with windows of its own."""
    return contracts.container("TaskMarket").deploy(77, 31, 999, sender=accounts[8])


def test_runtime_matches__deployed_from_manifest__only_immutables_differ(packaged_market, chain):
    code = bytes(chain.provider.get_code(packaged_market.address))
    expected = bytes.fromhex(str(contracts.contract_type("TaskMarket").runtime_bytecode.bytecode)[2:])
    differing = {i for i, (a, b) in enumerate(zip(code, expected)) if a != b}
    masked = {i for start, length in contracts.packaged().immutables["TaskMarket"] for i in range(start, start + length)}
    assert differing and differing <= masked  # the windows and the Ratings address are filled in
    assert contracts.runtime_matches("TaskMarket", code)
    ratings = bytes(chain.provider.get_code(packaged_market.ratings()))
    assert contracts.runtime_matches("Ratings", "0x" + ratings.hex())


def test_verify_runtime__another_contracts_code__one_line_bytecode_mismatch(packaged_market, chain):
    ratings_code = bytes(chain.provider.get_code(packaged_market.ratings()))
    with pytest.raises(BytecodeMismatch) as info:
        contracts.verify_runtime("TaskMarket", packaged_market.ratings(), ratings_code)
    assert "not the packaged TaskMarket runtime bytecode" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(BytecodeMismatch):
        contracts.verify_runtime("Ratings", "0x" + "00" * 20, b"")


def test_verify_runtime__one_byte_changed_outside_immutables__mismatch(packaged_market, chain):
    code = bytearray(chain.provider.get_code(packaged_market.address))
    masked = {i for start, length in contracts.packaged().immutables["TaskMarket"] for i in range(start, start + length)}
    position = next(i for i in range(100, len(code)) if i not in masked)
    code[position] ^= 0x01
    with pytest.raises(BytecodeMismatch):
        contracts.verify_runtime("TaskMarket", packaged_market.address, bytes(code))


def test_verification_files__written_per_chain__standard_input_and_constructor_arguments(tmp_path):
    files = contracts.verification_files(tmp_path, 5, {"TaskMarket": "0x" + "11" * 20}, {"TaskMarket": b"\x01\x02"})
    standard = json.loads(Path(files["TaskMarket"]["standard_input"]).read_text())
    assert standard == contracts.packaged().standard_input
    details = json.loads(Path(files["TaskMarket"]["verify"]).read_text())
    assert details["contract"] == "contracts/TaskMarket.sol:TaskMarket"
    assert details["constructor_arguments"] == "0x0102"
    assert Path(files["TaskMarket"]["verify"]).parent == tmp_path / "5"


# ------------------------------------------------------------------ registry order
REGISTRY_ORDER = r"""
import json, sys
from pathlib import Path
from ichain import deployments
deployments.PACKAGED_REGISTRY = Path(sys.argv[1])  # the package's own file stands in for a release's
out = {}
for chain_id in (5, 6, 7, 31337, 424242):
    try:
        out[chain_id] = deployments.find(chain_id).market
    except deployments.DeploymentError as err:
        out[chain_id] = "error: " + str(err)
out["write_public"] = str(deployments.registry_path(6))
out["write_local"] = str(deployments.registry_path(31337))
print(json.dumps(out))
"""


def _entry(chain_id: int, byte: str) -> dict:
    return {"chain_id": chain_id, "network": "n", "market": "0x" + byte * 20, "ratings": "0x" + "ee" * 20, "block": 1}


def _registry(path: Path, *entries: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({str(e["chain_id"]): e for e in entries}))
    return path


def _run(code: str, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("APE_ICHAIN_") and k != deployments.ENV_REGISTRY}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env={**clean, **env}, capture_output=True,
                          text=True, timeout=120)


def test_find__env_user_packaged_and_local_registries__first_that_has_the_chain_wins(tmp_path):
    data = tmp_path / "ape-data"
    packaged = _registry(tmp_path / "packaged.json", _entry(5, "05"), _entry(6, "a6"), _entry(31337, "a1"))
    _registry(data / "ichain" / "deployments.json", _entry(6, "b6"), _entry(7, "b7"), _entry(31337, "b1"))
    env_file = _registry(tmp_path / "env.json", _entry(7, "c7"))
    cwd = tmp_path / "work"
    _registry(cwd / ".ichain" / "deployments.json", _entry(31337, "d1"))

    run = _run(REGISTRY_ORDER, cwd, str(packaged), APE_DATA_FOLDER=str(data), ICHAIN_DEPLOYMENTS=str(env_file))
    assert run.returncode == 0, run.stderr[-2000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["5"] == "0x" + "05" * 20  # only the packaged registry has it
    assert found["6"] == "0x" + "b6" * 20  # the user registry beats the packaged one
    assert found["7"] == "0x" + "c7" * 20  # $ICHAIN_DEPLOYMENTS beats the user registry
    assert found["31337"] == "0x" + "d1" * 20  # a local chain: the cwd's .ichain/, never the user/packaged ones
    assert found["424242"].startswith("error: no TaskMarket recorded for chain id 424242 (looked in ")
    assert str(data / "ichain" / "deployments.json") in found["424242"] and "\n" not in found["424242"]
    assert found["write_public"] == str(env_file)

    run = _run(REGISTRY_ORDER, cwd, str(packaged), APE_DATA_FOLDER=str(data))
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["7"] == "0x" + "b7" * 20
    assert found["write_public"] == str(data / "ichain" / "deployments.json")
    assert found["write_local"] == str(cwd / ".ichain" / "deployments.json")


def test_packaged_registry__shipped_in_the_package__valid_json_object():
    assert isinstance(json.loads(deployments.PACKAGED_REGISTRY.read_text()), dict)
    assert deployments.PACKAGED_REGISTRY.parent == Path(deployments.__file__).parent


# ------------------------------------------------------------------ settings (PluginConfig)
SETTINGS = r"""
import json, sys
from ichain.config import ConfigError, load_config
try:
    config = load_config(**json.loads(sys.argv[1]))
    print(json.dumps({"concurrency": config.concurrency, "port": config.port, "autosign": config.autosign,
                      "trusted": list(config.trusted_validators), "state_dir": str(config.state_dir)}))
except ConfigError as err:
    print(json.dumps({"error": str(err)}))
"""


def _settings(folder: Path, section: str, overrides: dict | None = None, **env: str) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ape-config.yaml").write_text(f"name: settings-test\nichain:\n{section}")
    run = _run(SETTINGS, folder, json.dumps(overrides or {}), **env)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_load_config__APE_ICHAIN_variables__override_ape_config_yaml_and_options_override_both(tmp_path):
    section = "  concurrency: 4\n  port: 9000\n"
    assert _settings(tmp_path / "a", section)["concurrency"] == 4
    got = _settings(tmp_path / "b", section, APE_ICHAIN_CONCURRENCY="3", APE_ICHAIN_AUTOSIGN="true",
                    APE_ICHAIN_TRUSTED_VALIDATORS='["0x70997970C51812dc3A010C7d01b50e0d17dc79C8"]')
    assert (got["concurrency"], got["port"], got["autosign"]) == (3, 9000, True)
    assert got["trusted"] == ["0x70997970c51812dc3a010c7d01b50e0d17dc79c8"]
    assert _settings(tmp_path / "c", section, {"concurrency": 7}, APE_ICHAIN_CONCURRENCY="3")["concurrency"] == 7


def test_settings_class__every_runtime_setting__same_name_and_default():
    """The ``ichain:`` section's Ape class and the frozen settings the package uses must not drift apart."""
    import dataclasses

    from ichain.config import IChainConfig, IChainSettings

    runtime = IChainConfig()
    fields = {f.name for f in dataclasses.fields(IChainConfig)}
    assert set(IChainSettings.model_fields) == fields
    parsed = IChainConfig(**IChainSettings().model_dump())  # the Ape defaults, through the same checks
    assert parsed == runtime


def test_load_config__unknown_key_in_section__one_line_config_error(tmp_path):
    got = _settings(tmp_path, "  concurrency: 2\n  bogus_setting: 1\n")
    assert got["error"] == "unknown setting(s) in ape-config.yaml ichain: section: bogus_setting"


def test_load_config__invalid_environment_value__one_line_config_error(tmp_path):
    got = _settings(tmp_path, "  port: 9000\n", APE_ICHAIN_CONCURRENCY="many")
    assert got["error"].startswith("invalid ichain setting concurrency") and "\n" not in got["error"]
    got = _settings(tmp_path / "bad-yaml", "  concurrency: many\n")
    assert "concurrency" in got["error"] and "\n" not in got["error"]


def test_plugin_config__registered_with_ape__section_parsed_as_ichain_settings(tmp_path):
    code = ("from ape import config; from ichain.config import IChainSettings; "
            "s = config.get_config('ichain'); print(type(s).__name__, isinstance(s, IChainSettings), s.concurrency)")
    (tmp_path / "ape-config.yaml").write_text("ichain:\n  concurrency: 5\n")
    run = _run(code, tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split()[-3:] == ["IChainSettings", "True", "5"]
