"""The task format: a folder with a python3 entry script, data files and an optional manifest.

The entry script (``task.py`` unless the manifest says otherwise) is run as ``python3 ENTRY 0`` to
execute (train, write result files into the working folder) and ``python3 ENTRY 1`` to validate (the
result files are back in the working folder; exit 0 accepts, anything else rejects): the paper's
Figure 8 convention, ``sys.argv[1] == '0'``, works unchanged. See docs/TASKS.md.

The optional manifest ``ichain.json`` (unknown keys are refused, to catch typos)::

    {"entry": "task.py", "image": "ichain-runtime", "time_limit": 600, "memory": "512m",
     "cpus": 1, "output_limit": "256m", "tolerance": 0.01, "gpus": 0, "gpu_memory": 0}

``image`` names a runtime of the catalog (``ichain.sandbox.runtimes``).
"""

from __future__ import annotations

import json
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ichain.hardware import Needs
from ichain.sandbox.errors import TaskFormatError
from ichain.sandbox.runtimes import RUNTIME_IMAGE, runtime_names

MANIFEST = "ichain.json"
DEFAULT_ENTRY = "task.py"
MiB = 1024 * 1024
GiB = 1024 * MiB
# Bounds on what a manifest may ask for (a provider may set tighter ones on its Sandbox).
MAX_TIME_LIMIT = 7 * 24 * 3600
MAX_TASK_BYTES = 4 * GiB
MAX_TASK_FILES = 100_000
MAX_GPUS = 16
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgKMG]?)i?[bB]?\s*$")


def parse_size(value: Any, what: str) -> int:
    """Parse a byte size: an int (MiB) or a string like ``"512m"``, ``"2g"``, ``"800k"``."""
    if isinstance(value, bool):
        raise TaskFormatError(f"{what}: expected a size like '512m', got {value!r}")
    if isinstance(value, (int, float)):
        size = int(value * MiB)
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        size = int(float(m.group(1)) * {"": 1, "k": 1024, "m": MiB, "g": GiB}[m.group(2).lower()])
    else:
        raise TaskFormatError(f"{what}: expected a size like '512m', got {value!r}")
    if size <= 0:
        raise TaskFormatError(f"{what}: must be positive, got {value!r}")
    return size


@dataclass(frozen=True)
class TaskSpec:
    """A validated task folder.

    Attributes:
        folder: absolute path of the task folder.
        entry: the entry script, relative to the folder (POSIX form).
        image: the catalog runtime (image) to run it in.
        time_limit: wall-clock limit in seconds for one run (execute or validate).
        memory: memory limit in bytes (swap is not allowed on top).
        cpus: CPU limit (cores).
        output_limit: cap in bytes on the result files (and, separately, on stdout+stderr).
        tolerance: declared tolerance of the claimed metrics (passed to the script as ICHAIN_TOLERANCE).
        gpus: how many GPUs the task needs (0: none, the container sees no GPU).
        gpu_memory: the least memory in bytes each GPU must have (0: any); what the provider's GPUs must
            offer, not a limit (Docker cannot limit GPU memory).
        files: every file of the task, relative POSIX paths, sorted.
        size: total size of those files in bytes.
    """

    folder: Path
    entry: str = DEFAULT_ENTRY
    image: str = RUNTIME_IMAGE
    time_limit: float = 600.0
    memory: int = 512 * MiB
    cpus: float = 1.0
    output_limit: int = 256 * MiB
    tolerance: float = 0.0
    gpus: int = 0
    gpu_memory: int = 0
    files: tuple[str, ...] = field(default_factory=tuple)
    size: int = 0

    def needs(self) -> Needs:
        """What this task asks of the machine that runs it (matched against providers' offers)."""
        return Needs(image=self.image, cpus=self.cpus, memory=self.memory, gpus=self.gpus,
                     gpu_memory=self.gpu_memory, time_limit=self.time_limit)


_KEYS = {"entry", "image", "time_limit", "memory", "cpus", "output_limit", "tolerance", "gpus", "gpu_memory"}


def scan_folder(folder: Path, what: str = "task") -> tuple[list[str], list[str], int]:
    """List a folder's regular files and directories (sorted POSIX relative paths) and total size.

    Raises:
        TaskFormatError: a symlink, device, socket or FIFO is inside, or the caps are exceeded.
    """
    files: list[str] = []
    dirs: list[str] = []
    total = 0
    stack = [folder]
    while stack:
        current = stack.pop()
        for entry in sorted(current.iterdir(), key=lambda p: p.name):
            rel = entry.relative_to(folder).as_posix()
            mode = entry.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise TaskFormatError(f"{what} folder contains a symlink ({rel}): copy the file in instead")
            if stat.S_ISDIR(mode):
                dirs.append(rel)
                stack.append(entry)
            elif stat.S_ISREG(mode):
                files.append(rel)
                total += entry.lstat().st_size
            else:
                raise TaskFormatError(f"{what} folder contains a special file ({rel}): only files and folders")
            if len(files) + len(dirs) > MAX_TASK_FILES or total > MAX_TASK_BYTES:
                raise TaskFormatError(
                    f"{what} folder too large (over {MAX_TASK_FILES} entries or {MAX_TASK_BYTES // GiB} GiB)"
                )
    return sorted(files), sorted(dirs), total


