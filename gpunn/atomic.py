"""Safe file output: destinations checked before any work (:func:`check_outputs`), and
atomic writes: every file gpunn writes (models, checkpoints, predictions,
benchmark results, plots) goes to a temporary file in the same folder, is flushed to disk
and renamed over the destination, so a full disk or a kill leaves the previous file
intact. The result has the permissions a plain ``open`` would give (the user's umask).

A temporary file is named after its destination and its writer
(``.gpunn-<destination tag>-<host tag>-<pid>-<random><suffix>``): SIGTERM while it is
written (``docker stop``, ``timeout``, Slurm, systemd) removes it as Ctrl-C does, and one
left by a writer killed outright (SIGKILL, a power cut) is removed by the next write of
the same destination once its writer is gone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import signal
import socket
import tempfile
import threading
import time

#: Exit status of a command ended by SIGTERM (128 + 15), as a shell reports it.
SIGTERM_STATUS = 128 + signal.SIGTERM

#: A temporary file of a writer on another machine (a shared folder) counts as stale once
#: unchanged this long (its process cannot be asked about); a write in progress keeps it
#: changing.
STALE_AFTER_S = 3600.0


class Terminated(SystemExit):
    """SIGTERM arrived: raised where the program was, so ``finally`` blocks (the atomic
    writer's removal of its temporary file) run; uncaught, Python exits with status 143
    as the signal's default action would, without a traceback."""

    def __init__(self):
        super().__init__(SIGTERM_STATUS)


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def terminate_as_exception():
    """While inside: SIGTERM raises :class:`Terminated` instead of killing the process at
    once, unless the program installed its own handler (kept as it is). Main thread only
    (signal handlers can be set nowhere else)."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tag(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()[:10]


def _temp_prefix(path: str) -> str:
    """The start of every temporary name for ``path`` (short whatever ``path``'s length:
    a name within the limit stays writable through its temporary file)."""
    return f".gpunn-{_tag(os.path.basename(path))}-"


_HOST = _tag(socket.gethostname())
_TEMP = re.compile(r"\.gpunn-[0-9a-f]{10}-(?P<host>[0-9a-f]{10})-(?P<pid>\d+)-")


def _writer_gone(pid: int, written: float) -> bool:
    """Whether process ``pid`` of this machine, which last wrote a file at ``written``
    (seconds since the epoch), is gone: no such process, a zombie (killed, not yet reaped),
    or a process started after that write (the number was reused)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, another user's
        pass
    try:  # Linux: the process's state and start time
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open("/proc/stat") as fh:
            boot = next(float(line.split()[1]) for line in fh if line.startswith("btime"))
    except (OSError, ValueError, IndexError, StopIteration):
        return False  # elsewhere: alive as far as can be told
    started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return fields[0] == "Z" or started > written + 1.0


def remove_stale_temporaries(path, suffix: str | None = None) -> list[str]:
    """Remove the temporary files of ``path`` left by killed writers: of this machine,
    those whose process is gone; of another (a shared folder), those unchanged for
    :data:`STALE_AFTER_S`. A running writer's file is left alone. With ``suffix``, also
    the temporary files of earlier gpunn versions (``.gpunn-XXXXXXXX<suffix>``, which do
    not say their destination) unchanged for :data:`STALE_AFTER_S`.

    Returns
    -------
    list of str
        The files removed.
    """
    path = os.path.realpath(os.fspath(path))
    folder, prefix = os.path.dirname(path), _temp_prefix(path)
    removed = []
    legacy = re.compile(r"\.gpunn-[a-z0-9_]{8}" + re.escape(suffix) + "$") if suffix \
        else None
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix) or
                 (legacy is not None and legacy.match(n))]
    except OSError:
        return removed
    now = time.time()
    for name in names:
        match = _TEMP.match(name)
        full = os.path.join(folder, name)
        try:
            written = os.stat(full).st_mtime
            if match is None:  # an earlier version's: its age alone can tell
                stale = now - written > STALE_AFTER_S
            else:
                pid, here = int(match["pid"]), match["host"] == _HOST
                stale = (here and pid != os.getpid() and _writer_gone(pid, written)) or \
                    (not here and now - written > STALE_AFTER_S)
            if stale:
                os.unlink(full)
                removed.append(full)
        except OSError:
            continue  # gone meanwhile, or not ours to remove
    return removed


def _named(exc: OSError, tmp: str, shown: str) -> OSError:
    """``exc`` naming the user's file where it named the temporary one, or no file (a
    full disk while writing through a file handle)."""
    if exc.errno is None or (exc.filename not in (None, tmp) and exc.filename2 != tmp):
        return exc
    return type(exc)(exc.errno, exc.strerror or os.strerror(exc.errno), shown)


