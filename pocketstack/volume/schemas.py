"""Block storage request checks and response views, as Cinder v3 shapes them.

Views gate fields on the negotiated microversion (`group_id` from 3.13,
`provider_id` 3.21, `service_uuid`/`shared_targets` 3.48, `cluster_name`
3.61, `volume_type_id` 3.63, `consumes_quota` 3.65); admin-only fields are
shown to admins only, as Cinder's policies do by default.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pocketstack.core import errors
from pocketstack.core.microversion import Version
from pocketstack.volume import service as volume_service

V = Version
VERSIONS_UPDATED = "2023-08-31T00:00:00Z"


def when(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="microseconds") if moment else None


def _link(base: str, kind: str, item_id: str, project_id: str) -> list[dict[str, str]]:
    return [
        {"rel": "self", "href": f"{base}/{project_id}/{kind}/{item_id}"},
        {"rel": "bookmark", "href": f"{base.removesuffix('/v3')}/{project_id}/{kind}/{item_id}"},
    ]


def attachment_entry(attachment: Any) -> dict[str, Any]:
    return {
        "id": attachment.volume_id,
        "attachment_id": attachment.id,
        "volume_id": attachment.volume_id,
        "server_id": attachment.instance_uuid,
        "host_name": attachment.attached_host,
        "device": attachment.mountpoint,
        "attached_at": when(attachment.attach_time),
    }


def volume_summary(view: volume_service.VolumeView, base: str) -> dict[str, Any]:
    row = view.row
    return {"id": row.id, "name": row.name, "links": _link(base, "volumes", row.id, row.project_id)}


def volume_view(
    view: volume_service.VolumeView,
    version: Version,
    admin: bool,
    base: str,
    extended: bool = True,
) -> dict[str, Any]:
    """A volume. The os-vol-* keys and volume_image_metadata are Cinder's extensions,
    which decorate show and list alone (`extended`): create and update answers lack them."""
    row = view.row
    body: dict[str, Any] = {
        **volume_summary(view, base),
        "status": row.status,
        "size": row.size,
        "availability_zone": row.availability_zone,
        "created_at": when(row.created_at),
        "updated_at": when(row.updated_at),
        "attachments": [attachment_entry(a) for a in view.attachments],
        "description": row.description,
        "metadata": {**row.metadata_, **(row.admin_metadata or {})},
        "bootable": "true" if row.bootable else "false",
        "encrypted": view.encrypted,
        "multiattach": row.multiattach,
        "replication_status": row.replication_status,
        "snapshot_id": row.snapshot_id,
        "source_volid": row.source_volid,
        "volume_type": view.type_name,
        "user_id": row.user_id,
        "consistencygroup_id": None,
    }
    if extended:
        body["os-vol-tenant-attr:tenant_id"] = row.project_id
    if extended and row.image_metadata:
        body["volume_image_metadata"] = dict(row.image_metadata)
    if extended and admin:
        body["os-vol-host-attr:host"] = row.host
        body["os-vol-mig-status-attr:migstat"] = row.migration_status
        body["os-vol-mig-status-attr:name_id"] = None
    if admin:
        body["migration_status"] = row.migration_status
    if version >= V(3, 13):
        body["group_id"] = row.group_id
    if version >= V(3, 21) and admin:
        body["provider_id"] = None
    if version >= V(3, 48):
        body["service_uuid"] = volume_service.SERVICE_UUID
        body["shared_targets"] = False
    if version >= V(3, 61) and admin:
        body["cluster_name"] = None
    if version >= V(3, 63):
        body["volume_type_id"] = row.volume_type_id
    if version >= V(3, 65):
        body["consumes_quota"] = True
    return body


def type_view(row: Any, admin: bool, answer_to: str = "show") -> dict[str, Any]:
    """A volume type. The type-access and QoS keys come from Cinder's extensions, which
    decorate show and list alone: a create answer has no qos_specs_id, an update answer
    neither (Tempest's schemas forbid both)."""
    body: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "is_public": row.is_public,
    }
    if answer_to != "update":
        body["os-volume-type-access:is_public"] = row.is_public
    if answer_to == "show":
        body["qos_specs_id"] = row.qos_specs_id
    if admin:
        body["extra_specs"] = dict(row.extra_specs)
    return body


def snapshot_view(row: Any, version: Version, base: str, extended: bool = True) -> dict[str, Any]:
    """A snapshot; the os-extended-snapshot-attributes keys decorate show and list only."""
    body: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "volume_id": row.volume_id,
        "status": row.status,
        "size": row.size,
        "metadata": dict(row.metadata_),
        "created_at": when(row.created_at),
        "updated_at": when(row.updated_at),
    }
    if extended:
        body["os-extended-snapshot-attributes:project_id"] = row.project_id
        body["os-extended-snapshot-attributes:progress"] = row.progress
    if version >= V(3, 14):
        body["group_snapshot_id"] = None
    if version >= V(3, 41):
        body["user_id"] = row.user_id
    if version >= V(3, 65):
        body["consumes_quota"] = True
    return body


