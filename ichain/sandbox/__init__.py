"""The Docker sandbox: task format, deterministic packages, hardened runner, runtime image.

Public API (see docs/ARCHITECTURE.md and docs/TASKS.md)::

    spec = load_task(folder)                              # TaskFormatError on bad input
    task_hash = pack_task(folder, "task.tar")             # 32-byte sha256 of deterministic bytes
    unpack("task.tar", dest)                              # safe extraction (PackageError)
    box = Sandbox()                                       # runs every catalog runtime (CATALOG) it has built
    box.runtimes(), box.gpu_support()                     # what this provider can run now
    run = box.execute(task_folder, output_folder)         # RunResult; run.ok, run.files
    result_hash = pack_result(output_folder, "result.tar", meta)   # meta and a random salt bound inside
    pack_bundle("task.tar", "result.tar", "bundle.tar")   # what a provider hosts for its validator
    meta = unpack_result("result.tar", result_folder)     # files back + ResultMeta
    verdict = box.validate(task_folder, result_folder)    # verdict.accepted (exit 0)
"""

from ichain.sandbox.errors import (
    EngineUnavailable,
    ImageBuildError,
    ImageMissing,
    PackageError,
    SandboxError,
    TaskFormatError,
    TaskUnsupported,
)
from ichain.sandbox.engine import ImageStatus, docker_client
from ichain.sandbox.image import build_image, image_status
from ichain.sandbox.packaging import (
    ResultMeta,
    pack_bundle,
    pack_result,
    pack_task,
    read_result_meta,
    sha256_file,
    unpack,
    unpack_bundle,
    unpack_upload,
    unpack_result,
)
from ichain.sandbox.runner import RunResult, Sandbox, leftover_containers
from ichain.sandbox.runtimes import CATALOG, RUNTIME_IMAGE, TORCH_IMAGE, Runtime, get_runtime, runtime_names
from ichain.sandbox.task import TaskSpec, load_task

__all__ = [
    "CATALOG",
    "RUNTIME_IMAGE",
    "TORCH_IMAGE",
    "EngineUnavailable",
    "ImageBuildError",
    "ImageMissing",
    "ImageStatus",
    "PackageError",
    "ResultMeta",
    "RunResult",
    "Runtime",
    "Sandbox",
    "SandboxError",
    "TaskFormatError",
    "TaskSpec",
    "TaskUnsupported",
    "build_image",
    "docker_client",
    "get_runtime",
    "image_status",
    "leftover_containers",
    "load_task",
    "pack_bundle",
    "pack_result",
    "pack_task",
    "read_result_meta",
    "runtime_names",
    "sha256_file",
    "unpack",
    "unpack_bundle",
    "unpack_upload",
    "unpack_result",
]
