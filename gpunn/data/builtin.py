"""Built-in datasets for the command line: generated toy sets, scikit-learn's bundled
iris/digits, and (Fashion-)MNIST from IDX files (downloaded once, SHA-256 checked).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from . import synthetic as _toy
from .tables import Dataset, DatasetError

GENERATED = {
    "xor": lambda seed: _toy.make_xor(2000, noise=0.15, seed=seed),
    "moons": lambda seed: _toy.make_moons(2000, noise=0.2, seed=seed),
    "circles": lambda seed: _toy.make_circles(2000, noise=0.08, seed=seed),
    "spirals": lambda seed: _toy.make_spirals(3000, classes=3, noise=0.2, seed=seed),
}
BUILTIN = sorted([*GENERATED, "iris", "digits", "mnist", "fashion-mnist"])

MNIST_FILES = {
    "mnist": {
        "url": "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "files": {
            "train-images-idx3-ubyte.gz":
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz":
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz":
                "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz":
                "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
        "classes": [str(d) for d in range(10)],
    },
    "fashion-mnist": {
        "url": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "files": {
            "train-images-idx3-ubyte.gz":
                "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz":
                "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz":
                "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz":
                "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
        "classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                    "Shirt", "Sneaker", "Bag", "Ankle boot"],
    },
}


def cache_dir() -> Path:
    """Where downloads are kept: ``$GPUNN_CACHE``, else ``~/.cache/gpunn``."""
    return Path(os.environ.get("GPUNN_CACHE") or Path.home() / ".cache" / "gpunn")


def load_builtin(name: str, seed: int = 0, data_dir=None, download: bool = True) -> Dataset:
    """A built-in dataset by name (see :data:`BUILTIN`)."""
    if name in GENERATED:
        X, y = GENERATED[name](seed)
        classes = [str(c) for c in range(int(y.max()) + 1)]
        return Dataset(X, y, "binary" if len(classes) == 2 else "multiclass", classes,
                       [f"x{i}" for i in range(X.shape[1])], "label")
    if name in ("iris", "digits"):
        try:
            from sklearn import datasets as skd
        except ImportError:
            raise DatasetError(f"dataset {name!r} comes with scikit-learn: pip install "
                               "scikit-learn (or gpunn[sklearn])") from None
        bunch = skd.load_iris() if name == "iris" else skd.load_digits()
        names = [str(n) for n in getattr(bunch, "feature_names", [])] or \
            [f"x{i}" for i in range(bunch.data.shape[1])]
        classes = [str(c) for c in getattr(bunch, "target_names", range(10))]
        return Dataset(bunch.data.astype(np.float32), bunch.target.astype(np.int64),
                       "multiclass", classes, names, "target")
    if name in MNIST_FILES:
        return load_mnist(name, data_dir=data_dir, download=download)
    raise DatasetError(f"unknown dataset {name!r}; expected one of: {', '.join(BUILTIN)}")


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, with its header checked."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    if not 1 <= ndim <= 4 or len(raw) < 4 + 4 * ndim:
        raise DatasetError(f"{path}: IDX header declares {ndim} dimensions")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape))
    body = raw[4 + 4 * ndim:]
    if len(body) != size:
        raise DatasetError(f"{path}: IDX header declares shape {shape} ({size} bytes) but "
                           f"{len(body)} bytes follow")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, dest: Path, sha256: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as resp:
            while block := resp.read(1 << 20):
                out.write(block)
        got = _sha256(Path(tmp))
        if got != sha256:
            raise DatasetError(f"{url}: SHA-256 mismatch (got {got}, expected {sha256}); "
                               "the download is corrupt or the mirror changed")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_mnist(name: str = "mnist", data_dir=None, download: bool = True) -> Dataset:
    """MNIST or Fashion-MNIST: from ``data_dir`` if given, else the cache, downloading
    (with SHA-256 checks) what is missing.

    Files may be gzipped (as distributed) or not (``train-images-idx3-ubyte``).
    """
    spec = MNIST_FILES[name]
    folder = Path(data_dir) if data_dir else cache_dir() / name
    arrays = {}
    for fname, sha in spec["files"].items():
        candidates = [folder / fname, folder / fname[:-3]]
        found = next((p for p in candidates if p.exists()), None)
        if found is None and data_dir:
            raise DatasetError(f"{name}: {fname} (or {fname[:-3]}) not found in {folder}")
        if found is None:
            if not download:
                raise DatasetError(f"{name}: {fname} is not in {folder} and downloading is off")
            try:
                _fetch(spec["url"] + fname, folder / fname, sha)
            except (urllib.error.URLError, OSError, TimeoutError) as exc:
                raise DatasetError(
                    f"{name}: could not download {fname} ({exc}); if this machine is "
                    f"offline, copy the four IDX files into a folder and pass --data-dir "
                    f"(or into {folder})") from None
            found = folder / fname
        elif found.suffix == ".gz" and not data_dir and _sha256(found) != sha:
            raise DatasetError(f"{found}: SHA-256 mismatch; delete it to download again")
        arrays[fname.split("-")[0] + "-" + fname.split("-")[1]] = read_idx(found)
    X, y = arrays["train-images"], arrays["train-labels"]
    Xt, yt = arrays["t10k-images"], arrays["t10k-labels"]
    if len(X) != len(y) or len(Xt) != len(yt):
        raise DatasetError(f"{name}: image and label files disagree in length")
    flat = X.reshape(len(X), -1).astype(np.float32) / 255.0
    flat_t = Xt.reshape(len(Xt), -1).astype(np.float32) / 255.0
    names = [f"px{i}" for i in range(flat.shape[1])]
    return Dataset(flat, y.astype(np.int64), "multiclass", list(spec["classes"]), names,
                   "label", X_test=flat_t, y_test=yt.astype(np.int64))
