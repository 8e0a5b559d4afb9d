"""Compute request checks and response views, field by field as Nova gates them per
microversion (Tempest validates every response against a strict per-version schema,
so a field shown one version too early fails as surely as a missing one).

Facts behind the gates are in docs/compute-notes.md.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from pocketstack.compute import flavors, keypairs, networking
from pocketstack.compute import service as compute_service
from pocketstack.compute import volumes as compute_volumes
from pocketstack.core import errors
from pocketstack.core.microversion import Version

V = Version
_NAME = re.compile(r"^\S(.*\S)?$", re.DOTALL)
_METADATA_KEY = re.compile(r"^[a-zA-Z0-9-_:. ]{1,255}$")
_KEYPAIR_NAME = re.compile(r"^[a-zA-Z0-9 _-]+$")
_KEYPAIR_NAME_292 = re.compile(r"^[a-zA-Z0-9 _.@-]+$")
_UUID = re.compile(
    r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$"
)
MAX_USER_DATA = 65535


def isotime(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def usage_time(moment: datetime | None) -> str | None:
    """OS-SRV-USG times: naive, with microseconds."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") if moment else None


def invalid(field: str, value: Any, reason: str) -> errors.Invalid:
    return errors.Invalid(f"Invalid input for field/attribute {field}. Value: {value}. {reason}")


def non_negative(raw: str | None, name: str) -> int | None:
    """A query parameter that must be 0 or more (offset, ...); None when not given."""
    if raw is None:
        return None
    if not raw.isdigit():
        raise invalid(name, raw, f"'{raw}' is not a non-negative integer")
    return int(raw)


def _unexpected(keys: set[str]) -> errors.Invalid:
    listed = ", ".join(repr(k) for k in sorted(keys))
    return errors.Invalid(f"Additional properties are not allowed ({listed} was unexpected)")


def _body_object(body: Any, key: str) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise invalid(key, body, f"'{key}' is a required property")
    return body[key]


def _name(value: Any, field: str = "name") -> str:
    if not isinstance(value, str):
        raise invalid(field, value, f"{value!r} is not of type 'string'")
    if not 1 <= len(value) <= 255:
        raise invalid(field, value, f"{value!r} is too {'short' if not value else 'long'}")
    if not _NAME.match(value):
        raise errors.Invalid(
            f"An invalid '{field}' value was provided. The name must be: printable characters. "
            "Can not start or end with whitespace."
        )
    return value


def _metadata(value: Any, field: str = "metadata") -> dict[str, str]:
    if not isinstance(value, dict):
        raise invalid(field, value, f"{value!r} is not of type 'object'")
    for key, item in value.items():
        if not _METADATA_KEY.match(key):
            raise _unexpected({key})
        if not isinstance(item, str) or len(item) > 255:
            raise invalid(key, item, f"{item!r} is not of type 'string'")
    return dict(value)  # how many is the project's metadata_items quota (service.py)


def _count(value: Any, field: str) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise invalid(field, value, f"{value!r} is not valid under any of the given schemas")
    return value


