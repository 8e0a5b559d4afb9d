"""Identity request bodies (with Keystone's limits) and response views.

Keystone keeps unknown attributes of most entities (users, projects, domains,
groups, regions, services, endpoints) and returns them, so those bodies
allow extra fields; `split` separates the known columns from the extras.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from pocketstack.identity import models
from pocketstack.identity import service as identity_service

Name64 = Field(min_length=1, max_length=64)
Name255 = Field(min_length=1, max_length=255)
Tag = Field(min_length=1, max_length=255)


class Entity(BaseModel):
    """A body whose unknown attributes are stored and returned as upstream does."""

    model_config = ConfigDict(extra="allow")

    def split(self) -> tuple[dict[str, Any], dict[str, Any]]:
        known = self.model_dump(exclude_unset=True, exclude=set(self.model_extra or {}))
        return known, dict(self.model_extra or {})


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_tag(tag: str) -> str:
    if "/" in tag or "," in tag:
        raise ValueError("tags may not contain '/' or ','")
    return tag


# Domains, projects -------------------------------------------------------------


class DomainCreate(Entity):
    name: str = Name64
    description: str | None = None
    enabled: StrictBool = True


class DomainUpdate(Entity):
    name: str | None = Field(default=None, min_length=1, max_length=64)
    description: str | None = None
    enabled: StrictBool | None = None


class DomainCreateBody(Strict):
    domain: DomainCreate


class DomainUpdateBody(Strict):
    domain: DomainUpdate


class ProjectCreate(Entity):
    name: str = Name64
    description: str | None = None
    enabled: StrictBool = True
    domain_id: str | None = Field(default=None, max_length=64)
    parent_id: str | None = Field(default=None, max_length=64)
    is_domain: StrictBool = False
    tags: list[str] = Field(default_factory=list, max_length=80)

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        return [_check_tag(t) for t in tags]


class ProjectUpdate(Entity):
    name: str | None = Field(default=None, min_length=1, max_length=64)
    description: str | None = None
    enabled: StrictBool | None = None
    domain_id: str | None = None
    parent_id: str | None = None
    is_domain: StrictBool | None = None
    tags: list[str] | None = Field(default=None, max_length=80)

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str] | None) -> list[str] | None:
        return [_check_tag(t) for t in tags] if tags is not None else None


class ProjectCreateBody(Strict):
    project: ProjectCreate


class ProjectUpdateBody(Strict):
    project: ProjectUpdate


class ProjectTagsBody(Strict):
    tags: list[str] = Field(max_length=80)

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        for tag in tags:
            if not 1 <= len(tag) <= 255:
                raise ValueError("each tag must be 1 to 255 characters")
        return [_check_tag(t) for t in tags]


# Users, groups -----------------------------------------------------------------


class UserCreate(Entity):
    name: str = Name255
    domain_id: str | None = Field(default=None, max_length=64)
    default_project_id: str | None = Field(default=None, max_length=64)
    description: str | None = None
    enabled: StrictBool = True
    password: str | None = Field(default=None, max_length=4096)


class UserUpdate(Entity):
    id: str | None = None
    name: str | None = Field(default=None, min_length=1, max_length=255)
    domain_id: str | None = None
    default_project_id: str | None = Field(default=None, max_length=64)
    description: str | None = None
    enabled: StrictBool | None = None
    password: str | None = Field(default=None, max_length=4096)


class UserCreateBody(Strict):
    user: UserCreate


class UserUpdateBody(Strict):
    user: UserUpdate


class PasswordChange(BaseModel):
    password: str = Field(min_length=1, max_length=4096)
    original_password: str = Field(max_length=4096)


class PasswordChangeBody(Strict):
    user: PasswordChange


class GroupCreate(Entity):
    name: str = Name64
    domain_id: str | None = Field(default=None, max_length=64)
    description: str | None = None


class GroupUpdate(Entity):
    name: str | None = Field(default=None, min_length=1, max_length=64)
    domain_id: str | None = None
    description: str | None = None


class GroupCreateBody(Strict):
    group: GroupCreate


class GroupUpdateBody(Strict):
    group: GroupUpdate


# Roles --------------------------------------------------------------------------


class RoleOptions(Strict):
    immutable: StrictBool | None = None


class RoleCreate(Entity):
    name: str = Name255
    domain_id: str | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=255)
    options: RoleOptions | None = None


class RoleUpdate(Entity):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    domain_id: str | None = None
    description: str | None = Field(default=None, max_length=255)
    options: RoleOptions | None = None


class RoleCreateBody(Strict):
    role: RoleCreate


class RoleUpdateBody(Strict):
    role: RoleUpdate


# Catalog ------------------------------------------------------------------------


class RegionCreate(Entity):
    id: str | None = Field(default=None, min_length=1, max_length=255)
    description: str = Field(default="", max_length=255)
    parent_region_id: str | None = Field(default=None, max_length=255)


class RegionUpdate(Entity):
    description: str | None = Field(default=None, max_length=255)
    parent_region_id: str | None = Field(default=None, max_length=255)


class RegionCreateBody(Strict):
    region: RegionCreate


class RegionUpdateBody(Strict):
    region: RegionUpdate


class ServiceCreate(Entity):
    type: str = Name255
    name: str | None = Field(default=None, max_length=255)
    description: str | None = None
    enabled: StrictBool = True


class ServiceUpdate(Entity):
    type: str | None = Field(default=None, min_length=1, max_length=255)
    name: str | None = Field(default=None, max_length=255)
    description: str | None = None
    enabled: StrictBool | None = None


class ServiceCreateBody(Strict):
    service: ServiceCreate


class ServiceUpdateBody(Strict):
    service: ServiceUpdate


Interface = Literal["public", "internal", "admin"]


class EndpointCreate(Entity):
    service_id: str = Field(min_length=1, max_length=64)
    interface: Interface
    url: str = Field(min_length=1, max_length=225)
    region_id: str | None = Field(default=None, max_length=255)
    region: str | None = Field(default=None, max_length=255)
    enabled: StrictBool = True


class EndpointUpdate(Entity):
    service_id: str | None = Field(default=None, min_length=1, max_length=64)
    interface: Interface | None = None
    url: str | None = Field(default=None, min_length=1, max_length=225)
    region_id: str | None = Field(default=None, max_length=255)
    region: str | None = Field(default=None, max_length=255)
    enabled: StrictBool | None = None


class EndpointCreateBody(Strict):
    endpoint: EndpointCreate


class EndpointUpdateBody(Strict):
    endpoint: EndpointUpdate


# Credentials --------------------------------------------------------------------


class CredentialCreate(Entity):
    user_id: str = Field(min_length=1, max_length=64)
    type: str = Name255
    blob: str
    project_id: str | None = Field(default=None, max_length=64)


class CredentialUpdate(Entity):
    user_id: str | None = Field(default=None, min_length=1, max_length=64)
    type: str | None = Field(default=None, min_length=1, max_length=255)
    blob: str | None = None
    project_id: str | None = Field(default=None, max_length=64)


class CredentialCreateBody(Strict):
    credential: CredentialCreate


class CredentialUpdateBody(Strict):
    credential: CredentialUpdate


class PolicyCreate(Entity):
    type: str = Name255
    blob: str


class PolicyUpdate(Entity):
    type: str | None = Field(default=None, min_length=1, max_length=255)
    blob: str | None = None


class PolicyCreateBody(Strict):
    policy: PolicyCreate


class PolicyUpdateBody(Strict):
    policy: PolicyUpdate


class EndpointGroupFilters(Strict):
    service_id: str | None = None
    region_id: str | None = None
    interface: Interface | None = None


class EndpointGroupCreate(Strict):
    name: str = Name255
    description: str | None = None
    filters: EndpointGroupFilters


class EndpointGroupUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = None
    filters: EndpointGroupFilters | None = None


class EndpointGroupCreateBody(Strict):
    endpoint_group: EndpointGroupCreate


class EndpointGroupUpdateBody(Strict):
    endpoint_group: EndpointGroupUpdate


class ConsumerCreate(Entity):
    description: str | None = None


class ConsumerCreateBody(Strict):
    consumer: ConsumerCreate = Field(default_factory=ConsumerCreate)


class ConsumerUpdateBody(Strict):
    consumer: ConsumerCreate


class DomainConfigBody(Strict):
    config: dict[str, Any]


class RoleRef(Strict):
    id: str | None = None
    name: str | None = None
    domain_id: str | None = None


class AccessRule(Strict):
    id: str | None = None
    path: str | None = None
    method: Literal["HEAD", "GET", "POST", "PUT", "PATCH", "DELETE"] | None = None
    service: str | None = None


class ApplicationCredentialCreate(Strict):
    name: str = Name255
    description: str | None = None
    secret: str | None = Field(default=None, min_length=1, max_length=4096)
    expires_at: datetime | None = None
    roles: list[RoleRef] | None = None
    unrestricted: StrictBool = False
    access_rules: list[AccessRule] | None = None


class ApplicationCredentialCreateBody(Strict):
    application_credential: ApplicationCredentialCreate


# Auth ---------------------------------------------------------------------------


class DomainRef(BaseModel):
    id: str | None = None
    name: str | None = None


class UserRef(BaseModel):
    id: str | None = None
    name: str | None = None
    password: str | None = None
    domain: DomainRef | None = None


class PasswordIdentity(BaseModel):
    user: UserRef


class TokenIdentity(BaseModel):
    id: str = Field(min_length=1)


class AppCredUser(BaseModel):
    id: str | None = None
    name: str | None = None
    domain: DomainRef | None = None


class AppCredIdentity(BaseModel):
    id: str | None = None
    name: str | None = None
    secret: str
    user: AppCredUser | None = None


class Identity(BaseModel):
    methods: list[str]
    password: PasswordIdentity | None = None
    token: TokenIdentity | None = None
    application_credential: AppCredIdentity | None = None


class ProjectScope(BaseModel):
    id: str | None = None
    name: str | None = None
    domain: DomainRef | None = None


class SystemScope(BaseModel):
    all: StrictBool = False


class Scope(BaseModel):
    project: ProjectScope | None = None
    domain: DomainRef | None = None
    system: SystemScope | None = None
    OS_TRUST_trust: dict[str, Any] | None = Field(default=None, alias="OS-TRUST:trust")


class Auth(BaseModel):
    identity: Identity
    scope: Scope | Literal["unscoped"] | None = None


class AuthBody(BaseModel):
    auth: Auth


# Views ----------------------------------------------------------------------------


def timestamp(moment: datetime | None) -> str | None:
    """Keystone's `2026-11-24T22:09:29.597675Z`, the only form Tempest parses."""
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _with_extra(row: Any, body: dict[str, Any]) -> dict[str, Any]:
    return {**(row.extra or {}), **body}


