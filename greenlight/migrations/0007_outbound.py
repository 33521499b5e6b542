from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from greenlight.models.outbound import ChatChannelKind
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0006_notices')]

    initial = False

    operations = [
        ops.CreateModel(
            name='AuditCursor',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=32)),
                ('position', fields.BigIntField(default=0)),
                ('attempts', fields.IntField(default=0)),
                ('next_attempt_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_error', fields.TextField(null=True, unique=False)),
            ],
            options={'table': 'audit_cursors', 'app': 'models', 'pk_attr': 'id', 'table_description': "A position in the audit log's commit order (AuditEvent.seq), by name: `sequence` is"},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ChatChannel',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('kind', fields.CharEnumField(description='SLACK: SLACK\nTEAMS: TEAMS\nWEBHOOK: WEBHOOK', enum_type=ChatChannelKind, max_length=16)),
                ('url', fields.TextField(unique=False)),
                ('pipeline', fields.ForeignKeyField('models.Pipeline', source_field='pipeline_id', null=True, db_constraint=True, to_field='id', related_name='chat_channels', on_delete=OnDelete.CASCADE)),
                ('environment', fields.ForeignKeyField('models.Environment', source_field='environment_id', null=True, db_constraint=True, to_field='id', related_name='chat_channels', on_delete=OnDelete.CASCADE)),
                ('events', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('secret', fields.CharField(null=True, max_length=128)),
                ('created_by', fields.ForeignKeyField('models.User', source_field='created_by_id', db_constraint=True, to_field='id', related_name='chat_channels', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('deleted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'chat_channels', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A chat incoming webhook (Slack, Teams) or a generic signed JSON webhook that hears of'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ChatDelivery',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('channel', fields.ForeignKeyField('models.ChatChannel', source_field='channel_id', db_constraint=True, to_field='id', related_name='deliveries', on_delete=OnDelete.CASCADE)),
                ('audit_event', fields.ForeignKeyField('models.AuditEvent', source_field='audit_event_id', db_constraint=True, to_field='id', related_name='chat_deliveries', on_delete=OnDelete.CASCADE)),
                ('event', fields.CharField(max_length=32)),
                ('delivery_id', fields.CharField(unique=True, max_length=64)),
                ('payload', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('attempts', fields.IntField(default=0)),
                ('next_attempt_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('delivered_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('failed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_error', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'chat_deliveries', 'app': 'models', 'unique_together': (('channel', 'audit_event'),), 'pk_attr': 'id', 'table_description': 'Outbox of chat channels: one row per (channel, audit event), written when the event'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='AuditEvent',
            name='seq',
            field=fields.BigIntField(null=True, unique=True),
        ),
        # Events written before are all committed: their commit order is their id order.
        ops.RunSQL('UPDATE audit_events SET seq = id', reverse_sql=ops.RunSQL.noop),
        ops.RunSQL(
            "INSERT INTO audit_cursors (name, position, attempts) "
            "SELECT 'sequence', COALESCE(MAX(id), 0), 0 FROM audit_events",
            reverse_sql=ops.RunSQL.noop,
        ),
        ops.RunSQL(
            "INSERT INTO audit_cursors (name, position, attempts) VALUES ('sink', 0, 0)",
            reverse_sql=ops.RunSQL.noop,
        ),
    ]