def _ref(value: Any, field: str) -> str:
    """A flavorRef/imageRef: an id, or a URL ending in one."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise invalid(field, value, f"{value!r} is not of type 'string'")
    return value.rstrip("/").rsplit("/", 1)[-1]


def _boolish(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "on", "yes", "y", "t"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "0", "off", "no", "n", "f", ""):
        return False
    raise errors.Invalid(f"Invalid boolean value: {value}")


_CREATE_KEYS = {
    "name", "flavorRef", "imageRef", "adminPass", "metadata", "networks", "OS-DCF:diskConfig",
    "accessIPv4", "accessIPv6", "personality", "availability_zone", "block_device_mapping",
    "block_device_mapping_v2", "config_drive", "key_name", "min_count", "max_count",
    "return_reservation_id", "security_groups", "user_data", "description", "tags",
    "trusted_image_certificates", "host", "hypervisor_hostname", "hostname",
}  # fmt: skip


def boot_request(body: Any, version: Version) -> tuple[compute_service.BootRequest, bool]:
    """The boot a POST /servers body asks for, and whether it wants a reservation id."""
    if not isinstance(body, dict):
        raise errors.Invalid("The request body is not a JSON object.")
    extra = set(body) - {"server", "os:scheduler_hints", "OS-SCH-HNT:scheduler_hints"}
    if extra:
        raise _unexpected(extra)
    server = _body_object(body, "server")
    unknown = set(server) - _CREATE_KEYS
    if "description" in server and version < V(2, 19):
        unknown.add("description")
    if "tags" in server and version < V(2, 52):
        unknown.add("tags")
    if "personality" in server and version >= V(2, 57):
        unknown.add("personality")
    if "hostname" in server and version < V(2, 90):
        unknown.add("hostname")
    if unknown:
        raise _unexpected(unknown)
    if "name" not in server:
        raise invalid("server", server, "'name' is a required property")
    if "flavorRef" not in server:
        raise invalid("server", server, "'flavorRef' is a required property")
    if version >= V(2, 37) and "networks" not in server:
        raise invalid("server", server, "'networks' is a required property")
    networks = _networks(server.get("networks"), version)
    mappings = server.get("block_device_mapping_v2") or []
    volumes = _boot_volumes(mappings, version)
    image_ref = server.get("imageRef")
    if not image_ref and compute_volumes.boot_volume(volumes) is None:
        image_ref = _image_of_boot_mapping(mappings)
        if not image_ref:
            raise errors.Invalid("Missing imageRef attribute")
    min_count = _count(server.get("min_count", 1), "min_count")
    max_count = _count(server.get("max_count", min_count), "max_count")
    if min_count > max_count:
        raise errors.Invalid("min_count must be <= max_count")
    user_data = server.get("user_data")
    if user_data is not None:
        _user_data(user_data)
    description = _description(server.get("description"))
    tags = server.get("tags", [])
    if not isinstance(tags, list) or len(tags) > compute_service.MAX_TAGS:
        raise invalid("tags", tags, "is not a list of at most 50 tags")
    for tag in tags:
        _tag(tag)
    key_name = server.get("key_name")
    if key_name is not None and not isinstance(key_name, str):
        raise invalid("key_name", key_name, f"{key_name!r} is not of type 'string'")
    az = server.get("availability_zone")
    if az is not None and not isinstance(az, str):
        raise invalid("availability_zone", az, f"{az!r} is not of type 'string'")
    request = compute_service.BootRequest(
        name=_name(server["name"]),
        flavor_ref=_ref(server["flavorRef"], "flavorRef"),
        image_ref=_ref(image_ref, "imageRef") if image_ref else "",
        volumes=volumes,
        min_count=min_count,
        max_count=max_count,
        key_name=key_name,
        user_data=user_data,
        metadata=_metadata(server.get("metadata", {})),
        availability_zone=az,
        description=description,
        access_ip_v4=_address(server.get("accessIPv4"), 4, "accessIPv4"),
        access_ip_v6=_address(server.get("accessIPv6"), 6, "accessIPv6"),
        tags=tags,
        config_drive=_boolish(server.get("config_drive", False)),
        hostname=server.get("hostname"),
        group=_group_hint(body),
        networks=networks,
        security_groups=_security_groups(server.get("security_groups")),
    )
    return request, _boolish(server.get("return_reservation_id", False))


def _group_hint(body: dict[str, Any]) -> str | None:
    """The server group a boot's scheduler hints name (a uuid, or a list of one)."""
    hints = body.get("os:scheduler_hints", body.get("OS-SCH-HNT:scheduler_hints"))
    if hints is None:
        return None
    if not isinstance(hints, dict):
        raise invalid("os:scheduler_hints", hints, f"{hints!r} is not of type 'object'")
    group = hints.get("group")
    if isinstance(group, list) and len(group) == 1:
        group = group[0]
    if group is None:
        return None
    if not isinstance(group, str) or not _UUID.match(group):
        raise invalid("group", group, f"{group!r} is not a 'uuid'")
    return group


