"""Seeded random generators of the backends: weights, dropout masks, shuffling.

The generic generator draws on the host (NumPy's PCG64) and moves the samples to the
device, so its state can be saved in checkpoints. The CuPy backend's
:class:`~gpunn.backend.cupy_backend.CupyRandom` draws weights and batch order the same way
(the same seed gives the same model and batch order on either device) and only dropout
masks on the GPU (no host round trip per step).
"""

from __future__ import annotations

import numpy as np


def check_seed(seed, what: str = "seed"):
    """``seed`` unchanged when it is None or an integer in [0, 2**63); else a ValueError."""
    import numbers

    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or \
            not 0 <= int(seed) < 2**63:
        raise ValueError(f"{what}: expected None or an integer in [0, 2**63), got "
                         f"{seed!r}")
    return int(seed)


class HostRandom:
    """A NumPy generator feeding any backend.

    Parameters
    ----------
    backend : Backend
        Where samples go (its ``asarray``) and in which dtype.
    seed : int, optional
    """

    def __init__(self, backend, seed: int | None = None):
        self.backend = backend
        self.seed(seed)

    def seed(self, seed: int | None) -> None:
        """Reseed; ``None`` draws fresh entropy."""
        self._rng = np.random.default_rng(check_seed(seed))

    def state(self):
        """The generator's state (JSON-serialisable), or None where it cannot be read."""
        return self._rng.bit_generator.state

    def set_state(self, state) -> None:
        """Restore a state from :meth:`state`."""
        self._rng.bit_generator.state = state

    def normal(self, shape, std: float = 1.0, mean: float = 0.0):
        """Normal samples of the backend dtype, shape ``shape``."""
        return self.backend.asarray(self._rng.standard_normal(shape) * std + mean)

    def uniform(self, shape, low: float = 0.0, high: float = 1.0):
        """Uniform samples in ``[low, high)`` of the backend dtype, shape ``shape``."""
        return self.backend.asarray(self._rng.uniform(low, high, size=shape))

    def permutation(self, n: int):
        """A random permutation of ``range(n)`` as an int64 array on the device."""
        return self.backend.asarray(self._rng.permutation(n).astype(np.int64))

    def bernoulli(self, shape, p: float):
        """Ones (probability ``p``) and zeros in the backend dtype."""
        return self.backend.asarray((self._rng.random(shape) < p).astype(np.float32))

    def for_backend(self, backend) -> HostRandom:
        """The same generator (shared state) delivering to ``backend`` (another dtype)."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.backend = backend
        return clone
