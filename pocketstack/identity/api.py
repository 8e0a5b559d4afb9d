"""Identity HTTP routes at /identity: Keystone's v3 API.

Each handler parses, authorizes, calls identity.service (or identity.auth),
and renders with identity.schemas. Keystone's error body is
`{"error": {"code", "title", "message"}}`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from datetime import UTC
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import Scope

from pocketstack.core import app as app_mod
from pocketstack.core import errors, routing
from pocketstack.core.auth import Ctx, OptionalCtx
from pocketstack.core.context import AuthInfo, RequestContext
from pocketstack.core.runtime import Runtime
from pocketstack.identity import auth as identity_auth
from pocketstack.identity import schemas
from pocketstack.identity import service as identity_service

router = routing.Router()
MEDIA_TYPE = "application/vnd.openstack.identity-v3+json"
FALSE_WORDS = ("0", "false", "no", "off")


def render_error(exc: errors.PocketstackError, _scope: Scope) -> dict[str, Any]:
    return {"error": {"code": exc.status, "title": exc.title, "message": exc.message}}


def base_of(request: Request) -> str:
    """`http://host:port/identity`: links are built from the address the client used."""
    return str(request.base_url).rstrip("/")


def ok(
    body: Mapping[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return JSONResponse(dict(body), status_code=status, headers=headers)


def no_content() -> Response:
    return Response(status_code=204)


def query_filters(request: Request, names: Mapping[str, type]) -> dict[str, Any]:
    """List filters from the query string, typed as Keystone reads them.

    String attributes also take Keystone's inexact forms (`name__contains=x`,
    `__icontains`, `__startswith`, `__istartswith`, `__endswith`, `__iendswith`,
    `__equals`, `__iequals`)."""
    result: dict[str, Any] = {}
    for key, raw in request.query_params.items():
        name, _, operator = key.partition("__")
        kind = names.get(name)
        if kind is None:
            continue
        if kind is bool:
            if not operator:
                result[name] = raw.lower() not in FALSE_WORDS
        elif not operator or operator in identity_service.INEXACT_OPERATORS:
            result[key] = raw
    return result


def _flag(request: Request, name: str) -> bool:
    """Keystone's flag parameters: present without a value, or a true-ish value."""
    if name not in request.query_params:
        return False
    return request.query_params[name].lower() not in FALSE_WORDS


# Version discovery ------------------------------------------------------------------


def _version(request: Request) -> dict[str, Any]:
    return {
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": f"{base_of(request)}/v3/"}],
        "media-types": [{"base": "application/json", "type": MEDIA_TYPE}],
    }


@router.get("/")
def list_versions(request: Request) -> Response:
    return ok({"versions": {"values": [_version(request)]}}, status=300)


@router.get("/v3")
@router.get("/v3/")
def show_version(request: Request) -> Response:
    return ok({"version": _version(request)})


# Tokens -----------------------------------------------------------------------------


def _auth_request(body: schemas.AuthBody) -> identity_auth.AuthRequest:
    identity = body.auth.identity
    password = None
    if identity.password is not None:
        user = identity.password.user
        if user.password is None:
            raise errors.Invalid("Invalid input for field 'identity/password/user/password'.")
        if user.id is None and user.name is None:
            raise errors.Invalid("Invalid input for field 'identity/password/user': id or name.")
        domain = user.domain or schemas.DomainRef()
        password = identity_auth.PasswordMethod(
            password=user.password,
            user_id=user.id,
            user_name=user.name,
            domain_id=domain.id,
            domain_name=domain.name,
        )
    app_cred = None
    if identity.application_credential is not None:
        ac = identity.application_credential
        ac_user = ac.user or schemas.AppCredUser()
        ac_domain = ac_user.domain or schemas.DomainRef()
        app_cred = identity_auth.ApplicationCredentialMethod(
            secret=ac.secret,
            id=ac.id,
            name=ac.name,
            user_id=ac_user.id,
            user_name=ac_user.name,
            user_domain_id=ac_domain.id,
            user_domain_name=ac_domain.name,
        )
    return identity_auth.AuthRequest(
        methods=tuple(identity.methods),
        scope=_scope_request(body.auth.scope),
        password=password,
        token=identity.token.id if identity.token else None,
        application_credential=app_cred,
    )


def _scope_request(scope: schemas.Scope | str | None) -> identity_auth.ScopeRequest:
    if scope == "unscoped":
        return identity_auth.ScopeRequest(unscoped=True)
    if not isinstance(scope, schemas.Scope):
        return identity_auth.ScopeRequest()
    if scope.OS_TRUST_trust is not None:
        raise errors.Forbidden("Trusts are not enabled in this cloud.")
    if scope.project is not None:
        domain = scope.project.domain or schemas.DomainRef()
        if scope.project.id is None and scope.project.name is None:
            raise errors.Invalid("Invalid input for field 'scope/project': id or name.")
        return identity_auth.ScopeRequest(
            project_id=scope.project.id,
            project_name=scope.project.name,
            project_domain_id=domain.id,
            project_domain_name=domain.name,
        )
    if scope.domain is not None:
        if scope.domain.id is None and scope.domain.name is None:
            raise errors.Invalid("Invalid input for field 'scope/domain': id or name.")
        return identity_auth.ScopeRequest(domain_id=scope.domain.id, domain_name=scope.domain.name)
    if scope.system is not None:
        if not scope.system.all:
            raise errors.Invalid("Invalid input for field 'scope/system': only 'all'.")
        return identity_auth.ScopeRequest(system=True)
    return identity_auth.ScopeRequest()


def _token_body(
    runtime: Runtime, info: AuthInfo, request: Request, refresh: bool
) -> dict[str, Any]:
    catalog = None if _flag(request, "nocatalog") else identity_auth.catalog(runtime, refresh)
    return schemas.token_view(info, catalog)


@router.post("/v3/auth/tokens")
def issue_token(request: Request, body: schemas.AuthBody, ctx: OptionalCtx) -> Response:
    token, info = identity_auth.authenticate(ctx.runtime, _auth_request(body))
    return ok(
        _token_body(ctx.runtime, info, request, refresh=True),
        status=201,
        headers={"X-Subject-Token": token},
    )


def _subject(request: Request) -> str:
    subject = request.headers.get("x-subject-token")
    if not subject:
        raise errors.NotFound("Could not find token: the X-Subject-Token header is missing.")
    return subject


@router.get("/v3/auth/tokens")
def validate_token(request: Request, ctx: Ctx) -> Response:
    subject = _subject(request)
    info = identity_auth.validate_subject(ctx, subject)
    ctx.authorize("identity:validate_token", {"target": {"token": {"user_id": info.user_id}}})
    return ok(
        _token_body(ctx.runtime, info, request, refresh=False),
        headers={"X-Subject-Token": subject},
    )


@router.head("/v3/auth/tokens")
def check_token(request: Request, ctx: Ctx) -> Response:
    subject = _subject(request)
    info = identity_auth.validate_subject(ctx, subject)
    ctx.authorize("identity:check_token", {"target": {"token": {"user_id": info.user_id}}})
    return Response(status_code=200, headers={"X-Subject-Token": subject})


@router.delete("/v3/auth/tokens")
def revoke_token(request: Request, ctx: Ctx) -> Response:
    identity_auth.revoke(ctx, _subject(request))
    return no_content()


def _auth_of(ctx: RequestContext) -> Any:
    assert ctx.auth is not None
    return ctx.auth