def _image_of_boot_mapping(mappings: Any) -> str | None:
    """The image of the boot entry the CLI sends (`source_type` image, `boot_index` 0,
    onto the host's disk)."""
    for mapping in mappings if isinstance(mappings, list) else []:
        if (
            isinstance(mapping, dict)
            and mapping.get("source_type") == "image"
            and mapping.get("destination_type", "local") == "local"
            and mapping.get("boot_index") in (0, "0")
        ):
            return mapping.get("uuid")
    return None


_SOURCE_TYPES = ("image", "volume", "snapshot", "blank")


def _boot_index(raw: Any) -> int | None:
    if raw is None or raw == "none":
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise invalid("boot_index", raw, f"{raw!r} is not of type 'integer', 'string'") from None


def _boot_volumes(mappings: Any, version: Version) -> tuple[compute_volumes.BootVolume, ...]:
    """The block_device_mapping_v2 entries whose destination is a volume."""
    if not isinstance(mappings, list):
        raise invalid("block_device_mapping_v2", mappings, f"{mappings!r} is not of type 'array'")
    found = []
    for mapping in mappings:
        if not isinstance(mapping, dict):
            raise invalid("block_device_mapping_v2", mapping, f"{mapping!r} is not an 'object'")
        source = mapping.get("source_type")
        if source not in _SOURCE_TYPES:
            raise invalid("source_type", source, f"{source!r} is not one of {list(_SOURCE_TYPES)}")
        destination = mapping.get("destination_type", "local")
        if destination not in ("local", "volume"):
            raise invalid("destination_type", destination, "is not one of ['local', 'volume']")
        if destination == "local":
            continue
        uuid = mapping.get("uuid")
        if source != "blank" and (not isinstance(uuid, str) or not uuid):
            raise errors.Invalid(f"Block Device Mapping is Invalid: {source} has no uuid.")
        size = mapping.get("volume_size")
        if size is not None and (isinstance(size, bool) or not str(size).isdigit()):
            raise invalid("volume_size", size, f"{size!r} is not a non-negative integer")
        delete = _boolish(mapping.get("delete_on_termination", False))
        volume_type = mapping.get("volume_type") if version >= V(2, 67) else None
        found.append(compute_volumes.BootVolume(
            source_type=source, uuid=uuid, boot_index=_boot_index(mapping.get("boot_index")),
            volume_size=int(size) if size is not None else None, delete_on_termination=delete,
            device_name=mapping.get("device_name") or None, volume_type=volume_type,
            tag=mapping.get("tag"),
        ))  # fmt: skip
    if sum(1 for v in found if v.boot_index == 0) > 1:
        raise errors.Invalid(
            "Block Device Mapping is Invalid: Boot sequence for the instance and image/block "
            "device mapping combination is not valid."
        )
    return tuple(found)


def _user_data(value: Any) -> None:
    if not isinstance(value, str) or len(value) > MAX_USER_DATA:
        raise invalid("user_data", value, "is not valid base64 of at most 65535 characters")
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise errors.Invalid("User data needs to be valid base 64.") from None


def _networks(networks: Any, version: Version) -> str | list[networking.NetworkRequest] | None:
    """`auto`/`none` (2.37+), or a list of networks and ports, each checked for shape."""
    if networks is None or (networks in ("auto", "none") and version >= V(2, 37)):
        return cast(str | None, networks)
    if not isinstance(networks, list):
        raise invalid("networks", networks, f"{networks!r} is not of type 'array'")
    requests = []
    for item in networks:
        if not isinstance(item, dict):
            raise invalid("networks", item, f"{item!r} is not of type 'object'")
        if "uuid" not in item and "port" not in item:
            raise errors.Invalid("Bad network format: missing 'uuid'")
        network, port = item.get("uuid"), item.get("port")
        if network is not None and not _UUID.match(str(network)):
            raise errors.Invalid(
                f"Bad networks format: network uuid is not in proper format ({network})"
            )
        fixed_ip = item.get("fixed_ip")
        if fixed_ip is not None:
            try:
                fixed_ip = str(ipaddress.ip_address(str(fixed_ip)))
            except ValueError:
                raise errors.Invalid(f"Invalid fixed IP address ({fixed_ip})") from None
        requests.append(
            networking.NetworkRequest(
                network_id=None if port else str(network),
                port_id=str(port) if port else None,
                fixed_ip=fixed_ip,
            )
        )
    return requests