def upload_view(
    view: volume_service.UploadView, request: volume_service.UploadRequest
) -> dict[str, Any]:
    """Cinder's answer to os-volume_upload_image."""
    row, volume_type = view.volume, view.volume_type
    return {
        "id": row.id, "updated_at": when(row.updated_at), "status": row.status,
        "display_description": row.description, "size": row.size,
        "volume_type": {"id": volume_type.id, "name": volume_type.name} if volume_type else None,
        "image_id": view.image_id, "container_format": request.container_format,
        "disk_format": request.disk_format, "image_name": request.image_name,
        "visibility": request.visibility, "protected": request.protected,
    }  # fmt: skip


def backup_summary(row: Any, base: str) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "links": _link(base, "backups", row.id, row.project_id)}


def backup_view(
    row: Any, has_dependents: bool, version: Version, admin: bool, base: str
) -> dict[str, Any]:
    """A backup as show and /backups/detail give it. `object_count` is the chunks done so
    far while it runs: its progress."""
    body: dict[str, Any] = {
        **backup_summary(row, base),
        "status": row.status, "size": row.size, "object_count": row.object_count,
        "availability_zone": row.availability_zone, "container": row.container,
        "created_at": when(row.created_at), "updated_at": when(row.updated_at),
        "description": row.description, "fail_reason": row.fail_reason,
        "volume_id": row.volume_id, "is_incremental": row.is_incremental,
        "has_dependent_backups": has_dependents, "snapshot_id": row.snapshot_id,
        "data_timestamp": when(row.data_timestamp),
    }  # fmt: skip
    if admin and version >= V(3, 18):
        body["os-backup-project-attr:project_id"] = row.project_id
    if version >= V(3, 43):
        body["metadata"] = dict(row.metadata_)
    if admin and version >= V(3, 56):
        body["user_id"] = row.user_id
    if version >= V(3, 64):
        body["encryption_key_id"] = None
    return body


# Request checks -------------------------------------------------------------------------


def transfer_view(
    row: Any, version: Version, base: str, detail: bool = True, auth_key: str | None = None
) -> dict[str, Any]:
    """A transfer: the summary (id, name, volume_id, links), or the detail with the
    fields of 3.55 (no_snapshots) and 3.57 (projects, accepted); the key on creation."""
    body: dict[str, Any] = {
        "id": row.id, "name": row.name, "volume_id": row.volume_id,
        "links": _link(base, "volume-transfers", row.id, row.project_id),
    }  # fmt: skip
    if not detail:
        return body
    body["created_at"] = when(row.created_at)
    if auth_key is not None:
        body["auth_key"] = auth_key
    if version >= V(3, 55):
        body["no_snapshots"] = row.no_snapshots
    if version >= V(3, 57):
        body |= {"source_project_id": row.project_id, "destination_project_id": None,
                 "accepted": False}  # fmt: skip
    return body


def qos_view(row: Any) -> dict[str, Any]:
    return {"id": row.id, "name": row.name, "consumer": row.consumer, "specs": dict(row.specs)}


def encryption_view(row: Any) -> dict[str, Any]:
    return {
        "volume_type_id": row.volume_type_id, "encryption_id": row.encryption_id,
        "provider": row.provider, "cipher": row.cipher, "key_size": row.key_size,
        "control_location": row.control_location, "created_at": when(row.created_at),
        "updated_at": when(row.updated_at), "deleted": False, "deleted_at": None,
    }  # fmt: skip


def group_type_view(row: Any, with_specs: bool) -> dict[str, Any]:
    body = {"id": row.id, "name": row.name, "description": row.description,
            "is_public": row.is_public}  # fmt: skip
    return body | ({"group_specs": dict(row.group_specs)} if with_specs else {})


def group_view(row: Any, version: Version, volume_ids: list[str] | None = None) -> dict[str, Any]:
    """A group's detail; `volume_ids` (3.25, `list_volume=true`) adds its volumes."""
    body: dict[str, Any] = {
        "id": row.id, "name": row.name or "", "description": row.description,
        "status": row.status, "availability_zone": row.availability_zone,
        "created_at": when(row.created_at), "group_type": row.group_type_id,
        "volume_types": list(row.volume_type_ids),
    }  # fmt: skip
    if version >= V(3, 14):
        body |= {"group_snapshot_id": row.group_snapshot_id,
                 "source_group_id": row.source_group_id}  # fmt: skip
    if version >= V(3, 25) and volume_ids is not None:
        body["volumes"] = volume_ids
    if version >= V(3, 38):
        body["replication_status"] = row.replication_status
    return body


def group_snapshot_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "name": row.name or "", "description": row.description,
        "status": row.status, "group_id": row.group_id, "group_type_id": row.group_type_id,
        "created_at": when(row.created_at),
    }  # fmt: skip


def message_view(row: Any, base: str) -> dict[str, Any]:
    return {
        "id": row.id, "event_id": row.event_id, "user_message": row.user_message,
        "message_level": row.message_level, "request_id": row.request_id,
        "resource_type": row.resource_type, "resource_uuid": row.resource_uuid,
        "created_at": when(row.created_at), "guaranteed_until": when(row.expires_at),
        "links": _link(base, "messages", row.id, row.project_id),
    }  # fmt: skip


