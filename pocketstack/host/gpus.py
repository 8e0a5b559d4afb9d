"""NVIDIA GPUs of this host, read through NVML (nvidia-ml-py).

The compute agent reports each physical GPU as a child resource provider with
VGPU inventory. A GPU whose driver offers vGPU types reports as many VGPUs as
its first type allows instances; one without vGPU support is one VGPU (the
whole device). No NVML library or no driver means no GPUs, not an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any


@dataclass(frozen=True, slots=True)
class PhysicalGpu:
    pci_address: str  # 0000:81:00.0
    model: str  # as NVML names it: "NVIDIA H100 80GB HBM3"
    vgpus: int

    @property
    def trait(self) -> str:
        """The model as a placement trait: CUSTOM_NVIDIA_H100_80GB_HBM3."""
        return "CUSTOM_" + re.sub(r"[^A-Z0-9]+", "_", self.model.upper()).strip("_")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pci_address(bus_id: str) -> str:
    """NVML's 8-digit domain (00000000:81:00.0) in the usual 4-digit form."""
    domain, _, rest = bus_id.partition(":")
    return f"{int(domain, 16):04x}:{rest.lower()}"


def _vgpus(nvml: Any, handle: Any) -> int:
    try:
        types = nvml.nvmlDeviceGetSupportedVgpus(handle)
    except nvml.NVMLError:
        return 1
    if not types:
        return 1
    return max(1, int(nvml.nvmlVgpuTypeGetMaxInstances(handle, types[0])))


def discover(nvml: ModuleType | None = None) -> list[PhysicalGpu]:
    """Every NVIDIA GPU NVML sees; [] where there is no NVML library or driver."""
    if nvml is None:
        import pynvml

        nvml = pynvml
    try:
        nvml.nvmlInit()
    except nvml.NVMLError:
        return []
    try:
        found = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            bus_id = _text(nvml.nvmlDeviceGetPciInfo(handle).busId)
            found.append(
                PhysicalGpu(
                    _pci_address(bus_id),
                    _text(nvml.nvmlDeviceGetName(handle)),
                    _vgpus(nvml, handle),
                )
            )
        return found
    finally:
        nvml.nvmlShutdown()