def _security_groups(groups: Any) -> list[str] | None:
    """`[{"name": ...}, ...]` as a boot gives them: the names."""
    if groups is None:
        return None
    if not isinstance(groups, list) or not all(
        isinstance(g, dict) and isinstance(g.get("name"), str) and g["name"] for g in groups
    ):
        raise invalid("security_groups", groups, "is not a list of {'name': <group>}")
    return [g["name"] for g in groups]


def _tag(tag: Any) -> str:
    if not isinstance(tag, str) or not 1 <= len(tag) <= 60 or "," in tag or "/" in tag:
        raise invalid("tags", tag, "is not a tag of 1 to 60 characters without ',' or '/'")
    return tag


def tags_body(body: Any) -> list[str]:
    if not isinstance(body, dict) or not isinstance(body.get("tags"), list):
        raise invalid("tags", body, "'tags' is a required property")
    if len(body["tags"]) > compute_service.MAX_TAGS:
        raise invalid("tags", body["tags"], "is too long")
    return [_tag(t) for t in body["tags"]]


def tag(value: str) -> str:
    return _tag(value)


def metadata_body(body: Any, key: str = "metadata") -> dict[str, str]:
    if not isinstance(body, dict) or key not in body:
        raise invalid(key, body, f"'{key}' is a required property")
    return _metadata(body[key], key)


def name(value: Any) -> str:
    """A name as Nova checks it: printable, 1 to 255 characters, no blanks at the ends."""
    return _name(value)


def metadata_field(body: Mapping[str, Any]) -> dict[str, str]:
    """An optional `metadata` object of a body (an action's)."""
    return _metadata(body["metadata"]) if "metadata" in body else {}


def meta_item(body: Any, key: str) -> dict[str, str]:
    item = metadata_body(body, "meta")
    if len(item) != 1:
        raise errors.Invalid("Request body contains too many items")
    if key not in item:
        raise errors.Invalid("Request body and URI mismatch")
    return item


def server_update(body: Any, version: Version) -> compute_service.ServerUpdate:
    server = _body_object(body, "server")
    allowed = {"name", "accessIPv4", "accessIPv6", "OS-DCF:diskConfig"}
    if version >= V(2, 19):
        allowed.add("description")
    if version >= V(2, 90):
        allowed.add("hostname")
    unknown = set(server) - allowed
    if unknown:
        raise _unexpected(unknown)
    return compute_service.ServerUpdate(
        name=_name(server["name"]) if "name" in server else None,
        description=_description(server.get("description")),
        set_description="description" in server,
        access_ip_v4=_address(server.get("accessIPv4"), 4, "accessIPv4"),
        access_ip_v6=_address(server.get("accessIPv6"), 6, "accessIPv6"),
        hostname=server.get("hostname"),
    )


def _description(value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > 255):
        raise invalid("description", value, "is not a string of at most 255 characters")
    return value


def _address(value: Any, version: int, field: str) -> str | None:
    """An access IP in its canonical form (Nova stores `::babe:dc0c:1602`, not the long
    spelling it was given)."""
    if value is None:
        return None
    try:
        address = ipaddress.ip_address(value) if isinstance(value, str) else None
    except ValueError:
        address = None
    if address is None or address.version != version:
        raise invalid(field, value, f"{value!r} is not a 'ipv{version}'")
    return str(address)


