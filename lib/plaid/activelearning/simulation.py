"""Replay the annotation loop on films with known masks, round by round, for several strategies and seeds.

Per seed, the films of ``initial_women`` randomly drawn women are labelled and a first model is trained (shared
by every strategy of that seed). Each round the current model scores the unlabelled films as the app's scoring
method does (`plaid.activelearning.pool.score_film`), the strategy picks the next ``per_round`` films
(`plaid.activelearning.strategies.pick_films`, as the app's strategies pick), their masks are revealed, the
model is retrained as the app's train task retrains (`train_from_records`, fine-tuned from the current model
unless ``finetune`` is off), and the fixed test films are scored. Films, not women, are picked: the app hands
out one film at a time. Every finished round is written to ``round-N.json``; a rerun continues after the last.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from plaid.activelearning.pool import HiddenPool, initial_films, prepare_film, score_film
from plaid.activelearning.strategies import RANDOM, pick_films, value_name
from plaid.evaluate.headline import at_threshold, froc_sensitivities, image_auc
from plaid.evaluate.run import film_scores
from plaid.evaluate.scoring import score_records
from plaid.infer.predictor import InferConfig, PatchPredictor
from plaid.io.datalist import CaseRecord
from plaid.patches.prefetch import prefetched
from plaid.serialization import write_json
from plaid.train.config import TrainConfig
from plaid.train.records import train_from_records

logger = logging.getLogger(__name__)

FROC_RATES = (0.5, 1.0)
INITIAL = "initial"


@dataclass(frozen=True)
class Plan:
    """What to simulate: strategies, seeds, rounds, films picked per round, women labelled at the start."""

    strategies: tuple[str, ...]
    seeds: tuple[int, ...]
    rounds: int
    per_round: int
    initial_women: int
    finetune: bool = True
    infer: InferConfig = field(default_factory=InferConfig)


def test_metrics(predictor: PatchPredictor, test: Sequence[CaseRecord]) -> dict[str, float]:
    """Image AUC, region sensitivity at 0.5 and 1 false patch per film, and false patches per film at the stored
    threshold, on the test films."""
    scored, _ = score_records(test, predictor, progress=False)
    films = film_scores(scored)
    froc = froc_sensitivities(films, FROC_RATES)
    threshold = predictor.threshold()
    return {"image_auc": image_auc(films), **{f"froc_{key}": value for key, value in froc.items()},
            "false_marks_per_film": at_threshold(films, threshold)["false_marks_per_film"], "threshold": threshold}


def pool_values(predictor: PatchPredictor, unlabelled: dict[str, str]) -> dict[str, dict[str, float]]:
    """Every ranked strategy's value of every unlabelled film, read ahead while the model runs."""
    values: dict[str, dict[str, float]] = {}
    ids = sorted(unlabelled)
    for image_id, ready in prefetched(ids, lambda film: prepare_film(predictor, unlabelled[film])):
        values[image_id] = score_film(predictor, ready.result())
    return values


class Simulation:
    """One run folder: the plan, the pool and test films, the training config, the finished rounds."""

    def __init__(self, pool: Sequence[CaseRecord], test: Sequence[CaseRecord], config: TrainConfig, plan: Plan,
                 out_dir: Path) -> None:
        self.pool_records, self.test, self.config, self.plan, self.out_dir = list(pool), list(test), config, plan, \
            Path(out_dir)

    def folder(self, strategy: str, seed: int, round_number: int) -> Path:
        """Where one round's model and record live (round 0 is shared by a seed's strategies)."""
        owner = INITIAL if round_number == 0 else strategy
        return self.out_dir / owner / f"seed-{seed}" / f"round-{round_number}"

    def stored(self, strategy: str, seed: int, round_number: int) -> dict[str, Any] | None:
        """A finished round's record, None when it has not finished."""
        path = self.folder(strategy, seed, round_number).with_suffix(".json")
        return json.loads(path.read_text()) if path.is_file() else None

    def run_round(self, strategy: str, seed: int, round_number: int) -> dict[str, Any]:
        """Run (or read back) one round of one strategy and seed; returns its record."""
        done = self.stored(strategy, seed, round_number)
        if done is not None:
            return done
        pool = HiddenPool(self.pool_records)
        previous = self.stored(strategy, seed, round_number - 1) if round_number else None
        if previous is None:
            picked = initial_films(pool, self.plan.initial_women, seed)
            init_checkpoint = None
        else:
            pool.reveal(previous["labelled"])
            picked = self.pick(strategy, seed, round_number, pool, previous["checkpoint"])
            init_checkpoint = previous["checkpoint"] if self.plan.finetune else None
        pool.reveal(picked)
        record = self.train_and_test(pool, replace(self.config, seed=seed, init_checkpoint=init_checkpoint),
                                     self.folder(strategy, seed, round_number))
        record.update({"strategy": strategy if round_number else INITIAL, "seed": seed, "round": round_number,
                       "picked": picked})
        write_json(self.folder(strategy, seed, round_number).with_suffix(".json"), record)
        return record

    def pick(self, strategy: str, seed: int, round_number: int, pool: HiddenPool, checkpoint: str) -> list[str]:
        """The films the strategy picks after scoring the unlabelled ones with the current model."""
        unlabelled = pool.unlabelled()
        name = value_name(strategy)
        values: dict[str, float | None] = {}
        if name is not None:
            scored = pool_values(PatchPredictor(checkpoint, self.plan.infer), unlabelled)
            values = {film: scored[film][name] for film in scored}
        rng = np.random.default_rng([seed, round_number, STRATEGY_SALT.get(strategy, 0)])
        return pick_films(strategy, list(unlabelled), values, self.plan.per_round, rng)

    def train_and_test(self, pool: HiddenPool, config: TrainConfig, folder: Path) -> dict[str, Any]:
        """Train on the revealed films into ``folder`` (a half-finished one is started again), score the test."""
        if folder.exists():
            shutil.rmtree(folder)
        result = train_from_records(pool.labelled_records(), config, folder, progress=False)
        if result.best_checkpoint is None:
            raise RuntimeError(f"training in {folder} left no checkpoint")
        metrics = test_metrics(PatchPredictor(result.best_checkpoint, self.plan.infer), self.test)
        return {"labelled": pool.revealed, "films_labelled": len(pool.revealed),
                "calcified_films_labelled": pool.calcified_labelled(), "checkpoint": str(result.best_checkpoint),
                "metrics": metrics}

    def run(self, progress: bool = True,
            on_round: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
        """Every round of every strategy and seed (finished ones read back); returns one record per round.
        ``on_round`` sees the records so far after each round (to keep the outputs current)."""
        from tqdm import tqdm

        jobs = [(strategy, seed, number) for seed in self.plan.seeds for strategy in self.plan.strategies
                for number in range(self.plan.rounds + 1)]
        rows = []
        bar = tqdm(jobs, desc="active-learning rounds", unit="round", disable=not progress)
        for strategy, seed, number in bar:
            bar.set_postfix_str(f"{strategy} seed {seed} round {number}")
            record = self.run_round(strategy, seed, number)
            rows.append({**record, "strategy": strategy})
            logger.info("%s seed %d round %d: %d films labelled, %s", strategy, seed, number,
                        record["films_labelled"], record["metrics"])
        return rows


# A strategy's own random stream per seed and round, so that random picks of `mixed` and `random` differ.
STRATEGY_SALT = {RANDOM: 1, "mixed": 2}
