"""Sandbox overhead benchmark -> bench/results/sandbox.json.

Compares, in the same run and interleaved (bare, sandbox, bare, sandbox...) so machine load hits both:

- a trivial task (``print``): the wall time of a whole ``Sandbox.execute`` call (load the task, create,
  start, wait, collect, remove the container) against ``python3 task.py 0`` run bare on the host.
  Goal: at most 0.35 s added (median of repeated runs).
- a ~10 s CPU-bound task (a pure-Python loop calibrated on this machine): same comparison. Goal: the
  sandbox run within 5 % of the bare run (ratio of medians). The task also reports the CPU time it used
  (``os.times``), so the CPU-time ratio shows the sandbox's own cost apart from scheduling: on a shared
  machine all containers share one cgroup weight against host processes, which stretches wall time.

The bare runs use the host's Debian python3 (the same build the runtime image carries) when present.
Also recorded: the image's size and the time of ``build_image`` when the image is already up to date, and
per runtime of the catalog its image's size and the time of a real build (into a throwaway image name, so
the images tasks use are untouched; the throwaway image is removed after).

Each part is a section (``SECTIONS``: a name and a function returning the report keys it owns); a new
measurement is one more entry there. ``--only NAME[,NAME...]`` runs just those sections and keeps every
other key of the results file as it was (its ``machine`` entry included).
Run: ``.venv/bin/python bench/bench_sandbox.py [--quick] [--only trivial,cpu,image]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "sandbox.json"
TRIVIAL_RUNS = 9
CPU_RUNS = 5
CPU_SECONDS = 10.0
TRIVIAL_GOAL_S = 0.35
CPU_GOAL_RATIO = 1.05

CPU_TASK = """import os
n = {n}
total = 0
for i in range(n):
    total += i * i % 7
times = os.times()
print(total)
print("CPU", times.user + times.system)
"""


def _bare_python() -> str:
    return "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def _task(root: Path, name: str, source: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "task.py").write_text(source)
    (folder / "ichain.json").write_text('{"time_limit": 120, "memory": "256m", "cpus": 1}')
    folder.chmod(0o755)
    return folder


def _cpu_seconds(stdout: str) -> float | None:
    """The CPU time (user+system) the task reports for itself on its last line, if it does."""
    lines = stdout.strip().splitlines()
    if lines and lines[-1].startswith("CPU "):
        return float(lines[-1].split()[1])
    return None


def _bare(python: str, folder: Path, scratch: Path) -> tuple[float, float | None]:
    scratch.mkdir()
    start = time.perf_counter()
    proc = subprocess.run(
        [python, str(folder / "task.py"), "0"], cwd=scratch, check=True, stdout=subprocess.PIPE, text=True
    )
    elapsed = time.perf_counter() - start
    shutil.rmtree(scratch)
    return elapsed, _cpu_seconds(proc.stdout)


def _sandboxed(box, folder: Path, out: Path) -> tuple[float, float, float | None]:
    start = time.perf_counter()
    result = box.execute(folder, out)
    elapsed = time.perf_counter() - start
    if not result.ok:
        raise SystemExit(f"bench: sandbox run failed: {result.error or result.stderr_tail[-200:]}")
    shutil.rmtree(out)
    return elapsed, result.wall_time, _cpu_seconds(result.stdout_tail)


def _calibrate(python: str, root: Path) -> int:
    """Loop count that takes about CPU_SECONDS bare on this machine."""
    n = 2_000_000
    probe = _task(root, "probe", CPU_TASK.format(n=n))
    took = min(_bare(python, probe, root / f"probe-{i}")[0] for i in range(2))
    return int(n * CPU_SECONDS / max(took, 1e-3))


def _compare(box, python: str, folder: Path, root: Path, runs: int) -> dict:
    bare, boxed, inside, bare_cpu, boxed_cpu = [], [], [], [], []
    for i in range(runs):
        elapsed, cpu = _bare(python, folder, root / f"bare-{folder.name}-{i}")
        bare.append(elapsed)
        total, wall, cpu_inside = _sandboxed(box, folder, root / f"out-{folder.name}-{i}")
        boxed.append(total)
        inside.append(wall)
        if cpu is not None and cpu_inside is not None:
            bare_cpu.append(cpu)
            boxed_cpu.append(cpu_inside)
    cpu_time = {}
    if bare_cpu:
        # CPU seconds the script itself used: insensitive to how much of the machine others take.
        cpu_time = {
            "bare_cpu_median_s": round(statistics.median(bare_cpu), 4),
            "sandbox_cpu_median_s": round(statistics.median(boxed_cpu), 4),
            "cpu_time_ratio": round(statistics.median(boxed_cpu) / statistics.median(bare_cpu), 4),
        }
    return {
        **cpu_time,
        "runs": runs,
        "bare_median_s": round(statistics.median(bare), 4),
        "sandbox_median_s": round(statistics.median(boxed), 4),
        # Best-of-N is the figure least disturbed by other work on a shared machine.
        "bare_min_s": round(min(bare), 4),
        "sandbox_min_s": round(min(boxed), 4),
        "sandbox_container_median_s": round(statistics.median(inside), 4),
        "bare_s": [round(x, 4) for x in bare],
        "sandbox_s": [round(x, 4) for x in boxed],
    }


@dataclass
class Bench:
    """What every section gets: the engine, the provider's sandbox, the bare python, a scratch folder."""

    client: Any
    box: Any
    python: str
    root: Path
    quick: bool