def rebuild_request(body: Any, version: Version) -> compute_service.RebuildRequest:
    if not isinstance(body, dict):
        raise invalid("rebuild", body, f"{body!r} is not of type 'object'")
    allowed = {"imageRef", "name", "adminPass", "metadata", "preserve_ephemeral",
               "OS-DCF:diskConfig", "accessIPv4", "accessIPv6"}  # fmt: skip
    if version < V(2, 57):
        allowed.add("personality")
    if version >= V(2, 19):
        allowed.add("description")
    if version >= V(2, 54):
        allowed.add("key_name")
    if version >= V(2, 57):
        allowed.add("user_data")
    unknown = set(body) - allowed
    if unknown:
        raise _unexpected(unknown)
    if "imageRef" not in body:
        raise invalid("rebuild", body, "'imageRef' is a required property")
    key_name = body.get("key_name")
    if key_name is not None and (not isinstance(key_name, str) or not 1 <= len(key_name) <= 255):
        raise invalid("key_name", key_name, "is not a key pair name")
    user_data = body.get("user_data")
    if user_data is not None:
        _user_data(user_data)
    return compute_service.RebuildRequest(
        image_ref=_ref(body["imageRef"], "imageRef"),
        name=_name(body["name"]) if "name" in body else None,
        metadata=_metadata(body["metadata"]) if "metadata" in body else None,
        description=_description(body.get("description")),
        set_description="description" in body,
        key_name=key_name,
        set_key_name="key_name" in body,
        user_data=user_data,
        set_user_data="user_data" in body,
    )


# Views --------------------------------------------------------------------------------------


def links(base: str, kind: str, item_id: str) -> list[dict[str, str]]:
    """A self link under the version and a bookmark link without it, as Nova writes them."""
    root = base.rsplit("/v2.1", 1)[0]
    return [
        {"rel": "self", "href": f"{base}/{kind}/{item_id}"},
        {"rel": "bookmark", "href": f"{root}/{kind}/{item_id}"},
    ]


def _bookmark(base: str, kind: str, item_id: str) -> list[dict[str, str]]:
    return [links(base, kind, item_id)[1]]


def host_id(project_id: str, host: str | None) -> str:
    if not host:
        return ""
    return hashlib.sha224((project_id + host).encode()).hexdigest()


_PROGRESS_STATUSES = {"ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING"}


def server_brief(server: compute_service.ServerView, base: str) -> dict[str, Any]:
    return {"id": server.uuid, "name": server.name, "links": links(base, "servers", server.uuid)}


def plain_addresses(addresses: dict[str, list[Any]]) -> dict[str, list[dict[str, Any]]]:
    """Addresses as the ips API, PUT and rebuild answer them: version and address only."""
    return {
        network: [{"version": a["version"], "addr": a["addr"]} for a in entries]
        for network, entries in addresses.items()
    }


