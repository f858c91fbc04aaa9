"""Training that cannot silently go wrong: one regression test per defect of issue 8.

One short real training run (ResNet50 from random weights, CPU, 448x448 synthetic mammograms: 2x2 patches)
with a single calcified patient is shared by the module.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from plaid.cli import main
from plaid.errors import CheckpointError, PlaidInputError
from plaid.infer.predictor import InferConfig, PatchPredictor
from plaid.io.datalist import CaseRecord, load_records
from plaid.io.images import read_mammogram
from plaid.io.labels import write_label_png
from plaid.metrics import safe_auc
from plaid.model import device as device_module
from plaid.model.checkpoint import read_checkpoint
from plaid.model.device import training_precision
from plaid.patches.prepared import PatchSettings, patch_settings_from_dict, prepare_images
from plaid.synth.datasets import generate_dataset
from plaid.train import loop, pretrain, validation
from plaid.train.checkpointing import CONFIG_FILE
from plaid.train.config import TrainConfig
from plaid.train.loop import NonFiniteTrainingError, PatchTrainer
from plaid.train.records import train_from_records
from plaid.train.splits import split_by_group
from plaid.train.validation import VALIDATION_ON_TRAINING, EpochStats, is_better
from plaid_dev.serving import APP_DIR

pytestmark = pytest.mark.slow

TINY = TrainConfig(epochs=2, batch_size=8, frozen_layers=170, pretrained=False, val_fraction=0.34, device="cpu",
                   amp=False, augment=False)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three patients with two views each; only the first patient has calcifications."""
    folder = tmp_path_factory.mktemp("safety") / "data"
    generate_dataset(folder, 6, seed=3, height=448, width=448, calcified_fraction=1.0, max_clusters=2)
    for label in sorted((folder / "labels" / "final").glob("*.png")):
        if not label.name.startswith("SYN0001"):
            write_label_png(label, np.zeros(read_mammogram(next(folder.glob(f"{label.stem}.*"))).shape))
    return folder


@pytest.fixture(scope="module")
def run_dir(data_dir: Path) -> Path:
    out = data_dir.parent / "run"
    result = train_from_records(load_records(data_dir), TINY, out, progress=False)
    assert result.best_checkpoint is not None
    return out


def _stats(epoch: int, auc: float, loss: float) -> EpochStats:
    return EpochStats(epoch=epoch, train_loss=0.5, train_accuracy=0.5, val_loss=loss, val_accuracy=0.5, val_auc=auc,
                      train_patches=10, val_patches=10, seconds=1.0)


def test_validation_with_one_calcified_patient_uses_training_patches_and_says_so(run_dir: Path) -> None:
    best = read_checkpoint(run_dir / "best.pt")
    history = json.loads((run_dir / "history.json").read_text())
    split = json.loads((run_dir / "split.json").read_text())
    assert split["validation"] and all(e["patient_id"] != "SYN0001" for e in split["validation"])
    assert best["validation"] == VALIDATION_ON_TRAINING
    assert all(item["val_patches"] > 0 and np.isfinite(item["val_auc"]) for item in history)
    best_epoch = max(history, key=lambda item: (item["val_auc"], -item["val_loss"]))["epoch"]
    assert best["epoch"] == best_epoch


def test_validation_gets_a_calcified_patient_whenever_two_exist() -> None:
    records = [CaseRecord(image=f"/d/P{p}_{v}.png", patient_id=f"P{p}") for p in range(40) for v in ("CC", "MLO")]
    for seed in range(25):
        _, held = split_by_group(records, 0.05, seed, positive_groups={"P3", "P17"})
        assert {"P3", "P17"} & {r.group for r in held}, seed


def test_best_epoch_choice_is_nan_safe() -> None:
    nan = float("nan")
    assert is_better(_stats(2, nan, nan), _stats(1, nan, nan))  # all-NaN runs still move on
    assert is_better(_stats(2, 0.6, 0.7), _stats(1, nan, nan))
    assert not is_better(_stats(2, nan, nan), _stats(1, 0.6, 0.7))
    assert not is_better(_stats(2, nan, 0.1), _stats(1, 0.5, 0.9))
    assert is_better(_stats(2, nan, 0.5), _stats(1, nan, nan))


