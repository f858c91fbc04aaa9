"""The `calcification` model: ResNet50 patch classifier marking 224x224 patches that hold calcifications."""

from __future__ import annotations

import logging
import os
from typing import Any

from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask

from lib.activelearning.uncertainty import PatchUncertaintyStrategy
from lib.infers.calcification import CalcificationInfer
from lib.scoring.uncertainty import PatchUncertaintyScoring
from lib.trainers.calcification import CalcificationTrainer
from plaid.inference import InferConfig, PatchPredictor
from plaid.options import parse_bool
from plaid.training import TrainConfig

logger = logging.getLogger(__name__)

LABELS = {"calcification": 1}

# --conf keys this model understands, with their defaults (documented in apps/plaid/README.md).
CONF_DEFAULTS: dict[str, Any] = {
    "patch_size": 224,
    "stride": None,
    "threshold": None,
    "skip_background": True,
    "batch_size": 32,
    "device": "auto",
    "amp": True,
    "epochs": 120,
    "learning_rate": 1e-4,
    "frozen_layers": 100,
    "negative_ratio": 1.0,
    "val_fraction": 0.05,
    "pretrained_weights": None,
    "finetune": True,
    "seed": 0,
}


def _conf_value(conf: dict[str, str], key: str) -> Any:
    """A --conf value, or its default; empty strings and 'none' mean the default."""
    value = conf.get(key)
    if value is None or str(value).strip().lower() in ("", "none", "null"):
        return CONF_DEFAULTS[key]
    return value


class Calcification(TaskConfig):
    """Wires PLAID's predictor, trainer and uncertainty scoring into MONAI Label."""

    def init(self, name: str, model_dir: str, conf: dict[str, str], planner: Any, **kwargs: Any) -> None:
        """Read the --conf options and set where the published model lives."""
        super().init(name, model_dir, conf, planner, **kwargs)
        self.labels = LABELS
        self.path = os.path.join(model_dir, f"{name}.pt")
        values = {key: _conf_value(conf, key) for key in CONF_DEFAULTS}
        self.infer_config = InferConfig(
            patch_size=int(values["patch_size"]),
            stride=int(values["stride"]) if values["stride"] is not None else None,
            threshold=float(values["threshold"]) if values["threshold"] is not None else None,
            skip_background=parse_bool(values["skip_background"]),
            batch_size=int(values["batch_size"]),
            device=str(values["device"]),
            amp=parse_bool(values["amp"]),
        )
        self.train_defaults = TrainConfig.from_mapping({
            "patch_size": values["patch_size"],
            "stride": values["stride"],
            "skip_background": values["skip_background"],
            "batch_size": values["batch_size"],
            "device": values["device"],
            "amp": values["amp"],
            "epochs": values["epochs"],
            "learning_rate": values["learning_rate"],
            "frozen_layers": values["frozen_layers"],
            "negative_ratio": values["negative_ratio"],
            "val_fraction": values["val_fraction"],
            "weights_path": values["pretrained_weights"],
            "seed": values["seed"],
        })
        self.finetune = parse_bool(values["finetune"])
        self.predictor = PatchPredictor(self.path, self.infer_config)
        logger.info("calcification model: %s (present: %s)", self.path, os.path.isfile(self.path))

    def infer(self) -> InferTask | dict[str, InferTask]:
        """The whole-image patch classification task."""
        return CalcificationInfer(self.predictor, labels=self.labels)

    def trainer(self) -> TrainTask | None:
        """The balanced-patch trainer publishing into this model's path."""
        return CalcificationTrainer(
            model_dir=self.model_dir, publish_path=self.path, defaults=self.train_defaults, finetune=self.finetune
        )

    def strategy(self) -> Strategy | dict[str, Strategy] | None:
        """Uncertainty sampling over the scores written by `scoring_method`."""
        return {"patch_uncertainty": PatchUncertaintyStrategy()}

    def scoring_method(self) -> ScoringMethod | dict[str, ScoringMethod] | None:
        """Scores unlabeled images by the entropy of their patch predictions."""
        return {"patch_uncertainty": PatchUncertaintyScoring(self.predictor)}