def server_view(
    server: compute_service.ServerView,
    version: Version,
    base: str,
    *,
    is_admin: bool,
    kind: str = "show",
    server_groups: Sequence[str] = (),
    host_status: str = "",
) -> dict[str, Any]:
    """One server; `kind` is show, detail (no server_groups) or update (PUT and rebuild below
    2.75: the reduced view); `server_groups` the uuid of the group it is in, if any;
    `host_status` its host's UP / DOWN / MAINTENANCE for the admins who may see it."""
    reduced = kind == "update" and version < V(2, 75)
    status = "DELETED" if server.deleted else server.status
    view: dict[str, Any] = {
        "id": server.uuid,
        "name": server.name,
        "status": status,
        "tenant_id": server.project_id,
        "user_id": server.user_id,
        "metadata": server.metadata,
        "hostId": host_id(server.project_id, server.host),
        "image": {"id": server.image_ref, "links": _bookmark(base, "images", server.image_ref)}
        if server.image_ref
        else "",
        "flavor": _embedded_flavor(server.flavor, base, version),
        "created": isotime(server.created_at),
        "updated": isotime(server.updated_at),
        "addresses": server.addresses,
        "accessIPv4": server.access_ip_v4 or "",
        "accessIPv6": server.access_ip_v6 or "",
        "links": links(base, "servers", server.uuid),
        "OS-DCF:diskConfig": "MANUAL",
    }
    if reduced:
        # PUT and rebuild below 2.75 show plain addresses and no security groups.
        view["addresses"] = plain_addresses(server.addresses)
    elif server.security_groups is not None:
        view["security_groups"] = [{"name": name} for name in server.security_groups]
    if status in _PROGRESS_STATUSES:
        view["progress"] = server.progress if status != "BUILD" else 0
    if server.fault is not None and status in ("ERROR", "DELETED"):
        fault: dict[str, Any] = {
            "code": server.fault.code,
            "created": isotime(server.fault.created_at),
            "message": server.fault.message,
        }
        if server.fault.details and (is_admin or server.fault.code != 500):
            fault["details"] = server.fault.details
        view["fault"] = fault
    if not reduced:
        view.update(
            {
                "key_name": server.key_name,
                "OS-SRV-USG:launched_at": usage_time(server.launched_at),
                "OS-SRV-USG:terminated_at": usage_time(server.terminated_at),
                "OS-EXT-AZ:availability_zone": server.availability_zone or "",
                "OS-EXT-STS:task_state": server.task_state,
                "OS-EXT-STS:vm_state": server.vm_state,
                "OS-EXT-STS:power_state": server.power_state,
                "os-extended-volumes:volumes_attached": [
                    {"id": entry["volume_id"]}
                    | ({"delete_on_termination": entry["delete_on_termination"]}
                       if version >= V(2, 3) else {})
                    for entry in compute_volumes.entries(server.devices)
                ],
                "config_drive": server.config_drive,
            }
        )
        if is_admin:
            view.update(
                {
                    "OS-EXT-SRV-ATTR:host": server.host,
                    "OS-EXT-SRV-ATTR:instance_name": f"instance-{server.uuid[:8]}",
                    "OS-EXT-SRV-ATTR:hypervisor_hostname": server.node,
                }
            )
            if version >= V(2, 3):
                view.update(
                    {
                        "OS-EXT-SRV-ATTR:reservation_id": f"r-{server.uuid[-8:]}",
                        "OS-EXT-SRV-ATTR:launch_index": 0,
                        "OS-EXT-SRV-ATTR:kernel_id": "",
                        "OS-EXT-SRV-ATTR:ramdisk_id": "",
                        "OS-EXT-SRV-ATTR:hostname": server.hostname,
                        "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",
                        "OS-EXT-SRV-ATTR:user_data": server.user_data,
                    }
                )
            if version >= V(2, 16):
                view["host_status"] = host_status
        elif version >= V(2, 90):
            view["OS-EXT-SRV-ATTR:hostname"] = server.hostname
    if version >= V(2, 9):
        view["locked"] = server.locked
    if version >= V(2, 19):
        view["description"] = server.description
    if version >= V(2, 26):
        view["tags"] = server.tags
    if version >= V(2, 63):
        view["trusted_image_certificates"] = None
    if version >= V(2, 71) and kind != "detail":
        view["server_groups"] = list(server_groups)
    if version >= V(2, 73):
        view["locked_reason"] = server.locked_reason
    if version >= V(2, 96):
        view["pinned_availability_zone"] = server.pinned_availability_zone
    return view


def _embedded_flavor(copy: Mapping[str, Any], base: str, version: Version) -> dict[str, Any]:
    if version < V(2, 47):
        return {"id": copy["id"], "links": _bookmark(base, "flavors", copy["id"])}
    return {
        "vcpus": copy["vcpus"],
        "ram": copy["ram"],
        "disk": copy["disk"],
        "ephemeral": copy["ephemeral"],
        "swap": copy["swap"],
        "original_name": copy["name"],
        "extra_specs": dict(copy.get("extra_specs", {})),
    }


# Flavors ------------------------------------------------------------------------------------


