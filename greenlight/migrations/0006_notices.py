from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0005_fault_outcomes")]

    initial = False

    operations = [
        ops.AddField(model_name="User", name="email_notices", field=fields.BooleanField(default=True)),
        ops.AddField(model_name="Pipeline", name="remind_after_hours", field=fields.IntField(null=True)),
        ops.AddField(model_name="Pipeline", name="escalate_after_hours", field=fields.IntField(null=True)),
        ops.AddField(model_name="Pipeline", name="escalate_group_id", field=fields.IntField(null=True)),
        ops.AddField(
            model_name="ApprovalRequest",
            name="last_reminded_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name="ApprovalRequest",
            name="escalated_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
    ]
