"""GPU discovery through NVML, against a stand-in for the NVML library (this machine has
no NVIDIA driver), plus what the real library does without one."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from pocketstack.host import gpus


class _NvmlError(Exception):
    pass


def _nvml(devices: list[dict[str, Any]], init_fails: bool = False) -> Any:
    """An object with the NVML calls discovery makes, answering for `devices`."""
    calls: list[str] = []

    def init() -> None:
        calls.append("init")
        if init_fails:
            raise _NvmlError("NVML Shared Library Not Found")

    def supported_vgpus(handle: int) -> list[int]:
        if devices[handle].get("vgpu_types") is None:
            raise _NvmlError("Not Supported")
        return list(devices[handle]["vgpu_types"])

    return SimpleNamespace(
        NVMLError=_NvmlError,
        calls=calls,
        nvmlInit=init,
        nvmlShutdown=lambda: calls.append("shutdown"),
        nvmlDeviceGetCount=lambda: len(devices),
        nvmlDeviceGetHandleByIndex=lambda index: index,
        nvmlDeviceGetName=lambda handle: devices[handle]["name"],
        nvmlDeviceGetPciInfo=lambda handle: SimpleNamespace(busId=devices[handle]["bus_id"]),
        nvmlDeviceGetSupportedVgpus=supported_vgpus,
        nvmlVgpuTypeGetMaxInstances=lambda handle, vgpu_type: devices[handle]["max"][vgpu_type],
    )


def test_each_gpu_is_reported_with_its_address_model_trait_and_vgpus() -> None:
    nvml = _nvml(
        [
            {"name": b"NVIDIA H100 80GB HBM3", "bus_id": b"00000000:81:00.0"},
            {
                "name": "NVIDIA A16",
                "bus_id": "00000001:C1:00.0",
                "vgpu_types": [7, 8],
                "max": {7: 16, 8: 4},
            },
        ]
    )
    found = gpus.discover(nvml)
    assert found == [
        gpus.PhysicalGpu("0000:81:00.0", "NVIDIA H100 80GB HBM3", 1),
        gpus.PhysicalGpu("0001:c1:00.0", "NVIDIA A16", 16),
    ]
    assert found[0].trait == "CUSTOM_NVIDIA_H100_80GB_HBM3"
    assert nvml.calls == ["init", "shutdown"]


def test_no_driver_means_no_gpus() -> None:
    assert gpus.discover(_nvml([], init_fails=True)) == []
    assert gpus.discover() == []  # the real library, on a machine without the NVIDIA driver
