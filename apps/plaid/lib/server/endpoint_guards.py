"""Checks PLAID runs inside MONAI Label's endpoints, before MONAI Label acts on a client's values.

MONAI Label's endpoint functions parse the client's JSON and act on it before any app code runs: they
merge ``params`` into the request (a JSON list or string there is a 500), add the user name to an
``info`` form (a list is a 500), name temporary files after the upload's file name, start training,
scoring and batch inference in a child process after answering 200, and write the infer result where a
same-host client saves its copy. Each module-level endpoint function named below is wrapped once, so
the checks run inside the request and a bad value gets a 4xx naming it (via `lib.server.errors`):

- infer: ``output``, ``params`` (an object), ``label`` and ``session_id`` (not used by PLAID), the upload's
  file name; the upload and the result live in a private per-request folder (`lib.server.request_files`);
- datastore: image ids, label tags, upload file names, ``params`` / ``info`` (`lib.datastore.stored_info`),
  ``limit_cases`` of the dataset archive (removed after it is sent); image and label uploads are kept
  in a private folder removed when the request ends, even when refused (MONAI Label's own temporary
  file would stay behind, as its clean-up runs only after a successful answer);
- active learning: the strategy and its ``params``;
- train, scoring, batch inference: every request goes through `AsyncTask.run`, checked by the app's
  `check_task_request` before the process starts;
- model files: only the served model's, and an upload replaces it only if it loads as a PLAID checkpoint;
  whole-slide inference is refused (PLAID serves none); GET /logs/gpu is 404 without nvidia-smi.

The MONAI Label 0.8.5 functions wrapped (`WRAPPED`), private API that a MONAI Label upgrade may change:
``monailabel.endpoints.infer.run_inference``; ``monailabel.endpoints.datastore.add_image``, ``save_label``,
``update_image_info``, ``update_label_info``, ``download_dataset``, ``download_image``;
``monailabel.endpoints.wsi_infer.run_wsi_inference``; ``monailabel.endpoints.model.model_info``,
``download_model``, ``delete_model``, ``update_model``; ``monailabel.endpoints.activelearning.sample``;
``monailabel.endpoints.train.run``; ``monailabel.endpoints.scoring.run``; and
``monailabel.utils.async_tasks.task.AsyncTask.run``. tests/test_monailabel_pins.py records each one's
parameter names and fails, naming the function, when an upgrade changes them: check that wrapper
against the new MONAI Label before updating the record.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Depends, HTTPException
from fastapi.responses import Response
from fastapi.routing import APIRoute
from monailabel.config import settings
from monailabel.endpoints.user.auth import RBAC, User
from starlette.background import BackgroundTask

from lib.datastore.json_values import check_text
from lib.datastore.names import check_name
from lib.datastore.stored_info import check_image_info, check_label_info
from lib.server import request_files
from lib.server.errors import UnknownTaskError
from lib.server.request_checks import check_whole, parse_json_object
from plaid.errors import PlaidInputError

MAX_ARCHIVE_CASES = 1_000_000
CHECKSUM_ALGORITHMS = ("SHA256", "SHA512", "MD5")  # what MONAI Label's file_checksum computes


def _app() -> Any:
    from monailabel.interfaces.utils.app import app_instance

    return app_instance()


def _once(original: Callable[..., Any], make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Callable[..., Any]:
    """``make(original)``, keeping the original's name and signature (``__wrapped__``), marked so
    installing twice does not wrap twice."""
    wrapper = functools.wraps(original)(make(original))
    wrapper.plaid_checked = True  # type: ignore[attr-defined]
    return wrapper


def _wrap(module_name: str, attribute: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    """Replace ``module.attribute`` by ``make(original)`` when the module is loaded and not yet wrapped."""
    module = sys.modules.get(module_name)
    original = getattr(module, attribute, None) if module else None
    if original is not None and not getattr(original, "plaid_checked", False):
        setattr(module, attribute, _once(original, make))


# -- infer -------------------------------------------------------------------------------------------------
def _guarded_inference(run_inference: Callable[..., Any]) -> Callable[..., Any]:
    def run(background_tasks: Any, model: str, image: str = "", session_id: str = "", params: str = "{}",
            file: Any = None, label: Any = None, output: Any = None) -> Any:
        if output is not None and str(getattr(output, "value", output)) == "dicom_seg":
            raise PlaidInputError("output=dicom_seg is not served by PLAID: ask for output=json, image or all, "
                                  "with params dicom_outputs 'seg' to store a DICOM SEG in the PACS")
        parse_json_object(params, "params")
        if label:
            raise PlaidInputError("label: the calcification model takes no input label; leave it out")
        if session_id:
            raise PlaidInputError("session_id: PLAID serves no MONAI Label sessions; send a datastore image id "
                                  "or upload the image with the request")
        if not image and not file:
            raise PlaidInputError("the request names no image: pass a datastore image id or upload a file")
        extension = request_files.upload_extension(file.filename) if file else ""
        folder, token = request_files.open_request()
        try:
            if file:
                image = str(request_files.store_upload(folder, file.file, extension))
            answer = run_inference(background_tasks, model, image, "", params, None, None, output)
        except BaseException:
            request_files.remove_folder(folder)
            raise
        finally:
            request_files.close_request(token)
        background_tasks.add_task(request_files.remove_folder, folder)
        return answer

    return run


# -- datastore ---------------------------------------------------------------------------------------------
def _upload_suffix(name: str, default: str) -> str:
    """The extension MONAI Label gives an upload's temporary file: every suffix of its name (``.nii.gz``)."""
    return "".join(Path(name).suffixes) if name else default


