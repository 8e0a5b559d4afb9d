"""Default RBAC rules for identity, in the upstream rule language.

Admins (the `admin` role in any scope) manage everything; system-scoped
readers read everything; domain-scoped readers read inside their domain;
users read themselves, their projects and their own credentials.
"""

from pocketstack.core.policy import Rule

ADMIN = "rule:admin_required"
READER = "rule:admin_required or (role:reader and system_scope:all)"
DOMAIN_READER = "(role:reader and domain_id:%(target.domain_id)s)"
OWNER = "user_id:%(target.user.id)s"


def _read(extra: str = "") -> str:
    return f"{READER} or {extra}" if extra else READER


RULES = [
    Rule("admin_required", "role:admin or is_admin:1", "The cloud administrator."),
    Rule("service_role", "role:service", "Another OpenStack service."),
    Rule(
        "identity:get_domain",
        _read("domain_id:%(target.domain.id)s or project_domain_id:%(target.domain.id)s"),
    ),
    Rule("identity:list_domains", READER),
    Rule("identity:create_domain", ADMIN),
    Rule("identity:update_domain", ADMIN),
    Rule("identity:delete_domain", ADMIN),
    Rule(
        "identity:get_project",
        _read(
            "project_id:%(target.project.id)s or "
            "(role:reader and domain_id:%(target.project.domain_id)s)"
        ),
    ),
    Rule("identity:list_projects", _read(DOMAIN_READER)),
    Rule("identity:list_user_projects", _read(f"{OWNER} or {DOMAIN_READER}")),
    Rule("identity:create_project", ADMIN),
    Rule("identity:update_project", ADMIN),
    Rule("identity:delete_project", ADMIN),
    Rule("identity:get_project_tag", _read("project_id:%(target.project.id)s")),
    Rule("identity:list_project_tags", _read("project_id:%(target.project.id)s")),
    Rule("identity:create_project_tag", ADMIN),
    Rule("identity:update_project_tags", ADMIN),
    Rule("identity:delete_project_tag", ADMIN),
    Rule("identity:delete_project_tags", ADMIN),
    Rule(
        "identity:get_user",
        _read(f"{OWNER} or (role:reader and domain_id:%(target.user.domain_id)s)"),
    ),
    Rule("identity:list_users", _read(DOMAIN_READER)),
    Rule("identity:create_user", ADMIN),
    Rule("identity:update_user", ADMIN),
    Rule("identity:delete_user", ADMIN),
    Rule("identity:get_group", _read("(role:reader and domain_id:%(target.group.domain_id)s)")),
    Rule("identity:list_groups", _read(DOMAIN_READER)),
    Rule("identity:list_groups_for_user", _read(f"{OWNER} or {DOMAIN_READER}")),
    Rule("identity:create_group", ADMIN),
    Rule("identity:update_group", ADMIN),
    Rule("identity:delete_group", ADMIN),
    Rule(
        "identity:list_users_in_group",
        _read("(role:reader and domain_id:%(target.group.domain_id)s)"),
    ),
    Rule(
        "identity:check_user_in_group",
        _read("(role:reader and domain_id:%(target.group.domain_id)s)"),
    ),
    Rule("identity:add_user_to_group", ADMIN),
    Rule("identity:remove_user_from_group", ADMIN),
    Rule("identity:get_role", READER),
    Rule("identity:list_roles", READER),
    Rule("identity:create_role", ADMIN),
    Rule("identity:update_role", ADMIN),
    Rule("identity:delete_role", ADMIN),
    Rule("identity:get_implied_role", READER),
    Rule("identity:list_implied_roles", READER),
    Rule("identity:list_role_inference_rules", READER),
    Rule("identity:create_implied_role", ADMIN),
    Rule("identity:delete_implied_role", ADMIN),
    Rule("identity:check_grant", _read(DOMAIN_READER)),
    Rule("identity:list_grants", _read(DOMAIN_READER)),
    Rule("identity:create_grant", ADMIN),
    Rule("identity:revoke_grant", ADMIN),
    Rule("identity:check_system_grant", READER),
    Rule("identity:list_system_grants", READER),
    Rule("identity:create_system_grant", ADMIN),
    Rule("identity:revoke_system_grant", ADMIN),
    Rule("identity:list_role_assignments", _read(DOMAIN_READER)),
    Rule(
        "identity:list_role_assignments_for_tree",
        _read("(role:admin and project_id:%(target.project.id)s)"),
    ),
    Rule("identity:get_region", "@"),
    Rule("identity:list_regions", "@"),
    Rule("identity:create_region", ADMIN),
    Rule("identity:update_region", ADMIN),
    Rule("identity:delete_region", ADMIN),
    Rule("identity:get_service", READER),
    Rule("identity:list_services", READER),
    Rule("identity:create_service", ADMIN),
    Rule("identity:update_service", ADMIN),
    Rule("identity:delete_service", ADMIN),
    Rule("identity:get_endpoint", READER),
    Rule("identity:list_endpoints", READER),
    Rule("identity:create_endpoint", ADMIN),
    Rule("identity:update_endpoint", ADMIN),
    Rule("identity:delete_endpoint", ADMIN),
    Rule("identity:get_credential", _read("user_id:%(target.credential.user_id)s")),
    Rule("identity:list_credentials", _read("user_id:%(target.credential.user_id)s")),
    Rule("identity:create_credential", f"{ADMIN} or user_id:%(target.credential.user_id)s"),
    Rule("identity:update_credential", f"{ADMIN} or user_id:%(target.credential.user_id)s"),
    Rule("identity:delete_credential", f"{ADMIN} or user_id:%(target.credential.user_id)s"),
    Rule("identity:get_application_credential", _read(OWNER)),
    Rule("identity:list_application_credentials", _read(OWNER)),
    Rule("identity:create_application_credential", OWNER),
    Rule("identity:delete_application_credential", f"{ADMIN} or {OWNER}"),
    Rule("identity:validate_token", _read("rule:service_role or user_id:%(target.token.user_id)s")),
    Rule("identity:check_token", _read("rule:service_role or user_id:%(target.token.user_id)s")),
    Rule(
        "identity:revoke_token", f"{ADMIN} or rule:service_role or user_id:%(target.token.user_id)s"
    ),
    Rule("identity:list_access_rules", _read(OWNER)),
    Rule("identity:get_access_rule", _read(OWNER)),
    Rule("identity:delete_access_rule", f"{ADMIN} or {OWNER}"),
    Rule("identity:get_policy", READER),
    Rule("identity:list_policies", READER),
    Rule("identity:create_policy", ADMIN),
    Rule("identity:update_policy", ADMIN),
    Rule("identity:delete_policy", ADMIN),
    Rule("identity:get_endpoint_group", READER),
    Rule("identity:list_endpoint_groups", READER),
    Rule("identity:create_endpoint_group", ADMIN),
    Rule("identity:update_endpoint_group", ADMIN),
    Rule("identity:delete_endpoint_group", ADMIN),
    Rule("identity:get_consumer", READER),
    Rule("identity:list_consumers", READER),
    Rule("identity:create_consumer", ADMIN),
    Rule("identity:update_consumer", ADMIN),
    Rule("identity:delete_consumer", ADMIN),
    Rule("identity:get_domain_config_default", READER),
    Rule("identity:get_domain_config", READER),
    Rule("identity:create_domain_config", ADMIN),
    Rule("identity:update_domain_config", ADMIN),
    Rule("identity:delete_domain_config", ADMIN),
]
