"""Files: the one atomic-write helper.

Every file qaggstats writes (saved fits, reports, predictions from the command line) goes
through :func:`atomic_write`: the bytes go to a temporary file in the target's directory, which
then replaces the target in one step, so an interrupted write (an error, Ctrl-C) never leaves a
partial file where the old one was, and the temporary file is removed.

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> atomic_write(d / "a.txt", b"hello").read_bytes()
b'hello'
"""
from __future__ import annotations

import os
import tempfile
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
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as err:
        raise SaveError(f"cannot write {path}: {err.strerror}") from err
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(payload):
                payload(fh)
            else:
                fh.write(payload)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise SaveError(f"cannot write {path}: {err.strerror}") from err
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
