"""The compute side of port binding: a server's ports in the network service.

A boot's `networks` become ports before the server is placed (so a network
that does not exist, a port in use or a full subnet answer the request as a
4xx); once placed, each port is bound to the server's host
(`binding:host_id`) with the server as its device. The ports compute made are
deleted with the server; ports the user brought are unbound and stay. The
server's `addresses` are read from its ports. Calls go to network/service.py
in-process, as the control plane's own identity with admin rights in the server's
project (networking's rules are project-scoped, as Neutron's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pocketstack.core import errors
from pocketstack.core.context import RequestContext
from pocketstack.core.runtime import Runtime
from pocketstack.network import query as network_query
from pocketstack.network import routers as network_routers
from pocketstack.network import security_groups as network_security_groups
from pocketstack.network import service as network_service

DEVICE_OWNER = "compute:nova"


@dataclass(frozen=True, slots=True)
class NetworkRequest:
    """One entry of a boot's `networks`: a network (optionally a fixed IP on it) or a port."""

    network_id: str | None = None
    port_id: str | None = None
    fixed_ip: str | None = None


def enabled(runtime: Runtime) -> bool:
    return "network" in runtime.settings.services


def _usable_networks(ctx: RequestContext) -> list[dict[str, Any]]:
    """The networks a project would get without naming one: its own and shared ones, not
    external networks (Nova's "get me a network" looks at the same ones)."""
    listed = network_service.list_networks(ctx, network_query.ListQuery())
    return [n for n in listed if not n["router:external"]]


def resolve(
    ctx: RequestContext, wanted: str | Sequence[NetworkRequest] | None
) -> list[NetworkRequest]:
    """The networks a boot gets: the ones asked for (checked to exist and be usable), or for
    `auto` (and no `networks` before 2.37) the project's only network. `none`: none."""
    if wanted == "none" or not enabled(ctx.runtime):
        return []
    if wanted is None or wanted == "auto":
        networks = _usable_networks(ctx)
        if len(networks) > 1:
            raise errors.Conflict(
                "Multiple possible networks found, use a Network ID to be more specific."
            )
        return [NetworkRequest(network_id=networks[0]["id"])] if networks else []
    assert not isinstance(wanted, str)
    for request in wanted:
        if request.port_id is not None:
            try:
                port = network_service.get_port(ctx, request.port_id)
            except errors.NotFound:
                raise errors.Invalid(f"Port id {request.port_id} could not be found.") from None
            if port["device_id"]:
                raise errors.Conflict(f"Port {request.port_id} is still in use.")
        else:
            try:
                network_service.get_network(ctx, str(request.network_id))
            except errors.NotFound:
                raise errors.Invalid(f"Network {request.network_id} could not be found.") from None
    return list(wanted)


def group_ids(ctx: RequestContext, names: Sequence[str] | None) -> list[str] | None:
    """The security groups a boot names (by name or id, as Nova takes them) as ids; None:
    the ports get their project's default group."""
    if names is None or not enabled(ctx.runtime):
        return None
    groups = network_security_groups.list_groups(ctx, network_query.ListQuery())
    found = []
    for name in dict.fromkeys(names):
        match = [g["id"] for g in groups if name in (g["name"], g["id"])]
        if not match:
            raise errors.Invalid(f"Security group {name} not found for project {ctx.project_id}.")
        if len(match) > 1:
            raise errors.Conflict(f"Multiple security groups named {name}: use its id.")
        found.append(match[0])
    return found


def allocate(
    ctx: RequestContext,
    server_id: str,
    project_id: str,
    requests: Sequence[NetworkRequest],
    groups: Sequence[str] | None = None,
    hostname: str = "",
) -> list[dict[str, Any]]:
    """Ports for a new server, not yet bound to a host; what `bind` and `release` take.
    Ports compute makes carry the server's hostname as their dns_name, as Nova sets it,
    so the network's DNS answers for the server by name."""
    service = ctx.runtime.service_context(project_id)
    ports: list[dict[str, Any]] = []
    try:
        for request in requests:
            if request.port_id is not None:
                given = network_service.update_port(
                    service, request.port_id, {"device_id": server_id, "device_owner": DEVICE_OWNER}
                )
                ports.append({"port_id": request.port_id, "created": False, **_nic(service, given)})
                continue
            body: dict[str, Any] = {
                "network_id": request.network_id,
                "project_id": project_id,
                "device_id": server_id,
                "device_owner": DEVICE_OWNER,
                "dns_name": hostname,
            }
            if request.fixed_ip is not None:
                body["fixed_ips"] = [{"ip_address": request.fixed_ip}]
            if groups is not None:
                body["security_groups"] = list(groups)
            made = network_service.create_port(service, body)
            ports.append({"port_id": made["id"], "created": True, **_nic(service, made)})
    except errors.PocketstackError:
        release(ctx.runtime, project_id, ports)
        raise
    return ports


