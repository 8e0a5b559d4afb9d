"""The external network every fresh cloud has: `public`, where routers get their gateway
and floating IPs their addresses (198.18.0.0/24 unless configured otherwise)."""

from __future__ import annotations

import ipaddress

from sqlalchemy import select

from pocketstack.core.runtime import Runtime
from pocketstack.network import models
from pocketstack.network import service as network_service

PUBLIC = "public"


def ensure_public_network(runtime: Runtime, owner: str, cidr: str) -> str:
    """The `public` network's id, made (flat, external, no DHCP) when missing."""
    with runtime.db.read() as session:
        found = session.scalar(
            select(models.Network.id).where(
                models.Network.name == PUBLIC, models.Network.external.is_(True)
            )
        )
        if found is not None:
            return found
    ctx = runtime.service_context(owner)
    network = network_service.create_network(
        ctx,
        {
            "name": PUBLIC,
            "router:external": True,
            "provider:network_type": "flat",
            "provider:physical_network": PUBLIC,
            "description": "The external network",
        },
    )
    subnet = ipaddress.ip_network(cidr)
    network_service.create_subnet(
        ctx,
        {
            "name": f"{PUBLIC}-subnet",
            "network_id": network["id"],
            "ip_version": 4,
            "cidr": str(subnet),
            "gateway_ip": str(subnet.network_address + 1),
            "enable_dhcp": False,
        },
    )
    return str(network["id"])
