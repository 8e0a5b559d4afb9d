"""Run upstream Placement's gabbi suite against a live `pocketstack up`.

Called by `tests/peer/run-placement-gabbi.sh` (what `make conformance-placement`
runs); it can also be run directly with any Python 3.11 (stdlib only):

    python tests/peer/placement_gabbi.py [--only FILE ...] [--keep] [--no-doc]

For each gabbit file of openstack-placement (read from the wheel installed in
a throwaway venv under /tmp, never copied into this repository) it:

1. starts a fresh `pocketstack up` (new state dir = new database, free
   loopback port, `--auth noauth`, placement served at `/`), with a policy
   file standing in for the file's policy fixture;
2. seeds over HTTP what the file's gabbi fixture creates in-process upstream
   (providers, inventories, traits, aggregates, allocations), reproducing the
   resource provider and consumer generations the tests assert, and exports
   the fixture's environment variables;
3. runs `gabbi-run http://127.0.0.1:PORT -- FILE` and parses its per-test
   unittest output (one line per test, then each failure's message);
4. stops the server (SIGTERM).

Files run one after another. Afterwards it prints a per-file table and, for a
full run (no --only), rewrites the "## Placement (upstream gabbi suite)"
section of docs/conformance.md, leaving the rest of that page as it is.
The fixtures' contents are restated from docs/placement-notes.md §8.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import glob
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

REPO = Path(__file__).resolve().parents[2]
DEFAULT_VENV = Path("/tmp/pocketstack-gabbi-venv")
PLACEMENT_REQ = "openstack-placement==16.0.0"
SECTION_TITLE = "## Placement (upstream gabbi suite)"
GABBITS_SUBDIR = "placement/tests/functional/gabbits"

# The policy rule names placement registers upstream (placement/policies/).
API_RULES = [
    *(f"placement:resource_providers:{a}" for a in ("list", "create", "show", "update", "delete")),
    *(f"placement:resource_classes:{a}" for a in ("list", "create", "show", "update", "delete")),
    *(
        f"placement:resource_providers:inventories:{a}"
        for a in ("list", "create", "show", "update", "delete")
    ),
    "placement:resource_providers:aggregates:list",
    "placement:resource_providers:aggregates:update",
    "placement:resource_providers:usages",
    "placement:usages",
    *(f"placement:traits:{a}" for a in ("list", "show", "update", "delete")),
    *(f"placement:resource_providers:traits:{a}" for a in ("list", "update", "delete")),
    *(f"placement:allocations:{a}" for a in ("manage", "list", "update", "delete")),
    "placement:resource_providers:allocations:list",
    "placement:allocation_candidates:list",
    "placement:reshaper:reshape",
]

# pocketstack's defaults are upstream's new (secure) defaults. Upstream's
# APIFixture runs with enforce_new_defaults=False, where every base rule is
# OR'ed with its deprecated `role:admin`; the only rule that changes by that is
# the service-only reshaper.
LEGACY_POLICY = {"placement:reshaper:reshape": "role:service or role:admin"}
OPEN_POLICY = dict.fromkeys(API_RULES, "@")
POLICY_BY_FIXTURE: dict[str, dict[str, str] | None] = {
    "SecureRBACPolicyFixture": None,  # pocketstack's defaults
    "OpenPolicyFixture": OPEN_POLICY,
}

# Causes a failing test can have that are not pocketstack's to fix.
HARNESS_NOTES = {
    "cors.yaml": "pocketstack has no CORS support (upstream's CORSFixture turns on "
    "oslo.middleware CORS for http://valid.example.com)",
}
CLIENT_REFUSED = "bad Content-Length"  # httpx/h11 refuses to send `content-length: hi mom`


def die(message: str) -> NoReturn:
    """Set-up errors exit 2, as the wrapper promises (1 means tests failed)."""
    print(f"placement_gabbi: {message}", file=sys.stderr)
    sys.exit(2)


def new_uuid() -> str:
    return str(uuid.uuid4())


# --------------------------------------------------------------------------- HTTP seeding


class SeedError(Exception):
    """A fixture request did not get the status the fixture expects."""


class Seeder:
    """Reproduces upstream's fixture helpers (functional/db/test_base.py) over HTTP.

    Each helper changes generations exactly as its upstream counterpart does:
    a provider starts at 0 and its aggregates are set without a bump (PUT at
    1.18 with a list body); each add_inventory is one POST (+1); set_traits is
    one PUT (+1); set_allocation is one PUT /allocations at 1.28 with
    consumer_generation null (+1 on the provider, consumer generation 1).
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self._custom_rcs: set[str] = set()
        self._custom_traits: set[str] = set()

    def call(
        self, method: str, path: str, body: Any = None, mv: str = "1.0", ok: tuple[int, ...] = ()
    ) -> Any:
        headers = {
            "X-Auth-Token": "admin",
            "OpenStack-API-Version": f"placement {mv}",
            "Accept": "application/json",
        }
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        if ok and resp.status not in ok:
            text = data.decode(errors="replace")[:300]
            raise SeedError(f"{method} {path} at {mv} -> {resp.status} (wanted {ok}): {text}")
        return json.loads(data) if data else None

    def create_provider(
        self, name: str, *aggs: str, parent: str | None = None, rp_uuid: str | None = None
    ) -> str:
        rp_uuid = rp_uuid or new_uuid()
        body: dict[str, Any] = {"name": name, "uuid": rp_uuid}
        if parent:
            body["parent_provider_uuid"] = parent
        self.call("POST", "/resource_providers", body, mv="1.14", ok=(201,))
        if aggs:
            self.set_aggregates(rp_uuid, *aggs)
        return rp_uuid

    def set_aggregates(self, rp: str, *aggs: str) -> None:
        self.call("PUT", f"/resource_providers/{rp}/aggregates", list(aggs), mv="1.18", ok=(200,))

    def ensure_rc(self, rc: str) -> None:
        if rc.startswith("CUSTOM_") and rc not in self._custom_rcs:
            self.call("PUT", f"/resource_classes/{rc}", mv="1.7", ok=(201, 204))
            self._custom_rcs.add(rc)

    def add_inventory(self, rp: str, rc: str, total: int, **kw: Any) -> None:
        self.ensure_rc(rc)
        kw.setdefault("max_unit", total)
        body = {"resource_class": rc, "total": total, **kw}
        self.call("POST", f"/resource_providers/{rp}/inventories", body, ok=(201,))

    def set_traits(self, rp: str, *traits: str) -> None:
        for name in traits:
            if name.startswith("CUSTOM_") and name not in self._custom_traits:
                self.call("PUT", f"/traits/{name}", mv="1.6", ok=(201, 204))
                self._custom_traits.add(name)
        gen = self.call("GET", f"/resource_providers/{rp}", mv="1.6", ok=(200,))["generation"]
        body = {"traits": list(traits), "resource_provider_generation": gen}
        self.call("PUT", f"/resource_providers/{rp}/traits", body, mv="1.6", ok=(200,))

    def set_allocation(
        self, rp: str, consumer: str, resources: dict[str, int], user: str, project: str
    ) -> None:
        body = {
            "allocations": {rp: {"resources": resources}},
            "consumer_generation": None,
            "project_id": project,
            "user_id": user,
        }
        self.call("PUT", f"/allocations/{consumer}", body, mv="1.28", ok=(204,))