def flavor_view(flavor: flavors.FlavorView, version: Version, base: str, *, brief: bool = False,
                with_extra_specs: bool = True) -> dict[str, Any]:  # fmt: skip
    view: dict[str, Any] = {
        "id": flavor.flavorid,
        "name": flavor.name,
        "links": links(base, "flavors", flavor.flavorid),
    }
    if version >= V(2, 55):
        view["description"] = flavor.description
    if brief:
        return view
    view.update(
        {
            "ram": flavor.memory_mb,
            "disk": flavor.root_gb,
            "vcpus": flavor.vcpus,
            "swap": flavor.swap if flavor.swap or version >= V(2, 75) else "",
            "OS-FLV-EXT-DATA:ephemeral": flavor.ephemeral_gb,
            "OS-FLV-DISABLED:disabled": flavor.disabled,
            "os-flavor-access:is_public": flavor.is_public,
            "rxtx_factor": flavor.rxtx_factor,
        }
    )
    if version >= V(2, 61) and with_extra_specs:
        view["extra_specs"] = flavor.extra_specs
    return view


def new_flavor(body: Any, version: Version) -> flavors.NewFlavor:
    flavor = _body_object(body, "flavor")
    allowed = {"name", "ram", "vcpus", "disk", "id", "swap", "OS-FLV-EXT-DATA:ephemeral",
               "rxtx_factor", "os-flavor-access:is_public"}  # fmt: skip
    if version >= V(2, 55):
        allowed.add("description")
    unknown = set(flavor) - allowed
    if unknown:
        raise _unexpected(unknown)
    for required in ("name", "ram", "vcpus", "disk"):
        if required not in flavor:
            raise invalid("flavor", flavor, f"'{required}' is a required property")
    name = _name(flavor["name"])
    flavorid = flavor.get("id")
    if isinstance(flavorid, int) and not isinstance(flavorid, bool):
        flavorid = str(flavorid)  # Nova keeps a numeric id as its string
    if flavorid is not None and (
        not isinstance(flavorid, str)
        or not re.match(r"^(?! )[a-zA-Z0-9. _-]+(?<! )$", flavorid)
        or len(flavorid) > 255
    ):
        raise invalid("id", flavorid, "is not a valid flavor id")

    def integer(key: str, minimum: int) -> int:
        value = flavor.get(key, 0)
        if isinstance(value, str) and value.lstrip("-").isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise invalid(key, value, f"{value!r} is not of type 'integer', 'string'")
        if value < minimum:
            raise invalid(key, value, f"{value} is less than the minimum of {minimum}")
        if value > 2147483647:
            raise invalid(key, value, f"{value} is greater than the maximum of 2147483647")
        return value

    rxtx = flavor.get("rxtx_factor", 1.0)
    if not isinstance(rxtx, (int, float)) or isinstance(rxtx, bool) or rxtx <= 0:
        raise invalid("rxtx_factor", rxtx, f"{rxtx!r} is not a positive number")
    description = _flavor_description(flavor.get("description"))
    return flavors.NewFlavor(
        name=name,
        vcpus=integer("vcpus", 1),
        memory_mb=integer("ram", 1),
        root_gb=integer("disk", 0),
        flavorid=flavorid,
        ephemeral_gb=integer("OS-FLV-EXT-DATA:ephemeral", 0),
        swap=integer("swap", 0),
        rxtx_factor=float(rxtx),
        is_public=_boolish(flavor.get("os-flavor-access:is_public", True)),
        description=description,
    )


def _flavor_description(value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > 65535):
        raise invalid("description", value, "is not a string of at most 65535 characters")
    return value


def flavor_description(body: Any) -> str | None:
    """The body of PUT /flavors/{id} (2.55+): only the description can change."""
    flavor = _body_object(body, "flavor")
    if set(flavor) != {"description"}:
        raise errors.Invalid("Only the flavor's description can be changed.")
    return _flavor_description(flavor["description"])


def extra_specs_body(body: Any) -> dict[str, str]:
    specs = metadata_body(body, "extra_specs") if isinstance(body, dict) else None
    if specs is None:
        raise invalid("extra_specs", body, "'extra_specs' is a required property")
    return specs


# Keypairs ------------------------------------------------------------------------------------


