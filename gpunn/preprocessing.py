"""Feature preprocessing stored with a model, so ``predict`` applies what ``fit`` saw."""

from __future__ import annotations

import numpy as np

from .backend import host_array
from .backend.ops import beyond_range, dtype_range


class Standardizer:
    """Per-feature ``(x - mean) / std``, fitted on host data.

    Constant features get a scale of 1 (they are centred, not divided by zero). The
    statistics are exact at any magnitude of finite data (1e-200 or 1e200).

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
        if not np.all(np.isfinite(X)):
            raise ValueError("Standardizer.fit: X contains NaN or Inf")
        # Two passes over each feature divided by the power of two at or below its largest
        # magnitude: exact (a power of two), and no square can overflow (1e200**2) or
        # underflow (1e-200**2) whatever the magnitude of finite data.
        peak = np.max(np.abs(X), axis=0)
        unit = np.ldexp(1.0, np.frexp(np.where(peak > 0, peak, 1.0))[1] - 1)
        scaled = X / unit
        mean = scaled.mean(axis=0)
        spread = np.sqrt(np.mean((scaled - mean) ** 2, axis=0))
        with np.errstate(over="ignore", under="ignore", divide="ignore"):
            self.mean, std = mean * unit, spread * unit
            tiny = (spread > 0) & ~(1.0 / std <= np.finfo(np.float64).max)
        if np.any(tiny):
            j = int(np.flatnonzero(tiny)[0])
            raise ValueError(f"Standardizer.fit: feature {j} varies by {float(std[j]):.3g}, "
                             "a spread too small to divide by in float64 (its reciprocal "
                             "overflows); rescale that feature")
        self.scale = np.where(spread > 0, std, 1.0)
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
            self.check_dtype(backend.dtype_name, "Standardizer ")  # once per backend
            self._device_cache = (key, backend.asarray(self.mean.astype(backend.dtype_name)),
                                  backend.asarray((1.0 / self.scale).astype(backend.dtype_name)))
        _, mean, inv = self._device_cache
        return (X - mean) * inv

    def scale_targets(self, y, what: str = "y"):
        """``(y - mean) / scale`` on the host in float64, ``(N, features)``: targets in the
        units a network trained under this target scaler compares against. Done before the
        targets meet the model's dtype, so ``1e6``-sized targets never pass through float16.
        """
        if not self.fitted:
            raise RuntimeError("Standardizer.scale_targets called before fit")
        try:
            y = np.asarray(host_array(y), dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{what}: expected numeric targets for the model's target "
                            f"scaling, got {type(y).__name__} ({exc})") from None
        y = y.reshape(len(y), -1) if y.ndim == 1 else y
        if y.ndim != 2 or y.shape[1] != self.mean.shape[0]:
            raise ValueError(f"{what}: the model's target scaling expects "
                             f"{self.mean.shape[0]} target column(s), got shape {y.shape}")
        return (y - self.mean) / self.scale

    def inverse_transform(self, Y, backend):
        """``Y * scale + mean`` on the device: standardised values (``Y`` on ``backend``,
        ``(N, features)``) back in the units :meth:`fit` saw. A target scaler's way back
        from the network's outputs."""
        if not self.fitted:
            raise RuntimeError("Standardizer.inverse_transform called before fit")
        if Y.shape[1] != self.mean.shape[0]:
            raise ValueError(f"the model's target scaling expects {self.mean.shape[0]} "
                             f"outputs, got {Y.shape[1]}")
        dtype = backend.dtype_name
        # Not cached with transform's arrays: one model may hold both kinds of scaler.
        return Y * backend.asarray(self.scale.astype(dtype)) + \
            backend.asarray(self.mean.astype(dtype))

    def check_dtype(self, dtype: str, prefix: str = "") -> None:
        """Raise a ``ValueError`` unless ``mean``, ``scale`` and the ``1 / scale`` that
        :meth:`transform` multiplies by are finite in ``dtype`` (the model's), and
        ``1 / scale`` is no smaller than its smallest normal number: otherwise every
        feature would become NaN, Inf or 0 on the device. ``prefix`` goes before the
        arrays' names in the message (``"prep/"``: as a model file names them).
        """
        if not self.fitted:
            return
        try:
            largest, smallest = dtype_range(dtype)
        except ValueError:  # a dtype NumPy does not know: no range to check against
            return
        for key, value in (("mean", self.mean), ("scale", self.scale)):
            problem = beyond_range(value, dtype)
            if problem:
                raise ValueError(f"{prefix}{key} {problem}")
        if self.scale.size and not float(np.min(self.scale)) > 0:
            raise ValueError(f"{prefix}scale must be positive, holds "
                             f"{float(np.min(self.scale)):.3g}")
        with np.errstate(over="ignore", divide="ignore"):
            inverse = 1.0 / self.scale  # as transform computes it, then casts
        low, high = float(np.min(self.scale)), float(np.max(self.scale))
        if not float(np.max(inverse)) <= largest:
            raise ValueError(f"{prefix}scale holds {low:.3g}, whose reciprocal (what "
                             f"features are multiplied by) is beyond {dtype}'s range "
                             f"({largest:.3g})")
        if float(np.min(inverse)) < smallest:
            raise ValueError(f"{prefix}scale holds {high:.3g}, whose reciprocal (what "
                             f"features are multiplied by) is below {dtype}'s smallest "
                             f"normal number ({smallest:.3g}): every feature would be 0")

    def state(self) -> tuple[dict, dict]:
        """(JSON-able description, host arrays) for model files."""
        return {"kind": self.kind}, {"mean": self.mean, "scale": self.scale}

    @classmethod
    def from_state(cls, arrays: dict) -> Standardizer:
        return cls(arrays["mean"], arrays["scale"])
