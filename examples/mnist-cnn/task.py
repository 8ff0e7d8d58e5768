"""The paper's Figure 8 network (Conv1D over image rows) in PyTorch: an iChain task.

    python3 task.py 0   execute: train on the training split of data.npz (a Fashion-MNIST subset that
                        ships with the task: nothing is downloaded), write the weights (model.pt, a plain
                        state_dict) and the claimed accuracy on the test split (metrics.json).
    python3 task.py 1   validate: load the returned weights into the same network without unpickling
                        any object, re-evaluate them, and exit 0 only if they fit the architecture, are
                        finite, reach the accuracy floor on the held-out split, and their test accuracy
                        matches the claim within the manifest's tolerance. Every reject is one line.

The script runs on CUDA when PyTorch sees a GPU and on the CPU otherwise, unchanged; on the CPU a run is
deterministic (seeded, deterministic kernels, fixed thread count).
"""

import json
import os
import sys
import time
import warnings

# Read by CUDA's BLAS when it starts: without it deterministic mode refuses some matrix products on a GPU.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
# Read by OpenMP when torch loads: idle worker threads sleep instead of spinning. This network's
# operations are small, so threads wait often; spinning threads take the cores from each other and
# from everything else on the machine (a run on a busy 2-core machine took 5x longer).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

WEIGHTS = "model.pt"
METRICS = "metrics.json"
EVAL_BATCH = 500
# PyTorch warns that "same" padding with an even kernel pads one side only: exactly what Keras does.
warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")


def reject(reason):
    """The validator's verdict on a bad result: one line, exit 1."""
    print("reject:", reason)
    sys.exit(1)


class Figure8(nn.Module):
    """Conv1D(64, 2, same, relu) x2 -> MaxPool1D(2) -> Dropout(.25) -> BatchNorm -> Dense(128, relu) -> Dense(10).

    Keras' Conv1D on a (28, 28) input slides over the 28 rows with the 28 columns as channels; PyTorch's
    Conv1d wants (channels, length), hence the transpose. The softmax of the last layer is folded into the
    cross-entropy loss (and does not change the arg-max). Keras' BatchNormalization epsilon is kept.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(28, 64, 2, padding="same")
        self.conv2 = nn.Conv1d(64, 64, 2, padding="same")
        self.pool = nn.MaxPool1d(2)
        self.dropout = nn.Dropout(0.25)
        self.norm = nn.BatchNorm1d(64, eps=1e-3)
        self.dense1 = nn.Linear(64 * 14, 128)
        self.dense2 = nn.Linear(128, 10)

    def forward(self, images):
        x = images.transpose(1, 2)
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = self.norm(self.dropout(self.pool(x)))
        return self.dense2(torch.relu(self.dense1(x.flatten(1))))


def accuracy(model, images, labels):
    """Share of correctly classified images, in eval mode (dropout off, running batch-norm statistics)."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), EVAL_BATCH):
            logits = model(images[start : start + EVAL_BATCH])
            correct += int((logits.argmax(1) == labels[start : start + EVAL_BATCH]).sum())
    return correct / len(labels)


def read_claim():
    """The claimed test accuracy from metrics.json (rejects when it is missing or not a number)."""
    try:
        with open(METRICS) as handle:
            claimed = json.load(handle)["accuracy"]
    except FileNotFoundError:
        reject(f"{METRICS} missing")
    except (ValueError, KeyError, TypeError) as exc:
        reject(f"{METRICS} holds no accuracy ({type(exc).__name__})")
    if isinstance(claimed, bool) or not isinstance(claimed, (int, float)) or not np.isfinite(claimed):
        reject(f"{METRICS}: accuracy is not a finite number: {claimed!r}")
    return float(claimed)


def read_weights():
    """The returned state_dict, loaded without unpickling any object (rejects unreadable files)."""
    try:
        # weights_only: only tensors and plain containers are rebuilt, never an arbitrary object.
        return torch.load(WEIGHTS, map_location=device, weights_only=True)
    except FileNotFoundError:
        reject(f"{WEIGHTS} missing")
    except Exception as exc:  # a truncated or forged file fails in many ways; all mean the same here
        first = (str(exc).strip().splitlines() or [""])[0][:120]
        reject(f"{WEIGHTS} is not a readable weights file ({type(exc).__name__}: {first})")


