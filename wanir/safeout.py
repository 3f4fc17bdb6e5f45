"""Careful file output.

Every file wanir writes goes through :func:`write_output`: the data goes to a temporary file
in the target's directory that is then renamed into place, so a failure leaves no half
file; an existing directory or a symbolic link at the target is refused; a permission error
names the path; the suffix must match the format. :func:`check_output_path` and
:func:`check_output_dir` check a target before any work is done. :func:`csv_cell` escapes
cells a spreadsheet would run as a formula. (What wanir reads goes through wanir/safeio.py.)

Errors are :class:`wanir.errors.WanirError` (or the class a caller passes) with one line
that names the path.
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Callable

from .errors import WanirError


def _ps(p, n: int = 200) -> str:
    """A path for a message: as written, cut to ``n`` characters."""
    s = os.fspath(p) if isinstance(p, (str, os.PathLike)) else str(p)
    return s if len(s) <= n else s[: n - 3] + "..."



def check_output_path(path, allowed_suffixes=None, what: str = "-o", error: type[WanirError] = WanirError) -> Path:
    """Check an output path before any work is done: the suffix is one of
    ``allowed_suffixes`` (when given), the path is not an existing directory, not a symbolic
    link, and its parent is (or can be made) a directory. Returns it as a Path."""
    raw = os.fspath(path)
    p = Path(raw)
    if not raw or raw.endswith(os.sep) or p.name in ("", ".", ".."):
        raise error(f"{what} {_ps(raw)}: names a directory; give a file name")
    if allowed_suffixes is not None:
        suf = p.suffix.lower()
        if suf not in allowed_suffixes:
            got = f"'{p.suffix}'" if p.suffix else "no suffix"
            raise error(f"{what} {_ps(p)}: {got} does not match the output format; allowed: "
                        f"{', '.join(allowed_suffixes)}")
    if p.is_symlink():
        raise error(f"{what} {_ps(p)}: is a symbolic link; wanir does not write through links "
                    f"(remove it or give the target's path)")
    if p.is_dir():
        raise error(f"{what} {_ps(p)}: is an existing directory; give a file name")
    if p.exists() and not p.is_file():
        raise error(f"{what} {_ps(p)}: exists and is not a regular file")
    parent = p.parent
    if parent.exists() and not parent.is_dir():
        raise error(f"{what} {_ps(p)}: {_ps(parent)} is not a directory")
    return p


def check_output_dir(path, what: str = "-o", error: type[WanirError] = WanirError) -> Path:
    """Check an output directory before any work is done: it is an existing directory or
    does not exist yet (its nearest existing ancestor a directory), never a file, a device
    such as ``/dev/null`` or a symbolic link. Returns it as a Path."""
    raw = os.fspath(path)
    if not raw:
        raise error(f"{what}: an empty path; give a directory")
    p = Path(raw)
    if p.is_symlink():
        raise error(f"{what} {_ps(p)}: is a symbolic link; give the directory's own path")
    if p.exists():
        if not p.is_dir():
            kind = "a regular file" if p.is_file() else "not a regular file or directory (a device, FIFO or socket)"
            raise error(f"{what} {_ps(p)}: is {kind}; give a directory (it is created if missing)")
        if not os.access(p, os.W_OK | os.X_OK):
            raise error(f"{what} {_ps(p)}: cannot write: permission denied")
        return p
    anc = p.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise error(f"{what} {_ps(p)}: {_ps(anc)} is not a directory")
    return p


def write_output(path, data: bytes | str | Callable[[Path], None], allowed_suffixes=None, what: str = "-o",
                 error: type[WanirError] = WanirError) -> Path:
    """Write ``data`` (bytes, text, or a function that writes a given temporary path) to
    ``path`` atomically: checked with :func:`check_output_path`, written to a temporary file
    beside it, then renamed into place. Returns the path."""
    p = check_output_path(path, allowed_suffixes, what, error)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise error(f"{what} {_ps(p)}: cannot create the directory {_ps(p.parent)}: "
                    f"{e.strerror or e}") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name[:100]}.", suffix=".tmp" + p.suffix, dir=str(p.parent))
    except OSError as e:
        raise error(f"{what} {_ps(p)}: cannot write in {_ps(p.parent)}: {e.strerror or e}") from None
    tmp_path = Path(tmp)
    try:
        if callable(data):
            os.close(fd)
            fd = -1
            data(tmp_path)
        else:
            with os.fdopen(fd, "wb") as f:
                fd = -1
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp_path, 0o644)
        if p.is_symlink() or p.is_dir():  # appeared while we wrote
            raise error(f"{what} {_ps(p)}: became a link or directory while writing; not replaced")
        os.replace(tmp_path, p)
    except OSError as e:
        reason = "permission denied" if e.errno in (errno.EACCES, errno.EPERM) else (e.strerror or str(e))
        raise error(f"{what} {_ps(p)}: cannot write: {reason}") from None
    finally:
        if fd != -1:
            os.close(fd)
        if tmp_path.exists():
            try:
                tmp_path.unlink()
            except OSError:
                pass
    return p


# ----------------------------------------------------------------------------- CSV

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(v):
    """A CSV cell a spreadsheet shows as text: a string starting with ``= + - @`` (or a tab /
    carriage return) gets a leading ``'``; numbers (including negative ones) are left alone."""
    if isinstance(v, str) and v.startswith(_FORMULA_START):
        try:
            float(v)
            return v          # a plain number written as text ("-1.5")
        except ValueError:
            return "'" + v
    return v
