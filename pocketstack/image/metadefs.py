"""Glance metadata definitions (metadefs): the catalog behind `/v2/metadefs`.

A namespace groups property definitions (JSON-schema fragments such as
`hw_disk_bus: {type: string, enum: [...]}`), objects (named groups of
properties), tags, and the resource types it applies to (`OS::Glance::Image`,
`OS::Nova::Flavor`, each with a property name prefix). Dashboards read it to
offer image, flavor and volume properties; nothing here checks images.

Who sees a namespace follows Glance: admins all of them, everyone the public
ones and those without an owner, a project its own private ones. A namespace
a caller cannot see answers 404 for every operation under it; writes are for
admins by default (policies.py). A protected namespace refuses to be deleted,
and so do its objects, properties, tags and resource type associations.

Called by image/api.py; image/service.py's `prepare` seeds the resource types.
"""

from __future__ import annotations

import dataclasses
import json
import uuid as uuidlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pocketstack.core import errors
from pocketstack.core.context import RequestContext
from pocketstack.core.runtime import Runtime
from pocketstack.image import models

VISIBILITIES = ("public", "private")
SORT_KEYS = ("created_at", "updated_at", "namespace", "display_name", "visibility")
# The resource types Glance's standard catalog associates namespaces with; listed by
# clients (and Tempest) before they associate one.
STANDARD_RESOURCE_TYPES = (
    "OS::Glance::Image",
    "OS::Cinder::Volume",
    "OS::Nova::Flavor",
    "OS::Nova::Aggregate",
    "OS::Nova::Server",
)


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _new_id() -> str:
    return str(uuidlib.uuid4())


def prepare(runtime: Runtime) -> None:
    """Every start: the standard resource types exist (seeded as protected, as upstream's
    loader marks them)."""
    with runtime.db.write() as session:
        present = set(session.scalars(select(models.MetadefResourceType.name)))
        moment = now()
        session.add_all(
            models.MetadefResourceType(
                id=_new_id(), name=name, protected=True, created_at=moment, updated_at=moment
            )
            for name in STANDARD_RESOURCE_TYPES
            if name not in present
        )


# Views --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResourceTypeView:
    name: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AssociationView:
    name: str
    prefix: str | None
    properties_target: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class PropertyView:
    name: str
    schema: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ObjectView:
    namespace: str
    name: str
    description: str | None
    required: Sequence[str]
    properties: Mapping[str, Mapping[str, Any]]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class TagView:
    name: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class NamespaceView:
    """A namespace; `detailed` views (show) also carry its objects, properties and tags."""

    namespace: str
    display_name: str | None
    description: str | None
    visibility: str
    protected: bool
    owner: str | None
    created_at: datetime
    updated_at: datetime
    resource_type_associations: Sequence[AssociationView] = ()
    detailed: bool = False
    properties: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    objects: Sequence[ObjectView] = ()
    tags: Sequence[TagView] = ()


# Specs (checked by metadef_schemas.py) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewAssociation:
    name: str
    prefix: str | None = None
    properties_target: str | None = None


@dataclass(frozen=True, slots=True)
class NewObject:
    name: str
    description: str | None = None
    required: Sequence[str] = ()
    properties: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NewNamespace:
    namespace: str
    display_name: str | None = None
    description: str | None = None
    visibility: str | None = None
    protected: bool | None = None
    owner: str | None = None
    resource_type_associations: Sequence[NewAssociation] = ()
    properties: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    objects: Sequence[NewObject] = ()
    tags: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class NamespaceFilter:
    visibility: str | None = None
    resource_types: tuple[str, ...] = ()


# Lookups and policy ------------------------------------------------------------------------


def _visible(ctx: RequestContext, row: models.MetadefNamespace) -> bool:
    return (
        ctx.is_admin
        or row.owner is None
        or row.visibility == "public"
        or (ctx.project_id is not None and row.owner == ctx.project_id)
    )


def _target(row: models.MetadefNamespace) -> dict[str, Any]:
    """What metadef rules judge: the namespace's owner as `project_id`, its visibility."""
    return {"project_id": row.owner, "owner": row.owner, "visibility": row.visibility}