@contextlib.contextmanager
def atomic_path(path, suffix: str = ".tmp"):
    """Yield a temporary path next to ``path``; on success it replaces ``path``.

    Stale temporary files of ``path`` (writers killed earlier) are removed first; SIGTERM
    during the write removes the temporary file and raises :class:`Terminated`. An error
    names ``path``, never the temporary file.

    Parameters
    ----------
    path : str or PathLike
    suffix : str
        Kept on the temporary name (writers that pick a format by extension need it).
    """
    shown = os.fspath(path)
    path = os.path.realpath(shown)  # through a symlink: replace its target
    folder = os.path.dirname(path)
    remove_stale_temporaries(path, suffix)
    with terminate_as_exception():
        try:
            fd, tmp = tempfile.mkstemp(
                prefix=f"{_temp_prefix(path)}{_HOST}-{os.getpid()}-", suffix=suffix,
                dir=folder)
        except OSError as exc:
            raise type(exc)(exc.errno, f"cannot write next to this file ({exc.strerror})",
                            shown) from None
        os.close(fd)
        try:
            yield tmp
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
            os.replace(tmp, path)  # atomic: readers see the old file or the new one
        except OSError as exc:
            _unlink(tmp)
            raise _named(exc, tmp, shown) from None
        except BaseException:
            _unlink(tmp)
            raise
    try:  # make the rename itself durable
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _unlink(tmp: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def write_text(path, text: str) -> None:
    """``text`` into ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)


def _existing_ancestor(folder: str) -> str:
    while folder and not os.path.exists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return folder or "."


def probe_name(path: str, shown: str | None = None) -> None:
    """Try the final name ``path`` itself: in an existing folder, create it and remove it
    again (when it does not exist yet); in folders still to be made, hold each of their
    names and the file's against the file system's limit. Changes nothing.

    Raises
    ------
    OSError
        Naming ``shown`` (the path as the user gave it) and the problem.
    """
    shown = os.fspath(shown if shown is not None else path)
    real = os.path.realpath(os.fspath(path))
    folder = os.path.dirname(real) or "."
    try:
        if not os.path.isdir(folder):
            ancestor = _existing_ancestor(folder)
            limit = os.pathconf(ancestor, "PC_NAME_MAX")
            rest = os.path.relpath(real, ancestor).split(os.sep)
            too_long = [p for p in rest if len(os.fsencode(p)) > limit]
            if too_long:
                raise OSError(errno.ENAMETOOLONG, f"File name too long ({len(too_long[0])} "
                              f"characters in one name; at most {limit})", shown)
            return
        if os.path.lexists(real):
            return  # replaced by a rename in its folder, which the folder probe covers
        fd = os.open(real, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # made meanwhile: a name that exists can be written over
    except OSError as exc:
        if exc.filename == shown:
            raise
        raise type(exc)(exc.errno, f"cannot create this file ({exc.strerror})", shown) \
            from None
    os.close(fd)
    os.unlink(real)


def check_outputs(outputs, inputs=(), folders=(), probes=()) -> None:
    """Before any work: no output is one of the command's inputs or given twice (files and
    folders alike), every output file's folder exists (created if missing) and is
    writable, and every output's final name can be made there (tried).

    Parameters
    ----------
    outputs : list of str
        Files the command will write.
    inputs : list of str
        Files it reads (never overwritten).
    folders : list of str
        Folders it will write into (created if missing).
    probes : list of str
        Further names to try without creating their folders (e.g. a checkpoint's name at
        its last epoch).

    Raises
    ------
    OSError, ValueError
        Naming the path and the problem.
    """
    ins = [os.path.realpath(p) for p in inputs if p]
    seen: dict[str, str] = {}

    def claim(path, kind):
        real = os.path.realpath(path)
        if real in ins:
            raise ValueError(f"{path}: is also an input of this command; writing it would "
                             "destroy the input: choose another output file")
        if real in seen:
            raise ValueError(f"{path}: given for two outputs (also as {seen[real]}); each "
                             "would overwrite the other")
        seen[real] = f"{path} ({kind})"
        return real

    outputs = [os.fspath(p) for p in outputs if p]
    folders = [os.fspath(f) for f in folders if f]
    for path in outputs:
        real = claim(path, "a file")
        if path.endswith(("/", os.sep)) or os.path.isdir(real):
            raise ValueError(f"{path}: is a folder; expected a file name")
        if os.path.exists(real) and not os.path.isfile(real):
            raise ValueError(f"{path}: exists and is not a regular file (a device or "
                             "pipe); expected a file name")
    for folder in folders:
        claim(folder, "a folder")
    every = folders + [os.path.dirname(os.path.realpath(p)) or "." for p in outputs]
    for folder in every:
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise ValueError(f"{folder}: exists and is not a folder")
        parent = os.path.dirname(os.path.abspath(folder))
        while parent and not os.path.exists(parent):
            parent = os.path.dirname(parent)
        if parent and not os.path.isdir(parent):
            raise ValueError(f"{parent}: exists and is not a folder")
    # Names in folders still to be made are held against the limits before any is made.
    for folder in folders:
        if not os.path.isdir(folder):
            probe_name(os.path.join(folder, "x"), folder)
    for path in [*outputs, *probes]:
        if not os.path.isdir(os.path.dirname(os.path.realpath(path)) or "."):
            probe_name(path)
    for folder in every:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise type(exc)(exc.errno, f"cannot make this folder ({exc.strerror})",
                            folder) from None
        try:  # a real probe: permission bits say little for root or special folders
            fd, probe = tempfile.mkstemp(prefix=".gpunn-probe-", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise PermissionError(f"{folder}: cannot write into this folder ({exc})") \
                from None
    for path in [*outputs, *probes]:  # the final names themselves, tried
        probe_name(path)