def domain_view(d: models.Domain, base: str) -> dict[str, Any]:
    return _with_extra(
        d,
        {
            "id": d.id,
            "name": d.name,
            "description": d.description or "",
            "enabled": d.enabled,
            "tags": [],
            "options": {},
            "links": {"self": f"{base}/v3/domains/{d.id}"},
        },
    )


def project_view(p: models.Project, base: str, tags: list[str]) -> dict[str, Any]:
    return _with_extra(
        p,
        {
            "id": p.id,
            "name": p.name,
            "domain_id": None if p.is_domain else p.domain_id,
            "description": p.description or "",
            "enabled": p.enabled,
            "is_domain": p.is_domain,
            "parent_id": None if p.is_domain else p.parent_id or p.domain_id,
            "tags": tags,
            "options": {},
            "links": {"self": f"{base}/v3/projects/{p.id}"},
        },
    )


def user_view(u: models.User, base: str) -> dict[str, Any]:
    body = _with_extra(
        u,
        {
            "id": u.id,
            "name": u.name,
            "domain_id": u.domain_id,
            "enabled": u.enabled,
            "password_expires_at": None,
            "options": {},
            "links": {"self": f"{base}/v3/users/{u.id}"},
        },
    )
    if u.description is not None:
        body["description"] = u.description
    if u.default_project_id:
        body["default_project_id"] = u.default_project_id
    return body