def _namespace_row(
    session: Session, ctx: RequestContext, name: str, *rules: str
) -> models.MetadefNamespace:
    """The namespace if this caller can see it (else 404) and each policy rule in `rules`
    allows the action on it (else 403, or 404 when the caller may not even read it, as
    in Glance)."""
    row = session.scalar(
        select(models.MetadefNamespace).where(models.MetadefNamespace.namespace == name)
    )
    if row is None or not _visible(ctx, row):
        raise errors.NotFound(f"Namespace {name} not found")
    target = _target(row)
    for rule in rules:
        if ctx.can(rule, target):
            continue
        if rule == "get_metadef_namespace" or not ctx.can("get_metadef_namespace", target):
            raise errors.NotFound(f"Namespace {name} not found")
        raise errors.Forbidden(f"You are not authorized to complete {rule} action.")
    return row


def _touch(row: models.MetadefNamespace) -> None:
    row.updated_at = now()


def _loads(text: str | None, default: Any) -> Any:
    return json.loads(text) if text else default


def _association_views(
    session: Session, namespace_ids: Sequence[str]
) -> dict[str, list[AssociationView]]:
    found: dict[str, list[AssociationView]] = {i: [] for i in namespace_ids}
    if not namespace_ids:
        return found
    association, resource_type = models.MetadefResourceTypeAssociation, models.MetadefResourceType
    rows = session.execute(
        select(association, resource_type.name)
        .join(resource_type, resource_type.id == association.resource_type_id)
        .where(association.namespace_id.in_(namespace_ids))
        .order_by(association.created_at, resource_type.name)
    )
    for link, name in rows:
        found[link.namespace_id].append(
            AssociationView(
                name, link.prefix, link.properties_target, link.created_at, link.updated_at
            )
        )
    return found


def _namespace_view(
    row: models.MetadefNamespace,
    associations: Sequence[AssociationView],
    session: Session | None = None,
) -> NamespaceView:
    """The namespace; with `session`, the detailed view with its contents."""
    base = NamespaceView(
        namespace=row.namespace,
        display_name=row.display_name,
        description=row.description,
        visibility=row.visibility,
        protected=row.protected,
        owner=row.owner,
        created_at=row.created_at,
        updated_at=row.updated_at,
        resource_type_associations=tuple(associations),
    )
    if session is None:
        return base
    return dataclasses.replace(
        base,
        detailed=True,
        properties={p.name: p.schema for p in _property_views(session, row.id)},
        objects=tuple(_object_views(session, row)),
        tags=tuple(_tag_views(session, row.id)),
    )


# Namespaces ----------------------------------------------------------------------------


def list_namespaces(
    ctx: RequestContext,
    query: NamespaceFilter,
    sort_key: str,
    descending: bool,
    marker: str | None,
    limit: int,
) -> list[NamespaceView]:
    """Visible namespaces in `sort_key` order, the page after `marker` (a namespace name).
    The catalog is small (tens of namespaces), so the page is cut after sorting."""
    ctx.authorize("get_metadef_namespaces", {"project_id": ctx.project_id})
    ns = models.MetadefNamespace
    with ctx.db.read() as session:
        stmt = select(ns)
        if not ctx.is_admin:
            stmt = stmt.where(
                or_(ns.visibility == "public", ns.owner.is_(None), ns.owner == ctx.project_id)
            )
        if query.visibility is not None:
            stmt = stmt.where(ns.visibility == query.visibility)
        if query.resource_types:
            association, resource_type = (
                models.MetadefResourceTypeAssociation,
                models.MetadefResourceType,
            )
            stmt = stmt.where(
                ns.id.in_(
                    select(association.namespace_id)
                    .join(resource_type, resource_type.id == association.resource_type_id)
                    .where(resource_type.name.in_(query.resource_types))
                )
            )
        columns = [getattr(ns, sort_key), ns.created_at, ns.id]
        stmt = stmt.order_by(*(c.desc() if descending else c.asc() for c in columns))
        rows = [r for r in session.scalars(stmt) if ctx.can("get_metadef_namespace", _target(r))]
        if marker is not None:
            names = [r.namespace for r in rows]
            if marker not in names:
                raise errors.NotFound(f"Namespace {marker} not found")
            rows = rows[names.index(marker) + 1 :]
        rows = rows[:limit]
        associations = _association_views(session, [r.id for r in rows])
        return [_namespace_view(r, associations[r.id]) for r in rows]


