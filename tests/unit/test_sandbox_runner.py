"""The hardened runner on the real Docker engine: configuration, examples, bad input, clean-up."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from ichain._cli import cli
from ichain.sandbox import ImageBuildError, RunResult, Sandbox, build_image, image_status, load_task
from ichain.sandbox.image import RECIPE_LABEL, _smoke_test, recipe_hash
from ichain.sandbox.runner import RUN_LABEL, SANDBOX_LABEL

pytestmark = [pytest.mark.docker]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MiB = 1024 * 1024
SESSION = uuid.uuid4().hex  # labels this module's containers: other runs and users share the Docker engine


@pytest.fixture(scope="module")
def sandbox(engine) -> Sandbox:
    """A provider's sandbox whose containers carry this module's session label."""
    return Sandbox(client=engine, labels={"ichain.test": SESSION})


@pytest.fixture(scope="module", autouse=True)
def no_leftovers(engine):
    """After the module: not one container of this session is left, running or stopped."""
    yield
    left = engine.containers.list(all=True, filters={"label": f"ichain.test={SESSION}"})
    assert left == []


@pytest.fixture
def make_task(tmp_path):
    """Factory: a task folder (readable by the sandbox user) from {path: content} or an example."""

    def make(files: dict[str, str] | None = None, example: str | None = None, name: str = "task") -> Path:
        folder = tmp_path / name
        if example:
            shutil.copytree(EXAMPLES / example, folder)
        else:
            folder.mkdir()
        for rel, content in (files or {}).items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_text(content)
        folder.chmod(0o755)
        return folder

    return make


@pytest.fixture(scope="module")
def digits_result(tmp_path_factory, engine) -> tuple[RunResult, Path]:
    """The digits example executed once for the module (the provider's side)."""
    box = Sandbox(client=engine, labels={"ichain.test": SESSION})
    out = tmp_path_factory.mktemp("digits") / "output"
    return box.execute(EXAMPLES / "digits", out), out


# -- configuration, field by field ---------------------------------------------------------------


def _assert_hardened(cfg: dict, host: dict, spec, work: Path, mode: str, run_id: str) -> None:
    assert cfg["User"] == "65534:65534"
    assert cfg["WorkingDir"] == "/work"
    assert cfg["NetworkDisabled"] is True
    assert cfg["Cmd"] == ["python3", f"/task/{spec.entry}", mode]
    assert cfg["Image"] == "ichain-runtime"
    assert cfg["Tty"] is False and cfg["OpenStdin"] is False
    env = dict(item.split("=", 1) for item in cfg["Env"])
    assert {k: env[k] for k in ("HOME", "ICHAIN_MODE", "ICHAIN_TOLERANCE", "ICHAIN_TASK_DIR")} == {
        "HOME": "/tmp", "ICHAIN_MODE": mode, "ICHAIN_TOLERANCE": repr(spec.tolerance), "ICHAIN_TASK_DIR": "/task",
    }
    assert cfg["Labels"][SANDBOX_LABEL] == "1" and cfg["Labels"][RUN_LABEL] == run_id
    assert host["NetworkMode"] == "none"
    assert host["ReadonlyRootfs"] is True
    assert host.get("Privileged", False) is False
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["PidsLimit"] == 64
    assert host["Memory"] == spec.memory and host["MemorySwap"] == spec.memory
    assert host["MemorySwappiness"] == 0
    assert host["NanoCpus"] == int(spec.cpus * 1e9)
    assert host["Init"] is True
    assert host["LogConfig"]["Type"] == "none"
    assert host["IpcMode"] == "private"
    assert host["Tmpfs"] == {"/tmp": f"rw,noexec,nosuid,nodev,size={64 * MiB},mode=1777"}
    ulimits = {u["Name"]: (u["Soft"], u["Hard"]) for u in host["Ulimits"]}
    assert ulimits == {
        "nofile": (256, 256),
        "nproc": (1024, 1024),
        "fsize": (spec.output_limit, spec.output_limit),
        "core": (0, 0),
    }
    mounts = sorted(host["Mounts"], key=lambda m: m["Target"])
    assert [(m["Target"], m["Source"], m["Type"], bool(m.get("ReadOnly"))) for m in mounts] == [
        ("/task", str(spec.folder), "bind", True),
        ("/work", str(work), "bind", False),
    ]
    assert not host.get("Binds") and not host.get("Devices") and not host.get("PortBindings")


def test_container_config__every_field__hardened(sandbox, tmp_path):
    spec = load_task(EXAMPLES / "digits")
    config = sandbox.container_config(spec, tmp_path, "0", "run-x")
    cfg = {
        "User": config["user"], "WorkingDir": config["working_dir"], "NetworkDisabled": config["network_disabled"],
        "Cmd": config["command"], "Image": config["image"], "Tty": config["tty"], "OpenStdin": config["stdin_open"],
        "Env": [f"{k}={v}" for k, v in config["environment"].items()], "Labels": config["labels"],
    }
    assert set(config["environment"]) == {
        "HOME", "ICHAIN_MODE", "ICHAIN_TOLERANCE", "ICHAIN_TASK_DIR", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
        "MPLCONFIGDIR",
    }
    _assert_hardened(cfg, config["host_config"], spec, tmp_path, "0", "run-x")


def test_execute__live_container__engine_holds_the_hardened_config(sandbox, make_task, tmp_path, engine):
    """Inspect the container of a real run while it runs (what the engine actually got)."""
    folder = make_task({"task.py": "import time\nprint('up', flush=True)\ntime.sleep(60)\n",
                        "ichain.json": '{"time_limit": 8}'})
    spec = load_task(folder)
    box = Sandbox(client=engine, labels={"ichain.test": SESSION, "ichain.case": "live"})
    seen: dict = {}

    def spy():
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and not seen:
            found = engine.containers.list(filters={"label": ["ichain.case=live", f"ichain.test={SESSION}"]})
            if found:
                seen["attrs"] = found[0].attrs
            time.sleep(0.05)

    thread = threading.Thread(target=spy)
    thread.start()
    result = box.execute(folder, tmp_path / "out")
    thread.join()
    assert result.timed_out and "up" in result.stdout_tail
    attrs = seen["attrs"]
    work = Path(attrs["HostConfig"]["Mounts"][1]["Source"])
    assert work.parent == tmp_path and not work.exists()  # the staging folder is gone too
    _assert_hardened(attrs["Config"], attrs["HostConfig"], spec, work, "0", result.run_id)
    assert attrs["HostConfig"]["Runtime"] == box.runtime
    assert engine.containers.list(all=True, filters={"label": f"{RUN_LABEL}={result.run_id}"}) == []


# -- the examples ---------------------------------------------------------------------------------


def test_execute__digits__model_and_claimed_accuracy(digits_result):
    result, out = digits_result
    assert result.ok, result.error or result.stderr_tail
    assert result.files == ["metrics.json", "model.npz"]
    assert result.output_folder == out
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "model.npz"]
    assert "acc:" in result.stdout_tail
    assert result.peak_memory is not None and 16 * MiB < result.peak_memory < 512 * MiB
    assert 0 < result.wall_time < 60
    assert result.output_bytes == sum(p.stat().st_size for p in out.iterdir())