# --------------------------------------------------------------------------- fixtures

Env = dict[str, str]


def api_fixture(s: Seeder, env: Env) -> None:
    """APIFixture: no data, only environment variables."""
    for key in ("RP_UUID", "RP_NAME", "RP_UUID1", "RP_NAME1", "RP_UUID2", "RP_NAME2"):
        env[key] = new_uuid()
    env["CUSTOM_RES_CLASS"] = "CUSTOM_IRON_NFV"
    env["CUSTOM_RES_CLASS1"] = "CUSTOM_IRON_NFV1"
    env["CUSTOM_RES_CLASS2"] = "CUSTOM_IRON_NFV2"
    for key in (
        "PROJECT_ID",
        "ADMIN_PROJECT_ID",
        "SERVICE_PROJECT_ID",
        "USER_ID",
        "PROJECT_ID_ALT",
        "USER_ID_ALT",
        "INSTANCE_UUID",
        "MIGRATION_UUID",
        "CONSUMER_UUID",
        "PARENT_PROVIDER_UUID",
        "ALT_PARENT_PROVIDER_UUID",
    ):
        env[key] = new_uuid()


def allocation_fixture(s: Seeder, env: Env) -> None:
    """One provider (DISK_GB 2048, VCPU 10) and three consumers; generation 5."""
    api_fixture(s, env)
    env["ALT_USER_ID"] = new_uuid()
    user, alt_user, project = env["USER_ID"], env["ALT_USER_ID"], env["PROJECT_ID"]
    rp = s.create_provider(env["RP_NAME"], rp_uuid=env["RP_UUID"])
    s.add_inventory(rp, "DISK_GB", 2048, step_size=10, min_unit=10, max_unit=1000)
    s.add_inventory(rp, "VCPU", 10, max_unit=10)
    env["CONSUMER_0"] = new_uuid()
    s.set_allocation(rp, env["CONSUMER_0"], {"DISK_GB": 1000}, user, project)
    env["CONSUMER_ID"] = new_uuid()
    s.set_allocation(rp, env["CONSUMER_ID"], {"VCPU": 6}, user, project)
    env["ALT_CONSUMER_ID"] = new_uuid()
    s.set_allocation(rp, env["ALT_CONSUMER_ID"], {"DISK_GB": 20, "VCPU": 1}, alt_user, project)
    env["ALT_RP_UUID"] = new_uuid()  # not created
    env["ALT_RP_NAME"] = new_uuid()


def shared_storage_fixture(s: Seeder, env: Env) -> None:
    """cn1, cn2 (each with two numa children and a pf under each) and two
    sharing storage providers, all four roots in one aggregate."""
    api_fixture(s, env)
    agg = new_uuid()
    env["AGG_UUID"] = agg
    rps = {name: s.create_provider(name, agg) for name in ("cn1", "cn2", "ss", "ss2")}
    for numa, cn in (
        ("numa1_1", "cn1"),
        ("numa1_2", "cn1"),
        ("numa2_1", "cn2"),
        ("numa2_2", "cn2"),
    ):
        rps[numa] = s.create_provider(numa, parent=rps[cn])
    for pf, numa in (
        ("pf1_1", "numa1_1"),
        ("pf1_2", "numa1_2"),
        ("pf2_1", "numa2_1"),
        ("pf2_2", "numa2_2"),
    ):
        rps[pf] = s.create_provider(pf, parent=rps[numa])
    for name, rp in rps.items():
        env[f"{name.upper()}_UUID"] = rp
    for cn in ("cn1", "cn2"):
        s.add_inventory(rps[cn], "VCPU", 24, allocation_ratio=16.0)
        s.add_inventory(rps[cn], "MEMORY_MB", 128 * 1024, allocation_ratio=1.5)
    s.set_traits(rps["cn1"], "HW_CPU_X86_SSE", "HW_CPU_X86_SSE2")
    s.add_inventory(rps["cn2"], "DISK_GB", 2000, reserved=100, allocation_ratio=1.0)
    for ss in ("ss", "ss2"):
        s.add_inventory(rps[ss], "DISK_GB", 2000, reserved=100, allocation_ratio=1.0)
        s.set_traits(rps[ss], "MISC_SHARES_VIA_AGGREGATE")
    for pf in ("pf1_1", "pf1_2", "pf2_1", "pf2_2"):
        s.add_inventory(rps[pf], "SRIOV_NET_VF", 8, allocation_ratio=1.0)


