"""Applications, environments, the pipelines joining them, and the images CI registers."""

from tortoise import fields
from tortoise.models import Model

from greenlight.models.enums import ApprovalPolicyKind, DeploymentStrategy, TriggerType


class Application(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=63, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    # Archived: left out of lists, takes no new requests or deployments; history stays.
    archived_at = fields.DatetimeField(null=True)

    class Meta:
        table = "applications"


class Environment(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=63, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    # Archived: left out of lists, takes no new requests or deployments; history stays.
    archived_at = fields.DatetimeField(null=True)

    class Meta:
        table = "environments"


class Pipeline(Model):
    """One application deployed to one environment, with its approval policy."""

    id = fields.IntField(primary_key=True)
    application = fields.ForeignKeyField("models.Application", related_name="pipelines")
    environment = fields.ForeignKeyField("models.Environment", related_name="pipelines")
    strategy = fields.CharEnumField(DeploymentStrategy, max_length=16)
    trigger_type = fields.CharEnumField(TriggerType, max_length=16)
    required_approvals = fields.SmallIntField()
    ttl_hours = fields.IntField(null=True)
    approvers_can_deploy = fields.BooleanField(default=False)
    policy_kind = fields.CharEnumField(ApprovalPolicyKind, max_length=16, default=ApprovalPolicyKind.ANY)
    count_once_per_person = fields.BooleanField(default=True)
    cancel_stale_requests = fields.BooleanField(default=False)
    # Names of the image checks that must have PASSED before approving and deploying; null
    # (pipelines made before checks existed) is none.
    required_checks = fields.JSONField(null=True)
    # Promotion: an image must have been HEALTHY on this environment (a pipeline of the same
    # application) before it may be requested here.
    requires_healthy_on = fields.ForeignKeyField("models.Environment", related_name="promotes_to", null=True)
    # Reminders and escalation of PENDING requests (greenlight.workflow.reminders): the
    # named approvers are reminded every `remind_after_hours`; after `escalate_after_hours`
    # the members of group `escalate_group_id` (or the super-admins) are told, once.
    remind_after_hours = fields.IntField(null=True)
    escalate_after_hours = fields.IntField(null=True)
    escalate_group_id = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "pipelines"
        unique_together = (("application", "environment"),)


class PolicyApprover(Model):
    """SPECIFIC_USERS: a user who must approve every request of the pipeline."""

    id = fields.IntField(primary_key=True)
    pipeline = fields.ForeignKeyField("models.Pipeline", related_name="policy_approvers")
    user = fields.ForeignKeyField("models.User", related_name="policy_approver_of")

    class Meta:
        table = "policy_approvers"
        unique_together = (("pipeline", "user"),)


class GroupQuorum(Model):
    """GROUP_QUORUMS: at least `min_approvals` approvals from members of `group`."""

    id = fields.IntField(primary_key=True)
    pipeline = fields.ForeignKeyField("models.Pipeline", related_name="group_quorums")
    group = fields.ForeignKeyField("models.Group", related_name="quorums")
    min_approvals = fields.SmallIntField()

    class Meta:
        table = "group_quorums"
        unique_together = (("pipeline", "group"),)


class ApprovalException(Model):
    """A user, or a group's members, who may deploy on the pipeline without approval."""

    id = fields.IntField(primary_key=True)
    pipeline = fields.ForeignKeyField("models.Pipeline", related_name="approval_exceptions")
    user = fields.ForeignKeyField("models.User", related_name="approval_exceptions", null=True)
    group = fields.ForeignKeyField("models.Group", related_name="approval_exceptions", null=True)

    class Meta:
        table = "approval_exceptions"
        unique_together = (("pipeline", "user"), ("pipeline", "group"))


class DeployFreeze(Model):
    """A window in which deploys to an environment (or one pipeline) are refused.

    Either one-off (`starts_at` to `ends_at`) or weekly: from `start_day` `start_time` to
    `end_day` `end_time`, wall-clock in `time_zone` (so DST moves the UTC instants).
    """

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=200)
    environment = fields.ForeignKeyField("models.Environment", related_name="freezes", null=True)
    pipeline = fields.ForeignKeyField("models.Pipeline", related_name="freezes", null=True)
    starts_at = fields.DatetimeField(null=True)
    ends_at = fields.DatetimeField(null=True)
    time_zone = fields.CharField(max_length=64, null=True)
    start_day = fields.SmallIntField(null=True)  # 0 is Monday
    start_time = fields.CharField(max_length=5, null=True)  # "HH:MM"
    end_day = fields.SmallIntField(null=True)
    end_time = fields.CharField(max_length=5, null=True)
    created_by = fields.ForeignKeyField("models.User", related_name="freezes_created")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "deploy_freezes"


class Image(Model):
    id = fields.IntField(primary_key=True)
    application = fields.ForeignKeyField("models.Application", related_name="images")
    repository = fields.CharField(max_length=255)
    tag = fields.CharField(max_length=128)
    digest = fields.CharField(max_length=71)
    built_by = fields.ForeignKeyField("models.User", related_name="built_images")
    created_at = fields.DatetimeField(auto_now_add=True)
    # What CI says it built from (all optional; see greenlight.workflow.images).
    commit = fields.CharField(max_length=40, null=True, db_index=True)
    branch = fields.CharField(max_length=255, null=True, db_index=True)
    build_url = fields.CharField(max_length=2048, null=True)

    class Meta:
        table = "images"
        unique_together = (("application", "digest"),)
