"""Feature preprocessing stored with a model, so ``predict`` applies what ``fit`` saw."""

from __future__ import annotations

import numpy as np

from .backend import host_array


class Standardizer:
    """Per-feature ``(x - mean) / std``, fitted on host data.

    Constant features get a scale of 1 (they are centred, not divided by zero).

    Attributes
    ----------
    mean, scale : (features,) float64 host arrays, or None before ``fit``
    """

    kind = "standardize"

    def __init__(self, mean=None, scale=None):
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.scale = None if scale is None else np.asarray(scale, dtype=np.float64)
        self._device_cache = None

    def fit(self, X) -> Standardizer:
        """Learn mean and standard deviation from ``X (N, features)``."""
        X = np.asarray(host_array(X), dtype=np.float64)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"Standardizer.fit: expected a non-empty 2-D array, got shape "
                             f"{X.shape}")
        self.mean = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale = np.where(std > 0, std, 1.0)
        self._device_cache = None
        return self

    @property
    def fitted(self) -> bool:
        return self.mean is not None

    def transform(self, X, backend):
        """Standardise ``X`` (already on ``backend``) on the device."""
        if not self.fitted:
            raise RuntimeError("Standardizer.transform called before fit")
        if X.shape[1] != self.mean.shape[0]:
            raise ValueError(f"X: the model's standardisation expects {self.mean.shape[0]} "
                             f"features, got {X.shape[1]}")
        key = (id(backend), backend.dtype_name)
        if self._device_cache is None or self._device_cache[0] != key:
            self._device_cache = (key, backend.asarray(self.mean.astype(backend.dtype_name)),
                                  backend.asarray((1.0 / self.scale).astype(backend.dtype_name)))
        _, mean, inv = self._device_cache
        return (X - mean) * inv

    def state(self) -> tuple[dict, dict]:
        """(JSON-able description, host arrays) for model files."""
        return {"kind": self.kind}, {"mean": self.mean, "scale": self.scale}

    @classmethod
    def from_state(cls, arrays: dict) -> Standardizer:
        return cls(arrays["mean"], arrays["scale"])