def _stored_upload(upload: Any, store: Callable[[str], Any], default_suffix: str) -> Any:
    """Save ``upload`` in a private request folder as ``upload<its extension>``, call ``store(path)``, and
    remove the folder whether or not the datastore took the file."""
    name = request_files.check_file_name(getattr(upload, "filename", None), "file name")
    folder, token = request_files.open_request()
    try:
        path = request_files.store_upload(folder, upload.file, _upload_suffix(name, default_suffix))
        return store(str(path))
    finally:
        request_files.close_request(token)
        request_files.remove_folder(folder)


def _checked_add_image(add_image: Callable[..., Any]) -> Callable[..., Any]:
    """PUT /datastore/image as MONAI Label answers it, with the id, file name and ``params`` checked first and the
    upload kept in a private folder removed afterwards (also when the datastore refuses it)."""

    def run(background_tasks: Any, image: str | None = None, params: str = "{}", file: Any = None,
            user: str | None = None) -> Any:
        name = request_files.check_file_name(getattr(file, "filename", None), "file name")
        suffix = _upload_suffix(name, ".nii.gz")
        image_id = check_name(image or Path(name).name.replace(suffix, ""), "image")
        info = check_image_info(parse_json_object(params, "params"), "params")
        if user:
            info["user"] = user
        stored = _stored_upload(file, lambda path: _app().datastore().add_image(image_id, path, info), ".nii.gz")
        return {"image": stored}

    return run


def _checked_save_label(save_label: Callable[..., Any]) -> Callable[..., Any]:
    """PUT /datastore/label as MONAI Label answers it, with the image, tag, file name and ``params`` checked first
    and the upload kept in a private folder removed afterwards (also when the datastore refuses it)."""

    def run(background_tasks: Any, image: str, params: str = "{}", tag: str = "final", label: Any = None,
            user: str | None = None) -> Any:
        check_text(image, "image", 1024)
        tag = check_name(tag or "final", "tag")
        info = check_label_info(parse_json_object(params, "params"), "params")
        app = _app()
        label_id = _stored_upload(label, lambda path: app.datastore().save_label(image, path, tag, info), ".nii.gz")
        answer = app.on_save_label(image, label_id) or {}
        answer.update({"image": image, "label": label_id})
        return answer

    return run


def _guarded_image_info(update_image_info: Callable[..., Any]) -> Callable[..., Any]:
    def run(image: str, info: str = "{}", user: str | None = None) -> Any:
        values = check_image_info(parse_json_object(info, "info"))
        return update_image_info(image, json.dumps(values), user)

    return run