def numa_aggregate_fixture(s: Seeder, env: Env) -> None:
    """Two inventory-less compute nodes with VCPU on numa children, two
    sharing storage providers in different aggregates."""
    api_fixture(s, env)
    agg_a, agg_b, agg_c = new_uuid(), new_uuid(), new_uuid()
    env.update(AGGA_UUID=agg_a, AGGB_UUID=agg_b, AGGC_UUID=agg_c)
    cn1 = s.create_provider("cn1", agg_a)
    cn2 = s.create_provider("cn2", agg_a, agg_b)
    ss1 = s.create_provider("ss1", agg_a)
    ss2 = s.create_provider("ss2", agg_c)
    numas = [
        s.create_provider("numa1_1", agg_c, parent=cn1),
        s.create_provider("numa1_2", parent=cn1),
        s.create_provider("numa2_1", parent=cn2),
        s.create_provider("numa2_2", parent=cn2),
    ]
    env.update(CN1_UUID=cn1, CN2_UUID=cn2, SS1_UUID=ss1, SS2_UUID=ss2)
    for key, rp in zip(("NUMA1_1", "NUMA1_2", "NUMA2_1", "NUMA2_2"), numas, strict=True):
        env[f"{key}_UUID"] = rp
    for numa in numas:
        s.add_inventory(numa, "VCPU", 24, allocation_ratio=16.0)
    for ss in (ss1, ss2):
        s.add_inventory(ss, "DISK_GB", 2000, reserved=100, allocation_ratio=1.0)
        s.set_traits(ss, "MISC_SHARES_VIA_AGGREGATE")


def _numa_network_entities(
    s: Seeder, env: Env, cn1: str | None = None, cn2: str | None = None
) -> None:
    """NUMANetworkFixture.make_entities; cn1/cn2 pre-created by the deep variant."""
    agg_a = new_uuid()
    env["AGGA_UUID"] = agg_a
    ss1 = s.create_provider("ss1", agg_a)
    s.set_traits(ss1, "MISC_SHARES_VIA_AGGREGATE")
    s.add_inventory(ss1, "DISK_GB", 2000)
    env["SS1_UUID"] = ss1

    if cn1 is None:
        cn1 = s.create_provider("cn1", agg_a)
    s.set_aggregates(cn1, agg_a)
    s.set_traits(cn1, "COMPUTE_VOLUME_MULTI_ATTACH")
    env["CN1_UUID"] = cn1

    numas = []
    for i in (0, 1):
        numa = s.create_provider(f"numa{i}", parent=cn1)
        s.set_traits(numa, "HW_NUMA_ROOT", *(["CUSTOM_FOO"] if i == 1 else []))
        s.add_inventory(numa, "VCPU", 4)
        numas.append(numa)
        env[f"NUMA{i}_UUID"] = numa
    s.add_inventory(numas[0], "MEMORY_MB", 2048, min_unit=512, step_size=256)
    s.add_inventory(numas[1], "MEMORY_MB", 2048, min_unit=256, max_unit=1024)
    user, project = "numafx-user", "numafx-project"
    s.set_allocation(numas[0], new_uuid(), {"VCPU": 2}, user, project)

    fpga = s.create_provider("fpga0", parent=numas[0])
    s.add_inventory(fpga, "FPGA", 1)
    env["FPGA0_UUID"] = fpga
    pgpu = s.create_provider("pgpu0", parent=numas[0])
    s.add_inventory(pgpu, "VGPU", 8)
    env["PGPU0_UUID"] = pgpu
    for i in (0, 1):
        fpga = s.create_provider(f"fpga1_{i}", parent=numas[1])
        s.add_inventory(fpga, "FPGA", 1)
        env[f"FPGA1_{i}_UUID"] = fpga

    agent = s.create_provider("sriov_agent", parent=cn1)
    s.set_traits(agent, "CUSTOM_VNIC_TYPE_DIRECT")
    env["SRIOV_AGENT_UUID"] = agent
    for i in (1, 2):
        dev = s.create_provider(f"esn{i}", parent=agent)
        s.set_traits(dev, f"CUSTOM_PHYSNET{i}")
        s.add_inventory(dev, "NET_BW_EGR_KILOBIT_PER_SEC", 10000 * i)
        env[f"ESN{i}_UUID"] = dev
    agent = s.create_provider("ovs_agent", parent=cn1)
    s.set_traits(agent, "CUSTOM_VNIC_TYPE_NORMAL")
    env["OVS_AGENT_UUID"] = agent
    dev = s.create_provider("br_int", parent=agent)
    s.set_traits(dev, "CUSTOM_PHYSNET0")
    s.add_inventory(dev, "NET_BW_EGR_KILOBIT_PER_SEC", 1000)
    env["BR_INT_UUID"] = dev

    if cn2 is None:
        cn2 = s.create_provider("cn2")
    s.set_aggregates(cn2, agg_a)
    s.add_inventory(cn2, "VCPU", 8)
    s.set_allocation(cn2, new_uuid(), {"VCPU": 3}, user, project)
    s.add_inventory(cn2, "MEMORY_MB", 2048, min_unit=1024, step_size=128)
    s.add_inventory(cn2, "DISK_GB", 1000)
    s.set_traits(cn2, "CUSTOM_FOO")
    env["CN2_UUID"] = cn2

    nics = []
    for i in (1, 2, 3):
        nic = s.create_provider(f"nic{i}", parent=cn2)
        s.set_traits(nic, "CUSTOM_HW_NIC_ROOT")
        nics.append(nic)
        env[f"NIC{i}_UUID"] = nic
    pfs = [("1_1", 0, 1, 4), ("1_2", 0, 2, 4)]  # suffix, nic index, physnet, VFs
    pfs += [(f"2_{i + 1}", 1, (i % 2) + 1, 2) for i in range(4)]
    pfs += [("3_1", 2, 1, 8)]
    for suffix, nic_index, physnet, vfs in pfs:
        pf = s.create_provider(f"pf{suffix}", parent=nics[nic_index])
        s.set_traits(pf, f"CUSTOM_PHYSNET{physnet}")
        s.add_inventory(pf, "CUSTOM_VF", vfs)
        env[f"PF{suffix}_UUID"] = pf


