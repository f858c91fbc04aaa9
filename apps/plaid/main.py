"""PLAID MONAI Label app: breast microcalcification patches in full-resolution mammograms.

Start with ``monailabel start_server --app apps/plaid --studies sample-data --host 127.0.0.1``;
options are listed in apps/plaid/README.md.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from monailabel.config import settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.exception import ImageNotFoundException
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.utils.others.class_utils import get_class_names

import lib.configs
import plaid
from lib.activelearning.ranked import DEFAULT_REASON, DEFAULT_STRATEGY
from lib.activelearning.recency import RecencyWeightedRandom
from lib.conf_keys import APP_DEFAULTS
from lib.datastore.json_values import check_json_object, check_text
from lib.datastore.local import CheckedLocalDatastore
from lib.server import startup
from lib.server.errors import UnknownTaskError
from lib.server.request_checks import (
    MAX_TASK_JSON_BYTES,
    STRATEGY_PARAMS,
    check_bool,
    check_device,
    check_same,
    check_strategy_params,
    check_whole,
)
from lib.server.request_files import is_current_upload
from plaid.errors import PlaidInputError
from plaid.model.description import describe_checkpoint
from plaid.options import OptionDoc, parse_bool

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
        wanted = [m.strip() for m in (conf.get("models") or APP_DEFAULTS.models).split(",") if m.strip()]
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
        startup.install()

    def init_datastore(self) -> Datastore:
        """A local datastore listing only the mammograms PLAID reads (DICOM, PNG, TIFF, PGM), validating uploads;
        for an http(s) studies URL, PLAID's DICOMweb datastore (MG instances as `.dcm`, no dcmqi download)."""
        if self.studies.startswith(("http://", "https://")):
            from lib.datastore.dicomweb_setup import init_dicomweb_datastore

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
        if parse_bool(self.conf.get("skip_trainers", APP_DEFAULTS.skip_trainers)):
            return {}
        return self._model_tasks("trainer")

    def init_strategies(self) -> dict[str, Strategy]:
        """Each model's ranked strategy (the default first), random and first."""
        return {**self._model_tasks("strategy"), "random": RecencyWeightedRandom(), "first": First()}

    def default_strategy(self) -> str:
        """The strategy a next-sample request without one gets: `DEFAULT_STRATEGY` when served, else random."""
        return DEFAULT_STRATEGY if DEFAULT_STRATEGY in self._strategies else "random"

    def info(self) -> dict[str, Any]:
        """MONAI Label's /info, plus which active-learning strategy is the default and why."""
        return {**super().info(), "active_learning": {"default_strategy": self.default_strategy(),
                                                      "why": DEFAULT_REASON}}

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        """Each model's scoring method."""
        return self._model_tasks("scoring_method")

    @staticmethod
    def _task(kind: str, tasks: dict[str, Any], name: Any) -> Any:
        """The task called ``name``, else `UnknownTaskError` listing the names served."""
        if not isinstance(name, str) or name not in tasks:
            raise UnknownTaskError(kind, name, list(tasks))
        return tasks[name]

    def _load_sessions(self, load: bool = False) -> None:
        """No MONAI Label sessions: inference reads datastore images and same-request uploads only."""
        return None

    def infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """MONAI Label's infer for a served model on a datastore image (or the file uploaded with this request),
        once every option is checked: a bad one is refused before the model runs.

        The task is handed the image's datastore path, never the client's string: MONAI Label would read an id
        that also names a file in the server's working folder as that file. A requested ``save_label`` is
        done here, as MONAI Label does it, into the image's labels.
        """
        options = self._task("model", self._infers, request.get("model")).validate_request(request)
        image = request.get("image")
        store = datastore or self.datastore()
        upload = is_current_upload(image)
        path = image if upload else (store.get_image_uri(image) if isinstance(image, str) and image else "")
        if not path:
            shown = image[:128] if isinstance(image, str) else image
            raise ImageNotFoundException(f"image {shown!r} is not in the datastore")
        result = super().infer({**request, "image": path, "save_label": False}, store)
        if options.save_label and not upload and result.get("file"):
            tag = request.get("label_tag") or DefaultLabelTag.ORIGINAL
            result["label"] = store.save_label(image, result["file"], tag,
                                               {"model": request.get("model"), "params": result.get("params")})
        return result

    def check_task_request(self, kind: str, request: dict[str, Any], params: Any) -> None:
        """Check a training, scoring or batch-inference request before MONAI Label starts its process.

        MONAI Label merges ``params`` over ``request`` (which holds the name from the URL), so ``params`` may
        not rename the task; the merged request is what the task reads.
        """
        values = check_json_object(params if params is not None else {}, "params", MAX_TASK_JSON_BYTES)
        key = {"train": "model", "scoring": "method", "batch_infer": "model"}.get(kind)
        if key is None:
            return
        check_same(values, key, request.get(key))
        merged = {**request, **values}
        if kind == "train":
            self.check_train_request(request.get(key), merged)
        elif kind == "scoring":
            self.check_scoring_request(request.get(key), merged)
        else:
            self.check_batch_infer_request(request.get(key), merged)

    def train(self, request: dict[str, Any]) -> dict[str, Any]:
        """MONAI Label's train for a served trainer."""
        self.check_train_request(request.get("model"), request)
        return super().train(request)

    def check_train_request(self, model: Any, params: dict[str, Any] | None) -> None:
        """Raise `UnknownTaskError` / `PlaidInputError` for an unknown trainer or a bad training option."""
        self._task("trainer", self._trainers, model).validate_request(params or {})

    def check_scoring_request(self, method: Any, params: dict[str, Any] | None = None) -> None:
        """Raise `UnknownTaskError` for an unknown scoring method, `PlaidInputError` for a bad ``force``."""
        self._task("scoring method", self._scoring_methods, method)
        if params and "force" in params:
            check_bool(params["force"], "force")

    def check_batch_infer_request(self, model: Any, params: dict[str, Any]) -> None:
        """Raise `UnknownTaskError` / `PlaidInputError` for an unknown model or a bad batch-inference option."""
        task = self._task("model", self._infers, model)
        if not isinstance(params.get("images", "all"), str) or params.get("images", "all") not in BATCH_IMAGES:
            raise PlaidInputError(f"images must be one of {', '.join(BATCH_IMAGES)} (a query parameter)")
        if "device" in params:
            check_device(params["device"])
        if check_bool(params.get("multi_gpu", True), "multi_gpu") and not _gpu_count():  # MONAI Label's default
            raise PlaidInputError("multi_gpu: this server has no GPU; send multi_gpu false")
        gpus = params.get("gpus", "all")
        if not isinstance(gpus, str) or not (gpus == "all" or all(p.isdigit() for p in gpus.split(","))):
            raise PlaidInputError(f"gpus must be 'all' or GPU numbers such as '0,1', got {str(gpus)[:40]!r}")
        if params.get("logging") is not None and check_text(params["logging"], "logging", 16) not in LOG_LEVELS:
            raise PlaidInputError(f"logging must be one of {', '.join(LOG_LEVELS)}")
        for key, high in (("max_workers", MAX_BATCH_WORKERS), ("max_batch_size", MAX_BATCH_IMAGES)):
            if key in params:
                check_whole(params[key], key, 0, high)
        task.validate_request({**params, "save_label": True})

    def scoring(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """MONAI Label's scoring for a served scoring method."""
        self.check_scoring_request(request.get("method"), request)
        return super().scoring(request, datastore)

    def check_strategy_request(self, strategy: Any, params: dict[str, Any] | None) -> dict[str, Any]:
        """Raise `UnknownTaskError` / `PlaidInputError` for an unknown strategy or a bad next-sample option."""
        self._task("strategy", self._strategies, strategy)
        return check_strategy_params(strategy, params)

    def next_sample(self, request: dict[str, Any]) -> dict[str, Any]:
        """The strategy's next image id; ``{"id": None, "message": ...}`` when no image is left to label."""
        task = self._task("strategy", self._strategies, request.get("strategy") or self.default_strategy())
        store = self.datastore()
        result = task(request, store)
        if not result or not result.get("id"):
            total, done = len(store.list_images()), len(store.get_labeled_images())
            return {"id": None, "message": f"no image left to label: {done} of {total} images have a final label"}
        if self._auto_update_scoring:
            self.async_scoring(None)
        return result


BATCH_IMAGES = ("all", "labeled", "unlabeled")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_BATCH_WORKERS = 64
MAX_BATCH_IMAGES = 1_000_000

# The parameters of requests other than infer and train that PLAID checks (MONAI Label reads them), by request;
# a batch-inference request also takes every infer parameter. The README's table is generated from these rows.
OTHER_REQUEST_PARAMS: dict[str, tuple[OptionDoc, ...]] = {
    "POST /batch/infer/{model}": (
        OptionDoc("images", f"which datastore images: {', '.join(f'`{n}`' for n in BATCH_IMAGES)}", "`all`"),
        OptionDoc("multi_gpu", "one worker per GPU; a server without a GPU needs `false`", "true"),
        OptionDoc("gpus", "`all` or GPU numbers such as `0,1`", "`all`"),
        OptionDoc("logging", f"log level: {', '.join(f'`{n}`' for n in LOG_LEVELS)}", "MONAI Label's"),
        OptionDoc("max_workers", "worker processes", "MONAI Label's", f"[0, {MAX_BATCH_WORKERS}]"),
        OptionDoc("max_batch_size", "images per batch", "MONAI Label's", f"[0, {MAX_BATCH_IMAGES}]"),
    ),
    "POST /scoring/{method}": (
        OptionDoc("force", "score again the images already scored under the current model", "false"),
    ),
    "POST /activelearning/{strategy}": STRATEGY_PARAMS,
}


def _gpu_count() -> int:
    """CUDA devices visible to the server."""
    import torch

    return torch.cuda.device_count()
