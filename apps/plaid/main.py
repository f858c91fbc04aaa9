"""PLAID MONAI Label app: breast microcalcification patches in full-resolution mammograms.

Start with ``monailabel start_server --app apps/plaid --studies sample-data --host 127.0.0.1``;
options are listed in apps/plaid/README.md.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random
from monailabel.utils.others.class_utils import get_class_names

import lib.configs
import plaid
from lib.datastore import IMAGE_PATTERNS, LABEL_PATTERNS, CheckedLocalDatastore
from lib.errors import http_error
from plaid.errors import PlaidError
from plaid.options import parse_bool

logger = logging.getLogger(__name__)


def default_model_dir(app_dir: str) -> str:
    """`model/` at the repository root when the app sits in apps/plaid, else `<app>/model`."""
    repo_model = Path(app_dir).resolve().parent.parent / "model"
    return str(repo_model) if repo_model.is_dir() else os.path.join(app_dir, "model")


class PlaidApp(MONAILabelApp):
    """Serves the `calcification` patch classifier, its trainer, and active learning."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.model_dir = conf.get("model_dir") or default_model_dir(app_dir)
        os.makedirs(self.model_dir, exist_ok=True)
        available = {c.split(".")[-2].lower(): c for c in get_class_names(lib.configs, "TaskConfig")}
        wanted = [m.strip() for m in (conf.get("models") or "all").split(",") if m.strip()]
        unknown = [m for m in wanted if m != "all" and m not in available]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; available: {sorted(available)}")
        self.models: dict[str, TaskConfig] = {}
        for name, class_path in sorted(available.items()):
            if "all" in wanted or name in wanted:
                module_name, class_name = class_path.rsplit(".", 1)
                config = getattr(__import__(module_name, fromlist=[class_name]), class_name)()
                config.init(name, self.model_dir, conf, None)
                self.models[name] = config
        logger.info("PLAID models: %s (model dir %s)", list(self.models), self.model_dir)
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name=f"PLAID - breast microcalcification patches ({plaid.__version__})",
            description="ResNet50 classification of full-resolution 224x224 mammogram patches",
            version=plaid.__version__,
            labels={"calcification": 1},
        )

    def init_datastore(self) -> Datastore:
        """A local datastore that also lists DICOM / TIFF / PGM images and validates uploads; for an
        http(s) studies URL, PLAID's DICOMweb datastore (MG instances as `.dcm`, no dcmqi download)."""
        if self.studies.startswith(("http://", "https://")):
            from lib.dicomweb_setup import init_dicomweb_datastore

            self.studies = self.studies.rstrip("/").strip()
            return init_dicomweb_datastore(self.studies, self.conf)
        extensions = sorted(set(settings.MONAI_LABEL_DATASTORE_FILE_EXT) | set(IMAGE_PATTERNS) | set(LABEL_PATTERNS))
        patch_size = int(self.conf.get("patch_size") or 224)
        return CheckedLocalDatastore(
            self.studies,
            extensions=extensions,
            auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
            read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
            min_image_size=patch_size,
        )

    def _model_tasks(self, kind: str) -> dict[str, Any]:
        """Each configured model's task of one kind ('infer', 'trainer', 'strategy', 'scoring_method')."""
        tasks: dict[str, Any] = {}
        for name, config in self.models.items():
            task = getattr(config, kind)()
            if task:
                tasks.update(task if isinstance(task, dict) else {name: task})
        return tasks

    def init_infers(self) -> dict[str, InferTask]:
        """One infer task per configured model."""
        return self._model_tasks("infer")

    def init_trainers(self) -> dict[str, TrainTask]:
        """One trainer per configured model (none with --conf skip_trainers true)."""
        if parse_bool(self.conf.get("skip_trainers", "false")):
            return {}
        return self._model_tasks("trainer")

    def init_strategies(self) -> dict[str, Strategy]:
        """random, first, and each model's uncertainty strategy."""
        return {"random": Random(), "first": First(), **self._model_tasks("strategy")}

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        """Each model's scoring method."""
        return self._model_tasks("scoring_method")

    def infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """MONAI Label's infer, with unknown image ids and PLAID input errors answered as 4xx."""
        image = request.get("image")
        store = datastore or self.datastore()
        if isinstance(image, str) and not os.path.exists(image) and not store.get_image_uri(image):
            raise HTTPException(status_code=404, detail=f"image '{image}' is not in the datastore")
        try:
            return super().infer(request, datastore)
        except PlaidError as exc:
            raise http_error(exc) from exc
