"""What the compute agent reports about this machine: sizes, CPU traits from cpuinfo
text, and whether KVM is usable, on fake /sys and /dev trees and on this machine."""

from __future__ import annotations

import os
from pathlib import Path

import os_traits
import pytest

from pocketstack.host import machine

# `grep -m1 flags /proc/cpuinfo` on the build machine (AMD EPYC, Zen 3, under PVM):
# no svm, since the hypervisor hides it.
BUILD_MACHINE_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr"
    " sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl"
    " xtopology nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid"
    " sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand"
    " hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw"
    " topoext ssbd ibrs ibpb stibp vmmcall fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms"
    " invpcid rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 xsaves clzero"
    " xsaveerptr wbnoinvd arat umip pku ospke vaes vpclmulqdq rdpid fsrm"
)

BUILD_MACHINE_TRAITS = {
    "HW_CPU_X86_ABM",
    "HW_CPU_X86_AESNI",
    "HW_CPU_X86_AVX",
    "HW_CPU_X86_AVX2",
    "HW_CPU_X86_AVX512VAES",  # as Nova names vaes, AVX-512 or not
    "HW_CPU_X86_AVX512VPCLMULQDQ",
    "HW_CPU_X86_BMI",
    "HW_CPU_X86_BMI2",
    "HW_CPU_X86_CLMUL",
    "HW_CPU_X86_F16C",
    "HW_CPU_X86_FMA3",
    "HW_CPU_X86_MMX",
    "HW_CPU_X86_SHA",
    "HW_CPU_X86_SSE",
    "HW_CPU_X86_SSE2",
    "HW_CPU_X86_SSE3",
    "HW_CPU_X86_SSE41",
    "HW_CPU_X86_SSE42",
    "HW_CPU_X86_SSE4A",
    "HW_CPU_X86_SSSE3",
}


def _cpuinfo(*flag_lines: str) -> str:
    return "".join(
        f"processor\t: {i}\nvendor_id\t: AuthenticAMD\nflags\t\t: {flags}\nbugs\t\t: spectre_v1\n\n"
        for i, flags in enumerate(flag_lines)
    )


def test_build_machine_flags_give_the_nova_traits() -> None:
    assert machine.cpu_traits(_cpuinfo(BUILD_MACHINE_FLAGS)) == BUILD_MACHINE_TRAITS


def test_flags_without_a_trait_give_none() -> None:
    # pdpe1gb, ssbd, ibpb, stibp and pcid have os-traits names, but Nova does not report
    # them from CPU flags; the rest have no trait at all. libvirt's spellings (sse4.1)
    # are not the kernel's and match nothing.
    flags = "fpu hypervisor pdpe1gb ssbd ibpb stibp pcid 3dnowprefetch avx512_fp16 sse4.1 sha-ni"
    assert machine.cpu_traits(_cpuinfo(flags)) == frozenset()


def test_intel_virtualization_gives_generic_and_vendor_traits() -> None:
    traits = machine.cpu_traits(_cpuinfo("sse4_2 vmx avx512f avx512_vnni avx512_vpopcntdq"))
    assert traits == {
        "HW_CPU_X86_SSE42",
        "HW_CPU_X86_VMX",
        "HW_CPU_X86_INTEL_VMX",
        "HW_CPU_X86_AVX512F",
        "HW_CPU_X86_AVX512VNNI",
        "HW_CPU_X86_AVX512VPOPCNTDQ",
    }


def test_amd_virtualization_gives_generic_and_vendor_traits() -> None:
    traits = machine.cpu_traits(_cpuinfo("svm sse4a"))
    assert traits == {"HW_CPU_X86_SVM", "HW_CPU_X86_AMD_SVM", "HW_CPU_X86_SSE4A"}


def test_a_feature_counts_only_when_every_cpu_has_it() -> None:
    traits = machine.cpu_traits(_cpuinfo("sse sse2 avx2", "sse sse2"))
    assert traits == {"HW_CPU_X86_SSE", "HW_CPU_X86_SSE2"}


def test_no_flags_lines_give_no_traits() -> None:
    assert machine.cpu_traits("") == frozenset()
    # aarch64 cpuinfo names its features "Features", and has no x86 traits.
    assert machine.cpu_traits("processor\t: 0\nFeatures\t: fp asimd aes\n") == frozenset()


