"""Files: the one atomic-write helper.

Every file qaggstats writes (saved fits, reports, predictions from the command line) goes
through :func:`atomic_write`: the bytes go to a temporary file in the target's directory, which
then replaces the target in one step, so an interrupted write (an error, Ctrl-C) never leaves a
partial file where the old one was, and the temporary file is removed. A process killed
outright (SIGKILL, power loss) cannot remove its temporary file; its name carries the writer's
process id, and the next write of the same target removes the temporary files whose writer is
no longer running.

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write(d / "a.txt", b"hello").read_bytes()
b'hello'
"""
from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path
from typing import Any, Callable, Union

from .errors import SaveError

__all__ = ["atomic_write"]

Payload = Union[bytes, Callable[[Any], None]]


def atomic_write(path: str | os.PathLike, payload: Payload) -> Path:
    """Write ``payload`` (bytes, or a function writing to a binary file object) to ``path`` atomically.

    The file gets the permissions ``open()`` would give it (mkstemp's are 0600). On any
    exception, KeyboardInterrupt included, the temporary file is removed and an existing file
    at ``path`` is left untouched.

    Raises
    ------
    SaveError
        The directory does not exist or cannot be written.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise SaveError(f"cannot write {path}: directory {directory} does not exist")
    _remove_stale(directory, path.name)
    tmp = directory / f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
    try:
        # os.open with 0o666 honours the umask as open() would (mkstemp gives 0600), without
        # changing the process-wide umask
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as err:
        raise SaveError(f"cannot write {path}: {err.strerror}") from err
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(payload):
                payload(fh)
            else:
                fh.write(payload)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise SaveError(f"cannot write {path}: {err.strerror}") from err
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# temporary files of atomic_write: ".<name>.<pid>.<12 hex>.tmp" (older versions wrote no pid)
_LEGACY_AGE = 600.0  # seconds after which a temporary file without a pid is surely abandoned


def _remove_stale(directory: Path, name: str) -> None:
    """Remove temporary files of ``name`` left by writers that were killed."""
    pattern = re.compile(re.escape(f".{name}.") + r"(?:(\d+)\.)?[0-9a-f]{12}\.tmp")
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or not entry.is_file(follow_symlinks=False):
            continue
        try:
            if m.group(1) is not None:
                if _running(int(m.group(1))):
                    continue
            elif time.time() - entry.stat(follow_symlinks=False).st_mtime < _LEGACY_AGE:
                continue
            os.unlink(entry.path)
        except OSError:  # another process removed it first, or no permission: leave it
            continue


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists under another user, or cannot tell: keep its file
    return True
