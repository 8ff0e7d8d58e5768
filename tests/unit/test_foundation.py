"""The project's frame: the Ape plugin CLI is installed and `ape test` runs on anvil."""

import subprocess
import sys
from pathlib import Path

from ape import chain

ROOT = Path(__file__).resolve().parents[2]


def test_ape_test__provider__is_anvil():
    provider = chain.provider
    assert provider.name == "foundry"
    assert provider.process is not None or provider.uri.startswith("http")
    client_version = provider.make_request("web3_clientVersion", [])
    assert client_version.startswith("anvil/")


def test_ape_ichain_help__installed_plugin__lists_command_groups():
    # Through a subprocess: an import error in the plugin would only show as "No such command".
    ape = Path(sys.executable).with_name("ape")
    result = subprocess.run([str(ape), "ichain", "--help"], capture_output=True, text=True, timeout=120, cwd=ROOT)

    assert result.returncode == 0, result.stderr
    assert "Usage: ape ichain" in result.stdout
    commands = result.stdout.split("Commands:")[1]
    for group in ("sandbox", "provide", "submit", "status", "pools", "providers", "account", "web"):
        assert f"\n  {group} " in commands, f"`ape ichain {group}` is missing"