def get_namespace(
    ctx: RequestContext, name: str, resource_type: str | None = None
) -> NamespaceView:
    """The namespace with its contents; for `resource_type`, property names carry that
    association's prefix (`hw_` for images, `hw:` for flavors)."""
    with ctx.db.read() as session:
        row = _namespace_row(
            session,
            ctx,
            name,
            "get_metadef_namespace",
            "list_metadef_resource_types",
            "get_metadef_objects",
            "get_metadef_properties",
            "get_metadef_tags",
        )
        associations = _association_views(session, [row.id])[row.id]
        view = _namespace_view(row, associations, session)
    prefix = next(
        (a.prefix for a in associations if resource_type and a.name == resource_type), None
    )
    if not prefix:
        return view
    objects = tuple(
        dataclasses.replace(
            o,
            required=[prefix + r for r in o.required],
            properties={prefix + k: v for k, v in o.properties.items()},
        )
        for o in view.objects
    )
    return dataclasses.replace(
        view, properties={prefix + k: v for k, v in view.properties.items()}, objects=objects
    )


def create_namespace(ctx: RequestContext, spec: NewNamespace) -> NamespaceView:
    """The namespace and whatever contents the request carries, all or nothing."""
    owner = spec.owner if spec.owner is not None else ctx.project_id
    target = {"project_id": owner, "owner": owner, "visibility": spec.visibility or "private"}
    ctx.authorize("add_metadef_namespace", target)
    for present, rule in (
        (spec.resource_type_associations, "add_metadef_resource_type_association"),
        (spec.objects, "add_metadef_object"),
        (spec.properties, "add_metadef_property"),
        (spec.tags, "add_metadef_tag"),
    ):
        if present:
            ctx.authorize(rule, target)
    moment = now()
    with ctx.db.write() as session:
        _check_namespace_free(session, spec.namespace)
        row = models.MetadefNamespace(
            id=_new_id(),
            namespace=spec.namespace,
            display_name=spec.display_name,
            description=spec.description,
            visibility=spec.visibility or "private",
            protected=bool(spec.protected),
            owner=owner,
            created_at=moment,
            updated_at=moment,
        )
        session.add(row)
        try:
            session.flush()
        except IntegrityError:  # created by a concurrent request since the check
            raise _duplicate_namespace(spec.namespace) from None
        for association in spec.resource_type_associations:
            _add_association(session, row, association)
        for new_object in spec.objects:
            _add_object(session, row, new_object)
        for prop_name, schema in spec.properties.items():
            _add_property(session, row, prop_name, schema)
        _add_tags(session, row, spec.tags, append=True)
        session.flush()
        associations = _association_views(session, [row.id])[row.id]
        return _namespace_view(row, associations, session)


def _check_namespace_free(session: Session, name: str) -> None:
    taken = session.scalar(
        select(models.MetadefNamespace.id).where(models.MetadefNamespace.namespace == name)
    )
    if taken is not None:
        raise _duplicate_namespace(name)


def _duplicate_namespace(name: str) -> errors.Conflict:
    return errors.Conflict(f"The metadata definition namespace={name} already exists.")


def update_namespace(ctx: RequestContext, name: str, spec: NewNamespace) -> NamespaceView:
    """Replace the namespace's own attributes (not its contents), as Glance's PUT does:
    visibility, protection and owner fall back to their create-time defaults."""
    with ctx.db.write() as session:
        row = _namespace_row(session, ctx, name, "modify_metadef_namespace")
        if spec.namespace != row.namespace:
            _check_namespace_free(session, spec.namespace)
        row.namespace = spec.namespace
        row.display_name = spec.display_name
        row.description = spec.description
        row.visibility = spec.visibility or "private"
        row.protected = bool(spec.protected)
        row.owner = spec.owner or ctx.project_id
        _touch(row)
        session.flush()
        return _namespace_view(row, _association_views(session, [row.id])[row.id])


def _refuse_if_protected(row: models.MetadefNamespace) -> None:
    if row.protected:
        raise errors.Forbidden(
            f"Metadata definition namespace {row.namespace} is protected and cannot be deleted."
        )


_CONTENTS = (
    models.MetadefObject,
    models.MetadefProperty,
    models.MetadefTag,
    models.MetadefResourceTypeAssociation,
)


