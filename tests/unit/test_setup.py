"""`make setup` (tools/setup.sh): idempotent, quiet when done, one-line errors for missing prerequisites."""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "tools" / "setup.sh"

# What the script itself needs from the system, without the prerequisite a test takes away.
BASE_COMMANDS = [
    "bash", "sh", "cat", "sha256sum", "cut", "id", "sed", "head", "mkdir", "cp", "ln", "grep", "timeout",
    "seq", "sleep", "dirname", "dpkg-query", "env", "printf", "python3",
]


def _bin_dir(tmp_path: Path, extra: tuple[str, ...] = ()) -> Path:
    """A PATH folder holding only the base commands (and ``extra``), so a test controls what is 'installed'."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in (*BASE_COMMANDS, *extra):
        found = shutil.which(name)
        if found:
            (bin_dir / name).symlink_to(found)
    return bin_dir


def _run_setup(*steps: str, env: dict, user: str | None = None, root: Path = ROOT) -> subprocess.CompletedProcess:
    cmd = ["bash", str(root / "tools" / "setup.sh"), *steps]
    if user:
        cmd = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", user, "--", *cmd]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=root)


def _the_error_line(result: subprocess.CompletedProcess) -> str:
    """A failed setup must say exactly one line on stderr; returns it."""
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _stamps() -> dict[str, str]:
    folder = ROOT / ".tools" / "stamps"
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def test_setup__second_run__quiet_unchanged_and_under_30s():
    env = {**os.environ}
    first = _run_setup(env=env)  # make test already ran setup; this makes sure it is complete
    assert first.returncode == 0, first.stderr
    before = _stamps()
    venv_mtime = (ROOT / ".venv" / "bin" / "python").lstat().st_mtime

    started = time.monotonic()
    second = _run_setup(env=env)
    elapsed = time.monotonic() - started

    assert second.returncode == 0, second.stderr
    assert second.stdout == "" and second.stderr == "", "a second run must print nothing"
    assert _stamps() == before
    assert (ROOT / ".venv" / "bin" / "python").lstat().st_mtime == venv_mtime
    assert elapsed < 30, f"second run took {elapsed:.1f} s"


def test_setup__no_npm__one_line_error_naming_it(tmp_path):
    bin_dir = _bin_dir(tmp_path)  # no npm, no node
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "ICHAIN_TOOLS_DIR": str(tmp_path / "tools")}

    result = _run_setup("tools", env=env)

    line = _the_error_line(result)
    assert line.startswith("setup: tools: npm not found")
    assert "apt-get install nodejs npm" in line


def test_setup__no_docker_engine_and_no_apt__one_line_error_naming_it(tmp_path):
    bin_dir = _bin_dir(tmp_path)  # no docker, no dockerd, no apt-get
    admindir = tmp_path / "dpkg"  # an empty package database: docker.io counts as not installed
    admindir.mkdir()
    env = {
        "PATH": str(bin_dir), "HOME": str(tmp_path), "ICHAIN_TOOLS_DIR": str(tmp_path / "tools"),
        "DOCKER_HOST": "unix:///nonexistent/docker.sock", "ICHAIN_DPKG_ADMINDIR": str(admindir),
    }

    result = _run_setup("docker", env=env)

    line = _the_error_line(result)
    assert line.startswith("setup: docker: apt-get not found — install docker.io")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root to switch to nobody")
def test_setup__not_root_and_no_sudo__one_line_error_naming_it():
    # pytest's tmp_path is private to root, and so may be the checkout (a clone under `mktemp -d`): nobody
    # runs a copy of the script from a folder it can traverse.
    tmp_path = Path(tempfile.mkdtemp(prefix="ichain-setup-"))
    tmp_path.chmod(0o755)
    checkout = tmp_path / "checkout"
    (checkout / "tools").mkdir(parents=True)
    shutil.copy(SETUP, checkout / "tools" / "setup.sh")
    shutil.copy(ROOT / "ape-config.yaml", checkout / "ape-config.yaml")
    bin_dir = _bin_dir(tmp_path, extra=("apt-get",))  # apt-get is there, tor and sudo are not
    admindir = tmp_path / "dpkg"
    admindir.mkdir()
    tools = tmp_path / "tools"
    tools.mkdir()
    os.chown(tools, 65534, 65534)
    env = {
        "PATH": str(bin_dir), "HOME": str(tmp_path), "ICHAIN_TOOLS_DIR": str(tools),
        "ICHAIN_DPKG_ADMINDIR": str(admindir),
    }

    try:
        result = _run_setup("tor", env=env, user="nobody", root=checkout)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)

    line = _the_error_line(result)
    assert line == (
        "setup: tor: needs root to install tor with apt-get — run make as root or give this user passwordless sudo"
    )


def test_setup__unknown_step__one_line_error(tmp_path):
    result = _run_setup("nonsense", env={**os.environ, "ICHAIN_TOOLS_DIR": str(tmp_path / "tools")})

    assert _the_error_line(result).startswith("setup: nonsense: unknown step (known: python venv ")
