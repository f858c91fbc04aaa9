"""Train task: balanced-patch ResNet50 training on every image with a saved `final` label, then publish."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from lib.datastore.names import check_name
from plaid.errors import PlaidInputError
from plaid.io.datalist import CaseRecord, attach_metadata, resolve_patients
from plaid.model.checkpoint import read_checkpoint
from plaid.options import OptionDoc, strict_bool
from plaid.serialization import json_safe, write_json
from plaid.train.checkpointing import checkpoint_is_publishable
from plaid.train.config import TrainConfig
from plaid.train.records import train_from_records

logger = logging.getLogger(__name__)

STATS_FILE = "train_stats.json"
DEFAULT_RUN_NAME = "calcification"
REQUEST_KEYS = ("epochs", "batch_size", "learning_rate", "frozen_layers", "negative_ratio", "val_fraction",
                "seed", "device", "amp", "augment", "max_negatives_per_image", "multi_gpu", "operating_point",
                "max_false_marks_per_image")
# The train request's parameters beside the training options in REQUEST_KEYS (described by TrainConfig's fields).
REQUEST_EXTRAS = (
    OptionDoc("finetune", "start from the published model when one exists (true) or from the configured initial "
              "weights (false)", "the `finetune` `--conf` key"),
    OptionDoc("name", "prefix of the run folder `model_dir/runs/<name>-<time>` (a plain name)",
              f"`{DEFAULT_RUN_NAME}`"),
)


class CalcificationTrainer(TrainTask):
    """Trains with PLAID's shared training loop and publishes the best checkpoint for the infer task."""

    def __init__(self, model_dir: str, publish_path: str, defaults: TrainConfig, finetune: bool = True) -> None:
        super().__init__(f"Balanced-patch {defaults.architecture} training on the saved final labels "
                         "(validation AUC selects)")
        self.model_dir = Path(model_dir)
        self.publish_path = Path(publish_path)
        self.defaults = defaults
        self.finetune = finetune

    def config(self) -> dict[str, Any]:
        """Options a client may change per training request."""
        values = {key: getattr(self.defaults, key) for key in REQUEST_KEYS}
        values["finetune"] = self.finetune
        return values

    def stats(self) -> dict[str, Any]:
        """Summary of the last finished run (read from the model folder, so every process sees it)."""
        path = self.model_dir / STATS_FILE
        try:
            return json_safe(json.loads(path.read_text())) if path.is_file() else {}
        except (OSError, ValueError):
            return {}

    def validate_request(self, request: dict[str, Any]) -> tuple[TrainConfig, str, bool]:
        """The training config, run name and finetune flag of a request; `PlaidInputError` names a bad value."""
        if not isinstance(request, dict):
            raise PlaidInputError("training parameters must be a JSON object")
        config = TrainConfig.from_mapping({**self.defaults.to_dict(),
                                           **{k: v for k, v in request.items() if k in REQUEST_KEYS}}).validate()
        name = check_name(request.get("name") or DEFAULT_RUN_NAME, "training run name")
        try:
            finetune = strict_bool(request.get("finetune", self.finetune))
        except ValueError as exc:
            raise PlaidInputError(f"option finetune: {exc}") from None
        return config, name, finetune

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        """Train on the datastore's final labels and publish the best checkpoint into the model folder."""
        config, name, finetune = self.validate_request(request)
        if finetune and self.publish_path.is_file():
            config = replace(config, init_checkpoint=str(self.publish_path))
        records = [CaseRecord(image=item["image"], label=item["label"]) for item in datastore.datalist()]
        studies = getattr(datastore, "_datastore_path", None)
        if studies:
            attach_metadata(records, Path(studies))
        resolve_patients(records)
        run_dir = self.model_dir / "runs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        logger.info("training on %d labelled images into %s", len(records), run_dir)
        started = time.time()
        result = train_from_records(records, config, run_dir, resume=False, on_error="skip", progress=False)
        published = None
        if result.best_checkpoint is not None:
            published = self._publish(result.best_checkpoint)
        stats = {
            "name": name,
            "run": run_dir.name,
            "published": published.name if published else None,
            "validation": result.validation,
            "images": len(records),
            "skipped": [asdict(problem) for problem in result.problems],
            "epochs": len(result.history),
            "best_val_auc": result.best_val_auc,
            "operating_point": result.operating_point,
            "total_time_s": round(time.time() - started, 2),
            "history": [asdict(item) for item in result.history],
        }
        write_json(self.model_dir / STATS_FILE, stats)
        return json_safe(stats)

    def _publish(self, checkpoint: Path) -> Path | None:
        """Copy the checkpoint into place atomically; the infer task reloads it on its next request.

        A checkpoint whose threshold or validation metrics are not finite is never published (None).
        """
        if not checkpoint_is_publishable(read_checkpoint(checkpoint)):
            logger.error("not publishing %s: its threshold or validation metrics are not finite numbers", checkpoint)
            return None
        self.publish_path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.publish_path.with_name(f".{self.publish_path.name}.staging")
        shutil.copyfile(checkpoint, staging)
        os.replace(staging, self.publish_path)
        logger.info("published %s -> %s", checkpoint, self.publish_path)
        return self.publish_path
