"""Default RBAC rules for images, named and defaulted as Glance names them.

Readers of a project read what they can see, members of the owner project
change its images, only admins publish an image to everyone, and a project an
image is shared with accepts or rejects it itself. Which images a caller can
see at all follows visibility and membership (service.py), as Glance decides
it in its database layer; rules judge a target whose `project_id` is the
image's owner and whose `member_id` is the member in question.
"""

from pocketstack.core.policy import Rule

ADMIN = "role:admin"
PROJECT_READER = "role:admin or role:reader"
OWNER_MEMBER = "role:admin or (role:member and project_id:%(project_id)s)"
OWNER_OR_MEMBER_READER = (
    "role:admin or (role:reader and (project_id:%(project_id)s or project_id:%(member_id)s))"
)
PROJECT = ("project",)

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
]
