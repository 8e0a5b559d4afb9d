"""Default RBAC rules for block storage, named as Cinder names them.

Members of a project manage its volumes and snapshots and readers read them;
admins alone manage volume types, quotas and reset statuses. Which rows a
caller sees at all (its own project's) is decided in the service's queries.
"""

from pocketstack.core.policy import Rule

ADMIN = "role:admin"
MEMBER = "role:admin or (role:member and project_id:%(project_id)s)"
READER = "role:admin or (role:reader and project_id:%(project_id)s)"
ANY_READER = "role:admin or role:reader"
PROJECT = ("project",)

RULES = [
    *(
        Rule(f"volume:{action}", MEMBER, scope_types=PROJECT)
        for action in (
            "create",
            "update",
            "delete",
            "extend",
            "extend_attached_volume",
            "retype",
            "revert_to_snapshot",
            "update_volume_metadata",
            "delete_volume_metadata",
            "create_snapshot",
            "update_snapshot",
            "delete_snapshot",
            "update_snapshot_metadata",
            "delete_snapshot_metadata",
            "attachment_create",
            "attachment_update",
            "attachment_complete",
            "attachment_delete",
        )
    ),
    *(
        Rule(f"volume:{action}", READER, scope_types=PROJECT)
        for action in (
            "get",
            "get_volume_metadata",
            "get_snapshot",
            "get_snapshot_metadata",
            "attachment_get",
        )
    ),
    *(
        Rule(f"backup:{action}", MEMBER, scope_types=PROJECT)
        for action in ("create", "update", "delete", "restore")
    ),
    Rule("backup:get", READER, scope_types=PROJECT),
    Rule("backup:get_all", ANY_READER, scope_types=PROJECT),
    Rule("backup:backup_project_attribute", ADMIN, scope_types=PROJECT),
    Rule("volume_extension:backup_admin_actions:reset_status", ADMIN, scope_types=PROJECT),
    Rule("volume_extension:backup_admin_actions:force_delete", ADMIN, scope_types=PROJECT),
    Rule("volume:get_all", ANY_READER, scope_types=PROJECT),
    Rule("volume:get_all_snapshots", ANY_READER, scope_types=PROJECT),
    Rule("volume_extension:volume_actions:update_readonly", MEMBER, scope_types=PROJECT),
    Rule("volume_extension:volume_actions:set_bootable", MEMBER, scope_types=PROJECT),
    Rule("volume_extension:volume_actions:upload_image", MEMBER, scope_types=PROJECT),
    Rule("volume_extension:volume_actions:upload_public", ADMIN, scope_types=PROJECT),
    *(
        Rule(f"volume_extension:volume_actions:{action}", MEMBER, scope_types=PROJECT)
        for action in (
            "reserve",
            "unreserve",
            "begin_detaching",
            "roll_detaching",
            "attach",
            "detach",
            "initialize_connection",
            "terminate_connection",
        )
    ),
    Rule("volume_extension:volume_admin_actions:force_detach", ADMIN, scope_types=PROJECT),
    Rule("volume_extension:volume_admin_actions:reset_status", ADMIN, scope_types=PROJECT),
    Rule("volume_extension:volume_admin_actions:force_delete", ADMIN, scope_types=PROJECT),
    Rule("volume_extension:snapshot_admin_actions:reset_status", ADMIN, scope_types=PROJECT),
    Rule("volume_extension:snapshot_admin_actions:force_delete", ADMIN, scope_types=PROJECT),
    Rule("volume_extension:types_manage", ADMIN, scope_types=PROJECT),
    Rule("volume_extension:type_get", ANY_READER, scope_types=PROJECT),
    Rule("volume_extension:type_get_all", ANY_READER, scope_types=PROJECT),
    Rule("volume_extension:volume_type_access:addProjectAccess", ADMIN, scope_types=PROJECT),
    Rule("volume_extension:volume_type_access:removeProjectAccess", ADMIN, scope_types=PROJECT),
    Rule("volume_extension:volume_type_access", ADMIN, scope_types=PROJECT),
    Rule("volume_extension:quotas:show", READER, scope_types=PROJECT),
    Rule("volume_extension:quotas:update", ADMIN, scope_types=PROJECT),
    Rule("volume_extension:quotas:delete", ADMIN, scope_types=PROJECT),
    Rule("volume_extension:quota_classes", ADMIN, scope_types=PROJECT),
    Rule("scheduler_extension:scheduler_stats:get_pools", ADMIN, scope_types=PROJECT),
    Rule("volume_extension:services:index", ADMIN, scope_types=PROJECT),
    Rule("volume_extension:services:update", ADMIN, scope_types=PROJECT),
    Rule("volume:freeze_host", ADMIN, scope_types=PROJECT),
    Rule("volume:thaw_host", ADMIN, scope_types=PROJECT),
    Rule("volume_extension:hosts", ADMIN, scope_types=PROJECT),
    *(
        Rule(f"group:group_types:{action}", ADMIN, scope_types=PROJECT)
        for action in ("create", "update", "delete")
    ),
    *(
        Rule(f"group:group_types_specs:{action}", ADMIN, scope_types=PROJECT)
        for action in ("create", "get", "get_all", "update", "delete")
    ),
    Rule("group:access_group_types_specs", ADMIN, scope_types=PROJECT),
    *(
        Rule(f"group:{action}", MEMBER, scope_types=PROJECT)
        for action in (
            "create",
            "update",
            "delete",
            "create_group_snapshot",
            "delete_group_snapshot",
        )
    ),
    Rule("group:get", READER, scope_types=PROJECT),
    Rule("group:get_group_snapshot", READER, scope_types=PROJECT),
    Rule("group:get_all", ANY_READER, scope_types=PROJECT),
    Rule("group:get_all_group_snapshots", ANY_READER, scope_types=PROJECT),
    Rule("group:reset_status", ADMIN, scope_types=PROJECT),
    Rule("group:reset_group_snapshot_status", ADMIN, scope_types=PROJECT),
    *(
        Rule(f"volume_extension:qos_specs_manage:{action}", ADMIN, scope_types=PROJECT)
        for action in ("create", "get", "get_all", "update", "delete")
    ),
    *(
        Rule(f"volume_extension:volume_type_encryption:{action}", ADMIN, scope_types=PROJECT)
        for action in ("create", "get", "update", "delete")
    ),
    Rule("volume:create_transfer", MEMBER, scope_types=PROJECT),
    Rule("volume:accept_transfer", MEMBER, scope_types=PROJECT),
    Rule("volume:delete_transfer", MEMBER, scope_types=PROJECT),
    Rule("volume:get_transfer", READER, scope_types=PROJECT),
    Rule("volume:get_all_transfers", ANY_READER, scope_types=PROJECT),
    Rule("snapshot_extension:snapshot_actions:update_snapshot_status", MEMBER, scope_types=PROJECT),
    Rule("volume_extension:volume_image_metadata:show", READER, scope_types=PROJECT),
    Rule("volume_extension:volume_image_metadata:set", MEMBER, scope_types=PROJECT),
    Rule("volume_extension:volume_image_metadata:remove", MEMBER, scope_types=PROJECT),
    Rule("message:get_all", ANY_READER, scope_types=PROJECT),
    Rule("message:get", READER, scope_types=PROJECT),
    Rule("message:delete", MEMBER, scope_types=PROJECT),
    Rule("volume_extension:capabilities", ADMIN, scope_types=PROJECT),
    Rule("volume_extension:availability_zone_list", ANY_READER, scope_types=PROJECT),
    Rule("limits_extension:used_limits", ANY_READER, scope_types=PROJECT),
]
