"""Where smsbatch writes: the standard streams, which may be closed or cut
short (`| head -1`, `>&-`, `>/dev/full`), and output files, checked before
the run and written whole.

A dead stream must not end a run: the messages are being sent either way, and
the summary file is often the only record a script reads. So a stream that
fails once goes quiet for the rest of the run, and the run carries on.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import tempfile
from collections.abc import Callable
from typing import Protocol, TextIO, TypeVar, cast

from smsbatch.core.errors import UsageError

_Result = TypeVar("_Result")


class TextSink(Protocol):
    """Where text can be written: a TextIO, a QuietStream, or something that discards it."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class QuietStream:
    """A text stream that, once a write or flush fails (broken pipe, closed,
    disk full), swallows everything after it: `dead` says so. `None` (Python's
    stand-in for a stream that was closed at start) is dead from the start."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self.dead = stream is None

    def write(self, text: str) -> int:
        if self.stream is not None and not self.dead:
            self._try(self.stream.write, text)
        return len(text)

    def flush(self) -> None:
        if self.stream is not None and not self.dead:
            self._try(self.stream.flush)

    def isatty(self) -> bool:
        return self.stream is not None and not self.dead and self._try(self.stream.isatty) is True

    def __getattr__(self, name: str) -> object:  # encoding, fileno, ... for tqdm and friends
        if self.stream is None:
            raise AttributeError(name)
        return getattr(self.stream, name)

    def _try(self, call: Callable[..., _Result], *args: object) -> _Result | None:
        try:
            return call(*args)
        except (OSError, ValueError):  # ValueError: the stream was closed
            self._die()
            return None

    def _die(self) -> None:
        self.dead = True
        _silence(self.stream)


def _silence(stream: TextIO | None) -> None:
    """Point the stream's file descriptor at /dev/null, so what is still in its
    buffer goes there when Python flushes it at exit, instead of an
    "Exception ignored ... BrokenPipeError" on stderr."""
    if stream is None:
        return
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a StringIO): nothing flushes it at exit
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def quiet(stream: TextIO | None) -> QuietStream:
    return stream if isinstance(stream, QuietStream) else QuietStream(stream)


def open_standard_fds() -> None:
    """Open /dev/null on fds 0-2 if they were closed at start (`>&-`): else the
    run's first pipe or file would get fd 1 or 2, and whatever writes to
    "stdout" (a child's crash report, say) would write into it."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)


# ---- output files ----


REPORT_SUFFIXES = (".html", ".htm")  # the report is an HTML page, whatever the name says
TIMELINE_SUFFIXES = (".csv",)  # the timeline file is CSV (the summary file holds it as JSON)


def check_output_path(option: str, path: str | None, suffixes: tuple[str, ...] = ()) -> None:
    """UsageError unless a file can be written at `path`, proven by creating
    and removing a file beside it (permission bits mean nothing to root, and
    /proc says no only when asked). An existing non-regular file (/dev/stdout,
    a FIFO) is written in place and needs no proof. With `suffixes`, a name
    with another suffix (`out.pdf` for an HTML page) is refused; a name with
    none (`/dev/stdout`, `report`) is taken as it is."""
    if path is None:
        return

    def bad(rule: str) -> UsageError:
        return UsageError(f"argument {option}: {rule} (got {path!r})")

    if not path.strip():
        raise bad("must be a file path")
    suffix = os.path.splitext(path)[1].lower()
    if suffixes and suffix and suffix not in suffixes:
        raise bad(f"must end in {' or '.join(suffixes)}, the format written, or have no suffix")
    if path.endswith(("/", os.sep)) or os.path.isdir(path):
        raise bad("must be a file path, not a folder")
    if _is_special(path):
        return
    folder = os.path.dirname(os.path.realpath(path))
    if not os.path.isdir(folder):
        raise bad(f"must be in a folder that exists; {folder} does not")
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".smsbatch-probe-")
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        raise bad(f"must be in a folder where files can be made; {folder} refuses ({error.strerror})") from None


def _is_special(path: str) -> bool:
    """An existing file that is not a regular one: a device, a FIFO, a socket."""
    try:
        return not stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def write_text_file(path: str, text: str) -> None:
    """Write `text` at `path` whole: a reader sees the old file or the new one,
    never half of it, and a failed write leaves the old one. A non-regular
    target (/dev/stdout, a FIFO) cannot be replaced, so it is written in place."""
    if _is_special(path):
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        return
    target = os.path.realpath(path)  # replace what a symlink points at, not the link
    folder, name = os.path.split(target)
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fchmod(out.fileno(), _new_file_mode(target))
        os.replace(temporary, target)
    except BaseException:
        _remove_quietly(temporary)
        raise


def _new_file_mode(path: str) -> int:
    """The mode `open(path, "w")` would give: the old file's, or 0o666 less the umask
    (mkstemp makes its files 0o600)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def standard_streams(stdout: TextIO | None, stderr: TextIO | None) -> tuple[TextIO, TextIO]:
    """The streams main() writes to: the ones given, or sys's, made quiet on failure.
    A QuietStream stands in for the TextIO it wraps (write, flush and isatty
    its own, the rest forwarded), hence the casts."""
    return cast(TextIO, quiet(stdout or sys.stdout)), cast(TextIO, quiet(stderr or sys.stderr))
