"""What this machine has: CPUs, memory, disk, CPU feature traits, and whether KVM works.

The compute agent (`compute/hosts.py`) reports these as the host's placement
inventory (VCPU, MEMORY_MB, DISK_GB) and traits, and `pocketstack up` shows
`kvm_usable()`'s reason when qemu falls back to TCG. Everything here only reads
/proc, /sys, /dev and statvfs: no subprocesses, nothing that can block.
Allocation ratios are applied by the compute side, not here.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import os_traits

# /proc/cpuinfo flag -> os-traits names, as Nova's libvirt driver maps CPU features
# (nova/virt/libvirt/utils.py CPU_TRAITS_MAPPING), with libvirt's feature names
# translated to the kernel's /proc/cpuinfo spellings
# (arch/x86/include/asm/cpufeatures.h): libvirt sse4.1 / sha-ni / pclmuldq /
# avx512-vpopcntdq are the kernel's sse4_1 / sha_ni / pclmulqdq / avx512_vpopcntdq,
# and libvirt's sse3 is the kernel's "pni".
_FLAG_TRAITS: dict[str, tuple[str, ...]] = {
    "3dnow": ("HW_CPU_X86_3DNOW",),
    "abm": ("HW_CPU_X86_ABM",),
    "aes": ("HW_CPU_X86_AESNI",),
    "amx_bf16": ("HW_CPU_X86_AMXBF16",),
    "amx_int8": ("HW_CPU_X86_AMXINT8",),
    "amx_tile": ("HW_CPU_X86_AMXTILE",),
    "avx": ("HW_CPU_X86_AVX",),
    "avx2": ("HW_CPU_X86_AVX2",),
    "avx512bw": ("HW_CPU_X86_AVX512BW",),
    "avx512cd": ("HW_CPU_X86_AVX512CD",),
    "avx512dq": ("HW_CPU_X86_AVX512DQ",),
    "avx512er": ("HW_CPU_X86_AVX512ER",),
    "avx512f": ("HW_CPU_X86_AVX512F",),
    "avx512pf": ("HW_CPU_X86_AVX512PF",),
    "avx512vl": ("HW_CPU_X86_AVX512VL",),
    "avx512_vnni": ("HW_CPU_X86_AVX512VNNI",),
    "avx512vbmi": ("HW_CPU_X86_AVX512VBMI",),
    "avx512ifma": ("HW_CPU_X86_AVX512IFMA",),
    "avx512_vbmi2": ("HW_CPU_X86_AVX512VBMI2",),
    "avx512_bitalg": ("HW_CPU_X86_AVX512BITALG",),
    # Nova reports these three under AVX512 names even where the CPU has the VEX
    # forms without AVX-512 (AMD Zen 3); kept so a flavor asks the same as on Nova.
    "vaes": ("HW_CPU_X86_AVX512VAES",),
    "gfni": ("HW_CPU_X86_AVX512GFNI",),
    "vpclmulqdq": ("HW_CPU_X86_AVX512VPCLMULQDQ",),
    "avx512_vpopcntdq": ("HW_CPU_X86_AVX512VPOPCNTDQ",),
    "bmi1": ("HW_CPU_X86_BMI",),
    "bmi2": ("HW_CPU_X86_BMI2",),
    "pclmulqdq": ("HW_CPU_X86_CLMUL",),
    "f16c": ("HW_CPU_X86_F16C",),
    "fma": ("HW_CPU_X86_FMA3",),
    "fma4": ("HW_CPU_X86_FMA4",),
    "mmx": ("HW_CPU_X86_MMX",),
    "mpx": ("HW_CPU_X86_MPX",),
    "sha_ni": ("HW_CPU_X86_SHA",),
    "sse": ("HW_CPU_X86_SSE",),
    "sse2": ("HW_CPU_X86_SSE2",),
    "pni": ("HW_CPU_X86_SSE3",),
    "sse4_1": ("HW_CPU_X86_SSE41",),
    "sse4_2": ("HW_CPU_X86_SSE42",),
    "sse4a": ("HW_CPU_X86_SSE4A",),
    "ssse3": ("HW_CPU_X86_SSSE3",),
    # Nova reports both the old generic trait and the vendor-specific one.
    "svm": ("HW_CPU_X86_SVM", "HW_CPU_X86_AMD_SVM"),
    "tbm": ("HW_CPU_X86_TBM",),
    "vmx": ("HW_CPU_X86_VMX", "HW_CPU_X86_INTEL_VMX"),
    "xop": ("HW_CPU_X86_XOP",),
}

# Only names the pinned os-traits defines: placement rejects a standard-looking
# trait it does not know, so a name missing from the library is dropped, not sent.
_KNOWN_TRAITS = frozenset(os_traits.get_traits("HW_CPU_X86_"))

_TCG = "VMs run under TCG"


def vcpus() -> int:
    """CPUs this process may run on: the affinity mask when a container or taskset
    narrows it below os.cpu_count(), since guests can use no more than that."""
    count = os.cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        count = min(count, len(os.sched_getaffinity(0)) or count)
    return count


def memory_mb(meminfo: Path = Path("/proc/meminfo")) -> int:
    """MemTotal in MiB (the kernel reports kB), the host's MEMORY_MB inventory."""
    for line in meminfo.read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "MemTotal":
            return int(value.split()[0]) // 1024
    raise ValueError(f"no MemTotal line in {meminfo}")


