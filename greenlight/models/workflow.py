"""Approval requests, their decisions, deployments and the audit log."""

from tortoise import fields
from tortoise.models import Model

from greenlight.models.enums import ApprovalState, DeploymentStatus, DeploymentStrategy


class ApprovalRequest(Model):
    """One image asked to be approved for one pipeline.

    `state` is the stored state. A PENDING or APPROVED request whose `expires_at` has
    passed reads as EXPIRED everywhere (R15); `greenlight.workflow.states` decides that.
    `live_key` is set to "<image>:<pipeline>" while the stored state is PENDING or
    APPROVED and cleared otherwise, so the database itself refuses a second live
    request for the same pair (R6), even under races.
    """

    id = fields.IntField(primary_key=True)
    image = fields.ForeignKeyField("models.Image", related_name="approval_requests")
    pipeline = fields.ForeignKeyField("models.Pipeline", related_name="approval_requests")
    requested_by = fields.ForeignKeyField("models.User", related_name="approval_requests")
    state = fields.CharEnumField(ApprovalState, max_length=16, db_index=True)
    live_key = fields.CharField(max_length=64, null=True, unique=True)
    requested_at = fields.DatetimeField(auto_now_add=True)
    comment = fields.TextField(null=True)
    required_approvals = fields.SmallIntField()
    expires_at = fields.DatetimeField(null=True, db_index=True)
    closed_at = fields.DatetimeField(null=True)
    # The pipeline's policy when the request was made (R7): kind, listed users, group
    # quorums, countOncePerPerson. See greenlight.workflow.policy.
    policy = fields.JSONField(null=True)
    # The image is older than the pipeline's active image: approving needs acknowledgement.
    stale = fields.BooleanField(default=False)
    # R24: the approval completed while deploys were frozen; the background jobs deploy it
    # when the freeze ends, or tell the requester that they could not
    # (greenlight.workflow.deployments.deploy_after_freezes).
    deploy_after_freeze = fields.BooleanField(default=False)
    # The REJECTED request of the same image and pipeline this one asks again after; each
    # rejected request is answered at most once, so one image's history on one pipeline
    # reads as a chain.
    previous_request = fields.OneToOneField(
        "models.ApprovalRequest", related_name="next_request", null=True, on_delete=fields.SET_NULL
    )
    # Reminders and escalation (greenlight.workflow.reminders): when the named approvers
    # were last reminded, and when the request was escalated. Each is claimed by a
    # conditional UPDATE, so one process sends each reminder.
    last_reminded_at = fields.DatetimeField(null=True)
    escalated_at = fields.DatetimeField(null=True)

    class Meta:
        table = "approval_requests"
        indexes = (("pipeline_id", "state"), ("image_id", "pipeline_id"))


class Approval(Model):
    id = fields.IntField(primary_key=True)
    request = fields.ForeignKeyField("models.ApprovalRequest", related_name="approvals")
    user = fields.ForeignKeyField("models.User", related_name="approvals")
    decided_at = fields.DatetimeField(auto_now_add=True)
    comment = fields.TextField(null=True)
    # The request's quorum groups the approver belonged to when approving.
    group_ids = fields.JSONField(null=True)

    class Meta:
        table = "approvals"
        unique_together = (("request", "user"),)
        indexes = (("user_id",),)


class Rejection(Model):
    id = fields.IntField(primary_key=True)
    request = fields.OneToOneField("models.ApprovalRequest", related_name="rejection")
    user = fields.ForeignKeyField("models.User", related_name="rejections")
    decided_at = fields.DatetimeField(auto_now_add=True)
    reason = fields.TextField()

    class Meta:
        table = "rejections"


class NamedApprover(Model):
    """An approver the requester named on a request (R8)."""

    id = fields.IntField(primary_key=True)
    request = fields.ForeignKeyField("models.ApprovalRequest", related_name="named_approvers")
    user = fields.ForeignKeyField("models.User", related_name="named_on")

    class Meta:
        table = "named_approvers"
        unique_together = (("request", "user"),)


