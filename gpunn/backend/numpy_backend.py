"""NumPy (CPU) backend: the generic maths plus in-place fast paths."""

from __future__ import annotations

import array_api_compat.numpy as cnp
import numpy as np

from .base import Backend


class NumpyBackend(Backend):
    """CPU backend on NumPy through ``array_api_compat.numpy``.

    Parameters
    ----------
    dtype : str, default "float32"
    seed : int, optional
    """

    library = "numpy"

    def __init__(self, dtype: str = "float32", seed: int | None = None):
        super().__init__(cnp, device="cpu", dtype=dtype, seed=seed, name="cpu")

    def describe(self) -> str:
        return f"cpu (NumPy {np.__version__}, {self.dtype_name})"

    def owns(self, a) -> bool:
        return isinstance(a, np.ndarray)

    def asarray(self, a, dtype=None):
        if isinstance(dtype, str):
            dtype = np.dtype(dtype)
        if isinstance(a, np.ndarray):
            if dtype is None and a.dtype.kind == "f" and a.dtype != self.dtype:
                dtype = self.dtype
            return a if dtype is None or a.dtype == dtype else a.astype(dtype)
        return super().asarray(a, dtype)

    def to_numpy(self, a) -> np.ndarray:
        return a if isinstance(a, np.ndarray) else super().to_numpy(a)

    def linear(self, x, W, b):
        # Add the bias into matmul's fresh output instead of allocating a second array.
        out = np.matmul(x, W)
        out += b
        return out

    def optimizer_kernel(self, kind: str):
        from . import numpy_kernels

        return numpy_kernels.KERNELS.get(kind)
