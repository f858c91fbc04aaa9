"""Inference runtimes for the patch classifier: the candidates and how each one is built.

Candidates: torch fp32 and bf16 autocast, each with contiguous or channels_last memory, OpenVINO (fp32,
and bf16 where the CPU has native bf16), and ONNX Runtime. Which one serves a model is chosen by
measurement (`plaid.model.runtime_choice`) and remembered per machine (`plaid.model.runtime_cache`).

Every runtime maps a batch of shape (N, 1, H, W) to N probabilities: float32 in [0, 1], or the uint16
form `plaid.patches.prepared.PreparedImage` stores (0..65535 for 0..1), which torch runtimes move to the
device at half the size and convert there.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
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


