"""Mined hard negatives: from halfway through training, the normal patches the model scores highest are drawn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from plaid.cli import main
from plaid.io.datalist import load_records
from plaid.model.network import PatchClassifier
from plaid.patches.prepared import PatchSettings, patch_index_for, prepare_images
from plaid.patches.sampling import BalancedSampler
from plaid.synth.generator import generate_dataset
from plaid.train.loop import PatchTrainer, TrainConfig, mining_start


def test_the_pool_is_the_highest_scoring_normal_patches_and_findings_stay(tmp_path: Path) -> None:
    generate_dataset(tmp_path, 2, seed=3, height=256, width=192, formats=("png",), calcified_fraction=1.0,
                     max_clusters=1)
    images, _ = prepare_images(load_records(tmp_path), PatchSettings(patch_size=32), progress=False)
    index = patch_index_for(images)
    negatives = np.flatnonzero(index.label == 0)
    positives = int(index.label.sum())
    assert positives >= 1 and len(negatives) > 4 * positives
    config = TrainConfig(patch_size=32, architecture="resnet18", frozen_layers=0, pretrained=False, device="cpu",
                         amp=False, mined_negative_fraction=0.5, hard_negative_fraction=0.25)
    trainer = PatchTrainer(config, tmp_path / "run", progress=False)
    torch.manual_seed(0)
    model = PatchClassifier(frozen_layers=0, architecture="resnet18").eval()
    sampler = BalancedSampler(index, seed=0, negative_ratio=2.0)
    finding = negatives[:1]

    mined = trainer._mine_negatives(model, images, index, sampler, finding)

    wanted = 2 * positives
    assert mined == 2 * round(wanted * 0.5)
    with torch.no_grad():
        scores = np.array([float(torch.sigmoid(model(torch.from_numpy(
            np.ascontiguousarray(images[index.image[row]].patches([int(index.patch[row])])[0]))[None, None])))
            for row in negatives])
    highest = set(negatives[np.argsort(-scores, kind="stable")[:mined]].tolist())
    assert set(sampler.hard_rows.tolist()) == highest | {int(finding[0])}   # patches over findings stay in the pool
    assert sampler.hard_fraction == 0.75


def test_training_mines_from_halfway_and_records_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate_dataset(data, 3, seed=5, height=256, width=192, formats=("png",), calcified_fraction=1.0,
                     max_clusters=1)
    assert main(["train", str(data), "--out", str(tmp_path / "run"), "--epochs", "3", "--patch-size", "64",
                 "--batch-size", "8", "--architecture", "resnet18", "--frozen-layers", "0", "--val-fraction", "0",
                 "--mined-negative-fraction", "0.5", "--no-progress"]) == 0
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    mined = [epoch["mined_negatives"] for epoch in history]
    assert mining_start(3) == 1 and mined[0] == 0 and mined[1] == mined[2] > 0
    assert json.loads((tmp_path / "run" / "train_config.json").read_text())["mined_negative_fraction"] == 0.5
    assert main(["train", str(data), "--out", str(tmp_path / "bad"), "--mined-negative-fraction", "1.5",
                 "--no-progress"]) == 2
