from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from greenlight.models.enums import CheckStatus
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0008_edits')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ImageCheck',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('image', fields.ForeignKeyField('models.Image', source_field='image_id', db_constraint=True, to_field='id', related_name='checks', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=63)),
                ('status', fields.CharEnumField(description='PASSED: PASSED\nFAILED: FAILED\nPENDING: PENDING', enum_type=CheckStatus, max_length=16)),
                ('url', fields.CharField(null=True, max_length=2048)),
                ('summary', fields.TextField(null=True, unique=False)),
                ('reported_by', fields.ForeignKeyField('models.User', source_field='reported_by_id', db_constraint=True, to_field='id', related_name='image_checks', on_delete=OnDelete.CASCADE)),
                ('reported_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'image_checks', 'app': 'models', 'unique_together': (('image', 'name'),), 'pk_attr': 'id', 'table_description': 'The latest result CI reported for one named check of an image.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ImageLabel',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('image', fields.ForeignKeyField('models.Image', source_field='image_id', db_constraint=True, to_field='id', related_name='labels', on_delete=OnDelete.CASCADE)),
                ('key', fields.CharField(max_length=63)),
                ('value', fields.CharField(max_length=255)),
            ],
            options={'table': 'image_labels', 'app': 'models', 'unique_together': (('image', 'key'),), 'indexes': [Index(fields=['key', 'value'])], 'pk_attr': 'id', 'table_description': 'A key/value label given when the image was registered, each key once per image.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Image',
            name='branch',
            field=fields.CharField(null=True, db_index=True, max_length=255),
        ),
        ops.AddField(
            model_name='Image',
            name='build_url',
            field=fields.CharField(null=True, max_length=2048),
        ),
        ops.AddField(
            model_name='Image',
            name='commit',
            field=fields.CharField(null=True, db_index=True, max_length=40),
        ),
        ops.AddField(
            model_name='Pipeline',
            name='required_checks',
            field=fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
        ops.AddField(
            model_name='Pipeline',
            name='requires_healthy_on',
            field=fields.ForeignKeyField('models.Environment', source_field='requires_healthy_on_id', null=True, db_constraint=True, to_field='id', related_name='promotes_to', on_delete=OnDelete.CASCADE),
        ),
    ]
