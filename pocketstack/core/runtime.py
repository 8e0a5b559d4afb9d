"""The per-process runtime every request and agent shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pocketstack import config
from pocketstack.core import context as context_mod
from pocketstack.core import db as db_mod
from pocketstack.core import policy as policy_mod

TokenValidator = Callable[[str], context_mod.AuthInfo]


def _no_tokens(_token: str) -> context_mod.AuthInfo:
    raise RuntimeError("no token validator installed: the identity service is not enabled")


@dataclass(slots=True)
class Runtime:
    """Settings, database, policy and token validation, plus each service's own state."""

    settings: config.Settings
    db: db_mod.Database
    enforcer: policy_mod.Enforcer
    validate_token: TokenValidator = _no_tokens
    state: dict[str, Any] = field(default_factory=dict)

    def context(self, auth: context_mod.AuthInfo | None = None) -> context_mod.RequestContext:
        """A context for work no HTTP request started (bootstrap, agents, CLI)."""
        return context_mod.RequestContext(
            request_id="req-internal",
            enforcer=self.enforcer,
            db=self.db,
            auth=auth,
            runtime=self,
        )

    def service_context(self, project_id: str | None = None) -> context_mod.RequestContext:
        """The control plane acting as itself with admin rights: a host agent reading the
        image a server boots from, whoever owns it (system scope), or `up` registering
        the built-in images as the admin project's (project scope)."""
        moment = datetime.now(UTC).replace(tzinfo=None)
        auth = context_mod.AuthInfo(
            user_id="pocketstack", user_name="pocketstack", user_domain_id="default",
            user_domain_name="Default", methods=("internal",), audit_ids=("internal",),
            expires_at=moment + timedelta(hours=1), issued_at=moment,
            roles=(("admin", "admin"), ("service", "service")), project_id=project_id,
            system=project_id is None,
        )  # fmt: skip
        return self.context(auth)
