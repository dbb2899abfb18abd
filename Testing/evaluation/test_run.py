"""Running methods over cases: progress, cancellation, order."""

from __future__ import annotations

import threading

import pytest

from BSAFusionCore.errors import Cancelled, InputError
from BSAFusionCore.evaluation import evaluate, load_folder_cases, no_registration, single_stage
from BSAFusionCore.model import load_model


@pytest.fixture(scope="module")
def model(weights_file):
    return load_model(weights_file, device="cpu")


def test_every_method_on_every_case_with_progress(model, testset_dir):
    cases = load_folder_cases(testset_dir)
    reports: list[tuple[float, str]] = []
    results = evaluate(model, cases, {"one": single_stage, "two": no_registration},
                       progress=lambda fraction, stage: reports.append((fraction, stage)))
    assert [(r.method, r.case) for r in results] == [("one", "case0"), ("one", "case1"),
                                                    ("two", "case0"), ("two", "case1")]
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    assert all(r.metrics["Folding"] == 0.0 for r in results if r.method == "two")


def test_cancel_stops_the_run(model, testset_dir):
    flag = threading.Event()
    flag.set()
    with pytest.raises(Cancelled):
        evaluate(model, load_folder_cases(testset_dir), {"one": single_stage}, cancel=flag)


def test_an_empty_test_set_is_refused(model):
    with pytest.raises(InputError, match="empty"):
        evaluate(model, [], {"one": single_stage})
