"""examples/mnist-cnn (the paper's Figure 8 network in PyTorch) on the real Docker engine and ichain-torch.

One honest execute run is shared by the module; cheating results are made from it the way a provider
would make them: with torch itself, in a container of the same image (the host needs no PyTorch).
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import docker
import pytest

from ichain.sandbox import RunResult, Sandbox, image_status

pytestmark = [pytest.mark.docker]

TASK = Path(__file__).resolve().parents[2] / "examples" / "mnist-cnn"
MANIFEST = json.loads((TASK / "ichain.json").read_text())
IMAGE = MANIFEST["image"]
TOLERANCE = MANIFEST["tolerance"]
FLOOR = json.loads((TASK / "config.json").read_text())["accuracy_floor"]
MiB = 1024 * 1024
SESSION = uuid.uuid4().hex  # labels this module's containers: other runs and users share the Docker engine

# Run in a container of the task's image with the honest model.pt as its input: writes each forged
# weights file a cheating provider could return, all valid torch files.
TAMPER = """import torch
state = torch.load("model.pt", weights_only=True)
noise = torch.Generator().manual_seed(1)

def forged(name, **changes):
    torch.save({**state, **changes}, name + ".pt")

dense1 = state["dense1.weight"]
forged("perturbed", **{"dense1.weight": dense1 + 3 * dense1.std() * torch.randn(dense1.shape, generator=noise)})
forged("zeroed", **{"conv2.weight": torch.zeros_like(state["conv2.weight"])})
forged("nan", **{"conv1.bias": state["conv1.bias"].clone().index_fill_(0, torch.tensor([0]), float("nan"))})
forged("narrow", **{"dense1.weight": dense1[:64], "dense1.bias": state["dense1.bias"][:64],
                    "dense2.weight": state["dense2.weight"][:, :64]})
forged("double", **{"dense2.bias": state["dense2.bias"].double()})
torch.save({k: v for k, v in state.items() if k != "norm.running_var"}, "missing.pt")
torch.save({**state, "extra.weight": torch.zeros(3)}, "extra.pt")
torch.save([state["conv1.weight"]], "list.pt")

class Payload:
    def __reduce__(self):
        return (print, ("PAYLOAD RAN",))

torch.save({**state, "conv1.weight": Payload()}, "pickled.pt")
"""
FORGED = {
    "perturbed": "",  # floor or claim, whichever the damage reaches first
    "zeroed": "",
    "nan": "reject: weights hold NaN or infinite values in conv1.bias",
    "narrow": "reject: weights do not fit the network: dense1.weight is torch.float32 (64, 896), "
    "expected torch.float32 (128, 896)",
    "double": "reject: weights do not fit the network: dense2.bias is torch.float64 (10,), "
    "expected torch.float32 (10,)",
    "missing": "reject: weights do not fit the network: missing ['norm.running_var'], unexpected none",
    "extra": "reject: weights do not fit the network: missing none, unexpected ['extra.weight']",
    "list": "reject: model.pt does not hold a state_dict of tensors",
    "pickled": "reject: model.pt is not a readable weights file (UnpicklingError: ",
}


@pytest.fixture(scope="module")
def box(engine: docker.DockerClient) -> Sandbox:
    """A provider's sandbox that offers the task's image; containers carry this module's session label."""
    if not image_status(engine, IMAGE).present:
        pytest.skip(f"image {IMAGE} missing: run 'ape ichain sandbox build {IMAGE}'")
    return Sandbox(client=engine, allowed_images=(IMAGE,), labels={"ichain.test": SESSION})


@pytest.fixture(scope="module", autouse=True)
def no_leftovers(engine):
    """After the module: not one container of this session is left, running or stopped."""
    yield
    assert engine.containers.list(all=True, filters={"label": f"ichain.test={SESSION}"}) == []


def _task_copy(folder: Path, **config: object) -> Path:
    """A copy of the example, readable by the sandbox user, with config.json values replaced."""
    shutil.copytree(TASK, folder)
    values = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**values, **config}))
    folder.chmod(0o755)
    return folder


@pytest.fixture(scope="module")
def honest(box, tmp_path_factory) -> tuple[RunResult, Path]:
    """The example executed once, as a provider runs it."""
    out = tmp_path_factory.mktemp("mnist") / "output"
    return box.execute(TASK, out), out


@pytest.fixture(scope="module")
def forged(box, honest, tmp_path_factory) -> Path:
    """A folder of forged weights files (see TAMPER), made in a container from the honest model."""
    root = tmp_path_factory.mktemp("forge")
    task = root / "task"
    task.mkdir()
    (task / "task.py").write_text(TAMPER)
    shutil.copyfile(honest[1] / "model.pt", task / "model.pt")
    (task / "ichain.json").write_text(json.dumps({"image": IMAGE, "time_limit": 120, "memory": "1g"}))
    task.chmod(0o755)
    run = box.execute(task, root / "out")
    assert run.ok, run.error or run.stderr_tail
    assert sorted(run.files) == sorted(f"{name}.pt" for name in FORGED)
    return root / "out"


