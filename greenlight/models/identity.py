"""Users, their API tokens and their role bindings."""

from tortoise import fields
from tortoise.models import Model

from greenlight.models.enums import Role


class User(Model):
    id = fields.IntField(primary_key=True)
    email = fields.CharField(max_length=320, unique=True)
    name = fields.CharField(max_length=200)
    is_active = fields.BooleanField(default=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    # False: the user turned Greenlight's notices off for themself (outcomes, reminders,
    # escalations); the approval requests naming them still come (R8).
    email_notices = fields.BooleanField(default=True)

    class Meta:
        table = "users"


class ApiToken(Model):
    id = fields.IntField(primary_key=True)
    user = fields.ForeignKeyField("models.User", related_name="api_tokens")
    name = fields.CharField(max_length=200)
    token_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)
    last_used_at = fields.DatetimeField(null=True)
    # Limits on what the token may do, each null for none: action names of policy.csv,
    # application ids, environment ids. The token's power is its owner's rights now,
    # within these (greenlight.policies.token_scope).
    actions = fields.JSONField(null=True)
    application_ids = fields.JSONField(null=True)
    environment_ids = fields.JSONField(null=True)

    class Meta:
        table = "api_tokens"


class Group(Model):
    """A team: its members inherit the roles granted to it (through Casbin)."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=63, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "groups"


class GroupMember(Model):
    id = fields.IntField(primary_key=True)
    group = fields.ForeignKeyField("models.Group", related_name="members")
    user = fields.ForeignKeyField("models.User", related_name="memberships")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "group_members"
        unique_together = (("group", "user"),)
        indexes = (("user_id",),)


class RoleBinding(Model):
    """One role granted to one user, or to one group, on one scope: an application and an
    environment, each a name or the wildcard."""

    id = fields.IntField(primary_key=True)
    user = fields.ForeignKeyField("models.User", related_name="role_bindings", null=True)
    group = fields.ForeignKeyField("models.Group", related_name="role_bindings", null=True)
    role = fields.CharEnumField(Role, max_length=32)
    application = fields.CharField(max_length=63)
    environment = fields.CharField(max_length=63)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "role_bindings"
        unique_together = (
            ("user", "role", "application", "environment"),
            ("group", "role", "application", "environment"),
        )


class PolicyVersion(Model):
    """One version of who may do what: a row for each change to roles, groups or users.

    The row is appended in the transaction that makes the change (a role binding granted
    or revoked, a group membership added or removed, a user deactivated or reactivated, a
    group renamed) by the database's triggers (migration 0010_house), whoever writes it,
    and names the user whose rules changed, or the group whose bindings or name did.

    Every server process compares the latest id with the version it has applied and
    re-derives the rules of only the users and groups named since, so a grant or a
    revocation made through any process is enforced by all of them on their next request
    (R5). Writers hold greenlight.policies.changes.lock_policy until they commit (the
    triggers take it), so ids are taken in commit order.
    """

    id = fields.IntField(primary_key=True)
    user_id = fields.IntField(null=True)
    group_id = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True, null=True)

    class Meta:
        table = "policy_version"
