"""Inference runtimes for the patch classifier, chosen by measurement on the machine at hand.

Candidates: torch fp32 and bf16 autocast, each with contiguous or channels_last memory, OpenVINO (fp32,
and bf16 where the CPU has native bf16), and ONNX Runtime. ``runtime="auto"`` times a few batches of
each candidate when the model is loaded, drops any whose probabilities differ from torch fp32 by more
than `AGREEMENT_TOLERANCE` on a check batch, and keeps the fastest. The choice is remembered per machine in
``runtime-choice.json`` under ``$PLAID_CACHE_DIR`` (default ``~/.cache/plaid``), keyed by everything that
can change the ranking (CPU model and flags, architecture, library versions, backbone, input filter, patch
size, device), so a server restart builds only the remembered runtime and times nothing. A named runtime is
used as given when it builds and agrees; a missing package or a failed conversion falls back to torch.

Every runtime maps a batch of shape (N, 1, H, W) to N probabilities: float32 in [0, 1], or the uint16
form `plaid.patches.prepared.PreparedImage` stores (0..65535 for 0..1), which torch runtimes move to the
device at half the size and convert there.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import logging
import os
import platform
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from plaid.model.device import cpu_supports_bf16
from plaid.patches.prepared import UINT16_SCALE

logger = logging.getLogger(__name__)

AUTO = "auto"
RUNTIME_ENV = "PLAID_RUNTIME"
TORCH_FP32 = "torch-fp32"
RUNTIME_NAMES = (TORCH_FP32, "torch-fp32-cl", "torch-bf16", "torch-bf16-cl", "openvino", "openvino-bf16",
                 "onnxruntime")
RUNTIME_CHOICES = (AUTO, *RUNTIME_NAMES)
AGREEMENT_TOLERANCE = 0.01
PROBE_BATCH = 8
PROBE_REPEATS = 2

CACHE_DIR_ENV = "PLAID_CACHE_DIR"
CHOICE_FILE = "runtime-choice.json"
# Packages whose version can change which runtime is fastest (or whether it builds at all).
RANKING_PACKAGES = ("torch", "torchvision", "onnxruntime", "openvino")

# The runtime "auto" picked, per choice key (see `choice_key`): a reloaded checkpoint reuses it without re-timing.
_CHOSEN: dict[str, str] = {}
_CHOSEN_LOCK = threading.Lock()


@dataclass
class Runtime:
    """A built runtime: ``run`` maps (N, 1, H, W) patches to (N,) float32 probabilities.

    ``run`` takes float32 in [0, 1]; with ``takes_uint16`` it also takes the stored uint16 form directly.
    """

    name: str
    run: Callable[[np.ndarray], np.ndarray]
    takes_uint16: bool = False
    patches_per_s: float | None = None
    notes: dict[str, str] = field(default_factory=dict)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for one batch (float32 in [0, 1], or uint16 with 65535 meaning 1)."""
        batch = np.ascontiguousarray(batch)
        if batch.dtype == np.uint16:
            if not self.takes_uint16:
                batch = np.multiply(batch, np.float32(1.0 / UINT16_SCALE), dtype=np.float32)
        else:
            batch = batch.astype(np.float32, copy=False)
        return self.run(batch)


class _Probabilities(nn.Module):
    """The classifier followed by a sigmoid, in fp32: what every exported graph computes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(patches).float())


def validate_runtime_name(name: str) -> str:
    """Return ``name`` normalised, or raise ValueError naming the allowed runtimes."""
    value = (name or AUTO).strip().lower()
    if value not in RUNTIME_CHOICES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIME_CHOICES)}; got {name!r}")
    return value


def candidate_names(device: torch.device) -> list[str]:
    """Runtimes worth timing on ``device``: bf16 only with native support, exported graphs on CPU only."""
    if device.type == "cuda":
        names = ["torch-fp32-cl"]
        if torch.cuda.is_bf16_supported():
            names.append("torch-bf16-cl")
        return names
    names = [TORCH_FP32, "torch-fp32-cl"]
    if cpu_supports_bf16():
        names += ["torch-bf16", "torch-bf16-cl"]
    names.append("openvino")
    if "openvino-bf16" in _openvino_precisions():
        names.append("openvino-bf16")
    names.append("onnxruntime")
    return names


def _openvino_precisions() -> list[str]:
    """'openvino-bf16' when OpenVINO's CPU plugin reports native bf16, else nothing."""
    try:
        import openvino as ov

        capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # not installed or no CPU plugin: the bf16 variant is simply not a candidate
        return []
    return ["openvino-bf16"] if "BF16" in capabilities else []


