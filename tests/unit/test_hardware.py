"""The offer document, task needs against offers, and measuring this machine (cgroup v1 and v2 trees)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ichain.hardware import (
    GPU, GiB, MAX_OFFER_BYTES, MiB, Needs, Offer, OfferError, detect_machine, parse_nvidia_smi, shortfalls,
)

H200 = GPU("NVIDIA H200", 143771 * MiB)
CPU_OFFER = Offer(runtimes=("ichain-runtime", "ichain-torch"), cpus=2.0, memory=24 * GiB, max_cpus=2.0,
                  max_memory=8 * GiB, max_time_limit=3600)
GPU_OFFER = Offer(runtimes=("ichain-torch",), cpus=16.0, memory=128 * GiB, gpus=(H200,), max_cpus=16.0,
                  max_memory=64 * GiB, max_gpus=1, max_time_limit=7200)


def test_offer__encode_decode__round_trips_canonically():
    for offer in (CPU_OFFER, GPU_OFFER):
        doc = offer.encode()
        assert Offer.decode(doc) == offer
        assert doc == json.dumps(json.loads(doc), sort_keys=True, separators=(",", ":")).encode()


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.pop("cpus"), "fields"),
    (lambda d: d.update(extra=1), "fields"),
    (lambda d: d.update(v=2), "version"),
    (lambda d: d.update(memory=-1), "memory"),
    (lambda d: d.update(memory=True), "memory"),
    (lambda d: d.update(cpus="2"), "cpus"),
    (lambda d: d.update(runtimes=["Bad Name"]), "runtimes"),
    (lambda d: d.update(gpus=[{"model": "\x1b[31mfake", "memory": 1}]), "model"),
    (lambda d: d.update(gpus=[{"model": "x"}]), "model and memory"),
    (lambda d: d.update(max_gpus=17), "max_gpus"),
])
def test_offer_decode__malformed__one_line_error(mutate, field):
    data = CPU_OFFER.to_json()
    mutate(data)
    with pytest.raises(OfferError, match=field) as info:
        Offer.decode(json.dumps(data).encode())
    assert "\n" not in str(info.value)


def test_offer_decode__not_json_or_too_long__refused():
    with pytest.raises(OfferError, match="not JSON"):
        Offer.decode(b"\xff\xfe")
    with pytest.raises(OfferError, match="longer"):
        Offer.decode(b" " * (MAX_OFFER_BYTES + 1))


def test_offer_encode__too_many_runtimes__refused():
    big = Offer(runtimes=tuple(f"runtime-{i:03d}-{'x' * 50}" for i in range(40)), cpus=1, memory=1)
    with pytest.raises(OfferError, match="over the market"):
        big.encode()


def test_shortfalls__task_within_offer__none():
    assert shortfalls(CPU_OFFER, Needs(image="ichain-torch", cpus=2, memory=2 * GiB, time_limit=600)) == []
    assert shortfalls(GPU_OFFER, Needs(image="ichain-torch", gpus=1, gpu_memory=80 * GiB)) == []


def test_shortfalls__each_missing_thing__named():
    needs = Needs(image="ichain-jax", cpus=4, memory=64 * GiB, gpus=1, time_limit=7200)
    lines = shortfalls(CPU_OFFER, needs)
    assert lines == [
        "needs runtime ichain-jax (has ichain-runtime, ichain-torch)",
        "needs 4 cpus (gives at most 2)",
        "needs 64 GiB memory (gives at most 8 GiB)",
        "needs 7200 s per run (accepts at most 3600 s)",
        "needs 1 GPU(s) (has none it can pass to a task)",
    ]


def test_shortfalls__gpu_memory_and_count__checked():
    assert shortfalls(GPU_OFFER, Needs(image="ichain-torch", gpus=1, gpu_memory=200 * GiB)) == [
        "needs 1 GPU(s) with 200 GiB (has 0: 1x NVIDIA H200 (140.4 GiB))"]
    assert shortfalls(GPU_OFFER, Needs(image="ichain-torch", gpus=2)) == ["needs 2 GPU(s) (gives at most 1)"]
    # GPUs the engine cannot pass to a container are not offered
    no_pass = Offer(runtimes=("ichain-torch",), cpus=1, memory=GiB, gpus=(H200,), max_gpus=0)
    assert shortfalls(no_pass, Needs(image="ichain-torch", memory=GiB // 2, gpus=1)) == [
        "needs 1 GPU(s) (has none it can pass to a task)"]


def test_parse_nvidia_smi__two_gpus():
    out = "NVIDIA H200, 143771\nNVIDIA GeForce RTX 4090, 24564\n\ngarbage\n"
    assert parse_nvidia_smi(out) == (H200, GPU("NVIDIA GeForce RTX 4090", 24564 * MiB))


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _meminfo(proc: Path, total_kb: int, cgroup: str) -> None:
    _tree(proc, {"meminfo": f"MemTotal:       {total_kb} kB\nMemFree: 1 kB\n", "self/cgroup": cgroup})


def test_detect_machine__cgroup_v2_limits__lower_the_hardware(tmp_path):
    proc, root = tmp_path / "proc", tmp_path / "cg"
    _meminfo(proc, 64 * 1024 * 1024, "0::/system.slice/ichain.service\n")
    _tree(root, {"cgroup.controllers": "cpu memory\n",
                 "system.slice/ichain.service/cpu.max": "50000 100000\n",
                 "system.slice/ichain.service/memory.max": f"{3 * GiB}\n",
                 "system.slice/memory.max": "max\n"})
    machine = detect_machine(root, proc)
    assert machine.cpus == min(0.5, len(os.sched_getaffinity(0)))
    assert machine.memory == 3 * GiB


def test_detect_machine__cgroup_v1_parent_limit__counts(tmp_path):
    proc, root = tmp_path / "proc", tmp_path / "cg"
    _meminfo(proc, 2 * 1024 * 1024, "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n")
    _tree(root, {"memory/docker/abc/memory.limit_in_bytes": "9223372036854771712\n",
                 "memory/docker/memory.limit_in_bytes": f"{GiB}\n",
                 "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "-1\n",
                 "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"})
    machine = detect_machine(root, proc)
    assert machine.memory == GiB  # the parent's limit binds, the child's "unlimited" does not
    assert machine.cpus == float(len(os.sched_getaffinity(0)))  # no quota: the affinity mask


def test_detect_machine__this_machine__matches_the_kernel():
    machine = detect_machine()
    assert 0 < machine.cpus <= float(len(os.sched_getaffinity(0)))
    total = int(next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")).split()[1])
    assert 0 < machine.memory <= total * 1024