@router.get("/v3/auth/catalog")
def get_auth_catalog(request: Request, ctx: Ctx) -> Response:
    auth = _auth_of(ctx)
    if not (auth.project_id or auth.domain_id or auth.system):
        raise errors.Forbidden("The catalog needs a scoped token.")
    entries = schemas.catalog_view(
        identity_auth.catalog(ctx.runtime, refresh=False), auth.project_id
    )
    return ok(schemas.collection("catalog", entries, f"{base_of(request)}/v3/auth/catalog"))


@router.get("/v3/auth/projects")
def get_auth_projects(request: Request, ctx: Ctx) -> Response:
    projects = [p for p in identity_service.user_projects(ctx, _auth_of(ctx).user_id) if p.enabled]
    return _projects_response(ctx, request, projects, "/v3/auth/projects")


@router.get("/v3/auth/domains")
def get_auth_domains(request: Request, ctx: Ctx) -> Response:
    base = base_of(request)
    domains = identity_service.user_domains(ctx, _auth_of(ctx).user_id)
    return ok(
        schemas.collection(
            "domains", [schemas.domain_view(d, base) for d in domains], f"{base}/v3/auth/domains"
        )
    )


@router.get("/v3/auth/system")
def get_auth_system(request: Request, ctx: Ctx) -> Response:
    has_role = identity_service.has_system_role(ctx, _auth_of(ctx).user_id)
    return ok(
        {
            "system": [{"all": True}] if has_role else [],
            "links": {"self": f"{base_of(request)}/v3/auth/system"},
        }
    )


# Domains ------------------------------------------------------------------------------


@router.post("/v3/domains")
def create_domain(request: Request, body: schemas.DomainCreateBody, ctx: Ctx) -> Response:
    ctx.authorize("identity:create_domain")
    known, extra = body.domain.split()
    domain = identity_service.create_domain(ctx, known, extra)
    return ok({"domain": schemas.domain_view(domain, base_of(request))}, status=201)


@router.get("/v3/domains")
def list_domains(request: Request, ctx: Ctx) -> Response:
    ctx.authorize("identity:list_domains")
    filters = query_filters(request, {"name": str, "enabled": bool})
    base = base_of(request)
    domains = identity_service.list_domains(ctx, filters)
    return ok(
        schemas.collection(
            "domains", [schemas.domain_view(d, base) for d in domains], f"{base}/v3/domains"
        )
    )