def test_validate__digits_result__accepted(sandbox, digits_result):
    _result, out = digits_result
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    verdict = sandbox.validate(EXAMPLES / "digits", out)
    assert verdict.accepted, verdict.stderr_tail
    assert "accept" in verdict.stdout_tail
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the result is never modified


def test_validate__overclaimed_accuracy__rejected(sandbox, tmp_path, overclaim_task):
    run = sandbox.execute(overclaim_task, tmp_path / "out")
    assert run.ok
    verdict = sandbox.validate(overclaim_task, tmp_path / "out")
    assert verdict.exit_code == 1 and not verdict.accepted
    assert "reject" in verdict.stdout_tail


def test_validate__result_near_the_cap__not_killed_by_the_disk_watch(sandbox, make_task, tmp_path):
    folder = make_task({
        "ichain.json": '{"output_limit": "8m"}',
        "task.py": (
            "import os, sys\n"
            "if sys.argv[1] == '0':\n"
            "    open('big.bin', 'wb').write(os.urandom(7 * 1024 * 1024))\n"
            "else:\n"
            "    open('scratch.bin', 'wb').write(os.urandom(2 * 1024 * 1024))\n"
            "    sys.exit(0 if os.path.getsize('big.bin') == 7 * 1024 * 1024 else 1)\n"
        ),
    })
    assert sandbox.execute(folder, tmp_path / "out").ok
    verdict = sandbox.validate(folder, tmp_path / "out")
    assert verdict.accepted, verdict.error