def fit_weights(model, state):
    """Load ``state`` into ``model`` if it has exactly the model's entries, shapes and dtypes, all finite.

    Returns:
        Why the weights do not fit, or None once they are loaded.
    """
    expected = model.state_dict()
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        return f"{WEIGHTS} does not hold a state_dict of tensors"
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        return f"weights do not fit the network: missing {missing or 'none'}, unexpected {unexpected or 'none'}"
    try:
        for name, tensor in expected.items():
            given = state[name]
            if given.layout != torch.strided or given.shape != tensor.shape or given.dtype != tensor.dtype:
                return (f"weights do not fit the network: {name} is {given.dtype} {tuple(given.shape)}, "
                        f"expected {tensor.dtype} {tuple(tensor.shape)}")
            if tensor.is_floating_point() and not bool(torch.isfinite(given).all()):
                return f"weights hold NaN or infinite values in {name}"
        model.load_state_dict(state)
    except Exception as exc:  # an exotic tensor (quantized, meta...) that passed the checks above
        return f"weights cannot be loaded: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:120]}"
    return None


# config.json ships with the task and is read by relative path, as a user's data file would be.
with open("config.json") as handle:
    config = json.load(handle)
# The sandbox passes the manifest's tolerance; outside it, read the manifest itself.
if "ICHAIN_TOLERANCE" in os.environ:
    tolerance = float(os.environ["ICHAIN_TOLERANCE"])
else:
    with open("ichain.json") as handle:
        tolerance = float(json.load(handle).get("tolerance", 0.0))

# The sandbox sets OMP_NUM_THREADS to the task's CPU limit; one inter-op thread keeps the thread count
# (bounded in the sandbox) independent of how many cores the host has.
threads = int(os.environ.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
torch.set_num_threads(threads)
torch.set_num_interop_threads(1)
torch.manual_seed(config["seed"])
# warn_only: a GPU op without a deterministic kernel warns instead of stopping the run.
torch.use_deterministic_algorithms(True, warn_only=True)
torch.backends.cudnn.benchmark = False
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
print("device:", device.type, torch.cuda.get_device_name(0) if device.type == "cuda" else f"threads {threads}",
      "torch", torch.__version__, flush=True)

with np.load("data.npz", allow_pickle=False) as data:
    splits = {
        name: (
            torch.from_numpy(data[f"{name}_x"].astype(np.float32) / 255.0).to(device),
            torch.from_numpy(data[f"{name}_y"].astype(np.int64)).to(device),
        )
        for name in ("train", "test", "held_out")
    }

if sys.argv[1] == "0":
    train_x, train_y = splits["train"]
    model = Figure8().to(device)
    # Keras' adam defaults (learning rate 1e-3, epsilon 1e-7) and its sparse categorical cross-entropy.
    optimiser = torch.optim.Adam(model.parameters(), lr=config["learning_rate"], eps=1e-7)
    loss_function = nn.CrossEntropyLoss()
    order = torch.Generator().manual_seed(config["seed"])
    batch = config["batch_size"]
    started = time.monotonic()
    for epoch in range(config["epochs"]):
        model.train()
        permutation = torch.randperm(len(train_y), generator=order).to(device)
        total = torch.zeros((), device=device)
        for start in range(0, len(train_y), batch):
            index = permutation[start : start + batch]
            optimiser.zero_grad()
            loss = loss_function(model(train_x[index]), train_y[index])
            loss.backward()
            optimiser.step()
            # Summed on the device: reading the loss every step would wait for the GPU each time.
            total += loss.detach() * len(index)
        print(f"epoch {epoch + 1}/{config['epochs']}: loss {float(total) / len(train_y):.4f}, "
              f"{time.monotonic() - started:.1f} s", flush=True)
    measured = accuracy(model, *splits["test"])
    # CPU tensors: the weights load on any validator, with or without a GPU.
    torch.save({name: tensor.cpu() for name, tensor in model.state_dict().items()}, WEIGHTS)
    with open(METRICS, "w") as handle:
        json.dump({"accuracy": measured, "test_samples": len(splits["test"][1]), "epochs": config["epochs"],
                   "device": device.type, "train_seconds": round(time.monotonic() - started, 3)}, handle)
    print("acc:", measured, "train seconds:", round(time.monotonic() - started, 1))
else:
    claimed = read_claim()
    model = Figure8().to(device)
    reason = fit_weights(model, read_weights())
    if reason:
        reject(reason)
    measured = accuracy(model, *splits["test"])
    held_out = accuracy(model, *splits["held_out"])
    print("acc:", measured, "claimed:", claimed, "held-out:", held_out, "floor:", config["accuracy_floor"],
          "tolerance:", tolerance)
    if held_out < config["accuracy_floor"]:
        reject(f"held-out accuracy {held_out:.4f} is below the floor {config['accuracy_floor']}")
    if abs(measured - claimed) > tolerance:
        reject(f"test accuracy {measured:.4f} does not match the claim {claimed:.4f} (tolerance {tolerance})")
    print("accept")
