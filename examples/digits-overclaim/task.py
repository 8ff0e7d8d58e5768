"""Digits classifier: an iChain task in the paper's Figure 8 style.

    python3 task.py 0   execute: train on scikit-learn's bundled 8x8 digits (nothing is downloaded),
                        write the model (model.npz, plain arrays: no pickle) and the claimed accuracy
                        (metrics.json) into the working folder.
    python3 task.py 1   validate: reload the returned model, re-evaluate it on the same held-out split
                        and exit 0 only if its accuracy matches the claim within the manifest's tolerance.
"""

import json
import os
import sys

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

# config.json ships with the task and is read by relative path, as a user's data file would be.
with open("config.json") as handle:
    config = json.load(handle)
# The sandbox passes the manifest's tolerance; outside it, read the manifest itself.
if "ICHAIN_TOLERANCE" in os.environ:
    tolerance = float(os.environ["ICHAIN_TOLERANCE"])
else:
    with open("ichain.json") as handle:
        tolerance = float(json.load(handle).get("tolerance", 0.0))

digits = load_digits()
features = digits.data / 16.0
x_train, x_test, y_train, y_test = train_test_split(
    features, digits.target, test_size=0.25, random_state=config["seed"], stratify=digits.target
)


def accuracy(coef, intercept, classes):
    """Accuracy of a linear classifier given as plain arrays (no pickle crosses the network)."""
    predicted = classes[np.argmax(x_test @ coef.T + intercept, axis=1)]
    return float(np.mean(predicted == y_test))


if sys.argv[1] == "0":
    model = LogisticRegression(C=config["C"], max_iter=config["max_iter"]).fit(x_train, y_train)
    np.savez("model.npz", coef=model.coef_, intercept=model.intercept_, classes=model.classes_)
    measured = accuracy(model.coef_, model.intercept_, model.classes_)
    claimed = measured + config.get("claim_offset", 0.0)
    with open("metrics.json", "w") as handle:
        json.dump({"accuracy": claimed, "test_samples": len(y_test)}, handle)
    print("acc:", measured, "claimed:", claimed)
else:
    with np.load("model.npz", allow_pickle=False) as saved:
        measured = accuracy(saved["coef"], saved["intercept"], saved["classes"])
    with open("metrics.json") as handle:
        claimed = float(json.load(handle)["accuracy"])
    verdict = abs(measured - claimed) <= tolerance
    print("acc:", measured, "claimed:", claimed, "tolerance:", tolerance, "accept" if verdict else "reject")
    sys.exit(0 if verdict else 1)