def bench_trivial(bench: Bench) -> dict:
    """A ``print`` task: the whole ``Sandbox.execute`` call against the bare run."""
    trivial = _task(bench.root, "trivial", "print('hello')\n")
    bench.box.execute(trivial, bench.root / "warm-up")  # first start pays for page-cache misses
    shutil.rmtree(bench.root / "warm-up", ignore_errors=True)
    cmp = _compare(bench.box, bench.python, trivial, bench.root, 5 if bench.quick else TRIVIAL_RUNS)
    cmp["added_s"] = round(cmp["sandbox_median_s"] - cmp["bare_median_s"], 4)
    cmp["added_min_s"] = round(cmp["sandbox_min_s"] - cmp["bare_min_s"], 4)
    cmp["goal_added_s"] = TRIVIAL_GOAL_S
    cmp["meets_goal"] = cmp["added_s"] <= TRIVIAL_GOAL_S
    print(f"trivial: +{cmp['added_s']:.3f} s median, +{cmp['added_min_s']:.3f} s best (goal <= {TRIVIAL_GOAL_S})")
    return {"trivial_task": cmp}


def bench_cpu(bench: Bench) -> dict:
    """A calibrated CPU-bound loop: wall-time and CPU-time ratios of the sandbox run to the bare run."""
    seconds = 2.0 if bench.quick else CPU_SECONDS
    n = int(_calibrate(bench.python, bench.root) * seconds / CPU_SECONDS)
    cpu = _task(bench.root, "cpu", CPU_TASK.format(n=n))
    cmp = _compare(bench.box, bench.python, cpu, bench.root, 2 if bench.quick else CPU_RUNS)
    cmp["loop_count"] = n
    cmp["ratio"] = round(cmp["sandbox_median_s"] / cmp["bare_median_s"], 4)
    cmp["ratio_min"] = round(cmp["sandbox_min_s"] / cmp["bare_min_s"], 4)
    cmp["goal_ratio"] = CPU_GOAL_RATIO
    cmp["meets_goal"] = cmp["ratio"] <= CPU_GOAL_RATIO
    print(f"cpu: x{cmp['ratio']:.3f} median, x{cmp['ratio_min']:.3f} best (goal <= {CPU_GOAL_RATIO}), "
          f"CPU-time x{cmp.get('cpu_time_ratio', float('nan')):.3f}")
    return {"cpu_task": cmp}


def bench_images(bench: Bench) -> dict:
    """``image``: ichain-runtime's size and a no-op build; ``images``: each runtime's size and real build time.

    The real builds go to a throwaway name (``ichain-bench-NAME``), removed after; ``--quick`` skips them
    (``build_s`` is then null).
    """
    from ichain.sandbox import build_image, image_status, runtime_names

    start = time.perf_counter()
    status = build_image(bench.client)  # up to date: only inspects
    noop_build = time.perf_counter() - start
    images: dict[str, dict] = {}
    for name in runtime_names():
        entry: dict[str, Any] = {"size_bytes": image_status(bench.client, name).size, "build_s": None}
        if not bench.quick:
            throwaway = f"ichain-bench-{name}"
            try:
                built = build_image(bench.client, throwaway, runtime=name, force=True)
                entry.update(build_s=round(built.seconds, 1), built_size_bytes=built.size)
            finally:
                with contextlib.suppress(Exception):
                    bench.client.images.remove(throwaway)
        images[name] = entry
        built_text = "" if entry["build_s"] is None else f", built in {entry['build_s']:.0f} s"
        print(f"image {name}: {entry['size_bytes'] / 1e6:.0f} MB{built_text}")
    print(f"no-op build {noop_build:.2f} s")
    return {
        "image": {"size_bytes": status.size, "noop_build_s": round(noop_build, 3), "rebuilt": status.built},
        "images": images,
    }


