"""Offline pretraining: normal tissue patches only, torchvision-format weights that `plaid train` loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from plaid.cli import main
from plaid.io.datalist import CaseRecord
from plaid.model.network import build_model
from plaid.synth.datasets import generate_dataset
from plaid.train.insertion import insert_cluster
from plaid.train.pretrain import is_normal


def test_inserted_cluster_is_small_bright_and_inside_the_patch() -> None:
    rng = np.random.default_rng(0)
    patch = np.full((64, 64), 0.4, dtype=np.float32) + rng.normal(0, 0.01, (64, 64)).astype(np.float32)
    out, mask = insert_cluster(patch, 0.2, rng)
    assert out.shape == patch.shape and 3 <= mask.sum() < 0.1 * mask.size
    assert (out - patch)[mask].min() > 0.02 and np.abs(out - patch)[~mask].max() < 0.2
    assert out.max() <= 1.0


def test_pretrain_writes_weights_that_train_loads_and_may_freeze(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate_dataset(data, 4, seed=5, height=256, width=192, formats=("png",), calcified_fraction=0.5,
                     max_clusters=1)
    weights = tmp_path / "pre.pth"
    assert main(["pretrain", str(data), "--out", str(weights), "--steps", "2", "--batch-size", "4",
                 "--no-progress"]) == 0
    summary = json.loads(weights.with_suffix(".json").read_text())
    assert summary["images"] >= 1 and summary["tissue_patches"] > 0
    state = torch.load(weights, weights_only=True)
    assert "conv1.weight" in state and not any(key.startswith("fc.") for key in state)
    model = build_model(frozen_layers=100, pretrained=True, weights_path=weights)
    assert model.initialisation == f"pretrained:{weights}" and model.frozen_layers == 100
    assert torch.equal(model.backbone.conv1.weight, state["conv1.weight"])


def test_only_images_known_to_be_normal_are_used(tmp_path: Path) -> None:
    assert is_normal(CaseRecord(image="a.png", calcified=False))
    assert not is_normal(CaseRecord(image="a.png", calcified=True))
    assert not is_normal(CaseRecord(image="a.png"))          # no mask, no metadata: unknown, left out
    with pytest.raises(ValueError, match="task"):
        from plaid.train.pretrain import PretrainConfig

        PretrainConfig(task="jigsaw")
    with pytest.raises(ValueError, match="pretrain option architecture='vgg16' is unknown"):
        PretrainConfig(architecture="vgg16")


def test_pretext_with_the_contrast_front_end_learns_to_spot_pasted_clusters(tmp_path: Path) -> None:
    from plaid.io.datalist import load_records
    from plaid.model.network import PatchClassifier
    from plaid.patches.prepared import PatchSettings, prepare_images
    from plaid.train.pretrain import PretrainConfig, pretext_batch, run_pretext, tissue_rows

    generate_dataset(tmp_path, 4, seed=5, height=256, width=192, formats=("png",), calcified_fraction=0.0)
    images, _ = prepare_images(load_records(tmp_path), PatchSettings(patch_size=32), with_label=False,
                               progress=False)
    rows = tissue_rows(images)
    torch.manual_seed(0)
    model = PatchClassifier(frozen_layers=0, architecture="resnet18", input_filter="contrast")
    config = PretrainConfig(patch_size=32, steps=60, batch_size=16, architecture="resnet18", input_filter="contrast")
    run_pretext(model, images, rows, config, torch.device("cpu"))
    model.eval()
    patches, targets = pretext_batch(images, rows, PretrainConfig(patch_size=32, batch_size=64),
                                     np.random.default_rng(99))     # patches and clusters it never saw
    with torch.no_grad():
        accuracy = float(((model(patches) >= 0) == (targets == 1)).float().mean())
    assert accuracy >= 0.7


def test_train_pretrains_only_a_randomly_initialised_model(tmp_path: Path) -> None:
    data = tmp_path / "data"
    generate_dataset(data, 4, seed=5, height=256, width=192, formats=("png",), calcified_fraction=0.5,
                     max_clusters=1)
    common = ["--epochs", "1", "--patch-size", "64", "--batch-size", "4", "--architecture", "resnet18",
              "--frozen-layers", "0", "--val-fraction", "0", "--pretrain-steps", "2", "--no-progress"]
    assert main(["train", str(data), "--out", str(tmp_path / "random"), *common]) == 0
    stored = json.loads((tmp_path / "random" / "train_config.json").read_text())
    assert stored["pretrain_steps"] == 2
    assert stored["initialisation"].startswith("random, then 2 steps of synthetic-cluster pretraining")

    weights = tmp_path / "pre.pth"
    assert main(["pretrain", str(data), "--out", str(weights), "--steps", "1", "--batch-size", "4",
                 "--architecture", "resnet18", "--no-progress"]) == 0
    assert main(["train", str(data), "--out", str(tmp_path / "loaded"), "--weights", str(weights), *common]) == 0
    stored = json.loads((tmp_path / "loaded" / "train_config.json").read_text())
    assert stored["initialisation"] == f"pretrained:{weights}"     # loaded weights are not pretrained again


def test_pretext_scales_the_loss_where_half_precision_needs_it(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU without bf16 the pretext runs in fp16, whose small gradients vanish unless the loss is scaled."""
    from plaid.io.datalist import load_records
    from plaid.model.network import PatchClassifier
    from plaid.patches.prepared import PatchSettings, prepare_images
    from plaid.train import pretrain

    steps_taken: list[float] = []

    class CountingScaler(torch.amp.GradScaler):
        def step(self, optimizer, *args, **kwargs):  # type: ignore[no-untyped-def]
            steps_taken.append(self.get_scale())
            return super().step(optimizer, *args, **kwargs)

    monkeypatch.setattr(pretrain, "training_precision", lambda device, amp: (None, True))
    monkeypatch.setattr(torch.amp, "GradScaler", CountingScaler)
    generate_dataset(tmp_path, 2, seed=5, height=256, width=192, formats=("png",), calcified_fraction=0.0)
    images, _ = prepare_images(load_records(tmp_path), PatchSettings(patch_size=32), with_label=False,
                               progress=False)
    model = PatchClassifier(frozen_layers=0, architecture="resnet18", input_filter="contrast")
    config = pretrain.PretrainConfig(patch_size=32, steps=3, batch_size=8, architecture="resnet18",
                                     input_filter="contrast")
    result = pretrain.run_pretext(model, images, pretrain.tissue_rows(images), config, torch.device("cpu"))
    assert len(steps_taken) == 3 and all(scale > 1 for scale in steps_taken)
    assert np.isfinite(result["final_loss"])