def test_validate__result_ships_a_task_file_name__validator_sees_the_tasks_own(sandbox, make_task, tmp_path):
    folder = make_task({
        "config.json": '{"threshold": 0.9}',
        "task.py": (
            "import json, sys\n"
            "if sys.argv[1] == '0':\n"
            "    open('score.txt', 'w').write('0.5')\n"
            "else:\n"
            "    limit = json.load(open('config.json'))['threshold']\n"
            "    sys.exit(0 if float(open('score.txt').read()) >= limit else 1)\n"
        ),
    })
    assert sandbox.execute(folder, tmp_path / "out").ok
    forged = tmp_path / "forged"
    shutil.copytree(tmp_path / "out", forged)
    (forged / "config.json").write_text('{"threshold": 0.1}')  # a provider's attempt to lower the bar
    verdict = sandbox.validate(folder, forged)
    assert verdict.exit_code == 1 and not verdict.accepted


def test_execute__script_replaces_a_task_file__not_returned(sandbox, make_task, tmp_path):
    folder = make_task({
        "config.json": "{}",
        "task.py": "import os\nos.unlink('config.json')\nopen('config.json', 'w').write('mine')\nopen('r.txt', 'w').write('r')\n",
    })
    run = sandbox.execute(folder, tmp_path / "out")
    assert run.ok and run.files == ["r.txt"]


def test_validate__tampered_model__rejected(sandbox, digits_result, tmp_path):
    _result, out = digits_result
    tampered = tmp_path / "tampered"
    shutil.copytree(out, tampered)
    import numpy as np

    with np.load(tampered / "model.npz") as saved:
        arrays = dict(saved)
    arrays["coef"] = np.zeros_like(arrays["coef"])
    np.savez(tampered / "model.npz", **arrays)
    verdict = sandbox.validate(EXAMPLES / "digits", tampered)
    assert verdict.exit_code == 1 and not verdict.accepted


# -- what comes back --------------------------------------------------------------------------------


def test_execute__figure8_script__only_written_regular_files_come_back(sandbox, make_task, tmp_path):
    folder = make_task({
        "data/values.txt": "1 2 3",
        "task.py": (
            "import os, sys\n"
            "if sys.argv[1] == '0':\n"
            "    total = sum(map(int, open('data/values.txt').read().split()))\n"
            "    open('result.txt', 'w').write(str(total))\n"
            "    os.makedirs('sub', exist_ok=True)\n"
            "    open('sub/deep.txt', 'w').write('deep')\n"
            "    os.symlink('/etc/passwd', 'link')\n"
            "    os.mkfifo('pipe')\n"
            "else:\n"
            "    sys.exit(0 if open('result.txt').read() == '6' else 1)\n"
        ),
    })
    run = sandbox.execute(folder, tmp_path / "out")
    assert run.ok, run.stderr_tail
    assert run.files == ["result.txt", "sub/deep.txt"]
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*")) == [
        "result.txt", "sub", "sub/deep.txt",
    ]
    assert sandbox.validate(folder, tmp_path / "out").accepted


def test_execute__folders_nested_2000_deep__failed_and_cleaned_up(sandbox, make_task, tmp_path):
    folder = make_task({"task.py": (
        "import os\n"
        "for _ in range(2000):\n"
        "    os.mkdir('d')\n"
        "    os.chdir('d')\n"
        "open('leaf.txt', 'w').write('x')\n"
    )})
    run = sandbox.execute(folder, tmp_path / "out")
    assert run.exit_code == 0 and not run.ok
    assert run.error == "result folders nested deeper than 64 levels"
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith((".ichain-run-", "out"))] == []


