"""Reading the systemd unit in examples/systemd (shared by its unit test and the e2e test that runs its ExecStart)."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "systemd"
UNIT = EXAMPLES / "ichain-provider.service"


def unit_sections(path: Path = UNIT) -> configparser.ConfigParser:
    """The unit's sections and keys (systemd's ini dialect is plain enough for configparser here)."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def exec_start_argv(path: Path = UNIT) -> list[str]:
    """The unit's ExecStart as an argv (systemd's quoting is shell-like for this line)."""
    return shlex.split(unit_sections(path)["Service"]["ExecStart"])


def env_file(path: Path = EXAMPLES / "ichain-provider.env") -> dict[str, str]:
    """The variables the example env file sets (comments skipped)."""
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)
