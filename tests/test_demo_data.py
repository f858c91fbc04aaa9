"""The demos' training folder: sample data, the last films unlabelled, synthetic normal women added once; and the
line the demos print about what the threshold was chosen on."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from plaid.io.labels import read_label_mask
from plaid.model.checkpoint import write_payload
from plaid.train.config import TrainConfig
from plaid.train.operating_point import FALSE_MARKS, FilmScores, operating_point_record
from plaid.train.recipes import read_recipe
from plaid_dev.demo_data import (
    DEMO_NORMAL_WOMEN,
    UNLABELED_FOR_DEMO,
    operating_point_line,
    prepare_demo_studies,
    withheld_images,
)
from plaid_dev.serving import DEMO_RECIPE

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
    withheld = {path.stem for path in withheld_images(SAMPLE)}
    assert len(withheld) == UNLABELED_FOR_DEMO and withheld == {Path(name).stem for name in samples[-2:]}
    assert {path.suffix for path in withheld_images(SAMPLE)} == {".png", ".dcm"}  # one film for each demo
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


def test_the_demo_recipe_holds_out_every_added_normal_woman_and_enough_normal_films() -> None:
    recipe = read_recipe(DEMO_RECIPE)
    assert recipe["operating_point_normal_women"] == DEMO_NORMAL_WOMEN
    minimum = recipe.get("operating_point_min_normal_films", TrainConfig().operating_point_min_normal_films)
    assert 2 * DEMO_NORMAL_WOMEN >= minimum  # CC and MLO each: the demos print no too-few warning


def test_operating_point_line_says_what_chose_the_threshold_and_warns_below_the_minimum(tmp_path: Path) -> None:
    films = [FilmScores(np.array([0.2, 0.7]), np.array([False, False])),
             FilmScores(np.array([0.3, 0.1]), np.array([False, False])),
             FilmScores(np.array([0.9, 0.4]), np.array([True, False]))]
    for minimum, enough in ((2, True), (3, False)):
        record = operating_point_record(films, FALSE_MARKS, 1.0, 0.5, "validation", min_normal_films=minimum)
        checkpoint = write_payload(tmp_path / f"best-{minimum}.pt", {"state_dict": {}, **record})
        line, said_enough = operating_point_line(checkpoint)
        assert said_enough is enough
        assert line.startswith(f"operating point: threshold {record['threshold']:.3f} (false_marks) chosen on 3 "
                               "validation films, 2 of them without calcification")
        assert ("fewer than 3" in line) is not enough
