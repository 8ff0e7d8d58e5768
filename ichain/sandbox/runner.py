"""The hardened runner: one short-lived Docker container per run, on the ``docker`` SDK.

Every container gets (see ``Sandbox.container_config``, asserted field by field by the tests): no
network, a read-only root, the task folder mounted read-only at ``/task``, a writable working folder
``/work`` (the only place results can go), a small ``noexec`` tmpfs at ``/tmp``, every capability
dropped, ``no-new-privileges``, user 65534 (nobody), pids / memory (no extra swap) / CPU / open-files /
processes / file-size / core limits, tini as PID 1 (reaps zombies), and the ``none`` log driver (nothing
is stored on the host's disk). From the host: a wall-clock kill, a cap on stdout+stderr (the pipe is
closed first, then the container killed), a cap on the result files, and removal of the container in
every case (also on exceptions and Ctrl-C). Each container carries ``ichain.sandbox=1`` and a per-run
``ichain.run`` label, so leftovers can be found without touching anyone else's containers.

A task names a runtime of the catalog (``ichain.sandbox.runtimes``); a task that asks for GPUs gets exactly
one more setting, a device request for that many GPUs, and runs only where the engine can pass GPUs.

Relative paths work as in the paper's Figure 8: the script runs with ``/work`` as its working folder,
where every top-level entry of the task folder is visible through a read-only symlink into ``/task``.
Only the regular files and folders the script wrote come back; links and special files are dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.types
import requests.exceptions
from docker.utils.socket import STDERR, next_frame_header, read

from ichain.procs import start_ticks
from ichain.sandbox.engine import docker_client, image_status, require_image
from ichain.sandbox.errors import EngineUnavailable, SandboxError, TaskFormatError, TaskUnsupported
from ichain.sandbox.runtimes import RUNTIME_IMAGE, get_runtime, runtime_names
from ichain.sandbox.task import MiB, TaskSpec, load_task

SANDBOX_LABEL = "ichain.sandbox"
RUN_LABEL = "ichain.run"
# host:pid:start-time of the process that started a container, so that containers left behind by a
# process killed mid-run (SIGKILL skips every finally) can be removed by the next sandbox on this host.
OWNER_LABEL = "ichain.owner"
SANDBOX_USER = "65534:65534"
TASK_MOUNT = "/task"
WORK_MOUNT = "/work"
TAIL_BYTES = 4096
MAX_DEPTH = 64  # result folder nesting (deeper trees are refused, never walked recursively)
_POLL = 0.1
_READ_BYTES = 65536
# What ``APIClient.attach_socket`` returns: the socket's file object over unix or plain tcp, the TLS
# socket itself over https.
AttachSocket = socket.SocketIO | socket.socket
_SYMLINK_TARGET = TASK_MOUNT + "/"
# The OCI runtime the NVIDIA container toolkit registers in the engine: its presence says GPUs can be passed.
NVIDIA_RUNTIME = "nvidia"
# gVisor passes NVIDIA GPUs only through its nvproxy, switched on by this flag in runsc's runtime arguments.
_NVPROXY_FLAGS = ("--nvproxy", "--nvproxy=true")


@dataclass
class RunResult:
    """The outcome of one run (execute or validate).

    Attributes:
        mode: ``"execute"`` or ``"validate"``.
        exit_code: the script's exit status (None when it never ran).
        stdout_tail: the last few KiB of stdout (decoded, invalid UTF-8 replaced).
        stderr_tail: the last few KiB of stderr.
        stdout_head: the first few KiB of stdout (what a flood would push out of the tail).
        stdout_bytes / stderr_bytes: how much the script wrote to each (as far as it was read).
        wall_time: seconds from container start to exit, measured on the host.
        peak_memory: peak memory use of the container in bytes (None when the cgroup is not readable).
        timed_out: killed by the host at the wall-clock limit.
        output_truncated: stdout+stderr or the result files exceeded their cap (the run is then failed
            and no result file is returned).
        oom_killed: the kernel killed it at the memory limit.
        files: the result files written (relative POSIX paths, sorted; empty for validate).
        output_bytes: their total size.
        output_folder: where they are (None for validate or a failed run).
        error: a one-line reason when the run failed before or around the script (bad task, missing
            image, engine down, limits); empty otherwise.
        run_id: the value of the container's ``ichain.run`` label.
        sandbox_fault: the run failed because of this machine (engine down, image missing, runtime
            not configured, file errors), not because of the task: worth retrying once fixed.
    """

    mode: str
    exit_code: int | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    stdout_head: str = ""
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    wall_time: float = 0.0
    peak_memory: int | None = None
    timed_out: bool = False
    output_truncated: bool = False
    oom_killed: bool = False
    files: list[str] = field(default_factory=list)
    output_bytes: int = 0
    output_folder: Path | None = None
    error: str = ""
    run_id: str = ""
    sandbox_fault: bool = False

    @property
    def ok(self) -> bool:
        """True when the script ran to completion within every limit and exited 0."""
        return self.exit_code == 0 and not (self.error or self.timed_out or self.output_truncated or self.oom_killed)

    @property
    def accepted(self) -> bool:
        """For a validate run: the validator script accepted the result (same as ``ok``)."""
        return self.ok


class _Tail:
    """Keeps the first and the last ``size`` bytes written to it and counts all of them."""

    def __init__(self, size: int = TAIL_BYTES):
        self.size = size
        self.head = bytearray()
        self.buf = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        if len(self.head) < self.size:
            self.head += data[: self.size - len(self.head)]
        self.buf += data
        if len(self.buf) > 2 * self.size:
            del self.buf[: -self.size]

    def text(self) -> str:
        return bytes(self.buf[-self.size :]).decode("utf-8", errors="replace")

    def head_text(self) -> str:
        return bytes(self.head).decode("utf-8", errors="replace")


class Sandbox:
    """Runs task scripts in hardened, short-lived containers.

    Args:
        image: this provider's main runtime (a catalog name): the one ``self_test`` checks; tasks may
            name it or one of ``allowed_images``.
        client: Docker client (default: from the environment; ``DOCKER_HOST`` is honoured).
        runtime: the OCI runtime: ``"auto"`` (gVisor ``runsc`` when the engine has it configured, else
            the engine's default), ``"runsc"``, ``"runc"`` or None for the engine default.
        allowed_images: further catalog runtimes tasks may ask for (default: every one, so a provider
            runs any runtime it has built; ``()``: only ``image``).
        image_names: the local image that serves a runtime when it is not named like it (a build under
            a throwaway name is smoke-tested this way).
        max_time_limit / max_memory / max_cpus / max_output: the provider's ceilings; a task's own
            manifest values are used when lower.
        tmpfs_size: size of the ``/tmp`` tmpfs (counted in the memory limit).
        pids_limit: processes+threads in the container.
        nofile: open file descriptors per process.
        log_limit: cap on stdout+stderr bytes read from the container.
        labels: extra labels for every container (e.g. to find one test session's containers).
    """

    def __init__(
        self,
        image: str = RUNTIME_IMAGE,
        *,
        client: docker.DockerClient | None = None,
        runtime: str | None = "auto",
        allowed_images: tuple[str, ...] | None = None,
        image_names: dict[str, str] | None = None,
        max_time_limit: float = 24 * 3600,
        max_memory: int = 8 * 1024 * MiB,
        max_cpus: float | None = None,
        max_output: int = 4 * 1024 * MiB,
        tmpfs_size: int = 64 * MiB,
        pids_limit: int = 64,
        nofile: int = 256,
        log_limit: int = 8 * MiB,
        labels: dict[str, str] | None = None,
    ):
        unknown = [name for name in (image, *(allowed_images or ())) if get_runtime(name) is None]
        if unknown:
            raise SandboxError(f"unknown runtime '{unknown[0]}' (known: {', '.join(runtime_names())})")
        self.image = image
        self._client = client
        self._runtime_request = runtime
        self._runtime: str | None = None
        others = runtime_names() if allowed_images is None else allowed_images
        self.allowed_images = (image, *[name for name in others if name != image])
        self.image_names = dict(image_names or {})
        self.max_time_limit = max_time_limit
        self.max_memory = max_memory
        self.max_cpus = max_cpus or float(os.cpu_count() or 1)
        self.max_output = max_output
        self.tmpfs_size = tmpfs_size
        self.pids_limit = pids_limit
        self.nofile = nofile
        self.log_limit = log_limit
        self.labels = dict(labels or {})
        self._swept = False

    # -- engine -------------------------------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        """The Docker client, connected on first use (raises ``EngineUnavailable``)."""
        if self._client is None:
            self._client = docker_client()
        return self._client

    @property
    def runtime(self) -> str:
        """The OCI runtime containers use: ``runsc`` (gVisor) or ``runc``."""
        if self._runtime is None:
            runtimes = set((self.client.info().get("Runtimes") or {}).keys())
            wanted = self._runtime_request
            if wanted == "auto":
                wanted = "runsc" if "runsc" in runtimes else "runc"
            if wanted and wanted not in runtimes:
                raise SandboxError(f"container runtime '{wanted}' is not configured in the Docker engine")
            self._runtime = wanted or "runc"
        return self._runtime

    def image_for(self, runtime: str) -> str:
        """The local image that serves the catalog runtime ``runtime`` (by default the image of that name)."""
        return self.image_names.get(runtime, runtime)

    def runtimes(self) -> tuple[str, ...]:
        """The runtimes this provider can run now: allowed ones whose image is on the engine and up to date.

        Raises:
            EngineUnavailable: no Docker engine.
        """
        return tuple(
            name for name in self.allowed_images if image_status(self.client, self.image_for(name), name).up_to_date
        )

    def gpu_support(self) -> bool:
        """True when the engine can pass NVIDIA GPUs into containers (the NVIDIA container toolkit is there).

        The toolkit registers its ``nvidia`` runtime with the engine; the engine has no other sign of it.

        Raises:
            EngineUnavailable: no Docker engine.
        """
        return NVIDIA_RUNTIME in (self.client.info().get("Runtimes") or {})

    def _check_gpus(self, spec: TaskSpec) -> None:
        """Refuse, before any container starts, a GPU task this engine can never run.

        Raises:
            TaskUnsupported: GPUs asked for and the engine cannot pass them (or gVisor cannot).
        """
        if spec.gpus == 0:
            return
        if not self.gpu_support():
            raise TaskUnsupported(
                f"the task asks for {spec.gpus} GPU(s) and this Docker engine cannot pass GPUs "
                "(no NVIDIA container runtime)"
            )
        if self.runtime == "runsc":
            # gVisor intercepts every system call: a GPU is reachable only through its nvproxy, which the
            # engine's runsc entry must switch on. Falling back to runc for GPU tasks would quietly weaken
            # the isolation a provider chose, so without nvproxy the task is refused.
            args = (self.client.info().get("Runtimes") or {}).get("runsc", {}).get("runtimeArgs") or []
            if not any(arg in _NVPROXY_FLAGS for arg in args):
                raise TaskUnsupported(
                    f"the task asks for {spec.gpus} GPU(s) and gVisor (runsc) runs without --nvproxy here"
                )

    # -- configuration ------------------------------------------------------------------------------

    def limits_for(self, spec: TaskSpec) -> dict[str, Any]:
        """The effective limits for a task: its manifest's values capped by this provider's ceilings."""
        return {
            "time_limit": min(spec.time_limit, self.max_time_limit),
            "memory": min(spec.memory, self.max_memory),
            "cpus": min(spec.cpus, self.max_cpus),
            "output_limit": min(spec.output_limit, self.max_output),
        }

    def time_limit(self, task_folder: str | Path) -> float:
        """Seconds one run of this task may take here (its manifest's limit capped by this provider's ceiling).

        A provider reads it before running, to refuse a task that cannot finish before its deadline.

        Raises:
            TaskFormatError: the folder is not a valid task.
        """
        return float(self.limits_for(load_task(task_folder))["time_limit"])

    def container_config(
        self, spec: TaskSpec, work_dir: Path, mode: str, run_id: str, command: list[str] | None = None
    ) -> dict[str, Any]:
        """The exact ``create_container`` arguments (host config included) for one run.

        Every container the sandbox starts (runs, the image smoke test, clean-ups) uses this.

        Args:
            spec: the task.
            work_dir: host folder mounted writable at ``/work``.
            mode: ``"0"`` (execute) or ``"1"`` (validate).
            run_id: value of the ``ichain.run`` label.
            command: replaces ``python3 /task/ENTRY MODE`` (clean-up only).
        """
        limits = self.limits_for(spec)
        api = self.client.api
        threads = str(max(1, int(limits["cpus"])))
        host_config = api.create_host_config(
            network_mode="none",
            read_only=True,
            mounts=[
                docker.types.Mount(TASK_MOUNT, str(spec.folder), type="bind", read_only=True),
                docker.types.Mount(WORK_MOUNT, str(work_dir), type="bind", read_only=False),
            ],
            tmpfs={"/tmp": f"rw,noexec,nosuid,nodev,size={self.tmpfs_size},mode=1777"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            pids_limit=self.pids_limit,
            mem_limit=limits["memory"],
            memswap_limit=limits["memory"],  # equal: no swap on top of the memory limit
            mem_swappiness=0,
            nano_cpus=int(limits["cpus"] * 1e9),
            ulimits=[
                docker.types.Ulimit(name="nofile", soft=self.nofile, hard=self.nofile),
                # RLIMIT_NPROC counts every process of uid 65534 on the host: pids_limit is the
                # per-container bound, this one only stops a runaway across containers.
                docker.types.Ulimit(name="nproc", soft=1024, hard=1024),
                docker.types.Ulimit(name="fsize", soft=limits["output_limit"], hard=limits["output_limit"]),
                docker.types.Ulimit(name="core", soft=0, hard=0),
            ],
            log_config=docker.types.LogConfig(type="none"),
            init=True,
            ipc_mode="private",
            shm_size=self.tmpfs_size,
            oom_score_adj=500,
            runtime=self.runtime,
            # The only setting a GPU task adds: its GPUs, through the engine's NVIDIA driver.
            device_requests=(
                [docker.types.DeviceRequest(count=spec.gpus, capabilities=[["gpu"]])] if spec.gpus else None
            ),
        )
        return {
            "image": self.image_for(spec.image),
            "command": command or ["python3", f"{TASK_MOUNT}/{spec.entry}", mode],
            "user": SANDBOX_USER,
            "working_dir": WORK_MOUNT,
            "hostname": "sandbox",
            "network_disabled": True,
            "environment": {
                # The only environment the script sees (nothing from the host leaks in).
                "HOME": "/tmp",
                "ICHAIN_MODE": mode,
                "ICHAIN_TOLERANCE": repr(spec.tolerance),
                "ICHAIN_TASK_DIR": TASK_MOUNT,
                "OPENBLAS_NUM_THREADS": threads,
                "OMP_NUM_THREADS": threads,
                "MPLCONFIGDIR": "/tmp",
            },
            "labels": {
                **self.labels,
                SANDBOX_LABEL: "1",
                RUN_LABEL: run_id,
                OWNER_LABEL: _owner(),
                "ichain.mode": "execute" if mode == "0" else "validate",
            },
            "stdin_open": False,
            "tty": False,
            "host_config": host_config,
        }

    # -- public runs --------------------------------------------------------------------------------

    def execute(self, task_folder: str | Path, output_folder: str | Path) -> RunResult:
        """Run ``python3 ENTRY 0`` and return the files it wrote in ``output_folder``.

        ``output_folder`` must not exist or be empty; it is filled only when the run succeeded (the
        files land in a ``.part`` folder renamed into place). Bad input never raises: the
        ``RunResult`` carries a one-line ``error`` instead.
        """
        return self._run(task_folder, "0", Path(output_folder), result_folder=None)

    def validate(self, task_folder: str | Path, result_folder: str | Path) -> RunResult:
        """Run ``python3 ENTRY 1`` with the result files put back in the working folder.

        The script sees copies (``result_folder`` is never modified). ``RunResult.accepted`` (exit 0
        within every limit) is the verdict.
        """
        return self._run(task_folder, "1", None, result_folder=Path(result_folder))

    def self_test(self, runtime: str | None = None) -> RunResult:
        """Execute a runtime's smoke test (its stack imported, a tiny computation) in a hardened container.

        ``ape ichain sandbox check`` runs it for every runtime, and so does every image build before it
        accepts the image.

        Args:
            runtime: the catalog runtime to test (default: ``image``).
        """
        name = runtime or self.image
        entry = get_runtime(name)
        if entry is None:
            return RunResult(mode="execute", error=f"unknown runtime '{name}' (known: {', '.join(runtime_names())})")
        with tempfile.TemporaryDirectory(prefix="ichain-selftest-") as tmp:
            task = Path(tmp) / "task"
            task.mkdir()
            task.chmod(0o755)
            (task / "task.py").write_text(entry.smoke_script())
            (task / "ichain.json").write_text(json.dumps({"image": name, "time_limit": 120}))
            return self.execute(task, Path(tmp) / "out")

    # -- the run itself -----------------------------------------------------------------------------

    def _run(self, task_folder: str | Path, mode: str, output: Path | None, result_folder: Path | None) -> RunResult:
        run_id = uuid.uuid4().hex
        result = RunResult(mode="execute" if mode == "0" else "validate", run_id=run_id)
        try:
            spec = load_task(task_folder)
            if spec.image not in self.allowed_images:
                raise TaskUnsupported(
                    f"task asks for image '{spec.image}', this provider runs {', '.join(self.allowed_images)}"
                )
            if output is not None and output.exists() and (not output.is_dir() or any(output.iterdir())):
                raise SandboxError(f"output folder exists and is not empty: {output}")
            if result_folder is not None and not result_folder.is_dir():
                raise SandboxError(f"result folder not found: {result_folder}")
            if not os.access(spec.folder, os.R_OK | os.X_OK) or not (spec.folder.stat().st_mode & 0o005) == 0o005:
                raise TaskFormatError(f"task folder {spec.folder} must be readable by others (chmod o+rx)")
            self.runtime  # noqa: B018 - resolve (and check) the runtime before anything starts
            # Before the image check: a task that can never run here is told so, not retried.
            self._check_gpus(spec)
            require_image(self.client, self.image_for(spec.image))
            if not self._swept:
                self._swept = True
                sweep_orphans(self.client)
        except SandboxError as exc:
            result.error = str(exc)
            # A bad task, or one this provider can never run, is not worth retrying here.
            result.sandbox_fault = not isinstance(exc, (TaskFormatError, TaskUnsupported))
            return result
        except docker.errors.DockerException as exc:
            result.error = str(EngineUnavailable(f"Docker engine error: {str(exc).splitlines()[0][:200]}"))
            result.sandbox_fault = True
            return result

        # Execute passes where the files go, validate where they are: the working folder sits next to it.
        beside = output if output is not None else result_folder
        assert beside is not None, "execute passes an output folder, validate a result folder"
        base = beside.parent
        base.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".ichain-run-{run_id[:12]}-", dir=base))
        try:
            self._prepare_work(work, spec, result_folder)
            # Validate mode starts with the result files in /work: they do not count against the cap.
            preloaded = _tree_size(work, 1 << 62) if result_folder is not None else 0
            self._run_container(spec, work, mode, run_id, result, preloaded)
            if output is not None and result.ok:
                self._collect(work, output, self.limits_for(spec)["output_limit"], result, _task_names(spec))
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            result.error = result.error or str(
                EngineUnavailable(f"Docker engine error during the run: {str(exc).splitlines()[0][:200]}")
            )
            result.sandbox_fault = True
        except OSError as exc:
            result.error = result.error or f"sandbox file error: {exc}"
            result.sandbox_fault = True
        finally:
            self._remove_tree(work, spec)
        return result

    def _prepare_work(self, work: Path, spec: TaskSpec, result_folder: Path | None) -> None:
        """Fill the host folder that becomes ``/work``: result copies (validate) and input symlinks."""
        reserved = _task_names(spec)
        if result_folder is not None:
            # Copies, so the validator script cannot alter the result it judges; a result entry named
            # like a task file is left out, so a provider cannot swap the task's own data or config.
            top = os.fspath(result_folder)
            shutil.copytree(
                result_folder, work, dirs_exist_ok=True, symlinks=True,
                ignore=lambda folder, names: [n for n in names if folder == top and n in reserved],
            )
        for name in sorted(reserved):
            os.symlink(_SYMLINK_TARGET + name, work / name)
        # Only the sandbox user may write there (nobody else on the host needs to).
        if os.geteuid() == 0:
            for root, dirs, files in os.walk(work):
                for name in [*dirs, *files]:
                    os.lchown(os.path.join(root, name), 65534, 65534)
            os.chown(work, 65534, 65534)
            os.chmod(work, 0o700)
        else:
            for root, dirs, _files in os.walk(work):
                for name in dirs:
                    os.chmod(os.path.join(root, name), 0o777)
            os.chmod(work, 0o777)

    def _run_container(
        self, spec: TaskSpec, work: Path, mode: str, run_id: str, result: RunResult, preloaded: int = 0
    ) -> None:
        api = self.client.api
        limits = self.limits_for(spec)
        config = self.container_config(spec, work, mode, run_id)
        container_id = None
        sock = None
        out, err = _Tail(), _Tail()
        stop = threading.Event()
        reasons: list[str] = []
        peak: list[int | None] = [None]  # the watch thread's latest sample
        try:
            container_id = api.create_container(**config)["Id"]
            sock = api.attach_socket(container_id, params={"stdout": 1, "stderr": 1, "stream": 1})
            reader = threading.Thread(
                target=self._pump, args=(sock, out, err, stop, reasons), name=f"sandbox-out-{run_id[:8]}", daemon=True
            )
            reader.start()
            started = time.monotonic()
            api.start(container_id)
            monitor = threading.Thread(
                target=self._watch,
                args=(container_id, work, limits["output_limit"] + preloaded, stop, reasons, peak),
                name=f"sandbox-watch-{run_id[:8]}",
                daemon=True,
            )
            monitor.start()
            status = self._wait(container_id, started + limits["time_limit"], stop, reasons)
            result.wall_time = time.monotonic() - started
            if "timeout" in reasons or "log" in reasons or "files" in reasons:
                # The pipe is closed before the kill: a blocked writer must not hold us up.
                _close(sock)
                with contextlib.suppress(docker.errors.APIError):
                    api.kill(container_id)
                status = self._wait(container_id, time.monotonic() + 30, None, [])
            stop.set()
            reader.join(timeout=5)
            monitor.join(timeout=5)
            state = api.inspect_container(container_id)["State"]
            result.exit_code = status if status is not None else state.get("ExitCode")
            result.oom_killed = bool(state.get("OOMKilled"))
            result.timed_out = "timeout" in reasons
            result.output_truncated = "log" in reasons or "files" in reasons
            result.peak_memory = peak[0] if peak[0] is not None else _peak_memory(container_id)
            if result.timed_out:
                result.error = f"time limit of {limits['time_limit']:g} s reached: killed"
            elif "log" in reasons:
                result.error = f"stdout+stderr exceeded {self.log_limit} bytes: killed"
            elif "files" in reasons:
                result.error = f"result files exceeded {limits['output_limit']} bytes: killed"
            elif result.oom_killed:
                result.error = f"memory limit of {limits['memory'] // MiB} MiB reached: killed"
        finally:
            stop.set()
            _close(sock)
            if container_id is not None:
                # Always removed, whatever happened above (KeyboardInterrupt included).
                with contextlib.suppress(docker.errors.NotFound):
                    api.remove_container(container_id, force=True, v=True)
            result.stdout_tail, result.stderr_tail, result.stdout_head = out.text(), err.text(), out.head_text()
            result.stdout_bytes, result.stderr_bytes = out.total, err.total

    def _wait(self, container_id: str, deadline: float, stop: threading.Event | None, reasons: list[str]) -> int | None:
        """Wait for the container to exit, in slices so the monitors can interrupt; None on timeout."""
        api = self.client.api
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                reasons.append("timeout")
                return None
            if stop is not None and stop.is_set():
                return None
            try:
                return int(api.wait(container_id, timeout=min(remaining, 1.0))["StatusCode"])
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                continue

    def _pump(
        self, sock: AttachSocket, out: _Tail, err: _Tail, stop: threading.Event, reasons: list[str]
    ) -> None:
        """Read the multiplexed attach stream into the two tails; enforce the stdout+stderr cap.

        A frame's payload is read in slices of at most ``_READ_BYTES``, so the cap is checked often
        and a frame, however large its header says it is, never makes the host allocate more.
        """
        try:
            while True:
                stream, size = next_frame_header(sock)
                if size < 0:
                    return  # end of stream: the container is gone
                while size > 0:
                    chunk = read(sock, min(size, _READ_BYTES))
                    if chunk is None:
                        continue  # interrupted before anything arrived: read again
                    if not chunk:
                        return
                    size -= len(chunk)
                    (err if stream == STDERR else out).add(chunk)
                    if out.total + err.total > self.log_limit:
                        reasons.append("log")
                        stop.set()
                        return
        except (OSError, ValueError):
            return  # the socket was closed under us: the run is over

    def _watch(
        self,
        container_id: str,
        work: Path,
        output_limit: int,
        stop: threading.Event,
        reasons: list[str],
        peak: list[int | None],
    ) -> None:
        """Poll peak memory and the size of ``/work`` (disk fill is stopped from the host)."""
        started = time.monotonic()
        # Fast at first so that short runs still get a peak-memory sample (the cgroup goes at exit).
        while not stop.wait(_POLL if time.monotonic() - started > 1 else _POLL / 5):
            value = _peak_memory(container_id)
            if value is not None:
                peak[0] = value
            if _tree_size(work, output_limit) > output_limit:
                reasons.append("files")
                stop.set()
                return

    def _collect(self, work: Path, output: Path, output_limit: int, result: RunResult, reserved: set[str]) -> None:
        """Copy the regular files and folders the script wrote into ``output`` (``.part`` then rename)."""
        part = Path(tempfile.mkdtemp(prefix=output.name + ".part-", dir=output.parent))
        files: list[str] = []
        total = 0
        try:
            for root, dirs, names in os.walk(work):
                rel_root = Path(root).relative_to(work)
                if rel_root == Path("."):
                    # Names of task files are the task's: whatever the script put there stays behind.
                    dirs[:] = [d for d in dirs if d not in reserved]
                    names = [n for n in names if n not in reserved]
                if len(rel_root.parts) >= MAX_DEPTH:
                    result.error = f"result folders nested deeper than {MAX_DEPTH} levels"
                    raise _Discard()
                for name in sorted(dirs):
                    src = Path(root) / name
                    if stat.S_ISDIR(src.lstat().st_mode):
                        (part / rel_root / name).mkdir(mode=0o755)
                for name in sorted(names):
                    src = Path(root) / name
                    st = src.lstat()
                    if not stat.S_ISREG(st.st_mode):
                        continue  # our input symlinks, and any link/FIFO/socket the script made
                    total += st.st_size
                    if total > output_limit:
                        result.output_truncated = True
                        result.error = f"result files exceed {output_limit} bytes"
                        raise _Discard()
                    shutil.copyfile(src, part / rel_root / name, follow_symlinks=False)
                    files.append((rel_root / name).as_posix())
            os.chmod(part, 0o755)
            if output.exists():
                output.rmdir()
            os.replace(part, output)
            result.files = sorted(files)
            result.output_bytes = total
            result.output_folder = output
        except _Discard:
            shutil.rmtree(part, ignore_errors=True)
        except BaseException:
            shutil.rmtree(part, ignore_errors=True)
            raise

    def _remove_tree(self, work: Path, spec: TaskSpec | None = None) -> None:
        try:
            shutil.rmtree(work)
        except FileNotFoundError:
            pass
        except RecursionError:
            # A script can nest folders deeper than Python's recursion limit; rm has no such limit.
            subprocess.run(["rm", "-rf", "--", str(work)], check=False)
        except PermissionError:
            if spec is None:
                raise
            # Without root, files the sandbox user made in its own sub-folders are only removable by
            # it: a hardened container of the same kind deletes them.
            api = self.client.api
            config = self.container_config(
                spec, work, "0", f"cleanup-{uuid.uuid4().hex}", ["sh", "-c", "rm -rf /work/* /work/.[!.]*; true"]
            )
            container_id = api.create_container(**config)["Id"]
            try:
                api.start(container_id)
                api.wait(container_id, timeout=60)
            finally:
                api.remove_container(container_id, force=True, v=True)
            shutil.rmtree(work, ignore_errors=True)


def _task_names(spec: TaskSpec) -> set[str]:
    """Top-level names of the task folder: reserved in the working folder (inputs are linked there)."""
    return {rel.split("/", 1)[0] for rel in spec.files}


class _Discard(Exception):
    """Internal: the collected files exceeded the cap."""


def _close(sock: AttachSocket | None) -> None:
    """Shut the attach stream down, then close it.

    The shutdown is what wakes a reader blocked in ``poll`` on this stream (a close alone does not);
    it goes through a duplicate of the descriptor because both kinds of attach stream expose one.
    """
    if sock is None:
        return
    with contextlib.suppress(OSError, ValueError):  # ValueError: already closed
        with socket.socket(fileno=os.dup(sock.fileno())) as duplicate:
            duplicate.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def _tree_size(folder: Path, stop_above: int) -> int:
    """Disk use of a folder tree (allocated blocks, so sparse files count as written), stopping early."""
    total = 0
    entries = 0
    stack = [str(folder)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    entries += 1
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += max(st.st_size if stat.S_ISREG(st.st_mode) else 0, st.st_blocks * 512)
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    # Inodes cost disk too: count each entry as one block.
                    total += 4096
                    if total > stop_above:
                        return total
        except OSError:
            continue
    return total


_CGROUP_PEAK = (
    "/sys/fs/cgroup/memory/docker/{id}/memory.max_usage_in_bytes",  # v1, cgroupfs driver
    "/sys/fs/cgroup/memory/system.slice/docker-{id}.scope/memory.max_usage_in_bytes",  # v1, systemd
    "/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.peak",  # v2, systemd
    "/sys/fs/cgroup/docker/{id}/memory.peak",  # v2, cgroupfs
)


def _peak_memory(container_id: str) -> int | None:
    for pattern in _CGROUP_PEAK:
        with contextlib.suppress(OSError, ValueError):
            return int(Path(pattern.format(id=container_id)).read_text().strip())
    return None


def _ticks_label(pid: int) -> str:
    """The process' start time as the owner label holds it (``""`` where unknown): tells a live pid from a reused
    one."""
    ticks = start_ticks(pid)
    return "" if ticks is None else str(ticks)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_ticks_label(os.getpid())}"


def _owner_alive(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid, _, ticks = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's engine user, or not ours to judge
    return _ticks_label(int(pid)) == ticks


def sweep_orphans(client: docker.DockerClient) -> int:
    """Remove sandbox containers whose starting process (on this host) is gone; returns how many."""
    removed = 0
    try:
        candidates = client.api.containers(all=True, filters={"label": [f"{SANDBOX_LABEL}=1", OWNER_LABEL]})
    except docker.errors.DockerException:
        return 0
    for container in candidates:
        owner = (container.get("Labels") or {}).get(OWNER_LABEL, "")
        if owner and not _owner_alive(owner):
            with contextlib.suppress(docker.errors.DockerException):
                client.api.remove_container(container["Id"], force=True, v=True)
                removed += 1
    return removed


def leftover_containers(client: docker.DockerClient, run_id: str | None = None) -> list:
    """Containers carrying the sandbox label (optionally one run's), running or not."""
    filters = {"label": [f"{SANDBOX_LABEL}=1"] + ([f"{RUN_LABEL}={run_id}"] if run_id else [])}
    return client.containers.list(all=True, filters=filters)


__all__ = ["RunResult", "Sandbox", "leftover_containers", "sweep_orphans"]
