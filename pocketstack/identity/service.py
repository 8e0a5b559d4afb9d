"""Identity domain logic: domains, projects, users, groups, roles, grants, catalog.

API handlers and other services call these functions with a RequestContext;
every write runs in one transaction and bumps the identity revision, which
token validation and the caches in identity/auth.py compare against.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pocketstack.core import errors
from pocketstack.core.context import RequestContext
from pocketstack.core.db import Database
from pocketstack.identity import models, passwords

DEFAULT_DOMAIN_ID = "default"
SYSTEM_TARGET = "all"
INTERFACES = ("public", "internal", "admin")


def now() -> datetime:
    """Naive UTC, the form stored in every DateTime column."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_id() -> str:
    return uuid.uuid4().hex


def bump_revision(session: Session) -> None:
    """Mark that identity changed, so every worker drops its cached token views."""
    result = session.execute(
        update(models.Revision)
        .where(models.Revision.id == 1)
        .values(value=models.Revision.value + 1)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        session.add(models.Revision(id=1, value=1))


_REVISION_SQL = f"SELECT value FROM {models.Revision.__tablename__} WHERE id = 1"


def current_revision(ctx_db: Database) -> int:
    """The identity revision, read in the cheapest way: it is checked on every request."""
    return int(ctx_db.scalar_outside_transaction(_REVISION_SQL) or 0)


def _not_found(kind: str, key: str) -> errors.NotFound:
    return errors.NotFound(f"Could not find {kind}: {key}.")


def _get(session: Session, model: type[Any], key: str, kind: str) -> Any:
    row = session.get(model, key)
    if row is None:
        raise _not_found(kind, key)
    return row


def _flush_unique(session: Session, kind: str, detail: str) -> None:
    """Flush and turn a unique-constraint violation into Keystone's 409."""
    try:
        session.flush()
    except IntegrityError:
        raise errors.Conflict(
            f"Conflict occurred attempting to store {kind} - Duplicate entry found with {detail}."
        ) from None


def _apply_extra(row: Any, known: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in known.items():
        setattr(row, key, value)
    if extra:
        row.extra = {**(row.extra or {}), **extra}


INEXACT_OPERATORS = frozenset(
    (
        "contains",
        "icontains",
        "startswith",
        "istartswith",
        "endswith",
        "iendswith",
        "equals",
        "iequals",
    )
)


def _condition(column: Any, operator: str, value: Any) -> Any:
    if operator in ("", "equals"):
        return column == value
    if operator == "iequals":
        return func.lower(column) == str(value).lower()
    insensitive = operator.startswith("i")
    target = func.lower(column) if insensitive else column
    text = str(value).lower() if insensitive else str(value)
    method = operator[1:] if insensitive else operator
    return getattr(target, method)(text, autoescape=True)


def _filtered(stmt: Any, model: type[Any], filters: Mapping[str, Any]) -> Any:
    """Exact filters (`name`) and Keystone's inexact ones (`name__icontains`)."""
    for key, value in filters.items():
        if value is None:
            continue
        name, _, operator = key.partition("__")
        stmt = stmt.where(_condition(getattr(model, name), operator, value))
    return stmt


# Domains ------------------------------------------------------------------


def create_domain(
    ctx: RequestContext,
    fields: Mapping[str, Any],
    extra: Mapping[str, Any],
    domain_id: str | None = None,
) -> models.Domain:
    with ctx.db.write() as session:
        domain = models.Domain(id=domain_id or new_id(), enabled=True, extra={})
        _apply_extra(domain, fields, extra)
        session.add(domain)
        _flush_unique(session, "domain", f"name {domain.name}")
        bump_revision(session)
        return domain


def get_domain(ctx: RequestContext, domain_id: str) -> models.Domain:
    with ctx.db.read() as session:
        domain: models.Domain = _get(session, models.Domain, domain_id, "domain")
        return domain


def find_domain(session: Session, *, domain_id: str | None, name: str | None) -> models.Domain:
    if domain_id:
        return _get(session, models.Domain, domain_id, "domain")
    domain = session.scalar(select(models.Domain).where(models.Domain.name == name))
    if domain is None:
        raise _not_found("domain", str(name))
    return domain


def list_domains(ctx: RequestContext, filters: Mapping[str, Any]) -> list[models.Domain]:
    with ctx.db.read() as session:
        stmt = _filtered(select(models.Domain), models.Domain, filters)
        return list(session.scalars(stmt.order_by(models.Domain.name)))


def update_domain(
    ctx: RequestContext, domain_id: str, fields: Mapping[str, Any], extra: Mapping[str, Any]
) -> models.Domain:
    with ctx.db.write() as session:
        domain: models.Domain = _get(session, models.Domain, domain_id, "domain")
        if domain_id == DEFAULT_DOMAIN_ID and fields.get("enabled") is False:
            raise errors.Forbidden("The default domain cannot be disabled.")
        _apply_extra(domain, fields, extra)
        _flush_unique(session, "domain", f"name {domain.name}")
        if fields.get("enabled") is False:
            _revoke(session, domain_id=domain_id)
        bump_revision(session)
        return domain


def delete_domain(ctx: RequestContext, domain_id: str) -> None:
    with ctx.db.write() as session:
        _delete_domain(session, domain_id)
        bump_revision(session)


def _delete_domain(session: Session, domain_id: str) -> None:
    """Delete a disabled domain and everything in it: projects, users, groups, roles."""
    domain: models.Domain = _get(session, models.Domain, domain_id, "domain")
    if domain.enabled:
        raise errors.Forbidden(
            f"Cannot delete a domain that is enabled, please disable it first: {domain_id}."
        )
    project_ids = list(
        session.scalars(select(models.Project.id).where(models.Project.domain_id == domain_id))
    )
    user_ids = list(
        session.scalars(select(models.User.id).where(models.User.domain_id == domain_id))
    )
    group_ids = list(
        session.scalars(select(models.Group.id).where(models.Group.domain_id == domain_id))
    )
    _delete_projects(session, _bottom_up(session, project_ids))
    for user_id in user_ids:
        _delete_user_rows(session, user_id)
    for group_id in group_ids:
        _delete_group_rows(session, group_id)
    session.execute(delete(models.Role).where(models.Role.domain_id == domain_id))
    _delete_assignments_on(session, "domain", [domain_id])
    session.delete(domain)
    _revoke(session, domain_id=domain_id)


# Projects -----------------------------------------------------------------


def create_project(
    ctx: RequestContext, fields: Mapping[str, Any], extra: Mapping[str, Any], tags: Sequence[str]
) -> models.Project:
    """Create a project; with `is_domain` it is also a domain, sharing its id."""
    with ctx.db.write() as session:
        values = dict(fields)
        project_id = new_id()
        if values.get("is_domain"):
            if values.get("parent_id"):
                raise errors.Invalid("A project acting as a domain cannot have a parent.")
            session.add(
                models.Domain(
                    id=project_id,
                    name=values["name"],
                    description=values.get("description"),
                    enabled=values.get("enabled", True),
                    extra={},
                )
            )
            _flush_unique(session, "domain", f"name {values['name']}")
            values["domain_id"] = project_id
        values["domain_id"] = _project_domain(ctx, session, values)
        project = models.Project(id=project_id, enabled=True, is_domain=False, extra={})
        _apply_extra(project, values, extra)
        session.add(project)
        _flush_unique(session, "project", f"name {project.name} at domain ID {project.domain_id}")
        _set_tags(session, project.id, tags)
        bump_revision(session)
        return project


def _project_domain(ctx: RequestContext, session: Session, values: Mapping[str, Any]) -> str:
    """The domain a new project lands in: given, else its parent's, else the caller's."""
    parent: models.Project | None = None
    if values.get("parent_id"):
        parent = _get(session, models.Project, values["parent_id"], "project")
    domain_id: str = values.get("domain_id") or (
        parent.domain_id if parent else _default_domain_for(ctx)
    )
    if session.get(models.Domain, domain_id) is None:
        raise _not_found("domain", domain_id)
    if parent is not None and parent.domain_id != domain_id:
        raise errors.Invalid(
            "Cannot create project, the parent project is in a different domain "
            f"({parent.domain_id}) than the project ({domain_id})."
        )
    return domain_id


def _default_domain_for(ctx: RequestContext) -> str:
    auth = ctx.auth
    if auth is None:
        return DEFAULT_DOMAIN_ID
    return auth.domain_id or auth.project_domain_id or DEFAULT_DOMAIN_ID


def get_project(ctx: RequestContext, project_id: str) -> models.Project:
    with ctx.db.read() as session:
        project: models.Project = _get(session, models.Project, project_id, "project")
        return project


def find_project(
    session: Session, *, project_id: str | None, name: str | None, domain_id: str | None
) -> models.Project:
    if project_id:
        return _get(session, models.Project, project_id, "project")
    project = session.scalar(
        select(models.Project).where(
            models.Project.name == name, models.Project.domain_id == domain_id
        )
    )
    if project is None:
        raise _not_found("project", str(name))
    return project


def list_projects(
    ctx: RequestContext, filters: Mapping[str, Any], tags: TagFilter | None = None
) -> list[models.Project]:
    with ctx.db.read() as session:
        stmt = _filtered(select(models.Project), models.Project, filters)
        projects = list(session.scalars(stmt.order_by(models.Project.name)))
        if tags is not None and not tags.empty:
            by_project = project_tags(session, [p.id for p in projects])
            projects = [p for p in projects if tags.matches(by_project.get(p.id, []))]
        return projects


def update_project(
    ctx: RequestContext,
    project_id: str,
    fields: Mapping[str, Any],
    extra: Mapping[str, Any],
    tags: Sequence[str] | None,
) -> models.Project:
    with ctx.db.write() as session:
        project: models.Project = _get(session, models.Project, project_id, "project")
        if "domain_id" in fields and fields["domain_id"] != project.domain_id:
            raise errors.Invalid("Update of `domain_id` is not allowed.")
        if "parent_id" in fields and fields["parent_id"] != project.parent_id:
            raise errors.Forbidden("Update of `parent_id` is not allowed.")
        _apply_extra(
            project, {k: v for k, v in fields.items() if k not in ("domain_id", "parent_id")}, extra
        )
        _flush_unique(session, "project", f"name {project.name} at domain ID {project.domain_id}")
        if tags is not None:
            _set_tags(session, project_id, tags)
        if project.is_domain:
            twin: models.Domain = _get(session, models.Domain, project_id, "domain")
            twin.name, twin.enabled = project.name, project.enabled
            twin.description = project.description
        if fields.get("enabled") is False:
            _revoke(session, project_id=project_id)
        bump_revision(session)
        return project


def delete_project(ctx: RequestContext, project_id: str) -> None:
    with ctx.db.write() as session:
        project: models.Project = _get(session, models.Project, project_id, "project")
        if project.is_domain:
            _delete_domain(session, project_id)
            bump_revision(session)
            return
        child = session.scalar(
            select(models.Project.id).where(models.Project.parent_id == project_id).limit(1)
        )
        if child is not None:
            raise errors.Forbidden(
                f"Cannot delete the project {project_id} since it is not a leaf in the hierarchy."
            )
        _delete_projects(session, [project_id])
        bump_revision(session)


def _bottom_up(session: Session, project_ids: Sequence[str]) -> list[str]:
    """Order projects children first, so parent foreign keys never dangle."""
    parents = dict(
        session.execute(
            select(models.Project.id, models.Project.parent_id).where(
                models.Project.id.in_(project_ids)
            )
        ).all()
    )
    depth: dict[str, int] = {}

    def depth_of(pid: str) -> int:
        if pid not in depth:
            parent = parents.get(pid)
            depth[pid] = 0 if parent is None or parent not in parents else depth_of(parent) + 1
        return depth[pid]

    return sorted(project_ids, key=depth_of, reverse=True)


def _delete_projects(session: Session, project_ids: Sequence[str]) -> None:
    for project_id in project_ids:
        _delete_assignments_on(session, "project", [project_id])
        session.execute(delete(models.ProjectTag).where(models.ProjectTag.project_id == project_id))
        session.execute(delete(models.Project).where(models.Project.id == project_id))
        _revoke(session, project_id=project_id)


def project_parents(ctx: RequestContext, project: models.Project) -> list[models.Project]:
    """Ancestors, nearest first."""
    with ctx.db.read() as session:
        result = []
        parent_id = project.parent_id
        while parent_id:
            parent = session.get(models.Project, parent_id)
            if parent is None:
                break
            result.append(parent)
            parent_id = parent.parent_id
        return result


def project_subtree(ctx: RequestContext, project_id: str) -> list[models.Project]:
    """All descendants, breadth first."""
    with ctx.db.read() as session:
        return _descendants(session, project_id)


def _descendants(session: Session, project_id: str) -> list[models.Project]:
    result: list[models.Project] = []
    frontier = [project_id]
    while frontier:
        children = list(
            session.scalars(select(models.Project).where(models.Project.parent_id.in_(frontier)))
        )
        result.extend(children)
        frontier = [c.id for c in children]
    return result


# Project tags ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TagFilter:
    """Keystone's `tags`, `tags-any`, `not-tags`, `not-tags-any` list filters."""

    all_of: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()
    not_all_of: tuple[str, ...] = ()
    not_any_of: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.all_of or self.any_of or self.not_all_of or self.not_any_of)

    def matches(self, tags: Iterable[str]) -> bool:
        have = set(tags)
        if self.all_of and not set(self.all_of) <= have:
            return False
        if self.any_of and not have & set(self.any_of):
            return False
        if self.not_all_of and set(self.not_all_of) <= have:
            return False
        return not (self.not_any_of and have & set(self.not_any_of))


def project_tags(session: Session, project_ids: Sequence[str]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {pid: [] for pid in project_ids}
    rows = session.execute(
        select(models.ProjectTag.project_id, models.ProjectTag.name)
        .where(models.ProjectTag.project_id.in_(project_ids))
        .order_by(models.ProjectTag.name)
    )
    for project_id, name in rows:
        result[project_id].append(name)
    return result


def tags_of(ctx: RequestContext, project_ids: Sequence[str]) -> dict[str, list[str]]:
    with ctx.db.read() as session:
        return project_tags(session, project_ids)


def _set_tags(session: Session, project_id: str, tags: Sequence[str]) -> None:
    session.execute(delete(models.ProjectTag).where(models.ProjectTag.project_id == project_id))
    for name in dict.fromkeys(tags):
        session.add(models.ProjectTag(project_id=project_id, name=name))
    session.flush()


def replace_project_tags(ctx: RequestContext, project_id: str, tags: Sequence[str]) -> list[str]:
    with ctx.db.write() as session:
        _get(session, models.Project, project_id, "project")
        _set_tags(session, project_id, tags)
        bump_revision(session)
        return list(dict.fromkeys(tags))


def add_project_tag(ctx: RequestContext, project_id: str, tag: str) -> None:
    with ctx.db.write() as session:
        _get(session, models.Project, project_id, "project")
        existing = project_tags(session, [project_id])[project_id]
        if tag not in existing:
            if len(existing) >= 80:
                raise errors.Invalid("A project may have at most 80 tags.")
            session.add(models.ProjectTag(project_id=project_id, name=tag))
        bump_revision(session)


def remove_project_tag(ctx: RequestContext, project_id: str, tag: str) -> None:
    with ctx.db.write() as session:
        _get(session, models.Project, project_id, "project")
        result = session.execute(
            delete(models.ProjectTag).where(
                models.ProjectTag.project_id == project_id, models.ProjectTag.name == tag
            )
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise _not_found("project tag", tag)
        bump_revision(session)


def has_project_tag(ctx: RequestContext, project_id: str, tag: str) -> bool:
    with ctx.db.read() as session:
        _get(session, models.Project, project_id, "project")
        return tag in project_tags(session, [project_id])[project_id]


# Users ----------------------------------------------------------------------


def create_user(
    ctx: RequestContext, fields: Mapping[str, Any], extra: Mapping[str, Any]
) -> models.User:
    values = dict(fields)
    password = values.pop("password", None)
    hashed = _hash_password(ctx, password) if password is not None else None
    with ctx.db.write() as session:
        domain_id = values.get("domain_id") or _default_domain_for(ctx)
        values["domain_id"] = domain_id
        if session.get(models.Domain, domain_id) is None:
            raise _not_found("domain", domain_id)
        if values.get("default_project_id"):
            _get(session, models.Project, values["default_project_id"], "project")
        user = models.User(
            id=new_id(), enabled=True, extra={}, created_at=now(), password_hash=hashed
        )
        _apply_extra(user, values, extra)
        session.add(user)
        _flush_unique(session, "user", f"name {user.name} at domain ID {domain_id}")
        bump_revision(session)
        return user


def _hash_password(ctx: RequestContext, password: str) -> str:
    return passwords.hash_secret(password, ctx.runtime.settings.password_hash_rounds)


def get_user(ctx: RequestContext, user_id: str) -> models.User:
    with ctx.db.read() as session:
        user: models.User = _get(session, models.User, user_id, "user")
        return user


def find_user(
    session: Session, *, user_id: str | None, name: str | None, domain_id: str | None
) -> models.User | None:
    if user_id:
        return session.get(models.User, user_id)
    return session.scalar(
        select(models.User).where(models.User.name == name, models.User.domain_id == domain_id)
    )


def list_users(ctx: RequestContext, filters: Mapping[str, Any]) -> list[models.User]:
    with ctx.db.read() as session:
        stmt = _filtered(select(models.User), models.User, filters)
        return list(session.scalars(stmt.order_by(models.User.name)))


def update_user(
    ctx: RequestContext, user_id: str, fields: Mapping[str, Any], extra: Mapping[str, Any]
) -> models.User:
    values = dict(fields)
    password = values.pop("password", None)
    hashed = _hash_password(ctx, password) if password is not None else None
    with ctx.db.write() as session:
        user: models.User = _get(session, models.User, user_id, "user")
        if "domain_id" in values and values["domain_id"] != user.domain_id:
            raise errors.Invalid("Update of `domain_id` is not allowed.")
        if values.get("default_project_id"):
            _get(session, models.Project, values["default_project_id"], "project")
        _apply_extra(user, values, extra)
        if hashed is not None:
            user.password_hash = hashed
        _flush_unique(session, "user", f"name {user.name} at domain ID {user.domain_id}")
        if values.get("enabled") is False or hashed is not None:
            _revoke(session, user_id=user_id)
        bump_revision(session)
        return user


def change_password(
    ctx: RequestContext, user_id: str, original_password: str, new_password: str
) -> None:
    """Self-service password change: the old password proves it, old tokens die."""
    with ctx.db.read() as session:
        user: models.User = _get(session, models.User, user_id, "user")
        stored = user.password_hash
    if not passwords.verify_secret(original_password, stored):
        raise errors.Unauthorized("The request you have made requires authentication.")
    hashed = _hash_password(ctx, new_password)
    with ctx.db.write() as session:
        user = _get(session, models.User, user_id, "user")
        user.password_hash = hashed
        _revoke(session, user_id=user_id)
        bump_revision(session)


def delete_user(ctx: RequestContext, user_id: str) -> None:
    with ctx.db.write() as session:
        _get(session, models.User, user_id, "user")
        _delete_user_rows(session, user_id)
        bump_revision(session)


def _delete_user_rows(session: Session, user_id: str) -> None:
    session.execute(
        delete(models.Assignment).where(
            models.Assignment.actor_type == "user", models.Assignment.actor_id == user_id
        )
    )
    session.execute(delete(models.GroupMembership).where(models.GroupMembership.user_id == user_id))
    session.execute(
        delete(models.ApplicationCredential).where(models.ApplicationCredential.user_id == user_id)
    )
    session.execute(delete(models.Credential).where(models.Credential.user_id == user_id))
    session.execute(delete(models.User).where(models.User.id == user_id))
    _revoke(session, user_id=user_id)


# Groups ---------------------------------------------------------------------


def create_group(
    ctx: RequestContext, fields: Mapping[str, Any], extra: Mapping[str, Any]
) -> models.Group:
    with ctx.db.write() as session:
        values = dict(fields)
        domain_id = values.get("domain_id") or _default_domain_for(ctx)
        values["domain_id"] = domain_id
        if session.get(models.Domain, domain_id) is None:
            raise _not_found("domain", domain_id)
        group = models.Group(id=new_id(), extra={})
        _apply_extra(group, values, extra)
        session.add(group)
        _flush_unique(session, "group", f"name {group.name} at domain ID {domain_id}")
        bump_revision(session)
        return group


def get_group(ctx: RequestContext, group_id: str) -> models.Group:
    with ctx.db.read() as session:
        group: models.Group = _get(session, models.Group, group_id, "group")
        return group


def list_groups(ctx: RequestContext, filters: Mapping[str, Any]) -> list[models.Group]:
    with ctx.db.read() as session:
        stmt = _filtered(select(models.Group), models.Group, filters)
        return list(session.scalars(stmt.order_by(models.Group.name)))


def update_group(
    ctx: RequestContext, group_id: str, fields: Mapping[str, Any], extra: Mapping[str, Any]
) -> models.Group:
    with ctx.db.write() as session:
        group: models.Group = _get(session, models.Group, group_id, "group")
        if "domain_id" in fields and fields["domain_id"] != group.domain_id:
            raise errors.Invalid("Update of `domain_id` is not allowed.")
        _apply_extra(group, fields, extra)
        _flush_unique(session, "group", f"name {group.name} at domain ID {group.domain_id}")
        bump_revision(session)
        return group


def delete_group(ctx: RequestContext, group_id: str) -> None:
    with ctx.db.write() as session:
        _get(session, models.Group, group_id, "group")
        _delete_group_rows(session, group_id)
        bump_revision(session)


def _delete_group_rows(session: Session, group_id: str) -> None:
    session.execute(
        delete(models.Assignment).where(
            models.Assignment.actor_type == "group", models.Assignment.actor_id == group_id
        )
    )
    session.execute(
        delete(models.GroupMembership).where(models.GroupMembership.group_id == group_id)
    )
    session.execute(delete(models.Group).where(models.Group.id == group_id))


def add_user_to_group(ctx: RequestContext, group_id: str, user_id: str) -> None:
    with ctx.db.write() as session:
        _get(session, models.Group, group_id, "group")
        _get(session, models.User, user_id, "user")
        if session.get(models.GroupMembership, (group_id, user_id)) is None:
            session.add(models.GroupMembership(group_id=group_id, user_id=user_id))
        bump_revision(session)


def remove_user_from_group(ctx: RequestContext, group_id: str, user_id: str) -> None:
    with ctx.db.write() as session:
        _get(session, models.Group, group_id, "group")
        _get(session, models.User, user_id, "user")
        membership = session.get(models.GroupMembership, (group_id, user_id))
        if membership is None:
            raise errors.NotFound(f"User {user_id} is not a member of group {group_id}.")
        session.delete(membership)
        bump_revision(session)


def is_user_in_group(ctx: RequestContext, group_id: str, user_id: str) -> bool:
    with ctx.db.read() as session:
        _get(session, models.Group, group_id, "group")
        _get(session, models.User, user_id, "user")
        return session.get(models.GroupMembership, (group_id, user_id)) is not None


def list_group_users(
    ctx: RequestContext, group_id: str, filters: Mapping[str, Any]
) -> list[models.User]:
    with ctx.db.read() as session:
        _get(session, models.Group, group_id, "group")
        stmt = (
            select(models.User)
            .join(models.GroupMembership, models.GroupMembership.user_id == models.User.id)
            .where(models.GroupMembership.group_id == group_id)
        )
        stmt = _filtered(stmt, models.User, filters)
        return list(session.scalars(stmt.order_by(models.User.name)))


def list_user_groups(ctx: RequestContext, user_id: str) -> list[models.Group]:
    with ctx.db.read() as session:
        _get(session, models.User, user_id, "user")
        return _groups_of(session, user_id)


def _groups_of(session: Session, user_id: str) -> list[models.Group]:
    stmt = (
        select(models.Group)
        .join(models.GroupMembership, models.GroupMembership.group_id == models.Group.id)
        .where(models.GroupMembership.user_id == user_id)
    )
    return list(session.scalars(stmt.order_by(models.Group.name)))


# Roles ----------------------------------------------------------------------


def create_role(
    ctx: RequestContext, fields: Mapping[str, Any], extra: Mapping[str, Any]
) -> models.Role:
    with ctx.db.write() as session:
        values = dict(fields)
        values["domain_id"] = values.get("domain_id") or ""
        if values["domain_id"] and session.get(models.Domain, values["domain_id"]) is None:
            raise _not_found("domain", values["domain_id"])
        role = models.Role(id=new_id(), extra={}, options={})
        _apply_extra(role, values, extra)
        session.add(role)
        _flush_unique(session, "role", f"name {role.name}")
        bump_revision(session)
        return role


def get_role(ctx: RequestContext, role_id: str) -> models.Role:
    with ctx.db.read() as session:
        role: models.Role = _get(session, models.Role, role_id, "role")
        return role


def list_roles(ctx: RequestContext, filters: Mapping[str, Any]) -> list[models.Role]:
    with ctx.db.read() as session:
        values = dict(filters)
        values["domain_id"] = values.get("domain_id") or ""
        stmt = _filtered(select(models.Role), models.Role, values)
        return list(session.scalars(stmt.order_by(models.Role.name)))


def update_role(
    ctx: RequestContext, role_id: str, fields: Mapping[str, Any], extra: Mapping[str, Any]
) -> models.Role:
    with ctx.db.write() as session:
        role: models.Role = _get(session, models.Role, role_id, "role")
        if "domain_id" in fields and (fields["domain_id"] or "") != role.domain_id:
            raise errors.Invalid("Update of `domain_id` is not allowed.")
        _apply_extra(role, {k: v for k, v in fields.items() if k != "domain_id"}, extra)
        _flush_unique(session, "role", f"name {role.name}")
        bump_revision(session)
        return role


def delete_role(ctx: RequestContext, role_id: str) -> None:
    with ctx.db.write() as session:
        role: models.Role = _get(session, models.Role, role_id, "role")
        if role.options.get("immutable"):
            raise errors.Forbidden(f"Role {role_id} is immutable and cannot be deleted.")
        session.execute(delete(models.Assignment).where(models.Assignment.role_id == role_id))
        session.execute(
            delete(models.ImpliedRole).where(
                (models.ImpliedRole.prior_role_id == role_id)
                | (models.ImpliedRole.implied_role_id == role_id)
            )
        )
        session.delete(role)
        bump_revision(session)


def roles_by_id(session: Session, role_ids: Iterable[str]) -> dict[str, models.Role]:
    ids = list(set(role_ids))
    if not ids:
        return {}
    return {r.id: r for r in session.scalars(select(models.Role).where(models.Role.id.in_(ids)))}


def role_names(ctx: RequestContext, role_ids: Iterable[str]) -> dict[str, models.Role]:
    with ctx.db.read() as session:
        return roles_by_id(session, role_ids)


def find_role(session: Session, *, role_id: str | None, name: str | None) -> models.Role:
    if role_id:
        return _get(session, models.Role, role_id, "role")
    role = session.scalar(
        select(models.Role).where(models.Role.name == name, models.Role.domain_id == "")
    )
    if role is None:
        raise _not_found("role", str(name))
    return role


# Implied roles ----------------------------------------------------------------


def create_implied_role(
    ctx: RequestContext, prior_id: str, implied_id: str
) -> tuple[models.Role, models.Role]:
    with ctx.db.write() as session:
        prior: models.Role = _get(session, models.Role, prior_id, "role")
        implied: models.Role = _get(session, models.Role, implied_id, "role")
        if prior_id == implied_id or prior_id in implied_closure(session, [implied_id]):
            raise errors.Forbidden(
                f"{prior.name} cannot imply {implied.name}: the inference would make a cycle."
            )
        if implied.domain_id and not prior.domain_id:
            raise errors.Forbidden(
                f"The global role {prior.name} cannot imply the domain-specific role "
                f"{implied.name}."
            )
        if session.get(models.ImpliedRole, (prior_id, implied_id)) is None:
            session.add(models.ImpliedRole(prior_role_id=prior_id, implied_role_id=implied_id))
        bump_revision(session)
        return prior, implied


def get_implied_role(
    ctx: RequestContext, prior_id: str, implied_id: str
) -> tuple[models.Role, models.Role]:
    with ctx.db.read() as session:
        prior: models.Role = _get(session, models.Role, prior_id, "role")
        implied: models.Role = _get(session, models.Role, implied_id, "role")
        if session.get(models.ImpliedRole, (prior_id, implied_id)) is None:
            raise errors.NotFound(f"{prior_id} does not imply {implied_id}.")
        return prior, implied


def delete_implied_role(ctx: RequestContext, prior_id: str, implied_id: str) -> None:
    with ctx.db.write() as session:
        _get(session, models.Role, prior_id, "role")
        _get(session, models.Role, implied_id, "role")
        row = session.get(models.ImpliedRole, (prior_id, implied_id))
        if row is None:
            raise errors.NotFound(f"{prior_id} does not imply {implied_id}.")
        session.delete(row)
        bump_revision(session)


def list_implied_roles(
    ctx: RequestContext, prior_id: str | None = None
) -> list[tuple[models.Role, list[models.Role]]]:
    """(prior role, roles it directly implies) pairs, for one prior role or all."""
    with ctx.db.read() as session:
        if prior_id is not None:
            _get(session, models.Role, prior_id, "role")
        stmt = select(models.ImpliedRole)
        if prior_id is not None:
            stmt = stmt.where(models.ImpliedRole.prior_role_id == prior_id)
        rows = list(session.scalars(stmt))
        roles = roles_by_id(
            session, [r.prior_role_id for r in rows] + [r.implied_role_id for r in rows]
        )
        if prior_id is not None and prior_id not in roles:
            roles.update(roles_by_id(session, [prior_id]))
        grouped: dict[str, list[models.Role]] = {}
        if prior_id is not None:
            grouped[prior_id] = []
        for row in rows:
            grouped.setdefault(row.prior_role_id, []).append(roles[row.implied_role_id])
        return [(roles[pid], implied) for pid, implied in grouped.items()]


def _implication_map(session: Session) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for prior, implied in session.execute(
        select(models.ImpliedRole.prior_role_id, models.ImpliedRole.implied_role_id)
    ):
        graph.setdefault(prior, set()).add(implied)
    return graph


def implied_closure(session: Session, role_ids: Iterable[str]) -> set[str]:
    return expand_implied(_implication_map(session), role_ids)


def expand_implied(graph: Mapping[str, set[str]], role_ids: Iterable[str]) -> set[str]:
    """The roles plus every role they imply, transitively."""
    result = set(role_ids)
    frontier = list(result)
    while frontier:
        for implied in graph.get(frontier.pop(), ()):
            if implied not in result:
                result.add(implied)
                frontier.append(implied)
    return result


# Grants (role assignments) ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Grant:
    """One role assignment as the API names it."""

    actor_type: str  # "user" | "group"
    actor_id: str
    target_type: str  # "project" | "domain" | "system"
    target_id: str
    role_id: str
    inherited: bool = False
    via_group_id: str | None = None


def _check_grant_parts(session: Session, grant: Grant) -> models.Role:
    actor_model = models.User if grant.actor_type == "user" else models.Group
    _get(session, actor_model, grant.actor_id, grant.actor_type)
    if grant.target_type == "project":
        _get(session, models.Project, grant.target_id, "project")
    elif grant.target_type == "domain":
        _get(session, models.Domain, grant.target_id, "domain")
    role: models.Role = _get(session, models.Role, grant.role_id, "role")
    if role.domain_id and grant.target_type == "system":
        raise errors.Invalid("Domain-specific roles cannot be granted on the system.")
    return role


def _grant_key(grant: Grant) -> tuple[str, str, str, str, str, bool]:
    return (
        grant.actor_type,
        grant.actor_id,
        grant.target_type,
        grant.target_id,
        grant.role_id,
        grant.inherited,
    )


def create_grant(ctx: RequestContext, grant: Grant) -> None:
    with ctx.db.write() as session:
        _check_grant_parts(session, grant)
        if session.get(models.Assignment, _grant_key(grant)) is None:
            session.add(
                models.Assignment(
                    actor_type=grant.actor_type,
                    actor_id=grant.actor_id,
                    target_type=grant.target_type,
                    target_id=grant.target_id,
                    role_id=grant.role_id,
                    inherited=grant.inherited,
                )
            )
        bump_revision(session)


def check_grant(ctx: RequestContext, grant: Grant) -> None:
    with ctx.db.read() as session:
        _check_grant_parts(session, grant)
        if session.get(models.Assignment, _grant_key(grant)) is None:
            raise _grant_not_found(grant)


def _grant_not_found(grant: Grant) -> errors.NotFound:
    return errors.NotFound(
        f"Could not find role assignment with role: {grant.role_id}, {grant.actor_type}: "
        f"{grant.actor_id}, {grant.target_type}: {grant.target_id}."
    )


def delete_grant(ctx: RequestContext, grant: Grant) -> None:
    with ctx.db.write() as session:
        _check_grant_parts(session, grant)
        row = session.get(models.Assignment, _grant_key(grant))
        if row is None:
            raise _grant_not_found(grant)
        session.delete(row)
        if grant.actor_type == "user" and grant.target_type == "project":
            _revoke(session, user_id=grant.actor_id, project_id=grant.target_id)
        bump_revision(session)


def list_grant_roles(
    ctx: RequestContext,
    actor_type: str,
    actor_id: str,
    target_type: str,
    target_id: str,
    inherited: bool = False,
) -> list[models.Role]:
    with ctx.db.read() as session:
        actor_model = models.User if actor_type == "user" else models.Group
        _get(session, actor_model, actor_id, actor_type)
        if target_type == "project":
            _get(session, models.Project, target_id, "project")
        elif target_type == "domain":
            _get(session, models.Domain, target_id, "domain")
        stmt = (
            select(models.Role)
            .join(models.Assignment, models.Assignment.role_id == models.Role.id)
            .where(
                models.Assignment.actor_type == actor_type,
                models.Assignment.actor_id == actor_id,
                models.Assignment.target_type == target_type,
                models.Assignment.target_id == target_id,
                models.Assignment.inherited == inherited,
            )
        )
        return list(session.scalars(stmt.order_by(models.Role.name)))


def _delete_assignments_on(session: Session, target_type: str, target_ids: Sequence[str]) -> None:
    session.execute(
        delete(models.Assignment).where(
            models.Assignment.target_type == target_type,
            models.Assignment.target_id.in_(target_ids),
        )
    )


@dataclass(frozen=True, slots=True)
class AssignmentQuery:
    """The filters of GET /v3/role_assignments."""

    user_id: str | None = None
    group_id: str | None = None
    role_id: str | None = None
    project_id: str | None = None
    domain_id: str | None = None
    system: bool = False
    inherited_only: bool = False
    effective: bool = False
    include_subtree: bool = False


def list_assignments(ctx: RequestContext, query: AssignmentQuery) -> list[Grant]:
    """Role assignments as stored, or (effective) as they act on users after groups,
    inheritance and implied roles are applied."""
    with ctx.db.read() as session:
        stmt = select(models.Assignment)
        rows = list(session.scalars(stmt))
        grants = [
            Grant(r.actor_type, r.actor_id, r.target_type, r.target_id, r.role_id, r.inherited)
            for r in rows
        ]
        if query.effective:
            grants = _effective(session, grants)
        project_ids: set[str] | None = None
        if query.project_id:
            project_ids = {query.project_id}
            if query.include_subtree:
                project_ids |= {p.id for p in _descendants(session, query.project_id)}

        def keep(g: Grant) -> bool:
            if query.user_id and not (g.actor_type == "user" and g.actor_id == query.user_id):
                return False
            if query.group_id and not (g.actor_type == "group" and g.actor_id == query.group_id):
                return False
            if query.role_id and g.role_id != query.role_id:
                return False
            if project_ids is not None and not (
                g.target_type == "project" and g.target_id in project_ids
            ):
                return False
            if query.domain_id and not (
                g.target_type == "domain" and g.target_id == query.domain_id
            ):
                return False
            if query.system and g.target_type != "system":
                return False
            return not (query.inherited_only and not g.inherited)

        return [g for g in grants if keep(g)]


def _effective(session: Session, grants: list[Grant]) -> list[Grant]:
    """Expand groups into their users, inherited grants onto projects, and implied roles."""
    members: dict[str, list[str]] = {}
    for group_id, user_id in session.execute(
        select(models.GroupMembership.group_id, models.GroupMembership.user_id)
    ):
        members.setdefault(group_id, []).append(user_id)
    projects = list(
        session.execute(
            select(models.Project.id, models.Project.domain_id, models.Project.parent_id)
        )
    )
    graph = _implication_map(session)
    domain_roles = set(session.scalars(select(models.Role.id).where(models.Role.domain_id != "")))
    result: dict[tuple[Any, ...], Grant] = {}

    def emit(grant: Grant) -> None:
        # Domain-specific roles only carry implications; they never appear effective.
        for role_id in sorted(expand_implied(graph, [grant.role_id]) - domain_roles):
            g = Grant(
                grant.actor_type,
                grant.actor_id,
                grant.target_type,
                grant.target_id,
                role_id,
                False,
                grant.via_group_id,
            )
            result.setdefault(_grant_key(g), g)

    for grant in grants:
        targets: list[tuple[str, str]] = []
        if grant.inherited:
            if grant.target_type == "domain":
                targets = [("project", pid) for pid, did, _ in projects if did == grant.target_id]
            elif grant.target_type == "project":
                targets = [
                    ("project", pid)
                    for pid in _subtree_ids(projects, grant.target_id)
                    if pid != grant.target_id
                ]
        else:
            targets = [(grant.target_type, grant.target_id)]
        actors = (
            [(uid, grant.actor_id) for uid in members.get(grant.actor_id, [])]
            if grant.actor_type == "group"
            else [(grant.actor_id, None)]
        )
        for target_type, target_id in targets:
            for user_id, via in actors:
                emit(Grant("user", user_id, target_type, target_id, grant.role_id, False, via))
    return list(result.values())


def _subtree_ids(projects: Sequence[Any], root_id: str) -> set[str]:
    children: dict[str, list[str]] = {}
    for pid, _did, parent in projects:
        if parent:
            children.setdefault(parent, []).append(pid)
    result = {root_id}
    frontier = [root_id]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in result:
                result.add(child)
                frontier.append(child)
    return result


def effective_role_ids(
    session: Session, user_id: str, target_type: str, target_id: str
) -> set[str]:
    """The role ids a user holds on one target: direct, via groups, inherited, implied."""
    group_ids = list(
        session.scalars(
            select(models.GroupMembership.group_id).where(models.GroupMembership.user_id == user_id)
        )
    )
    actors = [("user", user_id)] + [("group", g) for g in group_ids]
    targets: list[tuple[str, str, bool]] = [(target_type, target_id, False)]
    if target_type == "project":
        project = session.get(models.Project, target_id)
        if project is not None:
            targets.append(("domain", project.domain_id, True))
            parent_id = project.parent_id
            while parent_id:
                targets.append(("project", parent_id, True))
                parent = session.get(models.Project, parent_id)
                parent_id = parent.parent_id if parent else None
    role_ids: set[str] = set()
    for actor_type, actor_id in actors:
        for t_type, t_id, inherited in targets:
            role_ids.update(
                session.scalars(
                    select(models.Assignment.role_id).where(
                        models.Assignment.actor_type == actor_type,
                        models.Assignment.actor_id == actor_id,
                        models.Assignment.target_type == t_type,
                        models.Assignment.target_id == t_id,
                        models.Assignment.inherited == inherited,
                    )
                )
            )
    domain_roles = set(session.scalars(select(models.Role.id).where(models.Role.domain_id != "")))
    return implied_closure(session, role_ids) - domain_roles


def user_projects(
    ctx: RequestContext, user_id: str, filters: Mapping[str, Any] | None = None
) -> list[models.Project]:
    """Projects on which the user holds any role (directly, via groups or inherited)."""
    with ctx.db.read() as session:
        _get(session, models.User, user_id, "user")
        group_ids = [g.id for g in _groups_of(session, user_id)]
        mine = select(models.Assignment).where(
            ((models.Assignment.actor_type == "user") & (models.Assignment.actor_id == user_id))
            | (
                (models.Assignment.actor_type == "group")
                & (models.Assignment.actor_id.in_(group_ids))
            )
        )
        grants = _effective(
            session,
            [
                Grant(a.actor_type, a.actor_id, a.target_type, a.target_id, a.role_id, a.inherited)
                for a in session.scalars(mine)
            ],
        )
        ids = {g.target_id for g in grants if g.actor_id == user_id and g.target_type == "project"}
        if not ids:
            return []
        stmt = _filtered(select(models.Project), models.Project, filters or {})
        stmt = stmt.where(models.Project.id.in_(ids))
        return list(session.scalars(stmt.order_by(models.Project.name)))


def user_domains(ctx: RequestContext, user_id: str) -> list[models.Domain]:
    with ctx.db.read() as session:
        group_ids = [g.id for g in _groups_of(session, user_id)]
        stmt = select(models.Assignment.target_id).where(
            models.Assignment.target_type == "domain",
            models.Assignment.inherited.is_(False),
            ((models.Assignment.actor_type == "user") & (models.Assignment.actor_id == user_id))
            | (
                (models.Assignment.actor_type == "group")
                & (models.Assignment.actor_id.in_(group_ids))
            ),
        )
        ids = set(session.scalars(stmt))
        if not ids:
            return []
        return list(
            session.scalars(
                select(models.Domain)
                .where(models.Domain.id.in_(ids), models.Domain.enabled.is_(True))
                .order_by(models.Domain.name)
            )
        )


def has_system_role(ctx: RequestContext, user_id: str) -> bool:
    with ctx.db.read() as session:
        return bool(effective_role_ids(session, user_id, "system", SYSTEM_TARGET))


# Simple catalog-like records ------------------------------------------------------
#
# Regions, services, endpoints, credentials, policies, endpoint groups and
# OAuth1 consumers are plain records: create, show, list with exact filters,
# patch, delete. These helpers are the one implementation they share.


def _create_row(
    ctx: RequestContext, row: Any, fields: Mapping[str, Any], extra: Mapping[str, Any], kind: str
) -> Any:
    with ctx.db.write() as session:
        _apply_extra(row, fields, extra)
        session.add(row)
        _flush_unique(session, kind, f"ID {row.id}")
        bump_revision(session)
        return row


def _show_row(ctx: RequestContext, model: type[Any], key: str, kind: str) -> Any:
    with ctx.db.read() as session:
        return _get(session, model, key, kind)


def _list_rows(
    ctx: RequestContext, model: type[Any], filters: Mapping[str, Any], order: Any
) -> list[Any]:
    with ctx.db.read() as session:
        return list(session.scalars(_filtered(select(model), model, filters).order_by(order)))


def _update_row(
    ctx: RequestContext,
    model: type[Any],
    key: str,
    kind: str,
    fields: Mapping[str, Any],
    extra: Mapping[str, Any],
) -> Any:
    with ctx.db.write() as session:
        row = _get(session, model, key, kind)
        _apply_extra(row, fields, extra)
        bump_revision(session)
        return row


def _delete_row(ctx: RequestContext, model: type[Any], key: str, kind: str) -> None:
    with ctx.db.write() as session:
        session.delete(_get(session, model, key, kind))
        bump_revision(session)


def create_region(
    ctx: RequestContext, region_id: str | None, fields: Mapping[str, Any], extra: Mapping[str, Any]
) -> models.Region:
    with ctx.db.write() as session:
        parent = fields.get("parent_region_id")
        if parent and session.get(models.Region, parent) is None:
            raise _not_found("region", parent)
        key = region_id or new_id()
        if session.get(models.Region, key) is not None:
            raise errors.Conflict(
                f"Conflict occurred attempting to store region - Duplicate ID, {key}."
            )
        region = models.Region(id=key, description="", extra={})
        _apply_extra(region, fields, extra)
        session.add(region)
        bump_revision(session)
        return region


def get_region(ctx: RequestContext, region_id: str) -> models.Region:
    return _show_row(ctx, models.Region, region_id, "region")


def list_regions(ctx: RequestContext, filters: Mapping[str, Any]) -> list[models.Region]:
    return _list_rows(ctx, models.Region, filters, models.Region.id)


def update_region(
    ctx: RequestContext, region_id: str, fields: Mapping[str, Any], extra: Mapping[str, Any]
) -> models.Region:
    parent = fields.get("parent_region_id")
    if parent:
        with ctx.db.read() as session:
            if session.get(models.Region, parent) is None:
                raise _not_found("region", parent)
            if parent == region_id or region_id in _region_ancestors(session, parent):
                raise errors.Invalid("The parent region would make a cycle.")
    return _update_row(ctx, models.Region, region_id, "region", fields, extra)


def _region_ancestors(session: Session, region_id: str) -> set[str]:
    seen: set[str] = set()
    current: str | None = region_id
    while current and current not in seen:
        seen.add(current)
        row = session.get(models.Region, current)
        current = row.parent_region_id if row else None
    return seen


def delete_region(ctx: RequestContext, region_id: str) -> None:
    with ctx.db.read() as session:
        child = session.scalar(
            select(models.Region.id).where(models.Region.parent_region_id == region_id).limit(1)
        )
    if child is not None:
        raise errors.Forbidden(f"Cannot delete region {region_id}: it has child regions.")
    _delete_row(ctx, models.Region, region_id, "region")


def create_service(
    ctx: RequestContext, fields: Mapping[str, Any], extra: Mapping[str, Any]
) -> models.Service:
    row = models.Service(id=new_id(), enabled=True, extra={})
    return _create_row(ctx, row, fields, extra, "service")


def get_service(ctx: RequestContext, service_id: str) -> models.Service:
    return _show_row(ctx, models.Service, service_id, "service")


def list_services(ctx: RequestContext, filters: Mapping[str, Any]) -> list[models.Service]:
    return _list_rows(ctx, models.Service, filters, models.Service.type)


def update_service(
    ctx: RequestContext, service_id: str, fields: Mapping[str, Any], extra: Mapping[str, Any]
) -> models.Service:
    return _update_row(ctx, models.Service, service_id, "service", fields, extra)


def delete_service(ctx: RequestContext, service_id: str) -> None:
    with ctx.db.write() as session:
        service = _get(session, models.Service, service_id, "service")
        session.execute(delete(models.Endpoint).where(models.Endpoint.service_id == service_id))
        session.delete(service)
        bump_revision(session)


def _prepare_endpoint_refs(ctx: RequestContext, fields: Mapping[str, Any]) -> None:
    """404 for an unknown service; a region named by an endpoint is created on the fly,
    as Keystone does."""
    with ctx.db.write() as session:
        service_id = fields.get("service_id")
        if service_id and session.get(models.Service, service_id) is None:
            raise _not_found("service", service_id)
        region_id = fields.get("region_id")
        if region_id and session.get(models.Region, region_id) is None:
            session.add(models.Region(id=region_id, description="", extra={}))


def create_endpoint(
    ctx: RequestContext, fields: Mapping[str, Any], extra: Mapping[str, Any]
) -> models.Endpoint:
    _prepare_endpoint_refs(ctx, fields)
    row = models.Endpoint(id=new_id(), enabled=True, extra={})
    return _create_row(ctx, row, fields, extra, "endpoint")


def get_endpoint(ctx: RequestContext, endpoint_id: str) -> models.Endpoint:
    return _show_row(ctx, models.Endpoint, endpoint_id, "endpoint")


def list_endpoints(ctx: RequestContext, filters: Mapping[str, Any]) -> list[models.Endpoint]:
    return _list_rows(ctx, models.Endpoint, filters, models.Endpoint.id)


def update_endpoint(
    ctx: RequestContext, endpoint_id: str, fields: Mapping[str, Any], extra: Mapping[str, Any]
) -> models.Endpoint:
    _prepare_endpoint_refs(ctx, fields)
    return _update_row(ctx, models.Endpoint, endpoint_id, "endpoint", fields, extra)


def delete_endpoint(ctx: RequestContext, endpoint_id: str) -> None:
    _delete_row(ctx, models.Endpoint, endpoint_id, "endpoint")


@dataclass(frozen=True, slots=True)
class CatalogEndpoint:
    id: str
    interface: str
    region_id: str | None
    url: str


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    id: str
    type: str
    name: str
    endpoints: tuple[CatalogEndpoint, ...]


def load_catalog(session: Session) -> list[CatalogEntry]:
    """Enabled services with their enabled endpoints, URL templates unexpanded."""
    services = list(
        session.scalars(
            select(models.Service)
            .where(models.Service.enabled.is_(True))
            .order_by(models.Service.type)
        )
    )
    endpoints: dict[str, list[CatalogEndpoint]] = {}
    for endpoint in session.scalars(
        select(models.Endpoint)
        .where(models.Endpoint.enabled.is_(True))
        .order_by(models.Endpoint.interface)
    ):
        endpoints.setdefault(endpoint.service_id, []).append(
            CatalogEndpoint(endpoint.id, endpoint.interface, endpoint.region_id, endpoint.url)
        )
    return [
        CatalogEntry(s.id, s.type, s.name or "", tuple(endpoints.get(s.id, ()))) for s in services
    ]


# Credentials, policies, endpoint groups, OAuth1 consumers ------------------------


def create_credential(
    ctx: RequestContext, fields: Mapping[str, Any], extra: Mapping[str, Any]
) -> models.Credential:
    if fields.get("project_id"):
        get_project(ctx, fields["project_id"])
    row = models.Credential(id=new_id(), extra={})
    return _create_row(ctx, row, fields, extra, "credential")


def get_credential(ctx: RequestContext, credential_id: str) -> models.Credential:
    return _show_row(ctx, models.Credential, credential_id, "credential")


def list_credentials(ctx: RequestContext, filters: Mapping[str, Any]) -> list[models.Credential]:
    return _list_rows(ctx, models.Credential, filters, models.Credential.id)


def update_credential(
    ctx: RequestContext, credential_id: str, fields: Mapping[str, Any], extra: Mapping[str, Any]
) -> models.Credential:
    return _update_row(ctx, models.Credential, credential_id, "credential", fields, extra)


def delete_credential(ctx: RequestContext, credential_id: str) -> None:
    _delete_row(ctx, models.Credential, credential_id, "credential")


def create_policy(
    ctx: RequestContext, fields: Mapping[str, Any], extra: Mapping[str, Any]
) -> models.Policy:
    row = models.Policy(id=new_id(), extra={})
    return _create_row(ctx, row, fields, extra, "policy")


def get_policy(ctx: RequestContext, policy_id: str) -> models.Policy:
    return _show_row(ctx, models.Policy, policy_id, "policy")


def list_policies(ctx: RequestContext, filters: Mapping[str, Any]) -> list[models.Policy]:
    return _list_rows(ctx, models.Policy, filters, models.Policy.id)


def update_policy(
    ctx: RequestContext, policy_id: str, fields: Mapping[str, Any], extra: Mapping[str, Any]
) -> models.Policy:
    return _update_row(ctx, models.Policy, policy_id, "policy", fields, extra)


def delete_policy(ctx: RequestContext, policy_id: str) -> None:
    _delete_row(ctx, models.Policy, policy_id, "policy")


def create_endpoint_group(ctx: RequestContext, fields: Mapping[str, Any]) -> models.EndpointGroup:
    row = models.EndpointGroup(id=new_id(), filters={})
    return _create_row(ctx, row, fields, {}, "endpoint group")


def get_endpoint_group(ctx: RequestContext, group_id: str) -> models.EndpointGroup:
    return _show_row(ctx, models.EndpointGroup, group_id, "endpoint group")


def list_endpoint_groups(
    ctx: RequestContext, filters: Mapping[str, Any]
) -> list[models.EndpointGroup]:
    return _list_rows(ctx, models.EndpointGroup, filters, models.EndpointGroup.name)


def update_endpoint_group(
    ctx: RequestContext, group_id: str, fields: Mapping[str, Any]
) -> models.EndpointGroup:
    return _update_row(ctx, models.EndpointGroup, group_id, "endpoint group", fields, {})


def delete_endpoint_group(ctx: RequestContext, group_id: str) -> None:
    _delete_row(ctx, models.EndpointGroup, group_id, "endpoint group")


def create_consumer(
    ctx: RequestContext, fields: Mapping[str, Any], extra: Mapping[str, Any], secret: str
) -> models.Consumer:
    hashed = passwords.hash_secret(secret, ctx.runtime.settings.password_hash_rounds)
    row = models.Consumer(id=new_id(), secret_hash=hashed, extra={})
    return _create_row(ctx, row, fields, extra, "consumer")


def get_consumer(ctx: RequestContext, consumer_id: str) -> models.Consumer:
    return _show_row(ctx, models.Consumer, consumer_id, "consumer")


def list_consumers(ctx: RequestContext) -> list[models.Consumer]:
    return _list_rows(ctx, models.Consumer, {}, models.Consumer.id)


def update_consumer(
    ctx: RequestContext, consumer_id: str, fields: Mapping[str, Any], extra: Mapping[str, Any]
) -> models.Consumer:
    return _update_row(ctx, models.Consumer, consumer_id, "consumer", fields, extra)


def delete_consumer(ctx: RequestContext, consumer_id: str) -> None:
    _delete_row(ctx, models.Consumer, consumer_id, "consumer")


# Domain configuration -------------------------------------------------------------

DEFAULT_DOMAIN_CONFIG: dict[str, dict[str, Any]] = {
    "identity": {"driver": "sql", "list_limit": None},
    "ldap": {
        "url": "ldap://localhost",
        "user": None,
        "suffix": "cn=example,cn=com",
        "query_scope": "one",
        "page_size": 0,
        "alias_dereferencing": "default",
        "user_tree_dn": None,
        "user_filter": None,
        "user_objectclass": "inetOrgPerson",
        "user_id_attribute": "cn",
        "user_name_attribute": "sn",
        "user_mail_attribute": "mail",
        "user_enabled_attribute": "enabled",
        "group_tree_dn": None,
        "group_filter": None,
        "group_objectclass": "groupOfNames",
        "group_id_attribute": "cn",
        "group_name_attribute": "ou",
        "group_member_attribute": "member",
        "use_tls": False,
    },
}
CONFIG_GROUPS = tuple(DEFAULT_DOMAIN_CONFIG)


def _check_config(config: Mapping[str, Any]) -> None:
    for group, options in config.items():
        if group not in CONFIG_GROUPS:
            raise errors.Forbidden(
                f"Group {group!r} cannot be set in a domain configuration; "
                f"allowed groups: {', '.join(CONFIG_GROUPS)}."
            )
        if not isinstance(options, Mapping):
            raise errors.Invalid(f"Domain configuration group {group!r} must be an object.")
        unknown = set(options) - set(DEFAULT_DOMAIN_CONFIG[group])
        if unknown:
            raise errors.Forbidden(
                f"Option(s) {', '.join(sorted(unknown))} of group {group!r} cannot be set "
                "in a domain configuration."
            )


def get_domain_config(ctx: RequestContext, domain_id: str) -> dict[str, Any]:
    with ctx.db.read() as session:
        _get(session, models.Domain, domain_id, "domain")
        row = session.get(models.DomainConfig, domain_id)
        if row is None or not row.config:
            raise errors.NotFound(f"Could not find domain config for domain {domain_id}.")
        return dict(row.config)


def replace_domain_config(
    ctx: RequestContext, domain_id: str, config: Mapping[str, Any]
) -> tuple[dict[str, Any], bool]:
    """Set the whole configuration; True when none existed before."""
    _check_config(config)
    with ctx.db.write() as session:
        _get(session, models.Domain, domain_id, "domain")
        row = session.get(models.DomainConfig, domain_id)
        created = row is None or not row.config
        if row is None:
            row = models.DomainConfig(domain_id=domain_id, config={})
            session.add(row)
        row.config = {g: dict(o) for g, o in config.items()}
        return dict(row.config), created


def merge_domain_config(
    ctx: RequestContext,
    domain_id: str,
    config: Mapping[str, Any],
    group: str | None = None,
    option: str | None = None,
) -> dict[str, Any]:
    """Update some groups or options of an existing configuration; returns the whole one."""
    _check_config(config)
    with ctx.db.write() as session:
        row = session.get(models.DomainConfig, domain_id)
        if row is None or not row.config:
            raise errors.NotFound(f"Could not find domain config for domain {domain_id}.")
        current = {g: dict(o) for g, o in row.config.items()}
        for name, options in config.items():
            if group is not None and name != group:
                raise errors.Invalid(f"The body names group {name!r}, the URL {group!r}.")
            if option is not None and set(options) != {option}:
                raise errors.Invalid(f"The body must set exactly the option {option!r}.")
            current.setdefault(name, {}).update(options)
        row.config = current
        return current


def delete_domain_config(
    ctx: RequestContext, domain_id: str, group: str | None = None, option: str | None = None
) -> None:
    with ctx.db.write() as session:
        row = session.get(models.DomainConfig, domain_id)
        if row is None or not row.config:
            raise errors.NotFound(f"Could not find domain config for domain {domain_id}.")
        current = {g: dict(o) for g, o in row.config.items()}
        if group is None:
            current = {}
        elif option is None:
            if current.pop(group, None) is None:
                raise errors.NotFound(f"Could not find group {group} in domain {domain_id}.")
        elif current.get(group, {}).pop(option, _MISSING) is _MISSING:
            raise errors.NotFound(f"Could not find option {option} in group {group}.")
        row.config = {g: o for g, o in current.items() if o}


_MISSING = object()


# Application credentials ----------------------------------------------------------


def create_application_credential(
    ctx: RequestContext,
    user_id: str,
    fields: Mapping[str, Any],
    requested_roles: Sequence[Mapping[str, str]] | None,
    secret: str,
) -> models.ApplicationCredential:
    """Create a credential bound to the caller's project, holding a subset of the caller's roles."""
    auth = ctx.auth
    if auth is None or auth.project_id is None:
        raise errors.Forbidden("Application credentials need a project-scoped token.")
    if auth.application_credential_id and auth.application_credential_restricted:
        raise errors.Forbidden(
            "A restricted application credential cannot create another application credential."
        )
    expires_at = fields.get("expires_at")
    if expires_at is not None and expires_at <= now():
        raise errors.Invalid("expires_at must be in the future.")
    hashed = passwords.hash_secret(secret, ctx.runtime.settings.password_hash_rounds)
    with ctx.db.write() as session:
        _get(session, models.User, user_id, "user")
        role_ids = _delegated_roles(session, dict(auth.roles), requested_roles, auth.project_id)
        credential = models.ApplicationCredential(
            id=new_id(),
            user_id=user_id,
            project_id=auth.project_id,
            secret_hash=hashed,
            role_ids=role_ids,
            name=fields["name"],
            description=fields.get("description"),
            expires_at=expires_at,
            unrestricted=bool(fields.get("unrestricted", False)),
            access_rule_ids=_access_rule_ids(session, user_id, fields.get("access_rules") or []),
        )
        session.add(credential)
        _flush_unique(session, "application_credential", f"name {credential.name}")
        bump_revision(session)
        return credential


def _delegated_roles(
    session: Session,
    held: Mapping[str, str],
    requested: Sequence[Mapping[str, str]] | None,
    project_id: str,
) -> list[str]:
    """The requested roles (by id or name), each of which the caller must hold; default all."""
    if not requested:
        return sorted(held)
    role_ids = set()
    for ref in requested:
        role_id = ref.get("id") or next(
            (rid for rid, name in held.items() if name == ref.get("name")), None
        )
        if role_id is None or role_id not in held:
            raise errors.Forbidden(
                f"The caller does not hold role {ref.get('id') or ref.get('name')} on "
                f"project {project_id}, so it cannot delegate it."
            )
        role_ids.add(role_id)
    return sorted(role_ids)


def _access_rule_ids(
    session: Session, user_id: str, rules: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Reuse the user's identical rules, create the others; a rule given by id must exist."""
    ids = []
    for rule in rules:
        if rule.get("id") and not rule.get("path"):
            existing = session.get(models.AccessRule, rule["id"])
            if existing is None or existing.user_id != user_id:
                raise _not_found("access rule", rule["id"])
            ids.append(existing.id)
            continue
        if not (rule.get("service") and rule.get("path") and rule.get("method")):
            raise errors.Invalid("An access rule needs service, path and method, or an id.")
        match = session.scalar(
            select(models.AccessRule).where(
                models.AccessRule.user_id == user_id,
                models.AccessRule.service == rule["service"],
                models.AccessRule.path == rule["path"],
                models.AccessRule.method == rule["method"],
            )
        )
        if match is None:
            match = models.AccessRule(
                id=rule.get("id") or new_id(),
                user_id=user_id,
                service=rule["service"],
                path=rule["path"],
                method=rule["method"],
            )
            session.add(match)
            session.flush()
        ids.append(match.id)
    return ids


def access_rules_by_id(
    ctx: RequestContext, rule_ids: Iterable[str]
) -> dict[str, models.AccessRule]:
    ids = list(set(rule_ids))
    if not ids:
        return {}
    with ctx.db.read() as session:
        return {
            r.id: r
            for r in session.scalars(select(models.AccessRule).where(models.AccessRule.id.in_(ids)))
        }


def list_access_rules(ctx: RequestContext, user_id: str) -> list[models.AccessRule]:
    with ctx.db.read() as session:
        _get(session, models.User, user_id, "user")
        return list(
            session.scalars(
                select(models.AccessRule)
                .where(models.AccessRule.user_id == user_id)
                .order_by(models.AccessRule.id)
            )
        )


def get_access_rule(ctx: RequestContext, user_id: str, rule_id: str) -> models.AccessRule:
    with ctx.db.read() as session:
        rule = session.get(models.AccessRule, rule_id)
        if rule is None or rule.user_id != user_id:
            raise _not_found("access rule", rule_id)
        return rule


def delete_access_rule(ctx: RequestContext, user_id: str, rule_id: str) -> None:
    """Delete a rule no application credential uses any more (403 while one does)."""
    with ctx.db.write() as session:
        rule = session.get(models.AccessRule, rule_id)
        if rule is None or rule.user_id != user_id:
            raise _not_found("access rule", rule_id)
        for credential in session.scalars(
            select(models.ApplicationCredential).where(
                models.ApplicationCredential.user_id == user_id
            )
        ):
            if rule_id in credential.access_rule_ids:
                raise errors.Forbidden(
                    f"Access rule {rule_id} is used by application credential "
                    f"{credential.id}; delete that first."
                )
        session.delete(rule)


def get_application_credential(
    ctx: RequestContext, user_id: str, credential_id: str
) -> models.ApplicationCredential:
    with ctx.db.read() as session:
        credential = session.get(models.ApplicationCredential, credential_id)
        if credential is None or credential.user_id != user_id:
            raise _not_found("application credential", credential_id)
        return credential


def list_application_credentials(
    ctx: RequestContext, user_id: str, name: str | None
) -> list[models.ApplicationCredential]:
    with ctx.db.read() as session:
        _get(session, models.User, user_id, "user")
        stmt = select(models.ApplicationCredential).where(
            models.ApplicationCredential.user_id == user_id
        )
        if name is not None:
            stmt = stmt.where(models.ApplicationCredential.name == name)
        return list(session.scalars(stmt.order_by(models.ApplicationCredential.name)))


def delete_application_credential(ctx: RequestContext, user_id: str, credential_id: str) -> None:
    auth = ctx.auth
    if auth and auth.application_credential_id and auth.application_credential_restricted:
        raise errors.Forbidden(
            "A restricted application credential cannot delete application credentials."
        )
    with ctx.db.write() as session:
        credential = session.get(models.ApplicationCredential, credential_id)
        if credential is None or credential.user_id != user_id:
            raise _not_found("application credential", credential_id)
        session.delete(credential)
        _revoke(session, application_credential_id=credential_id)
        bump_revision(session)


# Revocation -----------------------------------------------------------------------


def _revoke(session: Session, **match: str) -> None:
    """Record that tokens matching `match` and issued until now are invalid."""
    moment = now()
    session.add(models.RevocationEvent(issued_before=moment, revoked_at=moment, **match))


def revoke_audit_id(ctx: RequestContext, audit_id: str) -> None:
    """Revoke one token, and drop events older than any live token: they can match nothing,
    and every worker reloads the whole list when identity changes."""
    horizon = now() - timedelta(seconds=ctx.runtime.settings.token_expiration_s)
    with ctx.db.write() as session:
        session.execute(
            delete(models.RevocationEvent).where(models.RevocationEvent.revoked_at < horizon)
        )
        _revoke(session, audit_id=audit_id)
        bump_revision(session)
