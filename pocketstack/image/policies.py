"""Default RBAC rules for images, named as Glance names them.

Readers of a project may read what they can see, members may create images
and change their own project's, and only admins may publish an image to
everyone or (de)activate it. Which images a caller can see at all is decided
by visibility and membership in service.py, as Glance does it in its
database layer.
"""

from pocketstack.core.policy import Rule

ADMIN = "role:admin"
READER = "role:admin or role:reader"
MEMBER = "role:admin or role:member"

RULES = [
    Rule("get_images", READER),
    Rule("get_image", READER),
    Rule("download_image", READER),
    Rule("add_image", MEMBER),
    Rule("modify_image", MEMBER),
    Rule("upload_image", MEMBER),
    Rule("delete_image", MEMBER),
    Rule("publicize_image", ADMIN),
    Rule("communitize_image", MEMBER),
    Rule("deactivate", ADMIN),
    Rule("reactivate", ADMIN),
    Rule("get_members", READER),
    Rule("get_member", READER),
    Rule("add_member", MEMBER),
    Rule("modify_member", MEMBER),
    Rule("delete_member", MEMBER),
]
