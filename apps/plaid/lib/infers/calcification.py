"""Infer task: full-resolution patch classification of a whole mammogram, returned as a label image + JSON."""

from __future__ import annotations

import logging
import tempfile
import time
from typing import Any

from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from lib.errors import http_error
from plaid.errors import ModelNotFoundError, PlaidError, PlaidInputError
from plaid.image_io import read_mammogram
from plaid.inference import PatchPredictor
from plaid.label_io import write_label_image

logger = logging.getLogger(__name__)

DEFAULT_RESULT_EXTENSION = ".nrrd"
LABEL_OUTPUTS = ("mask", "probability")


class CalcificationInfer(InferTask):
    """Marks every 224x224 patch the classifier calls calcified; request params:

    ``result_extension`` (.nrrd default, .nii.gz, .png, .tif), ``label_output`` ('mask' or 'probability'),
    ``threshold`` (overrides the model's operating point).
    """

    def __init__(self, predictor: PatchPredictor, labels: dict[str, int]) -> None:
        super().__init__(
            type=InferType.SEGMENTATION,
            labels=labels,
            dimension=2,
            description="Breast microcalcification patches (ResNet50 on full-resolution 224x224 patches)",
            config={"label_output": list(LABEL_OUTPUTS), "threshold": "", "result_extension": DEFAULT_RESULT_EXTENSION},
        )
        self.predictor = predictor

    def is_valid(self) -> bool:
        """Always listed, so clients see the model; a missing checkpoint is reported per request."""
        return True

    def get_path(self, validate: bool = True) -> str | None:
        """The published checkpoint path (None when validating and it does not exist yet)."""
        path = self.predictor.checkpoint
        return None if validate and not path.is_file() else str(path)

    def __call__(self, request: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        """Run the predictor on ``request['image']`` and write the label file."""
        try:
            return self._run(request)
        except PlaidError as exc:
            logger.warning("infer failed: %s", exc)
            raise http_error(exc) from exc

    def _run(self, request: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        started = time.perf_counter()
        if not self.predictor.checkpoint.is_file():
            raise ModelNotFoundError(
                f"no trained calcification model at {self.predictor.checkpoint}. Start a training run "
                "(POST /train/calcification, or `plaid train DATA --out DIR` and copy DIR/best.pt there) first."
            )
        path = request.get("image")
        if not isinstance(path, str) or not path:
            raise PlaidInputError("request names no image")
        label_output = str(request.get("label_output") or "mask").lower()
        if label_output not in LABEL_OUTPUTS:
            raise PlaidInputError(f"label_output must be one of {LABEL_OUTPUTS}, got {label_output!r}")
        threshold = request.get("threshold")
        threshold = float(threshold) if threshold not in (None, "") else None
        image = read_mammogram(path, min_size=self.predictor.config.patch_size)
        read_s = time.perf_counter() - started
        spacing = image.meta.pixel_spacing_mm[0] if image.meta.pixel_spacing_mm else None
        prediction = self.predictor.predict(image.pixels, threshold=threshold, spacing_mm=spacing)
        result = prediction.label_mask() if label_output == "mask" else prediction.probability_map()
        extension = request.get("result_extension") or DEFAULT_RESULT_EXTENSION
        out_file = tempfile.NamedTemporaryFile(suffix=extension, delete=False).name
        write_started = time.perf_counter()
        write_label_image(out_file, result, reference=path, spacing_mm=image.meta.pixel_spacing_mm)
        summary = prediction.summary()
        summary["timings"].update(
            read_s=round(read_s, 4), write_s=round(time.perf_counter() - write_started, 4),
            total_s=round(time.perf_counter() - started, 4),
        )
        summary.update(
            label_output=label_output,
            image_shape=list(image.shape),
            label_names=self.labels,
            model=str(self.predictor.checkpoint),
        )
        logger.info("infer %s: %d/%d patches positive, image score %.3f", path, summary["patches_positive"],
                    summary["patches_scored"], summary["image_score"])
        return out_file, summary