def test_cuda_uses_bf16_where_supported_else_fp16_with_a_grad_scaler(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert training_precision(cuda, amp=True) == (torch.bfloat16, False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert training_precision(cuda, amp=True) == (torch.float16, True)
    assert training_precision(cuda, amp=False) == (None, False)


def test_cpu_training_gives_the_same_weights_whether_or_not_the_cpu_has_bf16(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo and the recipes must train to the same model on any CPU: amp (on by default) leaves CPU training
    in fp32 whatever the bf16 probe says; bf16 autocast, as CPUs with native bf16 used to get, gives another."""
    records = [r for r in load_records(data_dir) if r.image_id.startswith(("SYN0001", "SYN0002"))]
    config = replace(TINY, epochs=1, amp=True, architecture="resnet18", frozen_layers=0, pretrain_steps=3,
                     patch_settings=PatchSettings(patch_size=64), augment=True, inserted_positives=4)
    prepared, _ = prepare_images(records, config.patch_settings)

    def trained(name: str) -> dict[str, torch.Tensor]:
        trainer = PatchTrainer(config, tmp_path / name, progress=False)
        trainer.fit(prepared, [])
        return trainer.model.state_dict()

    weights = {}
    for has_bf16 in (True, False):
        monkeypatch.setattr(device_module, "cpu_supports_bf16", lambda has=has_bf16: has)
        assert training_precision(torch.device("cpu"), amp=True) == (None, False)
        weights[has_bf16] = trained(f"bf16-{has_bf16}")
    assert all(torch.equal(weights[True][key], weights[False][key]) for key in weights[True])
    for module in (loop, pretrain):
        monkeypatch.setattr(module, "training_precision", lambda device, amp: (torch.bfloat16, False))
    in_bf16 = trained("autocast")
    assert not all(torch.equal(in_bf16[key], weights[False][key]) for key in in_bf16)


def test_the_order_records_come_in_does_not_change_the_model(data_dir: Path, tmp_path: Path) -> None:
    """`make demo` lists films through MONAI Label's datastore, `make pacs-demo` through `plaid train`'s folder
    scan: the same films in another order must train the same weights."""
    records = load_records(data_dir)
    config = replace(TINY, epochs=1, architecture="resnet18", frozen_layers=0,
                     patch_settings=PatchSettings(patch_size=64))
    weights = []
    for name, ordered in (("listed", records), ("reversed", records[::-1])):
        result = train_from_records(ordered, config, tmp_path / name, progress=False)
        weights.append(read_checkpoint(result.out_dir / "last.pt")["state_dict"])
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])


def test_grad_scaler_path_trains_and_is_checkpointed(data_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loop, "training_precision", lambda device, amp: (None, True))
    records = [r for r in load_records(data_dir) if r.image_id.startswith("SYN0001")][:1]
    prepared, _ = prepare_images(records, TINY.patch_settings)
    trainer = PatchTrainer(replace(TINY, epochs=1), tmp_path / "scaled", progress=False)
    result = trainer.fit(prepared, [])
    assert trainer.scaler.is_enabled()
    assert np.isfinite(result.history[0].train_loss)
    assert read_checkpoint(tmp_path / "scaled" / "last.pt")["scaler"]["scale"] > 0


def test_a_finished_run_is_never_overwritten_and_resume_checks_the_stored_config(
    data_dir: Path, run_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    stored = (out / CONFIG_FILE).read_bytes()
    records = load_records(data_dir)
    with pytest.raises(PlaidInputError, match="already holds a training run"):
        train_from_records(records, replace(TINY, learning_rate=1e-3), out, progress=False)
    for changed, option in ((replace(TINY, learning_rate=1e-3), "learning_rate"),
                            (replace(TINY, frozen_layers=160), "frozen_layers"),
                            (replace(TINY, patch_settings=PatchSettings(stride=112)), "stride")):
        with pytest.raises(PlaidInputError, match=f"cannot resume.*{option}") as caught:
            train_from_records(records, changed, out, resume=True, progress=False)
        assert type(caught.value) is PlaidInputError
    assert (out / CONFIG_FILE).read_bytes() == stored
    assert main(["train", str(data_dir), "--out", str(out), "--epochs", "3", "--no-progress"]) == 2

    result = train_from_records(records, replace(TINY, epochs=3), out, resume=True, progress=False)
    assert result.resumed_from_epoch == 2 and [s.epoch for s in result.history] == [1, 2, 3]
    assert (out / CONFIG_FILE).read_bytes() == stored


def test_bad_training_options_name_the_option() -> None:
    with pytest.raises(PlaidInputError, match="epochs"):
        TrainConfig.from_mapping({"epochs": "abc"})
    with pytest.raises(PlaidInputError, match="amp"):
        TrainConfig.from_mapping({"amp": "maybe"})
    for bad, option in (({"epochs": 0}, "epochs"), ({"frozen_layers": 999}, "frozen_layers"),
                        ({"learning_rate": float("nan")}, "learning_rate"), ({"val_fraction": 1.0}, "val_fraction"),
                        ({"device": "gpu-please"}, "device")):
        with pytest.raises(PlaidInputError, match=option):
            TrainConfig.from_mapping(bad).validate()


def test_published_checkpoint_carries_patch_settings_and_the_predictor_uses_them(run_dir: Path, data_dir: Path,
                                                                                 tmp_path: Path) -> None:
    published = tmp_path / "model" / "calcification.pt"
    published.parent.mkdir()
    shutil.copy(run_dir / "best.pt", published)
    meta = read_checkpoint(published)
    assert meta["patch_settings"]["stride"] is None and meta["patch_settings"]["patch_size"] == 224
    assert {e["image_id"] for e in meta["split"]["train"]} | {e["image_id"] for e in meta["split"]["validation"]}
    configured = InferConfig(stride=112, device="cpu")  # --conf says 112
    assert PatchPredictor(tmp_path / "none-yet.pt", configured).patch_settings().stride == 112  # until one exists
    predictor = PatchPredictor(published, configured)
    assert predictor.patch_settings() == patch_settings_from_dict(meta["patch_settings"])  # the checkpoint's win
    image = read_mammogram(next(data_dir.glob("SYN0002_*.png")))
    prediction = predictor.predict(image.pixels)
    assert prediction.grid.step == 224 and predictor.config.stride == 112
    assert prediction.grid.shape == (2, 2)
    settings = patch_settings_from_dict({"patch_size": 224, "stride": 112, "a_later_setting": 0.1})  # unknown: ignored
    assert settings == PatchSettings(224, 112)


def test_evaluate_finds_the_split_stored_in_the_published_checkpoint(run_dir: Path, data_dir: Path,
                                                                     tmp_path: Path) -> None:
    published = tmp_path / "model" / "calcification.pt"
    published.parent.mkdir()
    shutil.copy(run_dir / "best.pt", published)  # no split.json beside it, as in the app's model folder
    code = main(["evaluate", str(data_dir), "--model", str(published), "--out", str(tmp_path / "report"),
                 "--bootstrap", "0", "--overlays", "0", "--no-progress"])
    assert code == 2  # every patient was used in training: refused instead of scoring training images
    assert not (tmp_path / "report" / "report.json").exists()


def test_corrupt_or_foreign_checkpoint_is_a_checkpoint_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint" * 10)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"layer.weight": torch.zeros(2)}}, str(foreign))
    for path in (garbage, foreign):
        with pytest.raises(CheckpointError, match=f"{path.name} cannot be loaded"):
            PatchPredictor(path, InferConfig(device="cpu")).model()


def _one_calcified_image(data_dir: Path) -> list:
    records = [r for r in load_records(data_dir) if r.image_id.startswith("SYN0001")][:1]
    return prepare_images(records, TINY.patch_settings)[0]


def test_a_non_finite_loss_stops_training_naming_epoch_and_step(data_dir: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(loop, "positive_weight", lambda config: torch.tensor(float("nan")))  # a NaN in the loss
    trainer = PatchTrainer(replace(TINY, epochs=1), tmp_path / "nan", progress=False)
    with pytest.raises(NonFiniteTrainingError, match=r"loss is nan at epoch 1, step 1"):
        trainer.fit(_one_calcified_image(data_dir), [])
    assert not (tmp_path / "nan" / "best.pt").exists() and not (tmp_path / "nan" / "last.pt").exists()
    assert main(["train", str(data_dir), "--out", str(tmp_path / "cli"), "--epochs", "1", "--batch-size", "8",
                 "--no-pretrained", "--device", "cpu", "--no-progress"]) == 2  # the CLI reports it as an error
    assert "loss is nan at epoch 1, step 1" in caplog.text
    assert not (tmp_path / "cli" / "best.pt").exists()


def test_non_finite_validation_scores_stop_training_before_any_checkpoint(data_dir: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    scored = validation.score_patches

    def nan_scores(*args: object) -> tuple:
        labels, scores, loss = scored(*args)
        return labels, np.full_like(scores, np.nan), loss

    monkeypatch.setattr(loop, "score_patches", nan_scores)
    trainer = PatchTrainer(replace(TINY, epochs=1), tmp_path / "nan", progress=False)
    with pytest.raises(NonFiniteTrainingError, match="after epoch 1"):
        trainer.fit(_one_calcified_image(data_dir), [])
    assert not list((tmp_path / "nan").glob("*.pt"))


def test_safe_auc_is_nan_for_non_finite_scores() -> None:
    labels = np.array([0, 1, 0, 1])
    assert np.isnan(safe_auc(labels, np.full(4, np.nan)))
    assert np.isnan(safe_auc(labels, np.array([0.1, np.inf, 0.2, 0.9])))
    assert safe_auc(labels, np.array([0.1, 0.8, 0.2, 0.9])) == 1.0
    nan = float("nan")
    assert not validation.publishable(_stats(1, safe_auc(labels, np.full(4, np.nan)), 0.7), 0.5)
    assert not validation.publishable(_stats(1, 0.8, 0.7), nan)
    assert validation.publishable(_stats(1, 0.8, 0.7), 0.5)


def test_the_app_never_publishes_a_checkpoint_with_a_non_finite_threshold(run_dir: Path, tmp_path: Path) -> None:
    if str(APP_DIR) not in sys.path:
        sys.path.insert(0, str(APP_DIR))
    from lib.trainers.calcification import CalcificationTrainer

    published = tmp_path / "model" / "calcification.pt"
    trainer = CalcificationTrainer(str(tmp_path / "model"), str(published), TINY)
    broken = tmp_path / "broken.pt"
    torch.save({**read_checkpoint(run_dir / "best.pt"), "threshold": float("nan")}, str(broken))
    assert trainer._publish(broken) is None and not published.exists()
    assert trainer._publish(run_dir / "best.pt") == published and published.is_file()


def test_learning_rates_and_other_client_numbers_are_bounded() -> None:
    for bad, option in (({"learning_rate": 0.5}, "learning_rate"), ({"learning_rate": 1.0}, "learning_rate"),
                        ({"pretrain_learning_rate": 0.5}, "pretrain_learning_rate"),
                        ({"learning_rate": float("inf")}, "learning_rate"), ({"epochs": 50_000}, "epochs"),
                        ({"batch_size": 60_000}, "batch_size"), ({"patch_size": 8}, "patch_size"),
                        ({"negative_ratio": 500}, "negative_ratio"),
                        ({"inserted_positives": 10**9}, "inserted_positives"),
                        ({"inserted_positives": -1}, "inserted_positives"),
                        ({"target_spacing_mm": float("nan")}, "target_spacing_mm"),
                        ({"pixel_spacing_mm": -0.1}, "pixel_spacing_mm")):
        with pytest.raises(PlaidInputError, match=option):
            TrainConfig.from_mapping(bad).validate()
    assert TrainConfig.from_mapping({"learning_rate": 0.1, "pretrain_learning_rate": 0.01}).validate()


def test_resume_trains_on_the_stored_split_after_the_records_changed(data_dir: Path, run_dir: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    stored = json.loads((out / "split.json").read_text())
    records = load_records(data_dir)
    new = []
    for number, source in enumerate(records[:2]):  # two new women since the run started (a calcified one first)
        image = tmp_path / f"NEW{number}_CC.png"
        label = tmp_path / f"NEW{number}_CC_label.png"
        shutil.copy(source.image, image)
        shutil.copy(source.label, label)
        new.append(CaseRecord(image=str(image), label=str(label), patient_id=f"NEW{number}"))
    changed = new + [r for r in records if r.image_id != stored["train"][-1]["image_id"]]  # and one image gone
    seen: dict[str, set[str]] = {}
    fit = PatchTrainer.fit

    def spy(self: PatchTrainer, train_images: list, val_images: list, resume: bool = False) -> object:
        seen["train"] = {image.record.image_id for image in train_images}
        seen["validation"] = {image.record.image_id for image in val_images}
        return fit(self, train_images, val_images, resume=resume)

    monkeypatch.setattr(PatchTrainer, "fit", spy)
    result = train_from_records(changed, replace(TINY, epochs=3), out, resume=True, progress=False)
    assert result.resumed_from_epoch == 2
    assert seen["train"] == {e["image_id"] for e in stored["train"][:-1]}
    assert seen["validation"] == {e["image_id"] for e in stored["validation"]}
    assert json.loads((out / "split.json").read_text()) == stored


def test_a_history_stored_with_a_removed_option_still_resumes() -> None:
    old = {**asdict(_stats(1, 0.7, 0.6)), "mined_negatives": 0}  # written before mined negatives were removed
    assert validation.stored_epoch(old) == _stats(1, 0.7, 0.6)
    assert "mined_negative_fraction" not in TrainConfig().to_dict()
    assert TrainConfig.from_mapping({"mined_negative_fraction": 0.5, "epochs": 3}).epochs == 3  # old configs load
