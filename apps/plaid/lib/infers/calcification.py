"""Infer task: full-resolution patch classification of a whole mammogram, returned as a label image + JSON."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from monailabel.interfaces.datastore import DefaultLabelTag
from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

from lib.datastore.dicom_results import parse_dicom_outputs, publish_dicom_results, require_result_store
from lib.datastore.json_values import check_client_id, check_number
from lib.datastore.names import check_name
from lib.server.request_checks import MAX_INFER_TIMEOUT_S, check_bool, check_device
from lib.server.request_files import result_path
from plaid.errors import ModelNotFoundError, PlaidInputError
from plaid.infer.predictor import PatchPredictor
from plaid.io.images import read_mammogram
from plaid.io.labels import write_label_image
from plaid.model.description import describe_checkpoint
from plaid.options import Bounds, OptionDoc
from plaid.patches.tissue import tissue_mask

logger = logging.getLogger(__name__)

DEFAULT_RESULT_EXTENSION = ".nrrd"
RESULT_EXTENSIONS = (".nrrd", ".nii.gz", ".nii", ".png", ".tif", ".tiff")
LABEL_OUTPUTS = ("mask", "probability")
THRESHOLD_BOUNDS = Bounds(0.0, 1.0)
TIMEOUT_BOUNDS = Bounds(0.0, MAX_INFER_TIMEOUT_S, low_open=True)

# Every parameter an infer request may carry (the task's own and those MONAI Label reads around it), each
# described once: the README's table is generated from these rows.
INFER_PARAMS = (
    OptionDoc("image", "a datastore image id, or the file uploaded with the request; server paths are refused",
              "required"),
    OptionDoc("result_extension", f"label file format: {', '.join(f'`{e}`' for e in RESULT_EXTENSIONS)}",
              f"`{DEFAULT_RESULT_EXTENSION}`", notes="NRRD and NIfTI carry the image's ITK geometry, so Slicer "
                                                   "overlays the result"),
    OptionDoc("label_output", "`mask` (1 on every positive patch, 0 elsewhere) or `probability` (a float32 map of "
              "the patch probabilities)", f"`{LABEL_OUTPUTS[0]}`"),
    OptionDoc("threshold", "decision threshold for this request only", "the model's", THRESHOLD_BOUNDS.text()),
    OptionDoc("dicom_outputs", "`seg`, `sr` or `seg,sr`: store a DICOM SEG and/or a TID 1500 SR of the result in "
              "the PACS (DICOMweb datastore only)", "none"),
    OptionDoc("save_label", "MONAI Label's: save the result as a label of the image (a `mask` only)", "false"),
    OptionDoc("label_tag", f"MONAI Label's: the tag `save_label` saves under; a plain name, never "
              f"`{DefaultLabelTag.FINAL.value}` (a model result is not a final label)",
              f"`{DefaultLabelTag.ORIGINAL.value}`"),
    OptionDoc("timeout", "MONAI Label's: seconds the request may take", "MONAI Label's setting", TIMEOUT_BOUNDS.text()),
    OptionDoc("device", "MONAI Label's: a torch device (`cpu`, `cuda`, `cuda:N`, `mps`), checked; the model runs "
              "on the `device` `--conf` key's device", "none"),
    OptionDoc("client_id", "MONAI Label's: who asks (printable text, at most 128 characters)", "none"),
)


def request_threshold(value: Any) -> float | None:
    """The ``threshold`` request parameter as a probability in [0, 1] (None/'' keeps the model's)."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)) or len(str(value)) > 64:
            raise TypeError(value)
        threshold = float(value)
    except (TypeError, ValueError):
        raise PlaidInputError(f"threshold must be a number between 0 and 1, got {str(value)[:64]!r}") from None
    if not THRESHOLD_BOUNDS.contains(threshold):
        raise PlaidInputError(f"threshold must be between 0 and 1, got {value!r}")
    return threshold


def request_extension(value: Any) -> str:
    """The ``result_extension`` request parameter, one of `RESULT_EXTENSIONS`."""
    extension = value or DEFAULT_RESULT_EXTENSION
    if not isinstance(extension, str) or extension.lower() not in RESULT_EXTENSIONS:
        raise PlaidInputError(f"result_extension must be one of {', '.join(RESULT_EXTENSIONS)}, "
                              f"got {str(value)[:64]!r}")
    return extension.lower()


def request_label_output(value: Any) -> str:
    """The ``label_output`` request parameter, one of `LABEL_OUTPUTS`."""
    output = value or "mask"
    if not isinstance(output, str) or output.lower() not in LABEL_OUTPUTS:
        raise PlaidInputError(f"label_output must be one of {', '.join(LABEL_OUTPUTS)}, got {str(value)[:64]!r}")
    return output.lower()


@dataclass(frozen=True)
class InferOptions:
    """The checked options of one infer request."""

    label_output: str
    threshold: float | None
    extension: str
    dicom_outputs: list[str]
    save_label: bool


def request_options(request: dict[str, Any]) -> InferOptions:
    """Every option an infer request may carry, checked (`PlaidInputError` naming the first bad one).

    Besides the task's own options this covers the keys MONAI Label reads around the task: ``save_label``
    (a boolean; only a 0/1 mask may be saved), ``label_tag`` (a plain name other than 'final': a model
    result is never a final label), ``timeout`` (seconds), ``device`` and ``client_id``.
    """
    options = InferOptions(
        label_output=request_label_output(request.get("label_output")),
        threshold=request_threshold(request.get("threshold")),
        extension=request_extension(request.get("result_extension")),
        dicom_outputs=parse_dicom_outputs(request.get("dicom_outputs")),
        save_label=check_bool(request.get("save_label", False), "save_label"),
    )
    if options.dicom_outputs:
        require_result_store()
    if request.get("label_tag") is not None:
        tag = check_name(request["label_tag"], "label_tag")
        if tag == DefaultLabelTag.FINAL:
            raise PlaidInputError("label_tag 'final' is refused: an inference result is not a final label")
    if options.save_label and options.label_output != "mask":
        raise PlaidInputError("save_label needs label_output 'mask' (a probability map is not a label)")
    if request.get("timeout") is not None:
        check_number(request["timeout"], "timeout", 0.0, MAX_INFER_TIMEOUT_S, low_open=True)
    if request.get("device") is not None:
        check_device(request["device"])
    if "client_id" in request:
        check_client_id(request["client_id"])
    return options


class CalcificationInfer(InferTask):
    """Marks every patch the classifier calls calcified (patch size and backbone are the checkpoint's); the
    request parameters are `INFER_PARAMS`."""

    def __init__(self, predictor: PatchPredictor, labels: dict[str, int]) -> None:
        super().__init__(
            type=InferType.SEGMENTATION,
            labels=labels,
            dimension=2,
            description="Breast microcalcification patches: " + describe_checkpoint(
                predictor.checkpoint, predictor.config.patch_settings().patch_size, predictor.config.threshold),
            config={"label_output": list(LABEL_OUTPUTS), "threshold": "", "result_extension": DEFAULT_RESULT_EXTENSION,
                    "dicom_outputs": ""},
        )
        self.predictor = predictor

    def is_valid(self) -> bool:
        """Always listed, so clients see the model; a missing checkpoint is reported per request."""
        return True

    def get_path(self, validate: bool = True) -> str | None:
        """The published checkpoint path (None when validating and it does not exist yet)."""
        path = self.predictor.checkpoint
        return None if validate and not path.is_file() else str(path)

    def validate_request(self, request: dict[str, Any]) -> InferOptions:
        """The request's checked options (see `request_options`); called by the app before inference too."""
        return request_options(request)

    def __call__(self, request: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        """Run the predictor on ``request['image']`` and write the label file (PLAID errors name the bad value)."""
        started = time.perf_counter()
        path = request.get("image")
        if not isinstance(path, str) or not path:
            raise PlaidInputError("request names no image")
        options = self.validate_request(request)
        if not self.predictor.checkpoint.is_file():
            raise ModelNotFoundError(
                "no trained calcification model yet. Start a training run (POST /train/calcification, or "
                "`plaid train DATA --out DIR` and copy DIR/best.pt to the app's model folder) first."
            )
        _, meta = self.predictor.model()
        image = read_mammogram(path, min_size=self.predictor.patch_settings().patch_size)
        read_s = time.perf_counter() - started
        spacing = image.meta.pixel_spacing_mm[0] if image.meta.pixel_spacing_mm else None
        prediction = self.predictor.predict(image.pixels, threshold=options.threshold, spacing_mm=spacing)
        result = prediction.label_mask() if options.label_output == "mask" else prediction.probability_map()
        out_file = result_path(options.extension)
        write_started = time.perf_counter()
        write_label_image(out_file, result, reference=path, spacing_mm=image.meta.pixel_spacing_mm)
        summary = prediction.summary()
        summary["timings"].update(
            read_s=round(read_s, 4), write_s=round(time.perf_counter() - write_started, 4),
            total_s=round(time.perf_counter() - started, 4),
        )
        if options.dicom_outputs:
            summary["dicom_outputs"] = publish_dicom_results(path, prediction.label_mask(), summary["positives"],
                                                             options.dicom_outputs, tissue=tissue_mask(image.pixels))
        summary.update(
            label_output=options.label_output,
            image_shape=list(image.shape),
            label_names=self.labels,
            model=self.predictor.checkpoint.name,
            model_epoch=meta.get("epoch"),
        )
        logger.info("infer %s: %d/%d patches positive, image score %.3f", path, summary["patches_positive"],
                    summary["patches_scored"], summary["image_score"])
        return out_file, summary
