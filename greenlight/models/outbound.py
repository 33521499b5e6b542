"""What leaves Greenlight besides emails and rollout webhooks: chat channels and their
deliveries, and the audit stream's cursors (the commit-order sequence of the audit log and
how far the audit sink has delivered it)."""

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model


class ChatChannelKind(StrEnum):
    SLACK = "SLACK"
    TEAMS = "TEAMS"
    WEBHOOK = "WEBHOOK"


class ChatEvent(StrEnum):
    """The approval events chat channels hear of, each from the audit event of its outcome."""

    REQUESTED = "REQUESTED"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    DEPLOYED = "DEPLOYED"
    ROLLOUT_FINISHED = "ROLLOUT_FINISHED"


class ChatChannel(Model):
    """A chat incoming webhook (Slack, Teams) or a generic signed JSON webhook that hears of
    approval events on one pipeline, or on every pipeline of one environment.

    `url` is a secret (an incoming webhook's URL is its credential): it is never shown,
    only its host. `events` lists the event kinds it hears (null: all). `secret` signs
    WEBHOOK deliveries (Standard Webhooks); a deleted channel keeps its row, without its URL
    path nor its secret, for the deliveries and the audit log that name it.
    """

    id = fields.IntField(primary_key=True)
    kind = fields.CharEnumField(ChatChannelKind, max_length=16)
    url = fields.TextField()
    pipeline = fields.ForeignKeyField("models.Pipeline", related_name="chat_channels", null=True)
    environment = fields.ForeignKeyField("models.Environment", related_name="chat_channels", null=True)
    events = fields.JSONField(null=True)
    secret = fields.CharField(max_length=128, null=True)
    created_by = fields.ForeignKeyField("models.User", related_name="chat_channels")
    created_at = fields.DatetimeField(auto_now_add=True)
    deleted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "chat_channels"


class ChatDelivery(Model):
    """Outbox of chat channels: one row per (channel, audit event), written when the event
    is sequenced (greenlight.notifications.audit_stream), sent by
    greenlight.notifications.chat. `delivery_id` is the `webhook-id` of every attempt and
    `payload` the exact body, both fixed here, so every retry is the same message."""

    id = fields.IntField(primary_key=True)
    channel = fields.ForeignKeyField("models.ChatChannel", related_name="deliveries")
    audit_event = fields.ForeignKeyField("models.AuditEvent", related_name="chat_deliveries")
    event = fields.CharField(max_length=32)
    delivery_id = fields.CharField(max_length=64, unique=True)
    payload = fields.JSONField()
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField(db_index=True)
    delivered_at = fields.DatetimeField(null=True)
    failed_at = fields.DatetimeField(null=True)
    last_error = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "chat_deliveries"
        unique_together = (("channel", "audit_event"),)


class AuditCursor(Model):
    """A position in the audit log's commit order (AuditEvent.seq), by name: `sequence` is
    the last position given out, `sink` the last event the audit webhook accepted (with the
    retry state of the next one)."""

    id = fields.IntField(primary_key=True)
    name = fields.CharField(max_length=32, unique=True)
    position = fields.BigIntField(default=0)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField(null=True)
    last_error = fields.TextField(null=True)

    class Meta:
        table = "audit_cursors"