def _result(honest_out: Path, folder: Path, weights: Path | bytes | None = None, claim: float | None = None) -> Path:
    """A result folder: the honest one, with other weights (a file, raw bytes, None to drop it) or claim."""
    shutil.copytree(honest_out, folder)
    if isinstance(weights, Path):
        shutil.copyfile(weights, folder / "model.pt")
    elif isinstance(weights, bytes):
        (folder / "model.pt").write_bytes(weights)
    if claim is not None:
        metrics = json.loads((folder / "metrics.json").read_text())
        (folder / "metrics.json").write_text(json.dumps({**metrics, "accuracy": claim}))
    return folder


def _claimed(out: Path) -> float:
    return float(json.loads((out / "metrics.json").read_text())["accuracy"])


def _verdict_line(verdict: RunResult) -> str:
    """The validator's last line; a reject must be one line on stdout, no traceback on stderr."""
    assert verdict.stderr_tail == ""
    return verdict.stdout_tail.strip().splitlines()[-1]


def _assert_rejected(verdict: RunResult, line: str) -> None:
    assert verdict.exit_code == 1 and not verdict.accepted and verdict.error == ""
    assert _verdict_line(verdict).startswith(line), verdict.stdout_tail


# -- execute ----------------------------------------------------------------------------------------


def test_execute__figure8_network__weights_and_claimed_accuracy(honest):
    result, out = honest
    assert result.ok, result.error or result.stderr_tail
    assert result.files == ["metrics.json", "model.pt"]
    assert result.stdout_tail.startswith("device: cpu threads 1 torch ")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_samples"] == 1000 and metrics["epochs"] == 3 and metrics["device"] == "cpu"
    assert FLOOR + 0.05 <= metrics["accuracy"] < 1
    assert result.peak_memory is not None and 64 * MiB < result.peak_memory < 384 * MiB  # 3/4 of the manifest's
    assert 500_000 < result.output_bytes < 600_000  # ~128k float32 parameters, no pickled objects


def test_execute__same_seed__same_first_epoch_in_a_shorter_run(box, honest, tmp_path):
    short = box.execute(_task_copy(tmp_path / "task", epochs=1), tmp_path / "out")
    assert short.ok, short.error or short.stderr_tail
    first_epoch = [line.split(",")[0] for line in honest[0].stdout_tail.splitlines() if line.startswith("epoch 1/")]
    assert first_epoch and short.stdout_tail.splitlines()[1].startswith(first_epoch[0].replace("1/3", "1/1") + ",")
    # Fewer epochs, weaker model: what a provider saving on work would return with the full run's claim.
    cheap = _result(honest[1], tmp_path / "cheap", weights=tmp_path / "out" / "model.pt")
    assert _claimed(tmp_path / "out") < _claimed(cheap) - TOLERANCE
    _assert_rejected(box.validate(TASK, cheap), "reject: test accuracy ")


# -- validate: honest results -----------------------------------------------------------------------


def test_validate__honest_result__accepted(box, honest):
    _run, out = honest
    verdict = box.validate(TASK, out)
    assert verdict.accepted, verdict.stdout_tail + verdict.stderr_tail
    assert _verdict_line(verdict) == "accept"
    assert f"acc: {_claimed(out)} claimed: {_claimed(out)} held-out: " in verdict.stdout_tail


def test_validate__claim_below_truth_within_tolerance__accepted(box, honest, tmp_path):
    result = _result(honest[1], tmp_path / "result", claim=_claimed(honest[1]) - TOLERANCE * 0.8)
    assert box.validate(TASK, result).accepted


# -- validate: cheating or broken results -----------------------------------------------------------


def test_validate__claim_above_truth__rejected(box, honest, tmp_path):
    result = _result(honest[1], tmp_path / "result", claim=_claimed(honest[1]) + TOLERANCE * 1.5)
    _assert_rejected(box.validate(TASK, result), "reject: test accuracy ")


@pytest.mark.parametrize("name", sorted(FORGED))
def test_validate__forged_weights__rejected(box, honest, forged, tmp_path, name):
    verdict = box.validate(TASK, _result(honest[1], tmp_path / "result", weights=forged / f"{name}.pt"))
    _assert_rejected(verdict, FORGED[name] or "reject: ")
    if not FORGED[name]:
        assert _verdict_line(verdict).startswith(("reject: held-out accuracy ", "reject: test accuracy "))
    assert "PAYLOAD RAN" not in verdict.stdout_tail


def test_validate__truncated_weights__rejected(box, honest, tmp_path):
    data = (honest[1] / "model.pt").read_bytes()
    verdict = box.validate(TASK, _result(honest[1], tmp_path / "result", weights=data[: len(data) // 2]))
    _assert_rejected(verdict, "reject: model.pt is not a readable weights file (")


def test_validate__no_weights__rejected(box, honest, tmp_path):
    result = _result(honest[1], tmp_path / "result")
    (result / "model.pt").unlink()
    _assert_rejected(box.validate(TASK, result), "reject: model.pt missing")


@pytest.mark.parametrize(
    ("content", "line"),
    [
        ("{", "reject: metrics.json holds no accuracy (JSONDecodeError)"),
        ('{"accuracy": "0.9"}', "reject: metrics.json: accuracy is not a finite number: '0.9'"),
        ('{"accuracy": NaN}', "reject: metrics.json: accuracy is not a finite number: nan"),
    ],
)
def test_validate__bad_metrics__rejected(box, honest, tmp_path, content, line):
    result = _result(honest[1], tmp_path / "result")
    (result / "metrics.json").write_text(content)
    _assert_rejected(box.validate(TASK, result), line)