def load_task(folder: str | Path) -> TaskSpec:
    """Validate a task folder and its manifest.

    Args:
        folder: the task folder.

    Returns:
        The validated ``TaskSpec``.

    Raises:
        TaskFormatError: one line saying what is wrong (missing folder or entry script, syntax error,
            bad manifest, symlinks or special files inside, too large).
    """
    root = Path(folder)
    if not root.is_dir():
        raise TaskFormatError(f"task folder not found: {root}")
    root = root.resolve()
    manifest: dict[str, Any] = {}
    manifest_path = root / MANIFEST
    if manifest_path.exists():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise TaskFormatError(f"{MANIFEST} is not valid JSON: {exc}") from None
        if not isinstance(manifest, dict):
            raise TaskFormatError(f"{MANIFEST} must hold a JSON object")
        unknown = sorted(set(manifest) - _KEYS)
        if unknown:
            raise TaskFormatError(f"{MANIFEST}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_KEYS))})")

    entry = manifest.get("entry", DEFAULT_ENTRY)
    if not isinstance(entry, str) or not entry.endswith(".py"):
        raise TaskFormatError(f"{MANIFEST}: entry must be a .py file name, got {entry!r}")
    entry_path = PurePosixPath(entry)
    if entry_path.is_absolute() or ".." in entry_path.parts:
        raise TaskFormatError(f"{MANIFEST}: entry must be a path inside the task folder, got {entry!r}")
    image = manifest.get("image", RUNTIME_IMAGE)
    if not isinstance(image, str) or image not in runtime_names():
        raise TaskFormatError(f"{MANIFEST}: image must be one of {', '.join(runtime_names())}, got {image!r}")
    time_limit = manifest.get("time_limit", 600)
    if isinstance(time_limit, bool) or not isinstance(time_limit, (int, float)) or not 0 < time_limit <= MAX_TIME_LIMIT:
        raise TaskFormatError(f"{MANIFEST}: time_limit must be seconds in (0, {MAX_TIME_LIMIT}], got {time_limit!r}")
    cpus = manifest.get("cpus", 1)
    if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not 0 < cpus <= 256:
        raise TaskFormatError(f"{MANIFEST}: cpus must be a number of cores in (0, 256], got {cpus!r}")
    tolerance = manifest.get("tolerance", 0.0)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < 1e9:
        raise TaskFormatError(f"{MANIFEST}: tolerance must be a non-negative number, got {tolerance!r}")
    memory = parse_size(manifest.get("memory", "512m"), f"{MANIFEST}: memory")
    output_limit = parse_size(manifest.get("output_limit", "256m"), f"{MANIFEST}: output_limit")
    if memory < 16 * MiB:
        raise TaskFormatError(f"{MANIFEST}: memory below 16m cannot run python3")
    gpus = manifest.get("gpus", 0)
    if isinstance(gpus, bool) or not isinstance(gpus, int) or not 0 <= gpus <= MAX_GPUS:
        raise TaskFormatError(f"{MANIFEST}: gpus must be a whole number in [0, {MAX_GPUS}], got {gpus!r}")
    raw_gpu_memory = manifest.get("gpu_memory", 0)
    # 0 (the default) means any GPU will do; anything else is a size like memory.
    any_gpu = raw_gpu_memory == "0" or (raw_gpu_memory == 0 and not isinstance(raw_gpu_memory, bool))
    gpu_memory = 0 if any_gpu else parse_size(raw_gpu_memory, f"{MANIFEST}: gpu_memory")

    files, _dirs, size = scan_folder(root)
    if entry_path.as_posix() not in files:
        raise TaskFormatError(f"entry script {entry} not found in {root}")
    source = (root / entry).read_bytes()
    try:
        # Parsing is safe on the host (nothing runs); it turns a typo into a clear message early.
        compile(source, entry, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise TaskFormatError(f"{entry} line {exc.lineno}: syntax error: {exc.msg}") from None
    except ValueError as exc:  # e.g. NUL bytes
        raise TaskFormatError(f"{entry} is not a python3 source file: {exc}") from None
    return TaskSpec(
        folder=root,
        entry=entry_path.as_posix(),
        image=image,
        time_limit=float(time_limit),
        memory=memory,
        cpus=float(cpus),
        output_limit=output_limit,
        tolerance=float(tolerance),
        gpus=gpus,
        gpu_memory=gpu_memory,
        files=tuple(files),
        size=size,
    )