def test_execute__script_fails__exit_status_and_stderr_tail(sandbox, make_task, tmp_path):
    folder = make_task({"task.py": "import sys\nopen('partial.txt', 'w').write('x')\nraise SystemExit(3)\n"})
    run = sandbox.execute(folder, tmp_path / "out")
    assert run.exit_code == 3 and not run.ok and run.error == "" and not run.sandbox_fault
    assert run.files == [] and not (tmp_path / "out").exists()  # no half result is taken as whole


def test_execute__traceback__stderr_tail_holds_it(sandbox, make_task, tmp_path):
    folder = make_task({"task.py": "print('before')\n1 / 0\n"})
    run = sandbox.execute(folder, tmp_path / "out")
    assert run.exit_code == 1
    assert "ZeroDivisionError" in run.stderr_tail and "before" in run.stdout_tail


def test_execute__memory_hog__peak_memory_reported(sandbox, make_task, tmp_path):
    folder = make_task({"task.py": "import time\nx = b'x' * (120 * 1024 * 1024)\ntime.sleep(0.5)\n"})
    run = sandbox.execute(folder, tmp_path / "out")
    assert run.ok
    assert run.peak_memory is not None and run.peak_memory >= 120 * MiB


# -- bad input: a clear one-line error and a failed result, never a crash ---------------------------


@pytest.mark.parametrize(
    "files, message",
    [
        ({"main.py": "print(1)\n"}, "entry script task.py not found"),
        ({"task.py": "def f(:\n"}, "syntax error"),
        ({"task.py": "print(1)\n", "ichain.json": '{"image": "ichain-nonexistent-image"}'},
         "image must be one of ichain-runtime, ichain-torch"),
    ],
)
def test_execute__bad_task__failed_result_with_one_line_error(sandbox, make_task, tmp_path, files, message):
    run = sandbox.execute(make_task(files), tmp_path / "out")
    assert not run.ok and run.exit_code is None
    assert run.error and "\n" not in run.error
    assert run.sandbox_fault is False  # the task's fault: retrying cannot help
    assert re.search(message, run.error)


def test_execute__missing_image__failed_result_image_missing(engine, make_task, tmp_path):
    box = Sandbox(client=engine, labels={"ichain.test": SESSION}, image_names={"ichain-runtime": "ichain-runtime-absent"})
    folder = make_task({"task.py": "print(1)\n"})
    run = box.execute(folder, tmp_path / "out")
    assert not run.ok and run.exit_code is None
    assert "runtime image 'ichain-runtime-absent' is not on this Docker engine" in run.error
    assert run.sandbox_fault is True
    assert "\n" not in run.error


def test_execute__engine_down__failed_result_engine_unavailable(monkeypatch, make_task, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    run = Sandbox().execute(make_task({"task.py": "print(1)\n"}), tmp_path / "out")
    assert not run.ok and run.exit_code is None
    assert run.error.startswith("Docker engine not reachable at unix:///nonexistent/docker.sock")
    assert run.sandbox_fault is True
    assert "\n" not in run.error


def test_execute__runsc_requested_but_not_configured__failed_result(engine, make_task, tmp_path):
    if "runsc" in (engine.info().get("Runtimes") or {}):
        pytest.skip("gVisor is configured on this engine")
    box = Sandbox(client=engine, runtime="runsc", labels={"ichain.test": SESSION})
    run = box.execute(make_task({"task.py": "print(1)\n"}), tmp_path / "out")
    assert not run.ok and run.exit_code is None
    assert run.error == "container runtime 'runsc' is not configured in the Docker engine"


def test_execute__output_folder_not_empty__failed_result(sandbox, make_task, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    run = sandbox.execute(make_task({"task.py": "print(1)\n"}), tmp_path / "out")
    assert "not empty" in run.error and (tmp_path / "out" / "mine.txt").read_text() == "keep"


def test_execute__interrupted__container_removed(engine, make_task, tmp_path, monkeypatch):
    box = Sandbox(client=engine, labels={"ichain.test": SESSION})
    folder = make_task({"task.py": "import time\ntime.sleep(60)\n"})
    started: list[str] = []
    real_start = engine.api.start

    def start_then_interrupt(container, *args, **kwargs):
        real_start(container, *args, **kwargs)
        started.append(container)
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.api, "start", start_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        box.execute(folder, tmp_path / "out")
    monkeypatch.undo()
    assert started
    assert engine.containers.list(all=True, filters={"id": started[0]}) == []
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".ichain-run-")] == []


