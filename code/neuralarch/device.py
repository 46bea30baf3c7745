"""Pick the compute device once: CUDA, then Apple MPS, then CPU, overridable by argument or env."""

from __future__ import annotations

import os
from pathlib import Path

import torch

ENV_VAR = "NEURALARCH_DEVICE"
_chosen: torch.device | None = None


def _available(kind: str) -> bool:
    if kind == "cpu":
        return True
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    raise ValueError(f"unknown device kind {kind!r}; use one of 'cuda', 'mps', 'cpu'")


def best_device() -> torch.device:
    """Return the fastest available device: CUDA, then MPS, then CPU."""
    for kind in ("cuda", "mps"):
        if _available(kind):
            return torch.device(kind)
    return torch.device("cpu")


def get_device(prefer: str | torch.device | None = None) -> torch.device:
    """Return the book's device, chosen once per process.

    ``prefer`` (or the ``NEURALARCH_DEVICE`` environment variable) forces a device such as
    ``"cpu"`` or ``"cuda:0"``; asking for one that is not present raises instead of silently
    falling back to another.
    """
    global _chosen
    request = prefer if prefer is not None else os.environ.get(ENV_VAR)
    if request is not None:
        device = torch.device(request)
        if not _available(device.type):
            raise RuntimeError(
                f"device {str(device)!r} was requested (argument or ${ENV_VAR}) but is not "
                f"available here; available: {describe_hardware()['devices']}"
            )
        _chosen = device
        return device
    if _chosen is None:
        _chosen = best_device()
    return _chosen


def reset_device() -> None:
    """Forget the chosen device so the next :func:`get_device` chooses again (for tests)."""
    global _chosen
    _chosen = None


def cpu_model() -> str:
    """Return the CPU's model name (from /proc/cpuinfo on Linux), else the architecture."""
    import platform

    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe_hardware() -> dict[str, object]:
    """Return a small dict describing the software and hardware a page ran on."""
    import platform

    devices = ["cpu"] + [k for k in ("cuda", "mps") if _available(k)]
    info: dict[str, object] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_threads": torch.get_num_threads(),
        "devices": devices,
    }
    if "cuda" in devices:
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