def test_every_mapped_trait_exists_in_os_traits() -> None:
    every_flag = " ".join(machine._FLAG_TRAITS)
    expected = {t for traits in machine._FLAG_TRAITS.values() for t in traits}
    assert expected <= set(os_traits.get_traits("HW_CPU_X86_"))
    assert machine.cpu_traits(_cpuinfo(every_flag)) == expected


def test_this_machine_cpu_traits_are_os_traits() -> None:
    traits = machine.cpu_traits()
    assert traits <= set(os_traits.get_traits("HW_CPU_X86_"))
    if os.uname().machine == "x86_64":
        assert "HW_CPU_X86_SSE2" in traits  # every x86-64 CPU has it


def _tree(tmp_path: Path, modules: list[str], device: bool = True) -> tuple[Path, Path]:
    sys_module = tmp_path / "sys" / "module"
    for name in ["kvm", *modules]:
        (sys_module / name / "parameters").mkdir(parents=True)
    dev_kvm = tmp_path / "dev" / "kvm"
    dev_kvm.parent.mkdir()
    if device:
        dev_kvm.write_bytes(b"")
    return dev_kvm, sys_module


def test_kvm_on_pvm_is_not_usable(tmp_path: Path) -> None:
    dev_kvm, sys_module = _tree(tmp_path, ["kvm_pvm"])
    usable, reason = machine.kvm_usable(dev_kvm, sys_module)
    assert not usable
    assert "PVM backend" in reason
    assert reason.endswith("VMs run under TCG")


def test_kvm_without_a_device_is_not_usable(tmp_path: Path) -> None:
    dev_kvm, sys_module = _tree(tmp_path, ["kvm_intel"], device=False)
    usable, reason = machine.kvm_usable(dev_kvm, sys_module)
    assert not usable
    assert reason == f"{dev_kvm} does not exist; VMs run under TCG"


def test_kvm_without_a_vendor_module_is_not_usable(tmp_path: Path) -> None:
    dev_kvm, sys_module = _tree(tmp_path, [])
    usable, reason = machine.kvm_usable(dev_kvm, sys_module)
    assert not usable
    assert "neither kvm_intel nor kvm_amd" in reason


def test_kvm_device_that_cannot_be_opened_is_not_usable(tmp_path: Path) -> None:
    dev_kvm, sys_module = _tree(tmp_path, ["kvm_amd"], device=False)
    dev_kvm.mkdir()  # a directory refuses O_RDWR even for root
    usable, reason = machine.kvm_usable(dev_kvm, sys_module)
    assert not usable
    assert "cannot be opened read-write" in reason


def test_kvm_intel_with_a_device_is_usable(tmp_path: Path) -> None:
    dev_kvm, sys_module = _tree(tmp_path, ["kvm_intel"])
    assert machine.kvm_usable(dev_kvm, sys_module) == (
        True,
        f"kvm_intel is loaded and {dev_kvm} opens read-write",
    )


def test_kvm_device_that_is_a_fifo_does_not_hang(tmp_path: Path) -> None:
    dev_kvm, sys_module = _tree(tmp_path, ["kvm_amd"], device=False)
    os.mkfifo(dev_kvm)
    assert machine.kvm_usable(dev_kvm, sys_module)[0]


@pytest.mark.skipif(not Path("/sys/module/kvm_pvm").exists(), reason="no PVM backend here")
def test_this_machine_kvm_is_pvm_and_not_usable() -> None:
    usable, reason = machine.kvm_usable()
    assert not usable
    assert "PVM" in reason


def test_this_machine_sizes_are_positive() -> None:
    assert machine.vcpus() >= 1
    assert machine.vcpus() <= (os.cpu_count() or 1)
    assert machine.memory_mb() > 0
    assert machine.disk_gb(Path("/")) > 0


def test_disk_of_a_state_dir_not_made_yet_is_its_parents(tmp_path: Path) -> None:
    assert machine.disk_gb(tmp_path / "state" / "not-yet") == machine.disk_gb(tmp_path)


def test_memory_is_memtotal_in_mib(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683656 kB\nMemFree:        24316908 kB\n")
    assert machine.memory_mb(meminfo) == 24683656 // 1024
    meminfo.write_text("MemFree:        24316908 kB\n")
    with pytest.raises(ValueError, match="MemTotal"):
        machine.memory_mb(meminfo)
