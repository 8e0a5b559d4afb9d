"""osc-placement (`openstack resource provider ...`) against a live pocketstack."""

from __future__ import annotations


def test_resource_provider_lifecycle_with_osc_placement(osc, unique):
    name = unique("cn")
    created = osc("resource", "provider", "create", name, "-f", "json").json()
    rp = created["uuid"]
    assert created["name"] == name and created["generation"] == 0

    listed = osc("resource", "provider", "list", "-f", "json").json()
    assert name in [p["name"] for p in listed]

    inventory = osc(
        "resource",
        "provider",
        "inventory",
        "set",
        rp,
        "--resource",
        "VCPU=8",
        "--resource",
        "VCPU:allocation_ratio=4.0",
        "--resource",
        "MEMORY_MB=4096",
        "-f",
        "json",
    ).json()
    by_class = {row["resource_class"]: row for row in inventory}
    assert by_class["VCPU"]["total"] == 8 and by_class["VCPU"]["allocation_ratio"] == 4.0
    assert by_class["MEMORY_MB"]["total"] == 4096

    custom = unique("CUSTOM_FPGA_").upper().replace("-", "_")
    osc("resource", "class", "create", custom)
    classes = osc("resource", "class", "list", "-f", "json").json()
    assert custom in [c["name"] for c in classes]

    trait = unique("CUSTOM_RACK_").upper().replace("-", "_")
    osc("trait", "create", trait)
    traits = osc(
        "resource",
        "provider",
        "trait",
        "set",
        "--trait",
        trait,
        "--trait",
        "HW_CPU_X86_AVX2",
        rp,
        "-f",
        "json",
    ).json()
    assert sorted(t["name"] for t in traits) == sorted([trait, "HW_CPU_X86_AVX2"])

    shown = osc("resource", "provider", "show", rp, "-f", "json").json()
    assert shown["generation"] == 2

    usage = osc("resource", "provider", "usage", "show", rp, "-f", "json").json()
    assert {row["resource_class"]: row["usage"] for row in usage} == {"VCPU": 0, "MEMORY_MB": 0}

    osc("resource", "provider", "delete", rp)
    remaining = osc("resource", "provider", "list", "-f", "json").json()
    assert rp not in [p["uuid"] for p in remaining]


def test_allocation_candidate_list_with_osc_placement(osc, unique):
    rp = osc("resource", "provider", "create", unique("ac"), "-f", "json").json()["uuid"]
    osc(
        "resource",
        "provider",
        "inventory",
        "set",
        rp,
        "--resource",
        "VCPU=4",
        "--resource",
        "MEMORY_MB=2048",
    )
    found = osc(
        "allocation",
        "candidate",
        "list",
        "--resource",
        "VCPU=2",
        "--resource",
        "MEMORY_MB=512",
        "-f",
        "json",
    ).json()
    assert any(row["resource provider"] == rp for row in found)
    osc("resource", "provider", "delete", rp)
