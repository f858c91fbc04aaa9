"""The simulation's outputs: learning_curve.json, learning_curve.png and summary.md.

The summary gives, for each strategy and each higher-is-better metric, the share of the films random
selection labelled by its last round that the strategy needed to reach random selection's final mean value,
with a percentile interval from resampling the seeds with replacement.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from plaid.activelearning.strategies import RANDOM
from plaid.evaluate.plots import _pyplot, _save
from plaid.serialization import write_json

CURVE_FILE = "learning_curve.json"
PLOT_FILE = "learning_curve.png"
SUMMARY_FILE = "summary.md"
PLOTTED = {"image_auc": "image AUC", "froc_0.5": "region sensitivity at 0.5 FP/film",
           "froc_1": "region sensitivity at 1 FP/film", "false_marks_per_film": "false patches/film at threshold",
           "calcified_films_labelled": "calcified films labelled"}
SHARED = ("image_auc", "froc_0.5", "froc_1")


def metric(row: dict[str, Any], name: str) -> float:
    """One round's value of a metric (NaN when undefined)."""
    value = row["calcified_films_labelled"] if name == "calcified_films_labelled" else row["metrics"].get(name)
    return float("nan") if value is None else float(value)


def curves(rows: Sequence[dict[str, Any]], name: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per strategy: (films labelled per round, seeds x rounds array of the metric)."""
    out = {}
    for strategy in dict.fromkeys(row["strategy"] for row in rows):
        mine = [row for row in rows if row["strategy"] == strategy]
        seeds = sorted({row["seed"] for row in mine})
        rounds = sorted({row["round"] for row in mine})
        table = np.full((len(seeds), len(rounds)), np.nan)
        labelled = np.full((len(seeds), len(rounds)), np.nan)
        for row in mine:
            table[seeds.index(row["seed"]), rounds.index(row["round"])] = metric(row, name)
            labelled[seeds.index(row["seed"]), rounds.index(row["round"])] = row["films_labelled"]
        out[strategy] = (np.nanmean(labelled, axis=0), table)
    return out


def share_to_reach(films: np.ndarray, strategy: np.ndarray, target: float, total: float) -> float:
    """Films labelled, as a share of ``total``, at the first round whose seed-mean reaches ``target`` (inf if
    none does)."""
    mean = np.nanmean(strategy, axis=0)
    reached = np.flatnonzero(mean >= target - 1e-12)
    return float(films[reached[0]] / total) if reached.size else float("inf")


def label_shares(rows: Sequence[dict[str, Any]], name: str, iterations: int = 1000,
                 seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per strategy: the share of random selection's final labels it needs to reach random's final mean value
    of ``name``, and a 95% interval over seed resamples (inf: not reached)."""
    table = curves(rows, name)
    if RANDOM not in table:
        return {}
    films_random, random_values = table[RANDOM]
    total = float(films_random[-1])
    rng = np.random.default_rng(seed)
    out = {}
    for strategy, (films, values) in table.items():
        point = share_to_reach(films, values, float(np.nanmean(random_values[:, -1])), total)
        draws = []
        for _ in range(iterations):
            mine = values[rng.integers(0, len(values), len(values))]
            theirs = random_values[rng.integers(0, len(random_values), len(random_values))]
            draws.append(share_to_reach(films, mine, float(np.nanmean(theirs[:, -1])), total))
        low, high = np.percentile(np.array(draws), [2.5, 97.5], method="nearest")  # an inf draw stays inf
        out[strategy] = {"share": point, "interval": [float(low), float(high)], "seeds": len(values)}
    return out


def write_outputs(rows: Sequence[dict[str, Any]], out_dir: Path, command: str) -> dict[str, Path]:
    """Write learning_curve.json, learning_curve.png and summary.md into ``out_dir``; returns their paths."""
    out_dir = Path(out_dir)
    paths = {"curve": write_json(out_dir / CURVE_FILE, {"command": command, "rounds": list(rows)}),
             "plot": plot_curves(rows, out_dir / PLOT_FILE)}
    summary = out_dir / SUMMARY_FILE
    summary.write_text(summary_text(rows, command))
    paths["summary"] = summary
    return paths


def plot_curves(rows: Sequence[dict[str, Any]], out_png: Path) -> Path:
    """One panel per metric: seed mean (line) and min-max spread (band) per strategy against films labelled."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(PLOTTED), figsize=(4.2 * len(PLOTTED), 3.6))
    for axis, (name, title) in zip(axes, PLOTTED.items(), strict=True):
        for strategy, (films, values) in curves(rows, name).items():
            line = axis.plot(films, np.nanmean(values, axis=0), marker="o", label=strategy)[0]
            axis.fill_between(films, np.nanmin(values, axis=0), np.nanmax(values, axis=0),
                              color=line.get_color(), alpha=0.15)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("films labelled")
    axes[0].legend(fontsize=7)
    return _save(figure, out_png)


def summary_text(rows: Sequence[dict[str, Any]], command: str) -> str:
    """summary.md: the final values per strategy and the share of labels each needs to reach random's."""
    seeds = sorted({row["seed"] for row in rows})
    lines = ["# Active-learning simulation", "", f"Command: `{command}`", "",
             f"Seeds: {', '.join(map(str, seeds))}. Mean over seeds (min to max) at the last round:", "",
             "| strategy | films labelled | " + " | ".join(PLOTTED.values()) + " |",
             "| --- | --- |" + " --- |" * len(PLOTTED)]
    finals: dict[str, list[str]] = {}
    films_at_end: dict[str, float] = {}
    for name in PLOTTED:
        for strategy, (films, values) in curves(rows, name).items():
            last = values[:, -1]
            finals.setdefault(strategy, []).append(
                f"{np.nanmean(last):.3f} ({np.nanmin(last):.3f} to {np.nanmax(last):.3f})")
            films_at_end[strategy] = float(films[-1])
    for strategy, cells in finals.items():
        lines.append(f"| {strategy} | {films_at_end[strategy]:g} | " + " | ".join(cells) + " |")
    lines += ["", "Share of random selection's final labels each strategy needs to reach random's final mean value "
              "(95% interval over seed resamples; inf: not reached within the rounds run):", "",
              "| strategy | " + " | ".join(PLOTTED[name] for name in SHARED) + " |",
              "| --- |" + " --- |" * len(SHARED)]
    shares = {name: label_shares(rows, name) for name in SHARED}
    for strategy in finals:
        cells = []
        for name in SHARED:
            entry = shares[name].get(strategy)
            cells.append("–" if entry is None else
                         f"{entry['share']:.2f} [{entry['interval'][0]:.2f}, {entry['interval'][1]:.2f}]")
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    table = {name: curves(rows, name).get(RANDOM) for name in SHARED}
    if all(entry is not None for entry in table.values()):
        lines.append("| (random: first → final mean) | " + " | ".join(
            f"{np.nanmean(values[:, 0]):.3f} → {np.nanmean(values[:, -1]):.3f}" for _, values in table.values()) + " |")
    return "\n".join(lines) + "\n"
