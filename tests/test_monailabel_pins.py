"""The MONAI Label functions PLAID wraps keep the parameters its wrappers were written for.

`lib.server.endpoint_guards` replaces MONAI Label 0.8.5's endpoint functions by checked ones that call
the originals with these parameters. When a MONAI Label upgrade changes one, this test names it: read
the new function, adjust its wrapper, then the record here.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "apps" / "plaid"))

from lib.server import endpoint_guards  # noqa: E402

ASYNC_TASK_RUN = ("monailabel.utils.async_tasks.task", "AsyncTask.run")

RECORDED: dict[tuple[str, str], tuple[str, ...]] = {
    ("monailabel.endpoints.infer", "run_inference"): (
        "background_tasks", "model", "image", "session_id", "params", "file", "label", "output"),
    ("monailabel.endpoints.datastore", "add_image"): ("background_tasks", "image", "params", "file", "user"),
    ("monailabel.endpoints.datastore", "save_label"): ("background_tasks", "image", "params", "tag", "label", "user"),
    ("monailabel.endpoints.datastore", "update_image_info"): ("image", "info", "user"),
    ("monailabel.endpoints.datastore", "update_label_info"): ("label", "tag", "info", "user"),
    ("monailabel.endpoints.datastore", "download_dataset"): ("limit_cases",),
    ("monailabel.endpoints.datastore", "download_image"): ("image", "check_only", "check_sum"),
    ("monailabel.endpoints.wsi_infer", "run_wsi_inference"): (
        "background_tasks", "model", "image", "session_id", "file", "wsi", "output"),
    ("monailabel.endpoints.model", "model_info"): ("model",),
    ("monailabel.endpoints.model", "download_model"): ("model",),
    ("monailabel.endpoints.model", "delete_model"): ("model",),
    ("monailabel.endpoints.model", "update_model"): ("background_tasks", "model", "file"),
    ("monailabel.endpoints.activelearning", "sample"): ("strategy", "params", "user"),
    ("monailabel.endpoints.train", "run"): ("params", "run_sync"),
    ("monailabel.endpoints.scoring", "run"): ("params", "run_sync"),
    ASYNC_TASK_RUN: ("method", "request", "params", "force_sync", "enqueue"),
}


def test_every_wrapped_function_is_recorded() -> None:
    wrapped = {(module, function) for module, function, _ in endpoint_guards.WRAPPED} | {ASYNC_TASK_RUN}
    assert wrapped == set(RECORDED), "endpoint_guards.WRAPPED and RECORDED here must name the same functions"


@pytest.mark.parametrize(("module_name", "qualified_name"), sorted(RECORDED))
def test_wrapped_function_keeps_its_parameters(module_name: str, qualified_name: str) -> None:
    target = importlib.import_module(module_name)
    for part in qualified_name.split("."):
        target = getattr(target, part)
    parameters = tuple(inspect.signature(inspect.unwrap(target)).parameters)
    assert parameters == RECORDED[module_name, qualified_name], (
        f"MONAI Label changed {module_name}.{qualified_name}: parameters {parameters}, PLAID's wrapper expects "
        f"{RECORDED[module_name, qualified_name]}; check its wrapper in lib.server.endpoint_guards")