def test_ensemble_members_share_one_pretext_and_the_first_is_the_single_run(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The pretext runs once per ensemble: member 1 trains exactly as a single run with the same seed would,
    the others start from the weights it left in pretext.pt and differ from it only by their own training."""
    from plaid.model.checkpoint import read_checkpoint
    from plaid.train import loop

    data = tmp_path / "data"
    generate_dataset(data, 4, seed=5, height=256, width=192, formats=("png",), calcified_fraction=0.5,
                     max_clusters=1)
    pretexts: list[int] = []
    real_pretext = loop.run_pretext
    monkeypatch.setattr(loop, "run_pretext", lambda model, images, rows, config, *args, **kwargs: (
        pretexts.append(config.seed), real_pretext(model, images, rows, config, *args, **kwargs))[1])
    common = ["--epochs", "1", "--patch-size", "64", "--batch-size", "4", "--architecture", "resnet18",
              "--frozen-layers", "0", "--no-pretrained", "--device", "cpu", "--val-fraction", "0",
              "--pretrain-steps", "3", "--seed", "2", "--no-progress"]
    assert main(["train", str(data), "--out", str(tmp_path / "single"), *common]) == 0
    assert main(["train", str(data), "--out", str(tmp_path / "ensemble"), "--ensemble-members", "3", *common]) == 0
    assert pretexts == [2, 2]  # the single run's, then the ensemble's one

    single = read_checkpoint(tmp_path / "single" / "best.pt")["state_dict"]
    members = [read_checkpoint(tmp_path / "ensemble" / f"member-{n}" / "best.pt") for n in (1, 2, 3)]
    for key, value in single.items():
        assert torch.equal(members[0]["state_dict"][key], value), key
    heads = [member["state_dict"]["backbone.fc.weight"] for member in members]
    assert not torch.equal(heads[1], heads[2])
    stored = torch.load(tmp_path / "ensemble" / "pretext.pt", weights_only=True)
    assert stored["pretext"]["seed"] == 2 and stored["pretext"]["steps"] == 3
    configs = [json.loads((tmp_path / "ensemble" / f"member-{n}" / "train_config.json").read_text()) for n in (1, 2, 3)]
    assert [c["seed"] for c in configs] == [2, 3, 4]
    assert {c["initialisation"] for c in configs} == {stored["initialisation"]}
    assert "seed 2" in stored["initialisation"]

    # the stored pretext serves any seed of the same settings, and no other settings
    trainer = loop.PatchTrainer(loop.TrainConfig(architecture="resnet18", pretrained=False, device="cpu"),
                                tmp_path / "other", pretext_file=tmp_path / "ensemble" / "pretext.pt")
    model = loop.build_model(0, pretrained=False, architecture="resnet18")
    assert trainer._load_stored_pretext(model, loop.PretrainConfig(**{**stored["pretext"], "seed": 9}))
    assert torch.equal(model.state_dict()["backbone.conv1.weight"], stored["state_dict"]["backbone.conv1.weight"])
    assert not trainer._load_stored_pretext(model, loop.PretrainConfig(**{**stored["pretext"], "steps": 4}))
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")  # an unreadable file is run again, not a crash
    trainer.pretext_file = tmp_path / "broken.pt"
    assert not trainer._load_stored_pretext(model, loop.PretrainConfig(**stored["pretext"]))
