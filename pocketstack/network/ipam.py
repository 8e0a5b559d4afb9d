"""Addresses for ports: pools, the gateway, fixed requests, IPv6 SLAAC.

An address is held by a row keyed (subnet, address); a concurrent create that
picked the same free address loses on that key and its transaction is retried
(service.py), so two ports never share an address, whatever the database.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterator, Sequence

from pocketstack.core import errors

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SLAAC_MODES = ("slaac", "dhcpv6-stateless")


def network(cidr: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise errors.Invalid(
            f"Invalid input for cidr. Reason: '{cidr}' is not a valid IP subnet."
        ) from None


def address(value: str, attribute: str) -> IPAddress:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        raise errors.Invalid(
            f"Invalid input for {attribute}. Reason: '{value}' is not a valid IP address."
        ) from None


def _text(cidr: IPNetwork, value: int) -> str:
    return str(ipaddress.ip_address(value) if cidr.version == 4 else ipaddress.IPv6Address(value))


def default_pools(cidr: IPNetwork, gateway: str | None) -> list[dict[str, str]]:
    """Every host address but the gateway's (and, for IPv4, network and broadcast)."""
    first, last = int(cidr.network_address) + 1, int(cidr.broadcast_address)
    if cidr.version == 4:
        last -= 1
    if cidr.prefixlen >= (31 if cidr.version == 4 else 127):
        first, last = int(cidr.network_address), int(cidr.broadcast_address)
    gateway_at = int(ipaddress.ip_address(gateway)) if gateway else None
    if gateway_at is None or not first <= gateway_at <= last:
        return [{"start": _text(cidr, first), "end": _text(cidr, last)}]
    pools = []
    if gateway_at > first:
        pools.append({"start": _text(cidr, first), "end": _text(cidr, gateway_at - 1)})
    if gateway_at < last:
        pools.append({"start": _text(cidr, gateway_at + 1), "end": _text(cidr, last)})
    return pools


def check_pools(cidr: IPNetwork, pools: Sequence[dict[str, str]], gateway: str | None) -> None:
    """Pools inside the subnet, start <= end, not overlapping each other or the gateway."""
    spans: list[tuple[int, int]] = []
    for pool in pools:
        start = address(str(pool.get("start")), "allocation_pools")
        end = address(str(pool.get("end")), "allocation_pools")
        if start not in cidr or end not in cidr:
            raise errors.Invalid(
                f"The allocation pool {start}-{end} spans beyond the subnet cidr {cidr}.",
                code="OutOfBoundsAllocationPool",
            )
        if int(start) > int(end):
            raise errors.Invalid(
                f"The allocation pool {start}-{end} is invalid: its start is after its end.",
                code="InvalidAllocationPool",
            )
        spans.append((int(start), int(end)))
    spans.sort()
    for (_, end_at), (start_at, _) in itertools.pairwise(spans):
        if start_at <= end_at:
            raise errors.Invalid(
                f"Found overlapping allocation pools: {pools}", code="OverlappingAllocationPools"
            )
    if gateway:
        gateway_at = int(ipaddress.ip_address(gateway))
        for start_at, end_at in spans:
            if start_at <= gateway_at <= end_at:
                raise errors.Conflict(
                    f"Gateway ip {gateway} conflicts with allocation pool "
                    f"{_text(cidr, start_at)}-{_text(cidr, end_at)}.",
                    code="GatewayConflictWithAllocationPools",
                )


def candidates(pools: Sequence[dict[str, str]]) -> Iterator[str]:
    for pool in pools:
        start = ipaddress.ip_address(pool["start"])
        for value in range(int(start), int(ipaddress.ip_address(pool["end"])) + 1):
            yield str(
                ipaddress.ip_address(value) if start.version == 4 else ipaddress.IPv6Address(value)
            )


def in_pools(value: str, pools: Sequence[dict[str, str]]) -> bool:
    wanted = int(ipaddress.ip_address(value))
    return any(
        int(ipaddress.ip_address(p["start"])) <= wanted <= int(ipaddress.ip_address(p["end"]))
        for p in pools
    )


def slaac_address(cidr: IPNetwork, mac: str) -> str:
    """The EUI-64 address a SLAAC host forms from its MAC in a /64."""
    octets = [int(part, 16) for part in mac.split(":")]
    octets[0] ^= 0x02
    eui = [*octets[:3], 0xFF, 0xFE, *octets[3:]]
    suffix = int.from_bytes(bytes(eui), "big")
    return str(ipaddress.ip_address(int(cidr.network_address) | suffix))
