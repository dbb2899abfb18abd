"""Progress reporting and cancellation shared by every long-running job."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .errors import Cancelled

ProgressCallback = Callable[[float, str], None]
"""Called as ``callback(fraction_done, stage)`` with ``fraction_done`` in [0, 1]."""


class CancelFlag(Protocol):
    """Anything with ``is_set()``, e.g. :class:`threading.Event`."""

    def is_set(self) -> bool: ...


def check_cancel(cancel: CancelFlag | None) -> None:
    """Raise :class:`Cancelled` when the flag is set."""
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled by the caller")


def report(callback: ProgressCallback | None, fraction: float, stage: str) -> None:
    """Send ``(fraction, stage)`` to the callback when there is one."""
    if callback is not None:
        callback(min(max(float(fraction), 0.0), 1.0), stage)