def build_runtime(name: str, model: nn.Module, device: torch.device, patch_size: int) -> Runtime:
    """Build runtime ``name`` for an eval-mode ``model``; raises on a missing package or a failed export."""
    if name.startswith("torch-"):
        return _torch_runtime(name, model, device)
    if device.type != "cpu":
        raise ValueError(f"runtime {name} runs on the CPU only, not on {device}")
    if name.startswith("openvino"):
        return _openvino_runtime(name, model, patch_size)
    if name == "onnxruntime":
        return _onnxruntime_runtime(model, patch_size)
    raise ValueError(f"unknown runtime {name!r}")


def _torch_runtime(name: str, model: nn.Module, device: torch.device) -> Runtime:
    channels_last = name.endswith("-cl")
    bf16 = "bf16" in name
    net = copy.deepcopy(model).to(device).eval()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    memory = torch.channels_last if channels_last else torch.contiguous_format

    @torch.inference_mode()
    def run(batch: np.ndarray) -> np.ndarray:
        stored = batch.dtype == np.uint16
        # uint16 travels as int16 (every torch build copies it) and is widened on the device
        tensor = torch.from_numpy(batch.view(np.int16) if stored else batch)
        if device.type == "cuda":
            tensor = tensor.pin_memory().to(device, non_blocking=True)
        if stored:
            tensor = (tensor.to(torch.int32) & 0xFFFF).to(torch.float32).mul_(1.0 / UINT16_SCALE)
        tensor = tensor.contiguous(memory_format=memory)
        if bf16:
            with torch.autocast(device.type, dtype=torch.bfloat16):
                logits = net(tensor)
        else:
            logits = net(tensor)
        return torch.sigmoid(logits.float()).cpu().numpy()

    return Runtime(name=name, run=run, takes_uint16=True)


def _openvino_runtime(name: str, model: nn.Module, patch_size: int) -> Runtime:
    import openvino as ov

    wrapper = _Probabilities(copy.deepcopy(model).cpu().eval()).eval()
    example = torch.zeros(1, 1, patch_size, patch_size)
    with torch.no_grad(), _quiet_tracing():
        converted = ov.convert_model(wrapper, example_input=example, input=[(-1, 1, patch_size, patch_size)])
    precision = "bf16" if name.endswith("bf16") else "f32"
    compiled = ov.Core().compile_model(converted, "CPU", {
        "INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": str(torch.get_num_threads()),
    })
    request = compiled.create_infer_request()
    lock = threading.Lock()  # one infer request: serialise concurrent callers

    def run(batch: np.ndarray) -> np.ndarray:
        with lock:
            result = request.infer({0: batch})
            return np.array(result[compiled.output(0)], dtype=np.float32).reshape(-1)

    return Runtime(name=name, run=run, notes={"precision": precision})


