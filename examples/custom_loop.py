"""A training loop written by hand, without ``fit``.

Shows the building blocks ``fit`` is made of: ``model.forward``, a loss's ``forward``
and ``backward``, ``model.backward`` (fills every layer's gradients) and
``optimizer.step``, on mini-batches shuffled every epoch. The network ends without an
activation and the loss takes its logits (``from_logits=True``), so softmax and
cross-entropy are computed together, which is faster and stabler than in two steps.
The data is three interleaved spirals.

Run it with ``python examples/custom_loop.py`` (a few seconds on a laptop CPU; a GPU is
used when CuPy finds one). ``GPUNN_EXAMPLE_QUICK=1`` trains for fewer epochs.
"""

import os

import numpy as np

import gpunn as gn

QUICK = os.environ.get("GPUNN_EXAMPLE_QUICK") == "1"
EPOCHS, BATCH = (10 if QUICK else 30), 32

X, y = gn.data.make_spirals(1500, classes=3, noise=0.2, seed=0)
X_train, X_test, y_train, y_test = gn.data.train_test_split(X, y, test_size=0.2, seed=0)

model = gn.Sequential([gn.Dense(2, 64, activation="relu"),
                       gn.Dense(64, 64, activation="relu"),
                       gn.Dense(64, 3)], seed=0)
loss = gn.losses.get("categorical_crossentropy", from_logits=True)
optimizer = gn.optim.Adam(lr=0.01)

backend, xp = model.backend, model.backend.xp
# Moved to the model's device once: batches are then gathered there, not copied over.
X_dev, y_dev = backend.asarray(X_train), backend.asarray(y_train)
n = X_dev.shape[0]
rng = np.random.default_rng(0)

for epoch in range(1, EPOCHS + 1):
    order = backend.asarray(rng.permutation(n))
    # Summed on the device and read once per epoch: a float() per step would make
    # a GPU wait for the host at every batch.
    total = backend.zeros(())
    for start in range(0, n, BATCH):
        rows = order[start:start + BATCH]
        x, t = xp.take(X_dev, rows, axis=0), xp.take(y_dev, rows, axis=0)
        value = loss.forward(model.forward(x, training=True), t)  # integer labels are fine
        model.backward(loss.backward())
        optimizer.step(model.parameters(), model.gradients())  # in place
        total = total + value * x.shape[0]
    if epoch % (EPOCHS // 5) == 0 or epoch == 1:
        print(f"epoch {epoch:3d}/{EPOCHS}: training loss {float(total) / n:.4f}")

accuracy = gn.metrics.accuracy(y_test, model.predict(X_test))  # argmax of the logits
print(f"test accuracy: {accuracy:.3f} on {len(y_test)} points (3 classes)")
