"""First-start and every-start setup of identity: what `keystone-manage bootstrap` does.

Idempotent: the Default domain, roles admin ⊃ member ⊃ reader (plus manager
and service, which other services' policies and Tempest expect), the admin
project and user with admin on the project and on the system, the region and
the catalog entries of every enabled service (URLs follow the current bind
address, so a changed port is picked up on restart).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from pocketstack.core.runtime import Runtime
from pocketstack.identity import models
from pocketstack.identity import service as identity_service

ADMIN_NAME = "admin"
ROLE_CHAIN = ("admin", "member", "reader")
EXTRA_ROLES = ("manager", "service")


@dataclass(frozen=True, slots=True)
class CatalogService:
    """One catalog entry `up` registers: type, name and URL of an enabled service."""

    type: str
    name: str
    url: str


def _ensure_role(session: Session, name: str) -> models.Role:
    role = session.scalar(
        select(models.Role).where(models.Role.name == name, models.Role.domain_id == "")
    )
    if role is None:
        role = models.Role(
            id=identity_service.new_id(), name=name, domain_id="", options={}, extra={}
        )
        session.add(role)
        session.flush()
    return role


def _ensure_grant(
    session: Session, user_id: str, target_type: str, target_id: str, role_id: str
) -> None:
    key = ("user", user_id, target_type, target_id, role_id, False)
    if session.get(models.Assignment, key) is None:
        session.add(
            models.Assignment(
                actor_type="user",
                actor_id=user_id,
                target_type=target_type,
                target_id=target_id,
                role_id=role_id,
                inherited=False,
            )
        )


def bootstrap(
    runtime: Runtime,
    admin_password_hash: str,
    reset_password: bool,
    catalog: Sequence[CatalogService],
) -> str:
    """Make the cloud usable by the admin; the admin project's id.

    The caller hashes the admin password (`up` does it on another core while it
    imports); `reset_password` sets it even when the admin user already exists.
    """
    settings = runtime.settings
    with runtime.db.write() as session:
        if session.get(models.Domain, identity_service.DEFAULT_DOMAIN_ID) is None:
            session.add(
                models.Domain(
                    id=identity_service.DEFAULT_DOMAIN_ID,
                    name="Default",
                    description="The default domain",
                    enabled=True,
                    extra={},
                )
            )
            session.flush()
        roles = {name: _ensure_role(session, name) for name in ROLE_CHAIN + EXTRA_ROLES}
        for prior, implied in itertools.pairwise(ROLE_CHAIN):
            key = (roles[prior].id, roles[implied].id)
            if session.get(models.ImpliedRole, key) is None:
                session.add(models.ImpliedRole(prior_role_id=key[0], implied_role_id=key[1]))
        project = session.scalar(
            select(models.Project).where(
                models.Project.name == ADMIN_NAME,
                models.Project.domain_id == identity_service.DEFAULT_DOMAIN_ID,
            )
        )
        if project is None:
            project = models.Project(
                id=identity_service.new_id(),
                name=ADMIN_NAME,
                domain_id=identity_service.DEFAULT_DOMAIN_ID,
                description="Bootstrap project for initializing the cloud.",
                enabled=True,
                extra={},
            )
            session.add(project)
            session.flush()
        user = session.scalar(
            select(models.User).where(
                models.User.name == ADMIN_NAME,
                models.User.domain_id == identity_service.DEFAULT_DOMAIN_ID,
            )
        )
        if user is None:
            user = models.User(
                id=identity_service.new_id(),
                name=ADMIN_NAME,
                domain_id=identity_service.DEFAULT_DOMAIN_ID,
                enabled=True,
                default_project_id=project.id,
                extra={},
                created_at=identity_service.now(),
                password_hash=admin_password_hash,
            )
            session.add(user)
            session.flush()
        elif reset_password:
            user.password_hash = admin_password_hash
        _ensure_grant(session, user.id, "project", project.id, roles["admin"].id)
        _ensure_grant(session, user.id, "system", identity_service.SYSTEM_TARGET, roles["admin"].id)
        if session.get(models.Region, settings.region) is None:
            session.add(models.Region(id=settings.region, description="", extra={}))
        for entry in catalog:
            _ensure_catalog_entry(session, entry, settings.region)
        identity_service.bump_revision(session)
        return project.id


def _ensure_catalog_entry(session: Session, entry: CatalogService, region: str) -> None:
    service = session.scalar(select(models.Service).where(models.Service.type == entry.type))
    if service is None:
        service = models.Service(
            id=identity_service.new_id(), type=entry.type, name=entry.name, enabled=True, extra={}
        )
        session.add(service)
        session.flush()
    existing = {
        e.interface: e
        for e in session.scalars(
            select(models.Endpoint).where(models.Endpoint.service_id == service.id)
        )
    }
    for interface in identity_service.INTERFACES:
        endpoint = existing.get(interface)
        if endpoint is None:
            session.add(
                models.Endpoint(
                    id=identity_service.new_id(),
                    service_id=service.id,
                    interface=interface,
                    region_id=region,
                    url=entry.url,
                    enabled=True,
                    extra={},
                )
            )
        elif endpoint.url != entry.url:
            endpoint.url = entry.url
