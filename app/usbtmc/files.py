"""Saving files without ever destroying the one being replaced.

Every save writes a temporary file in the target's directory, flushes it to disk and
renames it over the target (``os.replace`` is atomic on POSIX and Windows when both
names are on one filesystem, which the shared directory guarantees). A save that fails
part-way (disk full, quota, a file-size limit) removes its temporary file and leaves the
old file exactly as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from .errors import SaveError


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        if exc.errno == errno.EFBIG:
            return "the file would exceed the size limit"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return "the disk is full"
        if exc.strerror:
            return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def save_with(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Create ``path`` anew from what ``write`` puts into the binary file it is handed.

    Raises :class:`SaveError` with a one-line reason when anything fails; the previous
    file at ``path``, if any, is then untouched.
    """
    target = Path(path)
    existed = target.exists()
    temp_name = None
    try:
        handle, temp_name = _create_beside(target)
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        if existed:
            with contextlib.suppress(OSError):  # a replaced file keeps its permissions
                os.chmod(temp_name, os.stat(target).st_mode & 0o7777)
        os.replace(temp_name, target)
        temp_name = None
    except (OSError, ValueError, UnicodeError) as exc:
        kept = "the file there is unchanged" if existed else "nothing was written"
        raise SaveError(f"cannot save {target}: {_reason(exc)}; {kept}") from exc
    finally:
        if temp_name is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp_name)
    _sync_directory(target.parent)
    return target


def save_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Replace ``path`` with ``data`` atomically (see :func:`save_with`)."""
    return save_with(path, lambda stream: stream.write(data))


def save_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Replace ``path`` with ``text`` atomically (see :func:`save_with`)."""
    return save_bytes(path, text.encode(encoding))


def _create_beside(target: Path) -> tuple[int, str]:
    """A new file next to ``target``, created with the mode a plain open() would give (umask applies)."""
    for _ in range(100):
        name = str(target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp"))
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name beside the file")


def _sync_directory(directory: Path) -> None:
    """Flush the rename itself to disk where the platform allows it (POSIX)."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
