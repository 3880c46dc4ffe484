"""CuPy (CUDA) backend. Imported only when a CUDA device is asked for."""

from __future__ import annotations

import array_api_compat.cupy as ccp
import cupy
import numpy as np

from . import cupy_kernels
from .base import BFLOAT16_HINT, Backend
from .fastpath import fast_update_for
from .ops import DLPACK_CUDA, dlpack_device, refuse_autograd
from .random import HostRandom


class CupyRandom(HostRandom):
    """The host generator for weights and batch order, CuPy's for per-step masks.

    Weights (:meth:`normal`, :meth:`uniform`) and the shuffle (:meth:`permutation`) are
    drawn by NumPy's PCG64 on the host, as on the CPU: the same seed gives the same model
    and the same batch order on either device, so a network trained on the GPU follows
    the CPU run step for step (one copy per layer at initialisation and one index vector
    per epoch). Dropout masks are drawn on the GPU (no host round trip per step), by a
    ``cupy.random.RandomState`` seeded from the same seed; with dropout the two devices
    therefore draw different masks.
    """

    def seed(self, seed: int | None) -> None:
        super().seed(seed)
        # seed=None draws fresh entropy for both generators; a fixed seed fixes both.
        self._reseed_masks(int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0]))

    def _reseed_masks(self, seed: int) -> None:
        with self.backend.context():
            self._masks = cupy.random.RandomState(seed % 2**63)

    def set_state(self, state) -> None:
        # The host generator resumes exactly (weights, batch order); the masks' generator
        # cannot export its state and is reseeded from the restored one, so a resumed run
        # with dropout is reproducible but not equal to an uninterrupted one.
        if state is not None:
            super().set_state(state)
            self._reseed_masks(int(state.get("state", {}).get("state", 0)))

    def bernoulli(self, shape, p: float):
        with self.backend.context():
            return (self._masks.random_sample(shape, dtype=cupy.float32) < p).astype(
                self.backend.dtype)


#: The loss-head kernels' launchers, by the output activation the loss applies.
_HEADS = {"softmax": cupy_kernels.softmax_xent, "sigmoid": cupy_kernels.sigmoid_xent,
          "identity": cupy_kernels.squared_error}