@router.get("/v3/domains/{domain_id}")
def get_domain(request: Request, domain_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:get_domain", {"target": {"domain": {"id": domain_id}}})
    domain = identity_service.get_domain(ctx, domain_id)
    return ok({"domain": schemas.domain_view(domain, base_of(request))})


@router.patch("/v3/domains/{domain_id}")
def update_domain(
    request: Request, domain_id: str, body: schemas.DomainUpdateBody, ctx: Ctx
) -> Response:
    ctx.authorize("identity:update_domain", {"target": {"domain": {"id": domain_id}}})
    known, extra = body.domain.split()
    domain = identity_service.update_domain(ctx, domain_id, known, extra)
    return ok({"domain": schemas.domain_view(domain, base_of(request))})


@router.delete("/v3/domains/{domain_id}")
def delete_domain(domain_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:delete_domain", {"target": {"domain": {"id": domain_id}}})
    identity_service.delete_domain(ctx, domain_id)
    return no_content()


# Projects -----------------------------------------------------------------------------


def _project_target(project: Any) -> dict[str, Any]:
    return {"target": {"project": {"id": project.id, "domain_id": project.domain_id}}}


def _project_body(ctx: RequestContext, request: Request, project: Any) -> dict[str, Any]:
    tags = identity_service.tags_of(ctx, [project.id])[project.id]
    body = schemas.project_view(project, base_of(request), tags)
    if _flag(request, "parents_as_list"):
        body["parents"] = [
            {"project": schemas.project_view(p, base_of(request), [])}
            for p in identity_service.project_parents(ctx, project)
        ]
    if _flag(request, "subtree_as_list"):
        body["subtree"] = [
            {"project": schemas.project_view(p, base_of(request), [])}
            for p in identity_service.project_subtree(ctx, project.id)
        ]
    if _flag(request, "parents_as_ids"):
        body["parents"] = _ids_tree([p.id for p in identity_service.project_parents(ctx, project)])
    if _flag(request, "subtree_as_ids"):
        body["subtree"] = _subtree_ids(ctx, project.id)
    return body


def _ids_tree(chain: list[str]) -> dict[str, Any] | None:
    """Keystone's nested {parent: {grandparent: None}} form of `parents_as_ids`."""
    tree: dict[str, Any] | None = None
    for pid in reversed(chain):
        tree = {pid: tree}
    return tree


def _subtree_ids(ctx: RequestContext, project_id: str) -> dict[str, Any] | None:
    children: dict[str | None, list[str]] = {}
    for p in identity_service.project_subtree(ctx, project_id):
        children.setdefault(p.parent_id, []).append(p.id)

    def build(pid: str) -> dict[str, Any] | None:
        kids = children.get(pid)
        return {kid: build(kid) for kid in kids} if kids else None

    return build(project_id)


def _projects_response(
    ctx: RequestContext, request: Request, projects: list[Any], path: str
) -> Response:
    base = base_of(request)
    tags = identity_service.tags_of(ctx, [p.id for p in projects])
    return ok(
        schemas.collection(
            "projects", [schemas.project_view(p, base, tags[p.id]) for p in projects], base + path
        )
    )


def _tag_filter(request: Request) -> identity_service.TagFilter:
    def values(name: str) -> tuple[str, ...]:
        raw = request.query_params.get(name)
        return tuple(t for t in raw.split(",") if t) if raw else ()

    return identity_service.TagFilter(
        all_of=values("tags"),
        any_of=values("tags-any"),
        not_all_of=values("not-tags"),
        not_any_of=values("not-tags-any"),
    )


@router.post("/v3/projects")
def create_project(request: Request, body: schemas.ProjectCreateBody, ctx: Ctx) -> Response:
    known, extra = body.project.split()
    tags = known.pop("tags", [])
    ctx.authorize("identity:create_project", {"target": {"project": known}})
    project = identity_service.create_project(ctx, known, extra, tags)
    return ok({"project": _project_body(ctx, request, project)}, status=201)


@router.get("/v3/projects")
def list_projects(request: Request, ctx: Ctx) -> Response:
    filters = query_filters(
        request,
        {"name": str, "domain_id": str, "enabled": bool, "parent_id": str, "is_domain": bool},
    )
    auth = _auth_of(ctx)
    if "domain_id" not in filters and auth.domain_id and not ctx.can("identity:list_domains"):
        filters["domain_id"] = auth.domain_id
    ctx.authorize("identity:list_projects", {"target": {"domain_id": filters.get("domain_id")}})
    projects = identity_service.list_projects(ctx, filters, _tag_filter(request))
    return _projects_response(ctx, request, projects, "/v3/projects")


@router.get("/v3/projects/{project_id}")
def get_project(request: Request, project_id: str, ctx: Ctx) -> Response:
    project = identity_service.get_project(ctx, project_id)
    ctx.authorize("identity:get_project", _project_target(project))
    return ok({"project": _project_body(ctx, request, project)})


@router.patch("/v3/projects/{project_id}")
def update_project(
    request: Request, project_id: str, body: schemas.ProjectUpdateBody, ctx: Ctx
) -> Response:
    ctx.authorize("identity:update_project", {"target": {"project": {"id": project_id}}})
    known, extra = body.project.split()
    tags = known.pop("tags", None)
    if known.pop("is_domain", None):
        raise errors.Invalid("Update of `is_domain` is not allowed.")
    project = identity_service.update_project(ctx, project_id, known, extra, tags)
    return ok({"project": _project_body(ctx, request, project)})


@router.delete("/v3/projects/{project_id}")
def delete_project(project_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:delete_project", {"target": {"project": {"id": project_id}}})
    identity_service.delete_project(ctx, project_id)
    return no_content()


@router.get("/v3/projects/{project_id}/tags")
def list_project_tags(project_id: str, ctx: Ctx) -> Response:
    project = identity_service.get_project(ctx, project_id)
    ctx.authorize("identity:list_project_tags", _project_target(project))
    return ok({"tags": identity_service.tags_of(ctx, [project_id])[project_id]})


@router.put("/v3/projects/{project_id}/tags")
def update_project_tags(project_id: str, body: schemas.ProjectTagsBody, ctx: Ctx) -> Response:
    ctx.authorize("identity:update_project_tags", {"target": {"project": {"id": project_id}}})
    return ok({"tags": identity_service.replace_project_tags(ctx, project_id, body.tags)})


@router.delete("/v3/projects/{project_id}/tags")
def delete_project_tags(project_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:delete_project_tags", {"target": {"project": {"id": project_id}}})
    identity_service.replace_project_tags(ctx, project_id, [])
    return no_content()


@router.get("/v3/projects/{project_id}/tags/{tag}")
@router.head("/v3/projects/{project_id}/tags/{tag}")
def check_project_tag(project_id: str, tag: str, ctx: Ctx) -> Response:
    project = identity_service.get_project(ctx, project_id)
    ctx.authorize("identity:get_project_tag", _project_target(project))
    if not identity_service.has_project_tag(ctx, project_id, tag):
        raise errors.NotFound(f"Could not find project tag: {tag}.")
    return no_content()


@router.put("/v3/projects/{project_id}/tags/{tag}")
def add_project_tag(request: Request, project_id: str, tag: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:create_project_tag", {"target": {"project": {"id": project_id}}})
    if not 1 <= len(tag) <= 255 or "/" in tag or "," in tag:
        raise errors.Invalid(f"Invalid tag {tag!r}: 1 to 255 characters, no '/' or ','.")
    identity_service.add_project_tag(ctx, project_id, tag)
    return Response(
        status_code=201,
        headers={"Location": f"{base_of(request)}/v3/projects/{project_id}/tags/{tag}"},
    )


@router.delete("/v3/projects/{project_id}/tags/{tag}")
def delete_project_tag(project_id: str, tag: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:delete_project_tag", {"target": {"project": {"id": project_id}}})
    identity_service.remove_project_tag(ctx, project_id, tag)
    return no_content()


# Users --------------------------------------------------------------------------------


def _user_target(user: Any) -> dict[str, Any]:
    return {"target": {"user": {"id": user.id, "domain_id": user.domain_id}}}


@router.post("/v3/users")
def create_user(request: Request, body: schemas.UserCreateBody, ctx: Ctx) -> Response:
    known, extra = body.user.split()
    ctx.authorize(
        "identity:create_user", {"target": {"user": {"domain_id": known.get("domain_id")}}}
    )
    user = identity_service.create_user(ctx, known, extra)
    return ok({"user": schemas.user_view(user, base_of(request))}, status=201)


@router.get("/v3/users")
def list_users(request: Request, ctx: Ctx) -> Response:
    filters = query_filters(request, {"name": str, "domain_id": str, "enabled": bool})
    auth = _auth_of(ctx)
    if "domain_id" not in filters and auth.domain_id and not ctx.can("identity:list_domains"):
        filters["domain_id"] = auth.domain_id
    ctx.authorize("identity:list_users", {"target": {"domain_id": filters.get("domain_id")}})
    base = base_of(request)
    users = identity_service.list_users(ctx, filters)
    return ok(
        schemas.collection("users", [schemas.user_view(u, base) for u in users], f"{base}/v3/users")
    )


@router.get("/v3/users/{user_id}")
def get_user(request: Request, user_id: str, ctx: Ctx) -> Response:
    user = identity_service.get_user(ctx, user_id)
    ctx.authorize("identity:get_user", _user_target(user))
    return ok({"user": schemas.user_view(user, base_of(request))})


@router.patch("/v3/users/{user_id}")
def update_user(request: Request, user_id: str, body: schemas.UserUpdateBody, ctx: Ctx) -> Response:
    ctx.authorize("identity:update_user", {"target": {"user": {"id": user_id}}})
    known, extra = body.user.split()
    if known.pop("id", user_id) != user_id:
        raise errors.Invalid("The user id in the body does not match the URL.")
    user = identity_service.update_user(ctx, user_id, known, extra)
    return ok({"user": schemas.user_view(user, base_of(request))})


@router.delete("/v3/users/{user_id}")
def delete_user(user_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:delete_user", {"target": {"user": {"id": user_id}}})
    identity_service.delete_user(ctx, user_id)
    return no_content()


@router.post("/v3/users/{user_id}/password")
def change_password(user_id: str, body: schemas.PasswordChangeBody, ctx: OptionalCtx) -> Response:
    identity_service.change_password(ctx, user_id, body.user.original_password, body.user.password)
    return no_content()


@router.get("/v3/users/{user_id}/groups")
def list_user_groups(request: Request, user_id: str, ctx: Ctx) -> Response:
    user = identity_service.get_user(ctx, user_id)
    ctx.authorize(
        "identity:list_groups_for_user", _user_target(user) | {"domain_id": user.domain_id}
    )
    base = base_of(request)
    groups = identity_service.list_user_groups(ctx, user_id)
    return ok(
        schemas.collection(
            "groups",
            [schemas.group_view(g, base) for g in groups],
            f"{base}/v3/users/{user_id}/groups",
        )
    )


@router.get("/v3/users/{user_id}/projects")
def list_user_projects(request: Request, user_id: str, ctx: Ctx) -> Response:
    user = identity_service.get_user(ctx, user_id)
    ctx.authorize("identity:list_user_projects", _user_target(user))
    filters = query_filters(request, {"name": str, "domain_id": str, "enabled": bool})
    projects = identity_service.user_projects(ctx, user_id, filters)
    return _projects_response(ctx, request, projects, f"/v3/users/{user_id}/projects")


# Application credentials --------------------------------------------------------------


def _app_cred_body(
    ctx: RequestContext, request: Request, cred: Any, secret: str | None = None
) -> dict[str, Any]:
    roles = identity_service.role_names(ctx, cred.role_ids)
    rules = identity_service.access_rules_by_id(ctx, cred.access_rule_ids)
    return schemas.application_credential_view(cred, base_of(request), roles, rules, secret)


@router.post("/v3/users/{user_id}/application_credentials")
def create_application_credential(
    request: Request, user_id: str, body: schemas.ApplicationCredentialCreateBody, ctx: Ctx
) -> Response:
    ctx.authorize(
        "identity:create_application_credential",
        {"user_id": user_id, "target": {"user": {"id": user_id}}},
    )
    spec = body.application_credential
    secret = spec.secret or secrets.token_urlsafe(64)
    fields = spec.model_dump(exclude={"secret", "roles"}, exclude_none=True)
    if spec.expires_at is not None and spec.expires_at.tzinfo is not None:
        fields["expires_at"] = spec.expires_at.astimezone(UTC).replace(tzinfo=None)
    roles = [r.model_dump(exclude_none=True) for r in spec.roles] if spec.roles else None
    cred = identity_service.create_application_credential(ctx, user_id, fields, roles, secret)
    return ok({"application_credential": _app_cred_body(ctx, request, cred, secret)}, status=201)


@router.get("/v3/users/{user_id}/application_credentials")
def list_application_credentials(request: Request, user_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:list_application_credentials", {"target": {"user": {"id": user_id}}})
    base = base_of(request)
    creds = identity_service.list_application_credentials(
        ctx, user_id, request.query_params.get("name")
    )
    return ok(
        schemas.collection(
            "application_credentials",
            [_app_cred_body(ctx, request, c) for c in creds],
            f"{base}/v3/users/{user_id}/application_credentials",
        )
    )


@router.get("/v3/users/{user_id}/application_credentials/{credential_id}")
def get_application_credential(
    request: Request, user_id: str, credential_id: str, ctx: Ctx
) -> Response:
    ctx.authorize("identity:get_application_credential", {"target": {"user": {"id": user_id}}})
    cred = identity_service.get_application_credential(ctx, user_id, credential_id)
    return ok({"application_credential": _app_cred_body(ctx, request, cred)})


@router.delete("/v3/users/{user_id}/application_credentials/{credential_id}")
def delete_application_credential(user_id: str, credential_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:delete_application_credential", {"target": {"user": {"id": user_id}}})
    identity_service.delete_application_credential(ctx, user_id, credential_id)
    return no_content()


@router.get("/v3/users/{user_id}/access_rules")
def list_access_rules(request: Request, user_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:list_access_rules", {"target": {"user": {"id": user_id}}})
    base = base_of(request)
    rules = identity_service.list_access_rules(ctx, user_id)
    return ok(
        schemas.collection(
            "access_rules",
            [schemas.access_rule_view(r, base) for r in rules],
            f"{base}/v3/users/{user_id}/access_rules",
        )
    )


@router.get("/v3/users/{user_id}/access_rules/{rule_id}")
def get_access_rule(request: Request, user_id: str, rule_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:get_access_rule", {"target": {"user": {"id": user_id}}})
    rule = identity_service.get_access_rule(ctx, user_id, rule_id)
    return ok({"access_rule": schemas.access_rule_view(rule, base_of(request))})


@router.delete("/v3/users/{user_id}/access_rules/{rule_id}")
def delete_access_rule(user_id: str, rule_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:delete_access_rule", {"target": {"user": {"id": user_id}}})
    identity_service.delete_access_rule(ctx, user_id, rule_id)
    return no_content()


# Groups -------------------------------------------------------------------------------


def _group_target(group: Any) -> dict[str, Any]:
    return {"target": {"group": {"id": group.id, "domain_id": group.domain_id}}}


@router.post("/v3/groups")
def create_group(request: Request, body: schemas.GroupCreateBody, ctx: Ctx) -> Response:
    ctx.authorize("identity:create_group")
    known, extra = body.group.split()
    group = identity_service.create_group(ctx, known, extra)
    return ok({"group": schemas.group_view(group, base_of(request))}, status=201)


@router.get("/v3/groups")
def list_groups(request: Request, ctx: Ctx) -> Response:
    filters = query_filters(request, {"name": str, "domain_id": str})
    ctx.authorize("identity:list_groups", {"target": {"domain_id": filters.get("domain_id")}})
    base = base_of(request)
    groups = identity_service.list_groups(ctx, filters)
    return ok(
        schemas.collection(
            "groups", [schemas.group_view(g, base) for g in groups], f"{base}/v3/groups"
        )
    )


@router.get("/v3/groups/{group_id}")
def get_group(request: Request, group_id: str, ctx: Ctx) -> Response:
    group = identity_service.get_group(ctx, group_id)
    ctx.authorize("identity:get_group", _group_target(group))
    return ok({"group": schemas.group_view(group, base_of(request))})


@router.patch("/v3/groups/{group_id}")
def update_group(
    request: Request, group_id: str, body: schemas.GroupUpdateBody, ctx: Ctx
) -> Response:
    ctx.authorize("identity:update_group", {"target": {"group": {"id": group_id}}})
    known, extra = body.group.split()
    group = identity_service.update_group(ctx, group_id, known, extra)
    return ok({"group": schemas.group_view(group, base_of(request))})


@router.delete("/v3/groups/{group_id}")
def delete_group(group_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:delete_group", {"target": {"group": {"id": group_id}}})
    identity_service.delete_group(ctx, group_id)
    return no_content()


@router.get("/v3/groups/{group_id}/users")
def list_group_users(request: Request, group_id: str, ctx: Ctx) -> Response:
    group = identity_service.get_group(ctx, group_id)
    ctx.authorize("identity:list_users_in_group", _group_target(group))
    filters = query_filters(request, {"name": str, "domain_id": str, "enabled": bool})
    base = base_of(request)
    users = identity_service.list_group_users(ctx, group_id, filters)
    return ok(
        schemas.collection(
            "users",
            [schemas.user_view(u, base) for u in users],
            f"{base}/v3/groups/{group_id}/users",
        )
    )


@router.put("/v3/groups/{group_id}/users/{user_id}")
def add_user_to_group(group_id: str, user_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:add_user_to_group", {"target": {"group": {"id": group_id}}})
    identity_service.add_user_to_group(ctx, group_id, user_id)
    return no_content()


@router.head("/v3/groups/{group_id}/users/{user_id}")
@router.get("/v3/groups/{group_id}/users/{user_id}")
def check_user_in_group(group_id: str, user_id: str, ctx: Ctx) -> Response:
    group = identity_service.get_group(ctx, group_id)
    ctx.authorize("identity:check_user_in_group", _group_target(group))
    if not identity_service.is_user_in_group(ctx, group_id, user_id):
        raise errors.NotFound(f"User {user_id} is not a member of group {group_id}.")
    return no_content()


@router.delete("/v3/groups/{group_id}/users/{user_id}")
def remove_user_from_group(group_id: str, user_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:remove_user_from_group", {"target": {"group": {"id": group_id}}})
    identity_service.remove_user_from_group(ctx, group_id, user_id)
    return no_content()


# Roles --------------------------------------------------------------------------------


def _role_fields(
    spec: schemas.RoleCreate | schemas.RoleUpdate,
) -> tuple[dict[str, Any], dict[str, Any]]:
    known, extra = spec.split()
    if "options" in known:
        known["options"] = {k: v for k, v in (known["options"] or {}).items() if v is not None}
    return known, extra


@router.post("/v3/roles")
def create_role(request: Request, body: schemas.RoleCreateBody, ctx: Ctx) -> Response:
    ctx.authorize("identity:create_role")
    known, extra = _role_fields(body.role)
    role = identity_service.create_role(ctx, known, extra)
    return ok({"role": schemas.role_view(role, base_of(request))}, status=201)


@router.get("/v3/roles")
def list_roles(request: Request, ctx: Ctx) -> Response:
    ctx.authorize("identity:list_roles")
    filters = query_filters(request, {"name": str, "domain_id": str})
    base = base_of(request)
    roles = identity_service.list_roles(ctx, filters)
    return ok(
        schemas.collection("roles", [schemas.role_view(r, base) for r in roles], f"{base}/v3/roles")
    )


@router.get("/v3/roles/{role_id}")
def get_role(request: Request, role_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:get_role")
    return ok(
        {"role": schemas.role_view(identity_service.get_role(ctx, role_id), base_of(request))}
    )


@router.patch("/v3/roles/{role_id}")
def update_role(request: Request, role_id: str, body: schemas.RoleUpdateBody, ctx: Ctx) -> Response:
    ctx.authorize("identity:update_role")
    known, extra = _role_fields(body.role)
    role = identity_service.update_role(ctx, role_id, known, extra)
    return ok({"role": schemas.role_view(role, base_of(request))})


@router.delete("/v3/roles/{role_id}")
def delete_role(role_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:delete_role")
    identity_service.delete_role(ctx, role_id)
    return no_content()


def _inference(request: Request, prior: Any, implied: Any) -> dict[str, Any]:
    base = base_of(request)
    return {
        "role_inference": {
            "prior_role": schemas.role_ref_view(prior, base),
            "implies": schemas.role_ref_view(implied, base),
        },
        "links": {"self": f"{base}/v3/roles/{prior.id}/implies/{implied.id}"},
    }


@router.put("/v3/roles/{prior_id}/implies/{implied_id}")
def create_implied_role(request: Request, prior_id: str, implied_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:create_implied_role")
    prior, implied = identity_service.create_implied_role(ctx, prior_id, implied_id)
    return ok(_inference(request, prior, implied), status=201)


@router.get("/v3/roles/{prior_id}/implies/{implied_id}")
def get_implied_role(request: Request, prior_id: str, implied_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:get_implied_role")
    prior, implied = identity_service.get_implied_role(ctx, prior_id, implied_id)
    return ok(_inference(request, prior, implied))


@router.head("/v3/roles/{prior_id}/implies/{implied_id}")
def check_implied_role(prior_id: str, implied_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:get_implied_role")
    identity_service.get_implied_role(ctx, prior_id, implied_id)
    return no_content()


@router.delete("/v3/roles/{prior_id}/implies/{implied_id}")
def delete_implied_role(prior_id: str, implied_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:delete_implied_role")
    identity_service.delete_implied_role(ctx, prior_id, implied_id)
    return no_content()


def _inference_list(request: Request, prior: Any, implied: list[Any]) -> dict[str, Any]:
    base = base_of(request)
    return {
        "prior_role": schemas.role_ref_view(prior, base),
        "implies": [schemas.role_ref_view(r, base) for r in implied],
    }


@router.get("/v3/roles/{prior_id}/implies")
def list_implied_roles(request: Request, prior_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:list_implied_roles")
    [(prior, implied)] = identity_service.list_implied_roles(ctx, prior_id)
    return ok(
        {
            "role_inference": _inference_list(request, prior, implied),
            "links": {"self": f"{base_of(request)}/v3/roles/{prior_id}/implies"},
        }
    )


@router.get("/v3/role_inferences")
def list_role_inferences(request: Request, ctx: Ctx) -> Response:
    ctx.authorize("identity:list_role_inference_rules")
    rules = identity_service.list_implied_roles(ctx)
    return ok(
        {
            "role_inferences": [_inference_list(request, p, i) for p, i in rules],
            "links": {"self": f"{base_of(request)}/v3/role_inferences"},
        }
    )


# Grants -------------------------------------------------------------------------------

_TARGETS = {"projects": "project", "domains": "domain"}
_ACTORS = {"users": "user", "groups": "group"}


def _grant(
    targets: str, target_id: str, actors: str, actor_id: str, role_id: str, inherited: bool = False
) -> identity_service.Grant:
    if targets not in _TARGETS or actors not in _ACTORS:
        raise errors.NotFound("The resource could not be found.")
    return identity_service.Grant(
        _ACTORS[actors], actor_id, _TARGETS[targets], target_id, role_id, inherited
    )


def _grant_target(grant: identity_service.Grant) -> dict[str, Any]:
    target: dict[str, Any] = {grant.target_type: {"id": grant.target_id}}
    if grant.target_type == "domain":
        target["domain_id"] = grant.target_id
    return {"target": target}


@router.put("/v3/{targets}/{target_id}/{actors}/{actor_id}/roles/{role_id}")
def create_grant(
    targets: str, target_id: str, actors: str, actor_id: str, role_id: str, ctx: Ctx
) -> Response:
    grant = _grant(targets, target_id, actors, actor_id, role_id)
    ctx.authorize("identity:create_grant", _grant_target(grant))
    identity_service.create_grant(ctx, grant)
    return no_content()


@router.head("/v3/{targets}/{target_id}/{actors}/{actor_id}/roles/{role_id}")
@router.get("/v3/{targets}/{target_id}/{actors}/{actor_id}/roles/{role_id}")
def check_grant(
    targets: str, target_id: str, actors: str, actor_id: str, role_id: str, ctx: Ctx
) -> Response:
    grant = _grant(targets, target_id, actors, actor_id, role_id)
    ctx.authorize("identity:check_grant", _grant_target(grant))
    identity_service.check_grant(ctx, grant)
    return no_content()


@router.delete("/v3/{targets}/{target_id}/{actors}/{actor_id}/roles/{role_id}")
def revoke_grant(
    targets: str, target_id: str, actors: str, actor_id: str, role_id: str, ctx: Ctx
) -> Response:
    grant = _grant(targets, target_id, actors, actor_id, role_id)
    ctx.authorize("identity:revoke_grant", _grant_target(grant))
    identity_service.delete_grant(ctx, grant)
    return no_content()


@router.get("/v3/{targets}/{target_id}/{actors}/{actor_id}/roles")
def list_grants(
    request: Request, targets: str, target_id: str, actors: str, actor_id: str, ctx: Ctx
) -> Response:
    grant = _grant(targets, target_id, actors, actor_id, "")
    ctx.authorize("identity:list_grants", _grant_target(grant))
    base = base_of(request)
    roles = identity_service.list_grant_roles(
        ctx, grant.actor_type, actor_id, grant.target_type, target_id
    )
    return ok(
        schemas.collection(
            "roles",
            [schemas.role_view(r, base) for r in roles],
            f"{base}/v3/{targets}/{target_id}/{actors}/{actor_id}/roles",
        )
    )


_INHERITED = "/v3/OS-INHERIT/{targets}/{target_id}/{actors}/{actor_id}/roles"


@router.put(_INHERITED + "/{role_id}/inherited_to_projects")
def create_inherited_grant(
    targets: str, target_id: str, actors: str, actor_id: str, role_id: str, ctx: Ctx
) -> Response:
    grant = _grant(targets, target_id, actors, actor_id, role_id, inherited=True)
    ctx.authorize("identity:create_grant", _grant_target(grant))
    identity_service.create_grant(ctx, grant)
    return no_content()


@router.head(_INHERITED + "/{role_id}/inherited_to_projects")
@router.get(_INHERITED + "/{role_id}/inherited_to_projects")
def check_inherited_grant(
    targets: str, target_id: str, actors: str, actor_id: str, role_id: str, ctx: Ctx
) -> Response:
    grant = _grant(targets, target_id, actors, actor_id, role_id, inherited=True)
    ctx.authorize("identity:check_grant", _grant_target(grant))
    identity_service.check_grant(ctx, grant)
    return no_content()


@router.delete(_INHERITED + "/{role_id}/inherited_to_projects")
def revoke_inherited_grant(
    targets: str, target_id: str, actors: str, actor_id: str, role_id: str, ctx: Ctx
) -> Response:
    grant = _grant(targets, target_id, actors, actor_id, role_id, inherited=True)
    ctx.authorize("identity:revoke_grant", _grant_target(grant))
    identity_service.delete_grant(ctx, grant)
    return no_content()


@router.get(_INHERITED + "/inherited_to_projects")
def list_inherited_grants(
    request: Request, targets: str, target_id: str, actors: str, actor_id: str, ctx: Ctx
) -> Response:
    grant = _grant(targets, target_id, actors, actor_id, "", inherited=True)
    ctx.authorize("identity:list_grants", _grant_target(grant))
    base = base_of(request)
    roles = identity_service.list_grant_roles(
        ctx, grant.actor_type, actor_id, grant.target_type, target_id, inherited=True
    )
    return ok(
        schemas.collection(
            "roles",
            [schemas.role_view(r, base) for r in roles],
            f"{base}/v3/OS-INHERIT/{targets}/{target_id}/{actors}/{actor_id}/roles"
            "/inherited_to_projects",
        )
    )


@router.put("/v3/system/{actors}/{actor_id}/roles/{role_id}")
def create_system_grant(actors: str, actor_id: str, role_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:create_system_grant")
    identity_service.create_grant(ctx, _system_grant(actors, actor_id, role_id))
    return no_content()


def _system_grant(actors: str, actor_id: str, role_id: str) -> identity_service.Grant:
    if actors not in _ACTORS:
        raise errors.NotFound("The resource could not be found.")
    return identity_service.Grant(
        _ACTORS[actors], actor_id, "system", identity_service.SYSTEM_TARGET, role_id
    )


@router.head("/v3/system/{actors}/{actor_id}/roles/{role_id}")
@router.get("/v3/system/{actors}/{actor_id}/roles/{role_id}")
def check_system_grant(actors: str, actor_id: str, role_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:check_system_grant")
    identity_service.check_grant(ctx, _system_grant(actors, actor_id, role_id))
    return no_content()


@router.delete("/v3/system/{actors}/{actor_id}/roles/{role_id}")
def revoke_system_grant(actors: str, actor_id: str, role_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:revoke_system_grant")
    identity_service.delete_grant(ctx, _system_grant(actors, actor_id, role_id))
    return no_content()


@router.get("/v3/system/{actors}/{actor_id}/roles")
def list_system_grants(request: Request, actors: str, actor_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:list_system_grants")
    grant = _system_grant(actors, actor_id, "")
    base = base_of(request)
    roles = identity_service.list_grant_roles(
        ctx, grant.actor_type, actor_id, "system", identity_service.SYSTEM_TARGET
    )
    return ok(
        schemas.collection(
            "roles",
            [schemas.role_view(r, base) for r in roles],
            f"{base}/v3/system/{actors}/{actor_id}/roles",
        )
    )


@router.get("/v3/role_assignments")
def list_role_assignments(request: Request, ctx: Ctx) -> Response:
    params = request.query_params
    query = identity_service.AssignmentQuery(
        user_id=params.get("user.id"),
        group_id=params.get("group.id"),
        role_id=params.get("role.id"),
        project_id=params.get("scope.project.id"),
        domain_id=params.get("scope.domain.id"),
        system=params.get("scope.system") == "all",
        inherited_only="scope.OS-INHERIT:inherited_to" in params,
        effective=_flag(request, "effective"),
        include_subtree=_flag(request, "include_subtree"),
    )
    if query.include_subtree:
        if not query.project_id:
            raise errors.Invalid("include_subtree needs scope.project.id.")
        ctx.authorize(
            "identity:list_role_assignments_for_tree",
            {"target": {"project": {"id": query.project_id}}},
        )
    else:
        ctx.authorize("identity:list_role_assignments", {"target": {"domain_id": query.domain_id}})
    if query.effective and query.group_id:
        raise errors.Invalid("effective and group.id cannot be combined.")
    grants = identity_service.list_assignments(ctx, query)
    names = _assignment_names(ctx, grants) if _flag(request, "include_names") else None
    base = base_of(request)
    return ok(
        schemas.collection(
            "role_assignments",
            [schemas.grant_view(g, base, names) for g in grants],
            f"{base}/v3/role_assignments",
        )
    )


def _assignment_names(
    ctx: RequestContext, grants: list[identity_service.Grant]
) -> dict[str, dict[str, Any]]:
    """Names (and domains) for every id appearing in the assignments."""
    domains = {d.id: d for d in identity_service.list_domains(ctx, {})}

    def domain_ref(domain_id: str | None) -> dict[str, Any]:
        d = domains.get(domain_id or "")
        return {"id": domain_id, "name": d.name if d else None}

    names: dict[str, dict[str, Any]] = {
        "role": {},
        "user": {},
        "group": {},
        "project": {},
        "domain": {},
    }
    roles = identity_service.role_names(ctx, {g.role_id for g in grants})
    for rid, role in roles.items():
        entry: dict[str, Any] = {"name": role.name}
        if role.domain_id:
            entry["domain"] = domain_ref(role.domain_id)
        names["role"][rid] = entry
    lookups: dict[str, Callable[[RequestContext, str], Any]] = {
        "user": identity_service.get_user,
        "group": identity_service.get_group,
        "project": identity_service.get_project,
    }
    for grant in grants:
        for kind, key in ((grant.actor_type, grant.actor_id), (grant.target_type, grant.target_id)):
            if kind == "system" or key in names[kind]:
                continue
            if kind == "domain":
                names["domain"][key] = {"name": domain_ref(key)["name"]}
                continue
            try:
                row = lookups[kind](ctx, key)
            except errors.NotFound:
                continue
            names[kind][key] = {"name": row.name, "domain": domain_ref(row.domain_id)}
    return names


# Regions, services, endpoints ------------------------------------------------------------


@router.post("/v3/regions")
def create_region(request: Request, body: schemas.RegionCreateBody, ctx: Ctx) -> Response:
    ctx.authorize("identity:create_region")
    known, extra = body.region.split()
    region_id = known.pop("id", None)
    region = identity_service.create_region(ctx, region_id, known, extra)
    return ok({"region": schemas.region_view(region, base_of(request))}, status=201)


@router.put("/v3/regions/{region_id}")
def create_region_with_id(
    request: Request, region_id: str, body: schemas.RegionCreateBody, ctx: Ctx
) -> Response:
    ctx.authorize("identity:create_region")
    known, extra = body.region.split()
    if known.pop("id", region_id) != region_id:
        raise errors.Invalid("The region id in the body does not match the URL.")
    region = identity_service.create_region(ctx, region_id, known, extra)
    return ok({"region": schemas.region_view(region, base_of(request))}, status=201)


@router.get("/v3/regions")
def list_regions(request: Request, ctx: Ctx) -> Response:
    ctx.authorize("identity:list_regions")
    base = base_of(request)
    regions = identity_service.list_regions(ctx, query_filters(request, {"parent_region_id": str}))
    return ok(
        schemas.collection(
            "regions", [schemas.region_view(r, base) for r in regions], f"{base}/v3/regions"
        )
    )


@router.get("/v3/regions/{region_id}")
def get_region(request: Request, region_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:get_region")
    region = identity_service.get_region(ctx, region_id)
    return ok({"region": schemas.region_view(region, base_of(request))})


@router.patch("/v3/regions/{region_id}")
def update_region(
    request: Request, region_id: str, body: schemas.RegionUpdateBody, ctx: Ctx
) -> Response:
    ctx.authorize("identity:update_region")
    known, extra = body.region.split()
    region = identity_service.update_region(ctx, region_id, known, extra)
    return ok({"region": schemas.region_view(region, base_of(request))})


@router.delete("/v3/regions/{region_id}")
def delete_region(region_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:delete_region")
    identity_service.delete_region(ctx, region_id)
    return no_content()


@router.post("/v3/services")
def create_service(request: Request, body: schemas.ServiceCreateBody, ctx: Ctx) -> Response:
    ctx.authorize("identity:create_service")
    known, extra = body.service.split()
    service = identity_service.create_service(ctx, known, extra)
    return ok({"service": schemas.service_view(service, base_of(request))}, status=201)


@router.get("/v3/services")
def list_services(request: Request, ctx: Ctx) -> Response:
    ctx.authorize("identity:list_services")
    base = base_of(request)
    services = identity_service.list_services(
        ctx, query_filters(request, {"type": str, "name": str})
    )
    return ok(
        schemas.collection(
            "services", [schemas.service_view(s, base) for s in services], f"{base}/v3/services"
        )
    )


@router.get("/v3/services/{service_id}")
def get_service(request: Request, service_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:get_service")
    service = identity_service.get_service(ctx, service_id)
    return ok({"service": schemas.service_view(service, base_of(request))})


@router.patch("/v3/services/{service_id}")
def update_service(
    request: Request, service_id: str, body: schemas.ServiceUpdateBody, ctx: Ctx
) -> Response:
    ctx.authorize("identity:update_service")
    known, extra = body.service.split()
    service = identity_service.update_service(ctx, service_id, known, extra)
    return ok({"service": schemas.service_view(service, base_of(request))})


@router.delete("/v3/services/{service_id}")
def delete_service(service_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:delete_service")
    identity_service.delete_service(ctx, service_id)
    return no_content()


def _endpoint_fields(
    spec: schemas.EndpointCreate | schemas.EndpointUpdate,
) -> tuple[dict[str, Any], dict[str, Any]]:
    known, extra = spec.split()
    legacy_region = known.pop("region", None)
    if legacy_region and not known.get("region_id"):
        known["region_id"] = legacy_region
    return known, extra


@router.post("/v3/endpoints")
def create_endpoint(request: Request, body: schemas.EndpointCreateBody, ctx: Ctx) -> Response:
    ctx.authorize("identity:create_endpoint")
    known, extra = _endpoint_fields(body.endpoint)
    endpoint = identity_service.create_endpoint(ctx, known, extra)
    return ok({"endpoint": schemas.endpoint_view(endpoint, base_of(request))}, status=201)


@router.get("/v3/endpoints")
def list_endpoints(request: Request, ctx: Ctx) -> Response:
    ctx.authorize("identity:list_endpoints")
    base = base_of(request)
    filters = query_filters(request, {"interface": str, "service_id": str, "region_id": str})
    endpoints = identity_service.list_endpoints(ctx, filters)
    return ok(
        schemas.collection(
            "endpoints", [schemas.endpoint_view(e, base) for e in endpoints], f"{base}/v3/endpoints"
        )
    )


@router.get("/v3/endpoints/{endpoint_id}")
def get_endpoint(request: Request, endpoint_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:get_endpoint")
    endpoint = identity_service.get_endpoint(ctx, endpoint_id)
    return ok({"endpoint": schemas.endpoint_view(endpoint, base_of(request))})


@router.patch("/v3/endpoints/{endpoint_id}")
def update_endpoint(
    request: Request, endpoint_id: str, body: schemas.EndpointUpdateBody, ctx: Ctx
) -> Response:
    ctx.authorize("identity:update_endpoint")
    known, extra = _endpoint_fields(body.endpoint)
    endpoint = identity_service.update_endpoint(ctx, endpoint_id, known, extra)
    return ok({"endpoint": schemas.endpoint_view(endpoint, base_of(request))})


@router.delete("/v3/endpoints/{endpoint_id}")
def delete_endpoint(endpoint_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:delete_endpoint")
    identity_service.delete_endpoint(ctx, endpoint_id)
    return no_content()


# Credentials ----------------------------------------------------------------------------


def _credential_target(credential: Any) -> dict[str, Any]:
    return {"target": {"credential": {"user_id": credential.user_id}}}


@router.post("/v3/credentials")
def create_credential(request: Request, body: schemas.CredentialCreateBody, ctx: Ctx) -> Response:
    ctx.authorize("identity:create_credential", _credential_target(body.credential))
    known, extra = body.credential.split()
    credential = identity_service.create_credential(ctx, known, extra)
    return ok({"credential": schemas.credential_view(credential, base_of(request))}, status=201)


@router.get("/v3/credentials")
def list_credentials(request: Request, ctx: Ctx) -> Response:
    filters = query_filters(request, {"user_id": str, "type": str})
    if not ctx.can("identity:list_credentials", {"target": {"credential": {"user_id": None}}}):
        filters["user_id"] = _auth_of(ctx).user_id
    base = base_of(request)
    credentials = identity_service.list_credentials(ctx, filters)
    return ok(
        schemas.collection(
            "credentials",
            [schemas.credential_view(c, base) for c in credentials],
            f"{base}/v3/credentials",
        )
    )


@router.get("/v3/credentials/{credential_id}")
def get_credential(request: Request, credential_id: str, ctx: Ctx) -> Response:
    credential = identity_service.get_credential(ctx, credential_id)
    ctx.authorize("identity:get_credential", _credential_target(credential))
    return ok({"credential": schemas.credential_view(credential, base_of(request))})


@router.patch("/v3/credentials/{credential_id}")
def update_credential(
    request: Request, credential_id: str, body: schemas.CredentialUpdateBody, ctx: Ctx
) -> Response:
    ctx.authorize(
        "identity:update_credential",
        _credential_target(identity_service.get_credential(ctx, credential_id)),
    )
    known, extra = body.credential.split()
    credential = identity_service.update_credential(ctx, credential_id, known, extra)
    return ok({"credential": schemas.credential_view(credential, base_of(request))})


@router.delete("/v3/credentials/{credential_id}")
def delete_credential(credential_id: str, ctx: Ctx) -> Response:
    ctx.authorize(
        "identity:delete_credential",
        _credential_target(identity_service.get_credential(ctx, credential_id)),
    )
    identity_service.delete_credential(ctx, credential_id)
    return no_content()


# Policies, endpoint groups, OAuth1 consumers ------------------------------------------


@router.post("/v3/policies")
def create_policy(request: Request, body: schemas.PolicyCreateBody, ctx: Ctx) -> Response:
    ctx.authorize("identity:create_policy")
    known, extra = body.policy.split()
    policy = identity_service.create_policy(ctx, known, extra)
    return ok({"policy": schemas.policy_view(policy, base_of(request))}, status=201)


@router.get("/v3/policies")
def list_policies(request: Request, ctx: Ctx) -> Response:
    ctx.authorize("identity:list_policies")
    base = base_of(request)
    policies = identity_service.list_policies(ctx, query_filters(request, {"type": str}))
    return ok(
        schemas.collection(
            "policies", [schemas.policy_view(p, base) for p in policies], f"{base}/v3/policies"
        )
    )


@router.get("/v3/policies/{policy_id}")
def get_policy(request: Request, policy_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:get_policy")
    policy = identity_service.get_policy(ctx, policy_id)
    return ok({"policy": schemas.policy_view(policy, base_of(request))})


@router.patch("/v3/policies/{policy_id}")
def update_policy(
    request: Request, policy_id: str, body: schemas.PolicyUpdateBody, ctx: Ctx
) -> Response:
    ctx.authorize("identity:update_policy")
    known, extra = body.policy.split()
    policy = identity_service.update_policy(ctx, policy_id, known, extra)
    return ok({"policy": schemas.policy_view(policy, base_of(request))})


@router.delete("/v3/policies/{policy_id}")
def delete_policy(policy_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:delete_policy")
    identity_service.delete_policy(ctx, policy_id)
    return no_content()


_EP_GROUPS = "/v3/OS-EP-FILTER/endpoint_groups"


@router.post(_EP_GROUPS)
def create_endpoint_group(
    request: Request, body: schemas.EndpointGroupCreateBody, ctx: Ctx
) -> Response:
    ctx.authorize("identity:create_endpoint_group")
    group = identity_service.create_endpoint_group(
        ctx, body.endpoint_group.model_dump(exclude_unset=True)
    )
    return ok({"endpoint_group": schemas.endpoint_group_view(group, base_of(request))}, status=201)


@router.get(_EP_GROUPS)
def list_endpoint_groups(request: Request, ctx: Ctx) -> Response:
    ctx.authorize("identity:list_endpoint_groups")
    base = base_of(request)
    groups = identity_service.list_endpoint_groups(ctx, query_filters(request, {"name": str}))
    return ok(
        schemas.collection(
            "endpoint_groups",
            [schemas.endpoint_group_view(g, base) for g in groups],
            base + _EP_GROUPS,
        )
    )


@router.get(_EP_GROUPS + "/{group_id}")
def get_endpoint_group(request: Request, group_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:get_endpoint_group")
    group = identity_service.get_endpoint_group(ctx, group_id)
    return ok({"endpoint_group": schemas.endpoint_group_view(group, base_of(request))})


@router.head(_EP_GROUPS + "/{group_id}")
def check_endpoint_group(group_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:get_endpoint_group")
    identity_service.get_endpoint_group(ctx, group_id)
    return Response(status_code=200)


@router.patch(_EP_GROUPS + "/{group_id}")
def update_endpoint_group(
    request: Request, group_id: str, body: schemas.EndpointGroupUpdateBody, ctx: Ctx
) -> Response:
    ctx.authorize("identity:update_endpoint_group")
    group = identity_service.update_endpoint_group(
        ctx, group_id, body.endpoint_group.model_dump(exclude_unset=True)
    )
    return ok({"endpoint_group": schemas.endpoint_group_view(group, base_of(request))})


@router.delete(_EP_GROUPS + "/{group_id}")
def delete_endpoint_group(group_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:delete_endpoint_group")
    identity_service.delete_endpoint_group(ctx, group_id)
    return no_content()


_CONSUMERS = "/v3/OS-OAUTH1/consumers"


@router.post(_CONSUMERS)
def create_consumer(request: Request, body: schemas.ConsumerCreateBody, ctx: Ctx) -> Response:
    ctx.authorize("identity:create_consumer")
    known, extra = body.consumer.split()
    secret = secrets.token_urlsafe(24)
    consumer = identity_service.create_consumer(ctx, known, extra, secret)
    view = schemas.consumer_view(consumer, base_of(request)) | {"secret": secret}
    return ok({"consumer": view}, status=201)


@router.get(_CONSUMERS)
def list_consumers(request: Request, ctx: Ctx) -> Response:
    ctx.authorize("identity:list_consumers")
    base = base_of(request)
    consumers = identity_service.list_consumers(ctx)
    return ok(
        schemas.collection(
            "consumers", [schemas.consumer_view(c, base) for c in consumers], base + _CONSUMERS
        )
    )


@router.get(_CONSUMERS + "/{consumer_id}")
def get_consumer(request: Request, consumer_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:get_consumer")
    consumer = identity_service.get_consumer(ctx, consumer_id)
    return ok({"consumer": schemas.consumer_view(consumer, base_of(request))})


@router.patch(_CONSUMERS + "/{consumer_id}")
def update_consumer(
    request: Request, consumer_id: str, body: schemas.ConsumerUpdateBody, ctx: Ctx
) -> Response:
    ctx.authorize("identity:update_consumer")
    known, extra = body.consumer.split()
    consumer = identity_service.update_consumer(ctx, consumer_id, known, extra)
    return ok({"consumer": schemas.consumer_view(consumer, base_of(request))})


@router.delete(_CONSUMERS + "/{consumer_id}")
def delete_consumer(consumer_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:delete_consumer")
    identity_service.delete_consumer(ctx, consumer_id)
    return no_content()


# Domain configuration -----------------------------------------------------------------


def _default_config_part(group: str | None, option: str | None) -> dict[str, Any]:
    defaults = identity_service.DEFAULT_DOMAIN_CONFIG
    if group is None:
        return defaults
    if group not in defaults or (option is not None and option not in defaults[group]):
        raise errors.NotFound(f"No default configuration for {group}/{option or ''}.")
    return {option: defaults[group][option]} if option else {group: defaults[group]}


@router.get("/v3/domains/config/default")
def get_default_domain_config(ctx: Ctx) -> Response:
    ctx.authorize("identity:get_domain_config_default")
    return ok({"config": _default_config_part(None, None)})


@router.get("/v3/domains/config/{group}/default")
def get_default_domain_config_group(group: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:get_domain_config_default")
    return ok({"config": _default_config_part(group, None)})


@router.get("/v3/domains/config/{group}/{option}/default")
def get_default_domain_config_option(group: str, option: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:get_domain_config_default")
    return ok({"config": _default_config_part(group, option)})


@router.put("/v3/domains/{domain_id}/config")
def replace_domain_config(domain_id: str, body: schemas.DomainConfigBody, ctx: Ctx) -> Response:
    ctx.authorize("identity:create_domain_config")
    config, created = identity_service.replace_domain_config(ctx, domain_id, body.config)
    return ok({"config": config}, status=201 if created else 200)


def _config_path(request: Request) -> tuple[str | None, str | None]:
    """The optional group and option segments of the /config routes."""
    return request.path_params.get("group"), request.path_params.get("option")


def _config_part(config: dict[str, Any], group: str | None, option: str | None) -> dict[str, Any]:
    if group is None:
        return config
    if group not in config:
        raise errors.NotFound(f"Could not find group {group} in the domain configuration.")
    if option is None:
        return {group: config[group]}
    if option not in config[group]:
        raise errors.NotFound(f"Could not find option {option} in group {group}.")
    return {option: config[group][option]}


@router.get("/v3/domains/{domain_id}/config")
@router.get("/v3/domains/{domain_id}/config/{group}")
@router.get("/v3/domains/{domain_id}/config/{group}/{option}")
def get_domain_config(request: Request, domain_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:get_domain_config")
    group, option = _config_path(request)
    config = identity_service.get_domain_config(ctx, domain_id)
    return ok({"config": _config_part(config, group, option)})


@router.patch("/v3/domains/{domain_id}/config")
@router.patch("/v3/domains/{domain_id}/config/{group}")
@router.patch("/v3/domains/{domain_id}/config/{group}/{option}")
def update_domain_config(
    request: Request, domain_id: str, body: schemas.DomainConfigBody, ctx: Ctx
) -> Response:
    ctx.authorize("identity:update_domain_config")
    group, option = _config_path(request)
    update = {group: body.config} if option is not None and group is not None else body.config
    config = identity_service.merge_domain_config(ctx, domain_id, update, group, option)
    return ok({"config": config})


@router.delete("/v3/domains/{domain_id}/config")
@router.delete("/v3/domains/{domain_id}/config/{group}")
@router.delete("/v3/domains/{domain_id}/config/{group}/{option}")
def delete_domain_config(request: Request, domain_id: str, ctx: Ctx) -> Response:
    ctx.authorize("identity:delete_domain_config")
    group, option = _config_path(request)
    identity_service.delete_domain_config(ctx, domain_id, group, option)
    return no_content()


def create_app() -> FastAPI:
    """The identity ASGI app, mounted at /identity by core.app."""
    return app_mod.service_app(router, render_error)
