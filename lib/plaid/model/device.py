"""Device choice and mixed precision: training autocasts to bf16 on CUDA (fp16 with a loss scaler on GPUs without
bf16) and runs in fp32 on every CPU, so a model trained on a CPU is the same whether or not it has native bf16.
Inference runtimes choose their own precision (`plaid.model.backends`)."""

from __future__ import annotations

import contextlib
import logging
from contextlib import AbstractContextManager as ContextManager

import torch

logger = logging.getLogger(__name__)


def select_device(name: str | None = "auto") -> torch.device:
    """'auto' picks CUDA when available, else CPU; an explicit name ('cpu', 'cuda:1') is used as given."""
    if not name or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        logger.warning("device %s requested but CUDA is not available; using the CPU", name)
        return torch.device("cpu")
    return device


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bf16 instructions (AVX512-BF16 or AMX)."""
    check = getattr(torch.backends.mkldnn, "is_bf16_supported", None)
    if check is not None:
        try:
            return bool(check())
        except Exception:  # older builds: fall through to the cpuinfo test
            pass
    try:
        with open("/proc/cpuinfo") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def training_precision(device: torch.device, amp: bool) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, whether to scale the loss): on CUDA with ``amp`` bf16 where the GPU has it, else
    fp16 with a loss scaler; full precision otherwise, on every CPU too. bf16 on CPUs that have it would make
    the trained weights, and every figure measured with them, depend on the kind of CPU."""
    if not amp or device.type != "cuda":
        return None, False
    return (torch.bfloat16, False) if torch.cuda.is_bf16_supported() else (torch.float16, True)


def autocast_in(device: torch.device, dtype: torch.dtype | None) -> ContextManager:
    """Autocast to ``dtype`` on ``device``; a no-op when ``dtype`` is None (full precision)."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def autocast_for(device: torch.device, amp: bool = True) -> ContextManager:
    """Mixed-precision context for ``device`` in the dtype `training_precision` picks (a no-op without one)."""
    return autocast_in(device, training_precision(device, amp)[0])


def default_batch_size(device: torch.device) -> int:
    """Inference patches per forward pass: 32 on the CPU; on a GPU, 64 per 10 GiB of memory (64 to 1024)."""
    if device.type != "cuda":
        return 32
    total_gib = torch.cuda.get_device_properties(device).total_memory / 2**30
    return int(min(1024, max(64, 64 * (total_gib // 10))))