def delete_namespace(ctx: RequestContext, name: str) -> None:
    with ctx.db.write() as session:
        row = _namespace_row(session, ctx, name, "delete_metadef_namespace")
        _refuse_if_protected(row)
        for model in _CONTENTS:
            session.execute(delete(model).where(model.namespace_id == row.id))
        session.delete(row)


_CONTENT_KINDS: dict[
    str, type[models.MetadefObject] | type[models.MetadefProperty] | type[models.MetadefTag]
] = {
    "objects": models.MetadefObject,
    "properties": models.MetadefProperty,
    "tags": models.MetadefTag,
}


def delete_namespace_contents(ctx: RequestContext, name: str, kind: str) -> None:
    """Remove all objects, properties or tags (`kind`) of a namespace; Glance judges this
    by the namespace's delete rule (and, for tags, also the tags' one)."""
    model = _CONTENT_KINDS[kind]
    with ctx.db.write() as session:
        rules = ("delete_metadef_namespace", "delete_metadef_tags")
        row = _namespace_row(session, ctx, name, *rules[: 2 if kind == "tags" else 1])
        _refuse_if_protected(row)
        session.execute(delete(model).where(model.namespace_id == row.id))
        _touch(row)


# Resource types ------------------------------------------------------------------------


def list_resource_types(ctx: RequestContext) -> list[ResourceTypeView]:
    ctx.authorize("list_metadef_resource_types", {"project_id": ctx.project_id})
    with ctx.db.read() as session:
        rows = session.scalars(
            select(models.MetadefResourceType).order_by(
                models.MetadefResourceType.created_at, models.MetadefResourceType.name
            )
        )
        return [ResourceTypeView(r.name, r.created_at, r.updated_at) for r in rows]


def list_associations(ctx: RequestContext, name: str) -> list[AssociationView]:
    with ctx.db.read() as session:
        row = _namespace_row(session, ctx, name, "get_metadef_resource_type")
        return _association_views(session, [row.id])[row.id]


def _add_association(
    session: Session, row: models.MetadefNamespace, spec: NewAssociation
) -> AssociationView:
    """Associate the namespace with a resource type, which is created when new."""
    moment = now()
    resource_type = session.scalar(
        select(models.MetadefResourceType).where(models.MetadefResourceType.name == spec.name)
    )
    if resource_type is None:
        resource_type = models.MetadefResourceType(
            id=_new_id(), name=spec.name, protected=False, created_at=moment, updated_at=moment
        )
        session.add(resource_type)
        session.flush()
    elif session.get(models.MetadefResourceTypeAssociation, (row.id, resource_type.id)):
        raise errors.Conflict(
            f"The metadata definition resource-type association of resource-type={spec.name} "
            f"to namespace={row.namespace} already exists."
        )
    link = models.MetadefResourceTypeAssociation(
        namespace_id=row.id,
        resource_type_id=resource_type.id,
        prefix=spec.prefix,
        properties_target=spec.properties_target,
        created_at=moment,
        updated_at=moment,
    )
    session.add(link)
    return AssociationView(spec.name, spec.prefix, spec.properties_target, moment, moment)


def create_association(ctx: RequestContext, name: str, spec: NewAssociation) -> AssociationView:
    with ctx.db.write() as session:
        row = _namespace_row(session, ctx, name, "add_metadef_resource_type_association")
        view = _add_association(session, row, spec)
        _touch(row)
        return view


def delete_association(ctx: RequestContext, name: str, resource_type: str) -> None:
    with ctx.db.write() as session:
        row = _namespace_row(session, ctx, name, "remove_metadef_resource_type_association")
        link = session.scalar(
            select(models.MetadefResourceTypeAssociation)
            .join(
                models.MetadefResourceType,
                models.MetadefResourceType.id
                == models.MetadefResourceTypeAssociation.resource_type_id,
            )
            .where(
                models.MetadefResourceTypeAssociation.namespace_id == row.id,
                models.MetadefResourceType.name == resource_type,
            )
        )
        if link is None:
            raise errors.NotFound(
                f"The metadata definition resource-type association of "
                f"resource-type={resource_type} to namespace={name}, was not found."
            )
        if row.protected:
            raise errors.Forbidden(
                f"Metadata definition resource-type-association {resource_type} is protected "
                "and cannot be deleted."
            )
        session.delete(link)
        _touch(row)