def bench_mnist(bench: Bench, runs: int = 5, goal_ratio: float = 1.05, epochs: int = 12) -> dict:
    """``mnist_task``: examples/mnist-cnn's execute in the sandbox (its image, its manifest's CPUs) against bare.

    The example trains 3 epochs (~1.5 s), so the container's fixed start and clean-up (``trivial_task``'s
    ``added_s``) would dominate the ratio; a copy trained ``epochs`` epochs makes it measure what the sandbox
    does to the training itself, and ``epochs`` is in the JSON.

    The bare run is the host's python3 with the same Debian PyTorch, in a copy of the task folder, with
    the environment the sandbox gives the script (thread counts included) and no other variable: a host's
    ``OPENBLAS_*`` settings would select other kernels and make it a different computation. The weights of
    both runs are compared: the same bytes show the container changed nothing but the time.
    """
    import hashlib

    from ichain.sandbox import Sandbox, image_status, load_task

    task = bench.root / "mnist-cnn"
    shutil.copytree(ROOT / "examples" / "mnist-cnn", task)
    config = json.loads((task / "config.json").read_text())
    (task / "config.json").write_text(json.dumps({**config, "epochs": epochs}))
    spec = load_task(task)
    probe = subprocess.run([bench.python, "-c", "import torch"], capture_output=True)
    if not image_status(bench.client, spec.image).present or probe.returncode != 0:
        print(f"mnist: skipped (needs the {spec.image} image and PyTorch in {bench.python})")
        return {"mnist_task": {"skipped": f"needs the {spec.image} image and PyTorch in {bench.python}"}}
    box = Sandbox(client=bench.client, allowed_images=(spec.image,), labels=bench.box.labels)
    threads = str(max(1, int(box.limits_for(spec)["cpus"])))
    env = {"HOME": str(bench.root), "ICHAIN_MODE": "0", "ICHAIN_TOLERANCE": repr(spec.tolerance),
           "ICHAIN_TASK_DIR": str(task), "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads,
           "MPLCONFIGDIR": str(bench.root), "PATH": "/usr/bin:/bin"}
    runs = 2 if bench.quick else runs
    bare: list[float] = []
    boxed: list[float] = []
    digests: set[str] = set()
    peaks: list[int] = []
    for i in range(runs + 1):  # the first pair warms the page cache (torch's libraries): not counted
        scratch = bench.root / f"bare-{i}"
        shutil.copytree(task, scratch)
        start = time.perf_counter()
        subprocess.run([bench.python, "task.py", "0"], cwd=scratch, env=env, check=True, stdout=subprocess.DEVNULL)
        bare_s = time.perf_counter() - start
        digests.add(hashlib.sha256((scratch / "model.pt").read_bytes()).hexdigest())
        out = bench.root / f"out-{i}"
        start = time.perf_counter()
        result = box.execute(task, out)
        sandbox_s = time.perf_counter() - start
        if not result.ok:
            raise SystemExit(f"bench: mnist sandbox run failed: {result.error or result.stderr_tail[-200:]}")
        digests.add(hashlib.sha256((out / "model.pt").read_bytes()).hexdigest())
        if i:
            bare.append(bare_s)
            boxed.append(sandbox_s)
            peaks.append(result.peak_memory or 0)
        shutil.rmtree(scratch)
        shutil.rmtree(out)
    ratio = statistics.median(boxed) / statistics.median(bare)
    cmp = {
        "cpus": float(threads), "image": spec.image, "runs": runs, "epochs": epochs,
        "bare_median_s": round(statistics.median(bare), 4), "sandbox_median_s": round(statistics.median(boxed), 4),
        "ratio": round(ratio, 4), "goal_ratio": goal_ratio, "meets_goal": ratio <= goal_ratio,
        "same_weights": len(digests) == 1, "sandbox_peak_memory_mib": round(max(peaks) / 2**20, 1),
        "bare_s": [round(x, 4) for x in bare], "sandbox_s": [round(x, 4) for x in boxed],
    }
    print(f"mnist: bare {cmp['bare_median_s']:.2f} s, sandbox {cmp['sandbox_median_s']:.2f} s, x{ratio:.3f} "
          f"(goal <= {goal_ratio}), same weights: {cmp['same_weights']}")
    return {"mnist_task": cmp}


# Name -> function returning the report keys it owns, run in this order.
SECTIONS: dict[str, Callable[[Bench], dict]] = {
    "trivial": bench_trivial, "cpu": bench_cpu, "image": bench_images, "mnist": bench_mnist,
}


def main() -> None:
    from ichain.sandbox import Sandbox, docker_client, image_status

    quick = "--quick" in sys.argv
    only = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv[:-1] else list(SECTIONS)
    unknown = [name for name in only if name not in SECTIONS]
    if unknown:
        raise SystemExit(f"bench: unknown section {unknown[0]!r} (known: {', '.join(SECTIONS)})")
    client = docker_client()
    if not image_status(client).present:
        raise SystemExit("bench: runtime image missing — run 'ape ichain sandbox build'")
    box = Sandbox(client=client, labels={"ichain.bench": "sandbox"})
    python = _bare_python()
    load_before = os.getloadavg()[0]
    partial = only != list(SECTIONS)
    report: dict[str, Any] = json.loads(RESULTS.read_text()) if partial and RESULTS.exists() else {}
    with tempfile.TemporaryDirectory(prefix="ichain-bench-") as tmp:
        for name in only:
            section_root = Path(tmp) / name
            section_root.mkdir()
            report.update(SECTIONS[name](Bench(client, box, python, section_root, quick)))
    if not partial:
        report = {
            # The machine is shared: a high load average inflates both the start latency of containers and,
            # because all containers share one cgroup weight against host processes, the CPU ratio.
            "machine": {
                "cpus": os.cpu_count(),
                "load_average_before": round(load_before, 2),
                "load_average_after": round(os.getloadavg()[0], 2),
                "bare_python": python,
                "runtime": box.runtime,
                "quick": quick,
            },
            **report,
        }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    part = RESULTS.with_name(RESULTS.name + ".part")
    part.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(part, RESULTS)
    print(f"-> {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