def numa_network_fixture(s: Seeder, env: Env) -> None:
    api_fixture(s, env)
    _numa_network_entities(s, env)


def deep_numa_network_fixture(s: Seeder, env: Env) -> None:
    """NUMANetworkFixture with cn1/cn2 under parents p1/p2 under grandparent gp1."""
    api_fixture(s, env)
    gp1 = s.create_provider("gp1")
    p1 = s.create_provider("p1", parent=gp1)
    p2 = s.create_provider("p2", parent=gp1)
    cn1 = s.create_provider("cn1", parent=p1)
    cn2 = s.create_provider("cn2", parent=p2)
    _numa_network_entities(s, env, cn1=cn1, cn2=cn2)


def non_shared_storage_fixture(s: Seeder, env: Env) -> None:
    api_fixture(s, env)
    for key in ("AGGA_UUID", "AGGB_UUID", "AGGC_UUID"):
        env[key] = new_uuid()  # associated with nothing
    cns = [s.create_provider(name) for name in ("cn1", "cn2", "cn3")]
    for i, cn in enumerate(cns, start=1):
        env[f"CN{i}_UUID"] = cn
    for cn in cns:
        s.add_inventory(cn, "VCPU", 24)
        s.add_inventory(cn, "MEMORY_MB", 128 * 1024)
        s.add_inventory(cn, "DISK_GB", 2000)


def granular_fixture(s: Seeder, env: Env) -> None:
    api_fixture(s, env)
    s.ensure_rc("CUSTOM_NET_MBPS")
    agg_a, agg_b, agg_c = new_uuid(), new_uuid(), new_uuid()
    env.update(AGGA=agg_a, AGGB=agg_b, AGGC=agg_c)

    cn_left = s.create_provider("cn_left", agg_a)
    env["CN_LEFT"] = cn_left
    for rc, total in (
        ("VCPU", 8),
        ("MEMORY_MB", 4096),
        ("DISK_GB", 500),
        ("VGPU", 8),
        ("SRIOV_NET_VF", 8),
        ("CUSTOM_NET_MBPS", 4000),
    ):
        s.add_inventory(cn_left, rc, total)
    s.set_traits(
        cn_left,
        "HW_CPU_X86_AVX",
        "HW_CPU_X86_AVX2",
        "HW_GPU_API_DXVA",
        "HW_NIC_DCB_PFC",
        "CUSTOM_FOO",
    )

    cn_middle = s.create_provider("cn_middle", agg_a, agg_b)
    env["CN_MIDDLE"] = cn_middle
    for rc, total in (
        ("VCPU", 8),
        ("MEMORY_MB", 4096),
        ("SRIOV_NET_VF", 8),
        ("CUSTOM_NET_MBPS", 4000),
    ):
        s.add_inventory(cn_middle, rc, total)
    s.set_traits(
        cn_middle, "HW_CPU_X86_AVX", "HW_CPU_X86_AVX2", "HW_CPU_X86_SSE", "HW_NIC_ACCEL_TLS"
    )

    cn_right = s.create_provider("cn_right", agg_b, agg_c)
    env["CN_RIGHT"] = cn_right
    s.add_inventory(cn_right, "VCPU", 8)
    s.add_inventory(cn_right, "MEMORY_MB", 4096)
    s.add_inventory(cn_right, "DISK_GB", 500)
    s.add_inventory(cn_right, "VGPU", 8, max_unit=2)
    s.set_traits(cn_right, "HW_CPU_X86_MMX", "HW_GPU_API_DXVA", "CUSTOM_DISK_SSD")

    shr_disk_1 = s.create_provider("shr_disk_1", agg_a)
    env["SHR_DISK_1"] = shr_disk_1
    s.add_inventory(shr_disk_1, "DISK_GB", 1000)
    s.set_traits(shr_disk_1, "MISC_SHARES_VIA_AGGREGATE", "CUSTOM_DISK_SSD")

    shr_disk_2 = s.create_provider("shr_disk_2", agg_a, agg_b)
    env["SHR_DISK_2"] = shr_disk_2
    s.add_inventory(shr_disk_2, "DISK_GB", 1000)
    s.set_traits(shr_disk_2, "MISC_SHARES_VIA_AGGREGATE")

    shr_net = s.create_provider("shr_net", agg_c)
    env["SHR_NET"] = shr_net
    s.add_inventory(shr_net, "SRIOV_NET_VF", 16)
    s.add_inventory(shr_net, "CUSTOM_NET_MBPS", 40000)
    s.set_traits(shr_net, "MISC_SHARES_VIA_AGGREGATE")


