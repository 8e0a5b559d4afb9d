"""Bandwidth limits with tc: HTB on a device's transmit side, IFB + mirred + HTB on its
receive side (this kernel has no `tc police`, fq_codel or netem).

The network agent calls `set_port_limits` for a port's QoS policy (on its
`tap…` in the network's namespace) and `set_floating_ip_limits` for the
floating IPs of a router (on its gateway leg `qg-…` in `qrouter-…`). Both
converge on what they are given: classes and filters that are not wanted
are removed, the rest replaced in place (no packet is dropped for a call
that changes nothing), and None or an empty mapping removes everything.

Directions follow OpenStack's, seen from the server: a port's *egress* is
what the server sends, which the tap receives, so it is shaped on the
tap's IFB; its *ingress* is shaped on the tap's own transmit side. For a
floating IP, egress is what leaves the gateway leg with the floating IP as
source (tc sees it after SNAT) and ingress what arrives for it (tc sees it
before DNAT); each floating IP gets its own HTB class, selected by a u32
match on its address, and other traffic passes unshaped (HTB `default 0`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pocketstack.host import commands, netdev

# u32 node ids (the filter handle's last part, and our class minor) are 12 bits.
_MAX_MINOR = 0xFFF


@dataclass(frozen=True, slots=True)
class Limit:
    rate_kbit: int
    burst_kbit: int | None = None  # None: 10 ms at the rate, at least 64 KiB (GSO frames)

    @property
    def burst(self) -> str:
        return f"{self.burst_kbit or max(self.rate_kbit // 100, 512)}kbit"


@dataclass(frozen=True, slots=True)
class FloatingIpLimits:
    egress: Limit | None = None
    ingress: Limit | None = None


@dataclass(frozen=True, slots=True)
class _Class:
    minor: int
    limit: Limit
    match: tuple[str, ...] = ()  # u32 match, e.g. ("ip", "src", "198.18.0.5/32"); () = default


def ifb_name(dev: str) -> str:
    """The IFB device that shapes what `dev` receives (in the same namespace)."""
    return f"ifb{hashlib.sha1(dev.encode()).hexdigest()[:11]}"


def _tc(netns: netdev.Netns) -> list[str]:
    if isinstance(netns, str):
        return ["tc", "-n", netns]
    return [*netdev.in_netns(netns), "tc"]


def _json(argv: list[str]) -> list[dict[str, Any]]:
    out = commands.run(argv).strip()
    return json.loads(out) if out else []


def _qdiscs(netns: netdev.Netns, dev: str) -> list[dict[str, Any]]:
    return _json([*_tc(netns), "-j", "qdisc", "show", "dev", dev])


def _root_default(netns: netdev.Netns, dev: str) -> int | None:
    """The default class of our root HTB on `dev`, or None when there is none."""
    for q in _qdiscs(netns, dev):
        if q.get("root") and q.get("kind") == "htb" and q.get("handle") == "1:":
            return int(str(q.get("options", {}).get("default", "0")), 16)
    return None


def _class_minors(netns: netdev.Netns, dev: str) -> set[int]:
    text = commands.run([*_tc(netns), "class", "show", "dev", dev])
    return {int(m, 16) for m in re.findall(r"^class htb 1:([0-9a-f]+)", text, re.MULTILINE)}


def _filter_minors(netns: netdev.Netns, dev: str, parent: str) -> set[int]:
    found = _json([*_tc(netns), "-j", "filter", "show", "dev", dev, "parent", parent])
    minors: set[int] = set()
    for entry in found:
        handle = str(entry.get("options", {}).get("fh", ""))
        if handle.startswith("800::"):
            minors.add(int(handle[5:], 16))
    return minors


def _sync_htb(netns: netdev.Netns, dev: str, classes: Sequence[_Class], default: int) -> None:
    """Root HTB on `dev` with exactly these classes (and their filters); none: no HTB."""
    tc = _tc(netns)
    present = _root_default(netns, dev)
    if present is not None and (not classes or present != default):
        # HTB cannot be changed in place (no "change" operation): a new default is a new one.
        commands.run([*tc, "qdisc", "del", "dev", dev, "root"])
        present = None
    if not classes:
        return
    if present is None:
        commands.run([*tc, "qdisc", "replace", "dev", dev, "root", "handle", "1:", "htb",
                      "default", f"{default:x}"])  # fmt: skip
    wanted = {c.minor: c for c in classes}
    for minor in sorted(_filter_minors(netns, dev, "1:") - {c.minor for c in classes if c.match}):
        commands.run([*tc, "filter", "del", "dev", dev, "parent", "1:", "protocol", "ip", "prio",
                      "1", "handle", f"800::{minor:x}", "u32"])  # fmt: skip
    for minor in sorted(_class_minors(netns, dev) - wanted.keys()):
        commands.run([*tc, "class", "del", "dev", dev, "classid", f"1:{minor:x}"])
    for c in classes:
        rate = f"{c.limit.rate_kbit}kbit"
        commands.run([*tc, "class", "replace", "dev", dev, "parent", "1:", "classid",
                      f"1:{c.minor:x}", "htb", "rate", rate, "ceil", rate, "burst", c.limit.burst,
                      "cburst", c.limit.burst])  # fmt: skip
        if c.match:
            commands.run([*tc, "filter", "replace", "dev", dev, "parent", "1:", "protocol", "ip",
                          "prio", "1", "handle", f"800::{c.minor:x}", "u32", "match", *c.match,
                          "flowid", f"1:{c.minor:x}"])  # fmt: skip


def _sync_redirect(netns: netdev.Netns, dev: str, on: bool) -> str:
    """Send everything `dev` receives through its IFB (or stop doing so); the IFB's name."""
    ifb = ifb_name(dev)
    tc = _tc(netns)
    has_ingress = any(q.get("kind") == "ingress" for q in _qdiscs(netns, dev))
    if not on:
        if has_ingress:
            commands.run([*tc, "qdisc", "del", "dev", dev, "ingress"])
        netdev.delete_link(netns, ifb)
        return ifb
    if netdev.link(netns, ifb) is None:
        commands.run([*_ip_link(netns), "add", ifb, "type", "ifb"])
    netdev.set_link(netns, ifb, up=True)
    if not has_ingress:
        commands.run([*tc, "qdisc", "add", "dev", dev, "handle", "ffff:", "ingress"])
    if not _json([*tc, "-j", "filter", "show", "dev", dev, "parent", "ffff:"]):
        commands.run([*tc, "filter", "add", "dev", dev, "parent", "ffff:", "protocol", "all",
                      "prio", "1", "u32", "match", "u32", "0", "0", "action", "mirred", "egress",
                      "redirect", "dev", ifb])  # fmt: skip
    return ifb