# Objects -------------------------------------------------------------------------------


def _object_view(namespace: str, row: models.MetadefObject) -> ObjectView:
    return ObjectView(
        namespace,
        row.name,
        row.description,
        _loads(row.required, []),
        _loads(row.properties, {}),
        row.created_at,
        row.updated_at,
    )


def _object_views(session: Session, ns: models.MetadefNamespace) -> list[ObjectView]:
    rows = session.scalars(
        select(models.MetadefObject)
        .where(models.MetadefObject.namespace_id == ns.id)
        .order_by(models.MetadefObject.created_at, models.MetadefObject.name)
    )
    return [_object_view(ns.namespace, r) for r in rows]


_Named = TypeVar("_Named", models.MetadefObject, models.MetadefProperty)


def _named(
    session: Session, model: type[_Named], ns: models.MetadefNamespace, name: str
) -> _Named | None:
    return session.scalar(select(model).where(model.namespace_id == ns.id, model.name == name))


def _named_row(
    session: Session, model: type[_Named], kind: str, ns: models.MetadefNamespace, name: str
) -> _Named:
    """An object or property of the namespace by name; 404 in Glance's words otherwise."""
    row = _named(session, model, ns, name)
    if row is None:
        raise errors.NotFound(
            f"The metadata definition {kind} with name={name} was not found in "
            f"namespace={ns.namespace}."
        )
    return row


def _check_free(
    session: Session, model: type[_Named], kind: str, ns: models.MetadefNamespace, name: str
) -> None:
    """409 in Glance's words when the namespace already has an object or property `name`."""
    if _named(session, model, ns, name) is not None:
        raise errors.Conflict(
            f"A metadata definition {kind} with name={name} already exists in "
            f"namespace={ns.namespace}."
        )


def _object_row(session: Session, ns: models.MetadefNamespace, name: str) -> models.MetadefObject:
    return _named_row(session, models.MetadefObject, "object", ns, name)


def _check_object_free(session: Session, ns: models.MetadefNamespace, name: str) -> None:
    _check_free(session, models.MetadefObject, "object", ns, name)


def _add_object(
    session: Session, ns: models.MetadefNamespace, spec: NewObject
) -> models.MetadefObject:
    _check_object_free(session, ns, spec.name)
    moment = now()
    row = models.MetadefObject(
        id=_new_id(),
        namespace_id=ns.id,
        name=spec.name,
        description=spec.description,
        required=json.dumps(list(spec.required)),
        properties=json.dumps(dict(spec.properties)),
        created_at=moment,
        updated_at=moment,
    )
    session.add(row)
    session.flush()
    return row


def list_objects(ctx: RequestContext, namespace: str) -> list[ObjectView]:
    with ctx.db.read() as session:
        ns = _namespace_row(session, ctx, namespace, "get_metadef_objects")
        return _object_views(session, ns)


def get_object(ctx: RequestContext, namespace: str, name: str) -> ObjectView:
    with ctx.db.read() as session:
        ns = _namespace_row(session, ctx, namespace, "get_metadef_object")
        return _object_view(ns.namespace, _object_row(session, ns, name))


def create_object(ctx: RequestContext, namespace: str, spec: NewObject) -> ObjectView:
    with ctx.db.write() as session:
        ns = _namespace_row(session, ctx, namespace, "add_metadef_object")
        row = _add_object(session, ns, spec)
        _touch(ns)
        return _object_view(ns.namespace, row)


def update_object(ctx: RequestContext, namespace: str, name: str, spec: NewObject) -> ObjectView:
    """Replace the object (name, description, required, properties)."""
    with ctx.db.write() as session:
        ns = _namespace_row(session, ctx, namespace, "modify_metadef_object")
        row = _object_row(session, ns, name)
        if spec.name != row.name:
            _check_object_free(session, ns, spec.name)
        row.name = spec.name
        row.description = spec.description
        row.required = json.dumps(list(spec.required))
        row.properties = json.dumps(dict(spec.properties))
        row.updated_at = now()
        session.flush()
        return _object_view(ns.namespace, row)