def _guarded_label_info(update_label_info: Callable[..., Any]) -> Callable[..., Any]:
    def run(label: str, tag: str, info: str = "{}", user: str | None = None) -> Any:
        values = check_label_info(parse_json_object(info, "info"))
        return update_label_info(label, tag, json.dumps(values), user)

    return run


def _guarded_dataset(download_dataset: Callable[..., Any]) -> Callable[..., Any]:
    def run(limit_cases: int | None = None) -> Any:
        if limit_cases is not None:
            check_whole(limit_cases, "limit_cases", 1, MAX_ARCHIVE_CASES)
        if not _app().datastore().datalist():
            raise HTTPException(status_code=404, detail="no image has a final label yet: nothing to archive")
        response = download_dataset(limit_cases)
        from monailabel.utils.others.generic import remove_file

        response.background = BackgroundTask(remove_file, response.path)  # the archive is written to <tmp>
        return response

    return run


def _checked_download_image(download_image: Callable[..., Any]) -> Callable[..., Any]:
    """GET / HEAD /datastore/image: ``check_sum`` is ``[ALGORITHM:]hex digest`` with an algorithm MONAI Label has."""

    def run(image: str, check_only: bool = False, check_sum: str | None = None) -> Any:
        if check_sum:
            algorithm = check_sum.split(":")[0] if ":" in check_sum else "SHA256"
            if algorithm not in CHECKSUM_ALGORITHMS:
                raise PlaidInputError(f"check_sum: unknown algorithm {algorithm[:16]!r}; use one of "
                                      f"{', '.join(CHECKSUM_ALGORITHMS)} as ALGORITHM:digest")
        return download_image(image, check_only, check_sum)

    return run


# -- whole-slide inference and model files -----------------------------------------------------------------
def _no_wsi_inference(run_wsi_inference: Callable[..., Any]) -> Callable[..., Any]:
    """POST /infer/wsi*/{model}: PLAID serves no whole-slide model; refused before the upload is written."""

    def run(background_tasks: Any, model: str, *args: Any, **kwargs: Any) -> Any:
        raise UnknownTaskError("whole-slide (WSI) model", model, [])

    return run


def _served_model(model: Any) -> Any:
    """The infer task serving ``model`` (the model endpoints name the file by it), else `UnknownTaskError`."""
    app = _app()
    return app._task("model", app._infers, model)


def _known_model(function: Callable[..., Any]) -> Callable[..., Any]:
    """GET/DELETE /model/{model} and GET /model/info/{model} for a served model only (404 otherwise)."""

    def run(model: str, *args: Any, **kwargs: Any) -> Any:
        _served_model(model)
        return function(model, *args, **kwargs)

    return run


def _checked_update_model(update_model: Callable[..., Any]) -> Callable[..., Any]:
    """PUT /model/{model}: the upload replaces the published model only if it loads as a PLAID checkpoint with
    a finite threshold in [0, 1]; the swap is atomic and the upload's folder is removed in every case."""

    def run(background_tasks: Any, model: str, file: Any) -> Any:
        target = _served_model(model).get_path(validate=False)
        if not target:
            raise UnknownTaskError("model", model, [])

        def publish(path: str) -> dict[str, Any]:
            from monailabel.utils.others.generic import file_checksum

            from plaid.model.checkpoint import load_model

            try:
                _, meta = load_model(path)
            except Exception as exc:  # torch raises many types for a file that is not a checkpoint
                raise PlaidInputError(f"file is not a PLAID model checkpoint ({type(exc).__name__})") from None
            threshold = meta.get("threshold", 0.5)
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
                    or not math.isfinite(threshold) or not 0.0 <= threshold <= 1.0:
                raise PlaidInputError(f"file: the checkpoint's threshold {threshold!r} is not a number in [0, 1]")
            staging = Path(target).with_name(f".{Path(target).name}.upload")
            shutil.copyfile(path, staging)
            os.replace(staging, target)
            return {"checksum": file_checksum(target), "modified_time": int(os.stat(target).st_mtime)}

        return _stored_upload(file, publish, ".pt")

    return run


