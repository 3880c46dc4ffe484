"""Model files in the safetensors format: the arrays and JSON header of the ``.npz`` format
(:mod:`gpunn.files.format`) in a container that PyTorch, JAX, Rust and the Hugging Face tools
read without pickle.

Layout: every array of the ``.npz`` under the same name (``param/<layer>/<name>``,
``optim/<slot>/<name>``, ``prep/<name>``), little-endian as safetensors requires; the JSON
header, which the ``.npz`` keeps as the byte array ``__gpunn__``, is the metadata entry
``__gpunn__`` (safetensors metadata maps strings to strings). Dense weights ``W`` are
``(in_features, out_features)``: the transpose of a ``torch.nn.Linear`` weight.

:class:`SafetensorsArchive` shows a file to :mod:`gpunn.files.format` as the ``.npz`` reader
does, so both formats pass the same checks. The container itself is parsed by the
``safetensors`` library (``pip install "gpunn[safetensors]"``), which refuses offsets that
overlap, leave gaps or disagree with a tensor's shape and dtype before anything is read.
"""

from __future__ import annotations

import os

import numpy as np

from ..atomic import atomic_path

SUFFIX = ".safetensors"
HEADER_KEY = "__gpunn__"
INSTALL_HINT = ('.safetensors model files need the safetensors package: pip install '
                '"gpunn[safetensors]"')
#: The safetensors dtypes NumPy holds; others (BF16, F8_*) are refused by name.
DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
          "I32": np.int32, "I16": np.int16, "I8": np.int8, "U64": np.uint64,
          "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_}


class SafetensorsError(ValueError):
    """The container is malformed (the caller names the file)."""


def is_safetensors(path) -> bool:
    """True for a path (not a buffer) ending in ``.safetensors``."""
    return isinstance(path, (str, os.PathLike)) and os.fspath(path).endswith(SUFFIX)


def _library():
    try:
        import safetensors
        import safetensors.numpy
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return safetensors


class SafetensorsArchive:
    """The arrays of a ``.safetensors`` model file, read lazily.

    Offers what :mod:`gpunn.files.format` uses of NumPy's ``NpzFile``: ``files``, ``[name]``,
    ``close`` and ``with``; plus :meth:`declared`, a member's shape and dtype from the
    header alone. The gpunn header appears as the member ``__gpunn__`` (UTF-8 bytes).

    Parameters
    ----------
    path : str or os.PathLike

    Raises
    ------
    SafetensorsError
        Not a safetensors file, or one without a gpunn header.
    ImportError
        The safetensors package is missing (with the install line).
    """

    def __init__(self, path):
        library = _library()
        try:
            self._file = library.safe_open(os.fspath(path), framework="numpy")
            self._file.__enter__()
            names, metadata = list(self._file.keys()), dict(self._file.metadata() or {})
        except library.SafetensorError as exc:
            raise SafetensorsError(str(exc)) from None
        self._error = library.SafetensorError
        if HEADER_KEY not in metadata:
            self.close()
            raise SafetensorsError(f"no {HEADER_KEY!r} metadata entry, so a safetensors "
                                   "file but not a gpunn model file")
        unknown = sorted(set(metadata) - {HEADER_KEY}) + (
            [f"{HEADER_KEY} (a tensor)"] if HEADER_KEY in names else [])
        if unknown:
            self.close()
            raise SafetensorsError(f"unexpected entries {unknown[:5]} besides the gpunn "
                                   "header")
        self._header = metadata[HEADER_KEY].encode("utf-8")
        self.files = [HEADER_KEY, *names]

    def declared(self, key: str) -> tuple[tuple, np.dtype]:
        """Shape and dtype member ``key`` declares (nothing of its data is read)."""
        if key == HEADER_KEY:
            return (len(self._header),), np.dtype(np.uint8)
        try:
            view = self._file.get_slice(key)
            shape, name = tuple(int(d) for d in view.get_shape()), view.get_dtype()
        except self._error as exc:
            raise SafetensorsError(f"has an unreadable header ({exc})") from None
        if name not in DTYPES:
            raise SafetensorsError(f"has dtype {name}; expected one of {', '.join(DTYPES)}")
        return shape, np.dtype(DTYPES[name])

    def __getitem__(self, key: str) -> np.ndarray:
        if key == HEADER_KEY:
            return np.frombuffer(self._header, dtype=np.uint8)
        self.declared(key)  # refuses dtypes NumPy cannot hold before reading
        try:
            return self._file.get_tensor(key)
        except self._error as exc:
            raise SafetensorsError(str(exc)) from None

    def close(self) -> None:
        self._file.__exit__(None, None, None)

    def __enter__(self) -> SafetensorsArchive:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write(path, arrays: dict) -> None:
    """Write a model's arrays to ``path`` atomically (temporary file, fsync, rename).

    Parameters
    ----------
    path : str
        Ends in ``.safetensors``.
    arrays : dict of str -> numpy.ndarray
        As :mod:`gpunn.files.write` builds them for an ``.npz``: contiguous little-endian
        arrays and the JSON header as the uint8 array ``__gpunn__``.
    """
    library = _library()
    metadata = {HEADER_KEY: arrays[HEADER_KEY].tobytes().decode("utf-8")}
    tensors = {k: v for k, v in arrays.items() if k != HEADER_KEY}
    with atomic_path(path, suffix=SUFFIX + ".tmp") as tmp:
        library.numpy.save_file(tensors, tmp, metadata=metadata)