def delete_object(ctx: RequestContext, namespace: str, name: str) -> None:
    with ctx.db.write() as session:
        ns = _namespace_row(session, ctx, namespace, "delete_metadef_object")
        row = _object_row(session, ns, name)
        if ns.protected:
            raise errors.Forbidden(
                f"Metadata definition object {name} is protected and cannot be deleted."
            )
        session.delete(row)
        _touch(ns)


# Properties ----------------------------------------------------------------------------


def _property_views(session: Session, namespace_id: str) -> list[PropertyView]:
    rows = session.scalars(
        select(models.MetadefProperty)
        .where(models.MetadefProperty.namespace_id == namespace_id)
        .order_by(models.MetadefProperty.name)
    )
    return [PropertyView(r.name, _loads(r.schema, {})) for r in rows]


def _property_row(
    session: Session, ns: models.MetadefNamespace, name: str
) -> models.MetadefProperty:
    return _named_row(session, models.MetadefProperty, "property", ns, name)


def _check_property_free(session: Session, ns: models.MetadefNamespace, name: str) -> None:
    _check_free(session, models.MetadefProperty, "property", ns, name)


def _add_property(
    session: Session, ns: models.MetadefNamespace, name: str, schema: Mapping[str, Any]
) -> PropertyView:
    _check_property_free(session, ns, name)
    moment = now()
    session.add(
        models.MetadefProperty(
            id=_new_id(),
            namespace_id=ns.id,
            name=name,
            schema=json.dumps(dict(schema)),
            created_at=moment,
            updated_at=moment,
        )
    )
    session.flush()
    return PropertyView(name, dict(schema))


def list_properties(ctx: RequestContext, namespace: str) -> list[PropertyView]:
    with ctx.db.read() as session:
        ns = _namespace_row(session, ctx, namespace, "get_metadef_properties")
        return _property_views(session, ns.id)


def get_property(
    ctx: RequestContext, namespace: str, name: str, resource_type: str | None = None
) -> PropertyView:
    """The property; asked for as a `resource_type` would name it, `name` must carry that
    association's prefix, which is stripped before the lookup."""
    with ctx.db.read() as session:
        rules = ("get_metadef_property", "get_metadef_resource_type")
        ns = _namespace_row(session, ctx, namespace, *rules[: 2 if resource_type else 1])
        if resource_type:
            associations = _association_views(session, [ns.id])[ns.id]
            association = next((a for a in associations if a.name == resource_type), None)
            if association is None:
                raise errors.NotFound(
                    f"The metadata definition resource-type association of "
                    f"resource-type={resource_type} to namespace={namespace}, was not found."
                )
            prefix = association.prefix or ""
            if not prefix or not name.startswith(prefix):
                raise errors.NotFound(
                    f"Property {name} does not start with the expected resource type "
                    f"association prefix of '{prefix}'."
                )
            name = name[len(prefix) :]
        row = _property_row(session, ns, name)
        return PropertyView(row.name, _loads(row.schema, {}))


def create_property(
    ctx: RequestContext, namespace: str, name: str, schema: Mapping[str, Any]
) -> PropertyView:
    with ctx.db.write() as session:
        ns = _namespace_row(session, ctx, namespace, "add_metadef_property")
        view = _add_property(session, ns, name, schema)
        _touch(ns)
        return view


def update_property(
    ctx: RequestContext, namespace: str, name: str, new_name: str, schema: Mapping[str, Any]
) -> PropertyView:
    with ctx.db.write() as session:
        ns = _namespace_row(session, ctx, namespace, "modify_metadef_property")
        row = _property_row(session, ns, name)
        if new_name != row.name:
            _check_property_free(session, ns, new_name)
        row.name = new_name
        row.schema = json.dumps(dict(schema))
        row.updated_at = now()
        return PropertyView(new_name, dict(schema))


def delete_property(ctx: RequestContext, namespace: str, name: str) -> None:
    with ctx.db.write() as session:
        ns = _namespace_row(session, ctx, namespace, "remove_metadef_property")
        row = _property_row(session, ns, name)
        if ns.protected:
            raise errors.Forbidden(
                f"Metadata definition property {name} is protected and cannot be deleted."
            )
        session.delete(row)
        _touch(ns)


# Tags ----------------------------------------------------------------------------------


def _tag_views(session: Session, namespace_id: str) -> list[TagView]:
    rows = session.scalars(
        select(models.MetadefTag)
        .where(models.MetadefTag.namespace_id == namespace_id)
        .order_by(models.MetadefTag.created_at, models.MetadefTag.name)
    )
    return [TagView(r.name, r.created_at, r.updated_at) for r in rows]