def _onnxruntime_runtime(model: nn.Module, patch_size: int) -> Runtime:
    import onnxruntime as ort

    wrapper = _Probabilities(copy.deepcopy(model).cpu().eval()).eval()
    buffer = io.BytesIO()
    with torch.no_grad(), _quiet_tracing():
        torch.onnx.export(wrapper, (torch.zeros(1, 1, patch_size, patch_size),), buffer, input_names=["patches"],
                          output_names=["probabilities"], dynamic_axes={"patches": {0: "batch"}},
                          dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    def run(batch: np.ndarray) -> np.ndarray:
        return np.asarray(session.run(None, {"patches": batch})[0], dtype=np.float32).reshape(-1)

    return Runtime(name="onnxruntime", run=run)


@contextlib.contextmanager
def _quiet_tracing() -> Iterator[None]:
    """Silence the tracer's deprecation and constant-shape warnings: the graph is traced for
    (N, 1, H, W) input only, which is all a runtime is ever given."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        yield


def check_batch(patch_size: int, count: int = PROBE_BATCH, seed: int = 0) -> np.ndarray:
    """A fixed batch of mammogram-like patches: smooth tissue texture in [0, 1] with a few bright specks."""
    rng = np.random.default_rng(seed)
    texture = ndimage.gaussian_filter(rng.normal(size=(count, patch_size, patch_size)), sigma=(0, 6, 6))
    texture = (texture - texture.min()) / max(float(np.ptp(texture)), 1e-6)
    batch = 0.25 + 0.5 * texture
    for index in range(count):
        for _ in range(index % 4 * 3):
            row, col = rng.integers(2, patch_size - 2, size=2)
            batch[index, row - 1 : row + 2, col - 1 : col + 2] = 1.0
    return batch[:, None].astype(np.float32)


def _time_runtime(runtime: Runtime, batch: np.ndarray, repeats: int = PROBE_REPEATS) -> float:
    """Patches per second over ``repeats`` runs after one warm-up run."""
    runtime(batch)
    started = time.perf_counter()
    for _ in range(repeats):
        runtime(batch)
    return len(batch) * repeats / max(time.perf_counter() - started, 1e-9)


def _agrees(runtime: Runtime, batch: np.ndarray, reference: np.ndarray) -> float:
    """Largest absolute probability difference from the reference on the check batch."""
    return float(np.max(np.abs(runtime(batch) - reference))) if len(batch) else 0.0


def _try_build(name: str, model: nn.Module, device: torch.device, batch: np.ndarray,
               reference: np.ndarray) -> Runtime | None:
    """Build and check one runtime; None (with a warning) when it fails or disagrees with torch fp32."""
    try:
        runtime = build_runtime(name, model, device, batch.shape[-1])
        difference = _agrees(runtime, batch, reference)
    except Exception as exc:  # any backend failure (missing package, export error) means: not this one
        logger.warning("runtime %s unavailable (%s: %s)", name, type(exc).__name__, exc)
        return None
    if difference > AGREEMENT_TOLERANCE:
        logger.warning("runtime %s rejected: probabilities differ from torch fp32 by %.4f (> %.2f)", name,
                       difference, AGREEMENT_TOLERANCE)
        return None
    runtime.notes["max_difference"] = f"{difference:.2e}"
    return runtime


def choice_cache_path() -> Path:
    """The file that remembers 'auto' choices on this machine: ``$PLAID_CACHE_DIR/runtime-choice.json``."""
    root = os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "plaid"
    return Path(root).expanduser() / CHOICE_FILE


def _cpu_identity() -> dict[str, str]:
    """The CPU's model name and a digest of its instruction-set flags (first processor in /proc/cpuinfo)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if not line.strip():
                    break
                name, _, value = line.partition(":")
                fields[name.strip()] = value.strip()
    except OSError:  # not Linux: the platform's processor string is what there is
        pass
    flags = fields.get("flags") or fields.get("Features") or ""
    return {"cpu": fields.get("model name") or platform.processor() or "unknown",
            "cpu_flags": hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:16]}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def choice_key(model: nn.Module, device: torch.device, patch_size: int) -> dict[str, Any]:
    """Everything the fastest runtime depends on: machine, library versions, model shape, patch size, device."""
    key: dict[str, Any] = {
        **_cpu_identity(), "machine": platform.machine(), "threads": torch.get_num_threads(),
        **{package: _version(package) for package in RANKING_PACKAGES},
        "architecture": str(getattr(model, "architecture", type(model).__name__)),
        "input_filter": str(getattr(model, "input_filter_name", "none")),
        "patch_size": int(patch_size), "device": str(device),
    }
    if device.type == "cuda":
        key["gpu"] = torch.cuda.get_device_name(device)
    return key


