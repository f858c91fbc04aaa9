"""Model options `architecture` and `input_filter`: stored in the checkpoint, applied at inference and by the
exported runtimes, and refused with a message naming them when unknown."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from plaid.cli import main
from plaid.errors import PlaidInputError
from plaid.infer.predictor import InferConfig, PatchPredictor
from plaid.io.images import read_mammogram
from plaid.model.backends import AGREEMENT_TOLERANCE, build_runtime, candidate_names
from plaid.model.checkpoint import load_model, read_checkpoint, save_checkpoint
from plaid.model.description import describe_checkpoint
from plaid.model.input_filter import BAND_GAINS, build_input_filter
from plaid.model.network import PatchClassifier, build_model
from plaid.patches.prepared import PatchSettings, prepare_file
from plaid.synth.datasets import generate_dataset
from plaid.train.config import TrainConfig
from plaid.train.loop import PatchTrainer
from plaid.train.recipes import config_with_overrides

SAMPLE = Path(__file__).resolve().parents[1] / "sample-data" / "SYN0001_R_CC.png"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch resnet18 + contrast model trained by `plaid train` on small synthetic images."""
    root = tmp_path_factory.mktemp("options")
    generate_dataset(root / "data", 6, seed=5, height=192, width=160, formats=("png",), calcified_fraction=0.7,
                     max_clusters=1)
    out = root / "model"
    assert main(["train", str(root / "data"), "--out", str(out), "--epochs", "1", "--patch-size", "64",
                 "--batch-size", "16", "--val-fraction", "0", "--frozen-layers", "0", "--architecture", "resnet18",
                 "--input-filter", "contrast", "--no-progress"]) == 0
    return out


def test_options_round_trip_through_config_and_checkpoint(trained: Path) -> None:
    saved = json.loads((trained / "train_config.json").read_text())
    assert (saved["architecture"], saved["input_filter"]) == ("resnet18", "contrast")
    model, meta = load_model(trained / "last.pt")
    assert (model.architecture, model.input_filter_name) == ("resnet18", "contrast")
    assert (meta["architecture"], meta["input_filter"]) == ("resnet18", "contrast")
    assert len(model.backbone.layer1) == 2  # resnet18's two blocks per stage, not resnet50's three
    assert not any(p.requires_grad for p in model.input_filter.parameters())


def test_predictor_applies_the_stored_front_end(trained: Path) -> None:
    predictor = PatchPredictor(trained / "last.pt", InferConfig(runtime="torch-fp32"))
    pixels = read_mammogram(next((trained.parent / "data").glob("*.png")), min_size=64).pixels
    prediction = predictor.predict(pixels)
    image = predictor.prepare(pixels)
    indices = np.flatnonzero(prediction.scored)
    model, _ = load_model(trained / "last.pt")
    with torch.inference_mode():
        channels = build_input_filter("contrast")(torch.from_numpy(image.patches(indices)[:, None]))
        normalised = (channels - model.mean) / model.std
        manual = torch.sigmoid(model.backbone(normalised).squeeze(1)).numpy()
        plain = torch.sigmoid(model.backbone((channels[:, :1].expand(-1, 3, -1, -1) - model.mean) / model.std))
    np.testing.assert_allclose(prediction.probabilities[indices], manual, atol=1e-5)
    assert np.abs(plain.squeeze(1).numpy() - manual).max() > 1e-4  # without the filter the output differs


def test_checkpoint_without_the_options_loads_as_the_paper_model(tmp_path: Path) -> None:
    model = PatchClassifier(frozen_layers=0)
    path = save_checkpoint(tmp_path / "old.pt", model)
    payload = torch.load(path, weights_only=True)
    del payload["architecture"], payload["input_filter"]
    torch.save(payload, tmp_path / "old.pt")
    loaded, _ = load_model(tmp_path / "old.pt")
    assert (loaded.architecture, loaded.input_filter_name) == ("resnet50", "none")


