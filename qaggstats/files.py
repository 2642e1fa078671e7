"""Files: the one atomic-write helper, and saving and loading fits.

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

__all__ = ["atomic_write", "save_state", "load_state"]

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


_KIND = "qaggstats-fit"


def save_state(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a saved-fit state (see :meth:`QaggResults.saved_state`) atomically."""
    import pickle

    from ._version import __version__

    payload = pickle.dumps({"magic": _KIND, "version": __version__, "saved": state},
                           protocol=pickle.HIGHEST_PROTOCOL)
    return atomic_write(path, payload)


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a saved-fit state written by :func:`save_state`.

    Raises
    ------
    SaveError
        The file is missing, is not a qaggstats fit, or was written by an incompatible version.
    """
    import io
    import pickle

    from ._version import __version__

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SaveError(f"cannot read saved fit {path}: {err.strerror}") from err
    try:
        payload = pickle.load(io.BytesIO(raw))
    except Exception as err:  # any unpickling failure means a corrupt or foreign file
        raise SaveError(f"{path} is not a qaggstats saved fit (could not be read: {type(err).__name__})") from err
    if not isinstance(payload, dict) or payload.get("magic") != _KIND:
        raise SaveError(f"{path} is not a qaggstats saved fit")
    saved = str(payload.get("version"))
    if saved.split(".")[:2] != __version__.split(".")[:2]:
        raise SaveError(f"{path} was saved by qaggstats {saved}; this is {__version__}. "
                        f"Refit, or install qaggstats=={saved} to load it")
    return payload["saved"]
