"""Flip TTA on the paper protocol: rescore each cross-validation fold's model on its held-out calcified films.

Usage: python benchmarks/tta_paper_protocol.py CROSSVAL_DIR DATA
Reads CROSSVAL_DIR/crossval.json (the folds' held-out patients and config) and each fold's last.pt, and
prints the paper-protocol patch AUC (every calcified patch of the held-out films with located calcifications
plus as many random tissue patches of those films, seeded) without and with flip TTA, per fold and as
mean ± sd. Only the held-out films that carry calcification masks are read, so this is cheap.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from plaid.evaluate.crossval import mean_sd
from plaid.evaluate.metrics import safe_auc
from plaid.infer.predictor import InferConfig, PatchPredictor
from plaid.io.datalist import load_records
from plaid.patches.prepared import prepare_image
from plaid.train.loop import TrainConfig


def main(crossval_dir: Path, data: Path) -> None:
    """Print per-fold and mean ± sd paper-protocol AUC without and with flip TTA."""
    report = json.loads((crossval_dir / "crossval.json").read_text())
    config = TrainConfig.from_mapping(report["config"])
    records = [r for r in load_records(data) if r.label]
    results: dict[bool, list[float]] = {False: [], True: []}
    for fold in report["folds"]:
        held = set(fold["test_patients"])
        images = [prepare_image(r, config.patch_settings()) for r in records if r.group in held]
        images = [image for image in images if image.labels.any()]
        checkpoint = crossval_dir / f"fold-{fold['fold']}" / "last.pt"
        rng = np.random.default_rng(config.seed + fold["fold"] - 1)
        rows = []
        for number, image in enumerate(images):
            rows += [(number, int(p), 1) for p in np.flatnonzero(image.labels)]
        negatives = [(number, int(p), 0) for number, image in enumerate(images)
                     for p in np.flatnonzero(image.tissue & ~image.labels)]
        picks = rng.choice(len(negatives), min(len(rows), len(negatives)), replace=False)
        rows += [negatives[i] for i in picks]
        labels = np.array([label for _, _, label in rows])
        for tta in (False, True):
            predictor = PatchPredictor(checkpoint, InferConfig(batch_size=128, device="cpu", tta_flips=tta),
                                       checkpoint_settings=False)
            scores = np.concatenate([predictor.score(images[n], np.array([p])) for n, p, _ in rows])
            results[tta].append(safe_auc(labels, scores))
        print(f"fold {fold['fold']}: {len(labels)} patches, paper AUC {results[False][-1]:.3f} without TTA, "
              f"{results[True][-1]:.3f} with flip TTA", flush=True)
    for tta, values in results.items():
        summary = mean_sd(values)
        print(f"{'with' if tta else 'without'} flip TTA: {summary['mean']:.3f} ± {summary['sd']:.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