def new_keypair(body: Any, version: Version) -> tuple[str, str, str | None, str | None]:
    """(name, type, public key or None to generate, user_id for admins)."""
    keypair = _body_object(body, "keypair")
    allowed = {"name", "public_key"}
    if version >= V(2, 2):
        allowed.add("type")
    if version >= V(2, 10):
        allowed.add("user_id")
    unknown = set(keypair) - allowed
    if unknown:
        raise _unexpected(unknown)
    name = keypair.get("name")
    pattern = _KEYPAIR_NAME_292 if version >= V(2, 92) else _KEYPAIR_NAME
    if not isinstance(name, str) or not 1 <= len(name) <= 255 or not pattern.match(name):
        raise invalid(
            "name", name, "Keypair name contains unsafe characters or is not 1 to 255 characters"
        )
    public_key = keypair.get("public_key")
    if version >= V(2, 92) and public_key is None:
        raise invalid("keypair", keypair, "'public_key' is a required property")
    key_type = keypair.get("type", keypairs.SSH)
    if key_type not in (keypairs.SSH, keypairs.X509):
        raise invalid("type", key_type, f"{key_type!r} is not one of ['ssh', 'x509']")
    return name.strip(), key_type, public_key, keypair.get("user_id")


def volume_attach_request(body: Any, version: Version) -> compute_volumes.AttachRequest:
    """The body of POST /servers/{id}/os-volume_attachments, checked as Nova checks it."""
    attachment = _body_object(body, "volumeAttachment")
    known = {"volumeId", "device"}
    if version >= V(2, 49):
        known.add("tag")
    if version >= V(2, 79):
        known.add("delete_on_termination")
    unknown = set(attachment) - known
    if unknown:
        raise _unexpected(unknown)
    volume_id = attachment.get("volumeId")
    if not isinstance(volume_id, str) or not _UUID.match(volume_id):
        raise invalid("volumeId", volume_id, f"{volume_id!r} is not a 'uuid'")
    device = attachment.get("device")
    if device is not None and not isinstance(device, str):
        raise invalid("device", device, f"{device!r} is not of type 'string', 'null'")
    tag = attachment.get("tag")
    if tag is not None:
        _tag(tag)
    delete = attachment.get("delete_on_termination", False)
    if not isinstance(delete, bool):
        raise invalid("delete_on_termination", delete, f"{delete!r} is not of type 'boolean'")
    return compute_volumes.AttachRequest(
        volume_id=volume_id, device=device or None, tag=tag, delete_on_termination=delete,
        multiattach_allowed=version >= V(2, 60),
    )  # fmt: skip


def volume_attachment_view(
    entry: dict[str, Any], server_id: str, version: Version
) -> dict[str, Any]:
    """One of a server's volumes as os-volume_attachments shows it."""
    view: dict[str, Any] = {} if version >= V(2, 89) else {"id": entry["volume_id"]}
    view.update(
        serverId=server_id, volumeId=entry["volume_id"], device=entry["device"]
    )
    if version >= V(2, 70):
        view["tag"] = entry["tag"]
    if version >= V(2, 79):
        view["delete_on_termination"] = entry["delete_on_termination"]
    if version >= V(2, 89):
        view["attachment_id"] = entry["attachment_id"]
        view["bdm_uuid"] = entry["id"]
    return view


def keypair_view(
    keypair: keypairs.KeyPairView, version: Version, *, listing: bool = False
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "name": keypair.name,
        "public_key": keypair.public_key,
        "fingerprint": keypair.fingerprint,
    }
    if version >= V(2, 2):
        view["type"] = keypair.type
    if keypair.private_key is not None:
        view["private_key"] = keypair.private_key
    if listing:
        return view
    view["user_id"] = keypair.user_id
    return view


def keypair_detail(keypair: keypairs.KeyPairView, version: Version) -> dict[str, Any]:
    view = keypair_view(keypair, version)
    view.update(
        {
            "id": keypair.id,
            "created_at": keypair.created_at.strftime("%Y-%m-%dT%H:%M:%S.%f"),
            "deleted": False,
            "deleted_at": None,
            "updated_at": None,
        }
    )
    return view