def _nic(ctx: RequestContext, port: dict[str, Any]) -> dict[str, Any]:
    """What the server's host needs to plug the port: its MAC, network and MTU."""
    network = network_service.get_network(ctx, port["network_id"])
    return {"mac": port["mac_address"], "network_id": port["network_id"], "mtu": network["mtu"]}


def bind(runtime: Runtime, project_id: str, ports: Sequence[dict[str, Any]], host: str) -> None:
    """Bind each port to `host`; each entry of `ports` (kept in the server's devices) gets
    the binding's `vif_details`, which say where the host plugs the port."""
    service = runtime.service_context(project_id)
    for port in ports:
        bound = network_service.update_port(service, port["port_id"], {"binding:host_id": host})
        port["vif_details"] = bound.get("binding:vif_details") or {}


def release(runtime: Runtime, project_id: str, ports: Sequence[dict[str, Any]]) -> None:
    """Delete the ports compute made, unbind the others (each step idempotent)."""
    service = runtime.service_context(project_id)
    for port in ports:
        try:
            if port["created"]:
                network_service.delete_port(service, port["port_id"])
            else:
                network_service.update_port(
                    service,
                    port["port_id"],
                    {"device_id": "", "device_owner": "", "binding:host_id": ""},
                )
        except errors.NotFound:
            continue


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    """What a server's views show of its ports (Nova's network info cache)."""

    addresses: dict[str, list[dict[str, Any]]]
    security_groups: list[str]  # names, each once


def network_info(
    runtime: Runtime, project_id: str, server_ids: Sequence[str]
) -> dict[str, NetworkInfo]:
    """Each server's `addresses` (network name -> its fixed addresses and the floating IPs
    that point at them) and the names of its ports' security groups."""
    if not server_ids or not enabled(runtime):
        return {}
    service = runtime.service_context(project_id)
    ports = network_service.list_ports(
        service, network_query.ListQuery(filters={"device_id": list(server_ids)})
    )
    names = network_service.network_names(service, {p["network_id"] for p in ports})
    floating: dict[str, list[str]] = {}
    group_names: dict[str, str] = {}
    if ports:
        query = network_query.ListQuery(filters={"port_id": [p["id"] for p in ports]})
        for fip in network_routers.list_floating_ips(service, query):
            floating.setdefault(fip["port_id"], []).append(fip["floating_ip_address"])
        wanted = sorted({g for p in ports for g in p["security_groups"]})
        if wanted:
            groups = network_security_groups.list_groups(
                service, network_query.ListQuery(filters={"id": wanted})
            )
            group_names = {g["id"]: g["name"] for g in groups}
    addresses: dict[str, dict[str, list[dict[str, Any]]]] = {s: {} for s in server_ids}
    groups_of: dict[str, dict[str, None]] = {s: {} for s in server_ids}
    for port in ports:
        entries = addresses[port["device_id"]].setdefault(names.get(port["network_id"], ""), [])
        mac = port["mac_address"]
        for fixed in port["fixed_ips"]:
            version = 6 if ":" in fixed["ip_address"] else 4
            entries.append(
                {
                    "version": version,
                    "addr": fixed["ip_address"],
                    "OS-EXT-IPS:type": "fixed",
                    "OS-EXT-IPS-MAC:mac_addr": mac,
                }
            )
        for address in floating.get(port["id"], []):
            entries.append(
                {
                    "version": 4,
                    "addr": address,
                    "OS-EXT-IPS:type": "floating",
                    "OS-EXT-IPS-MAC:mac_addr": mac,
                }
            )
        for group in port["security_groups"]:
            groups_of[port["device_id"]][group_names.get(group, group)] = None
    return {s: NetworkInfo(addresses[s], list(groups_of[s])) for s in server_ids}