def group_view(g: models.Group, base: str) -> dict[str, Any]:
    return _with_extra(
        g,
        {
            "id": g.id,
            "name": g.name,
            "domain_id": g.domain_id,
            "description": g.description or "",
            "links": {"self": f"{base}/v3/groups/{g.id}"},
        },
    )


def role_view(r: models.Role, base: str) -> dict[str, Any]:
    return _with_extra(
        r,
        {
            "id": r.id,
            "name": r.name,
            "domain_id": r.domain_id or None,
            "description": r.description,
            "options": dict(r.options or {}),
            "links": {"self": f"{base}/v3/roles/{r.id}"},
        },
    )


def role_ref_view(r: models.Role, base: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": r.id,
        "name": r.name,
        "links": {"self": f"{base}/v3/roles/{r.id}"},
    }
    if r.domain_id:
        body["domain_id"] = r.domain_id
    return body


def region_view(r: models.Region, base: str) -> dict[str, Any]:
    return _with_extra(
        r,
        {
            "id": r.id,
            "description": r.description,
            "parent_region_id": r.parent_region_id,
            "links": {"self": f"{base}/v3/regions/{r.id}"},
        },
    )


def service_view(s: models.Service, base: str) -> dict[str, Any]:
    body = _with_extra(
        s,
        {
            "id": s.id,
            "type": s.type,
            "enabled": s.enabled,
            "links": {"self": f"{base}/v3/services/{s.id}"},
        },
    )
    if s.name is not None:
        body["name"] = s.name
    if s.description is not None:
        body["description"] = s.description
    return body


