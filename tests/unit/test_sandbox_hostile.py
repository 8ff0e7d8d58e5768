"""The hostile suite: 21 scripts that each prove they started, run in the hardened sandbox (all must be
contained) and in a control run with Docker's defaults (which must let the known escapes through, so
the suite is proven able to fail), on every runtime of the catalog (each image must contain every case,
and under Docker's defaults each must let the escapes through: the cases mean something on each image).
Cases run concurrently to keep the file within its time budget."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import shutil
import socket
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import docker
import pytest

from ichain.sandbox import RunResult, Sandbox, runtime_names
from ichain.sandbox.runner import RUN_LABEL, SANDBOX_LABEL, TASK_MOUNT, WORK_MOUNT

pytestmark = [pytest.mark.docker]

HOSTILE = Path(__file__).parent / "hostile"
CASES = sorted(p.stem for p in HOSTILE.glob("*.py"))
RUNTIMES = runtime_names()
SESSION = uuid.uuid4().hex
WORKERS = 4
MANIFEST = '{{"image": "{image}", "time_limit": {t}, "memory": "256m", "cpus": 1, "output_limit": "32m"}}'
# Under Docker's defaults (root, default capabilities, bridge network, writable root and mounts, no
# limits) these cases must report an escape: if they did not, the suite could not catch a regression.
CONTROL_MUST_ESCAPE = {
    "fork_bomb", "memory_bomb", "thread_bomb", "net_ip", "write_root", "write_input", "read_secrets",
    "setuid", "raw_socket", "mknod", "exec_tmp", "disk_fill", "fd_exhaustion",
}


class DockerDefaults(Sandbox):
    """The control: what ``docker run -v TASK:/task -v WORK:/work -u 0 IMAGE`` gives (the paper's way)."""

    def container_config(self, spec, work_dir, mode, run_id, command=None):
        return {
            "image": spec.image,
            "command": ["python3", f"{TASK_MOUNT}/{spec.entry}", mode],
            "user": "0:0",
            "working_dir": WORK_MOUNT,
            "labels": {**self.labels, SANDBOX_LABEL: "1", RUN_LABEL: run_id},
            "host_config": self.client.api.create_host_config(
                binds={str(spec.folder): {"bind": TASK_MOUNT, "mode": "rw"}, str(work_dir): {"bind": WORK_MOUNT, "mode": "rw"}}
            ),
        }


class Listener:
    """A TCP listener on the host's Docker bridge address (port 0) that counts connections."""

    def __init__(self, host: str):
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.address = self.sock.getsockname()
        self.connections = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@dataclass
class Case:
    """One hostile script's run (on one runtime) and what the host saw around it."""

    runtime: str
    name: str
    result: RunResult
    task_before: dict[str, bytes]
    task_after: dict[str, bytes]
    connections: int
    leftover_staging: list[str] = field(default_factory=list)

    @property
    def out(self) -> str:
        return self.result.stdout_head + self.result.stdout_tail

    @property
    def started(self) -> bool:
        return self.result.stdout_head.startswith("STARTED")

    @property
    def escaped(self) -> bool:
        return "ESCAPED" in self.out


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _run_all(
    box_factory: Callable[[], Sandbox], root: Path, listener: Listener, secret: str
) -> dict[tuple[str, str], Case]:
    """Every case on every runtime, in one pool; keyed by (runtime, case)."""
    (root / "host-secret.txt").write_text(secret)

    def one(key: tuple[str, str]) -> Case:
        runtime, name = key
        case_dir = root / runtime / name
        task = case_dir / "task"
        task.mkdir(parents=True)
        shutil.copy(HOSTILE / f"{name}.py", task / "task.py")
        (task / "hostile.json").write_text(
            f'{{"host_ip": "{listener.address[0]}", "host_port": {listener.address[1]}}}'
        )
        (task / "ichain.json").write_text(MANIFEST.format(image=runtime, t=3 if name == "endless_loop" else 20))
        # A file the provider did not mean to share: root's only (container root is host root).
        (task / "provider-only.key").write_text(secret)
        (task / "provider-only.key").chmod(0o600)
        task.chmod(0o755)
        before = _snapshot(task)
        start_connections = listener.connections
        result = box_factory().execute(task, case_dir / "out")
        return Case(
            runtime=runtime,
            name=name,
            result=result,
            task_before=before,
            task_after=_snapshot(task),
            connections=listener.connections - start_connections if name == "net_ip" else 0,
            leftover_staging=[p.name for p in case_dir.iterdir() if p.name.startswith(".ichain-run-")],
        )

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        cases = pool.map(one, [(runtime, name) for runtime in RUNTIMES for name in CASES])
        return {(case.runtime, case.name): case for case in cases}


@pytest.fixture(scope="module")
def bridge_ip(engine) -> str:
    """The host's address on Docker's default bridge (where a container on that network can reach it)."""
    config = engine.networks.get("bridge").attrs["IPAM"]["Config"][0]
    # Older engines leave Gateway out: it is then the subnet's first address.
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


@pytest.fixture(scope="module")
def host_secret() -> str:
    """A secret in the provider's environment and next to the task folder on the host."""
    value = "ichain-host-secret-" + secrets.token_hex(8)
    os.environ["ICHAIN_HOST_SECRET"] = value
    yield value
    os.environ.pop("ICHAIN_HOST_SECRET", None)


@pytest.fixture(scope="module")
def hardened(engine, bridge_ip, host_secret, tmp_path_factory) -> dict[tuple[str, str], Case]:
    """Every hostile script run in the hardened sandbox on every runtime, concurrently."""
    listener = Listener(bridge_ip)
    try:
        return _run_all(
            lambda: Sandbox(client=docker.from_env(), labels={"ichain.test": SESSION}),
            tmp_path_factory.mktemp("hardened"), listener, host_secret,
        )
    finally:
        listener.close()


@pytest.fixture(scope="module")
def control(engine, bridge_ip, host_secret, tmp_path_factory) -> dict[tuple[str, str], Case]:
    """The same scripts under Docker's defaults (the harness' own time and output caps still apply)."""
    listener = Listener(bridge_ip)
    try:
        return _run_all(
            lambda: DockerDefaults(client=docker.from_env(), labels={"ichain.test": SESSION}, runtime=None),
            tmp_path_factory.mktemp("control"), listener, host_secret,
        )
    finally:
        listener.close()


def _count(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match, f"no match for {pattern!r} in {text[-300:]!r}"
    return int(match.group(1))


# Case-specific proof of containment, on top of "started and did not report an escape".
CHECKS: dict[str, Callable[[Case], bool]] = {
    "fork_bomb": lambda c: _count(r"CONTAINED fork failed after (\d+)", c.out) < 64,
    "memory_bomb": lambda c: c.result.oom_killed or "CONTAINED MemoryError" in c.out,
    "thread_bomb": lambda c: _count(r"CONTAINED thread start failed after (\d+)", c.out) < 64,
    "net_ip": lambda c: "CONTAINED" in c.out and c.connections == 0,
    "write_input": lambda c: "CONTAINED" in c.out and c.task_after == c.task_before,
    "endless_loop": lambda c: c.result.timed_out and 2.5 < c.result.wall_time < 15,
    "huge_output": lambda c: c.result.output_truncated and "stdout+stderr exceeded" in c.result.error,
    "disk_fill": lambda c: not c.result.ok and (c.result.output_truncated or "CONTAINED" in c.out),
    "fd_exhaustion": lambda c: _count(r"CONTAINED open failed after (\d+)", c.out) <= 256,
    "env_leak": lambda c: "DONE" in c.out,
}


def test_hostile_suite__size__at_least_17_scripts_on_every_runtime():
    assert len(CASES) >= 17
    assert RUNTIMES == ("ichain-runtime", "ichain-torch")


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("name", CASES)
def test_hostile__hardened__started_and_contained(hardened, host_secret, runtime, name):
    case = hardened[runtime, name]
    assert case.started, (f"{name} on {runtime} never proved it started: {case.result.error} "
                          f"{case.result.stderr_tail[-300:]}")
    assert not case.escaped, case.out[-500:]
    assert CHECKS.get(name, lambda c: "CONTAINED" in c.out)(case), (case.result, case.out[-500:])
    # Nothing of the host leaks into any output; nothing is left behind on the host.
    assert host_secret not in case.out + case.result.stderr_tail
    assert case.leftover_staging == []
    assert case.result.files == [] and case.result.output_folder is None or case.result.ok


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_hostile__hardened__every_run_failed_or_was_harmless(hardened, runtime):
    # A contained attack may exit 0 (it reports CONTAINED), but limits hit must show in the result.
    assert hardened[runtime, "endless_loop"].result.timed_out
    huge = hardened[runtime, "huge_output"].result
    assert huge.output_truncated
    assert huge.stdout_bytes + huge.stderr_bytes <= 8 * 2**20 + 65536


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_hostile__control_with_docker_defaults__detects_escapes(control, runtime):
    cases = {name: case for (image, name), case in control.items() if image == runtime}
    assert sorted(cases) == CASES
    for name, case in cases.items():
        assert case.started, f"control {name} never started: {case.result.error} {case.result.stderr_tail[-300:]}"
    escaped = {name for name, case in cases.items() if case.escaped}
    missed = {n: (cases[n].result.exit_code, cases[n].result.error, cases[n].out[-300:])
              for n in CONTROL_MUST_ESCAPE - escaped}
    assert not missed, f"control runs on {runtime} that did not escape: {missed}"
    assert cases["net_ip"].connections >= 1
    assert cases["write_input"].task_after != cases["write_input"].task_before


def test_hostile__after_suite__zero_leftover_containers(hardened, control, engine):
    left = engine.containers.list(all=True, filters={"label": f"ichain.test={SESSION}"})
    assert left == []
