"""The runtime catalog on the real Docker engine: ichain-torch runs tasks, what a provider offers, GPU tasks."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import docker
import pytest

from ichain.sandbox import CATALOG, Sandbox, SandboxError, load_task, runtime_names
from ichain.sandbox.engine import RECIPE_LABEL
from ichain.sandbox.image import recipe_hash

pytestmark = [pytest.mark.docker]

SESSION = uuid.uuid4().hex  # labels this module's containers: other runs and users share the Docker engine
NO_GPU = "no NVIDIA container runtime on this Docker engine"
GPU_REFUSAL = "the task asks for {n} GPU(s) and this Docker engine cannot pass GPUs (no NVIDIA container runtime)"

# Trains a one-feature linear model with SGD (seeded) and writes the fit; validate mode re-checks it.
TORCH_TASK = """\
import json, sys
import pandas, torch
if sys.argv[1] == "0":
    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 64).unsqueeze(1)
    y = 3 * x + 0.5
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
    frame = pandas.DataFrame({"w": [model.weight.item()], "b": [model.bias.item()], "loss": [loss.item()]})
    frame.to_json("fit.json", orient="records")
else:
    fit = json.load(open("fit.json"))[0]
    sys.exit(0 if abs(fit["w"] - 3) < 1e-3 and abs(fit["b"] - 0.5) < 1e-3 else 1)
"""


def make_task(root: Path, files: dict[str, str], name: str = "task") -> Path:
    """A task folder readable by the sandbox user, from {relative path: text}."""
    folder = root / name
    folder.mkdir()
    for rel, content in files.items():
        (folder / rel).write_text(content)
    folder.chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def sandbox(engine) -> Sandbox:
    """A provider's sandbox whose containers carry this module's session label."""
    return Sandbox(client=engine, labels={"ichain.test": SESSION})


@pytest.fixture(scope="module", autouse=True)
def no_leftovers(engine):
    """After the module: not one container of this session is left, running or stopped."""
    yield
    assert engine.containers.list(all=True, filters={"label": f"ichain.test={SESSION}"}) == []


@pytest.fixture
def created(engine, monkeypatch) -> list[dict]:
    """Every create_container call made on the session's engine during the test (the real call still runs)."""
    calls: list[dict] = []
    real = engine.api.create_container

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.api, "create_container", spy)
    return calls


# -- the catalog and its images --------------------------------------------------------------------------


def test_catalog__names__ichain_runtime_then_ichain_torch_holding_all_of_it():
    assert runtime_names() == ("ichain-runtime", "ichain-torch")
    base, torch = CATALOG["ichain-runtime"], CATALOG["ichain-torch"]
    assert set(base.packages) < set(torch.packages)
    assert {"python3-torch", "python3-torchvision", "python3-pandas"} <= set(torch.packages)
    assert set(base.placeholders) <= set(torch.placeholders)
    assert recipe_hash("ichain-runtime") != recipe_hash("ichain-torch")


def test_image__torch_label__matches_current_recipe(engine):
    image = engine.images.get("ichain-torch")
    assert image.labels[RECIPE_LABEL] == recipe_hash("ichain-torch")
    assert image.attrs["Config"]["User"] == "65534:65534"
    assert image.attrs["Size"] < 1200 * 1000 * 1000


def test_image__torch__what_no_task_uses_is_left_out(sandbox, tmp_path):
    """The placeholders keep Mesa/LLVM, the full perl, libtorch's C++ tests and data sets out; torch still imports."""
    check = """\
import glob, os, sys
import torch
present = [p for p in ["/usr/lib/libtorch-test", "/usr/share/perl", "/usr/share/iso-codes", "/usr/share/proj",
                       "/usr/share/X11/xkb"] if os.path.exists(p)]
present += glob.glob("/usr/lib/x86_64-linux-gnu/libLLVM*") + glob.glob("/usr/lib/x86_64-linux-gnu/dri/*")
present += glob.glob("/usr/lib/x86_64-linux-gnu/libperl.so*")
tests = [p for p in glob.glob("/usr/lib/python3/dist-packages/torch/bin/*") if "torch_shm_manager" not in p]
print("present:", present + tests)
sys.exit(1 if present + tests else 0)
"""
    run = sandbox.execute(make_task(tmp_path, {"task.py": check, "ichain.json": '{"image": "ichain-torch"}'}),
                          tmp_path / "out")
    assert run.ok, (run.error, run.stdout_tail, run.stderr_tail[-500:])
    assert run.stdout_tail.strip() == "present: []"


def test_self_test__torch_runtime__imports_and_computes(sandbox):
    run = sandbox.self_test("ichain-torch")
    assert run.ok, (run.error, run.stderr_tail[-500:])
    assert run.files == ["ok"]


