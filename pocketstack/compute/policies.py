"""Default RBAC rules for compute, named and defaulted as Nova names them.

A project's readers read its servers and members change them; admins see and
do everything, and own the host-side nouns (hypervisors, services, cells of
hosts) and the flavor catalogue. Keypairs belong to their user. The target of
a server rule is `{"project_id": <server's project>, "user_id": ...}`.
"""

from pocketstack.core.policy import Rule

ADMIN = "role:admin"
READER = "role:admin or (role:reader and project_id:%(project_id)s)"
MEMBER = "role:admin or (role:member and project_id:%(project_id)s)"
ANY = "@"
OWN_KEYPAIR = "role:admin or user_id:%(user_id)s"
PROJECT = ("project",)
S = "os_compute_api:servers:"

_READER = [
    f"{S}index",
    f"{S}detail",
    f"{S}show",
    "os_compute_api:os-console-output",
    "os_compute_api:os-instance-actions:list",
    "os_compute_api:os-instance-actions:show",
    "os_compute_api:server-metadata:index",
    "os_compute_api:server-metadata:show",
    "os_compute_api:os-server-tags:index",
    "os_compute_api:os-server-tags:show",
    "os_compute_api:ips:index",
    "os_compute_api:ips:show",
    "os_compute_api:os-flavor-extra-specs:index",
    "os_compute_api:os-flavor-extra-specs:show",
    "os_compute_api:os-server-groups:index",
    "os_compute_api:os-server-groups:show",
    "os_compute_api:os-quota-sets:show",
    "os_compute_api:os-quota-sets:detail",
    "os_compute_api:os-volumes-attachments:index",
    "os_compute_api:os-volumes-attachments:show",
]
_MEMBER = [
    f"{S}create",
    f"{S}update",
    f"{S}delete",
    f"{S}reboot",
    f"{S}start",
    f"{S}stop",
    f"{S}resize",
    f"{S}confirm_resize",
    f"{S}revert_resize",
    f"{S}rebuild",
    f"{S}create_image",
    "os_compute_api:os-pause-server:pause",
    "os_compute_api:os-pause-server:unpause",
    "os_compute_api:os-suspend-server:suspend",
    "os_compute_api:os-suspend-server:resume",
    "os_compute_api:os-lock-server:lock",
    "os_compute_api:os-lock-server:unlock",
    "os_compute_api:os-rescue",
    "os_compute_api:os-unrescue",
    "os_compute_api:server-metadata:create",
    "os_compute_api:server-metadata:update",
    "os_compute_api:server-metadata:update_all",
    "os_compute_api:server-metadata:delete",
    "os_compute_api:os-server-tags:update",
    "os_compute_api:os-server-tags:update_all",
    "os_compute_api:os-server-tags:delete",
    "os_compute_api:os-server-tags:delete_all",
    "os_compute_api:os-server-groups:create",
    "os_compute_api:os-server-groups:delete",
    "os_compute_api:os-volumes-attachments:create",
    "os_compute_api:os-volumes-attachments:update",
    "os_compute_api:os-volumes-attachments:delete",
]
_ADMIN = [
    f"{S}index:get_all_tenants",
    f"{S}detail:get_all_tenants",
    f"{S}allow_all_filters",
    f"{S}show:host_status",
    f"{S}create:forced_host",
    f"{S}create:requested_destination",
    "os_compute_api:os-extended-server-attributes",
    "os_compute_api:os-lock-server:unlock:unlock_override",
    "os_compute_api:os-instance-actions:events",
    "os_compute_api:os-instance-actions:events:details",
    "os_compute_api:os-flavor-manage:create",
    "os_compute_api:os-flavor-manage:update",
    "os_compute_api:os-flavor-manage:delete",
    "os_compute_api:os-flavor-extra-specs:create",
    "os_compute_api:os-flavor-extra-specs:update",
    "os_compute_api:os-flavor-extra-specs:delete",
    "os_compute_api:os-flavor-access",
    "os_compute_api:os-flavor-access:add_tenant_access",
    "os_compute_api:os-flavor-access:remove_tenant_access",
    "os_compute_api:os-server-groups:index:all_projects",
    *(
        f"os_compute_api:os-aggregates:{verb}"
        for verb in (
            "index",
            "create",
            "show",
            "update",
            "delete",
            "add_host",
            "remove_host",
            "set_metadata",
        )
    ),
    "compute:aggregates:images",
    "os_compute_api:os-availability-zone:detail",
    "os_compute_api:os-services:list",
    "os_compute_api:os-services:update",
    "os_compute_api:os-services:delete",
    *(
        f"os_compute_api:os-hypervisors:{verb}"
        for verb in ("list", "list-detail", "statistics", "show", "uptime", "search", "servers")
    ),
    "os_compute_api:os-quota-sets:update",
    "os_compute_api:os-quota-sets:delete",
    "os_compute_api:os-quota-class-sets:show",
    "os_compute_api:os-quota-class-sets:update",
    "os_compute_api:limits:other_project",
]

