"""Applications, environments, the pipelines joining them, and the images CI registers."""

from tortoise import fields
from tortoise.models import Model

from greenlight.models.enums import DeploymentStrategy, TriggerType


class Application(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=63, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "applications"


class Environment(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=63, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)

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
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "pipelines"
        unique_together = (("application", "environment"),)


class Image(Model):
    id = fields.IntField(primary_key=True)
    application = fields.ForeignKeyField("models.Application", related_name="images")
    repository = fields.CharField(max_length=255)
    tag = fields.CharField(max_length=128)
    digest = fields.CharField(max_length=71)
    built_by = fields.ForeignKeyField("models.User", related_name="built_images")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "images"
        unique_together = (("application", "digest"),)
