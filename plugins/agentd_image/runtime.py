"""Devices, dtypes and memory: which accelerator to use, how full it is, and recognising out-of-memory.

Imports torch inside each function, so importing this module stays cheap.
"""

from __future__ import annotations

import gc
from typing import Any

from agentd import ToolError

MIB = 1024 * 1024


def choose_device(preference: str = "auto") -> str:
    """``auto`` picks cuda, then mps, then cpu; an explicit device that is not there is a ToolError."""
    import torch

    if preference == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if _mps_available():
            return "mps"
        return "cpu"
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ToolError(
                f"plugins.image.device = {preference!r} but CUDA is not available to torch {torch.__version__}; "
                "set device = 'auto' or 'cpu'"
            )
        index = int(preference.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ToolError(
                f"plugins.image.device = {preference!r} but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return preference
    if preference == "mps" and not _mps_available():
        raise ToolError(
            "plugins.image.device = 'mps' but Apple MPS is not available; set device = 'auto' or 'cpu'"
        )
    return preference


def choose_dtype(device: str, preference: str = "auto") -> str:
    """float16 on CUDA (half the memory, tensor cores), float32 on CPU and MPS unless configured otherwise."""
    if preference != "auto":
        return preference
    return "float16" if device.startswith("cuda") else "float32"


def available_devices() -> list[str]:
    """Every device kind torch can use here, cpu first."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if _mps_available():
        devices.append("mps")
    return devices


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def limit_gpu_memory(device: str, fraction: float) -> None:
    """Cap torch's share of a CUDA device so diffusion fails cleanly before it starves a co-located model."""
    if fraction and device.startswith("cuda"):
        import torch

        torch.cuda.set_per_process_memory_fraction(fraction, _index(device))


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(_index(device))


def memory_report(device: str) -> dict[str, Any]:
    """Accelerator memory in MiB (free/total/allocated/peak on CUDA, allocated on MPS); empty on CPU."""
    import torch

    if device.startswith("cuda"):
        index = _index(device)
        free, total = torch.cuda.mem_get_info(index)
        return {
            "device": device,
            "name": torch.cuda.get_device_name(index),
            "free_mib": round(free / MIB),
            "total_mib": round(total / MIB),
            "allocated_mib": round(torch.cuda.memory_allocated(index) / MIB),
            "reserved_mib": round(torch.cuda.memory_reserved(index) / MIB),
            "peak_allocated_mib": round(torch.cuda.max_memory_allocated(index) / MIB),
        }
    if device == "mps":
        return {
            "device": device,
            "allocated_mib": round(torch.mps.current_allocated_memory() / MIB),
            "driver_allocated_mib": round(torch.mps.driver_allocated_memory() / MIB),
        }
    return {}


def release_memory(device: str) -> None:
    """Hand cached accelerator memory back (torch's caching allocator keeps it otherwise)."""
    gc.collect()
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device == "mps" and _mps_available():
        torch.mps.empty_cache()


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's OutOfMemoryError, MPS/CPU allocator failures and MemoryError."""
    if isinstance(exc, MemoryError):
        return True
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def _index(device: str) -> int:
    return int(device.partition(":")[2] or 0)