RULES = [
    *(Rule(name, READER, scope_types=PROJECT) for name in _READER),
    *(Rule(name, MEMBER, scope_types=PROJECT) for name in _MEMBER),
    *(Rule(name, ADMIN, scope_types=PROJECT) for name in _ADMIN),
    *(
        Rule(f"os_compute_api:os-keypairs:{verb}", OWN_KEYPAIR, scope_types=PROJECT)
        for verb in ("index", "show", "create", "delete")
    ),
    Rule("os_compute_api:limits", ANY, scope_types=PROJECT),
    Rule("os_compute_api:os-availability-zone:list", ANY, scope_types=PROJECT),
    Rule("os_compute_api:os-quota-sets:defaults", ANY, scope_types=PROJECT),
    Rule("os_compute_api:os-admin-actions:reset_state", ADMIN, scope_types=PROJECT),
    Rule("os_compute_api:os-migrate-server:migrate", ADMIN, scope_types=PROJECT),
    Rule("os_compute_api:os-deferred-delete:restore", MEMBER, scope_types=PROJECT),
    Rule("os_compute_api:os-deferred-delete:force", MEMBER, scope_types=PROJECT),
]

# The reports and proxies of more_api.py.
MANAGER = "role:admin or (role:manager and project_id:%(project_id)s)"
SERVICE = "role:admin or role:service"
RULES += [
    *(
        Rule(f"os_compute_api:os-hosts:{verb}", ADMIN, scope_types=PROJECT)
        for verb in ("list", "show", "update", "reboot", "shutdown", "start")
    ),
    Rule("os_compute_api:os-simple-tenant-usage:list", ADMIN, scope_types=PROJECT),
    Rule("os_compute_api:os-simple-tenant-usage:show", READER, scope_types=PROJECT),
    Rule("os_compute_api:os-instance-usage-audit-log:list", ADMIN, scope_types=PROJECT),
    Rule("os_compute_api:os-instance-usage-audit-log:show", ADMIN, scope_types=PROJECT),
    *(
        Rule(f"os_compute_api:{noun}:{verb}", READER, scope_types=PROJECT)
        for noun in ("os-networks", "os-tenant-networks")
        for verb in ("list", "show")
    ),
    Rule("os_compute_api:os-server-diagnostics", ADMIN, scope_types=PROJECT),
    Rule("os_compute_api:os-migrations:index", MANAGER, scope_types=PROJECT),
    Rule("os_compute_api:os-migrations:index:all_projects", ADMIN, scope_types=PROJECT),
    Rule("os_compute_api:os-migrations:index:host", ADMIN, scope_types=PROJECT),
    Rule("os_compute_api:os-server-external-events:create", SERVICE, scope_types=PROJECT),
    Rule("os_compute_api:extensions", ANY, scope_types=PROJECT),
]