# -- active learning, train, scoring, batch inference ------------------------------------------------------
def _guarded_sample(sample: Callable[..., Any]) -> Callable[..., Any]:
    def run(strategy: str, params: dict | None = None, user: str | None = None) -> Any:
        return sample(strategy, _app().check_strategy_request(strategy, params), user)

    return run


def _guarded_async_run(task_run: Callable[..., Any]) -> Callable[..., Any]:
    def run(method: str, request: dict | None = None, params: dict | None = None, force_sync: bool = False,
            enqueue: bool = False) -> Any:
        _app().check_task_request(method, dict(request or {}), params)
        return task_run(method, request, params, force_sync, enqueue)

    return run


def _guarded_run_all(run_all: Callable[..., Any]) -> Callable[..., Any]:
    """POST /train/ and /scoring/ (every task): each task's entry in ``params`` must be an object."""

    def run(params: dict | None = None, run_sync: bool | None = False) -> Any:
        for name, value in (params or {}).items():
            if value is not None and not isinstance(value, dict):
                raise PlaidInputError(f"params.{str(name)[:64]} must be a JSON object")
        return run_all(params, run_sync)

    return run


async def _gpu_info(user: User = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_ADMIN))) -> Response:
    """GET /logs/gpu: nvidia-smi's report, or 404 on a server without it (MONAI Label's own answers 500)."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        raise HTTPException(status_code=404, detail="this server has no nvidia-smi (no NVIDIA GPU tools)")
    report = subprocess.run([tool], stdout=subprocess.PIPE, timeout=60, check=False).stdout
    return Response(content=report.decode("utf-8", "replace"), media_type="text/plain")


def install_routes(app: Any) -> None:
    """Answer GET /logs/gpu with `_gpu_info` (a route placed before MONAI Label's; idempotent)."""
    if getattr(app.state, "plaid_routes", False):
        return
    app.router.routes.insert(0, APIRoute("/logs/gpu", _gpu_info, methods=["GET"], include_in_schema=False))
    app.state.plaid_routes = True


WRAPPED: tuple[tuple[str, str, Callable[[Callable[..., Any]], Callable[..., Any]]], ...] = (
    ("monailabel.endpoints.infer", "run_inference", _guarded_inference),
    ("monailabel.endpoints.datastore", "add_image", _checked_add_image),
    ("monailabel.endpoints.datastore", "save_label", _checked_save_label),
    ("monailabel.endpoints.datastore", "update_image_info", _guarded_image_info),
    ("monailabel.endpoints.datastore", "update_label_info", _guarded_label_info),
    ("monailabel.endpoints.datastore", "download_dataset", _guarded_dataset),
    ("monailabel.endpoints.datastore", "download_image", _checked_download_image),
    ("monailabel.endpoints.wsi_infer", "run_wsi_inference", _no_wsi_inference),
    ("monailabel.endpoints.model", "model_info", _known_model),
    ("monailabel.endpoints.model", "download_model", _known_model),
    ("monailabel.endpoints.model", "delete_model", _known_model),
    ("monailabel.endpoints.model", "update_model", _checked_update_model),
    ("monailabel.endpoints.activelearning", "sample", _guarded_sample),
    ("monailabel.endpoints.train", "run", _guarded_run_all),
    ("monailabel.endpoints.scoring", "run", _guarded_run_all),
)  # (module, function, wrapper maker); tests/test_monailabel_pins.py pins each function's parameters


def install() -> None:
    """Wrap MONAI Label's endpoint functions (idempotent; a module not loaded is left alone)."""
    for module_name, attribute, make in WRAPPED:
        _wrap(module_name, attribute, make)
    tasks = sys.modules.get("monailabel.utils.async_tasks.task")
    if tasks is not None and not getattr(tasks.AsyncTask.run, "plaid_checked", False):
        tasks.AsyncTask.run = staticmethod(_once(tasks.AsyncTask.run, _guarded_async_run))