def test_sweep__owner_killed_mid_run__next_sandbox_removes_its_container(engine, make_task, tmp_path):
    folder = make_task({"task.py": "import time\nprint('up', flush=True)\ntime.sleep(120)\n"})
    code = (
        "import sys; from ichain.sandbox import Sandbox; "
        f"Sandbox(labels={{'ichain.test': '{SESSION}', 'ichain.case': 'orphan'}}).execute(sys.argv[1], sys.argv[2])"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder), str(tmp_path / "out")])
    filters = {"label": ["ichain.case=orphan", f"ichain.test={SESSION}"]}
    deadline = time.monotonic() + 60
    while not engine.containers.list(filters=filters) and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.kill()  # SIGKILL: no finally block runs, the container stays behind
    proc.wait()
    assert len(engine.containers.list(all=True, filters=filters)) == 1
    fresh = Sandbox(client=engine, labels={"ichain.test": SESSION})
    assert fresh.execute(make_task({"task.py": "print(1)\n"}, name="next"), tmp_path / "out2").ok
    assert engine.containers.list(all=True, filters=filters) == []


# -- image and CLI --------------------------------------------------------------------------------------


def test_image__label__matches_current_recipe(engine):
    image = engine.images.get("ichain-runtime")
    assert image.labels[RECIPE_LABEL] == recipe_hash()
    assert image.attrs["Config"]["User"] == "65534:65534"
    assert image.attrs["Size"] < 400 * 1000 * 1000


def test_build_image__up_to_date__nothing_built(engine):
    before = engine.images.get("ichain-runtime").id
    status = build_image(engine)
    assert status.up_to_date and not status.built and status.image_id == before


def test_build_image__no_mmdebstrap_and_no_registry__one_line_error(engine, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ImageBuildError) as info:
        build_image(engine, "ichain-runtime-never-built", runtime="ichain-runtime")
    assert str(info.value) == "mmdebstrap not found and no image registry answers — apt-get install mmdebstrap"
    assert not image_status(engine, "ichain-runtime-never-built").present


def test_build_image__unknown_runtime__one_line_error(engine):
    with pytest.raises(ImageBuildError) as info:
        build_image(engine, "ichain-somewhere")
    assert str(info.value) == "unknown runtime 'ichain-somewhere' (known: ichain-runtime, ichain-torch)"


def test_build_image__new_image_fails_its_smoke_test__old_image_keeps_the_name(engine, tmp_path, monkeypatch):
    """The build step is swapped for a quick one making a broken image (no scipy) under the name it is given; the
    swap to the real name, the smoke test and the clean-up are the real ones."""
    import ichain.sandbox.image as image_module

    name = f"ichain-keep-{SESSION[:12]}"
    engine.images.get("ichain-runtime").tag(name, "latest")
    old = engine.images.get(name).id
    given: list[str] = []

    def broken_build(client, target, entry, say):
        given.append(target)
        (tmp_path / "Dockerfile").write_text(
            "FROM ichain-runtime\nUSER 0:0\nRUN rm -rf /usr/lib/python3/dist-packages/scipy\nUSER 65534:65534\n"
        )
        client.images.build(path=str(tmp_path), tag=target, rm=True, forcerm=True)

    monkeypatch.setattr(image_module, "_build_with_mmdebstrap", broken_build)
    monkeypatch.setattr(image_module, "registry_answers", lambda client: False)
    try:
        with pytest.raises(ImageBuildError) as info:
            build_image(engine, name, runtime="ichain-runtime", force=True)
        assert str(info.value) == "the new image fails its smoke test: ModuleNotFoundError: No module named 'scipy'"
        assert given == [f"{name}:ichain-candidate"]
        assert engine.images.get(name).id == old
        assert not image_status(engine, f"{name}:ichain-candidate").present
    finally:
        engine.images.remove(name)


