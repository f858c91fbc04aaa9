"""PLAID MONAI Label app: breast microcalcification patches in full-resolution mammograms.

Start with ``monailabel start_server --app apps/plaid --studies sample-data --host 127.0.0.1``;
options are listed in apps/plaid/README.md.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.exception import ImageNotFoundException
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.utils.others.class_utils import get_class_names

import lib.configs
import plaid
from lib import server
from lib.activelearning.recency import RecencyWeightedRandom
from lib.datastore import CheckedLocalDatastore
from lib.errors import UnknownTaskError
from plaid.model.description import describe_checkpoint
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
            description="Breast microcalcification patches: "
            + describe_checkpoint(Path(self.model_dir) / "calcification.pt", int(conf.get("patch_size") or 224)),
            version=plaid.__version__,
            labels={"calcification": 1},
        )
        server.install()

    def init_datastore(self) -> Datastore:
        """A local datastore listing only the mammograms PLAID reads (DICOM, PNG, TIFF, PGM), validating uploads;
        for an http(s) studies URL, PLAID's DICOMweb datastore (MG instances as `.dcm`, no dcmqi download)."""
        if self.studies.startswith(("http://", "https://")):
            from lib.dicomweb_setup import init_dicomweb_datastore

            self.studies = self.studies.rstrip("/").strip()
            return init_dicomweb_datastore(self.studies, self.conf)
        patch_size = int(self.conf.get("patch_size") or 224)
        return CheckedLocalDatastore(
            self.studies,
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
        return {"random": RecencyWeightedRandom(), "first": First(), **self._model_tasks("strategy")}

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        """Each model's scoring method."""
        return self._model_tasks("scoring_method")

    @staticmethod
    def _task(kind: str, tasks: dict[str, Any], name: Any) -> Any:
        """The task called ``name``, else `UnknownTaskError` listing the names served."""
        if not isinstance(name, str) or name not in tasks:
            raise UnknownTaskError(kind, name, list(tasks))
        return tasks[name]

    def infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """MONAI Label's infer for a served model on a datastore image (or a file uploaded with the request)."""
        self._task("model", self._infers, request.get("model"))
        image = request.get("image")
        store = datastore or self.datastore()
        if not isinstance(image, str) or not image or not (store.get_image_uri(image) or is_request_upload(image)):
            raise ImageNotFoundException(f"image {image!r} is not in the datastore")
        return super().infer(request, datastore)

    def train(self, request: dict[str, Any]) -> dict[str, Any]:
        """MONAI Label's train for a served trainer."""
        self.check_train_request(request.get("model"), request)
        return super().train(request)

    def check_train_request(self, model: Any, params: dict[str, Any] | None) -> None:
        """Raise `UnknownTaskError` / `PlaidInputError` for an unknown trainer or a bad training option."""
        self._task("trainer", self._trainers, model).validate_request(params or {})

    def check_scoring_request(self, method: Any, params: dict[str, Any] | None = None) -> None:
        """Raise `UnknownTaskError` for an unknown scoring method."""
        self._task("scoring method", self._scoring_methods, method)

    def scoring(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """MONAI Label's scoring for a served scoring method."""
        self.check_scoring_request(request.get("method"), request)
        return super().scoring(request, datastore)

    def next_sample(self, request: dict[str, Any]) -> dict[str, Any]:
        """The strategy's next image id; ``{"id": None, "message": ...}`` when no image is left to label."""
        task = self._task("strategy", self._strategies, request.get("strategy") or "random")
        store = self.datastore()
        result = task(request, store)
        if not result or not result.get("id"):
            total, done = len(store.list_images()), len(store.get_labeled_images())
            return {"id": None, "message": f"no image left to label: {done} of {total} images have a final label"}
        if self._auto_update_scoring:
            self.async_scoring(None)
        return result


def is_request_upload(path: str) -> bool:
    """True for the temporary file MONAI Label's infer endpoint writes for an image uploaded with the request."""
    candidate = Path(path)
    return (candidate.is_absolute() and candidate.name.startswith("tmp")
            and candidate.parent == Path(tempfile.gettempdir()) and candidate.is_file())
