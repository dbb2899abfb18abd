"""Running methods over a test set and collecting one row of metrics per (case, method)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ..errors import InputError
from ..model import FusionModel
from ..progress import CancelFlag, ProgressCallback, check_cancel, report
from .methods import Method
from .scoring import score
from .testset import EvalCase

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaseResult:
    """The metrics of one method on one case."""

    case: str
    method: str
    metrics: dict[str, float]


def evaluate(
    model: FusionModel,
    cases: list[EvalCase],
    methods: dict[str, Method],
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelFlag | None = None,
) -> list[CaseResult]:
    """Every method on every case, in order; each method first runs once untimed to warm up."""
    if not cases:
        raise InputError("the test set is empty")
    total = len(cases) * len(methods)
    results = []
    for m, (name, method) in enumerate(methods.items()):
        check_cancel(cancel)
        method(model, cases[0])  # warm-up: first-call costs are not part of the time per slice
        for c, case in enumerate(cases):
            check_cancel(cancel)
            report(progress, (m * len(cases) + c) / total, f"{name}: {case.name}")
            metrics = score(case, method(model, case))
            log.debug("%s on %s: %s", name, case.name, metrics)
            results.append(CaseResult(case.name, name, metrics))
    report(progress, 1.0, "done")
    return results