def _key_id(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _read_choices(path: Path) -> dict[str, Any]:
    """The remembered choices in ``path``; an unreadable or malformed file is ignored with a warning."""
    if not path.is_file():
        return {}
    try:
        choices = json.loads(path.read_text())
        if not isinstance(choices, dict) or not all(
            isinstance(entry, dict) and isinstance(entry.get("runtime"), str) for entry in choices.values()
        ):
            raise ValueError("not a mapping of choice entries")
    except (OSError, ValueError) as exc:
        logger.warning("ignoring the runtime choice cache %s (%s: %s); measuring again", path, type(exc).__name__,
                       exc)
        return {}
    return choices


def _remembered_choice(key: dict[str, Any]) -> str | None:
    """The runtime measured before for ``key``: in this process, else in the machine's cache file."""
    key_id = _key_id(key)
    with _CHOSEN_LOCK:
        if key_id in _CHOSEN:
            return _CHOSEN[key_id]
    entry = _read_choices(choice_cache_path()).get(key_id)
    name = entry.get("runtime") if entry else None
    if name not in RUNTIME_NAMES:
        return None
    with _CHOSEN_LOCK:
        _CHOSEN[key_id] = name
    return name


def _remember_choice(key: dict[str, Any], name: str, timings: dict[str, float]) -> None:
    """Record ``name`` for ``key`` in this process and (atomically) in the cache file; a write failure only warns."""
    key_id = _key_id(key)
    with _CHOSEN_LOCK:
        _CHOSEN[key_id] = name
        path = choice_cache_path()
        choices = _read_choices(path)
        choices[key_id] = {"runtime": name, "patches_per_s": {k: round(v, 2) for k, v in timings.items()},
                           "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "key": key}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps(choices, indent=1, sort_keys=True))
            temporary.replace(path)
        except OSError as exc:
            logger.warning("could not remember the runtime choice in %s (%s); the next start measures again", path,
                           exc)


def select_runtime(model: nn.Module, device: torch.device, requested: str = AUTO, patch_size: int = 224,
                   probe_batch: int = PROBE_BATCH, remeasure: bool = False) -> Runtime:
    """The runtime to serve ``model`` with: ``requested`` by name, or the fastest agreeing one for 'auto'.

    'auto' times every candidate once per machine and `choice_key` (remembered in `choice_cache_path`); later
    loads, in this process or after a restart, build only the runtime it chose, unless ``remeasure`` or that
    runtime no longer builds or agrees. Torch fp32 is the fallback in every case.
    """
    requested = validate_runtime_name(requested)
    model = model.eval()
    batch = check_batch(patch_size, probe_batch)
    reference_runtime = build_runtime(TORCH_FP32 if device.type == "cpu" else "torch-fp32-cl", model, device,
                                      patch_size)
    reference = reference_runtime(batch)
    if requested != AUTO:
        return _named_or_fallback(requested, model, device, batch, reference, reference_runtime)
    key = choice_key(model, device, patch_size)
    remembered = None if remeasure else _remembered_choice(key)
    if remembered:
        runtime = reference_runtime if remembered == reference_runtime.name else _try_build(
            remembered, model, device, batch, reference)
        if runtime is not None:
            logger.info("inference runtime: %s (measured before on this machine, %s)", remembered,
                        choice_cache_path())
            return runtime
        logger.warning("remembered runtime %s no longer builds or agrees; measuring again", remembered)
    timings: dict[str, float] = {}
    best: Runtime | None = None
    for name in candidate_names(device):
        runtime = reference_runtime if name == reference_runtime.name else _try_build(
            name, model, device, batch, reference)
        if runtime is None:
            continue
        runtime.patches_per_s = _time_runtime(runtime, batch)
        timings[name] = runtime.patches_per_s
        if best is None or runtime.patches_per_s > (best.patches_per_s or 0.0):
            best = runtime
    best = best or reference_runtime
    _remember_choice(key, best.name, timings)
    logger.info("inference runtime: %s (measured patches/s on %s: %s)", best.name, device,
                ", ".join(f"{name} {speed:.1f}" for name, speed in timings.items()))
    best.notes["timings"] = ", ".join(f"{name}={speed:.2f}" for name, speed in timings.items())
    return best


def _named_or_fallback(name: str, model: nn.Module, device: torch.device, batch: np.ndarray,
                       reference: np.ndarray, fallback: Runtime) -> Runtime:
    """Runtime ``name`` when it builds and agrees with torch fp32, else the torch fallback (logged)."""
    if name == fallback.name:
        return fallback
    runtime = _try_build(name, model, device, batch, reference)
    if runtime is None:
        logger.warning("runtime %s could not be used; falling back to %s", name, fallback.name)
        return fallback
    logger.info("inference runtime: %s", name)
    return runtime


def forget_choices() -> None:
    """Drop the choices remembered in this process (the machine's cache file stays)."""
    with _CHOSEN_LOCK:
        _CHOSEN.clear()
