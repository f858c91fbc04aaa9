"""How much calcification signal simple scores find in a labelled dataset's patches (docs/real-data.md).

No model is trained on the calcified patches. Over every labelled tissue patch of DATA (calcified = overlaps
the mask) it prints the patch-level ROC AUC of:

- brightness: the patch's mean intensity (dense tissue is bright on film);
- speck statistics: the largest and the count of outlying responses of a difference of Gaussians, each
  divided by the patch's own median absolute deviation, so that they measure specks standing out of their
  local texture, for a few sigma pairs around the calcification scale;
- with ``--zero-shot-steps N``: a ResNet18 with the contrast front end trained for N steps only to spot
  synthetic clusters pasted into the tissue of the normal films of the patients outside ``--hold-out``
  (a patient id list), then scoring the real calcified patches against the held-out women's normal films.

Usage: PYTHONPATH=lib python benchmarks/mias_signal.py DATA [--patch-size 64] [--zero-shot-steps 240
       --hold-out mdb005+mdb006,mdb017+mdb018,...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from plaid.io.datalist import load_records
from plaid.model.input_filter import GaussianBlur
from plaid.model.network import PatchClassifier
from plaid.patches.prepared import PatchSettings, PreparedImage, patch_index_for, prepare_images
from plaid.train.pretrain import PretrainConfig, run_pretext, tissue_rows

SIGMA_PAIRS = ((0.5, 1.0), (0.6, 1.5), (0.8, 2.0), (1.0, 3.0))
OUTLIER_MADS = 6.0


def labelled_patches(images: list[PreparedImage]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The label of every labelled tissue patch, image by image, and each image's patch numbers in that order."""
    index = patch_index_for(images)
    order = np.argsort(index.image, kind="stable")
    per_image = [index.patch[order][index.image[order] == number] for number in range(len(images))]
    return index.label[order].astype(int), per_image


def speck_statistics(images: list[PreparedImage], per_image: list[np.ndarray], sigmas: tuple[float, float]
                     ) -> np.ndarray:
    """(largest MAD-normalised DoG response, count above OUTLIER_MADS) per labelled patch, in index order."""
    fine, coarse = GaussianBlur(sigmas[0]), GaussianBlur(sigmas[1])
    rows = []
    for image, patches in zip(images, per_image, strict=True):
        if not len(patches):
            continue
        grey = torch.from_numpy(image.patches(patches)).float().unsqueeze(1)
        with torch.no_grad():
            response = (fine(grey) - coarse(grey)).flatten(1)
        spread = (response - response.median(1, keepdim=True).values).abs().median(1).values + 1e-4
        normalised = response / spread[:, None]
        rows.append(np.stack([normalised.max(1).values.numpy(), (normalised > OUTLIER_MADS).sum(1).numpy()], 1))
    return np.concatenate(rows)


def zero_shot(images: list[PreparedImage], hold_out: set[str], steps: int, patch_size: int) -> dict[str, float]:
    """Pretext-train on the normal films outside ``hold_out``; AUC of every real calcified patch against the
    held-out normal films' tissue patches."""
    train = [image for image in images if image.record.group not in hold_out and image.record.calcified is False]
    torch.manual_seed(0)
    model = PatchClassifier(frozen_layers=0, architecture="resnet18", input_filter="contrast")
    config = PretrainConfig(patch_size=patch_size, steps=steps, architecture="resnet18", input_filter="contrast")
    measured = run_pretext(model, train, tissue_rows(train), config, torch.device("cpu"), progress=True)
    model.eval()
    positives, negatives = [], []
    index = patch_index_for(images)
    for number, image in enumerate(images):
        mine = index.image == number
        calcified = index.patch[mine & (index.label == 1)]
        normal = image.record.calcified is False and image.record.group in hold_out
        for patches, into in ((calcified, positives), (index.patch[mine] if normal else [], negatives)):
            if len(patches):
                with torch.no_grad():
                    into.extend(torch.sigmoid(model(torch.from_numpy(image.patches(patches)).float()
                                                    .unsqueeze(1))).tolist())
    labels = np.r_[np.ones(len(positives)), np.zeros(len(negatives))]
    return {"pretext_accuracy": measured["final_accuracy"], "calcified_patches": len(positives),
            "normal_patches": len(negatives), "auc": float(roc_auc_score(labels, np.r_[positives, negatives]))}


def main() -> None:
    """Print the AUC of each simple score."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--zero-shot-steps", type=int, default=0)
    parser.add_argument("--hold-out", default="", help="comma-separated patient ids held out of the pretext")
    args = parser.parse_args()
    started = time.perf_counter()
    images, _ = prepare_images([r for r in load_records(args.data) if r.label],
                               PatchSettings(patch_size=args.patch_size), with_label=True, progress=False)
    labels, per_image = labelled_patches(images)
    print(f"{len(images)} films, {len(labels)} labelled tissue patches, {labels.sum()} calcified")
    brightness = np.concatenate([images[number].patches(patches).mean(axis=(1, 2))
                                 for number, patches in enumerate(per_image) if len(patches)])
    print(f"brightness (patch mean intensity): AUC {roc_auc_score(labels, brightness):.3f}")
    for sigmas in SIGMA_PAIRS:
        statistics = speck_statistics(images, per_image, sigmas)
        largest, outliers = (roc_auc_score(labels, statistics[:, column]) for column in (0, 1))
        print(f"DoG sigma {sigmas[0]}-{sigmas[1]} px: largest response AUC {largest:.3f}, "
              f"responses over {OUTLIER_MADS:g} MAD AUC {outliers:.3f}")
    if args.zero_shot_steps:
        print("zero-shot pretext model:", zero_shot(images, set(filter(None, args.hold_out.split(","))),
                                                    args.zero_shot_steps, args.patch_size))
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
