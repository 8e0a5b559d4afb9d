"""Compute quotas: per-project (and per-user) limits, the `default` quota class, usage.

A limit is, in order: the project's (or user's) own row, the `default` quota
class's row, the built-in default. Usage is counted where it lives: servers
from the instance mappings, cores and RAM from placement, keypairs per user,
server groups per project. Callers check a change with `check` (403 when it
would go past a limit, as Nova's OverQuota); -1 means unlimited.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select

from pocketstack.compute import models
from pocketstack.core import errors
from pocketstack.core.context import RequestContext
from pocketstack.placement import service as placement_service

DEFAULT_CLASS = "default"
DEFAULTS: dict[str, int] = {
    "instances": 10,
    "cores": 20,
    "ram": 51200,
    "metadata_items": 128,
    "key_pairs": 100,
    "server_groups": 10,
    "server_group_members": 10,
    "injected_files": 5,
    "injected_file_content_bytes": 10240,
    "injected_file_path_bytes": 255,
    "fixed_ips": -1,
    "floating_ips": -1,
    "security_groups": -1,
    "security_group_rules": -1,
}
NETWORK_RESOURCES = ("fixed_ips", "floating_ips", "security_groups", "security_group_rules")
INJECTED_RESOURCES = ("injected_files", "injected_file_content_bytes", "injected_file_path_bytes")
GROUP_RESOURCES = ("server_groups", "server_group_members")


@dataclass(frozen=True, slots=True)
class Usage:
    limit: int
    in_use: int


def class_limits(ctx: RequestContext, class_name: str = DEFAULT_CLASS) -> dict[str, int]:
    """A quota class's limits: the built-in defaults with the class's own rows over them."""
    with ctx.db.read() as session:
        rows = session.execute(
            select(models.QuotaClass.resource, models.QuotaClass.hard_limit).where(
                models.QuotaClass.class_name == class_name
            )
        ).all()
    return {**DEFAULTS, **{r: n for r, n in rows if r in DEFAULTS}}


def limits(ctx: RequestContext, project_id: str, user_id: str | None = None) -> dict[str, int]:
    """The limits in force for a project (or one of its users)."""
    found = class_limits(ctx)
    table = models.Quota
    with ctx.db.read() as session:
        project_rows = session.execute(
            select(table.resource, table.hard_limit).where(
                table.project_id == project_id, table.user_id == ""
            )
        ).all()
        found.update({r: n for r, n in project_rows if r in DEFAULTS})
        if user_id:
            user_rows = session.execute(
                select(table.resource, table.hard_limit).where(
                    table.project_id == project_id, table.user_id == user_id
                )
            ).all()
            found.update({r: n for r, n in user_rows if r in DEFAULTS})
    return found


def usage(ctx: RequestContext, project_id: str, user_id: str | None = None) -> dict[str, int]:
    """What the project (or user) holds now, per resource; 0 for what is not counted."""
    with ctx.db.read() as session:
        mapping = models.InstanceMapping
        servers = select(func.count()).where(
            mapping.project_id == project_id, mapping.queued_for_delete.is_(False)
        )
        groups = select(func.count()).where(models.ServerGroup.project_id == project_id)
        keypairs = select(func.count()).where(
            models.KeyPair.user_id == (user_id or ctx.user_id or "")
        )
        if user_id:
            servers = servers.where(mapping.user_id == user_id)
            groups = groups.where(models.ServerGroup.user_id == user_id)
        instances = session.scalar(servers) or 0
        group_count = session.scalar(groups) or 0
        keypair_count = session.scalar(keypairs) or 0
    used = placement_service.total_usages(ctx, project_id, user_id, None, by_type=False)
    counted = dict.fromkeys(DEFAULTS, 0)
    counted.update(
        instances=instances,
        cores=int(used.get("VCPU", 0)),
        ram=int(used.get("MEMORY_MB", 0)),
        key_pairs=keypair_count,
        server_groups=group_count,
    )
    return counted


def check(
    ctx: RequestContext,
    project_id: str,
    wanted: Mapping[str, int],
    used: Mapping[str, int] | None = None,
    user_id: str | None = None,
) -> Mapping[str, int]:
    """Refuse `wanted` more of each resource on top of `used` (counted here when None, and
    only if a wanted resource is limited at all) past the limits, with Nova's message for
    servers (instances, cores, ram). Returns the limits it judged by."""
    limit = limits(ctx, project_id, user_id)
    if all(limit[r] < 0 for r in wanted):
        return limit
    if used is None:
        used = usage(ctx, project_id, user_id)
    over = [r for r, n in wanted.items() if limit[r] >= 0 and used.get(r, 0) + n > limit[r]]
    if not over:
        return limit

    def joined(values: Mapping[str, int]) -> str:
        return ", ".join(str(values.get(r, 0)) for r in over)

    raise errors.OverQuota(
        f"Quota exceeded for {', '.join(over)}: Requested {joined(wanted)}, but already "
        f"used {joined(used)} of {joined(limit)} {', '.join(over)}"
    )


def recheck(
    ctx: RequestContext, project_id: str, resources: Sequence[str], limit: Mapping[str, int]
) -> None:
    """After a boot counted itself in (mapping and claim written), refuse it if the project
    is now past `limit` (what `check` returned): concurrent boots that all passed `check`
    cannot all stay (Nova's quota recheck)."""
    if all(limit[r] < 0 for r in resources):
        return
    used = usage(ctx, project_id)
    over = [r for r in resources if 0 <= limit[r] < used.get(r, 0)]
    if over:
        listed = ", ".join(over)
        raise errors.OverQuota(
            f"Quota exceeded for {listed}: already used "
            f"{', '.join(str(used[r]) for r in over)} of "
            f"{', '.join(str(limit[r]) for r in over)} {listed}"
        )


def _checked_limits(values: Mapping[str, object]) -> dict[str, int]:
    checked = {}
    for resource, value in values.items():
        if resource not in DEFAULTS:
            raise errors.Invalid(f"Bad key(s) {resource} in quota_set")
        if isinstance(value, str) and value.lstrip("-").isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < -1:
            raise errors.Invalid(
                f"Invalid input for field/attribute {resource}. Value: {value}. "
                f"{value!r} is not a valid quota limit (an integer of at least -1)"
            )
        if value > 2147483647:
            raise errors.Invalid(
                f"Invalid input for field/attribute {resource}. Value: {value}. "
                f"{value} is greater than the maximum of 2147483647"
            )
        checked[resource] = value
    return checked


def update(
    ctx: RequestContext,
    project_id: str,
    user_id: str | None,
    values: Mapping[str, object],
    force: bool,
) -> dict[str, int]:
    """Set limits; one below what is in use is refused unless `force`."""
    checked = _checked_limits(values)
    if not force:
        in_use = usage(ctx, project_id, user_id)
        for resource, value in checked.items():
            if value != -1 and value < in_use[resource]:
                raise errors.Invalid(
                    f"Quota limit {value} for {resource} must be greater than or equal to "
                    f"already used and reserved {in_use[resource]}."
                )
    with ctx.db.write() as session:
        for resource, value in checked.items():
            session.merge(
                models.Quota(
                    project_id=project_id,
                    user_id=user_id or "",
                    resource=resource,
                    hard_limit=value,
                )
            )
    return limits(ctx, project_id, user_id)


def reset(ctx: RequestContext, project_id: str, user_id: str | None) -> None:
    """Back to the defaults (a project reset also drops its users' limits)."""
    with ctx.db.write() as session:
        stmt = delete(models.Quota).where(models.Quota.project_id == project_id)
        if user_id:
            stmt = stmt.where(models.Quota.user_id == user_id)
        session.execute(stmt)


def update_class(ctx: RequestContext, class_name: str, values: Mapping[str, object]) -> None:
    checked = _checked_limits(values)
    with ctx.db.write() as session:
        for resource, value in checked.items():
            session.merge(
                models.QuotaClass(class_name=class_name, resource=resource, hard_limit=value)
            )


def visible(resources: Iterable[str], *, network: bool, injected: bool) -> list[str]:
    """The resources a microversion shows (network ones gone at 2.36, injected at 2.57)."""
    return [
        r
        for r in resources
        if (network or r not in NETWORK_RESOURCES) and (injected or r not in INJECTED_RESOURCES)
    ]
