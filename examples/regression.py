"""Regression: a network learns a noisy sine wave.

Shows: a model for real-valued targets (no output activation, mean squared error),
inputs standardised by a ``Standardizer`` stored with the model, a learning-rate schedule,
``evaluate`` with extra metrics, and how close the error gets to the noise that no model
can remove.

Run it with ``python examples/regression.py`` (a few seconds on a laptop CPU).
``GPUNN_EXAMPLE_QUICK=1`` trains for fewer epochs.
"""

import os

import numpy as np

import gpunn as gn

QUICK = os.environ.get("GPUNN_EXAMPLE_QUICK") == "1"
NOISE = 0.1

rng = np.random.default_rng(0)
x = rng.uniform(-3, 3, size=(1200, 1)).astype(np.float32)
y = (np.sin(2 * x) + NOISE * rng.standard_normal(x.shape)).astype(np.float32)
X_train, X_test, y_train, y_test = gn.data.train_test_split(x, y, test_size=0.25, seed=0)

model = gn.Sequential([gn.Dense(1, 32, activation="tanh"),
                       gn.Dense(32, 32, activation="tanh"),
                       gn.Dense(32, 1)], seed=0)  # no activation: outputs any real number
# Fitted on the training rows only, then applied by fit, evaluate and predict alike.
model.preprocessor = gn.preprocessing.Standardizer().fit(X_train)
epochs = 40 if QUICK else 150
# At a constant rate Adam keeps bouncing around the minimum; decaying it to zero lets the
# last epochs settle (here it more than halves the test error).
model.fit(X_train, y_train, loss="mse", optimizer=gn.optim.Adam(lr=0.01), epochs=epochs,
          batch_size=32, verbose=0, seed=0,
          callbacks=[gn.callbacks.CosineDecay(epochs=epochs)])

scores = model.evaluate(X_test, y_test, metrics=["mae", "r2"])
print(f"test MSE: {scores['loss']:.4f} (the noise alone: {NOISE ** 2:.4f}), "
      f"MAE: {scores['mae']:.3f}, R²: {scores['r2']:.3f}")