def endpoint_view(e: models.Endpoint, base: str) -> dict[str, Any]:
    return _with_extra(
        e,
        {
            "id": e.id,
            "service_id": e.service_id,
            "interface": e.interface,
            "region_id": e.region_id,
            "region": e.region_id,
            "url": e.url,
            "enabled": e.enabled,
            "links": {"self": f"{base}/v3/endpoints/{e.id}"},
        },
    )


def credential_view(c: models.Credential, base: str) -> dict[str, Any]:
    return _with_extra(
        c,
        {
            "id": c.id,
            "user_id": c.user_id,
            "project_id": c.project_id,
            "type": c.type,
            "blob": c.blob,
            "links": {"self": f"{base}/v3/credentials/{c.id}"},
        },
    )


def access_rule_view(rule: models.AccessRule, base: str) -> dict[str, Any]:
    return {
        "id": rule.id,
        "service": rule.service,
        "path": rule.path,
        "method": rule.method,
        "links": {"self": f"{base}/v3/users/{rule.user_id}/access_rules/{rule.id}"},
    }


def policy_view(p: models.Policy, base: str) -> dict[str, Any]:
    return _with_extra(
        p,
        {
            "id": p.id,
            "type": p.type,
            "blob": p.blob,
            "links": {"self": f"{base}/v3/policies/{p.id}"},
        },
    )


def endpoint_group_view(g: models.EndpointGroup, base: str) -> dict[str, Any]:
    return {
        "id": g.id,
        "name": g.name,
        "description": g.description,
        "filters": g.filters,
        "links": {"self": f"{base}/v3/OS-EP-FILTER/endpoint_groups/{g.id}"},
    }


def consumer_view(c: models.Consumer, base: str) -> dict[str, Any]:
    return _with_extra(
        c,
        {
            "id": c.id,
            "description": c.description,
            "links": {"self": f"{base}/v3/OS-OAUTH1/consumers/{c.id}"},
        },
    )


def application_credential_view(
    c: models.ApplicationCredential,
    base: str,
    roles: dict[str, models.Role],
    rules: dict[str, models.AccessRule],
    secret: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": c.id,
        "name": c.name,
        "description": c.description,
        "user_id": c.user_id,
        "project_id": c.project_id,
        # Echoed in the naive ISO form clients sent it in, as Keystone does.
        "expires_at": c.expires_at.isoformat() if c.expires_at else None,
        "unrestricted": c.unrestricted,
        "access_rules": [
            {"id": r.id, "path": r.path, "method": r.method, "service": r.service}
            for r in (rules[rid] for rid in c.access_rule_ids if rid in rules)
        ],
        "system": None,
        "roles": [
            {"id": rid, "name": roles[rid].name, "domain_id": roles[rid].domain_id or None}
            for rid in c.role_ids
            if rid in roles
        ],
        "links": {"self": f"{base}/v3/users/{c.user_id}/application_credentials/{c.id}"},
    }
    if secret is not None:
        body["secret"] = secret
    return body


