"""Result files: CSVs, Markdown and box plots from hand-made results."""

from __future__ import annotations

import csv

import pytest

from BSAFusionCore.evaluation import CaseResult, write_results
from BSAFusionCore.evaluation.report import better_direction, markdown, summary


@pytest.fixture
def results() -> list[CaseResult]:
    rows = []
    for case, (q, cv) in enumerate([(0.2, 900.0), (0.4, 700.0), (0.6, float("nan"))]):
        rows.append(CaseResult(f"c{case}", "A", {"Qabf_label": q, "Qcv_label": cv, "Seconds": 1.0}))
        rows.append(CaseResult(f"c{case}", "B", {"Qabf_label": q / 2, "Qcv_label": cv / 2, "Seconds": 2.0}))
    return rows


def test_better_direction_of_columns():
    assert better_direction("Qabf_label") == "higher"
    assert better_direction("Qcv_warped") == "lower"
    assert better_direction("EPE95") == "lower"
    assert better_direction("NCC") == "higher"


def test_summary_skips_undefined_values(results):
    rows = {(r["method"], r["metric"]): r for r in summary(results)}
    assert rows[("A", "Qabf_label")]["mean"] == pytest.approx(0.4)
    assert rows[("A", "Qabf_label")]["median"] == pytest.approx(0.4)
    assert rows[("A", "Qcv_label")]["mean"] == pytest.approx(800.0)
    assert rows[("A", "Qcv_label")]["n"] == 2
    assert rows[("B", "Seconds")]["mean"] == pytest.approx(2.0)


def test_markdown_has_one_row_per_metric_and_a_column_per_method(results):
    text = markdown(results, "Title", ["a note"])
    assert text.startswith("# Title\n\n- a note\n")
    assert "| metric | better | A | B |" in text
    assert "| Qabf_label | higher | 0.4000 ± 0.1633 | 0.2000 ± 0.0816 |" in text
    assert "| Qcv_label | lower | 800.0 ± 100.0 | 400.0 ± 50.0 |" in text


def test_write_results_writes_every_file(tmp_path, results):
    written = write_results(tmp_path / "out", results, title="T", notes=[])
    names = sorted(p.name for p in written)
    assert names == sorted(["cases.csv", "summary.csv", "summary.md", "box_Qabf_label.png",
                            "box_Qcv_label.png", "box_Seconds.png"])
    with (tmp_path / "out" / "cases.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6
    assert rows[0]["case"] == "c0" and float(rows[0]["Qabf_label"]) == 0.2
    assert (tmp_path / "out" / "box_Qabf_label.png").read_bytes()[:4] == b"\x89PNG"
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temporary files left
