"""ResNet50 patch classifier: Keras-style freezing, offline weight loading, checkpoints, forward pass."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18, resnet50

from plaid.cli import main
from plaid.errors import PlaidInputError
from plaid.model.checkpoint import load_model, save_checkpoint
from plaid.model.network import PatchClassifier, build_model, load_imagenet_weights
from plaid.synth.datasets import generate_dataset


@pytest.fixture(scope="module")
def model() -> PatchClassifier:
    return PatchClassifier(frozen_layers=100)


def test_keras_layer_count_and_boundary_of_first_100(model: PatchClassifier) -> None:
    layers = model.keras_layers()
    assert len(layers) == 175  # Keras' ResNet50 without its top
    assert layers[99][0] == "layer3.1.conv3"  # Keras conv4_block2_3_conv, the 100th layer
    assert layers[100][0] == "layer3.1.bn3"


def test_first_100_layers_frozen_rest_trainable(model: PatchClassifier) -> None:
    net = model.backbone
    frozen = [net.conv1, net.bn1, net.layer1, net.layer2, net.layer3[0], net.layer3[1].conv1,
              net.layer3[1].bn1, net.layer3[1].conv2, net.layer3[1].bn2, net.layer3[1].conv3]
    trainable = [net.layer3[1].bn3, net.layer3[2], net.layer4, net.fc]
    assert all(not p.requires_grad for module in frozen for p in module.parameters())
    assert all(p.requires_grad for module in trainable for p in module.parameters())
    model.train()
    assert not net.bn1.training and not net.layer2[0].bn1.training  # frozen BN keeps ImageNet statistics
    assert net.layer4[0].bn1.training


def test_gradient_reaches_only_trainable_layers(model: PatchClassifier) -> None:
    model.train()
    logits = model(torch.rand(2, 1, 224, 224))
    logits.sum().backward()
    assert model.backbone.conv1.weight.grad is None
    assert model.backbone.fc.weight.grad is not None and model.backbone.layer4[2].conv3.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_freeze_counts_are_configurable() -> None:
    none_frozen = PatchClassifier(frozen_layers=0)
    assert all(p.requires_grad for p in none_frozen.parameters())
    all_frozen = PatchClassifier(frozen_layers=175)
    trainable = [name for name, p in all_frozen.named_parameters() if p.requires_grad]
    assert trainable == ["backbone.fc.weight", "backbone.fc.bias"]
    with pytest.raises(ValueError):
        PatchClassifier(frozen_layers=500)


def test_forward_gives_one_logit_per_patch(model: PatchClassifier) -> None:
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(3, 1, 224, 224))
    assert out.shape == (3,) and torch.isfinite(out).all()


def test_imagenet_weights_load_from_local_file(tmp_path: Path) -> None:
    reference = resnet50(weights=None)
    weights = tmp_path / "resnet50-local.pth"
    torch.save(reference.state_dict(), weights)
    model = build_model(pretrained=True, weights_path=weights)
    assert torch.equal(model.backbone.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)


def test_no_weights_in_the_cache_warn_and_fall_back(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    model = PatchClassifier()
    with caplog.at_level(logging.WARNING, logger="plaid.model.network"):
        used = load_imagenet_weights(model)
    assert used is None
    assert "no pretrained resnet50 weights found" in caplog.text


@pytest.mark.parametrize("content", [None, b"not a torch file", "resnet18"])
def test_named_weights_that_cannot_be_used_are_an_error_naming_the_file(
    content: bytes | str | None, tmp_path: Path
) -> None:
    """A missing, corrupt or other-backbone ``--weights`` file stops the run instead of training from random."""
    weights = tmp_path / "weights.pth"
    if content == "resnet18":
        torch.save(resnet18(weights=None).state_dict(), weights)
    elif content is not None:
        weights.write_bytes(content)
    with pytest.raises(PlaidInputError, match=re.escape(str(weights))):
        build_model(pretrained=True, weights_path=weights)


def test_plaid_train_with_a_missing_weights_file_stops_naming_it(tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    generate_dataset(tmp_path / "data", 2, seed=1, height=192, width=160, formats=("png",), calcified_fraction=1.0,
                     max_clusters=1)
    missing = tmp_path / "imagenet.pth"
    code = main(["train", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--epochs", "1", "--patch-size",
                 "64", "--val-fraction", "0", "--architecture", "resnet18", "--frozen-layers", "0", "--weights",
                 str(missing), "--no-progress"])
    assert code != 0
    assert f"{missing}: pretrained weights (--weights / pretrained_weights) does not exist" in caplog.text
    assert not (tmp_path / "run" / "last.pt").exists()


def _count_downloads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Replace torchvision's download with a recorder serving random ResNet50 weights."""
    import torchvision.models._api as api

    urls: list[str] = []

    def fake_download(url: str, *args, **kwargs) -> dict[str, torch.Tensor]:
        urls.append(url)
        return resnet50(weights=None).state_dict()

    monkeypatch.setattr(api, "load_state_dict_from_url", fake_download)
    return urls


def test_no_frozen_layer_without_pretrained_weights(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    urls = _count_downloads(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="plaid.model.network"):
        model = build_model(frozen_layers=100, pretrained=True)       # PLAID_OFFLINE=1 in tests
    assert urls == []                                                  # offline: nothing downloaded
    assert all(p.requires_grad for p in model.parameters()) and model.frozen_layers == 0
    assert model.initialisation == "random" and "no layer is frozen" in caplog.text
    model.train()
    assert model.backbone.bn1.training                                 # batch norm learns the data's statistics
    assert build_model(frozen_layers=100, pretrained=False).frozen_layers == 0


def test_online_fetches_imagenet_weights_unless_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    urls = _count_downloads(monkeypatch)
    monkeypatch.setenv("PLAID_OFFLINE", "0")
    assert build_model(frozen_layers=100, pretrained=True, offline=True).frozen_layers == 0
    assert urls == []
    model = build_model(frozen_layers=100, pretrained=True)
    assert urls == ["https://download.pytorch.org/models/resnet50-11ad3fa6.pth"]
    assert model.frozen_layers == 100 and not model.backbone.conv1.weight.requires_grad
    assert model.initialisation.startswith("pretrained:")


def test_checkpoint_round_trip_with_weights_only(tmp_path: Path, model: PatchClassifier) -> None:
    path = save_checkpoint(tmp_path / "m.pt", model, threshold=0.37, epoch=3)
    loaded, meta = load_model(path)
    assert meta["threshold"] == pytest.approx(0.37) and meta["epoch"] == 3
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert torch.load(path, weights_only=True)["frozen_layers"] == 100
