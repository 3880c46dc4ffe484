"""Loading models: ``gpunn.load`` and in-memory bytes. The format itself (header, arrays,
checks against crafted files) is :mod:`gpunn.files.format`; this module turns its parts
into a :class:`gpunn.Sequential` on the device asked for."""

from __future__ import annotations

import io
import warnings

from ..model import Sequential
from .format import ModelFileError, ModelParts, _fail, read

__all__ = ["load", "loads", "assemble", "ModelFileError"]


def load(path, device=None) -> Sequential:
    """Read a model saved with :meth:`Sequential.save` onto ``device`` (any
    ``get_backend`` spec).

    Raises
    ------
    ModelFileError
        The file is not a valid gpunn model: crafted, truncated or mismatched files
        are rejected without executing anything.
    FileNotFoundError
        No such file.
    """
    from ..backend import get_backend

    backend = get_backend(device)  # a bad device is the caller's error, not the file's
    return assemble(read(path), backend, path)


def loads(data: bytes, device=None) -> Sequential:
    """A model from :func:`dumps` bytes, with the checks of :func:`load`."""
    return load(io.BytesIO(data), device=device)


def assemble(parts: ModelParts, backend, path="model") -> Sequential:
    """A model on ``backend`` from the parts of a model file."""
    dtype = parts.dtype
    if dtype == "bfloat16":
        try:
            backend.with_dtype(dtype)
        except ValueError as exc:
            # Exact: every bfloat16 weight is a float32 value.
            warnings.warn(f"gpunn: {path}: a bfloat16 model, loaded as float32 on "
                          f"{backend.name} ({exc})", UserWarning, stacklevel=3)
            dtype = "float32"
    # Built on a twin of the caller's backend with a generator of its own: seeding the
    # caller's (as building a model does) would change its next random draws.
    twin = backend.with_generator(0)
    try:
        model = Sequential(parts.layers, device=twin, dtype=dtype, seed=0)
    except (ValueError, TypeError) as exc:
        _fail(path, f"invalid model ({exc})")
    parts.put_into(model)
    model.loss, model.metrics, model.optimizer = parts.loss, parts.metrics, parts.optimizer
    model.preprocessor, model.extra = parts.preprocessor, parts.extra
    model.target_scaler = parts.target_scaler
    model.train_state = parts.training
    return model

