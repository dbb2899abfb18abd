"""Writing files and folders so that they appear only when complete."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import InputError

log = logging.getLogger(__name__)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (same suffix); it replaces ``path`` only if the block succeeds.

    The file gets the permissions of a normally created one (0666 less the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def check_output_folder(target: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Check, before any work, that a run's results can go to the folder ``target``.

    Refused: a file at ``target`` or at one of its parents, and a folder that already holds files
    unless ``overwrite`` (which replaces its whole content, see :func:`staged_folder`).
    """
    target = Path(target)
    for parent in reversed(target.parents):
        if parent.exists() and not parent.is_dir():
            raise InputError(f"output folder {target} cannot be made: {parent} is a file, not a folder")
    if target.exists() and not target.is_dir():
        raise InputError(f"output folder {target} is an existing file; choose a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise InputError(
            f"output folder {target} already holds files (an earlier run?); choose another folder, or pass "
            "--overwrite to replace its whole content"
        )
    return target


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; when the block succeeds it becomes ``target``.

    An existing ``target`` (only with ``overwrite``, see :func:`check_output_folder`) is replaced
    as a whole, so no file of an earlier run stays behind. When the block fails or is interrupted,
    the temporary folder and the parents this call created are removed and ``target`` is untouched.
    """
    target = check_output_folder(target, overwrite).absolute()
    created = [p for p in reversed(target.parents) if not p.exists()]
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    except OSError as error:
        _remove_empty(created)
        raise InputError(f"output folder {target} cannot be written ({error.strerror})") from None
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_umask())
        with interrupts_deferred(f"the complete results are in {target}"):
            if target.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
                os.replace(target, old / target.name)
                os.replace(staging, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(created)
        raise


@contextlib.contextmanager
def staged_files(targets: Sequence[str | os.PathLike[str]]) -> Iterator[list[Path]]:
    """Yield a temporary path beside each of ``targets`` (same suffix); when the block succeeds they
    all replace their targets, else none does and the temporary files are removed. For outputs whose
    paths are given one by one (the Slicer CLI module)."""
    targets = [Path(t).absolute() for t in targets]
    temps = []
    try:
        for target in targets:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".partial{target.suffix}", dir=target.parent)
            os.close(fd)
            temps.append(Path(name))
        yield temps
        with interrupts_deferred(f"the complete results are in {', '.join(map(str, targets))}"):
            for temp, target in zip(temps, targets, strict=True):
                os.chmod(temp, 0o666 & ~_umask())
                os.replace(temp, target)
    finally:
        for temp in temps:
            temp.unlink(missing_ok=True)


@contextlib.contextmanager
def interrupts_deferred(done: str) -> Iterator[None]:
    """Put complete results in place without being cut short: a Ctrl-C (SIGINT) during the block is
    noted, not raised, and once the block is through the results stand (``done`` says where). In the
    main thread only (elsewhere signals do not arrive)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)
    if received:
        log.warning("Ctrl-C came while the finished results were being put in place; %s", done)


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders a failed call created (deepest first), if they are still empty."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()