class CupyBackend(Backend):
    """GPU backend on CuPy through ``array_api_compat.cupy``.

    Parameters
    ----------
    index : int
        CUDA device ordinal.
    dtype : str, default "float32"
    seed : int, optional
    """

    library = "cupy"
    random_type = CupyRandom
    supports_views = True

    def __init__(self, index: int = 0, dtype: str = "float32", seed: int | None = None):
        from ..precision import apply_to_cupy

        self.index = index
        self._device = cupy.cuda.Device(index)
        super().__init__(ccp, device=self._device, dtype=dtype, seed=seed, name=f"cuda:{index}")
        apply_to_cupy()

    def _resolve_dtype(self, name: str):
        if name != "bfloat16":
            return super()._resolve_dtype(name)
        # CuPy 14 computes in ml_dtypes' bfloat16 (elementwise, reductions, 2-D cuBLAS
        # matmul); CuPy 13 has no such type.
        major = int(cupy.__version__.split(".")[0])
        try:
            import ml_dtypes
        except ImportError:
            ml_dtypes = None
        if major < 14 or ml_dtypes is None:
            found = f"CuPy {cupy.__version__}" + ("" if ml_dtypes else " without ml_dtypes")
            raise ValueError(f"{BFLOAT16_HINT}; found {found}")
        return np.dtype(ml_dtypes.bfloat16)

    def describe(self) -> str:
        props = cupy.cuda.runtime.getDeviceProperties(self.index)
        name = props["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
        return f"cuda:{self.index} ({name}, CuPy {cupy.__version__}, {self.dtype_name})"

    def context(self):
        return self._device

    def owns(self, a) -> bool:
        return isinstance(a, cupy.ndarray) and a.device.id == self.index

    def zeros(self, shape, dtype=None):
        # array_api_compat's CuPy zeros ignores device=: allocate on the current device.
        with self._device:
            return cupy.zeros(shape, dtype=dtype or self.dtype)

    def asarray(self, a, dtype=None):
        with self._device:
            if not isinstance(a, cupy.ndarray) and dlpack_device(a)[0] == DLPACK_CUDA:
                # GPU memory of another library (PyTorch, JAX): taken over without a copy,
                # on whichever GPU it is; moved below if that is not this one.
                refuse_autograd(a)
                a = cupy.from_dlpack(a)
            if isinstance(a, cupy.ndarray) and a.device.id != self.index:
                a = cupy.asarray(a)  # peer copy onto this device
            return super().asarray(a, dtype)

    def take_rows(self, X, idx, out=None):
        if isinstance(X, tuple):
            both = cupy_kernels.gather_batch(*X, idx, out) if len(X) == 2 else None
            return super().take_rows(X, idx, out) if both is None else both
        if out is not None and out.shape[0] == idx.shape[0] and out.dtype == X.dtype:
            return cupy.take(X, idx, axis=0, out=out)
        return cupy.take(X, idx, axis=0)

    # Fused kernels (gpunn/backend/kernels/gpunn_kernels.cu). Each falls back to the
    # generic CuPy expression where it has no kernel (float16, softmax, odd layouts).
    def bias_activation(self, x, W, b, activation, params):
        if (cupy_kernels.can_bias_act(activation.name, x.dtype) and x.dtype == W.dtype == b.dtype
                and b.flags.c_contiguous):
            z = cupy.matmul(x, W)  # cuBLAS; bias and activation in one pass after it
            return z, cupy_kernels.bias_act_forward(z, b, activation.name, _param(params))
        return super().bias_activation(x, W, b, activation, params)

    def activation_backward(self, activation, z, y, grad, params):
        out = cupy_kernels.act_backward(z, y, grad, activation.name, _param(params))
        if out is None:
            return super().activation_backward(activation, z, y, grad, params)
        return out

    def dense_backward(self, x, W, z, y, grad, activation, params, need_input_grad,
                       out=None, bias_done=False):
        if out is None:
            return super().dense_backward(x, W, z, y, grad, activation, params,
                                          need_input_grad, out, bias_done)
        gW, gb = out
        # The derivative and the bias gradient in one launch, where there is a kernel.
        dz = None if bias_done else cupy_kernels.act_backward_bias(
            z, y, grad, "identity" if activation is None else activation.name,
            _param(params), gb)
        if dz is None:
            dz = grad if activation is None else self.activation_backward(
                activation, z, y, grad, params)
            if not bias_done:
                cupy.sum(dz, axis=0, out=gb)
        cupy.matmul(x.T, dz, out=gW)
        return gW, gb, (cupy.matmul(dz, W.T) if need_input_grad else None)

    # Convolution patches, pooling and layer normalisation: one kernel each way (the
    # matmuls around the patches go to cuBLAS); batch normalisation: a per-channel
    # reduction and an elementwise kernel each way. CuPy's generic expressions for dtypes
    # and layouts without a kernel.
    def im2col(self, x, kernel, stride, padding):
        with self._device:
            cols = cupy_kernels.im2col(x, kernel, stride, padding)
        return super().im2col(x, kernel, stride, padding) if cols is None else cols

    def col2im(self, cols, shape, kernel, stride, padding):
        with self._device:
            gx = cupy_kernels.col2im(cols, shape, kernel, stride, padding)
        return super().col2im(cols, shape, kernel, stride, padding) if gx is None else gx

    def pool_forward(self, x, kind, kernel, stride):
        with self._device:
            out = cupy_kernels.pool_forward(x, kind, kernel, stride)
        return super().pool_forward(x, kind, kernel, stride) if out is None else out

    def pool_backward(self, grad, arg, kind, shape, kernel, stride):
        with self._device:
            gx = cupy_kernels.pool_backward(grad, arg, kind, shape, kernel, stride)
        if gx is None:
            return super().pool_backward(grad, arg, kind, shape, kernel, stride)
        return gx

    def batchnorm_forward(self, x, gamma, beta, eps, mean=None, var=None):
        with self._device:
            out = cupy_kernels.batchnorm_forward(x, gamma, beta, eps, mean, var)
        return super().batchnorm_forward(x, gamma, beta, eps, mean, var) if out is None \
            else out

    def batchnorm_backward(self, grad, xhat, gamma, inv, batch_stats):
        with self._device:
            out = cupy_kernels.batchnorm_backward(grad, xhat, gamma, inv, batch_stats)
        return super().batchnorm_backward(grad, xhat, gamma, inv, batch_stats) \
            if out is None else out

    def layernorm_forward(self, x, gamma, beta, eps):
        with self._device:
            out = cupy_kernels.layernorm_forward(x, gamma, beta, eps)
        return super().layernorm_forward(x, gamma, beta, eps) if out is None else out

    def layernorm_backward(self, grad, xhat, gamma, inv):
        with self._device:
            out = cupy_kernels.layernorm_backward(grad, xhat, gamma, inv)
        return super().layernorm_backward(grad, xhat, gamma, inv) if out is None else out

    def scatter_add_rows(self, target, indices, values):
        # cupyx.scatter_add: one atomic-add kernel, repeated indices summed.
        if target.dtype not in (cupy.float32, cupy.float64) or values.dtype != target.dtype:
            return super().scatter_add_rows(target, indices, values)
        import cupyx

        with self._device:
            cupyx.scatter_add(target, indices, values)
        return target

    fused_losses = tuple(_HEADS)

    def fused_loss(self, kind, z, target, bias, bias_grad, loss_slot=None, metric_slot=None):
        return _HEADS[kind](z, target, bias, bias_grad, loss_slot, metric_slot)

    def softmax_cross_entropy(self, z, target):
        out = cupy_kernels.softmax_xent(z, target)
        return super().softmax_cross_entropy(z, target) if out is None else out

    # Faster versions of the optimiser rules' generic updates (gpunn.optim.rules): one
    # fused kernel each over the (flat) parameter buffer. False (the rule's generic CuPy
    # expressions run) for layouts without a kernel or with GPUNN_CUDA_KERNELS=0; float16
    # master weights never need one (16-bit training updates float32 master weights).
    @fast_update_for("sgd", cupy_kernels.UPDATE_DTYPES)
    def _sgd_update(self, p, g, state, hp) -> bool:
        return cupy_kernels.sgd(p, g, state.get("velocity"), hp)

    @fast_update_for("adam", cupy_kernels.UPDATE_DTYPES)
    def _adam_update(self, p, g, state, hp) -> bool:
        return cupy_kernels.adam(p, g, state["m"], state["v"], hp)

    @fast_update_for("rmsprop", cupy_kernels.UPDATE_DTYPES)
    def _rmsprop_update(self, p, g, state, hp) -> bool:
        return cupy_kernels.rmsprop(p, g, state["square_avg"], state.get("velocity"), hp)

    @fast_update_for("adagrad", cupy_kernels.UPDATE_DTYPES)
    def _adagrad_update(self, p, g, state, hp) -> bool:
        return cupy_kernels.adagrad(p, g, state["sum_sq"], hp)

    def fits_on_device(self, nbytes: int) -> bool:
        with self._device:
            free, _ = cupy.cuda.runtime.memGetInfo()
            free += cupy.get_default_memory_pool().free_bytes()
        # The dataset (batches are gathered from it, never a shuffled copy), leaving a
        # fifth for weights and activations.
        return nbytes <= 0.8 * free

    def batches(self, X, T, order, batch_size: int):
        """Stream host batches through two pinned buffers, copied on a side stream one
        batch ahead of the compute stream (double buffering)."""
        import cupyx

        # With an order, its rows only (a rank's share may be fewer than the data's).
        n = int(X.shape[0]) if order is None else len(order)
        arrays = [a for a in (X, T) if a is not None]
        with self._device:
            side = cupy.cuda.Stream(non_blocking=True)
            compute = cupy.cuda.get_current_stream()
            shapes = [(min(batch_size, n),) + tuple(a.shape[1:]) for a in arrays]
            pinned = [[cupyx.empty_pinned(sh, a.dtype) for _ in range(2)]
                      for sh, a in zip(shapes, arrays)]
            device = [[cupy.empty(sh, a.dtype) for _ in range(2)]
                      for sh, a in zip(shapes, arrays)]
            copied, released = [None, None], [None, None]

            def stage(slot: int, lo: int) -> int:
                hi = min(lo + batch_size, n)
                rows = hi - lo
                if copied[slot] is not None:
                    copied[slot].synchronize()  # the pinned slot's last copy has left
                if released[slot] is not None:
                    side.wait_event(released[slot])  # compute is done with the device slot
                for a, pins, devs in zip(arrays, pinned, device):
                    pin = pins[slot][:rows]
                    if order is None:
                        pin[...] = a[lo:hi]
                    elif isinstance(a, np.ndarray):
                        np.take(a, order[lo:hi], axis=0, out=pin)
                    else:  # rows of a host source read by indexing (a sparse matrix's)
                        pin[...] = a[order[lo:hi]]
                    devs[slot][:rows].set(pin, stream=side)
                copied[slot] = side.record()
                return rows

            try:
                rows, slot = stage(0, 0), 0
                for lo in range(0, n, batch_size):
                    following = stage(1 - slot, lo + batch_size) if lo + batch_size < n else 0
                    compute.wait_event(copied[slot])
                    views = [devs[slot][:rows] for devs in device]
                    yield views[0], (views[1] if T is not None else None)
                    released[slot] = compute.record()
                    slot, rows = 1 - slot, following
            finally:
                # The pinned buffers go back to CuPy's pool when this frame ends (also when
                # the caller stops early): no copy from them may still be in flight.
                side.synchronize()

    def synchronize(self) -> None:
        self._device.synchronize()

    def release_memory(self) -> None:
        super().release_memory()
        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()

def _param(params: dict) -> float:
    """The one hyper-parameter an activation kernel takes (alpha or a; 0 when none)."""
    return float(params.get("alpha", params.get("a", 0.0)))