def test_unknown_values_are_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(PlaidInputError, match="input_filter='sobel'"):
        TrainConfig(input_filter="sobel").validate()
    with pytest.raises(PlaidInputError, match="architecture='vgg16'"):
        TrainConfig(architecture="vgg16", frozen_layers=0).validate()
    with pytest.raises(PlaidInputError, match="frozen_layers=100"):
        TrainConfig(architecture="resnet18").validate()
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"input_filter": "Contrast"}))
    with pytest.raises(PlaidInputError, match="input_filter='Contrast'"):
        config_with_overrides(recipe, {}).validate()
    with pytest.raises(ValueError, match="input_filter='sobel' is unknown"):
        PatchClassifier(input_filter="sobel")
    with pytest.raises(SystemExit):
        main(["train", str(tmp_path), "--out", str(tmp_path / "o"), "--architecture", "vgg16"])
    assert "--architecture" in capsys.readouterr().err
    with pytest.raises(ValueError, match="resnet50 only"):
        PatchClassifier(frozen_layers=10, architecture="resnet18")


@pytest.mark.parametrize("name", [n for n in candidate_names(CPU) if n.startswith(("onnxruntime", "openvino"))])
def test_exported_runtimes_agree_with_torch_with_the_front_end_on(name: str) -> None:
    torch.manual_seed(4)
    model = build_model(0, pretrained=False, architecture="resnet18", input_filter="contrast").eval()
    image = prepare_file(SAMPLE, PatchSettings(patch_size=64))
    tissue = np.flatnonzero(image.tissue)
    patches = image.patches(tissue[np.linspace(0, len(tissue) - 1, 12).astype(int)])[:, None]
    with torch.inference_mode():
        reference = torch.sigmoid(model(torch.from_numpy(patches))).numpy()
    probabilities = build_runtime(name, model, CPU, 64)(patches)
    assert np.abs(probabilities - reference).max() <= AGREEMENT_TOLERANCE
    assert np.ptp(reference) > 1e-4


def test_fine_tuning_refuses_a_model_of_another_architecture(trained: Path, tmp_path: Path) -> None:
    matching = TrainConfig(architecture="resnet18", input_filter="contrast", frozen_layers=0,
                           init_checkpoint=str(trained / "last.pt"))
    assert PatchTrainer(matching, tmp_path / "a")._initial_model().architecture == "resnet18"
    other = TrainConfig(frozen_layers=0, init_checkpoint=str(trained / "last.pt"))
    with pytest.raises(PlaidInputError, match="architecture='resnet50' differs"):
        PatchTrainer(other, tmp_path / "b")._initial_model()


def test_front_end_and_trained_model_read_the_same_with_and_without_bf16_autocast(trained: Path) -> None:
    """The demo's figure must not depend on whether the CPU has native bf16 (training autocasts there): the
    contrast front end computes in fp32 under autocast, so its channels are the same bits either way."""
    image = prepare_file(SAMPLE, PatchSettings(patch_size=64))
    tissue = np.flatnonzero(image.tissue)
    patches = torch.from_numpy(image.patches(tissue[np.linspace(0, len(tissue) - 1, 16).astype(int)])[:, None])
    model, _ = load_model(trained / "last.pt")
    with torch.inference_mode():
        full = model.input_filter(patches)
        plain = torch.sigmoid(model(patches))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_autocast = model.input_filter(patches)
            mixed = torch.sigmoid(model(patches).float())
            fine, coarse = model.input_filter.fine, model.input_filter.coarse
            bf16_specks = (fine(patches) - coarse(patches)).float()  # what the filter computed before
    assert under_autocast.dtype == torch.float32 and torch.equal(under_autocast, full)
    specks = full[:, 2:]
    assert specks.std() > 0.01  # the channel carries signal, so equality above is not between constants
    bf16_error = (0.5 + BAND_GAINS[1] * bf16_specks - specks).abs().max()
    assert bf16_error > 0.1 * specks.std()  # in bf16 the speck channel would be visibly off
    assert (mixed - plain).abs().max() <= 0.02


def test_description_names_the_checkpoints_backbone_patch_size_and_operating_point(trained: Path) -> None:
    threshold = read_checkpoint(trained / "last.pt").get("threshold")
    described = describe_checkpoint(trained / "last.pt")
    expected = "resnet18 (contrast front end) on full-resolution 64x64 patches"
    assert described == (expected if threshold is None else f"{expected}, operating point {threshold:.2f}")
    assert describe_checkpoint(trained / "last.pt", threshold=0.25).endswith("operating point 0.25")
    assert describe_checkpoint(trained / "missing.pt").startswith("no trained model yet")
