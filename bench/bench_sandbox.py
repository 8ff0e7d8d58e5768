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
Also recorded: the image's size and the time of ``build_image`` when the image is already up to date.
Run: ``.venv/bin/python bench/bench_sandbox.py [--quick]``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def main() -> None:
    from ichain.sandbox import Sandbox, build_image, docker_client, image_status

    quick = "--quick" in sys.argv
    client = docker_client()
    if not image_status(client).present:
        raise SystemExit("bench: runtime image missing — run 'ape ichain sandbox build'")
    box = Sandbox(client=client, labels={"ichain.bench": "sandbox"})
    python = _bare_python()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ichain-bench-") as tmp:
        root = Path(tmp)
        trivial = _task(root, "trivial", "print('hello')\n")
        box.execute(trivial, root / "warm-up")  # first start pays for page-cache misses
        shutil.rmtree(root / "warm-up", ignore_errors=True)
        trivial_cmp = _compare(box, python, trivial, root, 5 if quick else TRIVIAL_RUNS)
        trivial_cmp["added_s"] = round(trivial_cmp["sandbox_median_s"] - trivial_cmp["bare_median_s"], 4)
        trivial_cmp["added_min_s"] = round(trivial_cmp["sandbox_min_s"] - trivial_cmp["bare_min_s"], 4)
        trivial_cmp["goal_added_s"] = TRIVIAL_GOAL_S
        trivial_cmp["meets_goal"] = trivial_cmp["added_s"] <= TRIVIAL_GOAL_S

        seconds = 2.0 if quick else CPU_SECONDS
        n = int(_calibrate(python, root) * seconds / CPU_SECONDS)
        cpu = _task(root, "cpu", CPU_TASK.format(n=n))
        cpu_cmp = _compare(box, python, cpu, root, 2 if quick else CPU_RUNS)
        cpu_cmp["loop_count"] = n
        cpu_cmp["ratio"] = round(cpu_cmp["sandbox_median_s"] / cpu_cmp["bare_median_s"], 4)
        cpu_cmp["ratio_min"] = round(cpu_cmp["sandbox_min_s"] / cpu_cmp["bare_min_s"], 4)
        cpu_cmp["goal_ratio"] = CPU_GOAL_RATIO
        cpu_cmp["meets_goal"] = cpu_cmp["ratio"] <= CPU_GOAL_RATIO

    start = time.perf_counter()
    status = build_image(client)  # up to date: only inspects
    noop_build = time.perf_counter() - start
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
        "trivial_task": trivial_cmp,
        "cpu_task": cpu_cmp,
        "image": {"size_bytes": status.size, "noop_build_s": round(noop_build, 3), "rebuilt": status.built},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    part = RESULTS.with_name(RESULTS.name + ".part")
    part.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(part, RESULTS)
    print(
        f"trivial: +{trivial_cmp['added_s']:.3f} s median, +{trivial_cmp['added_min_s']:.3f} s best "
        f"(goal <= {TRIVIAL_GOAL_S}); cpu: x{cpu_cmp['ratio']:.3f} median, x{cpu_cmp['ratio_min']:.3f} best "
        f"(goal <= {CPU_GOAL_RATIO}), CPU-time x{cpu_cmp.get('cpu_time_ratio', float('nan')):.3f}; "
        f"image {status.size / 1e6:.0f} MB; "
        f"no-op build {noop_build:.2f} s -> {RESULTS.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