def disk_gb(path: Path) -> int:
    """Total size in GiB (rounded down) of the filesystem holding `path`, the state
    directory where guest disks live. A state directory not made yet is measured on
    its nearest existing parent, the filesystem it will be created on."""
    existing = path.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    st = os.statvfs(existing)
    return st.f_blocks * st.f_frsize // 2**30


def cpu_traits(cpuinfo: str | None = None) -> frozenset[str]:
    """HW_CPU_X86_* traits for the CPU features in /proc/cpuinfo (or the given text).

    A feature counts only when every CPU's `flags` line has it, since a guest may be
    scheduled on any of them. No cpuinfo, or no x86 `flags` lines, means no traits.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return frozenset()
    common: set[str] | None = None
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if not sep or key.strip() != "flags":
            continue
        flags = set(value.split())
        common = flags if common is None else common & flags
    if not common:
        return frozenset()
    return frozenset(
        trait for flag in common for trait in _FLAG_TRAITS.get(flag, ()) if trait in _KNOWN_TRAITS
    )


def kvm_usable(
    dev_kvm: Path = Path("/dev/kvm"), sys_module: Path = Path("/sys/module")
) -> tuple[bool, str]:
    """Whether qemu can run guests with `-accel kvm` here, and the reason, in words
    for `pocketstack up`. Reads only /sys and opens /dev/kvm, so it cannot hang.

    A /dev/kvm served by the PVM backend (module kvm_pvm) counts as unusable: it
    exists and opens, but stock guest kernels hang or abort on it. /sys/module/NAME
    is there for a loaded module, and for a built-in one that has parameters (kvm_*
    all do).
    """
    if not dev_kvm.exists():
        return False, f"{dev_kvm} does not exist; {_TCG}"
    if (sys_module / "kvm_pvm").exists():
        return (
            False,
            f"{dev_kvm} is a PVM backend (kvm_pvm), on which stock guest kernels hang; {_TCG}",
        )
    vendor = next((m for m in ("kvm_intel", "kvm_amd") if (sys_module / m).exists()), None)
    if vendor is None:
        return False, f"neither kvm_intel nor kvm_amd is loaded; {_TCG}"
    try:
        # O_NONBLOCK: even a stand-in that is a FIFO opens at once.
        fd = os.open(dev_kvm, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        return False, f"{dev_kvm} cannot be opened read-write ({exc.strerror}); {_TCG}"
    os.close(fd)
    return True, f"{vendor} is loaded and {dev_kvm} opens read-write"


QEMU_COMMANDS = ("qemu-system-x86_64", "qemu-img")


def qemu_missing() -> str | None:
    """Why this machine cannot run qemu VMs, or None when it can."""
    absent = [name for name in QEMU_COMMANDS if shutil.which(name) is None]
    if absent:
        return f"{', '.join(absent)} not installed (apt-get install qemu-system-x86 qemu-utils)"
    return None
