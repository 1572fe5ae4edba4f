"""Publishing a generated design directory atomically.

``generate`` writes every file into a hidden staging directory beside OUTDIR (``.NAME.stage-*``)
and then swaps it with OUTDIR in one step (Linux ``renameat2(RENAME_EXCHANGE)``), so that a
kill at any instant leaves OUTDIR either the old design or the new one, complete. The old copy,
now under the staging name, is removed afterwards. Where the exchange is unavailable (not Linux,
or a file system without it) OUTDIR is first renamed aside (``.NAME.old-*``) and the staging
directory renamed in: a kill between the two renames leaves no OUTDIR.

Writers of one OUTDIR take turns under an exclusive lock (``.NAME.lock``, removed when done).
Whoever holds it removes the leftovers of interrupted runs: no live run can own them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import InputError
from .process import signals_held

__all__ = ["write_design", "write_atomically", "LOCK_WAIT"]

#: Seconds to wait for another process writing the same OUTDIR before giving up.
LOCK_WAIT = 30.0
_POLL = 0.05

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
#: Exchange errors meaning "not supported here" (old kernel, file system without it).
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP}


def write_design(outdir: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(staging)`` to fill a fresh directory, then make it ``outdir``.

    Raises
    ------
    InputError
        If another process keeps writing ``outdir`` for longer than :data:`LOCK_WAIT` seconds.
    OSError
        If a file cannot be written (full disk, read-only file system, ...); the error names
        ``outdir`` when it names no file, and nothing is left beside ``outdir``.
    """
    outdir = outdir.resolve()
    outdir.parent.mkdir(parents=True, exist_ok=True)
    with _locked(outdir):
        _remove_leftovers(outdir)
        staging = _make_staging(outdir)
        try:
            write(staging)
            _publish(staging, outdir)
        except OSError as err:
            if err.filename is None:
                raise OSError(err.errno, err.strerror, str(outdir)) from err
            raise
        finally:
            # After a swap this is the old design; after a failure, the partial new one. A
            # SIGTERM or SIGINT now is taken when it is gone.
            with signals_held():
                _remove(staging)


# -- the lock -------------------------------------------------------------------------------------

def _lock_path(outdir: Path) -> Path:
    return outdir.with_name(f".{outdir.name}.lock")


@contextlib.contextmanager
def _locked(outdir: Path) -> Iterator[None]:
    """Hold the exclusive lock of ``outdir`` (POSIX flock; the OS drops it when a holder dies)."""
    try:
        import fcntl
    except ImportError:     # not POSIX: concurrent writers are not kept apart
        yield
        return
    path = _lock_path(outdir)
    fd = _acquire(path, outdir, fcntl)
    try:
        yield
    finally:
        # Unlinked before it is released: a waiter then finds its file gone and opens a new one.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)


def _acquire(path: Path, outdir: Path, fcntl) -> int:
    deadline = time.monotonic() + LOCK_WAIT
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() > deadline:
                raise InputError(f"another codesign is writing {outdir}; try again when it "
                                 f"has finished") from None
            time.sleep(_POLL)
            continue
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            return fd
        os.close(fd)        # its holder removed it after we opened it


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino)


# -- staging and leftovers ------------------------------------------------------------------------

def _make_staging(outdir: Path) -> Path:
    """A new directory ``.NAME.stage-<8 hex digits>`` beside ``outdir``, with the mode a plain
    ``mkdir`` gives (``tempfile.mkdtemp`` would make OUTDIR private to its owner)."""
    while True:
        path = outdir.with_name(f".{outdir.name}.stage-{secrets.token_hex(4)}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def _remove_leftovers(outdir: Path) -> None:
    """Remove staging and old directories of interrupted writes of ``outdir`` (exact names
    only: ``.a.b.stage-*`` belongs to OUTDIR ``a.b``, not ``a``), and those of codesign versions
    that named them with :func:`tempfile.mkdtemp` (``.NAME.XXXXXXXX``, ``.NAME.old.XXXXXXXX``)."""
    name = re.escape(outdir.name)
    pattern = re.compile(rf"\.{name}\.((stage|old)-[0-9a-f]{{8}}|(old\.)?[a-z0-9_]{{8}})")
    for path in outdir.parent.iterdir():
        if pattern.fullmatch(path.name):
            _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# -- the swap -------------------------------------------------------------------------------------

@functools.cache
def _renameat2():
    """libc's ``renameat2`` (glibc 2.28+), or None."""
    try:
        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return func


def _exchange(a: Path, b: Path) -> bool:
    """Swap ``a`` and ``b`` atomically; False if the system cannot, or one does not exist."""
    func = _renameat2()
    if func is None:
        return False
    if func(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED or code == errno.ENOENT:
        return False
    raise OSError(code, os.strerror(code), str(b))


def _publish(staging: Path, outdir: Path) -> None:
    """Make ``staging`` ``outdir``; afterwards ``staging`` holds the old design, if any (the
    exchange), or nothing (the fallback)."""
    if _exchange(staging, outdir):
        return
    if not outdir.exists() and not outdir.is_symlink():
        os.rename(staging, outdir)
        return
    old = outdir.with_name(staging.name.replace(".stage-", ".old-", 1))
    with signals_held():
        os.rename(outdir, old)
        try:
            os.rename(staging, outdir)
        except BaseException:
            os.rename(old, outdir)
            raise
        _remove(old)


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one rename: a reader sees the old file or the new one,
    never part of one."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
