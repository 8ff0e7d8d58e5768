"""The systemd unit in examples/systemd: it parses (``systemd-analyze verify`` where installed), has what a service
that signs unattended needs, and every option its ExecStart passes exists in ``ape ichain provide --help``.
(The e2e test in tests/e2e/test_provider_keystore.py runs that ExecStart line itself against anvil.)"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from systemd_unit import UNIT, env_file, exec_start_argv, unit_sections

APE = str(Path(sys.executable).with_name("ape"))


def test_unit__keys__a_restarting_service_stopped_by_sigterm_in_its_working_directory():
    unit = unit_sections()
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"
    assert service["WorkingDirectory"].startswith("/")
    assert service["EnvironmentFile"] == "/etc/ichain/provider.env"
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    argv = exec_start_argv()
    assert argv[0].endswith("/ape") and argv[1:3] == ["ichain", "provide"]
    assert "--autosign" in argv and argv[argv.index("--passphrase-file") + 1] == "/etc/ichain/passphrase"


def test_unit__exec_start_options__all_exist_in_provide_help():
    help_text = subprocess.run([APE, "ichain", "provide", "--help"], capture_output=True, text=True, timeout=120,
                               stdin=subprocess.DEVNULL)
    assert help_text.returncode == 0, help_text.stderr
    offered = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", help_text.stdout))
    used = {arg for arg in exec_start_argv() if arg.startswith("--")}
    assert used and used <= offered, used - offered


def test_env_file__every_variable_the_unit_expands__set_there():
    env = env_file()
    expanded = set(re.findall(r"\$\{(\w+)\}", unit_sections()["Service"]["ExecStart"]))
    assert expanded and expanded <= set(env), expanded - set(env)
    assert not any("PASSPHRASE" in name for name in env)  # the passphrase lives in its own file


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit__systemd_analyze_verify__no_complaint(tmp_path):
    # verify checks that ExecStart's program exists: point it at this venv's ape, the rest unchanged.
    text = UNIT.read_text()
    program = exec_start_argv()[0]
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={program} ", f"ExecStart={APE} "))
    proc = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
