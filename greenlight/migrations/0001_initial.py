from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from greenlight.models.enums import ApprovalState, DeploymentStatus, DeploymentStrategy, Role, TriggerType
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='Application',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=63)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'applications', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Environment',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=63)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'environments', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Pipeline',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('application', fields.ForeignKeyField('models.Application', source_field='application_id', db_constraint=True, to_field='id', related_name='pipelines', on_delete=OnDelete.CASCADE)),
                ('environment', fields.ForeignKeyField('models.Environment', source_field='environment_id', db_constraint=True, to_field='id', related_name='pipelines', on_delete=OnDelete.CASCADE)),
                ('strategy', fields.CharEnumField(description='ROLLING: ROLLING\nRECREATE: RECREATE\nBLUE_GREEN: BLUE_GREEN\nCANARY: CANARY', enum_type=DeploymentStrategy, max_length=16)),
                ('trigger_type', fields.CharEnumField(description='MANUAL: MANUAL\nAUTOMATIC: AUTOMATIC', enum_type=TriggerType, max_length=16)),
                ('required_approvals', fields.SmallIntField()),
                ('ttl_hours', fields.IntField(null=True)),
                ('approvers_can_deploy', fields.BooleanField(default=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'pipelines', 'app': 'models', 'unique_together': (('application', 'environment'),), 'pk_attr': 'id', 'table_description': 'One application deployed to one environment, with its approval policy.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PolicyVersion',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('version', fields.BigIntField(default=0)),
            ],
            options={'table': 'policy_version', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A single row whose version moves with every change to role bindings.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='User',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('email', fields.CharField(unique=True, max_length=320)),
                ('name', fields.CharField(max_length=200)),
                ('is_active', fields.BooleanField(default=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'users', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ApiToken',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='api_tokens', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=200)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'api_tokens', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='AuditEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=True)),
                ('actor', fields.ForeignKeyField('models.User', source_field='actor_id', null=True, db_constraint=True, to_field='id', related_name='audit_events', on_delete=OnDelete.CASCADE)),
                ('action', fields.CharField(db_index=True, max_length=64)),
                ('object_type', fields.CharField(max_length=32)),
                ('object_id', fields.IntField()),
                ('application', fields.CharField(null=True, max_length=63)),
                ('environment', fields.CharField(null=True, max_length=63)),
                ('before', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('after', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
            ],
            options={'table': 'audit_events', 'app': 'models', 'indexes': [Index(fields=['object_type', 'object_id'])], 'pk_attr': 'id', 'table_description': 'Append-only: one row per state change, written in the transaction that made it.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Image',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('application', fields.ForeignKeyField('models.Application', source_field='application_id', db_constraint=True, to_field='id', related_name='images', on_delete=OnDelete.CASCADE)),
                ('repository', fields.CharField(max_length=255)),
                ('tag', fields.CharField(max_length=128)),
                ('digest', fields.CharField(max_length=71)),
                ('built_by', fields.ForeignKeyField('models.User', source_field='built_by_id', db_constraint=True, to_field='id', related_name='built_images', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'images', 'app': 'models', 'unique_together': (('application', 'digest'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ApprovalRequest',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('image', fields.ForeignKeyField('models.Image', source_field='image_id', db_constraint=True, to_field='id', related_name='approval_requests', on_delete=OnDelete.CASCADE)),
                ('pipeline', fields.ForeignKeyField('models.Pipeline', source_field='pipeline_id', db_constraint=True, to_field='id', related_name='approval_requests', on_delete=OnDelete.CASCADE)),
                ('requested_by', fields.ForeignKeyField('models.User', source_field='requested_by_id', db_constraint=True, to_field='id', related_name='approval_requests', on_delete=OnDelete.CASCADE)),
                ('state', fields.CharEnumField(db_index=True, description='PENDING: PENDING\nAPPROVED: APPROVED\nREJECTED: REJECTED\nCANCELLED: CANCELLED\nEXPIRED: EXPIRED\nCONSUMED: CONSUMED', enum_type=ApprovalState, max_length=16)),
                ('live_key', fields.CharField(null=True, unique=True, max_length=64)),
                ('requested_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('comment', fields.TextField(null=True, unique=False)),
                ('required_approvals', fields.SmallIntField()),
                ('expires_at', fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False)),
                ('closed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'approval_requests', 'app': 'models', 'indexes': [Index(fields=['pipeline_id', 'state']), Index(fields=['image_id', 'pipeline_id'])], 'pk_attr': 'id', 'table_description': 'One image asked to be approved for one pipeline.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Approval',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('request', fields.ForeignKeyField('models.ApprovalRequest', source_field='request_id', db_constraint=True, to_field='id', related_name='approvals', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='approvals', on_delete=OnDelete.CASCADE)),
                ('decided_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('comment', fields.TextField(null=True, unique=False)),
            ],
            options={'table': 'approvals', 'app': 'models', 'unique_together': (('request', 'user'),), 'indexes': [Index(fields=['user_id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Deployment',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('pipeline', fields.ForeignKeyField('models.Pipeline', source_field='pipeline_id', db_constraint=True, to_field='id', related_name='deployments', on_delete=OnDelete.CASCADE)),
                ('image', fields.ForeignKeyField('models.Image', source_field='image_id', db_constraint=True, to_field='id', related_name='deployments', on_delete=OnDelete.CASCADE)),
                ('status', fields.CharEnumField(description='PROGRESSING: PROGRESSING\nHEALTHY: HEALTHY\nDEGRADED: DEGRADED\nFAILED: FAILED\nSUPERSEDED: SUPERSEDED', enum_type=DeploymentStatus, max_length=16)),
                ('strategy', fields.CharEnumField(description='ROLLING: ROLLING\nRECREATE: RECREATE\nBLUE_GREEN: BLUE_GREEN\nCANARY: CANARY', enum_type=DeploymentStrategy, max_length=16)),
                ('triggered_by', fields.ForeignKeyField('models.User', source_field='triggered_by_id', db_constraint=True, to_field='id', related_name='deployments', on_delete=OnDelete.CASCADE)),
                ('approval_request', fields.ForeignKeyField('models.ApprovalRequest', source_field='approval_request_id', null=True, db_constraint=True, to_field='id', related_name='deployments', on_delete=OnDelete.CASCADE)),
                ('started_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('driver', fields.CharField(default='simulator', max_length=16)),
                ('rollout_seconds', fields.FloatField(null=True)),
                ('failed_step', fields.SmallIntField(null=True)),
                ('message', fields.TextField(null=True, unique=False)),
            ],
            options={'table': 'deployments', 'app': 'models', 'indexes': [Index(fields=['pipeline_id', 'status']), Index(fields=['image_id', 'status'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='NamedApprover',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('request', fields.ForeignKeyField('models.ApprovalRequest', source_field='request_id', db_constraint=True, to_field='id', related_name='named_approvers', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='named_on', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'named_approvers', 'app': 'models', 'unique_together': (('request', 'user'),), 'pk_attr': 'id', 'table_description': 'An approver the requester named on a request (R8).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Rejection',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('request', fields.OneToOneField('models.ApprovalRequest', source_field='request_id', db_constraint=True, to_field='id', related_name='rejection', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='rejections', on_delete=OnDelete.CASCADE)),
                ('decided_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('reason', fields.TextField(unique=False)),
            ],
            options={'table': 'rejections', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='RoleBinding',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='role_bindings', on_delete=OnDelete.CASCADE)),
                ('role', fields.CharEnumField(description='SUPER_ADMIN: super-admin\nBUILD_AND_DEPLOY: build-and-deploy\nIMAGE_APPROVER: image-approver\nVIEWER: viewer\nDEPLOY_AGENT: deploy-agent', enum_type=Role, max_length=32)),
                ('application', fields.CharField(max_length=63)),
                ('environment', fields.CharField(max_length=63)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'role_bindings', 'app': 'models', 'unique_together': (('user', 'role', 'application', 'environment'),), 'pk_attr': 'id', 'table_description': 'One role granted to one user on one scope: an application and an environment, each a name or the wildcard.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WebhookDelivery',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('deployment', fields.ForeignKeyField('models.Deployment', source_field='deployment_id', db_constraint=True, to_field='id', related_name='webhook_deliveries', on_delete=OnDelete.CASCADE)),
                ('payload', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('attempts', fields.SmallIntField(default=0)),
                ('next_attempt_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('delivered_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('failed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_error', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'webhook_deliveries', 'app': 'models', 'pk_attr': 'id', 'table_description': "Outbox of the webhook driver: written in the deploy's transaction, sent after it."},
            bases=['Model'],
        ),
    ]
