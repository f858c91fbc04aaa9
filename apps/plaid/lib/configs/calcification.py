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

from lib.activelearning.ranked import DEFAULT_STRATEGY, RankedStrategy
from lib.conf_keys import APP_DEFAULTS
from lib.infers.calcification import CalcificationInfer
from lib.scoring.films import FilmValueScoring
from lib.trainers.calcification import CalcificationTrainer
from plaid.infer.predictor import InferConfig, PatchPredictor
from plaid.options import dataclass_from_mapping, parse_bool
from plaid.train.config import TrainConfig
from plaid.train.recipes import read_recipe

logger = logging.getLogger(__name__)

LABELS = {"calcification": 1}

# --conf keys that differ from the config field they set (all others match a field of InferConfig or
# TrainConfig by name, or of lib.conf_keys.AppConf; the docs' option tables are generated from the three).
CONF_RENAMES = {"pretrained_weights": "weights_path"}


class Calcification(TaskConfig):
    """Wires PLAID's predictor, trainer, active-learning scoring and default strategy into MONAI Label."""

    def init(self, name: str, model_dir: str, conf: dict[str, str], planner: Any, **kwargs: Any) -> None:
        """Read the --conf options and set where the published model lives."""
        super().init(name, model_dir, conf, planner, **kwargs)
        self.labels = LABELS
        self.path = os.path.join(model_dir, f"{name}.pt")
        values = {CONF_RENAMES.get(key, key): value for key, value in conf.items()}
        values.pop("init_checkpoint", None)
        recipe = values.pop("recipe", None)
        self.infer_config = dataclass_from_mapping(InferConfig, values)
        # a recipe file sets the training defaults; a --conf key given beside it wins
        self.train_defaults = TrainConfig.from_mapping({**(read_recipe(recipe) if recipe else {}), **values}).validate()
        self.finetune = parse_bool(conf.get("finetune", APP_DEFAULTS.finetune))
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
        """The default strategy, ranking the values written by `scoring_method` (none when it is `random`)."""
        return {DEFAULT_STRATEGY: RankedStrategy(DEFAULT_STRATEGY)} if DEFAULT_STRATEGY != "random" else None

    def scoring_method(self) -> ScoringMethod | dict[str, ScoringMethod] | None:
        """Stores every ranked strategy's value of each unlabeled image under the current model."""
        return {"active_learning": FilmValueScoring(self.predictor)}