def test_execute__torch_task__trains_and_its_validate_mode_accepts(sandbox, tmp_path):
    folder = make_task(tmp_path, {"task.py": TORCH_TASK, "ichain.json": '{"image": "ichain-torch", "time_limit": 120}'})
    run = sandbox.execute(folder, tmp_path / "out")
    assert run.ok, (run.error, run.stderr_tail[-500:])
    assert run.files == ["fit.json"]
    fit = json.loads((tmp_path / "out" / "fit.json").read_text())[0]
    assert fit["loss"] < 1e-6
    assert sandbox.validate(folder, tmp_path / "out").accepted


def test_validate__torch_task_tampered_fit__rejected(sandbox, tmp_path):
    """The cheating version beside the honest one: a fit claiming another weight is rejected."""
    folder = make_task(tmp_path, {"task.py": TORCH_TASK, "ichain.json": '{"image": "ichain-torch", "time_limit": 120}'})
    forged = tmp_path / "forged"
    forged.mkdir()
    (forged / "fit.json").write_text('[{"w": 3.01, "b": 0.5, "loss": 0.0}]')
    check = sandbox.validate(folder, forged)
    assert not check.accepted and check.exit_code == 1 and check.error == ""


# -- what a provider offers ------------------------------------------------------------------------------


def test_runtimes__both_images_built__both_offered(sandbox):
    assert sandbox.runtimes() == ("ichain-runtime", "ichain-torch")


def test_runtimes__image_stale_or_missing_or_not_allowed__not_offered(engine, tmp_path):
    stale = f"ichain-stale-{SESSION[:12]}"
    (tmp_path / "Dockerfile").write_text(f"FROM ichain-runtime\nLABEL {RECIPE_LABEL}=0123456789abcdef\n")
    engine.images.build(path=str(tmp_path), tag=stale, rm=True, forcerm=True)
    try:
        assert Sandbox(client=engine, image_names={"ichain-torch": stale}).runtimes() == ("ichain-runtime",)
    finally:
        engine.images.remove(stale, force=True)
    absent = f"ichain-absent-{SESSION[:12]}"
    assert Sandbox(client=engine, image_names={"ichain-torch": absent}).runtimes() == ("ichain-runtime",)
    assert Sandbox(client=engine, allowed_images=()).runtimes() == ("ichain-runtime",)
    assert Sandbox("ichain-torch", client=engine, allowed_images=()).runtimes() == ("ichain-torch",)


@pytest.mark.parametrize("kwargs", [{"image": "ichain-tensorflow"}, {"allowed_images": ("ichain-tensorflow",)}])
def test_sandbox__unknown_runtime__one_line_error(engine, kwargs):
    with pytest.raises(SandboxError) as info:
        Sandbox(client=engine, **kwargs)
    assert str(info.value) == "unknown runtime 'ichain-tensorflow' (known: ichain-runtime, ichain-torch)"


def test_execute__runtime_not_offered__refused_not_a_sandbox_fault(engine, tmp_path, created):
    box = Sandbox(client=engine, allowed_images=(), labels={"ichain.test": SESSION})
    run = box.execute(make_task(tmp_path, {"task.py": "print(1)\n", "ichain.json": '{"image": "ichain-torch"}'}),
                      tmp_path / "out")
    assert run.error == "task asks for image 'ichain-torch', this provider runs ichain-runtime"
    assert run.sandbox_fault is False and run.exit_code is None
    assert created == []


# -- GPUs -------------------------------------------------------------------------------------------------


def test_container_config__gpu_task__the_cpu_config_plus_exactly_one_device_request(sandbox, tmp_path):
    folder = make_task(tmp_path, {"task.py": "print(1)\n", "ichain.json": '{"image": "ichain-torch"}'})
    cpu_spec = load_task(folder)
    (folder / "ichain.json").write_text('{"image": "ichain-torch", "gpus": 2, "gpu_memory": "16g"}')
    gpu_spec = load_task(folder)
    assert (cpu_spec.gpus, gpu_spec.gpus) == (0, 2)
    cpu = sandbox.container_config(cpu_spec, tmp_path, "0", "run-x")
    gpu = sandbox.container_config(gpu_spec, tmp_path, "0", "run-x")
    assert set(gpu) == set(cpu)
    for key in cpu:
        if key != "host_config":
            assert gpu[key] == cpu[key], key
    cpu_host, gpu_host = cpu["host_config"], gpu["host_config"]
    assert "DeviceRequests" not in cpu_host and not cpu_host.get("Devices")
    assert set(gpu_host) == set(cpu_host) | {"DeviceRequests"}
    for key in cpu_host:
        assert gpu_host[key] == cpu_host[key], key
    assert gpu_host["DeviceRequests"] == [
        {"Driver": "", "Count": 2, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}
    ]


