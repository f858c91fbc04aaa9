"""`plaid ensemble`: one checkpoint from several trained models whose patch probabilities are averaged.

The members must tile and score patches alike (patch settings, flip TTA). Their thresholds were chosen for
their own probabilities, not for the mean, so the ensemble stores one of its own: ``--threshold`` as given;
with ``--data``, the lowest threshold that marks at most ``--max-false-marks-per-image`` normal patches per
film on those films (every tissue patch scored as the app serves the ensemble; films of patients a member
trained, validated or was tested on are left out, so the members' test films stay the ensemble's test films, and
the checkpoint lists the films that chose it); otherwise the mean of the members' thresholds, with a warning.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from plaid.commands import add_run_options
from plaid.errors import PlaidInputError
from plaid.evaluate.scoring import score_records
from plaid.infer.predictor import InferConfig, PatchPredictor
from plaid.io.datalist import CaseRecord, load_records
from plaid.model.checkpoint import read_checkpoint, write_payload
from plaid.model.ensemble import MEMBERS_KEY, ensemble_payload, mean_slope1_threshold, training_patients
from plaid.train.holdout import TEST_PART, patients_in
from plaid.train.operating_point import FALSE_MARKS, FilmScores, film_entries, operating_point_record

logger = logging.getLogger(__name__)

DEFAULT_MAX_FALSE_MARKS = 1.0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `ensemble` sub-command."""
    parser = subparsers.add_parser(
        "ensemble", help="combine trained models into one checkpoint that averages their probabilities",
        description=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("members", nargs="+", type=Path, help="member checkpoints (at least two), e.g. runs/s*/best.pt")
    parser.add_argument("--out", type=Path, required=True, help="the ensemble checkpoint to write (must not exist)")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--threshold", type=float, help="the ensemble's threshold, as given")
    choice.add_argument("--data", type=Path, help="films (folder or datalist) the members did not train on, to "
                                                  "choose the threshold on")
    parser.add_argument("--max-false-marks-per-image", type=float, default=DEFAULT_MAX_FALSE_MARKS,
                        help="with --data: false patches per film allowed at the threshold (default %(default)s)")
    add_run_options(parser, "bad films in --data")
    parser.set_defaults(handler=run)


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse a bad output path, member list or threshold before anything is read."""
    if len(args.members) < 2:
        raise PlaidInputError(f"an ensemble needs at least two member checkpoints, got {len(args.members)}")
    if len({path.resolve() for path in args.members}) < len(args.members):
        raise PlaidInputError("a member checkpoint is listed twice")
    if args.out.exists():
        raise PlaidInputError("the output file exists already; choose another --out", args.out)
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise PlaidInputError(f"threshold must be between 0 and 1, got {args.threshold}")
    if args.max_false_marks_per_image < 0:
        raise PlaidInputError(f"max-false-marks-per-image must be 0 or more, got {args.max_false_marks_per_image}")


def unseen_records(records: list[CaseRecord], members: list[dict[str, Any]]) -> list[CaseRecord]:
    """The records of patients no member trained, validated or was tested on; the others are left out with a
    message (a member's test films must not choose the threshold they are then reported at)."""
    trained = set().union(*(training_patients(member) for member in members))
    tested = set().union(*(patients_in(member.get("split") or {}, (TEST_PART,)) for member in members))
    unseen = [record for record in records if record.group not in trained | tested]
    for seen, role in ((trained, "trained or validated on"), (tested - trained, "held out as its test films")):
        left_out = sum(record.group in seen for record in records)
        if left_out:
            logger.warning("leaving out %d films of --data whose patients a member %s", left_out, role)
    if not unseen:
        raise PlaidInputError("every film in --data belongs to a patient a member trained, validated or was tested "
                              "on: the threshold needs other films")
    return unseen


def choose_threshold(checkpoint: Path, records: list[CaseRecord], max_per_film: float, slope1: float,
                     infer: InferConfig, on_error: str, progress: bool) -> dict[str, Any]:
    """Score every tissue patch of ``records`` with the ensemble as served and pick the lowest threshold with
    at most ``max_per_film`` false patches per film; returns the checkpoint keys that record it."""
    images, _ = score_records(records, PatchPredictor(checkpoint, infer), on_error=on_error, progress=progress)
    if not images:
        raise PlaidInputError("no usable film in --data (every one was skipped; see the warnings above)")
    films = [FilmScores(image.probabilities[image.tissue], image.labels[image.tissue]) for image in images]
    record = operating_point_record(films, FALSE_MARKS, max_per_film, slope1, "unseen",
                                    film_entries([image.record for image in images]))
    achieved = record["validation_false_marks_per_image"]
    return {**record, "threshold_source": f"chosen for the ensemble: at most {max_per_film:g} false patches per "
                                          f"film on {len(images)} films no member trained on ({achieved:.2f} there)"}


def run(args: argparse.Namespace) -> int:
    """Check the members, write the ensemble checkpoint with its threshold, and print what it holds."""
    check_arguments(args)
    members = [read_checkpoint(path) for path in args.members]
    payload = ensemble_payload(members, [str(path) for path in args.members])
    thresholds = [float(member.get("threshold", 0.5)) for member in members]
    if args.threshold is not None:
        payload.update(threshold=float(args.threshold), threshold_source="given (plaid ensemble --threshold)")
    elif args.data is None:
        payload.update(threshold=float(np.mean(thresholds)),
                       threshold_source="mean of the members' thresholds (not chosen for the ensemble)")
        logger.warning("no --data or --threshold: the ensemble's threshold is the mean of its members' (%s), which "
                       "were chosen for their own probabilities, not for the mean; pass --data FILMS to choose it",
                       ", ".join(f"{value:.4f}" for value in thresholds))
    else:
        records = unseen_records(load_records(args.data), members)
        scoring = args.out.with_name(f".{args.out.name}.scoring")
        write_payload(scoring, {**payload, "threshold": 0.5})
        try:
            infer = InferConfig(batch_size=args.batch_size, device=args.device, runtime=args.runtime)
            payload.update(choose_threshold(scoring, records, args.max_false_marks_per_image,
                                            mean_slope1_threshold(members), infer, args.on_error, args.progress))
        finally:
            scoring.unlink(missing_ok=True)
    write_payload(args.out, payload)
    print(f"ensemble of {len(payload[MEMBERS_KEY])} members -> {args.out}")
    print(f"threshold {payload['threshold']:.4f}: {payload['threshold_source']}")
    return 0
