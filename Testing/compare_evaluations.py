"""Two `bsafusion evaluate` folders side by side, as the markdown table of a model card.

    python Testing/compare_evaluations.py OLD_EVAL NEW_EVAL --names "fusion-only" "this model"

Reads each folder's summary.csv (mean ± std per metric) and marks, per metric, which of the two is
better in the metric's own direction.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def read_summary(folder: Path) -> dict[str, dict[str, str]]:
    with open(folder / "summary.csv", newline="", encoding="utf-8") as handle:
        return {row["metric"]: row for row in csv.DictReader(handle)}


def _cell(row: dict[str, str]) -> str:
    mean, std = float(row["mean"]), float(row["std"])
    digits = 4 if abs(mean) < 100 else 1
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def comparison(old: dict[str, dict[str, str]], new: dict[str, dict[str, str]], names: tuple[str, str]) -> str:
    lines = [f"| metric | better | {names[0]} | {names[1]} | better of the two |", "|---|---|---|---|---|"]
    for metric, row in old.items():
        if metric not in new:
            continue
        a, b = float(row["mean"]), float(new[metric]["mean"])
        higher = row["better"] == "higher"
        winner = "equal" if a == b else names[int((b > a) == higher)]
        lines.append(f"| {metric} | {row['better']} | {_cell(row)} | {_cell(new[metric])} | {winner} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--names", nargs=2, default=["old", "new"])
    args = parser.parse_args(argv)
    sys.stdout.write(comparison(read_summary(args.old), read_summary(args.new), tuple(args.names)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