def envelope(body: Any, key: str) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get(key), dict):
        raise errors.Invalid(f"Missing required element '{key}' in request body.")
    inner: dict[str, Any] = body[key]
    return inner


def text(inner: Mapping[str, Any], field: str, limit: int = 255) -> str | None:
    value = inner.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise errors.Invalid(
            f"Invalid input for field/attribute {field}. {value!r} is not a string."
        )
    if len(value) > limit:
        raise errors.Invalid(
            f"Invalid input for field/attribute {field}. It is longer than {limit} characters."
        )
    return value


def required_text(inner: Mapping[str, Any], field: str) -> str:
    found = text(inner, field)
    if not found:
        raise errors.Invalid(f"Invalid input for field/attribute {field}: '{field}' is required.")
    return found


def integer(inner: Mapping[str, Any], field: str) -> int | None:
    value = inner.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise errors.Invalid(
            f"Invalid input for field/attribute {field}. {value!r} is not an integer."
        )
    try:
        return int(value)
    except ValueError:
        raise errors.Invalid(
            f"Invalid input for field/attribute {field}. {value!r} is not an integer."
        ) from None


def boolean(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise errors.Invalid(f"Invalid input for field/attribute {field}. {value!r} is not a boolean.")


def metadata(inner: Mapping[str, Any], field: str = "metadata") -> dict[str, str] | None:
    value = inner.get(field)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise errors.Invalid(f"Invalid input for field/attribute {field}. It is not an object.")
    for key, item in value.items():
        if not key or len(key) > 255 or not isinstance(item, str) or len(item) > 255:
            raise errors.Invalid(
                f"Invalid input for field/attribute {field}. Keys and values must be strings "
                "of 1 to 255 characters."
            )
    return dict(value)


def type_changes(inner: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """What an update of a volume or group type (`kind`) sets: name (not blank),
    description, is_public; at least one."""
    changes: dict[str, Any] = {}
    if "name" in inner:
        name = text(inner, "name")
        if not name or not name.strip():
            raise errors.Invalid(f"{kind} name can not be empty.")
        changes["name"] = name.strip()
    if "description" in inner:
        changes["description"] = text(inner, "description")
    if "is_public" in inner:
        changes["is_public"] = boolean(inner["is_public"], "is_public")
    if not changes:
        raise errors.Invalid(f"Specify {kind.lower()} name, description, is_public or a "
                             "combination.")  # fmt: skip
    return changes


def volume_spec(body: Any) -> volume_service.VolumeSpec:
    inner = envelope(body, "volume")
    known = {
        "size", "name", "description", "volume_type", "availability_zone", "snapshot_id",
        "source_volid", "imageRef", "image_id", "backup_id", "metadata", "consistencygroup_id",
        "multiattach", "scheduler_hints", "group_id", "display_name", "display_description",
    }  # fmt: skip
    extra = sorted(set(inner) - known)
    if extra:
        raise errors.Invalid(
            f"Invalid input for field/attribute volume. Additional properties are not allowed "
            f"({', '.join(repr(e) for e in extra)} were unexpected)."
        )
    size = integer(inner, "size")
    sources = [inner.get(k) for k in ("snapshot_id", "source_volid", "backup_id")]
    if size is None and not any(sources):
        raise errors.Invalid("Invalid input for field/attribute size. 'size' is required.")
    if size is not None and size < 1:
        raise errors.Invalid(
            f"Invalid input received: Volume size '{size}' must be an integer and greater than 0."
        )
    if inner.get("multiattach") is not None:
        raise errors.Invalid(
            "Invalid input received: multiattach is set by the volume type (extra spec "
            'multiattach="<is> True"), not by a create parameter.'
        )
    return volume_service.VolumeSpec(
        size=size,
        name=text(inner, "name") or text(inner, "display_name"),
        description=text(inner, "description") or text(inner, "display_description"),
        volume_type=text(inner, "volume_type"),
        availability_zone=text(inner, "availability_zone"),
        snapshot_id=text(inner, "snapshot_id"),
        source_volid=text(inner, "source_volid"),
        image_id=text(inner, "imageRef") or text(inner, "image_id"),
        backup_id=text(inner, "backup_id"),
        metadata=metadata(inner),
        group_id=text(inner, "group_id"),
    )


def attachment_view(row: Any, connection_info: dict[str, Any] | None) -> dict[str, Any]:
    """Cinder's attachment; `connection_info` None renders the list's summary."""
    body: dict[str, Any] = {
        "id": row.id,
        "status": row.attach_status,
        "instance": row.instance_uuid,
        "volume_id": row.volume_id,
    }
    if connection_info is not None:
        body |= {
            "attached_at": when(row.attach_time),
            "detached_at": when(row.detach_time),
            "attach_mode": row.attach_mode,
            "connection_info": connection_info,
        }
    return body
