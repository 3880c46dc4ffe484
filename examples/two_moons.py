"""Two moons with the classic list-of-dicts network.

Shows: describing a network as a list of ``{"input_dim", "output_dim", "activation"}``
dicts, ``fit`` and its history, ``predict`` and the accuracy on held-out points.

Run it with ``python examples/two_moons.py`` (about a second on a laptop CPU; a GPU is
used when CuPy finds one). ``GPUNN_EXAMPLE_QUICK=1`` trains for fewer epochs.
"""

import os

import gpunn as gn

QUICK = os.environ.get("GPUNN_EXAMPLE_QUICK") == "1"

X, y = gn.data.make_moons(1000, noise=0.2, seed=0)
X_train, X_test, y_train, y_test = gn.data.train_test_split(X, y, test_size=0.25, seed=0)

model = gn.Sequential.from_architecture([
    {"input_dim": 2, "output_dim": 25, "activation": "relu"},
    {"input_dim": 25, "output_dim": 50, "activation": "relu"},
    {"input_dim": 50, "output_dim": 25, "activation": "relu"},
    {"input_dim": 25, "output_dim": 1, "activation": "sigmoid"},
], seed=0)
model.summary()

# The moons interleave, so a straight line gets about 85%; the hidden layers bend it.
# Much longer than this and the network starts fitting the noise of 750 points.
history = model.fit(X_train, y_train, loss="binary_crossentropy",
                    optimizer=gn.optim.Adam(lr=0.01), epochs=10 if QUICK else 30,
                    batch_size=32, verbose=0, seed=0)
losses = history.history["loss"]
print(f"training loss: {losses[0]:.3f} after the first epoch, {losses[-1]:.3f} after "
      f"the last ({len(losses)})")

proba = gn.to_numpy(model.predict(X_test)).ravel()  # predict stays on the model's device
predicted = (proba >= 0.5).astype(int)
print(f"test accuracy: {(predicted == y_test).mean():.3f} on {len(y_test)} points")
