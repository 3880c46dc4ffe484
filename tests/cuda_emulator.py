"""gpunn's CUDA kernels run on the CPU, through tests/cuda_emu/emu.h and g++.

:func:`load` compiles ``gpunn/backend/kernels/gpunn_kernels.cu`` once per source text and
returns a :class:`Module` whose functions take the same call as CuPy's ``RawKernel``:
``kernel(grid, block, args, shared_mem=0)``, with NumPy arrays (or the CuPy stand-in's
arrays, which are NumPy arrays) where CuPy takes device arrays. Tests skip when no C++
compiler is installed.
"""

from __future__ import annotations

import ctypes
import hashlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parents[1]
SOURCE = ROOT / "gpunn" / "backend" / "kernels" / "gpunn_kernels.cu"
HEADER = Path(__file__).with_name("cuda_emu") / "emu.h"

_C_TYPES = {"long long": ctypes.c_longlong, "int": ctypes.c_int, "unsigned": ctypes.c_uint,
            "float": ctypes.c_float, "double": ctypes.c_double}
_SUFFIX_TYPE = {"f32": "float", "f64": "double"}


def compiler() -> str | None:
    return shutil.which("g++") or shutil.which("c++")


def _signatures(text: str) -> dict[str, list[str]]:
    """Exported kernel name -> C types of its parameters (``T`` unresolved)."""
    text = text.replace("\\\n", "\n")
    sigs = {}
    for name, params in re.findall(r'extern "C" __global__ void (\w+)_##S\(([^)]*)\)', text):
        types = []
        for p in params.split(","):
            decl = " ".join(p.split()[:-1]) + (" *" if "*" in p else "")
            types.append("ptr" if "*" in decl else decl.replace("const ", "").strip())
        sigs[name] = types
    return sigs


class Kernel:
    """One emulated kernel, called as CuPy calls a ``RawKernel``."""

    def __init__(self, lib, name: str, suffix: str, types: list[str]):
        self.name, self._lib = f"{name}_{suffix}", lib
        self._fn = getattr(lib, self.name)
        scalar = _SUFFIX_TYPE[suffix]
        self._types = [None if t == "ptr" else _C_TYPES[scalar if t == "T" else t]
                       for t in types]
        self._fn.argtypes = [ctypes.c_void_p if t is None else t for t in self._types]
        self._fn.restype = None
        self.launches = 0

    def __call__(self, grid, block, args, shared_mem: int = 0, seed: int = 0):
        if len(args) != len(self._types):
            raise TypeError(f"{self.name}: {len(self._types)} arguments, got {len(args)}")
        grid, block = tuple(grid) + (1,), tuple(block) + (1,)
        c_args = []
        for a, t in zip(args, self._types):
            if t is None and isinstance(a, np.integer) and a == 0:
                c_args.append(None)  # a null pointer
            elif t is None:
                if not isinstance(a, np.ndarray) or not a.flags.c_contiguous:
                    raise TypeError(f"{self.name}: a pointer argument must be a contiguous "
                                    f"array, got {type(a).__name__}")
                c_args.append(a.ctypes.data)
            else:
                c_args.append(t(a.item() if isinstance(a, np.generic) else a).value)
        self._lib.emu_configure(grid[0], grid[1], block[0], block[1], shared_mem,
                                seed + self.launches)
        self.launches += 1
        self._fn(*c_args)
        if self._lib.emu_error():
            raise RuntimeError(f"{self.name}: a barrier not reached by every thread")


class Module:
    def __init__(self, path: Path, signatures: dict[str, list[str]]):
        self._lib = ctypes.CDLL(str(path))
        self._lib.emu_configure.argtypes = [ctypes.c_uint] * 4 + [ctypes.c_ulonglong,
                                                                  ctypes.c_uint]
        self._lib.emu_error.restype = ctypes.c_int
        self.signatures = signatures
        self._kernels: dict[str, Kernel] = {}

    def get_function(self, full_name: str) -> Kernel:
        if full_name not in self._kernels:
            name, suffix = full_name.rsplit("_", 1)
            self._kernels[full_name] = Kernel(self._lib, name, suffix, self.signatures[name])
        return self._kernels[full_name]


_CACHE: dict[str, Module] = {}


def load(source: Path = SOURCE) -> Module:
    """The emulated kernels of ``source`` (compiled once per source text)."""
    text = source.read_text()
    key = hashlib.sha256((text + HEADER.read_text()).encode()).hexdigest()[:16]
    if key not in _CACHE:
        out = Path(tempfile.gettempdir()) / f"gpunn-emu-{key}.so"
        if not out.exists():
            tmp = out.with_suffix(f".{id(out)}.tmp")
            subprocess.run([compiler(), "-std=c++17", "-O1", "-shared", "-fPIC", "-Wall",
                            "-Werror", "-include", str(HEADER), "-x", "c++", str(source),
                            "-o", str(tmp)], check=True, capture_output=True, text=True)
            tmp.replace(out)
        _CACHE[key] = Module(out, _signatures(text))
    return _CACHE[key]
