"""Data for training and inference: checks, device placement, batches.

A dataset goes to the model's device when it fits (and is shuffled there), or stays in
host memory and streams to the device batch by batch (``device_data=False``; pinned
double buffering on CUDA). The training loop takes its batches from one data source, a
:class:`Batches`: :class:`DeviceBatches` gathers them from the dataset on the device,
:class:`StreamedBatches` copies them from host memory, and several ranks each take their
piece of every global batch of either (:meth:`gpunn.distributed.plan.Plan.batches`).
Another order of the rows is a :class:`Batches` of its own (one that overrides
:meth:`Batches.order`), given to ``fit(batch_source=...)``.
"""

from __future__ import annotations

import numpy as np

from ..backend import NumpyBackend, host_array
from ..backend.ops import DLPACK_CUDA, beyond_range, dlpack_device, require_finite
from ..errors import describe

#: The most host memory one batch of a sparse matrix densifies into at prediction.
SPARSE_CHUNK_BYTES = 64 << 20


def is_sparse(x) -> bool:
    """Whether ``x`` is a SciPy sparse matrix or array (told without importing SciPy)."""
    return type(x).__module__.startswith("scipy.sparse") and hasattr(x, "tocsr")


class SparseRows:
    """A SciPy sparse matrix kept sparse in host memory and read by rows as dense
    batches: indexing with a slice or row indices gives those rows as a dense
    ``(rows, features)`` array, written into one buffer reused from batch to batch (valid
    until the next read, as every data source's batch is).

    So a dataset costs its non-zeros, and a step ``batch x features``: a 200,000 x 50,000
    matrix of 200,000 non-zeros trains in megabytes where its dense form needs 75 GiB.

    Parameters
    ----------
    matrix : scipy.sparse matrix or array, 2-D
    dtype : dtype
        Of the batches (the model's, so that moving them to the device copies nothing).
    """

    ndim = 2

    def __init__(self, matrix, dtype):
        # CSR: a batch's rows are contiguous runs of the stored values. SciPy holds no
        # 16-bit floats: those are kept as float32 and cast a batch at a time.
        self.dtype = np.dtype(dtype)
        stored = np.float32 if self.dtype.kind == "f" and self.dtype.itemsize < 4 \
            else self.dtype
        self.matrix = matrix.tocsr().astype(stored, copy=False)
        self.shape = tuple(self.matrix.shape)
        self.nbytes = int(self.matrix.data.nbytes + self.matrix.indices.nbytes
                          + self.matrix.indptr.nbytes)
        self._buffer = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx):
        rows = self.matrix[idx]
        k = rows.shape[0]
        if self._buffer is None or self._buffer.shape[0] < k:
            self._buffer = np.empty((k, self.shape[1]), dtype=self.dtype)
        out = self._buffer[:k]
        if self.matrix.dtype != self.dtype:  # a 16-bit model's batch
            out[...] = rows.toarray()
            return out
        out.fill(0)  # SciPy adds the stored values into `out`
        rows.toarray(out=out)
        return out

    def finite(self) -> bool:
        """No NaN or Inf among the stored values (the others are zeros)."""
        return bool(np.isfinite(self.matrix.data).all())

    def chunk(self, batch_size: int) -> int:
        """Rows per batch at prediction: ``batch_size`` or fewer, so that a dense batch
        stays within :data:`SPARSE_CHUNK_BYTES`."""
        per_row = max(1, self.shape[1] * self.dtype.itemsize)
        return max(1, min(batch_size, SPARSE_CHUNK_BYTES // per_row))


def _sparse_input(model, x, what: str, backend):
    """A sparse ``x`` as :class:`SparseRows` of the model's dtype, its shape checked."""
    shape = model.input_shape()
    if x.ndim != 2 or (shape is not None and len(shape) != 1):
        wanted = "a 2-D array (samples, features)" if shape is None or len(shape) == 1 \
            else f"a {1 + len(shape)}-D array (samples, {', '.join(map(str, shape))})"
        raise ValueError(f"{what}: expected {wanted}, got {describe(x)}")
    if shape is not None and x.shape[1] != shape[0]:
        raise ValueError(f"{what}: the first layer {model.leaves()[0].label} expects "
                         f"{shape[0]} features, got {describe(x)}")
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{what}: expected a numeric array, got {describe(x)}")
    # The stored values before the cast, as a dense X is checked: a finite value beyond
    # the model's dtype is said to be so, not "NaN or Inf" once the cast made it Inf.
    stored = x.data if getattr(x, "format", None) in ("csr", "csc", "coo", "bsr") \
        else x.tocsr().data
    problem = beyond_range(stored, backend.dtype_name) if x.dtype.kind == "f" else None
    if problem and problem != "contains NaN or Inf":
        raise ValueError(f"{what}: {problem}; rescale the data or use a wider dtype")
    return SparseRows(x, backend.dtype)


def check_finite(backend, X, what: str, given=None) -> None:
    """A ``ValueError`` naming ``what`` unless ``X`` (placed on ``backend``, or
    :class:`SparseRows`: its stored values) is finite; see
    :func:`gpunn.backend.ops.require_finite`."""
    if not isinstance(X, SparseRows):
        require_finite(backend.xp, X, what, given)
    elif not X.finite():
        raise ValueError(f"{what}: contains NaN or Inf")


def check_preprocessable(X, preprocessor, what: str) -> None:
    """Refuse sparse input under a preprocessor: centring would make it dense."""
    if preprocessor is not None and isinstance(X, SparseRows):
        raise ValueError(f"{what}: sparse input cannot go through the model's "
                         f"preprocessor ({type(preprocessor).__name__}), which would make it "
                         "dense; standardise without centring beforehand (e.g. scikit-learn's "
                         "MaxAbsScaler) and train without one")


def as_input(model, x, what: str = "X", backend=None):
    """``x`` on ``backend`` (default the model's) as a float array ``(batch,
    *input_shape)`` of the model's per-sample input shape; a SciPy sparse ``x`` as
    :class:`SparseRows` in host memory instead (densified a batch at a time).

    Raises
    ------
    TypeError, ValueError
        Naming ``what``, what was expected and what was given.
    """
    backend = backend or model.backend
    if is_sparse(x):
        return _sparse_input(model, x, what, backend)
    try:
        x = backend.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what}: expected a numeric array, got {describe(x)} ({exc})") \
            from None
    shape = model.input_shape()  # per sample: (features,), (channels, length), ...
    if x.ndim != (2 if shape is None else 1 + len(shape)):
        wanted = ("a 2-D array (samples, features)" if shape is None or len(shape) == 1
                  else f"a {1 + len(shape)}-D array (samples, {', '.join(map(str, shape))})")
        raise ValueError(f"{what}: expected {wanted}, got {describe(x)}")
    if not backend.is_floating(x.dtype):
        x = backend.xp.astype(x, backend.dtype)
    if shape is not None and tuple(x.shape[1:]) != tuple(shape):
        wanted = (f"{shape[0]} features" if len(shape) == 1
                  else f"samples of shape {tuple(shape)}")
        raise ValueError(f"{what}: the first layer {model.leaves()[0].label} expects "
                         f"{wanted}, got {describe(x)}")
    return x


def placement(model, X, device_data):
    """The backend a dataset should live on: the model's, or a host NumPy one to stream
    from when it does not fit on the device (or ``device_data=False``)."""
    if is_sparse(X):  # stays sparse in host memory, streamed as dense batches
        return NumpyBackend(dtype=model.backend.dtype_name)
    if device_data is None:
        if model.backend.owns(X) or _on_gpu_of(model.backend, X):
            return model.backend
        nbytes = getattr(X, "nbytes", None)
        if nbytes is None:
            try:
                nbytes = host_array(X).nbytes if hasattr(X, "__len__") else 0
            except (TypeError, ValueError):
                nbytes = 0  # not an array at all: as_input says what is wrong with it
        device_data = model.backend.fits_on_device(int(nbytes))
    if device_data:
        return model.backend
    return NumpyBackend(dtype=model.backend.dtype_name)


def _on_gpu_of(backend, X) -> bool:
    """True for another library's array (a PyTorch CUDA tensor) already on ``backend``'s
    GPU: taking it over costs nothing, whatever its size."""
    return backend.library == "cupy" and dlpack_device(X) == (DLPACK_CUDA, backend.index)


def split_rows(X, at: int):
    """``X[:at]`` and ``X[at:]``: views of a placed array, or two :class:`SparseRows`."""
    if isinstance(X, SparseRows):
        return (SparseRows(X.matrix[:at], X.dtype), SparseRows(X.matrix[at:], X.dtype))
    return X[:at], X[at:]


def as_dataset(model, X, y, loss, what: str = "", device_data=None, preprocessor=None):
    """Check and place ``(X, y)`` for ``loss``: inputs finite and of the right width,
    one target per row, targets as the loss wants them (``loss.prepare_target``) and
    standardised by the model's ``target_scaler`` when it has one, the model's
    preprocessing (or ``preprocessor``, e.g. a checkpoint's) applied.

    Returns
    -------
    X, T : arrays on the device (host NumPy arrays when streaming)
    streaming : bool
    """
    xs, ys = f"{what}X", f"{what}y"
    backend = placement(model, X, device_data)
    given = X
    X = as_input(model, X, xs, backend)
    if X.shape[0] == 0:
        raise ValueError(f"{xs}: expected at least one sample, got {describe(X)}")
    check_finite(backend, X, xs, given)
    n = int(X.shape[0])
    shape = _shape(y)
    if shape is None or len(shape) not in (1, 2) or shape[0] != n:
        raise ValueError(f"{ys}: expected {n} targets (one per row of X), got "
                         f"{describe(y)}")
    scaler = getattr(model, "target_scaler", None)
    if scaler is not None:
        y = scaler.scale_targets(y, ys)
    T = loss.prepare_target(backend, y, model.output_dim, ys)
    preprocessor = preprocessor if preprocessor is not None else model.preprocessor
    check_preprocessable(X, preprocessor, xs)
    if preprocessor is not None:
        X = preprocessor.transform(X, backend)
    return X, T, backend is not model.backend


class Batches:
    """The batches of one dataset, an epoch at a time: the training loop's data source.

    An epoch is :meth:`order` (the order of the rows for it, drawn once) and then
    :meth:`rows` (the batches of the rows in that order); :meth:`epoch` yields them with
    their row counts, which is all the loop reads. The kinds differ in how rows reach the
    device (:meth:`rows`); a different batch order overrides :meth:`order`, and may wrap
    another source to keep its kind (as scikit-learn's estimators do).

    Parameters
    ----------
    backend : Backend
        The model's: batches are computed there, and its generator shuffles.
    X : (N, *input_shape) array
        On ``backend``'s device, or in host memory for :class:`StreamedBatches`.
    T : (N,) or (N, outputs) array, or None
        Targets, where ``X`` is.
    W : (N,) array or None
        Sample weights, where ``T`` is.
    batch_size : int
    shuffle : bool
        A fresh random order every epoch (else the rows as stored).

    Attributes
    ----------
    n : int
        Rows.
    streaming : bool
        The rows live in host memory.
    """

    streaming = False

    def __init__(self, backend, X, T=None, W=None, batch_size: int = 32,
                 shuffle: bool = False):
        self.backend, self.X, self.T, self.W = backend, X, T, W
        self.batch_size, self.shuffle = int(batch_size), bool(shuffle)
        self.n = int(X.shape[0])

    def __len__(self) -> int:
        """Batches per epoch."""
        return -(-self.n // self.batch_size)

    def order(self):
        """The order of the rows for the next epoch: ``(N,)`` row indices (on the device
        or in host memory), or None for the rows as stored. Called once per epoch, before
        its first batch; by default a fresh permutation from the backend's generator when
        ``shuffle``, as several ranks draw it too."""
        return self.backend.random.permutation(self.n) if self.shuffle else None

    def rows(self, order, size: int):
        """``(x, t, w)`` on the device for each run of ``size`` rows of ``order`` (all
        rows as stored when None; the last run may be shorter): ``t`` and ``w`` None
        where ``T`` or ``W`` is. A yielded batch is valid until the next one."""
        raise NotImplementedError(f"{type(self).__name__}: a data source defines "
                                  "rows(order, size)")

    def epoch(self):
        """One epoch: ``(x, t, w, rows)`` per batch of ``batch_size`` rows, in the order
        :meth:`order` gives."""
        for x, t, w in self.rows(self.order(), self.batch_size):
            yield x, t, w, int(x.shape[0])


class DeviceBatches(Batches):
    """Batches of a dataset on the device: views of it in stored order, else gathered
    through the order into buffers reused from step to step (no shuffled copy of the
    dataset, so memory and time stay linear)."""

    def rows(self, order, size: int):
        backend, X, T, W = self.backend, self.X, self.T, self.W
        if order is None:
            for lo in range(0, self.n, size):
                hi = min(lo + size, self.n)  # the standard leaves out-of-range stops undefined
                yield X[lo:hi, ...], (None if T is None else T[lo:hi, ...]), (
                    None if W is None else W[lo:hi])
            return
        idx = order if backend.owns(order) else backend.asarray(order)
        count, bufs = int(idx.shape[0]), None
        for lo in range(0, count, size):
            x, t, w = bufs = gather(backend, X, T, W, idx[lo:min(lo + size, count)], bufs)
            yield x, t, w


class StreamedBatches(Batches):
    """Batches of host arrays copied onto the device as they are needed (on CUDA through
    pinned buffers, one batch ahead of the compute)."""

    streaming = True

    def rows(self, order, size: int):
        order = None if order is None else host_array(order)
        yield from streamed(self.backend, self.X, self.T, self.W, order, size)


def source(backend, X, T=None, W=None, batch_size: int = 32, shuffle: bool = False,
           streaming: bool = False) -> Batches:
    """The data source of checked, placed data: :class:`StreamedBatches` for data in host
    memory (``streaming``), else :class:`DeviceBatches`."""
    kind = StreamedBatches if streaming else DeviceBatches
    return kind(backend, X, T, W, batch_size, shuffle)


def iterate(backend, X, T, batch_size: int, shuffle: bool, streaming: bool, W=None):
    """``(x, t, w)`` batches on the device, in a fresh random order when ``shuffle``:
    rows of ``X``, of the targets ``T`` and of the sample weights ``W (N,)``, the same rows
    of each (``t`` and ``w`` None where ``T`` or ``W`` is). One epoch of :func:`source`."""
    for x, t, w, _ in source(backend, X, T, W, batch_size, shuffle, streaming).epoch():
        yield x, t, w


def gather(backend, X, T, W, idx, bufs=None):
    """``(x, t, w)``: rows ``idx`` of ``X``, ``T`` and ``W`` (those not None), written into
    ``bufs`` (the previous batch's) where the backend can."""
    if W is None:  # the usual case, taken per step: no tuples built beyond take_rows'
        if T is None:
            return backend.take_rows(X, idx, None if bufs is None else bufs[0]), None, None
        # Inputs and targets in one launch on CUDA (take_rows takes a tuple).
        x, t = backend.take_rows((X, T), idx, None if bufs is None else bufs[:2])
        return x, t, None
    if T is None:
        x, w = backend.take_rows((X, W), idx, None if bufs is None else (bufs[0], bufs[2]))
        return x, None, w
    return backend.take_rows((X, T, W), idx, bufs)


def streamed(backend, X, T, W, order, batch_size: int):
    """``(x, t, w)`` batches of host arrays streamed onto ``backend`` (in ``order``): the
    weights travel beside inputs and targets, row for row."""
    parts = backend.batches(X, T, order, batch_size)
    if W is None:
        for x, t in parts:
            yield x, t, None
        return
    for (x, t), (w, _) in zip(parts, backend.batches(W, None, order, batch_size)):
        yield x, t, w


def _shape(y):
    """The shape of an array or nested sequence, None for ragged or scalar input."""
    shape = getattr(y, "shape", None)
    if shape is not None:
        return tuple(shape)
    if hasattr(y, "__dlpack__"):  # an array of a library that speaks only DLPack
        return tuple(host_array(y).shape)
    try:
        shape = np.shape(y)
    except ValueError:  # ragged
        return None
    return shape or None
