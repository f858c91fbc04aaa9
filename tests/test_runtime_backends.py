"""Inference runtimes: every candidate agrees with torch fp32 on sample-data patches, 'auto' keeps a measured
one and remembers it per machine across restarts, a named runtime is honoured, and a missing or wrong backend
falls back to torch."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from plaid.infer.predictor import InferConfig, PatchPredictor
from plaid.model import runtime_cache, runtime_choice
from plaid.model.backends import AGREEMENT_TOLERANCE, Runtime, build_runtime, candidate_names
from plaid.model.checkpoint import save_checkpoint
from plaid.model.network import PatchClassifier, build_model
from plaid.model.runtime_choice import select_runtime
from plaid.patches.prepared import PatchSettings, prepare_file

SAMPLE = Path(__file__).resolve().parents[1] / "sample-data" / "SYN0001_R_CC.png"
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _own_choice_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with an empty machine cache and nothing remembered in the process."""
    monkeypatch.setenv(runtime_cache.CACHE_DIR_ENV, str(tmp_path / "cache"))
    runtime_cache.forget_choices()


@pytest.fixture
def timed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the runtimes timed, in order (a wrapper around the real timing)."""
    names: list[str] = []
    real = runtime_choice._time_runtime

    def counting(runtime: Runtime, *args: object) -> float:
        names.append(runtime.name)
        return real(runtime, *args)

    monkeypatch.setattr(runtime_choice, "_time_runtime", counting)
    return names


@pytest.fixture(scope="module")
def small_model() -> PatchClassifier:
    torch.manual_seed(5)
    return build_model(0, pretrained=False, architecture="resnet18", input_filter="contrast").eval()


@pytest.fixture(scope="module")
def model() -> PatchClassifier:
    torch.manual_seed(3)
    return build_model(pretrained=False).eval()


@pytest.fixture(scope="module")
def sample_patches() -> np.ndarray:
    """Twelve tissue patches of a committed sample mammogram, as (N, 1, 224, 224) float32 in [0, 1]."""
    image = prepare_file(SAMPLE, PatchSettings())
    tissue = np.flatnonzero(image.tissue)
    chosen = tissue[np.linspace(0, len(tissue) - 1, 12).astype(int)]
    return image.patches(chosen)[:, None]


@pytest.fixture(scope="module")
def reference(model: PatchClassifier, sample_patches: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return torch.sigmoid(model(torch.from_numpy(sample_patches))).numpy()


@pytest.mark.parametrize("name", candidate_names(CPU))
def test_every_cpu_candidate_agrees_with_torch_fp32_on_sample_patches(
    name: str, model: PatchClassifier, sample_patches: np.ndarray, reference: np.ndarray
) -> None:
    runtime = build_runtime(name, model, CPU, 224)
    assert runtime.name == name
    probabilities = runtime(sample_patches)
    assert probabilities.shape == (len(sample_patches),) and probabilities.dtype == np.float32
    assert np.abs(probabilities - reference).max() <= AGREEMENT_TOLERANCE
    assert np.ptp(reference) > 0  # the check is not between two constant outputs


def test_auto_times_every_candidate_and_keeps_an_agreeing_fastest(
    model: PatchClassifier, sample_patches: np.ndarray, reference: np.ndarray
) -> None:
    runtime_cache.forget_choices()
    chosen = select_runtime(model, CPU, "auto", 224, probe_batch=2)
    timings = dict(item.split("=") for item in chosen.notes["timings"].split(", "))
    assert set(timings) == set(candidate_names(CPU))
    assert chosen.name == max(timings, key=lambda name: float(timings[name]))
    assert np.abs(chosen(sample_patches) - reference).max() <= AGREEMENT_TOLERANCE
    again = select_runtime(model, CPU, "auto", 224, probe_batch=2)  # a reload reuses the measured choice
    assert again.name == chosen.name and "timings" not in again.notes


def test_named_runtime_is_honoured_by_the_predictor(model: PatchClassifier, tmp_path: Path) -> None:
    checkpoint = save_checkpoint(tmp_path / "m.pt", model)
    predictor = PatchPredictor(checkpoint, InferConfig(runtime="torch-fp32-cl"))
    assert predictor.runtime().name == "torch-fp32-cl"
    with pytest.raises(ValueError, match="runtime must be one of"):
        InferConfig(runtime="tensorrt")


def test_missing_package_falls_back_to_torch(model: PatchClassifier, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now raises ImportError
    assert select_runtime(model, CPU, "openvino", 64, probe_batch=2).name == "torch-fp32"


def test_disagreeing_backend_is_rejected(model: PatchClassifier, monkeypatch: pytest.MonkeyPatch) -> None:
    real = runtime_choice.build_runtime

    def shifted(name: str, *args: object) -> Runtime:
        runtime = real(name, *args)
        if name == "torch-fp32-cl":
            return Runtime(name, lambda batch: np.clip(runtime.run(batch) + 0.05, 0, 1))
        return runtime

    monkeypatch.setattr(runtime_choice, "build_runtime", shifted)
    assert select_runtime(model, CPU, "torch-fp32-cl", 64, probe_batch=2).name == "torch-fp32"


@pytest.mark.parametrize("name", ["torch-fp32", "onnxruntime"])
def test_stored_uint16_patches_score_like_float_patches(name: str, model: PatchClassifier,
                                                        sample_patches: np.ndarray) -> None:
    runtime = build_runtime(name, model, CPU, 224)
    stored = np.rint(sample_patches * 65535).astype(np.uint16)
    np.testing.assert_allclose(runtime(stored), runtime(sample_patches), atol=1e-4)


def test_a_restart_builds_the_remembered_runtime_and_times_nothing(small_model: PatchClassifier,
                                                                   timed: list[str]) -> None:
    chosen = select_runtime(small_model, CPU, "auto", 32, probe_batch=2)
    assert sorted(timed) == sorted(candidate_names(CPU))
    stored = json.loads(runtime_cache.choice_cache_path().read_text())
    (entry,) = stored.values()
    assert entry["runtime"] == chosen.name and set(entry["patches_per_s"]) == set(timed)
    assert (entry["key"]["architecture"], entry["key"]["input_filter"], entry["key"]["patch_size"]) == (
        "resnet18", "contrast", 32)
    runtime_cache.forget_choices()  # what a new server process starts with
    timed.clear()
    again = select_runtime(small_model, CPU, "auto", 32, probe_batch=2)
    assert timed == [] and again.name == chosen.name and "timings" not in again.notes


@pytest.mark.parametrize("change", ["patch size", "torch version"])
def test_a_changed_key_measures_again(change: str, small_model: PatchClassifier, timed: list[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    select_runtime(small_model, CPU, "auto", 32, probe_batch=2)
    runtime_cache.forget_choices()
    timed.clear()
    patch_size = 32
    if change == "patch size":
        patch_size = 48
    else:
        real = runtime_cache._version
        monkeypatch.setattr(runtime_cache, "_version", lambda package: "9.9" if package == "torch" else real(package))
    select_runtime(small_model, CPU, "auto", patch_size, probe_batch=2)
    assert sorted(timed) == sorted(candidate_names(CPU))
    assert len(json.loads(runtime_cache.choice_cache_path().read_text())) == 2  # both machines' states remembered


def test_a_corrupt_cache_file_is_ignored_with_a_warning(small_model: PatchClassifier, timed: list[str],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    path = runtime_cache.choice_cache_path()
    path.parent.mkdir(parents=True)
    path.write_text('{"abc": {"runtime": ')
    with caplog.at_level(logging.WARNING, logger="plaid.model.runtime_cache"):
        chosen = select_runtime(small_model, CPU, "auto", 32, probe_batch=2)
    assert f"ignoring the runtime choice cache {path}" in caplog.text
    assert sorted(timed) == sorted(candidate_names(CPU))
    assert [entry["runtime"] for entry in json.loads(path.read_text()).values()] == [chosen.name]
