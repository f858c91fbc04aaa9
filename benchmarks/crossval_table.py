"""Print a markdown table of crossval.json results: one row per run, each metric as mean ± sd (folds run).

Usage: python benchmarks/crossval_table.py NAME=CROSSVAL_DIR[:N] ...   (:N keeps only the first N folds, so
runs can be compared on the same folds; CPU and wall minutes are then those of the whole run). The brightness
columns are the same folds' baseline (patches scored by mean intensity); n/a for runs made before it existed (so
are the leading FROC columns for runs made before `plaid crossval` reported them). The tables it printed, round by
round, are in benchmarks/research-log.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from plaid.evaluate.crossval import BASELINE_METRICS, METRICS, mean_sd

COLUMNS = METRICS + BASELINE_METRICS


def row(name: str, folder: Path, first: int | None = None) -> str:
    """One markdown row for a crossval run (its first ``first`` folds only, when given)."""
    report = json.loads((folder / "crossval.json").read_text())
    folds = report["folds"][:first]
    if first is not None:
        report["folds_run"] = len(folds)
        report["summary"] = {m: mean_sd([f[m] if f.get(m) is not None else float("nan") for f in folds])
                             for m in COLUMNS}
    cells = []
    for metric in COLUMNS:
        item = report["summary"].get(metric, {"mean": None, "sd": None})
        sd = "n/a" if item["sd"] is None or item["sd"] != item["sd"] else f"{item['sd']:.2f}"
        cells.append("n/a" if item["mean"] is None else f"{item['mean']:.2f} ± {sd}")
    timing = report["timing"]
    return (f"| {name} | {report['folds_run']}/{report['folds_requested']} | " + " | ".join(cells)
            + f" | {timing['process_cpu_s'] / 60:.1f} | {timing['wall_s'] / 60:.1f} |")


def main(arguments: list[str]) -> None:
    """Print the header and one row per NAME=FOLDER argument."""
    print("| run | folds | " + " | ".join(COLUMNS) + " | CPU min | wall min |")
    print("| --- " * (len(COLUMNS) + 4) + "|")
    for argument in arguments:
        name, folder = argument.split("=", 1)
        folder, _, first = folder.partition(":")
        print(row(name, Path(folder), int(first) if first else None))


if __name__ == "__main__":
    main(sys.argv[1:])