class Deployment(Model):
    id = fields.IntField(primary_key=True)
    pipeline = fields.ForeignKeyField("models.Pipeline", related_name="deployments")
    image = fields.ForeignKeyField("models.Image", related_name="deployments")
    status = fields.CharEnumField(DeploymentStatus, max_length=16)
    strategy = fields.CharEnumField(DeploymentStrategy, max_length=16)
    triggered_by = fields.ForeignKeyField("models.User", related_name="deployments")
    approval_request = fields.ForeignKeyField("models.ApprovalRequest", related_name="deployments", null=True)
    started_at = fields.DatetimeField(auto_now_add=True)
    finished_at = fields.DatetimeField(null=True)
    driver = fields.CharField(max_length=16, default="simulator")
    # The simulator's plan, fixed at start so a restart replays the same rollout.
    rollout_seconds = fields.FloatField(null=True)
    failed_step = fields.SmallIntField(null=True)
    message = fields.TextField(null=True)
    # Deployed by an exception user of the pipeline, without an approval.
    approval_exception = fields.BooleanField(default=False)
    freeze_override_reason = fields.TextField(null=True)

    class Meta:
        table = "deployments"
        indexes = (("pipeline_id", "status"), ("image_id", "status"))


class AuditEvent(Model):
    """Append-only: one row per state change, written in the transaction that made it."""

    id = fields.BigIntField(primary_key=True)
    at = fields.DatetimeField(auto_now_add=True, db_index=True)
    actor = fields.ForeignKeyField("models.User", related_name="audit_events", null=True)
    action = fields.CharField(max_length=64, db_index=True)
    object_type = fields.CharField(max_length=32)
    object_id = fields.IntField()
    application = fields.CharField(max_length=63, null=True)
    environment = fields.CharField(max_length=63, null=True)
    before = fields.JSONField(null=True)
    after = fields.JSONField(null=True)
    # The event's place in commit order, given once it is committed (ids are handed out
    # at insert, and concurrent transactions commit in another order): the cursor of
    # `greenlight audit export` and the order of the audit sink.
    seq = fields.BigIntField(null=True, unique=True)

    class Meta:
        table = "audit_events"
        indexes = (("object_type", "object_id"),)


class WebhookDelivery(Model):
    """Outbox of the webhook driver: written in the deploy's transaction, sent after it.

    A dispatcher claims due rows with FOR UPDATE SKIP LOCKED, so with several processes
    each delivery attempt is made by one of them.
    """

    id = fields.IntField(primary_key=True)
    deployment = fields.ForeignKeyField("models.Deployment", related_name="webhook_deliveries")
    payload = fields.JSONField()
    attempts = fields.SmallIntField(default=0)
    next_attempt_at = fields.DatetimeField(db_index=True)
    delivered_at = fields.DatetimeField(null=True)
    failed_at = fields.DatetimeField(null=True)
    last_error = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "webhook_deliveries"


class EmailOutbox(Model):
    """Emails to send, written in the transaction of the change that causes them.

    A dispatcher claims due rows with FOR UPDATE SKIP LOCKED and a lease, so each email
    is sent by one process; `message_id` is fixed here, the same on every attempt.
    """

    id = fields.IntField(primary_key=True)
    message_id = fields.CharField(max_length=255, unique=True)
    kind = fields.CharField(max_length=32)
    recipient = fields.ForeignKeyField("models.User", related_name="emails")
    to_address = fields.CharField(max_length=320)
    subject = fields.CharField(max_length=255)
    text_body = fields.TextField()
    html_body = fields.TextField()
    request = fields.ForeignKeyField("models.ApprovalRequest", related_name="emails", null=True)
    attempts = fields.SmallIntField(default=0)
    next_attempt_at = fields.DatetimeField(db_index=True)
    sent_at = fields.DatetimeField(null=True)
    failed_at = fields.DatetimeField(null=True)
    last_error = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    # Set just before an attempt hands the message over (SMTP DATA), cleared when its outcome
    # is recorded: still set when the next attempt starts, the last one's outcome is unknown.
    sending_at = fields.DatetimeField(null=True)
    # Attempts whose outcome could not be known (the process died, or the connection failed,
    # after the message was handed over): each may have delivered a copy.
    unknown_outcomes = fields.SmallIntField(default=0)

    class Meta:
        table = "email_outbox"
