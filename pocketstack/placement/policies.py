"""Default RBAC rules for placement, named as upstream names them.

Placement is an admin and service API: admins and other services (the
`service` role) may do everything; system- and project-readers may read
where upstream allows it.
"""

from pocketstack.core.policy import Rule

ADMIN_OR_SERVICE = "role:admin or role:service"
READER = f"{ADMIN_OR_SERVICE} or role:reader"

_READS = {
    "placement:root:get": "@",
    "placement:resource_providers:list": READER,
    "placement:resource_providers:show": READER,
    "placement:resource_providers:inventories:list": READER,
    "placement:resource_providers:inventories:show": READER,
    "placement:resource_providers:aggregates:list": READER,
    "placement:resource_providers:traits:list": READER,
    "placement:resource_providers:usages": READER,
    "placement:resource_providers:allocations:list": READER,
    "placement:resource_classes:list": READER,
    "placement:resource_classes:show": READER,
    "placement:traits:list": READER,
    "placement:traits:show": READER,
    "placement:usages": READER,
    "placement:allocations:list": READER,
    "placement:allocation_candidates:list": READER,
}
_WRITES = [
    "placement:resource_providers:create",
    "placement:resource_providers:update",
    "placement:resource_providers:delete",
    "placement:resource_providers:inventories:create",
    "placement:resource_providers:inventories:update",
    "placement:resource_providers:inventories:delete",
    "placement:resource_providers:aggregates:update",
    "placement:resource_providers:traits:update",
    "placement:resource_providers:traits:delete",
    "placement:resource_classes:create",
    "placement:resource_classes:update",
    "placement:resource_classes:delete",
    "placement:traits:update",
    "placement:traits:delete",
    "placement:allocations:manage",
    "placement:allocations:update",
    "placement:allocations:delete",
    "placement:reshaper:reshape",
]

RULES = [Rule(name, rule) for name, rule in _READS.items()] + [
    Rule(name, ADMIN_OR_SERVICE) for name in _WRITES
]
