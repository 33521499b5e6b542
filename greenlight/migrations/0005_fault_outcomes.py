from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0004_drop_change_counter")]

    initial = False

    operations = [
        ops.AddField(
            model_name="ApprovalRequest",
            name="deploy_after_freeze",
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name="EmailOutbox",
            name="sending_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name="EmailOutbox",
            name="unknown_outcomes",
            field=fields.SmallIntField(default=0),
        ),
    ]
