"""Tortoise models over Greenlight's own tables (its migrations made them), with only the
columns the naive server reads or writes."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class User(Model):
    id = fields.IntField(primary_key=True)
    email = fields.CharField(max_length=320)
    name = fields.CharField(max_length=200)
    is_active = fields.BooleanField(default=True)

    class Meta:
        table = "users"


class ApiToken(Model):
    id = fields.IntField(primary_key=True)
    user = fields.ForeignKeyField("models.User", related_name="api_tokens")
    token_hash = fields.CharField(max_length=64)
    expires_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_tokens"


class RoleBinding(Model):
    id = fields.IntField(primary_key=True)
    user = fields.ForeignKeyField("models.User", related_name="role_bindings", null=True)
    role = fields.CharField(max_length=32)
    application = fields.CharField(max_length=63)
    environment = fields.CharField(max_length=63)

    class Meta:
        table = "role_bindings"


class Application(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=63)

    class Meta:
        table = "applications"


class Environment(Model):
    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=63)

    class Meta:
        table = "environments"


class Pipeline(Model):
    id = fields.IntField(primary_key=True)
    application = fields.ForeignKeyField("models.Application", related_name="pipelines")
    environment = fields.ForeignKeyField("models.Environment", related_name="pipelines")
    required_approvals = fields.SmallIntField()

    class Meta:
        table = "pipelines"


class Image(Model):
    id = fields.IntField(primary_key=True)
    application = fields.ForeignKeyField("models.Application", related_name="images")
    repository = fields.CharField(max_length=255)
    tag = fields.CharField(max_length=128)
    digest = fields.CharField(max_length=71)
    built_by = fields.ForeignKeyField("models.User", related_name="built")
    created_at = fields.DatetimeField()

    class Meta:
        table = "images"


class ApprovalRequest(Model):
    id = fields.IntField(primary_key=True)
    image = fields.ForeignKeyField("models.Image", related_name="approval_requests")
    pipeline = fields.ForeignKeyField("models.Pipeline", related_name="approval_requests")
    requested_by = fields.ForeignKeyField("models.User", related_name="approval_requests")
    state = fields.CharField(max_length=16)
    live_key = fields.CharField(max_length=64, null=True)
    requested_at = fields.DatetimeField()
    required_approvals = fields.SmallIntField()
    expires_at = fields.DatetimeField(null=True)
    closed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "approval_requests"


class Approval(Model):
    id = fields.IntField(primary_key=True)
    request = fields.ForeignKeyField("models.ApprovalRequest", related_name="approvals")
    user = fields.ForeignKeyField("models.User", related_name="approvals")
    decided_at = fields.DatetimeField()
    comment = fields.TextField(null=True)

    class Meta:
        table = "approvals"


class Deployment(Model):
    id = fields.IntField(primary_key=True)
    pipeline = fields.ForeignKeyField("models.Pipeline", related_name="deployments")
    image = fields.ForeignKeyField("models.Image", related_name="deployments")
    status = fields.CharField(max_length=16)

    class Meta:
        table = "deployments"
