"""Default RBAC rules for networking, named as Neutron names them.

Members of a project manage its resources and readers read them; admins see
and do everything, and alone set provider attributes, sharing, external
networks, port bindings and MACs of ports on networks not theirs. Which rows a
caller sees at all (its own, shared and external networks) is decided in the
services' queries, as Neutron filters them.
"""

from pocketstack.core.policy import Rule

ADMIN = "role:admin"
MEMBER = "role:admin or (role:member and project_id:%(project_id)s)"
READER = "role:admin or (role:reader and project_id:%(project_id)s)"
NETWORK_OWNER = "role:admin or (role:member and project_id:%(network_owner)s)"
PROJECT = ("project",)


def _crud(noun: str) -> list[Rule]:
    return [
        Rule(f"create_{noun}", MEMBER, scope_types=PROJECT),
        Rule(f"get_{noun}", READER, scope_types=PROJECT),
        Rule(f"update_{noun}", MEMBER, scope_types=PROJECT),
        Rule(f"delete_{noun}", MEMBER, scope_types=PROJECT),
    ]


RULES = [
    *_crud("network"),
    *_crud("subnet"),
    *_crud("port"),
    *_crud("security_group"),
    *_crud("security_group_rule"),
    *_crud("router"),
    *_crud("subnetpool"),
    *_crud("policy"),
    *_crud("policy_bandwidth_limit_rule"),
    *_crud("floatingip"),
    *_crud("floatingip_port_forwarding"),
    Rule("add_router_interface", MEMBER, scope_types=PROJECT),
    Rule("remove_router_interface", MEMBER, scope_types=PROJECT),
    *(
        Rule(name, ADMIN, scope_types=PROJECT)
        for name in (
            "create_network:shared",
            "create_network:router:external",
            "create_network:provider:network_type",
            "create_network:provider:physical_network",
            "create_network:provider:segmentation_id",
            "update_network:shared",
            "update_network:router:external",
            "create_port:binding:host_id",
            "create_port:binding:profile",
            "update_port:binding:host_id",
            "update_port:binding:profile",
            "update_port:mac_address",
            "update_quota",
            "update_router:external_gateway_info:enable_snat",
            "update_router:external_gateway_info:external_fixed_ips",
            "create_floatingip:floating_ip_address",
            "create_subnetpool:shared",
            "delete_quota",
        )
    ),
    Rule("create_port:mac_address", NETWORK_OWNER, scope_types=PROJECT),
    Rule("create_port:fixed_ips", NETWORK_OWNER, scope_types=PROJECT),
    Rule("get_quota", READER, scope_types=PROJECT),
]