def test_execute__gpu_task_on_a_gpu_less_engine__refused_before_any_container(sandbox, tmp_path, created):
    if sandbox.gpu_support():
        pytest.skip("this Docker engine passes GPUs")
    folder = make_task(tmp_path, {"task.py": "print(1)\n", "ichain.json": '{"image": "ichain-torch", "gpus": 1}'})
    result = tmp_path / "result"
    result.mkdir()
    # The validator's side goes through the same check.
    for run in (sandbox.execute(folder, tmp_path / "out"), sandbox.validate(folder, result)):
        assert run.error == GPU_REFUSAL.format(n=1)
        assert run.sandbox_fault is False and run.exit_code is None and not run.ok
    assert created == []
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, refused", [([], True), (["--nvproxy"], False), (["--nvproxy=true"], False)],
                         ids=["without-nvproxy", "nvproxy", "nvproxy-true"])
def test_execute__gpu_task_under_gvisor__refused_unless_runsc_has_nvproxy(tmp_path, monkeypatch, args, refused):
    """The engine's description of itself is replaced (this engine has neither gVisor nor the NVIDIA runtime): the
    decision is the sandbox's own. Refused: no container is created; allowed: the real engine gets the request and
    turns it down (it has no runsc), which is a fault of this machine, not a refusal."""
    client = docker.from_env()
    info = {**client.info(), "Runtimes": {"runc": {"path": "runc"}, "nvidia": {"path": "nvidia-container-runtime"},
                                          "runsc": {"path": "/usr/bin/runsc", "runtimeArgs": args}}}
    monkeypatch.setattr(client, "info", lambda: info)
    calls: list[dict] = []
    real = client.api.create_container
    monkeypatch.setattr(client.api, "create_container", lambda **kw: calls.append(kw) or real(**kw))
    box = Sandbox(client=client, labels={"ichain.test": SESSION})
    assert box.runtime == "runsc" and box.gpu_support()
    run = box.execute(make_task(tmp_path, {"task.py": "print(1)\n", "ichain.json": '{"gpus": 1}'}), tmp_path / "out")
    assert not run.ok and run.exit_code is None
    if refused:
        assert run.error == "the task asks for 1 GPU(s) and gVisor (runsc) runs without --nvproxy here"
        assert run.sandbox_fault is False and calls == []
    else:
        assert run.error.startswith("Docker engine error during the run") and run.sandbox_fault is True
        assert [c["host_config"]["Runtime"] for c in calls] == ["runsc"]
        assert [c["host_config"]["DeviceRequests"][0]["Count"] for c in calls] == [1]


@pytest.fixture
def gpu_sandbox(sandbox) -> Sandbox:
    """The module's sandbox, where the engine passes GPUs (skipped with the reason elsewhere, never faked)."""
    if not sandbox.gpu_support():
        pytest.skip(NO_GPU)
    return sandbox


@pytest.mark.gpu
def test_execute__gpu_task_on_a_gpu_engine__sees_its_gpu_and_stays_hardened(gpu_sandbox, tmp_path):
    probe = """\
import json, os, re
status = open("/proc/self/status").read()
json.dump({"gpus": sorted(d for d in os.listdir("/dev") if re.fullmatch(r"nvidia[0-9]+", d)),
           "uid": os.getuid(), "net": sorted(os.listdir("/sys/class/net")),
           "no_new_privs": re.search(r"NoNewPrivs:\\s*(\\d)", status).group(1),
           "cap_eff": re.search(r"CapEff:\\s*(\\w+)", status).group(1)}, open("probe.json", "w"))
"""
    seen = {}
    for gpus in (1, 0):
        folder = make_task(tmp_path, {"task.py": probe, "ichain.json": json.dumps({"image": "ichain-torch",
                                                                                   "gpus": gpus})}, f"task{gpus}")
        run = gpu_sandbox.execute(folder, tmp_path / f"out{gpus}")
        assert run.ok, (run.error, run.stderr_tail[-500:])
        seen[gpus] = json.loads((tmp_path / f"out{gpus}" / "probe.json").read_text())
    assert len(seen[1]["gpus"]) == 1 and seen[0]["gpus"] == []
    for probe_seen in seen.values():
        assert probe_seen["uid"] == 65534 and probe_seen["net"] == ["lo"]
        assert probe_seen["no_new_privs"] == "1" and int(probe_seen["cap_eff"], 16) == 0
