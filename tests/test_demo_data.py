"""The demos' training folder: sample data, the last films unlabelled, synthetic normal women added once; and the
line the demos print about what the threshold was chosen on."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from plaid.io.labels import read_label_mask, write_label_png
from plaid.model.checkpoint import write_payload
from plaid.synth.demo_data import UNLABELED_FOR_DEMO, operating_point_line, prepare_demo_studies

SAMPLE = Path(__file__).resolve().parents[1] / "sample-data"


def _rows(studies: Path) -> list[dict[str, str]]:
    with (studies / "metadata.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_demo_studies_hold_the_sample_data_and_synthetic_normal_women(tmp_path: Path) -> None:
    studies = prepare_demo_studies(SAMPLE, tmp_path / "studies", normal_women=1)
    samples = sorted(p.name for p in SAMPLE.iterdir() if p.suffix in (".png", ".dcm"))
    images = sorted(p.name for p in studies.iterdir() if p.suffix in (".png", ".dcm"))
    assert images == sorted([*samples, "NRM0001_R_CC.png", "NRM0001_R_MLO.png"])
    labels = {p.stem for p in (studies / "labels" / "final").iterdir()}
    withheld = {Path(name).stem for name in samples[-UNLABELED_FOR_DEMO:]}
    assert labels == ({Path(name).stem for name in samples} - withheld) | {"NRM0001_R_CC", "NRM0001_R_MLO"}
    for view in ("CC", "MLO"):
        mask = read_label_mask(studies / "labels" / "final" / f"NRM0001_R_{view}.png")
        assert mask.shape == (1400, 1100) and not mask.any()
    rows = _rows(studies)
    assert [r["patient_id"] for r in rows if r["image_id"].startswith("NRM")] == ["NRM0001", "NRM0001"]
    assert len(rows) == len(samples) + 2
    before = (studies / "NRM0001_R_CC.png").stat().st_mtime_ns
    prepare_demo_studies(SAMPLE, studies, normal_women=1)  # once per file: nothing rewritten or repeated
    assert (studies / "NRM0001_R_CC.png").stat().st_mtime_ns == before and _rows(studies) == rows


def test_operating_point_line_counts_normal_validation_films(tmp_path: Path) -> None:
    studies = tmp_path / "studies"
    (studies / "labels" / "final").mkdir(parents=True)
    for name, calcified in (("N1", False), ("N2", False), ("C1", True)):
        mask = np.zeros((8, 8), dtype=np.uint8)
        mask[2, 2] = calcified
        write_label_png(studies / "labels" / "final" / f"{name}.png", mask)
    checkpoint = write_payload(tmp_path / "best.pt", {
        "state_dict": {}, "threshold": 0.61, "operating_point": "false_marks", "operating_point_films": 3,
        "operating_point_films_source": "validation",
        "split": {"validation": [{"image_id": "N1"}, {"image_id": "N2"}, {"image_id": "C1"}]}})
    line, enough = operating_point_line(checkpoint, studies, min_normal=2)
    assert enough and line == ("operating point: threshold 0.610 (false_marks) chosen on 3 validation films, "
                               "2 of them without calcification")
    line, enough = operating_point_line(checkpoint, studies, min_normal=3)
    assert not enough and "fewer than 3 normal validation films" in line
