"""Safe file output: destinations checked before any work (:func:`check_outputs`), and
atomic writes: every file gpunn writes (models, checkpoints, predictions,
benchmark results, plots) goes to a temporary file in the same folder, is flushed to disk
and renamed over the destination, so a full disk or a kill leaves the previous file
intact. The result has the permissions a plain ``open`` would give (the user's umask)."""

from __future__ import annotations

import contextlib
import os
import tempfile


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path, suffix: str = ".tmp"):
    """Yield a temporary path next to ``path``; on success it replaces ``path``.

    Parameters
    ----------
    path : str or PathLike
    suffix : str
        Kept on the temporary name (writers that pick a format by extension need it).
    """
    path = os.path.realpath(os.fspath(path))  # through a symlink: replace its target
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".gpunn-", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
        os.replace(tmp, path)  # atomic: readers see the old file or the new one
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def write_text(path, text: str) -> None:
    """``text`` into ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)


def check_outputs(outputs, inputs=(), folders=()) -> None:
    """Before any work: every output file's folder exists (created if missing) and is
    writable, no output is one of the command's inputs, every output folder is usable.

    Raises
    ------
    OSError, ValueError
        Naming the path and the problem.
    """
    ins = [os.path.realpath(p) for p in inputs if p]
    seen = {}
    for path in [os.fspath(p) for p in outputs if p]:
        real = os.path.realpath(path)
        if real in ins:
            raise ValueError(f"{path}: is also an input of this command; writing it would "
                             "destroy the input: choose another output file")
        if real in seen:
            raise ValueError(f"{path}: given for two outputs (also as {seen[real]}); each "
                             "would overwrite the other")
        seen[real] = path
        if path.endswith(("/", os.sep)) or os.path.isdir(real):
            raise ValueError(f"{path}: is a folder; expected a file name")
        if os.path.exists(real) and not os.path.isfile(real):
            raise ValueError(f"{path}: exists and is not a regular file (a device or "
                             "pipe); expected a file name")
        folders = (*folders, os.path.dirname(real) or ".")
    for folder in folders:
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise ValueError(f"{folder}: exists and is not a folder")
        parent = os.path.dirname(os.path.abspath(folder))
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if parent and not os.path.isdir(parent):
            raise ValueError(f"{parent}: exists and is not a folder")
        os.makedirs(folder, exist_ok=True)
        try:  # a real probe: permission bits say little for root or special folders
            fd, probe = tempfile.mkstemp(prefix=".gpunn-probe-", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise PermissionError(f"{folder}: cannot write into this folder ({exc})") \
                from None