def neutron_qos_multi_segment_fixture(s: Seeder, env: Env) -> None:
    """Four compute trees shaped like Neutron's QoS bandwidth/packet-rate providers."""
    api_fixture(s, env)
    vnic_direct = (
        "CUSTOM_VNIC_TYPE_DIRECT",
        "CUSTOM_VNIC_TYPE_DIRECT_PHYSICAL",
        "CUSTOM_VNIC_TYPE_MACVTAP",
    )
    physnets = {
        0: "CUSTOM_PHYSNET_OTHER",
        1: "CUSTOM_PHYSNET_MSN_S1",
        2: "CUSTOM_PHYSNET_MSN_S2",
        3: "CUSTOM_PHYSNET_MSN_S1",
    }
    sriov_agents: dict[int, str] = {}

    def bandwidth(rp: str, amount: int, *traits: str) -> None:
        s.add_inventory(rp, "NET_BW_EGR_KILOBIT_PER_SEC", amount)
        s.add_inventory(rp, "NET_BW_IGR_KILOBIT_PER_SEC", amount)
        s.set_traits(rp, *traits)

    for i in range(4):
        name = f"compute{i}"
        bw_br, bw_pf = (1000, 1000) if i == 3 else (5000, 10000)
        compute = s.create_provider(name)
        env[name] = compute
        s.add_inventory(compute, "VCPU", 8)
        s.add_inventory(compute, "MEMORY_MB", 4096)
        s.add_inventory(compute, "DISK_GB", 500)

        ovs = s.create_provider(f"{name}:Open vSwitch agent", parent=compute)
        env[f"{name}:ovs_agent"] = ovs
        s.add_inventory(ovs, "NET_PACKET_RATE_KILOPACKET_PER_SEC", 1000)
        s.set_traits(ovs, "CUSTOM_VNIC_TYPE_NORMAL")
        br_ex = s.create_provider(f"{name}:Open vSwitch agent:br-ex", parent=ovs)
        env[f"{name}:br_ex"] = br_ex
        bandwidth(br_ex, bw_br, "CUSTOM_VNIC_TYPE_NORMAL", physnets[i])
        if i == 3:
            br_ex2 = s.create_provider(f"{name}:Open vSwitch agent:br-ex2", parent=ovs)
            env[f"{name}:br_ex2"] = br_ex2
            bandwidth(br_ex2, 1000, "CUSTOM_VNIC_TYPE_NORMAL", "CUSTOM_PHYSNET_MSN_S2")

        sriov = s.create_provider(f"{name}:NIC Switch agent", parent=compute)
        sriov_agents[i] = sriov
        # Upstream sets compute3:sriov_agent to compute2's agent; kept as is.
        env[f"{name}:sriov_agent"] = sriov_agents[2] if i == 3 else sriov
        s.set_traits(sriov, *vnic_direct)
        pf0 = s.create_provider(f"{name}:NIC Switch agent:enp129s0f0", parent=sriov)
        env[f"{name}:pf0"] = pf0
        bandwidth(pf0, bw_pf, *vnic_direct, physnets[i])
        if i == 3:
            pf1 = s.create_provider(f"{name}:NIC Switch agent:enp129s0f1", parent=sriov)
            env[f"{name}:pf1"] = pf1
            bandwidth(pf1, 1000, *vnic_direct, "CUSTOM_PHYSNET_MSN_S2")


FIXTURES: dict[str, Callable[[Seeder, Env], None]] = {
    "APIFixture": api_fixture,
    "LegacyRBACPolicyFixture": api_fixture,
    "SecureRBACPolicyFixture": api_fixture,
    "OpenPolicyFixture": api_fixture,
    "CORSFixture": api_fixture,
    "AllocationFixture": allocation_fixture,
    "SharedStorageFixture": shared_storage_fixture,
    "NUMAAggregateFixture": numa_aggregate_fixture,
    "NUMANetworkFixture": numa_network_fixture,
    "DeepNUMANetworkFixture": deep_numa_network_fixture,
    "NonSharedStorageFixture": non_shared_storage_fixture,
    "GranularFixture": granular_fixture,
    "NeutronQoSMultiSegmentFixture": neutron_qos_multi_segment_fixture,
}


# --------------------------------------------------------------------------- gabbit files


def gabbit_fixtures(text: str) -> list[str]:
    """The names under the file's top-level `fixtures:` key."""
    names: list[str] = []
    inside = False
    for line in text.splitlines():
        if re.match(r"^fixtures:\s*$", line):
            inside = True
            continue
        if inside:
            match = re.match(r"^\s+-\s*([A-Za-z_]\w*)", line)
            if match:
                names.append(match.group(1))
            elif line.strip() and not line.lstrip().startswith("#"):
                break
    return names


def gabbit_test_names(text: str) -> list[str]:
    """Test names in order, as gabbi makes them (lower-cased, spaces → `_`)."""
    names = []
    indent: str | None = None
    in_tests = False
    for line in text.splitlines():
        if re.match(r"^tests:\s*$", line):
            in_tests = True
            continue
        if in_tests:
            match = re.match(r"^(\s*)-\s+name:\s*(.*?)\s*$", line)
            if match and indent in (None, match.group(1)):
                indent = match.group(1)
                raw = match.group(2)
                if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
                    raw = raw[1:-1]
                names.append(raw.lower().replace(" ", "_"))
    return names


# --------------------------------------------------------------------------- results


@dataclasses.dataclass
class CaseResult:
    name: str
    status: str  # pass | fail | error | skip
    reason: str = ""


@dataclasses.dataclass
class FileResult:
    file: str
    fixture: str
    expected: int
    tests: list[CaseResult] = dataclasses.field(default_factory=list)
    note: str = ""
    seconds: float = 0.0

    def count(self, *statuses: str) -> int:
        return sum(1 for t in self.tests if t.status in statuses)

    @property
    def total(self) -> int:
        return len(self.tests)


_LINE_RE = re.compile(r"^\.\.\. (✓|✗|E|-|o|!) (gabbi-runner\.\S+?)(?:: .*)?$")
_BLOCK_RE = re.compile(r"^(FAIL|ERROR|UNEXPECTED SUCCESS): (gabbi-runner\.\S+?)(?:: .*)?$")
_STATUS = {"✓": "pass", "✗": "fail", "E": "error", "-": "skip", "o": "pass", "!": "fail"}


def parse_gabbi_output(stem: str, output: str) -> tuple[list[CaseResult], dict[str, str]]:
    """Per-test statuses from gabbi-run's ConciseTestResult output, plus each
    failure's full message keyed by test name."""
    prefix = f"gabbi-runner.{stem}_"
    results: list[CaseResult] = []
    messages: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        match = _LINE_RE.match(line)
        if match:
            current = None
            name = match.group(2).removeprefix(prefix)
            results.append(CaseResult(name, _STATUS[match.group(1)]))
            continue
        match = _BLOCK_RE.match(line)
        if match:
            current = messages.setdefault(match.group(2).removeprefix(prefix), [])
            continue
        if line.startswith("\t[skipped] ") and results:
            results[-1].reason = line.strip().removeprefix("[skipped] ").strip("'\"")
            continue
        if current is not None:
            if line.startswith("\t"):
                current.append(line[1:])
            else:
                current = None
    return results, {k: "\n".join(v) for k, v in messages.items()}


