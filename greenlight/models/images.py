"""What CI says about an image beyond its digest: free labels, and the checks it ran."""

from tortoise import fields
from tortoise.models import Model

from greenlight.models.enums import CheckStatus


class ImageLabel(Model):
    """A key/value label given when the image was registered, each key once per image."""

    id = fields.IntField(primary_key=True)
    image = fields.ForeignKeyField("models.Image", related_name="labels")
    key = fields.CharField(max_length=63)
    value = fields.CharField(max_length=255)

    class Meta:
        table = "image_labels"
        unique_together = (("image", "key"),)
        indexes = (("key", "value"),)


class ImageCheck(Model):
    """The latest result CI reported for one named check of an image.

    A report of the same name updates it; the audit log keeps every report."""

    id = fields.IntField(primary_key=True)
    image = fields.ForeignKeyField("models.Image", related_name="checks")
    name = fields.CharField(max_length=63)
    status = fields.CharEnumField(CheckStatus, max_length=16)
    url = fields.CharField(max_length=2048, null=True)
    summary = fields.TextField(null=True)
    reported_by = fields.ForeignKeyField("models.User", related_name="image_checks")
    reported_at = fields.DatetimeField()

    class Meta:
        table = "image_checks"
        unique_together = (("image", "name"),)
