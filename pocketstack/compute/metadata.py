"""What the metadata service tells a server about itself, as Nova's metadata API does:
the OpenStack tree (`/openstack/<version>/meta_data.json`, `user_data`,
`network_data.json`, `vendor_data.json`, `vendor_data2.json`) and the EC2-style one
(`/<version>/meta-data/…`, `/<version>/user-data`).

The network agent's listener (host/metadata.py) finds which server asks, from the
namespace a request came into and its source address, and calls `document` with
what the network knows of that server's port (`PortAddresses`); the server is
never named by the client. Every OpenStack version answers with the same, newest
content.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from typing import Any

from pocketstack.compute import service as compute_service
from pocketstack.compute.service import ServerView
from pocketstack.core import errors
from pocketstack.core.context import RequestContext

OPENSTACK_VERSIONS = (
    "2012-08-10", "2013-04-04", "2013-10-17", "2015-10-15", "2016-06-30", "2016-10-06",
    "2017-02-22", "2018-08-27", "2020-10-14", "latest",
)  # fmt: skip
EC2_VERSIONS = ("1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15",
                "2008-02-01", "2008-09-01", "2009-04-04", "latest")  # fmt: skip
JSON = "application/json"
TEXT = "text/plain"


@dataclass(frozen=True, slots=True)
class PortAddresses:
    """The asking server's port, as the network has it."""

    port_id: str
    network_id: str
    mac: str
    mtu: int
    fixed_ipv4: str
    floating_ipv4: str | None = None


Document = tuple[str, bytes]  # (content type, body)


def _user_data(server: ServerView) -> bytes | None:
    if not server.user_data:
        return None
    try:
        return base64.b64decode(server.user_data)
    except binascii.Error:
        return None


def _keys(server: ServerView) -> list[dict[str, str]]:
    if not (server.key_name and server.key_data):
        return []
    kind = "x509" if "BEGIN CERTIFICATE" in server.key_data else "ssh"
    return [{"name": server.key_name, "type": kind, "data": server.key_data}]


def meta_data(server: ServerView) -> dict[str, Any]:
    keys = _keys(server)
    return {
        "uuid": server.uuid,
        "name": server.name,
        "hostname": server.hostname,
        "launch_index": 0,
        "availability_zone": server.availability_zone,
        "project_id": server.project_id,
        "meta": server.metadata,
        "public_keys": {k["name"]: k["data"] for k in keys},
        "keys": keys,
        "devices": [],
        "random_seed": base64.b64encode(os.urandom(512)).decode(),
    }


def network_data(port: PortAddresses) -> dict[str, Any]:
    link = f"tap{port.port_id[:11]}"
    return {
        "links": [
            {
                "id": link,
                "vif_id": port.port_id,
                "type": "bridge",
                "mtu": port.mtu,
                "ethernet_mac_address": port.mac,
            }
        ],
        "networks": [
            {"id": "network0", "type": "ipv4_dhcp", "link": link, "network_id": port.network_id}
        ],
        "services": [],
    }


def _openstack(server: ServerView, port: PortAddresses, rest: list[str]) -> Document | None:
    if not rest:
        return TEXT, "\n".join(OPENSTACK_VERSIONS).encode()
    if rest[0] not in OPENSTACK_VERSIONS:
        return None
    files: dict[str, Any] = {
        "meta_data.json": meta_data(server),
        "network_data.json": network_data(port),
        "vendor_data.json": {},
        "vendor_data2.json": {},
    }
    user_data = _user_data(server)
    if len(rest) == 1:
        names = [*files, *(["user_data"] if user_data is not None else [])]
        return TEXT, "\n".join(sorted(names)).encode()
    name = "/".join(rest[1:])
    if name == "user_data":
        return None if user_data is None else ("application/octet-stream", user_data)
    if name in files:
        return JSON, json.dumps(files[name]).encode()
    return None


def ec2_meta_data(server: ServerView, port: PortAddresses) -> dict[str, Any]:
    """The EC2 tree: a dict is a directory, anything else a file."""
    tree: dict[str, Any] = {
        "ami-id": server.image_ref,
        "ami-launch-index": "0",
        "hostname": server.hostname,
        "instance-id": server.uuid,
        "instance-type": server.flavor.get("name", ""),
        "local-hostname": server.hostname,
        "local-ipv4": port.fixed_ipv4,
        "placement": {"availability-zone": server.availability_zone or ""},
        "public-hostname": server.hostname,
        "public-ipv4": port.floating_ipv4 or "",
        "reservation-id": "",
        "security-groups": "\n".join(server.security_groups or []),
    }
    keys = _keys(server)
    if keys:
        tree["public-keys"] = {f"0={keys[0]['name']}": {"openssh-key": keys[0]["data"]}}
    return tree


def _listing(tree: dict[str, Any]) -> bytes:
    return "\n".join(
        f"{k}/" if isinstance(v, dict) else k for k, v in sorted(tree.items())
    ).encode()


def _ec2(server: ServerView, port: PortAddresses, rest: list[str]) -> Document | None:
    if not rest:
        names = ["meta-data/", *(["user-data"] if _user_data(server) is not None else [])]
        return TEXT, "\n".join(names).encode()
    if rest[0] == "user-data" and len(rest) == 1:
        user_data = _user_data(server)
        return None if user_data is None else ("application/octet-stream", user_data)
    if rest[0] != "meta-data":
        return None
    node: Any = ec2_meta_data(server, port)
    for part in rest[1:]:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, dict):
        return TEXT, _listing(node)
    return TEXT, str(node).encode()


def document(
    ctx: RequestContext, server_id: str, path: str, port: PortAddresses
) -> Document | None:
    """The document at `path` for this server (None: there is none, a 404)."""
    try:
        server = compute_service.get_server(ctx, server_id)
    except errors.NotFound:
        return None
    parts = [p for p in path.split("?", 1)[0].split("/") if p]
    if not parts:
        return TEXT, "\n".join([*EC2_VERSIONS, "openstack"]).encode()
    if parts[0] == "openstack":
        return _openstack(server, port, parts[1:])
    if parts[0] in EC2_VERSIONS:
        return _ec2(server, port, parts[1:])
    return None