def _error_detail(text: str) -> str | None:
    """The `detail` of a placement error body (or the body, compacted)."""
    start = text.find("{")
    if start < 0:
        return None
    try:
        body = json.loads(text[start:])
    except ValueError:
        return None
    with contextlib.suppress(AttributeError, IndexError, KeyError, TypeError):
        detail = body["errors"][0]["detail"]
        return " ".join(str(detail).split())
    return json.dumps(body, separators=(",", ":"))


def one_line_reason(message: str, limit: int = 260) -> str:
    """A one-line summary of a gabbi failure message."""
    if not message.strip():
        return "(no message)"
    first, _, rest = message.strip().partition("\n")
    first = first.strip()
    unmatched = re.search(r"^.*?(Unable to match .*)$", message, re.MULTILINE)
    status = re.match(r"^'(\d{3})' not found in \[(.*)\](?:, (?:truncated )?response:)?$", first)
    if unmatched:
        # gabbi's JSONPath assertion: "Unable to match <path> as <expected>, got <actual>"
        # (after unittest's "a != b : " or a multi-line "Lists differ" diff).
        first = unmatched.group(1)
    elif status:
        wanted = status.group(2).replace("'", "")
        first = f"status {status.group(1)}, expected {wanted}"
        body = _error_detail(rest) or " ".join(rest.split())
        if body:
            first += f"; body: {body}"
    elif first.endswith("{") or first.endswith("["):
        # `'<string>' not found in {<body>}` from response_strings
        head = first[:-1].rstrip()
        detail = _error_detail(first[-1] + "\n" + rest)
        first = head + (f" body: {detail}" if detail else " (body)")
    elif first == CLIENT_REFUSED:
        first = (
            "gabbi's HTTP client (httpx/h11) refuses to send a non-integer "
            "Content-Length; cannot run against a live server"
        )
    first = " ".join(first.split())
    return first if len(first) <= limit else first[: limit - 1] + "…"


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def pocketstack_server(
    pocketstack: str, workdir: Path, policy: dict[str, str] | None
) -> Iterator[int]:
    """A fresh `pocketstack up` with placement at `/`; yields its port."""
    port = free_port()
    cmd = [
        pocketstack,
        "up",
        "--state-dir",
        str(workdir / "state"),
        "--bind",
        f"127.0.0.1:{port}",
        "--admin-password",
        "x",
        "--no-clouds-yaml",
        "--services",
        "identity,placement",
        "--auth",
        "noauth",
        "--serve-at-root",
        "placement",
        "--log-level",
        "warning",
    ]
    if policy is not None:
        policy_file = workdir / "policy.yaml"
        policy_file.write_text("".join(f'"{k}": "{v}"\n' for k, v in policy.items()))
        cmd += ["--policy-file", str(policy_file)]
    env = dict(os.environ)
    env.setdefault("POCKETSTACK_PASSWORD_HASH_ROUNDS", "4")  # nothing logs in here
    log = (workdir / "pocketstack-up.log").open("wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                log_path = workdir / "pocketstack-up.log"
                raise RuntimeError(f"pocketstack up exited with {proc.returncode}; see {log_path}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
                conn.close()
            if time.monotonic() > deadline:
                raise RuntimeError("pocketstack up not ready after 60 s")
            time.sleep(0.1)
        yield port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


# --------------------------------------------------------------------------- venv


def site_packages(venv: Path) -> Path | None:
    found = sorted(glob.glob(str(venv / "lib" / "python*" / "site-packages")))
    return Path(found[-1]) if found else None


def gabbits_dir(venv: Path) -> Path | None:
    site = site_packages(venv)
    if site is None or not (site / GABBITS_SUBDIR).is_dir():
        return None
    return site / GABBITS_SUBDIR


def ensure_venv(venv: Path) -> Path:
    """The venv's gabbits dir; creates the venv (gabbi + the placement wheel) if needed."""
    found = gabbits_dir(venv)
    if found is not None and (venv / "bin" / "gabbi-run").exists():
        return found
    print(f">> creating {venv} with gabbi and {PLACEMENT_REQ}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "-q"]
    full = subprocess.run([*pip, PLACEMENT_REQ, "gabbi"], check=False)
    if full.returncode != 0:
        print(">> full install failed; installing the wheel alone (--no-deps) plus gabbi")
        subprocess.run([*pip, "gabbi"], check=True)
        subprocess.run([*pip, "--no-deps", PLACEMENT_REQ], check=True)
    found = gabbits_dir(venv)
    if found is None or not (venv / "bin" / "gabbi-run").exists():
        die(f"{venv} has no gabbi-run or no {GABBITS_SUBDIR}")
    return found


def dist_version(venv: Path, dist: str) -> str:
    site = site_packages(venv)
    if site:
        for path in glob.glob(str(site / f"{dist}-*.dist-info")):
            return Path(path).name.removeprefix(f"{dist}-").removesuffix(".dist-info")
    return "unknown"


# --------------------------------------------------------------------------- one file


def run_file(
    path: Path, pocketstack: str, gabbi_run: Path, workdir: Path, timeout: float
) -> FileResult:
    text = path.read_text()
    fixtures = gabbit_fixtures(text) or ["APIFixture"]
    fixture = fixtures[-1]
    expected = gabbit_test_names(text)
    result = FileResult(path.name, fixture, len(expected))
    notes = []
    if path.name in HARNESS_NOTES:
        notes.append(HARNESS_NOTES[path.name])
    seed = FIXTURES.get(fixture)
    if seed is None:
        notes.append(f"unknown fixture {fixture}: seeded as APIFixture")
        seed = api_fixture
    policy = POLICY_BY_FIXTURE.get(fixture, LEGACY_POLICY)
    workdir.mkdir(parents=True)
    started = time.monotonic()
    output = ""
    try:
        with pocketstack_server(pocketstack, workdir, policy) as port:
            env: Env = {}
            seeder = Seeder(port)
            try:
                seed(seeder, env)
            except (SeedError, OSError, http.client.HTTPException, ValueError) as exc:
                notes.append(f"fixture seeding failed: {exc}")
            (workdir / "fixture-env.json").write_text(json.dumps(env, indent=1))
            run_env = {
                k: v for k, v in os.environ.items() if k not in ("GABBI_FORCE_COLOR", "PYTHONPATH")
            }
            run_env.update(env, PYTHONIOENCODING="utf-8")
            cmd = [str(gabbi_run), f"http://127.0.0.1:{port}", "--", str(path)]
            try:
                proc = subprocess.run(
                    cmd, env=run_env, capture_output=True, timeout=timeout, check=False
                )
                output = (proc.stdout + proc.stderr).decode("utf-8", errors="replace")
            except subprocess.TimeoutExpired as exc:
                parts = [exc.stdout or b"", exc.stderr or b""]
                output = b"".join(p if isinstance(p, bytes) else p.encode() for p in parts).decode(
                    "utf-8", errors="replace"
                )
                notes.append(f"gabbi-run timed out after {timeout:.0f} s")
    except RuntimeError as exc:
        notes.append(str(exc))
    result.seconds = time.monotonic() - started
    (workdir / "gabbi-run.out").write_text(output)

    parsed, messages = parse_gabbi_output(path.stem, output)
    for test in parsed:
        if test.status in ("fail", "error"):
            test.reason = one_line_reason(messages.get(test.name, ""))
    seen = {t.name for t in parsed}
    missing = [name for name in expected if name not in seen]
    if missing:
        tail = " ".join(output.strip().splitlines()[-1:]) or "no output"
        why = f"not run (gabbi-run: {tail[:200]})"
        parsed += [CaseResult(name, "error", why) for name in missing]
    result.tests = parsed
    result.note = "; ".join(notes)
    return result


# --------------------------------------------------------------------------- report


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1048576:.1f} GiB"
    osname = ""
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                osname = line.split("=", 1)[1].strip('"')
    cpu = f" ({model})" if model else ""
    return (
        f"{os.cpu_count()} vCPU{cpu}, {mem or '? GiB'} RAM, {osname or 'unknown OS'}, "
        f"kernel {platform.release()} {platform.machine()}"
    )


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def totals(results: list[FileResult]) -> tuple[int, int, int, int]:
    tests = sum(r.total for r in results)
    passed = sum(r.count("pass") for r in results)
    failed = sum(r.count("fail", "error") for r in results)
    skipped = sum(r.count("skip") for r in results)
    return tests, passed, failed, skipped


def render_section(results: list[FileResult], meta: dict[str, str]) -> str:
    tests, passed, failed, skipped = totals(results)
    pct = 100.0 * passed / tests if tests else 0.0
    out = [
        SECTION_TITLE,
        "",
        "Upstream Placement's own gabbi suite (the gabbit YAML files of",
        f"`{meta['placement']}`) run with `gabbi-run` against a live `pocketstack up`:",
        "one fresh server (new SQLite state dir, free loopback port, `--auth noauth`,",
        "placement served at `/`) per file, seeded over HTTP with what the file's gabbi",
        "fixture creates upstream, with the fixture's environment variables exported.",
        "Policy fixtures map to `--policy-file`: legacy (APIFixture and its subclasses) adds",
        "`role:admin` to the reshaper rule, SecureRBAC uses pocketstack's defaults, Open sets",
        "every `placement:*` rule to `@`.",
        "Regenerate with `make conformance-placement` (`tests/peer/run-placement-gabbi.sh`);",
        "this section is rewritten by every full run, so it shows the last one only.",
        "",
        f"- date: {meta['date']} (run took {meta['elapsed']} s)",
        f"- machine: {meta['machine']}",
        f"- suite: {meta['placement']} gabbits, {meta['gabbi']}",
        f"- pocketstack: {meta['pocketstack']} (git {meta['git']})",
        f"- command: `{meta['command']}` ({meta['command_note']}"
        "driver `tests/peer/placement_gabbi.py`)",
        "",
        "### Results",
        "",
        f"**{passed} passed, {failed} failed, {skipped} skipped of {tests} tests "
        f"({pct:.1f}% pass) in {len(results)} files**",
        "",
        "| file | fixture | tests | passed | failed | skipped |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        out.append(
            f"| {r.file} | {r.fixture} | {r.total} | {r.count('pass')} | "
            f"{r.count('fail', 'error')} | {r.count('skip')} |"
        )
    out.append(f"| **TOTAL** | | **{tests}** | **{passed}** | **{failed}** | **{skipped}** |")
    notes = [r for r in results if r.note]
    if notes:
        out += ["", "Notes:", ""]
        out += [f"- `{r.file}`: {r.note}" for r in notes]
    out += [
        "",
        f"### Failed tests ({failed})",
        "",
        "Test names are gabbi's (the YAML `name`, lower-cased, spaces as `_`);",
        "the reason is the first line of gabbi's assertion message, with the error",
        "`detail` pocketstack answered where there was one.",
        "",
    ]
    failures = [(r.file, t) for r in results for t in r.tests if t.status in ("fail", "error")]
    if failures:
        out += ["| file | test | reason |", "|---|---|---|"]
        out += [f"| {f} | `{t.name}` | {cell(t.reason)} |" for f, t in failures]
    else:
        out.append("None.")
    skips = [(r.file, t) for r in results for t in r.tests if t.status == "skip"]
    if skips:
        out += ["", f"### Skipped tests ({len(skips)})", "", "| file | test | reason |"]
        out += ["|---|---|---|"] + [f"| {f} | `{t.name}` | {cell(t.reason)} |" for f, t in skips]
    return "\n".join(out) + "\n"


def write_section(doc: Path, section: str) -> None:
    """Replace (or append) the placement section; everything else stays as it is."""
    text = doc.read_text() if doc.exists() else ""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION_TITLE), None)
    if start is None:
        body = text.rstrip("\n")
        new = (body + "\n\n" if body else "") + section
    else:
        end = next(
            (
                i
                for i in range(start + 1, len(lines))
                if lines[i].startswith("## ") or lines[i].startswith("# ")
            ),
            len(lines),
        )
        before = "".join(lines[:start]).rstrip("\n")
        after = "".join(lines[end:])
        new = (before + "\n\n" if before else "") + section + ("\n" + after if after else "")
    doc.write_text(new)


