from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0002_approval_policies')]

    initial = False

    operations = [
        ops.AlterModelOptions(
            name='PolicyVersion',
            options={'table': 'policy_version', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One version of who may do what: a row for each change to roles, groups or users.'},
        ),
        ops.AddField(
            model_name='PolicyVersion',
            name='created_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=True),
        ),
        ops.AddField(
            model_name='PolicyVersion',
            name='group_id',
            field=fields.IntField(null=True),
        ),
        ops.AddField(
            model_name='PolicyVersion',
            name='user_id',
            field=fields.IntField(null=True),
        ),
        ops.RemoveField(model_name='PolicyVersion', name='version'),
        # The single row of the old version counter (written with an explicit id=1, so
        # PostgreSQL's sequence never moved) is no change to anyone: processes start from
        # a full load anyway.
        ops.RunSQL('DELETE FROM policy_version', reverse_sql=ops.RunSQL.noop),
    ]