def test_smoke_test__image_lacks_scipy__one_line_error_naming_it(engine, tmp_path):
    broken = f"ichain-runtime-noscipy-{SESSION[:12]}"
    (tmp_path / "Dockerfile").write_text(
        "FROM ichain-runtime\nUSER 0:0\nRUN rm -rf /usr/lib/python3/dist-packages/scipy\nUSER 65534:65534\n"
    )
    engine.images.build(path=str(tmp_path), tag=broken, rm=True, forcerm=True)
    try:
        with pytest.raises(ImageBuildError) as info:
            _smoke_test(engine, broken, "ichain-runtime")
    finally:
        engine.images.remove(broken, force=True)
    assert str(info.value) == "the new image fails its smoke test: ModuleNotFoundError: No module named 'scipy'"


def test_cli_build__up_to_date_quiet__prints_nothing(engine):
    result = CliRunner().invoke(cli, ["sandbox", "build", "--quiet"])
    assert result.exit_code == 0 and result.output == ""


def test_cli_build__up_to_date__says_so(engine):
    result = CliRunner().invoke(cli, ["sandbox", "build"])
    assert result.exit_code == 0 and "is up to date" in result.output


def test_cli_build__named_runtime_up_to_date__says_so(engine):
    result = CliRunner().invoke(cli, ["sandbox", "build", "ichain-torch"])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"image: ichain-torch is up to date \(\d+ MB, recipe [0-9a-f]{12}\)\n", result.output)


def test_cli_build__all_json__one_object_per_runtime_in_catalog_order(engine):
    result = CliRunner(mix_stderr=False).invoke(cli, ["sandbox", "build", "--all", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == ["ichain-runtime", "ichain-torch"]
    for row in rows:
        assert set(row) == {"name", "present", "up_to_date", "size", "recipe", "built", "seconds"}
        assert row["present"] and row["up_to_date"] and not row["built"] and row["seconds"] == 0
        assert row["recipe"] == recipe_hash(row["name"])


def test_cli_build__one_runtime_json__one_object(engine):
    result = CliRunner(mix_stderr=False).invoke(cli, ["sandbox", "build", "ichain-torch", "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["name"] == "ichain-torch" and row["up_to_date"] and row["built"] is False


@pytest.mark.parametrize("args, message", [
    (["ichain-tf"], "Error: Invalid value for '[NAME]': unknown runtime 'ichain-tf' (known: ichain-runtime, "
                    "ichain-torch)"),
    (["ichain-torch", "--all"], "Error: give a runtime NAME or --all, not both"),
], ids=["unknown", "name-and-all"])
def test_cli_build__bad_arguments__usage_error_exit_2(args, message):
    result = CliRunner().invoke(cli, ["sandbox", "build", *args])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == message
    assert "Traceback" not in result.output


def test_cli_check__json__every_runtime_with_its_self_test(engine):
    result = CliRunner(mix_stderr=False).invoke(cli, ["sandbox", "check", "--json"])  # steps go to stderr
    assert result.exit_code == 0, result.output + result.stderr
    data = json.loads(result.stdout)
    assert [image["name"] for image in data["images"]] == ["ichain-runtime", "ichain-torch"]
    assert all(image["up_to_date"] and image["self_test"]["ok"] for image in data["images"])
    assert data["image"]["name"] == "ichain-runtime" and data["self_test"]["ok"] is True
    assert data["gpus"] is ("nvidia" in engine.info()["Runtimes"])


def test_cli_check__engine_image_runtime__reported(engine):
    result = CliRunner().invoke(cli, ["sandbox", "check"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("engine: Docker ")
    assert lines[1].startswith("image: ichain-runtime ") and lines[1].endswith(", up to date")
    assert lines[2].startswith("image: ichain-torch ") and lines[2].endswith(", up to date")
    assert lines[3].startswith("runtime: runc") or lines[3].startswith("runtime: runsc")
    assert lines[4] in ("gpus: the engine passes NVIDIA GPUs", "gpus: none (no NVIDIA container runtime on this engine)")
    assert lines[5].startswith("self-test: hardened container ran ichain-runtime's stack in ")
    assert lines[6].startswith("self-test: hardened container ran ichain-torch's stack in ")
    assert lines[7].startswith("containers: ")


def test_cli_check__engine_down__one_line_error(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    result = CliRunner().invoke(cli, ["sandbox", "check"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: Docker engine not reachable at unix:///nonexistent/docker.sock (DockerException) — "
        "start dockerd or run 'make setup'"
    ]
