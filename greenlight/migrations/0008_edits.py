import functools
from json import dumps, loads

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops


def _json():
    return fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads)


class Migration(migrations.Migration):
    dependencies = [("models", "0007_outbound")]

    initial = False

    operations = [
        ops.AddField(
            model_name="Application",
            name="archived_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name="Environment",
            name="archived_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name="ApprovalRequest",
            name="previous_request",
            field=fields.OneToOneField(
                "models.ApprovalRequest",
                source_field="previous_request_id",
                null=True,
                db_constraint=True,
                to_field="id",
                related_name="next_request",
                on_delete=OnDelete.SET_NULL,
            ),
        ),
        ops.AddField(model_name="ApiToken", name="actions", field=_json()),
        ops.AddField(model_name="ApiToken", name="application_ids", field=_json()),
        ops.AddField(model_name="ApiToken", name="environment_ids", field=_json()),
    ]
