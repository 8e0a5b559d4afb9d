"""Authentication and token validation.

Issuing checks a password, a token or an application credential and seals a
Fernet token. Validating opens the token, applies revocation events and
recomputes roles from current assignments, so removing a role, disabling a
user or deleting a project takes effect at once. Results are cached per
token and dropped whenever the identity revision moves (any identity write,
in any worker), which keeps validation a single-row read on the hot path.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from pocketstack.core import errors
from pocketstack.core.context import AuthInfo, RequestContext
from pocketstack.core.runtime import Runtime
from pocketstack.identity import models, passwords, tokens
from pocketstack.identity import service as identity_service

_CACHE_SIZE = 10_000
_UNAUTHORIZED = "The request you have made requires authentication."


@dataclass(frozen=True, slots=True)
class ScopeRequest:
    """What the caller asked to be scoped to; all None means unscoped or default project."""

    project_id: str | None = None
    project_name: str | None = None
    project_domain_id: str | None = None
    project_domain_name: str | None = None
    domain_id: str | None = None
    domain_name: str | None = None
    system: bool = False
    unscoped: bool = False

    @property
    def explicit(self) -> bool:
        return bool(
            self.project_id
            or self.project_name
            or self.domain_id
            or self.domain_name
            or self.system
            or self.unscoped
        )


@dataclass(frozen=True, slots=True)
class PasswordMethod:
    password: str
    user_id: str | None = None
    user_name: str | None = None
    domain_id: str | None = None
    domain_name: str | None = None


@dataclass(frozen=True, slots=True)
class ApplicationCredentialMethod:
    secret: str
    id: str | None = None
    name: str | None = None
    user_id: str | None = None
    user_name: str | None = None
    user_domain_id: str | None = None
    user_domain_name: str | None = None


@dataclass(frozen=True, slots=True)
class AuthRequest:
    methods: tuple[str, ...]
    scope: ScopeRequest
    password: PasswordMethod | None = None
    token: str | None = None
    application_credential: ApplicationCredentialMethod | None = None


@dataclass(slots=True)
class IdentityState:
    """Per-process identity state: the key repository and revision-checked caches."""

    keys: tokens.KeyRepository
    expiration: timedelta
    revision: int = -1
    lock: threading.Lock = field(default_factory=threading.Lock)
    validated: OrderedDict[str, AuthInfo] = field(default_factory=OrderedDict)
    revocations: list[models.RevocationEvent] = field(default_factory=list)
    catalog: list[identity_service.CatalogEntry] = field(default_factory=list)


def install(runtime: Runtime) -> IdentityState:
    """Create the identity state for this process and make it the token validator."""
    settings = runtime.settings
    keys = tokens.KeyRepository(settings.key_dir, settings.max_active_keys)
    state = IdentityState(keys=keys, expiration=timedelta(seconds=settings.token_expiration_s))
    runtime.state["identity"] = state
    runtime.validate_token = lambda token: validate(runtime, token)
    return state


def prepare(runtime: Runtime) -> None:
    """Every start: make sure token keys exist."""
    state_of(runtime).keys.setup()


def state_of(runtime: Runtime) -> IdentityState:
    state: IdentityState = runtime.state["identity"]
    return state


def _refresh(runtime: Runtime) -> IdentityState:
    """Drop caches if identity changed anywhere since we last looked (one cheap read)."""
    state = state_of(runtime)
    revision = identity_service.current_revision(runtime.db)
    if revision != state.revision:
        with runtime.db.read() as session:
            events = list(session.scalars(select(models.RevocationEvent)))
            catalog = identity_service.load_catalog(session)
        with state.lock:
            state.validated.clear()
            state.revocations = events
            state.catalog = catalog
            state.revision = revision
    return state


# Issue -------------------------------------------------------------------------


def authenticate(runtime: Runtime, request: AuthRequest) -> tuple[str, AuthInfo]:
    """Check the credentials, resolve the scope and return (token, what it grants)."""
    if not request.methods:
        raise errors.Invalid("Invalid input for field 'identity/methods': [] is too short.")
    parent: tokens.TokenPayload | None = None
    app_cred: models.ApplicationCredential | None = None
    if "password" in request.methods:
        if request.password is None:
            raise errors.Invalid("Invalid input for field 'identity/password': missing.")
        user_id = _check_password(runtime, request.password)
    elif "token" in request.methods:
        if not request.token:
            raise errors.Invalid("Invalid input for field 'identity/token/id': missing.")
        _refresh(runtime)
        parent = _open_valid(runtime, request.token)
        user_id = parent.user_id
        if parent.application_credential_id:
            raise errors.Forbidden("Tokens from application credentials cannot be rescoped.")
    elif "application_credential" in request.methods:
        if request.application_credential is None:
            raise errors.Invalid(
                "Invalid input for field 'identity/application_credential': missing."
            )
        app_cred = _check_application_credential(runtime, request.application_credential)
        user_id = app_cred.user_id
    else:
        raise errors.Unauthorized(f"Unsupported authentication methods: {list(request.methods)}.")

    issued_at = identity_service.now()
    expires_at = issued_at + state_of(runtime).expiration
    audit_ids: tuple[str, ...] = (tokens.new_audit_id(),)
    methods = tuple(request.methods)
    if parent is not None:
        expires_at = min(expires_at, parent.expires_at)
        audit_ids = (audit_ids[0], parent.audit_ids[0])
        methods = tuple(dict.fromkeys(parent.methods + methods))
    if app_cred is not None:
        if app_cred.expires_at is not None:
            expires_at = min(expires_at, app_cred.expires_at)
        payload = tokens.TokenPayload(
            user_id=user_id,
            methods=methods,
            audit_ids=audit_ids,
            issued_at=issued_at,
            expires_at=expires_at,
            project_id=app_cred.project_id,
            application_credential_id=app_cred.id,
        )
    else:
        payload = _scoped_payload(
            runtime, user_id, request.scope, methods, audit_ids, issued_at, expires_at
        )
    info = _resolve(runtime, payload)
    if info is None:
        raise errors.Unauthorized(_UNAUTHORIZED)
    token = state_of(runtime).keys.seal(tokens.encode_payload(payload))
    return token, info


def _check_password(runtime: Runtime, method: PasswordMethod) -> str:
    with runtime.db.read() as session:
        domain_id = method.domain_id
        if method.user_id is None and domain_id is None:
            if method.domain_name is None:
                raise errors.Invalid(
                    "Invalid input for field 'identity/password/user/domain': a user name "
                    "needs a domain id or name."
                )
            domain = session.scalar(
                select(models.Domain).where(models.Domain.name == method.domain_name)
            )
            if domain is None:
                raise errors.Unauthorized(_UNAUTHORIZED)
            domain_id = domain.id
        user = identity_service.find_user(
            session, user_id=method.user_id, name=method.user_name, domain_id=domain_id
        )
        if user is None:
            raise errors.Unauthorized(_UNAUTHORIZED)
        user_id, hashed, enabled = user.id, user.password_hash, user.enabled
        domain = session.get(models.Domain, user.domain_id)
        domain_enabled = domain is not None and domain.enabled
    if not passwords.verify_secret(method.password, hashed):
        raise errors.Unauthorized(_UNAUTHORIZED)
    if not enabled or not domain_enabled:
        raise errors.Unauthorized(_UNAUTHORIZED)
    return user_id


def _check_application_credential(
    runtime: Runtime, method: ApplicationCredentialMethod
) -> models.ApplicationCredential:
    with runtime.db.read() as session:
        if method.id:
            credential = session.get(models.ApplicationCredential, method.id)
        else:
            user = identity_service.find_user(
                session,
                user_id=method.user_id,
                name=method.user_name,
                domain_id=method.user_domain_id
                or _domain_id_by_name(session, method.user_domain_name),
            )
            credential = None
            if user is not None:
                credential = session.scalar(
                    select(models.ApplicationCredential).where(
                        models.ApplicationCredential.user_id == user.id,
                        models.ApplicationCredential.name == method.name,
                    )
                )
    if credential is None or not passwords.verify_secret(method.secret, credential.secret_hash):
        raise errors.Unauthorized(_UNAUTHORIZED)
    if credential.expires_at is not None and credential.expires_at <= identity_service.now():
        raise errors.Unauthorized(_UNAUTHORIZED)
    return credential


def _domain_id_by_name(session: Session, name: str | None) -> str | None:
    if name is None:
        return None
    return session.scalar(select(models.Domain.id).where(models.Domain.name == name))


def _scoped_payload(
    runtime: Runtime,
    user_id: str,
    scope: ScopeRequest,
    methods: tuple[str, ...],
    audit_ids: tuple[str, ...],
    issued_at: datetime,
    expires_at: datetime,
) -> tokens.TokenPayload:
    project_id = domain_id = None
    system = False
    with runtime.db.read() as session:
        if scope.project_id or scope.project_name:
            domain_key = scope.project_domain_id or _domain_id_by_name(
                session, scope.project_domain_name
            )
            if scope.project_id is None and domain_key is None:
                raise errors.Unauthorized(_UNAUTHORIZED)
            try:
                project = identity_service.find_project(
                    session,
                    project_id=scope.project_id,
                    name=scope.project_name,
                    domain_id=domain_key,
                )
            except errors.NotFound:
                raise errors.Unauthorized(_UNAUTHORIZED) from None
            project_id = project.id
        elif scope.domain_id or scope.domain_name:
            try:
                domain_id = identity_service.find_domain(
                    session, domain_id=scope.domain_id, name=scope.domain_name
                ).id
            except errors.NotFound:
                raise errors.Unauthorized(_UNAUTHORIZED) from None
        elif scope.system:
            system = True
        elif not scope.unscoped:
            user = session.get(models.User, user_id)
            default_project = user.default_project_id if user else None
            if default_project and identity_service.effective_role_ids(
                session, user_id, "project", default_project
            ):
                project_id = default_project
    return tokens.TokenPayload(
        user_id=user_id,
        methods=methods,
        audit_ids=audit_ids,
        issued_at=issued_at,
        expires_at=expires_at,
        project_id=project_id,
        domain_id=domain_id,
        system=system,
    )


# Validate ----------------------------------------------------------------------


def _open_valid(runtime: Runtime, token: str) -> tokens.TokenPayload:
    raw = state_of(runtime).keys.open(token)
    if raw is None:
        raise errors.Unauthorized(_UNAUTHORIZED)
    try:
        payload = tokens.decode_payload(raw)
    except (ValueError, KeyError, TypeError):
        raise errors.Unauthorized(_UNAUTHORIZED) from None
    if payload.expires_at <= identity_service.now():
        raise errors.Unauthorized(_UNAUTHORIZED)
    if _is_revoked(state_of(runtime).revocations, payload):
        raise errors.Unauthorized(_UNAUTHORIZED)
    return payload


def validate(runtime: Runtime, token: str, refresh: bool = True) -> AuthInfo:
    """What `token` grants now; Unauthorized if it is invalid, expired or revoked.

    `refresh=False` skips the revision check when this request already made it.
    """
    state = _refresh(runtime) if refresh else state_of(runtime)
    cached = state.validated.get(token)
    if cached is not None:
        if cached.expires_at <= identity_service.now():
            raise errors.Unauthorized(_UNAUTHORIZED)
        return cached
    payload = _open_valid(runtime, token)
    info = _resolve(runtime, payload)
    if info is None:
        raise errors.Unauthorized(_UNAUTHORIZED)
    with state.lock:
        state.validated[token] = info
        if len(state.validated) > _CACHE_SIZE:
            state.validated.popitem(last=False)
    return info


def _is_revoked(events: list[models.RevocationEvent], payload: tokens.TokenPayload) -> bool:
    for event in events:
        if payload.issued_at > event.issued_before:
            continue
        if event.audit_id is not None and event.audit_id not in payload.audit_ids:
            continue
        if event.user_id is not None and event.user_id != payload.user_id:
            continue
        if event.project_id is not None and event.project_id != payload.project_id:
            continue
        if event.domain_id is not None and event.domain_id != payload.domain_id:
            continue
        if (
            event.application_credential_id is not None
            and event.application_credential_id != payload.application_credential_id
        ):
            continue
        return True
    return False


def _resolve(runtime: Runtime, payload: tokens.TokenPayload) -> AuthInfo | None:
    """Check the user and scope still exist and are enabled; compute current roles."""
    with runtime.db.read() as session:
        user = session.get(models.User, payload.user_id)
        if user is None or not user.enabled:
            return None
        user_domain = session.get(models.Domain, user.domain_id)
        if user_domain is None or not user_domain.enabled:
            return None
        fields: dict[str, Any] = {}
        role_ids: set[str] = set()
        restricted = False
        if payload.project_id:
            project = session.get(models.Project, payload.project_id)
            if project is None or not project.enabled:
                return None
            project_domain = session.get(models.Domain, project.domain_id)
            if project_domain is None or not project_domain.enabled:
                return None
            fields.update(
                project_id=project.id,
                project_name=project.name,
                project_domain_id=project_domain.id,
                project_domain_name=project_domain.name,
            )
            role_ids = identity_service.effective_role_ids(session, user.id, "project", project.id)
        elif payload.domain_id:
            domain = session.get(models.Domain, payload.domain_id)
            if domain is None or not domain.enabled:
                return None
            fields.update(domain_id=domain.id, domain_name=domain.name)
            role_ids = identity_service.effective_role_ids(session, user.id, "domain", domain.id)
        elif payload.system:
            fields["system"] = True
            role_ids = identity_service.effective_role_ids(
                session, user.id, "system", identity_service.SYSTEM_TARGET
            )
        if payload.application_credential_id:
            credential = session.get(
                models.ApplicationCredential, payload.application_credential_id
            )
            if credential is None:
                return None
            role_ids &= identity_service.implied_closure(session, credential.role_ids)
            fields["application_credential_id"] = credential.id
            restricted = not credential.unrestricted
        scoped = payload.project_id or payload.domain_id or payload.system
        if scoped and not role_ids:
            return None
        roles = identity_service.roles_by_id(session, role_ids)
        return AuthInfo(
            user_id=user.id,
            user_name=user.name,
            user_domain_id=user_domain.id,
            user_domain_name=user_domain.name,
            methods=payload.methods,
            audit_ids=payload.audit_ids,
            expires_at=payload.expires_at,
            issued_at=payload.issued_at,
            roles=tuple(sorted(((r.id, r.name) for r in roles.values()), key=lambda r: r[1])),
            application_credential_restricted=restricted,
            **fields,
        )


def validate_subject(ctx: RequestContext, subject_token: str) -> AuthInfo:
    """GET/HEAD /v3/auth/tokens: 404 (not 401) when the subject token is not valid."""
    try:
        return validate(ctx.runtime, subject_token, refresh=False)
    except errors.Unauthorized:
        raise errors.NotFound("Could not find token.") from None


def revoke(ctx: RequestContext, subject_token: str) -> None:
    info = validate_subject(ctx, subject_token)
    ctx.authorize("identity:revoke_token", {"target": {"token": {"user_id": info.user_id}}})
    identity_service.revoke_audit_id(ctx, info.audit_ids[0])


def catalog(runtime: Runtime, refresh: bool = True) -> list[identity_service.CatalogEntry]:
    """The catalog as of the current revision (`refresh=False`: as of this request's check)."""
    state = _refresh(runtime) if refresh else state_of(runtime)
    return list(state.catalog)
