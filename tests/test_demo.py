"""The README's first command: scripts/demo.py serves the sample data, trains if needed, infers, overlays."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import itk
import numpy as np
import pytest
from PIL import Image

from plaid.io.images import read_mammogram
from plaid_dev.demo_data import UNLABELED_FOR_DEMO
from plaid_dev.serving import REPO_ROOT, free_port

pytestmark = [pytest.mark.server, pytest.mark.slow]


def _load_demo():
    spec = importlib.util.spec_from_file_location("plaid_demo", REPO_ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_trains_infers_and_writes_overlay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    demo = _load_demo()
    studies, model_dir, out = tmp_path / "studies", tmp_path / "model", tmp_path / "out"
    code = demo.main(["--studies", str(studies), "--model-dir", str(model_dir), "--out", str(out),
                      "--port", str(free_port()), "--train-epochs", "1", "--exit"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert (model_dir / "calcification.pt").is_file()  # trained because no model existed
    unlabeled = sorted(p.name for p in studies.iterdir() if p.suffix in (".png", ".dcm")
                       and not list((studies / "labels" / "final").glob(f"{p.stem}.*")))
    assert len(unlabeled) == UNLABELED_FOR_DEMO
    image_id = Path(unlabeled[0]).stem
    mask = np.squeeze(itk.array_from_image(itk.imread(str(out / f"{image_id}_calcification.nrrd"))))
    assert mask.shape == read_mammogram(studies / unlabeled[0]).shape
    overlay = Image.open(out / f"{image_id}_overlay.png")
    assert overlay.size[0] > 200 and overlay.mode in ("RGB", "RGBA")
    assert "MONAI Label server: http://127.0.0.1:" in printed