def _ip_link(netns: netdev.Netns) -> list[str]:
    if isinstance(netns, str):
        return ["ip", "-n", netns, "link"]
    return [*netdev.in_netns(netns), "ip", "link"]


def set_egress(netns: netdev.Netns, dev: str, limit: Limit | None) -> None:
    """Limit what `dev` transmits (None: no limit)."""
    _sync_htb(netns, dev, [_Class(1, limit)] if limit else [], default=1)


def set_ingress(netns: netdev.Netns, dev: str, limit: Limit | None) -> None:
    """Limit what `dev` receives, through its IFB (None: no limit, no IFB)."""
    if limit is None:
        _sync_redirect(netns, dev, on=False)  # the IFB goes, and its HTB with it
        return
    ifb = _sync_redirect(netns, dev, on=True)
    _sync_htb(netns, ifb, [_Class(1, limit)], default=1)


def set_port_limits(
    netns: netdev.Netns, tap: str, *, egress: Limit | None, ingress: Limit | None
) -> None:
    """A port's QoS, from the server's side (see the module's docstring)."""
    set_ingress(netns, tap, egress)
    set_egress(netns, tap, ingress)


def _minors(addresses: Sequence[str]) -> dict[str, int]:
    """A stable class minor per floating IP: its address's low 12 bits, unless taken."""
    taken: dict[str, int] = {}
    used: set[int] = set()
    for address in sorted(addresses, key=lambda a: int(ipaddress.IPv4Address(a))):
        minor = int(ipaddress.IPv4Address(address)) & _MAX_MINOR
        while minor in used or minor in (0, 1):
            minor = minor + 1 if minor < _MAX_MINOR else 2
        used.add(minor)
        taken[address] = minor
    return taken


def set_floating_ip_limits(
    netns: str, gateway_if: str, limits: Mapping[str, FloatingIpLimits]
) -> None:
    """Limit each floating IP's traffic on the router's gateway leg; exactly these."""
    if len(limits) > _MAX_MINOR - 2:
        raise ValueError(f"at most {_MAX_MINOR - 2} floating IPs per router")
    minors = _minors(list(limits))
    egress = [
        _Class(minors[ip], lim.egress, ("ip", "src", f"{ip}/32"))
        for ip, lim in limits.items()
        if lim.egress is not None
    ]
    ingress = [
        _Class(minors[ip], lim.ingress, ("ip", "dst", f"{ip}/32"))
        for ip, lim in limits.items()
        if lim.ingress is not None
    ]
    _sync_htb(netns, gateway_if, egress, default=0)
    if ingress:
        _sync_htb(netns, _sync_redirect(netns, gateway_if, on=True), ingress, default=0)
    else:
        _sync_redirect(netns, gateway_if, on=False)


def clear(netns: netdev.Netns, dev: str) -> None:
    """No limits at all on `dev`, either way."""
    set_egress(netns, dev, None)
    set_ingress(netns, dev, None)
