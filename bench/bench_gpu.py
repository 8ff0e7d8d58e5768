"""GPU benchmark of examples/mnist-cnn (the paper's Figure 8 network) -> bench/results/gpu.json.

Trains and validates the example once on the GPU and once on the CPU, and records the wall times of both
modes, the device each run used (the task prints it on its first line), the validator's verdict, the
PyTorch version, the GPU's model and memory, and the speed-up of the GPU over the CPU.

Two ways to run, chosen by ``--mode`` (default ``auto``: sandbox where it can use a GPU, else direct):

- ``sandbox``: the whole provider path, ``ichain.sandbox.Sandbox`` on the ``ichain-torch`` image, the
  GPU run with ``"gpus": 1`` in the task's manifest. Needs ichain, Docker, the image and, for the GPU
  half, an engine that passes GPUs (the NVIDIA container toolkit). The image's PyTorch is Debian's
  CPU-only build, so this path shows the GPU reaching the container but the task still trains on the
  CPU (the report says so); the GPU's speed is measured in direct mode.
- ``direct``: no Docker and no ichain (for a rented GPU machine with just python3 and a CUDA PyTorch):
  ``python3 task.py 0`` then ``python3 task.py 1`` in copies of the task folder, once as it is and once
  with the GPU hidden (``CUDA_VISIBLE_DEVICES=""``). The GPU's weights are also validated on the CPU, as
  a validator without a GPU would. This mode imports nothing outside the standard library; it runs
  from a plain copy of the repository.

Without a GPU the CPU half still runs and the file gets ``"gpu": null`` and a note. Both runs get the
manifest's CPU count as their thread count (what the sandbox gives the task). Nothing is downloaded;
the run takes well under 10 minutes. Run: ``python3 bench/bench_gpu.py [--epochs N] [--out PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TASK = ROOT / "examples" / "mnist-cnn"
RESULTS = ROOT / "bench" / "results" / "gpu.json"
IMAGE = json.loads((TASK / "ichain.json").read_text())["image"]
RUN_TIMEOUT_S = 300
# What the task prints first: "device: cuda NVIDIA H200 torch 2.3.0" or "device: cpu threads 2 torch 1.13.0a0".
DEVICE_LINE = re.compile(r"^device: (\S+) (.*) torch (\S+)$", re.MULTILINE)
# Run by the interpreter that will train: is PyTorch there, and does it see a GPU?
TORCH_PROBE = """import json, torch
cuda = torch.cuda.is_available()
print(json.dumps({"version": torch.__version__, "cuda": torch.version.cuda, "cuda_available": cuda,
                  "gpus": [{"name": torch.cuda.get_device_name(i),
                            "memory_mib": torch.cuda.get_device_properties(i).total_memory // 2**20}
                           for i in range(torch.cuda.device_count())] if cuda else []}))
"""


def _manifest() -> dict[str, Any]:
    return json.loads((TASK / "ichain.json").read_text())


def _task_copy(root: Path, name: str, epochs: int | None, gpus: int = 0) -> Path:
    """A copy of the example (readable by the sandbox user), with its epochs and GPU request set."""
    folder = root / name
    shutil.copytree(TASK, folder)
    if epochs is not None:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "epochs": epochs}))
    if gpus:
        (folder / "ichain.json").write_text(json.dumps({**_manifest(), "gpus": gpus}))
    folder.chmod(0o755)
    return folder


def _parse(stdout: str) -> dict[str, Any]:
    """The device the task used and the torch it ran on, from its first line."""
    match = DEVICE_LINE.search(stdout)
    if match is None:
        return {"device": None, "device_detail": None, "torch": None}
    return {"device": match.group(1), "device_detail": match.group(2), "torch": match.group(3)}


def _verdict_line(stdout: str) -> str:
    lines = stdout.strip().splitlines()
    return lines[-1] if lines else ""


def _metrics(folder: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((folder / "metrics.json").read_text()))
    except (OSError, ValueError):
        return {}


def _gpu_from_nvidia_smi() -> dict[str, Any] | None:
    """The first GPU as nvidia-smi reports it (None without nvidia-smi or a GPU)."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=30, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [[cell.strip() for cell in line.split(",")] for line in out.strip().splitlines() if line.strip()]
    if not rows or len(rows[0]) != 3:
        return None
    name, memory, driver = rows[0]
    return {"name": name, "memory_mib": int(memory) if memory.isdigit() else None, "driver": driver,
            "count": len(rows), "source": "nvidia-smi"}


def _probe(python: str) -> dict[str, Any] | None:
    try:
        proc = subprocess.run([python, "-c", TORCH_PROBE], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _torch_python(requested: str | None) -> tuple[str, dict[str, Any]]:
    """An interpreter that has PyTorch (``--python``, this one, or the system's python3) and its probe."""
    candidates = [requested] if requested else [sys.executable, "/usr/bin/python3", shutil.which("python3") or ""]
    for python in dict.fromkeys(c for c in candidates if c):
        info = _probe(python)
        if info is not None:
            return python, info
    raise SystemExit(
        f"bench_gpu: no PyTorch in {', '.join(c for c in candidates if c)} "
        "(install python3-torch or a CUDA build of torch, or pass --python PATH)"
    )


# -- direct: python3 task.py in copies of the folder -------------------------------------------------


def _direct_mode(python: str, folder: Path, mode: str, env: dict[str, str]) -> tuple[float, int, str, str]:
    start = time.perf_counter()
    try:
        proc = subprocess.run([python, "task.py", mode], cwd=folder, env=env, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        return time.perf_counter() - start, 124, out, f"timed out after {RUN_TIMEOUT_S} s"
    return time.perf_counter() - start, proc.returncode, proc.stdout, proc.stderr


def _direct_env(threads: int, hide_gpu: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
                "ICHAIN_TOLERANCE": repr(float(_manifest().get("tolerance", 0.0)))})
    if hide_gpu:
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _direct(python: str, root: Path, name: str, epochs: int | None, threads: int, hide_gpu: bool) -> dict[str, Any]:
    """Execute then validate one copy of the task with the bare interpreter."""
    folder = _task_copy(root, name, epochs)
    env = _direct_env(threads, hide_gpu)
    execute_s, execute_exit, out, err = _direct_mode(python, folder, "0", env)
    run: dict[str, Any] = {**_parse(out), "execute_s": round(execute_s, 3), "execute_exit": execute_exit}
    if execute_exit != 0:
        return {**run, "error": (err.strip().splitlines() or ["(no stderr)"])[-1][:300]}
    validate_s, validate_exit, out, err = _direct_mode(python, folder, "1", env)
    metrics = _metrics(folder)
    run.update({
        "validate_s": round(validate_s, 3), "validate_exit": validate_exit, "accepted": validate_exit == 0,
        "validator_line": _verdict_line(out), "accuracy": metrics.get("accuracy"),
        "train_seconds": metrics.get("train_seconds"),
    })
    if not hide_gpu and run["device"] == "cuda":
        # A validator without a GPU judges the GPU's weights: the tolerance must cover the difference.
        cpu_env = _direct_env(threads, hide_gpu=True)
        _s, cross_exit, out, _err = _direct_mode(python, folder, "1", cpu_env)
        run.update({"validate_on_cpu_exit": cross_exit, "validate_on_cpu_line": _verdict_line(out)})
    return run


# -- sandbox: the provider's path -------------------------------------------------------------------


def _sandbox_box() -> tuple[Any, bool] | None:
    """A Sandbox offering the task's image and whether it passes GPUs (None: no ichain, Docker or image)."""
    sys.path.insert(0, str(ROOT))
    try:
        from ichain.sandbox import Sandbox, docker_client
    except Exception:  # ichain or its dependencies not installed (a bare GPU machine): direct mode
        return None
    try:
        client = docker_client()
        client.images.get(IMAGE)
    except Exception:  # engine down or image missing: the direct mode is what remains
        return None
    box = Sandbox(client=client, allowed_images=(IMAGE,), labels={"ichain.bench": "gpu"})
    return box, box.gpu_support()


def _sandboxed(box: Any, root: Path, name: str, epochs: int | None, gpus: int) -> dict[str, Any]:
    folder = _task_copy(root, name, epochs, gpus)
    out = root / f"{name}-out"
    start = time.perf_counter()
    execute = box.execute(folder, out)
    execute_s = time.perf_counter() - start
    run: dict[str, Any] = {**_parse(execute.stdout_head), "execute_s": round(execute_s, 3),
                           "execute_exit": execute.exit_code, "execute_container_s": round(execute.wall_time, 3),
                           "execute_peak_memory_mib": (execute.peak_memory or 0) // 2**20 or None}
    if not execute.ok:
        return {**run, "error": execute.error or (execute.stderr_tail.strip().splitlines() or ["?"])[-1][:300]}
    start = time.perf_counter()
    verdict = box.validate(folder, out)
    metrics = _metrics(out)
    run.update({
        "validate_s": round(time.perf_counter() - start, 3), "validate_exit": verdict.exit_code,
        "accepted": verdict.accepted, "validator_line": _verdict_line(verdict.stdout_tail),
        "accuracy": metrics.get("accuracy"), "train_seconds": metrics.get("train_seconds"),
    })
    return run


# -- report -----------------------------------------------------------------------------------------


def _speedup(gpu: dict[str, Any] | None, cpu: dict[str, Any]) -> dict[str, float] | None:
    if not gpu or gpu.get("device") != "cuda" or not gpu.get("accepted") or not cpu.get("accepted"):
        return None
    ratios = {"execute_wall": round(cpu["execute_s"] / gpu["execute_s"], 3)}
    if gpu.get("train_seconds") and cpu.get("train_seconds"):
        ratios["training"] = round(cpu["train_seconds"] / gpu["train_seconds"], 3)
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description="Time examples/mnist-cnn on the GPU and on the CPU.")
    parser.add_argument("--epochs", type=int, help="epochs to train (default: the task's config.json)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"result file (default {RESULTS.relative_to(ROOT)})")
    parser.add_argument("--mode", choices=("auto", "sandbox", "direct"), default="auto")
    parser.add_argument("--python", help="direct mode: the interpreter with PyTorch (default: this one, then python3)")
    args = parser.parse_args()
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be at least 1")
    threads = max(1, int(_manifest().get("cpus", 1)))
    epochs = args.epochs or json.loads((TASK / "config.json").read_text())["epochs"]
    gpu_info = _gpu_from_nvidia_smi()
    report: dict[str, Any] = {
        "task": TASK.relative_to(ROOT).as_posix(), "epochs": epochs, "threads": threads,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    notes: list[str] = []
    boxed = _sandbox_box() if args.mode in ("auto", "sandbox") else None
    if args.mode == "sandbox" and boxed is None:
        raise SystemExit(f"bench_gpu: sandbox mode needs ichain, a running Docker engine and the {IMAGE} image")
    mode = "sandbox" if boxed is not None and (args.mode == "sandbox" or boxed[1]) else "direct"
    with tempfile.TemporaryDirectory(prefix="ichain-bench-gpu-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)
        gpu_run: dict[str, Any] | None = None
        if mode == "sandbox":
            assert boxed is not None
            box, gpu_support = boxed
            report["machine"]["runtime"] = box.runtime
            if gpu_support:
                gpu_run = _sandboxed(box, root, "gpu", args.epochs, gpus=1)
            else:
                notes.append("the Docker engine cannot pass GPUs here: only the CPU half ran")
            cpu_run = _sandboxed(box, root, "cpu", args.epochs, gpus=0)
            report["torch"] = {"version": cpu_run.get("torch"), "image": IMAGE}
        else:
            python, probe = _torch_python(args.python)
            report["machine"]["python"] = python
            report["torch"] = {k: probe[k] for k in ("version", "cuda", "cuda_available")}
            if gpu_info is None and probe["gpus"]:
                gpu_info = {**probe["gpus"][0], "count": len(probe["gpus"]), "source": "torch"}
            if probe["cuda_available"]:
                gpu_run = _direct(python, root, "gpu", args.epochs, threads, hide_gpu=False)
            elif gpu_info is not None:
                notes.append(f"a GPU is present but PyTorch {probe['version']} has no CUDA: only the CPU half ran")
            else:
                notes.append("no GPU on this machine: only the CPU half ran")
            cpu_run = _direct(python, root, "cpu", args.epochs, threads, hide_gpu=True)
    if gpu_run is not None and gpu_run.get("device") != "cuda":
        notes.append(f"the GPU run trained on {gpu_run.get('device')}: its PyTorch does not see the GPU"
                     + (f" ({IMAGE} carries Debian's CPU-only build; --mode direct with a CUDA build of PyTorch"
                        " measures the GPU)" if mode == "sandbox" else ""))
    report.update({"mode": mode, "gpu": gpu_info, "runs": {"gpu": gpu_run, "cpu": cpu_run},
                   "speedup": _speedup(gpu_run, cpu_run), "note": "; ".join(notes) or None})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    part = args.out.with_name(args.out.name + ".part")
    part.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(part, args.out)
    runs = [(label, run) for label, run in (("gpu", gpu_run), ("cpu", cpu_run)) if run is not None]
    summary = "; ".join(
        f"{label}: {run.get('device')} execute {run['execute_s']:.1f} s, validate {run.get('validate_s', 0):.1f} s, "
        f"{'accepted' if run.get('accepted') else 'NOT accepted'}" for label, run in runs
    )
    speedup = report["speedup"]
    print(f"{mode}: {summary}" + (f"; speed-up x{speedup['execute_wall']:.2f}" if speedup else "")
          + (f" ({report['note']})" if report["note"] else "") + f" -> {args.out}")
    if not all(run.get("accepted") for _label, run in runs):
        sys.exit(1)


if __name__ == "__main__":
    main()
