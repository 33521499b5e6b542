from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from greenlight.models.enums import ApprovalPolicyKind
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ApprovalException',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('pipeline', fields.ForeignKeyField('models.Pipeline', source_field='pipeline_id', db_constraint=True, to_field='id', related_name='approval_exceptions', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', null=True, db_constraint=True, to_field='id', related_name='approval_exceptions', on_delete=OnDelete.CASCADE)),
                ('group', fields.ForeignKeyField('models.Group', source_field='group_id', null=True, db_constraint=True, to_field='id', related_name='approval_exceptions', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'approval_exceptions', 'app': 'models', 'unique_together': (('pipeline', 'user'), ('pipeline', 'group')), 'pk_attr': 'id', 'table_description': "A user, or a group's members, who may deploy on the pipeline without approval."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='DeployFreeze',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(max_length=200)),
                ('environment', fields.ForeignKeyField('models.Environment', source_field='environment_id', null=True, db_constraint=True, to_field='id', related_name='freezes', on_delete=OnDelete.CASCADE)),
                ('pipeline', fields.ForeignKeyField('models.Pipeline', source_field='pipeline_id', null=True, db_constraint=True, to_field='id', related_name='freezes', on_delete=OnDelete.CASCADE)),
                ('starts_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('ends_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('time_zone', fields.CharField(null=True, max_length=64)),
                ('start_day', fields.SmallIntField(null=True)),
                ('start_time', fields.CharField(null=True, max_length=5)),
                ('end_day', fields.SmallIntField(null=True)),
                ('end_time', fields.CharField(null=True, max_length=5)),
                ('created_by', fields.ForeignKeyField('models.User', source_field='created_by_id', db_constraint=True, to_field='id', related_name='freezes_created', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'deploy_freezes', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A window in which deploys to an environment (or one pipeline) are refused.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='GroupQuorum',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('pipeline', fields.ForeignKeyField('models.Pipeline', source_field='pipeline_id', db_constraint=True, to_field='id', related_name='group_quorums', on_delete=OnDelete.CASCADE)),
                ('group', fields.ForeignKeyField('models.Group', source_field='group_id', db_constraint=True, to_field='id', related_name='quorums', on_delete=OnDelete.CASCADE)),
                ('min_approvals', fields.SmallIntField()),
            ],
            options={'table': 'group_quorums', 'app': 'models', 'unique_together': (('pipeline', 'group'),), 'pk_attr': 'id', 'table_description': 'GROUP_QUORUMS: at least `min_approvals` approvals from members of `group`.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PolicyApprover',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('pipeline', fields.ForeignKeyField('models.Pipeline', source_field='pipeline_id', db_constraint=True, to_field='id', related_name='policy_approvers', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='policy_approver_of', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'policy_approvers', 'app': 'models', 'unique_together': (('pipeline', 'user'),), 'pk_attr': 'id', 'table_description': 'SPECIFIC_USERS: a user who must approve every request of the pipeline.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Approval',
            name='group_ids',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='ApprovalRequest',
            name='policy',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='ApprovalRequest',
            name='stale',
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name='Deployment',
            name='approval_exception',
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name='Deployment',
            name='freeze_override_reason',
            field=fields.TextField(null=True, unique=False),
        ),
        ops.AddField(
            model_name='Pipeline',
            name='cancel_stale_requests',
            field=fields.BooleanField(default=False),
        ),
        ops.AddField(
            model_name='Pipeline',
            name='count_once_per_person',
            field=fields.BooleanField(default=True),
        ),
        ops.AddField(
            model_name='Pipeline',
            name='policy_kind',
            field=fields.CharEnumField(default=ApprovalPolicyKind.ANY, description='ANY: ANY\nSPECIFIC_USERS: SPECIFIC_USERS\nGROUP_QUORUMS: GROUP_QUORUMS', enum_type=ApprovalPolicyKind, max_length=16),
        ),
    ]