def collection(name: str, items: list[dict[str, Any]], self_url: str) -> dict[str, Any]:
    return {name: items, "links": {"self": self_url, "previous": None, "next": None}}


def grant_view(
    grant: identity_service.Grant, base: str, names: dict[str, dict[str, Any]] | None
) -> dict[str, Any]:
    """One entry of /v3/role_assignments, with names when `include_names` was asked."""

    def ref(kind: str, key: str) -> dict[str, Any]:
        body: dict[str, Any] = {"id": key}
        if names is not None and key in names.get(kind, {}):
            body.update(names[kind][key])
        return body

    body: dict[str, Any] = {"role": ref("role", grant.role_id)}
    body[grant.actor_type] = ref(grant.actor_type, grant.actor_id)
    if grant.target_type == "system":
        scope: dict[str, Any] = {"system": {"all": True}}
        target_path = "system"
    else:
        scope = {grant.target_type: ref(grant.target_type, grant.target_id)}
        target_path = f"{grant.target_type}s/{grant.target_id}"
    if grant.inherited:
        scope["OS-INHERIT:inherited_to"] = "projects"
    body["scope"] = scope
    actor = (grant.via_group_id and ("group", grant.via_group_id)) or (
        grant.actor_type,
        grant.actor_id,
    )
    links = {"assignment": f"{base}/v3/{target_path}/{actor[0]}s/{actor[1]}/roles/{grant.role_id}"}
    if grant.via_group_id:
        links["membership"] = f"{base}/v3/groups/{grant.via_group_id}/users/{grant.actor_id}"
    body["links"] = links
    return body


_URL_SUBSTITUTIONS = ("$(project_id)s", "$(tenant_id)s", "%(project_id)s", "%(tenant_id)s")


def _endpoint_url(url: str, project_id: str | None) -> str | None:
    """Fill a catalog URL template; None when it needs a project the token lacks."""
    for marker in _URL_SUBSTITUTIONS:
        if marker in url:
            if project_id is None:
                return None
            url = url.replace(marker, project_id)
    return url


def catalog_view(
    catalog: list[identity_service.CatalogEntry], project_id: str | None
) -> list[dict[str, Any]]:
    result = []
    for entry in catalog:
        endpoints = []
        for endpoint in entry.endpoints:
            url = _endpoint_url(endpoint.url, project_id)
            if url is None:
                continue
            endpoints.append(
                {
                    "id": endpoint.id,
                    "interface": endpoint.interface,
                    "region_id": endpoint.region_id,
                    "region": endpoint.region_id,
                    "url": url,
                }
            )
        result.append(
            {"id": entry.id, "type": entry.type, "name": entry.name, "endpoints": endpoints}
        )
    return result


def token_view(info: Any, catalog: list[identity_service.CatalogEntry] | None) -> dict[str, Any]:
    """The body of POST/GET /v3/auth/tokens, as keystoneauth and Tempest read it."""
    token: dict[str, Any] = {
        "methods": list(info.methods),
        "user": {
            "domain": {"id": info.user_domain_id, "name": info.user_domain_name},
            "id": info.user_id,
            "name": info.user_name,
            "password_expires_at": None,
        },
        "audit_ids": list(info.audit_ids),
        "expires_at": timestamp(info.expires_at),
        "issued_at": timestamp(info.issued_at),
    }
    if info.project_id:
        token["project"] = {
            "domain": {"id": info.project_domain_id, "name": info.project_domain_name},
            "id": info.project_id,
            "name": info.project_name,
        }
        token["is_domain"] = False
    elif info.domain_id:
        token["domain"] = {"id": info.domain_id, "name": info.domain_name}
    elif info.system:
        token["system"] = {"all": True}
    if info.project_id or info.domain_id or info.system:
        token["roles"] = [{"id": rid, "name": name} for rid, name in info.roles]
        if catalog is not None:
            token["catalog"] = catalog_view(catalog, info.project_id)
    if info.application_credential_id:
        token["application_credential"] = {
            "id": info.application_credential_id,
            "restricted": info.application_credential_restricted,
        }
    return {"token": token}
