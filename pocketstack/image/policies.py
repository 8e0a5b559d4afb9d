"""Default RBAC rules for images, named and defaulted as Glance names them.

Readers of a project read what they can see, members of the owner project
change its images, only admins publish an image to everyone, and a project an
image is shared with accepts or rejects it itself. Which images a caller can
see at all follows visibility and membership (service.py), as Glance decides
it in its database layer; rules judge a target whose `project_id` is the
image's owner and whose `member_id` is the member in question.

Metadata definitions (metadefs.py): admins write the catalog; readers read their
project's namespaces and every public one. A metadef target's `project_id` is the
namespace owner and `visibility` its visibility.
"""

from pocketstack.core.policy import Rule

ADMIN = "role:admin"
PROJECT_READER = "role:admin or role:reader"
OWNER_MEMBER = "role:admin or (role:member and project_id:%(project_id)s)"
OWNER_OR_MEMBER_READER = (
    "role:admin or (role:reader and (project_id:%(project_id)s or project_id:%(member_id)s))"
)
PROJECT = ("project",)
OWN_PROJECT_READER = "role:admin or (role:reader and project_id:%(project_id)s)"
NAMESPACE_READER = (
    "role:admin or (role:reader and (project_id:%(project_id)s or 'public':%(visibility)s))"
)

RULES = [
    Rule("get_images", PROJECT_READER, scope_types=PROJECT),
    Rule("get_image", PROJECT_READER, scope_types=PROJECT),
    Rule("download_image", "role:admin or role:member", scope_types=PROJECT),
    Rule("add_image", "role:admin or (role:member and project_id:%(owner)s)", scope_types=PROJECT),
    Rule("modify_image", OWNER_MEMBER, scope_types=PROJECT),
    Rule("upload_image", OWNER_MEMBER, scope_types=PROJECT),
    Rule("delete_image", OWNER_MEMBER, scope_types=PROJECT),
    Rule("publicize_image", ADMIN, scope_types=PROJECT),
    Rule("communitize_image", OWNER_MEMBER, scope_types=PROJECT),
    Rule("deactivate", OWNER_MEMBER, scope_types=PROJECT),
    Rule("reactivate", OWNER_MEMBER, scope_types=PROJECT),
    Rule("get_members", OWNER_OR_MEMBER_READER, scope_types=PROJECT),
    Rule("get_member", OWNER_OR_MEMBER_READER, scope_types=PROJECT),
    Rule("add_member", OWNER_MEMBER, scope_types=PROJECT),
    Rule(
        "modify_member",
        "role:admin or (role:member and project_id:%(member_id)s)",
        scope_types=PROJECT,
    ),
    Rule("delete_member", OWNER_MEMBER, scope_types=PROJECT),
    Rule("get_metadef_namespaces", OWN_PROJECT_READER, scope_types=PROJECT),
    *(
        Rule(name, NAMESPACE_READER, scope_types=PROJECT)
        for name in (
            "get_metadef_namespace",
            "get_metadef_object",
            "get_metadef_objects",
            "list_metadef_resource_types",
            "get_metadef_resource_type",
            "get_metadef_property",
            "get_metadef_properties",
            "get_metadef_tag",
            "get_metadef_tags",
        )
    ),
    *(
        Rule(name, ADMIN, scope_types=PROJECT)
        for name in (
            "add_metadef_namespace",
            "modify_metadef_namespace",
            "delete_metadef_namespace",
            "add_metadef_object",
            "modify_metadef_object",
            "delete_metadef_object",
            "add_metadef_resource_type_association",
            "remove_metadef_resource_type_association",
            "add_metadef_property",
            "modify_metadef_property",
            "remove_metadef_property",
            "add_metadef_tag",
            "add_metadef_tags",
            "modify_metadef_tag",
            "delete_metadef_tag",
            "delete_metadef_tags",
        )
    ),
]
