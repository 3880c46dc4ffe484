"""Training cases run both by one process and by several ranks (tests/test_distributed.py):
float64, a fixed seed, everything else as a user would write it."""

import os

import numpy as np

import gpunn as gn

#: name -> (optimizer, dropout rate, rows, batch size, epochs)
CASES = {
    "sgd": (lambda: gn.optim.SGD(lr=0.1, momentum=0.9), 0.0, 200, 32, 3),
    "adam": (lambda: gn.optim.Adam(lr=1e-2), 0.0, 200, 32, 3),
    # 97 rows at batch 32: a last batch of 1 row, fewer rows than ranks.
    "adam-tail": (lambda: gn.optim.Adam(lr=1e-2), 0.0, 97, 32, 2),
    "dropout": (lambda: gn.optim.Adam(lr=1e-2), 0.3, 200, 32, 3),
    # Sample weights (some 0) and balanced class weights, sliced with their rows; the
    # tail's stand-in row must weigh nothing.
    "weighted": (lambda: gn.optim.Adam(lr=1e-2), 0.0, 200, 32, 3),
    "weighted-tail": (lambda: gn.optim.SGD(lr=0.1, momentum=0.9), 0.0, 97, 32, 2),
}


def data(rows: int):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(rows, 5))
    y = (X[:, 0] * X[:, 1] + X[:, 2] > 0).astype(np.int64) + (X[:, 3] > 1)
    return X, y


def model(dropout: float):
    layers = [gn.Dense(5, 16, activation="tanh")]
    layers += [gn.Dropout(dropout)] if dropout else []
    layers += [gn.Dense(16, 3, activation="softmax", kernel_l2=1e-3)]
    # GPUNN_CASES_DEVICE=cuda: the same cases on GPUs (tests/test_distributed_nccl.py).
    device = os.environ.get("GPUNN_CASES_DEVICE", "cpu")
    return gn.Sequential(layers, device=device, dtype="float64", seed=0)


def train(name: str, **fit):
    make_opt, dropout, rows, batch, epochs = CASES[name]
    X, y = data(rows)
    net = model(dropout)
    fit = {"epochs": epochs, "verbose": 0, "optimizer": make_opt(), **fit}
    if fit["optimizer"] is None:  # resuming: the checkpoint's
        fit["optimizer"] = "adam"
    if name.startswith("weighted"):
        w = np.where(np.arange(rows) % 7 == 0, 0.0, 1.0 + (np.arange(rows) % 3))
        fit = {"sample_weight": w, "class_weight": "balanced",
               "validation_data": (X[:45], y[:45], w[:45]), **fit}
    fit = {"validation_data": (X[:45], y[:45]), **fit}
    # Metrics of counts (arrays summed over ranks) beside accuracy; the tails give a rank
    # a stand-in row that must count toward none.
    fit = {"metrics": ["accuracy", "f1", "auc"], **fit}
    hist = net.fit(X, y, loss="categorical_crossentropy", batch_size=batch, seed=3, **fit)
    return net, hist
