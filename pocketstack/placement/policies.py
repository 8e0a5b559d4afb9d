"""Default RBAC rules for placement, named and defaulted as upstream does.

Placement is an admin and service API: admins and other services (the
`service` role) may do everything except reshaping, which is for services
only; a project reader may read its own project's usages.
"""

from pocketstack.core.policy import Rule

ADMIN_OR_SERVICE = "role:admin or role:service"
OWN_PROJECT_READER = "(role:reader and project_id:%(project_id)s)"

_ADMIN_OR_SERVICE_RULES = [
    "placement:resource_providers:list",
    "placement:resource_providers:create",
    "placement:resource_providers:show",
    "placement:resource_providers:update",
    "placement:resource_providers:delete",
    "placement:resource_providers:inventories:list",
    "placement:resource_providers:inventories:create",
    "placement:resource_providers:inventories:show",
    "placement:resource_providers:inventories:update",
    "placement:resource_providers:inventories:delete",
    "placement:resource_providers:aggregates:list",
    "placement:resource_providers:aggregates:update",
    "placement:resource_providers:usages",
    "placement:resource_providers:traits:list",
    "placement:resource_providers:traits:update",
    "placement:resource_providers:traits:delete",
    "placement:resource_providers:allocations:list",
    "placement:resource_classes:list",
    "placement:resource_classes:create",
    "placement:resource_classes:show",
    "placement:resource_classes:update",
    "placement:resource_classes:delete",
    "placement:traits:list",
    "placement:traits:show",
    "placement:traits:update",
    "placement:traits:delete",
    "placement:allocations:manage",
    "placement:allocations:list",
    "placement:allocations:update",
    "placement:allocations:delete",
    "placement:allocation_candidates:list",
]

PROJECT = ("project",)

RULES = [Rule(name, ADMIN_OR_SERVICE, scope_types=PROJECT) for name in _ADMIN_OR_SERVICE_RULES] + [
    Rule("placement:usages", f"{ADMIN_OR_SERVICE} or {OWN_PROJECT_READER}", scope_types=PROJECT),
    Rule("placement:reshaper:reshape", "role:service", scope_types=PROJECT),
]