def print_table(results: list[FileResult]) -> None:
    width = max((len(r.file) for r in results), default=10)
    print(f"\n{'file':<{width}}  tests  pass  fail  skip")
    for r in results:
        print(
            f"{r.file:<{width}}  {r.total:5}  {r.count('pass'):4}  "
            f"{r.count('fail', 'error'):4}  {r.count('skip'):4}"
            + (f"  ({r.note})" if r.note else "")
        )
    tests, passed, failed, skipped = totals(results)
    pct = 100.0 * passed / tests if tests else 0.0
    print(f"{'TOTAL':<{width}}  {tests:5}  {passed:4}  {failed:4}  {skipped:4}  ({pct:.1f}% pass)")


# --------------------------------------------------------------------------- main


def find_pocketstack() -> str:
    local = REPO / ".venv" / "bin" / "pocketstack"
    if local.exists():
        return str(local)
    found = shutil.which("pocketstack")
    if found:
        return found
    die("pocketstack is not installed; run 'make install' first")


def git_rev(tree: Path) -> str:
    """The commit of `tree`, noting uncommitted changes to the code under test
    (pocketstack/), not to docs such as the page this run rewrites."""

    def git(*args: str) -> str:
        proc = subprocess.run(
            ["git", "-C", str(tree), *args], capture_output=True, text=True, check=False
        )
        return proc.stdout.strip()

    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--", "pocketstack"):
        rev += " + uncommitted changes in pocketstack/"
    return rev


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="FILE",
        help="gabbit files to run (inventory.yaml or inventory); the doc is then not written",
    )
    parser.add_argument("--keep", action="store_true", help="keep state dirs and logs")
    parser.add_argument(
        "--venv",
        type=Path,
        default=Path(os.environ.get("GABBI_VENV", DEFAULT_VENV)),
        help=f"gabbi venv (default {DEFAULT_VENV})",
    )
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "conformance.md")
    parser.add_argument("--no-doc", action="store_true", help="do not write the doc")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--timeout", type=float, default=180, help="seconds per gabbit file")
    parser.add_argument(
        "--source",
        type=Path,
        help="run pocketstack from this source tree (e.g. a clean clone of a commit) "
        "instead of the working tree, with this repo's venv for its dependencies",
    )
    args = parser.parse_args(argv)

    pocketstack = find_pocketstack()
    source = REPO
    if args.source:
        source = args.source.resolve()
        if not (source / "pocketstack" / "__init__.py").exists():
            die(f"{source} has no pocketstack package")
        # Ahead of the venv's editable install (a meta-path finder consulted last).
        os.environ["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(source), os.environ.get("PYTHONPATH")) if p
        )
    gabbits = ensure_venv(args.venv)
    gabbi_run = args.venv / "bin" / "gabbi-run"
    files = sorted(gabbits.glob("*.yaml"))
    if args.only:
        wanted = {name if name.endswith(".yaml") else f"{name}.yaml" for name in args.only}
        wanted = {Path(name).name for name in wanted}
        unknown = wanted - {f.name for f in files}
        if unknown:
            die(f"no such gabbit file(s) in {gabbits}: {', '.join(sorted(unknown))}")
        files = [f for f in files if f.name in wanted]

    root = Path(tempfile.mkdtemp(prefix="pocketstack-gabbi."))
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    t0 = time.monotonic()
    results: list[FileResult] = []
    try:
        for index, path in enumerate(files, start=1):
            result = run_file(path, pocketstack, gabbi_run, root / path.stem, args.timeout)
            results.append(result)
            print(
                f"[{index:2}/{len(files)}] {path.name}: {result.count('pass')}/{result.total} "
                f"passed, {result.count('fail', 'error')} failed, {result.count('skip')} skipped "
                f"({result.seconds:.1f} s)" + (f" [{result.note}]" if result.note else ""),
                flush=True,
            )
    finally:
        elapsed = time.monotonic() - t0
        if args.keep:
            print(f"kept state dirs and logs under {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print_table(results)

    meta = {
        "date": date,
        "elapsed": f"{elapsed:.0f}",
        "machine": machine(),
        "placement": f"openstack-placement {dist_version(args.venv, 'openstack_placement')}",
        "gabbi": f"gabbi {dist_version(args.venv, 'gabbi')}",
        "pocketstack": subprocess.run(
            [pocketstack, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        or "pocketstack",
        "git": git_rev(source),
        "command": "tests/peer/run-placement-gabbi.sh"
        + (f" --source {source}" if args.source else ""),
        "command_note": "pocketstack run from a clean clone of that commit; "
        if args.source
        else "",
    }
    if args.json:
        args.json.write_text(
            json.dumps({"meta": meta, "files": [dataclasses.asdict(r) for r in results]}, indent=1)
        )
    if not args.only and not args.no_doc:
        write_section(args.doc, render_section(results, meta))
        print(f"wrote the placement section of {args.doc}")
    _, _, failed, _ = totals(results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
