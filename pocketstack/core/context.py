"""Who is calling: the authenticated identity and scope of one request.

The auth layer builds a RequestContext from `X-Auth-Token` for every service;
handlers pass it to `authorize` and to service functions, which never look at
HTTP headers themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pocketstack.core import db as db_mod
from pocketstack.core import errors
from pocketstack.core import policy as policy_mod

if TYPE_CHECKING:
    from pocketstack.core import runtime as runtime_mod


@dataclass(frozen=True, slots=True)
class AuthInfo:
    """What a valid token says, recomputed from current state at validation."""

    user_id: str
    user_name: str
    user_domain_id: str
    user_domain_name: str
    methods: tuple[str, ...]
    audit_ids: tuple[str, ...]
    expires_at: datetime
    issued_at: datetime
    roles: tuple[tuple[str, str], ...] = ()
    project_id: str | None = None
    project_name: str | None = None
    project_domain_id: str | None = None
    project_domain_name: str | None = None
    domain_id: str | None = None
    domain_name: str | None = None
    system: bool = False
    application_credential_id: str | None = None
    application_credential_restricted: bool = False

    @property
    def role_names(self) -> tuple[str, ...]:
        return tuple(name for _id, name in self.roles)


@dataclass(slots=True)
class RequestContext:
    """The caller of one request and the policy to judge it by."""

    request_id: str
    enforcer: policy_mod.Enforcer
    db: db_mod.Database
    runtime: runtime_mod.Runtime
    auth: AuthInfo | None = None
    token: str | None = None
    service: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def user_id(self) -> str | None:
        return self.auth.user_id if self.auth else None

    @property
    def project_id(self) -> str | None:
        return self.auth.project_id if self.auth else None

    @property
    def roles(self) -> tuple[str, ...]:
        return self.auth.role_names if self.auth else ()

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def credentials(self) -> dict[str, Any]:
        """The credential dict that policy rules read (`user_id`, `roles`, ...)."""
        auth = self.auth
        if auth is None:
            return {"roles": []}
        return {
            "user_id": auth.user_id,
            "user_domain_id": auth.user_domain_id,
            "project_id": auth.project_id,
            "project_domain_id": auth.project_domain_id,
            "domain_id": auth.domain_id,
            "system_scope": "all" if auth.system else None,
            "roles": list(auth.role_names),
            "is_admin": False,
            "is_admin_project": True,
        }

    def can(self, action: str, target: Mapping[str, Any] | None = None) -> bool:
        return self.enforcer.check(action, target or {}, self.credentials())

    def authorize(self, action: str, target: Mapping[str, Any] | None = None) -> None:
        """Raise Forbidden unless policy rule `action` allows this caller on `target`."""
        if not self.can(action, target):
            raise errors.Forbidden(
                f"You are not authorized to perform the requested action: {action}."
            )
