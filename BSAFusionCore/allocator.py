"""Keep freed memory in the process on glibc (Linux), so that the network's large temporaries do
not page-fault on every call.

One inference at 256 x 256 allocates and frees hundreds of tensors of 1-17 MiB. glibc's defaults
hand much of that memory back to the system after each call and take it again on the next, and
every page taken back costs a page fault. Raising the mmap threshold to 32 MiB and the trim
threshold to 256 MiB keeps it: measured 15-30 % less time per slice on the CPU at the same peak
memory; after a run, up to 256 MiB of freed memory may stay with the process (docs/BENCHMARKS.md,
"Memory allocator"). The PyTorch CPU tuning guide's advice is a different allocator (jemalloc,
tcmalloc) loaded at start-up; inside Slicer the process is already running, so glibc's own
``mallopt`` is the lever.

The setting is process-wide and applied once, when a model is placed on the CPU. Set the
environment variable ``BSAFUSION_MALLOC_TUNING=0`` to leave glibc's defaults alone.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading

log = logging.getLogger(__name__)

ENVIRONMENT_SWITCH = "BSAFUSION_MALLOC_TUNING"
MMAP_THRESHOLD_BYTES = 32 * 1024**2  # blocks below this come from the heap (glibc's ceiling for it)
TRIM_THRESHOLD_BYTES = 256 * 1024**2  # free memory kept at the top of the heap before it is returned
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)

_lock = threading.Lock()
_applied: bool | None = None


def tuning_wanted() -> bool:
    """False when the user turned the tuning off (``BSAFUSION_MALLOC_TUNING=0``, ``off``, ``false``, ``no``)."""
    return os.environ.get(ENVIRONMENT_SWITCH, "1").strip().lower() not in ("0", "off", "false", "no")


def retain_freed_memory() -> bool:
    """Apply the thresholds above once per process; True when they are in effect.

    False where the C library is not glibc (Windows, macOS, musl), where ``mallopt`` refuses a value,
    or when switched off by the environment variable; nothing else changes then.
    """
    global _applied
    with _lock:
        if _applied is None:
            _applied = _apply()
        return _applied


def _glibc_version() -> str:
    """"glibc 2.35" and the like; "" for any other C library."""
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (AttributeError, ValueError, OSError):  # no confstr (Windows) or no such name (macOS, musl)
        return ""
    return version if version.startswith("glibc") else ""


def _apply() -> bool:
    if not tuning_wanted():
        log.debug("%s is off: glibc's allocator keeps its defaults", ENVIRONMENT_SWITCH)
        return False
    if not _glibc_version():
        log.debug("not glibc: the allocator keeps its defaults")
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError as error:
        log.debug("glibc not loadable (%s): the allocator keeps its defaults", error)
        return False
    # The mmap threshold first: setting either one turns off glibc's adjustment of both.
    applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    if applied:
        log.debug("glibc keeps freed memory: mmap threshold %d MiB, trim threshold %d MiB",
                  MMAP_THRESHOLD_BYTES >> 20, TRIM_THRESHOLD_BYTES >> 20)
    else:
        log.warning("glibc refused the allocator thresholds; inference runs with its defaults")
    return applied
