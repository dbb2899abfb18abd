"""Writing results: per-case CSV, summary CSV and Markdown, and one box plot per metric."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..files import atomic_output
from ..metrics import HIGHER_IS_BETTER
from .run import CaseResult

LOWER_IS_BETTER = {"Qcv", "MAE", "EPE", "EPE95", "Folding", "Seconds"}


def better_direction(column: str) -> str:
    """"higher" or "lower" (what is better) for a result column."""
    name = column.split("_")[0]
    if name in HIGHER_IS_BETTER:
        return "higher" if HIGHER_IS_BETTER[name] else "lower"
    return "lower" if name in LOWER_IS_BETTER else "higher"


def columns_of(results: list[CaseResult]) -> list[str]:
    """Metric columns in first-seen order."""
    seen: dict[str, None] = {}
    for result in results:
        seen.update(dict.fromkeys(result.metrics))
    return list(seen)


def methods_of(results: list[CaseResult]) -> list[str]:
    return list(dict.fromkeys(r.method for r in results))


def values(results: list[CaseResult], method: str, column: str) -> np.ndarray:
    """The finite values of one column for one method."""
    data = np.array([r.metrics.get(column, math.nan) for r in results if r.method == method], dtype=float)
    return data[np.isfinite(data)]


def summary(results: list[CaseResult]) -> list[dict[str, object]]:
    """Per method and column: mean, standard deviation, median and number of finite values."""
    rows = []
    for method in methods_of(results):
        for column in columns_of(results):
            data = values(results, method, column)
            rows.append({
                "method": method,
                "metric": column,
                "better": better_direction(column),
                "mean": float(data.mean()) if data.size else math.nan,
                "std": float(data.std()) if data.size else math.nan,
                "median": float(np.median(data)) if data.size else math.nan,
                "n": int(data.size),
            })
    return rows


def _write_csv(path: Path, header: list[str], rows: Iterable[dict[str, object]]) -> None:
    with atomic_output(path) as tmp, tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)


def write_case_csv(path: Path, results: list[CaseResult]) -> None:
    header = ["case", "method", *columns_of(results)]
    _write_csv(path, header, ({"case": r.case, "method": r.method, **r.metrics} for r in results))


def write_summary_csv(path: Path, results: list[CaseResult]) -> None:
    _write_csv(path, ["method", "metric", "better", "mean", "std", "median", "n"], summary(results))


def _cell(data: np.ndarray) -> str:
    if not data.size:
        return "n/a"
    digits = 4 if abs(float(data.mean())) < 100 else 1
    return f"{data.mean():.{digits}f} ± {data.std():.{digits}f}"


def markdown(results: list[CaseResult], title: str, notes: list[str]) -> str:
    """A table of mean ± std per metric (rows) and method (columns), with notes above it."""
    methods = methods_of(results)
    lines = [f"# {title}", "", *[f"- {note}" for note in notes], ""]
    lines.append("| metric | better | " + " | ".join(methods) + " |")
    lines.append("|---|---|" + "---|" * len(methods))
    for column in columns_of(results):
        cells = [_cell(values(results, method, column)) for method in methods]
        lines.append(f"| {column} | {better_direction(column)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(path: Path, results: list[CaseResult], title: str, notes: list[str]) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(markdown(results, title, notes), encoding="utf-8")


def write_box_plots(folder: Path, results: list[CaseResult]) -> list[Path]:
    """One PNG per metric with a box per method (as the paper's Fig. 5); returns the files."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    methods = methods_of(results)
    written = []
    for column in columns_of(results):
        data = [values(results, method, column) for method in methods]
        if not any(d.size for d in data):
            continue
        figure, axes = plt.subplots(figsize=(1.8 + 1.6 * len(methods), 3.6))
        axes.boxplot(data, showmeans=True)
        axes.set_xticks(range(1, len(methods) + 1), [m.replace(" + ", "\n+ ") for m in methods], fontsize=8)
        axes.set_title(f"{column} ({better_direction(column)} is better)")
        axes.grid(axis="y", alpha=0.3)
        figure.tight_layout()
        path = folder / f"box_{column}.png"
        with atomic_output(path) as tmp:
            figure.savefig(tmp, dpi=110, format="png")
        plt.close(figure)
        written.append(path)
    return written
