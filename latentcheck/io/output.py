"""Writing a rendered report: to stdout, to a regular file atomically, or to a device in place.

A regular file (new or existing, possibly behind a symbolic link) is written through a
temporary file in its directory and renamed onto it, so a reader never sees half a report.
Anything that is not a regular file (a character device such as ``/dev/null``, a FIFO, a
socket, ``/dev/stdout``, a file under ``/proc`` or ``/sys``) is opened and written in place:
renaming a temporary file onto it would replace the device node (issue 20). Every OS error
becomes one :class:`~latentcheck.errors.OutputError` line, with no temporary file left.

Temporary files are named ``.latentcheck-<pid>-<random>.tmp``; one left by a run that was
killed between write and rename (its process is gone and it is over a minute old) is
removed by the next run that writes to the same directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
import tempfile
import time
from pathlib import Path

from ..errors import OutputError

__all__ = ["TEMP_PREFIX", "check_target", "printable", "write_bytes", "write_output"]

#: Prefix of the temporary files of the atomic write.
TEMP_PREFIX = ".latentcheck-"
_TEMP_NAME = re.compile(r"^\.latentcheck-(\d+)-[A-Za-z0-9_]+\.tmp$")
#: A temporary file whose process is gone is stale after this many seconds.
_STALE_SECONDS = 60.0
#: Paths that name one of this process's open file descriptors.
_FD_PATH = re.compile(r"^/(?:dev/fd|proc/self/fd|proc/thread-self/fd)/(\d+)$")
_STD_PATHS = {"/dev/stdin": 0, "/dev/stdout": 1, "/dev/stderr": 2}
#: Pseudo file systems whose files stat as regular but cannot be replaced.
_PSEUDO_ROOTS = ("/proc/", "/sys/", "/dev/")

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escape_surrogate(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # a byte of a file name that is not UTF-8 (PEP 383)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"


def printable(text: str, *, controls: bool = True) -> str:
    """Return `text` safe to encode as UTF-8 and to show on a terminal.

    Bytes of non-UTF-8 file names (lone surrogates, PEP 383) become ``\\xNN``; with
    `controls`, control characters other than newline and tab (terminal escape sequences,
    carriage returns) become ``\\xNN`` too.
    """
    text = _SURROGATE.sub(_escape_surrogate, text)
    if controls:
        text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text


def _reason(exc: OSError) -> str:
    """Return the OS's words for `exc` (e.g. 'No space left on device')."""
    if exc.errno is not None:
        return os.strerror(exc.errno)
    return str(exc)


def write_output(text: str, output: str | None) -> None:
    """Write `text` to `output`: a path, ``'-'`` or None for stdout.

    Raises
    ------
    OutputError
        An empty name, a directory, or any OS error while writing (the message names the
        target and the reason; nothing half-written is left behind).
    """
    write_bytes(printable(text).encode("utf-8"), output)


def write_bytes(data: bytes, output: str | None) -> None:
    """Write `data` as :func:`write_output` writes text (atomically to a path)."""
    if output is None or output == "-":
        _write_stdout(data)
        return
    if output == "":
        raise OutputError("-o needs a file name (or '-' for stdout)")
    shown = printable(output)
    fd_number = _STD_PATHS.get(output)
    match = _FD_PATH.match(output)
    if match is not None:
        fd_number = int(match.group(1))
    if fd_number == 1:
        _write_stdout(data)
        return
    if fd_number is not None:
        try:
            fd = os.dup(fd_number)
        except OSError as exc:
            raise OutputError(f"Cannot write {shown}: {_reason(exc)}") from None
        _write_fd(fd, data, shown)
        return
    try:
        st: os.stat_result | None = os.stat(output)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputError(f"Cannot write {shown}: {_reason(exc)}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputError(f"Cannot write {shown}: it is a directory; give a file name")
    real = os.path.realpath(output)
    if (st is not None and not stat.S_ISREG(st.st_mode)) or real.startswith(_PSEUDO_ROOTS):
        _write_in_place(output, data, shown)
        return
    _write_atomic(Path(real), data, shown, None if st is None else stat.S_IMODE(st.st_mode))


def check_target(output: str | None) -> str | None:
    """Return `output` if a report could be written there, else raise OutputError.

    Checked before the analysis runs, so a typo in ``-o`` costs nothing: an empty name, a
    directory, or a file in a directory that does not exist.
    """
    if output is None or output == "-" or output in _STD_PATHS or _FD_PATH.match(output):
        return output
    if output == "":
        raise OutputError("-o needs a file name (or '-' for stdout)")
    shown = printable(output)
    if os.path.isdir(output):
        raise OutputError(f"Cannot write {shown}: it is a directory; give a file name")
    if not os.path.exists(output):
        directory = os.path.dirname(os.path.realpath(output))
        if not os.path.isdir(directory):
            raise OutputError(
                f"Cannot write {shown}: the directory {printable(directory)} does not exist"
            )
    return output


def _write_stdout(data: bytes) -> None:
    """Write to stdout and flush, or raise OutputError if it is closed or fails."""
    stream = sys.stdout
    if stream is None:
        raise OutputError("Cannot write the report: stdout is closed; use -o FILE")
    try:
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            stream.flush()
            buffer.write(data)
            buffer.flush()
        else:  # a text-only stream (e.g. a test's StringIO)
            stream.write(data.decode("utf-8"))
            stream.flush()
    except (OSError, ValueError) as exc:  # ValueError: a closed file object
        _silence_stdout()
        reason = _reason(exc) if isinstance(exc, OSError) else "it is closed"
        raise OutputError(f"Cannot write the report to stdout: {reason}") from None


def _silence_stdout() -> None:
    """Point stdout at the null device so that the interpreter's last flush cannot fail."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)


def _write_fd(fd: int, data: bytes, shown: str) -> None:
    """Write all of `data` to the open descriptor `fd` and close it."""
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    except OSError as exc:
        raise OutputError(f"Cannot write {shown}: {_reason(exc)}") from None
    finally:
        os.close(fd)


def _write_in_place(path: str, data: bytes, shown: str) -> None:
    """Write to an existing non-regular file (device, FIFO, /proc entry) without replacing it."""
    try:
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise OutputError(f"Cannot write {shown}: {_reason(exc)}") from None
    _write_fd(fd, data, shown)


def _write_atomic(target: Path, data: bytes, shown: str, mode: int | None) -> None:
    """Write a regular file through a temporary file in its directory and a rename."""
    directory = target.parent
    if not directory.is_dir():
        raise OutputError(
            f"Cannot write {shown}: the directory {printable(str(directory))} does not exist"
        )
    _remove_stale(directory)
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=".tmp", dir=directory
        )
    except OSError as exc:
        raise OutputError(f"Cannot write {shown}: {_reason(exc)}") from None
    try:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        finally:
            os.close(fd)
        if mode is None:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask  # mkstemp makes 0600; give the file the usual mode
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise OutputError(f"Cannot write {shown}: {_reason(exc)}") from None
        raise


def _remove_stale(directory: Path) -> None:
    """Remove temporary files of runs that were killed between write and rename."""
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX):
            continue
        match = _TEMP_NAME.match(entry.name)
        if match is None:
            continue
        with contextlib.suppress(OSError):
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < _STALE_SECONDS:
                continue
            if _alive(int(match.group(1))):
                continue
            os.unlink(entry.path)


def _alive(pid: int) -> bool:
    """Return True if a process `pid` exists (here: it may still be writing)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0  # exists, owned by someone else
    return True
