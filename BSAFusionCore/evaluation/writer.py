"""All result files of one run in a folder."""

from __future__ import annotations

from pathlib import Path

from .report import write_box_plots, write_case_csv, write_markdown, write_summary_csv
from .run import CaseResult

CASES_CSV = "cases.csv"
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"


def write_results(
    folder: str | Path, results: list[CaseResult], *, title: str, notes: list[str], plots: bool = True
) -> list[Path]:
    """Write ``cases.csv``, ``summary.csv``, ``summary.md`` and (with ``plots``) ``box_<metric>.png``.

    Each file appears only once complete. Returns the files written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_case_csv(folder / CASES_CSV, results)
    write_summary_csv(folder / SUMMARY_CSV, results)
    write_markdown(folder / SUMMARY_MD, results, title, notes)
    written = [folder / CASES_CSV, folder / SUMMARY_CSV, folder / SUMMARY_MD]
    if plots:
        written += write_box_plots(folder, results)
    return written
