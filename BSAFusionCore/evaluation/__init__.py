"""Evaluation: test sets, running methods, scoring, and reports (CSV, Markdown, box plots)."""

from .bspline import BSplineSettings
from .methods import (
    BSPLINE_FUSION,
    NO_REGISTRATION,
    SINGLE_STAGE,
    SINGLE_STAGE_REFINED,
    MethodOutput,
    benchmark_methods,
    bspline_then_fusion,
    no_registration,
    single_stage,
    single_stage_refined,
)
from .run import CaseResult, evaluate
from .testset import EvalCase, deformed_case, generated_cases, load_folder_cases
from .writer import write_results

__all__ = [
    "BSPLINE_FUSION",
    "NO_REGISTRATION",
    "SINGLE_STAGE",
    "SINGLE_STAGE_REFINED",
    "BSplineSettings",
    "CaseResult",
    "EvalCase",
    "MethodOutput",
    "benchmark_methods",
    "bspline_then_fusion",
    "deformed_case",
    "evaluate",
    "generated_cases",
    "load_folder_cases",
    "no_registration",
    "single_stage",
    "single_stage_refined",
    "write_results",
]