def _tag_row(session: Session, ns: models.MetadefNamespace, name: str) -> models.MetadefTag:
    row = session.scalar(
        select(models.MetadefTag).where(
            models.MetadefTag.namespace_id == ns.id, models.MetadefTag.name == name
        )
    )
    if row is None:
        raise errors.NotFound(
            f"The metadata definition tag with name={name} was not found in "
            f"namespace={ns.namespace}."
        )
    return row


def _duplicate_tag(ns: models.MetadefNamespace, name: str) -> errors.Conflict:
    return errors.Conflict(
        f"A metadata tag with name={name} already exists in namespace={ns.namespace}. "
        "(Please note that metadata tag names are case insensitive)."
    )


def _check_tag_free(
    session: Session, ns: models.MetadefNamespace, name: str, ignore: str | None = None
) -> None:
    """Tag names are unique within a namespace regardless of case."""
    stmt = select(models.MetadefTag.id).where(
        models.MetadefTag.namespace_id == ns.id,
        func.lower(models.MetadefTag.name) == name.lower(),
    )
    if ignore is not None:
        stmt = stmt.where(models.MetadefTag.id != ignore)
    if session.scalar(stmt) is not None:
        raise _duplicate_tag(ns, name)


def _add_tags(
    session: Session, ns: models.MetadefNamespace, names: Sequence[str], append: bool
) -> list[TagView]:
    """Add `names` (replacing the namespace's tags unless `append`); a name given twice or
    already present is a conflict and nothing changes."""
    seen: set[str] = set()
    for name in names:
        if name.lower() in seen:
            raise _duplicate_tag(ns, name)
        seen.add(name.lower())
    if not names:
        return []
    if not append:
        session.execute(delete(models.MetadefTag).where(models.MetadefTag.namespace_id == ns.id))
    moment = now()
    views = []
    for name in names:
        _check_tag_free(session, ns, name)
        session.add(
            models.MetadefTag(
                id=_new_id(), namespace_id=ns.id, name=name, created_at=moment, updated_at=moment
            )
        )
        views.append(TagView(name, moment, moment))
    session.flush()
    return views


def list_tags(ctx: RequestContext, namespace: str) -> list[TagView]:
    with ctx.db.read() as session:
        ns = _namespace_row(session, ctx, namespace, "get_metadef_tags")
        return _tag_views(session, ns.id)


def get_tag(ctx: RequestContext, namespace: str, name: str) -> TagView:
    with ctx.db.read() as session:
        ns = _namespace_row(session, ctx, namespace, "get_metadef_tag")
        row = _tag_row(session, ns, name)
        return TagView(row.name, row.created_at, row.updated_at)


def create_tag(ctx: RequestContext, namespace: str, name: str) -> TagView:
    with ctx.db.write() as session:
        ns = _namespace_row(session, ctx, namespace, "add_metadef_tag")
        view = _add_tags(session, ns, [name], append=True)[0]
        _touch(ns)
        return view


def create_tags(
    ctx: RequestContext, namespace: str, names: Sequence[str], append: bool
) -> list[TagView]:
    with ctx.db.write() as session:
        ns = _namespace_row(session, ctx, namespace, "add_metadef_tags")
        views = _add_tags(session, ns, names, append)
        _touch(ns)
        return views


def update_tag(ctx: RequestContext, namespace: str, name: str, new_name: str) -> TagView:
    with ctx.db.write() as session:
        ns = _namespace_row(session, ctx, namespace, "modify_metadef_tag")
        row = _tag_row(session, ns, name)
        _check_tag_free(session, ns, new_name, ignore=row.id)
        row.name = new_name
        row.updated_at = now()
        return TagView(row.name, row.created_at, row.updated_at)


def delete_tag(ctx: RequestContext, namespace: str, name: str) -> None:
    with ctx.db.write() as session:
        ns = _namespace_row(session, ctx, namespace, "delete_metadef_tag")
        row = _tag_row(session, ns, name)
        if ns.protected:
            raise errors.Forbidden(
                f"Metadata definition tag {name} is protected and cannot be deleted."
            )
        session.delete(row)
        _touch(ns)
